"""Forward mode: directional derivatives by dual numbers.

`jvp(f, primals, tangents)` runs `f` once on *dual numbers*: every float value `x`
travels with its tangent `dx` (the derivative of x along the direction `tangents`), and
every operation computes both, `sin(x)` giving `(sin(x), cos(x) * dx)`. Nothing is
recorded, so forward mode needs no tape and no backward run: its memory is twice f's.

f runs as its own bytecode (no reversible form is needed: nothing is undone), on values
of type `Dual`. A dual number reaches every operation this way:

* operators: `Dual` implements them; the value is computed by the very operator f would
  apply (so f's result comes out bit for bit), the tangent by the derivative rule.
  Comparisons compare values, so branches and loops take f's own path;
* NumPy: ufuncs and array functions dispatch to `Dual` (`__array_ufunc__`,
  `__array_function__`), as they do to CuPy arrays;
* everything f finds in its globals, through `DualNamespace`: `math` functions and
  `float`, which do not dispatch, become dual-aware; f's own Python helpers run the same
  way; NumPy's array constructors (`np.zeros`, `np.array`, ...) give dual arrays, so an
  array that f fills in place (`out[i] = x * w`) keeps the tangents written into it.

A conversion that would drop a tangent (`float()` of a dual number inside a callable
bytrev cannot see into, `np.asarray` of a dual array) raises instead of dropping it.

Forward rules (`jvp_rule`) cover every callable that has a reverse rule in
`bytrev.rules`: elementwise functions from the same derivative templates (the tangent
for `g`, summed over the arguments); linear functions (sums, reshapes, joins, indexing)
applied to the tangents; multilinear ones (dot, matmul, einsum, ...) by the product
rule; a few others by hand; and any remaining callable with a reverse rule through it:
one VJP per element of the result gives the Jacobian's rows (exact, but slow for large
results; `defjvp` registers a direct rule).

Batches: `jacfwd` (and so `hessian`) runs f once with all n unit tangents at once; every
tangent then has a leading axis of length n. Rules marked `batched` handle that axis
(elementwise ones by aligning it, reductions and reshapes by shifting their axes,
indexing by putting it first); the others run once per tangent of the batch.

Hessians are forward over reverse: `bytrev.gradient` runs its reverse sweep on dual
numbers, compiled against `DualNamespace` (see `namespace_of`, `carries_duals`).
"""
from __future__ import annotations

import builtins
import contextvars
import functools
import math
import numbers
import operator
import types

import numpy as np

from . import rules
from .backend import is_array, is_device_array
from .errors import UnsupportedError


# jacfwd and hessian push all n unit tangents through one run of f: while it runs, every
# tangent has a leading axis of length n (the batch), and rules either know it (marked
# `batched`) or are applied once per tangent of the batch (`_looped`).
_BATCH = contextvars.ContextVar("bytrev_tangent_batch", default=None)


def _batch_shape(shape=()) -> tuple:
    """`shape` with the batch axis in front while a batch runs."""
    batch = _BATCH.get()
    return tuple(shape) if batch is None else (batch, *shape)


def zeros_tangent(value):
    """A zero tangent for the float array `value` (with the batch axis, in a batch)."""
    return np.zeros_like(value, shape=_batch_shape(value.shape))


class DualConversionError(TypeError):
    """A dual number was converted to a plain float or array, which would drop its
    tangent (inside a callable bytrev cannot see into)."""


# --------------------------------------------------------------------------- dual numbers


class DualValue:
    """A float value and its tangent: a `Dual` number or a `DualArray`. Arithmetic
    gives dual values; comparisons compare the values; `bool`, `int` and `round` give
    plain values (they have no derivative); `float(d)` and `np.asarray(d)` raise
    `DualConversionError` (they would drop the tangent)."""

    __slots__ = ("primal", "tangent")
    __array_priority__ = 1000.0  # ndarray op Dual: NumPy hands the operation to Dual
    __hash__ = None

    def __init__(self, primal, tangent):
        self.primal = primal
        self.tangent = tangent

    def __repr__(self):
        return f"{type(self).__name__}({self.primal!r}, tangent={self.tangent!r})"

    # ---- NumPy's protocols

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        return _apply_ufunc(ufunc, method, inputs, kwargs)

    def __array_function__(self, func, types_, args, kwargs):
        return apply(func, args, kwargs)

    def __array__(self, dtype=None, copy=None):
        raise DualConversionError(
            "a dual number was converted to a NumPy array, which would drop its tangent")

    # ---- conversions: the value only where no derivative exists

    def __float__(self):
        raise DualConversionError(
            "float() of a dual number would drop its tangent (a callable without a "
            "forward rule received it)")

    def __bool__(self):
        return bool(self.primal)

    def __int__(self):
        return int(self.primal)

    def __round__(self, ndigits=None):
        return round(self.primal, ndigits)

    def __trunc__(self):
        return math.trunc(self.primal)

    def __floor__(self):
        return math.floor(self.primal)

    def __ceil__(self):
        return math.ceil(self.primal)


class Dual(DualValue):
    """A float number (a Python float or a NumPy scalar) and its tangent; a real number
    to `numbers.Real` (bytrev's gradient code treats it as a scalar)."""

    __slots__ = ()

    dtype = property(lambda self: np.result_type(self.primal))


numbers.Real.register(Dual)


class DualArray(DualValue):
    """A float array and its tangent (an array of the same shape), of any backend.
    Indexing, slicing and views apply to both, so in-place updates of a view reach the
    tangent too; array methods (`x.sum()`, `x.reshape(...)`) are the NumPy functions."""

    __slots__ = ()

    shape = property(lambda self: self.primal.shape)
    dtype = property(lambda self: self.primal.dtype)
    ndim = property(lambda self: self.primal.ndim)
    size = property(lambda self: self.primal.size)
    nbytes = property(lambda self: self.primal.nbytes)
    T = property(lambda self: apply(np.transpose, (self,), {}))

    def __len__(self):
        return len(self.primal)

    def __iter__(self):
        return (self[k] for k in range(len(self.primal)))

    def __getitem__(self, index):
        index = primal(index)
        value = self.primal[index]
        tangent = _tangent_part(self.tangent, index)
        if not is_array(value) and is_array(tangent):  # an element: its own tangent, as its
            tangent = tangent.copy()                   # value is a copy, not a view
        return dual(value, tangent)

    def __setitem__(self, index, value):
        index = primal(index)
        self.primal[index] = primal(value)
        tangent = _tangent(value)
        if _BATCH.get() is None:
            self.tangent[index] = 0 if tangent is None else tangent
            return
        region = _tangent_part(self.tangent, index)
        tangent = 0 if tangent is None else _aligned(tangent, region.ndim - 1)
        if _basic_index(index):  # region is a view of the tangent
            region[...] = tangent
            return
        for b, t in enumerate(np.broadcast_to(tangent, region.shape)):  # region is a copy
            self.tangent[b][index] = t

    def copy(self, *args, **kwargs):
        return DualArray(self.primal.copy(*args, **kwargs), self.tangent.copy(*args, **kwargs))

    def astype(self, dtype, *args, **kwargs):
        primal = self.primal.astype(dtype, *args, **kwargs)
        if primal.dtype.kind not in "fc":
            return primal
        return DualArray(primal, self.tangent.astype(dtype, *args, **kwargs))

    def item(self, *index):
        if _BATCH.get() is None:
            return Dual(self.primal.item(*index), self.tangent.item(*index))
        flat = 0 if not index else index[0] if len(index) == 1 and not isinstance(
            index[0], tuple) else np.ravel_multi_index(
                index if len(index) > 1 else index[0], self.primal.shape)
        return Dual(self.primal.item(*index),
                    self.tangent.reshape(self.tangent.shape[0], -1)[:, flat].copy())

    def tolist(self):
        if self.ndim == 0:
            return self.item()
        return [part.tolist() for part in self]

    def fill(self, value):
        self[...] = value

    def reshape(self, *shape, order="C"):
        shape = shape[0] if len(shape) == 1 else shape
        return apply(np.reshape, (self, shape), {"order": order})

    def transpose(self, *axes):
        axes = axes[0] if len(axes) == 1 else axes
        return apply(np.transpose, (self, axes or None), {})

    def flatten(self, order="C"):
        return self.copy().reshape(-1, order=order)

    def __getattr__(self, name):  # x.sum(axis) is np.sum(x, axis), and so on
        function = rules._METHODS_AS_FUNCTIONS.get(name)
        if function is None:
            raise AttributeError(f"DualArray has no attribute {name!r}")
        return lambda *args, **kwargs: apply(function, (self, *args), kwargs)


def _basic_index(index) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    return all(isinstance(p, (int, np.integer, slice)) or p is None or p is Ellipsis
               for p in parts)


def _tangent_part(tangent, index):
    """tangent[index] for the value's `index`: behind the batch axis in a batch (a view
    for basic indices, as the value's part is)."""
    if _BATCH.get() is None:
        return tangent[index]
    if _basic_index(index):
        return tangent[(slice(None),) + (index if isinstance(index, tuple) else (index,))]
    if not isinstance(index, tuple):  # one integer array, list or mask
        return tangent[:, index]
    return np.stack([t[index] for t in tangent])


def _aligned(tangent, ndim):
    """A batched tangent (batch, *shape) reshaped to broadcast against values of `ndim`
    dimensions (ones inserted behind the batch axis)."""
    tangent = tangent if is_array(tangent) else np.asarray(tangent)
    missing = ndim - (tangent.ndim - 1)
    if missing <= 0:
        return tangent
    return tangent.reshape(tangent.shape[:1] + (1,) * missing + tangent.shape[1:])


def dual(primal, tangent):
    """The dual number (primal, tangent), or `primal` itself when it cannot carry a
    derivative (an integer, a boolean, a shape) or the tangent is None (zero)."""
    if tangent is None or not _is_float_value(primal):
        return primal
    if is_array(primal):
        return DualArray(primal, tangent)
    return Dual(primal, tangent)


def as_float(value):
    """`float(np.real(value))`, for a dual number too (value and tangent)."""
    if isinstance(value, DualValue):
        tangent = np.real(value.tangent)
        return Dual(float(np.real(value.primal)),
                    float(tangent) if np.ndim(tangent) == 0 else tangent)
    return float(np.real(value))


def _is_float_value(v) -> bool:
    if isinstance(v, (float, np.floating, complex, np.complexfloating)):
        return True
    return is_array(v) and v.dtype.kind in "fc"


def primal(tree):
    """`tree` with dual numbers replaced by their values (tuples, lists and dicts)."""
    if isinstance(tree, DualValue):
        return tree.primal
    if isinstance(tree, (tuple, list)):
        parts = [primal(part) for part in tree]
        return parts if isinstance(tree, list) else _rebuilt(tree, parts)
    if isinstance(tree, dict):
        return {key: primal(value) for key, value in tree.items()}
    return tree


def _tangent(tree):
    """The tangent of `tree` in its structure: None where there is none (a plain value),
    or None for the whole when no part has one."""
    if isinstance(tree, DualValue):
        return tree.tangent
    if isinstance(tree, (tuple, list)):
        parts = [_tangent(part) for part in tree]
        return None if all(p is None for p in parts) else parts
    if isinstance(tree, dict):
        parts = {key: _tangent(value) for key, value in tree.items()}
        return None if all(p is None for p in parts.values()) else parts
    return None


def _rebuilt(like, parts):
    return type(like)(*parts) if hasattr(like, "_fields") else tuple(parts)


def _zero_tangent(value):
    """The zero tangent of a plain float value (or of the floats in a list/tuple/dict)."""
    if isinstance(value, (tuple, list)):
        return [_zero_tangent(v) for v in value]
    if isinstance(value, dict):
        return {k: _zero_tangent(v) for k, v in value.items()}
    if _is_float_value(value):
        return np.zeros_like(value) if is_array(value) else 0.0
    return value  # not differentiable: an axis, an index, a shape (kept by linear rules)


# --------------------------------------------------------------------------- applying rules


def apply(func, args, kwargs):
    """`func(*args, **kwargs)` on dual numbers: the value from `func` on the values, the
    tangent from its forward rule."""
    values = primal(args)
    value_kwargs = primal(kwargs)
    ans = func(*values, **value_kwargs)
    tangents = tuple(_tangent(a) for a in args)
    if id(func) in _LIKE_CONSTRUCTORS and isinstance(args[0], DualArray) and \
            _is_float_value(ans):
        # A buffer made like a dual array is for dual values (a gradient sweep's): its
        # tangent is zero, but it is there to take the tangents written into it.
        return DualArray(ans, zeros_tangent(ans))
    if all(t is None for t in tangents) or not _carries_floats(ans):
        return ans
    rule = jvp_rule(func, len(args))
    return _paired(ans, _call_rule(rule, tangents, ans, values, value_kwargs))


def _call_rule(rule, tangents, ans, values, kwargs):
    if _BATCH.get() is None or getattr(rule, "batched", False):
        return rule(tangents, ans, *values, **kwargs)
    return _looped(rule, tangents, ans, values, kwargs)


def _looped(rule, tangents, ans, values, kwargs):
    """A rule that does not know batches, applied to each tangent of the batch."""
    parts = [rule(tuple(_at(t, b) for t in tangents), ans, *values, **kwargs)
             for b in range(_BATCH.get())]
    return _stacked(parts, ans)


def _at(tangent, b):
    """Tangent number b of a batched tangent (tree)."""
    if tangent is None:
        return None
    if isinstance(tangent, (list, tuple)):
        return [_at(t, b) for t in tangent]
    if isinstance(tangent, dict):
        return {k: _at(t, b) for k, t in tangent.items()}
    return tangent[b]


def _stacked(parts, ans):
    """Per-tangent results stacked along a new batch axis (tuple results part by part)."""
    if all(p is None or p is rules.ZERO for p in parts):
        return None
    if isinstance(ans, (tuple, list)):
        return [_stacked([None if p is None else p[i] for p in parts], a)
                for i, a in enumerate(ans)]
    shape = np.shape(ans)
    zero = np.zeros_like(ans) if is_array(ans) else 0.0
    return np.stack([np.broadcast_to(zero if p is None or p is rules.ZERO else p, shape)
                     for p in parts])


_LIKE_CONSTRUCTORS = {id(f) for f in (np.zeros_like, np.ones_like, np.empty_like,
                                       np.full_like)}


def _carries_floats(ans) -> bool:
    if isinstance(ans, (tuple, list)):
        return any(_carries_floats(part) for part in ans)
    return _is_float_value(ans)


def _paired(ans, tangent):
    """Result values and tangents paired into dual numbers (tuple results part by part)."""
    if type(ans) is float and tangent is not None and not is_array(tangent):
        return Dual(ans, tangent)  # the common case of scalar code, first
    if isinstance(ans, (tuple, list)):
        parts = [_paired(a, t) for a, t in zip(ans, tangent or [None] * len(ans))]
        return parts if isinstance(ans, list) else _rebuilt(ans, parts)
    return dual(ans, _fitted(tangent, ans))


def _fitted(tangent, ans):
    """`tangent` in the form of `ans`: an array of its shape (rules may return a smaller
    tangent that broadcasts), a scalar for a scalar; in a batch, (batch, *ans's shape)."""
    if tangent is None or tangent is rules.ZERO:
        return None
    if _BATCH.get() is not None:
        shape = _batch_shape(np.shape(ans))
        if is_array(tangent) and tangent.shape == shape:
            return tangent
        if not is_array(tangent) or tangent.ndim == 0:
            return np.full(shape, tangent, dtype=np.result_type(ans, tangent))
        return np.broadcast_to(_aligned(tangent, len(shape) - 1), shape).copy()
    if is_array(ans):
        if is_array(tangent) and tangent.shape == ans.shape:
            return tangent
        return np.zeros_like(ans) + tangent
    if is_array(tangent):  # a scalar result: a 0-d (or one-element) tangent
        return type(ans)(tangent.item()) if isinstance(ans, float) else tangent[()]
    return tangent


def _apply_ufunc(ufunc, method, inputs, kwargs):
    out = kwargs.pop("out", None)
    if "where" in kwargs:
        raise UnsupportedError(f"np.{ufunc.__name__}(..., where=) on dual numbers")
    if method == "__call__":
        result = apply(ufunc, inputs, kwargs)
    elif method == "reduce" and ufunc is np.add:  # np.add.reduce(x, axis) is np.sum
        result = apply(np.sum, inputs, kwargs)
    elif method == "accumulate" and ufunc is np.add:
        result = apply(np.cumsum, inputs, kwargs)
    elif method == "at" and ufunc is np.add:  # np.add.at(buffer, index, values)
        target, index, values = inputs
        if not isinstance(target, DualArray):
            raise DualConversionError("np.add.at adds values with a tangent into a plain "
                                      "array, which would drop the tangent")
        np.add.at(target.primal, primal(index), primal(values))
        tangent = _tangent(values)
        if tangent is not None and _BATCH.get() is None:
            np.add.at(target.tangent, primal(index), tangent)
        elif tangent is not None:
            for b, t in enumerate(_aligned(tangent, np.ndim(primal(values)))):
                np.add.at(target.tangent[b], primal(index), t)
        return None
    else:
        raise UnsupportedError(f"np.{ufunc.__name__}.{method} on dual numbers",
                               hint="forward mode supports ufunc calls and np.add.reduce/"
                                    "accumulate")
    if out is None:
        return result
    target = out[0] if isinstance(out, tuple) else out
    if not isinstance(target, DualArray) and isinstance(result, DualValue):
        raise DualConversionError(
            f"np.{ufunc.__name__}(..., out=) writes a value with a tangent into a plain "
            "array, which would drop the tangent")
    target[...] = result
    return target


# --------------------------------------------------------------------------- forward rules

_JVPS: dict = {}  # id(func) -> (func, rule): registered with defjvp
_TABLE_RULES: dict = {}  # (id(func), nargs) -> rule: from the tables below, found once


def defjvp(func, *rules_per_arg):
    """Register the forward rule of `func`, one argument at a time in autograd's style:
    `rules_per_arg[i](t, ans, *args, **kwargs)` returns what the tangent `t` of
    positional argument i contributes to the tangent of the result (J_i t). None, or a
    missing rule, means that argument has no derivative. Returns func."""
    def rule(tangents, ans, *args, **kwargs):
        total = None
        for per_arg, t in zip(rules_per_arg, tangents):
            if per_arg is not None and t is not None:
                term = per_arg(t, ans, *args, **kwargs)
                total = term if total is None else total + term
        return total
    _JVPS[id(func)] = (func, rule)
    return func


def jvp_rule(func, nargs):
    """The forward rule `rule(tangents, ans, *args, **kwargs) -> tangent of ans` of
    `func` called with `nargs` positional arguments (`tangents[i]` is None for an
    argument without one)."""
    entry = _JVPS.get(id(func))
    if entry is not None:
        return entry[1]
    rule = _TABLE_RULES.get((id(func), nargs))
    if rule is not None:
        return rule
    templates = rules.elementwise_template(func, nargs)
    if templates is not None:
        rule = _elementwise_rule(templates)
    elif id(func) in _LINEAR:
        rule = _linear_rule(func)
    elif id(func) in _MULTILINEAR:
        rule = _multilinear_rule(func)
    if rule is not None:
        _TABLE_RULES[id(func), nargs] = rule
        return rule
    vjp = rules.vjp_rule(func)
    if vjp is rules._no_gradient:
        return _no_tangent
    if vjp is not None:
        return _rule_from_vjp(vjp)
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", repr(func))
    raise UnsupportedError(f"a call to {name} on dual numbers (it has no forward rule)",
                           hint=f"register one with bytrev.defjvp({name}, rule_for_arg0, "
                                "...), where rule(t, ans, *args) returns J t")


def _no_tangent(tangents, ans, *args, **kwargs):
    return None


_no_tangent.batched = True


@functools.lru_cache(maxsize=None)
def _elementwise_rule(templates):
    """The tangent is the sum over the arguments of the reverse template with the
    argument's tangent for g (an elementwise Jacobian is diagonal: J t = J^T t)."""
    partials = rules._compile_templates(templates)

    def rule(tangents, ans, *args, **kwargs):
        values = args[:len(partials)]
        batched = _BATCH.get() is not None
        ndim = max([np.ndim(ans)] + [np.ndim(v) for v in values]) if batched else 0
        total = None
        for partial, t in zip(partials, tangents):
            if t is not None:
                term = partial(_aligned(t, ndim) if batched else t, ans, *values)
                total = term if total is None else total + term
        if is_array(total) and any(total is t for t in tangents):
            total = total.copy()  # `x + 1.0`: the result's tangent must not be x's
        return total
    rule.batched = True
    return rule


@functools.lru_cache(maxsize=None)
def _linear_rule(func):
    """A function linear in its float arguments together: apply it to their tangents
    (zeros for float constants; indices, axes and shapes kept)."""
    def rule(tangents, ans, *args, **kwargs):
        return func(*(_zero_tangent(a) if t is None else _filled(t, a)
                      for t, a in zip(tangents, args)), **kwargs)
    return rule


def _filled(tangent, value):
    """A list/tuple argument's tangents with zeros for its plain elements."""
    if isinstance(value, (list, tuple)):
        return [_zero_tangent(v) if t is None else _filled(t, v)
                for t, v in zip(tangent, value)]
    if isinstance(value, dict):
        return {k: _zero_tangent(v) if tangent.get(k) is None else _filled(tangent[k], v)
                for k, v in value.items()}
    return tangent


@functools.lru_cache(maxsize=None)
def _multilinear_rule(func):
    """A function linear in each float argument separately (a product): the sum over
    the arguments with a tangent of func with that argument replaced by its tangent."""
    def rule(tangents, ans, *args, **kwargs):
        total = None
        for i, t in enumerate(tangents):
            if t is not None:
                term = func(*args[:i], _filled(t, args[i]), *args[i + 1:], **kwargs)
                total = term if total is None else total + term
        return total
    return rule


@functools.lru_cache(maxsize=None)
def _rule_from_vjp(vjp):
    """J t from a reverse rule: row k of the Jacobian is the VJP of the k-th unit
    cotangent, dotted with the arguments' tangents (one rule call per result element)."""
    def rule(tangents, ans, *args, **kwargs):
        if not is_array(ans):
            return _dot_tangents(vjp(type(ans)(1), ans, *args, **kwargs), tangents)
        out = np.zeros_like(ans, shape=_batch_shape(ans.shape))
        flat = out.reshape(out.shape[:out.ndim - ans.ndim] + (-1,))
        for k in range(ans.size):
            seed = np.zeros_like(ans)
            seed.reshape(-1)[k] = 1
            flat[..., k] = _dot_tangents(vjp(seed, ans, *args, **kwargs), tangents)
        return out
    rule.batched = True
    return rule


def _dot_tangents(cotangents, tangents):
    """The sum of <cotangent, tangent> over the arguments (per tangent, in a batch)."""
    total = 0.0
    if isinstance(tangents, dict):
        cotangents, tangents = [cotangents.get(k) for k in tangents], list(tangents.values())
    for c, t in zip(cotangents, tangents):
        if c is None or c is rules.ZERO or t is None:
            continue
        if isinstance(c, (list, tuple, dict)):
            total = total + _dot_tangents(c, t)
        elif _BATCH.get() is None:
            total = total + np.sum(c * t)
        else:
            total = total + np.sum(c * t, axis=tuple(range(1, np.ndim(t))))
    return total


# (np.sum, np.mean, np.reshape, np.ravel, np.transpose and np.matmul have batched rules
# below.)
_LINEAR = {id(f) for f in (
    np.cumsum, np.squeeze, np.expand_dims, np.copy,
    np.ascontiguousarray, np.asfortranarray, np.real, np.array, np.asarray, np.asanyarray,
    np.atleast_1d, np.atleast_2d, np.atleast_3d, np.swapaxes, np.moveaxis,
    np.broadcast_to, np.roll, np.flip, np.fliplr, np.flipud, np.tril, np.triu, np.rot90,
    np.diagonal, np.trace, np.diag, np.take, np.repeat, np.tile, np.concatenate, np.stack,
    np.vstack, np.hstack, np.dstack, np.column_stack, np.split, np.array_split, np.hsplit,
    np.vsplit, np.dsplit, np.take_along_axis, np.float64, np.float32,
    builtins.float, builtins.sum, math.fsum, np.negative, np.positive, np.conjugate)}
_MULTILINEAR = {id(f) for f in (
    np.dot, np.outer, np.inner, np.vdot, np.tensordot, np.kron, np.einsum, np.cross,
    getattr(np.linalg, "matmul", np.dot))}


# Batched forms of the commonest linear and bilinear functions (in a batch the others
# run once per tangent).
def _reduction_jvp(func):
    def rule(tangents, ans, a, axis=None, dtype=None, out=None, keepdims=False, **kwargs):
        t = tangents[0]
        if _BATCH.get() is not None and (kwargs or not is_array(t)):
            return _looped(_linear_rule(func), tangents, ans, (a,),
                           dict(axis=axis, dtype=dtype, keepdims=keepdims, **kwargs))
        if _BATCH.get() is not None:
            ndim = np.ndim(a)
            axis = tuple(range(1, ndim + 1)) if axis is None else \
                tuple(int(k) % ndim + 1 for k in np.atleast_1d(axis))
        return func(t, axis=axis, dtype=dtype, keepdims=keepdims, **kwargs)
    rule.batched = True
    return rule


def _reshape_jvp(tangents, ans, a, *args, order="C", **kwargs):
    """np.reshape, np.ravel (order C): the tangent takes the result's shape."""
    if order != "C":
        raise UnsupportedError("reshaping dual numbers in an order other than C")
    return np.reshape(tangents[0], _batch_shape(np.shape(ans)))


def _transpose_jvp(tangents, ans, a, axes=None):
    ndim = np.ndim(a)
    axes = tuple(range(ndim))[::-1] if axes is None else tuple(int(k) % ndim for k in axes)
    if _BATCH.get() is not None:
        axes = (0,) + tuple(k + 1 for k in axes)
    return np.transpose(tangents[0], axes)


def _matmul_jvp(tangents, ans, x, y, *args, **kwargs):
    """x @ y (and np.dot of vectors and matrices) by the product rule; in a batch the
    batched operand's leading axis is the batch."""
    if args or kwargs or not (1 <= np.ndim(x) <= 2 and 1 <= np.ndim(y) <= 2):
        return _call_rule(_multilinear_rule(np.matmul), tangents, ans, (x, y, *args), kwargs)
    tx, ty = tangents
    total = None
    if tx is not None:
        total = np.matmul(tx, y)
    if ty is not None:
        if _BATCH.get() is None or np.ndim(y) == 2:
            term = np.matmul(x, ty)
        else:  # x @ (batch of vectors): the vectors as the rows of a matrix
            term = np.matmul(ty, np.swapaxes(x, -1, -2) if np.ndim(x) == 2 else x)
        total = term if total is None else total + term
    return total


for _rule in (_reshape_jvp, _transpose_jvp, _matmul_jvp):
    _rule.batched = True


# Forward rules for nonlinear functions whose reverse rules would cost one call per
# result element.
def _solve_jvp(tangents, ans, a, b):
    ta, tb = tangents
    rhs = (0 if tb is None else tb) - (0 if ta is None else rules._matmul_or_product(ta, ans))
    return np.linalg.solve(a, rhs)


def _inv_jvp(tangents, ans, a):
    return -(ans @ tangents[0] @ ans)


def _sort_jvp(tangents, ans, a, axis=-1, kind=None, order=None, **kwargs):
    order_ = np.argsort(a, axis=axis, kind="stable")
    if axis is None:
        return np.reshape(tangents[0], -1)[order_]
    return np.take_along_axis(tangents[0], order_, axis=axis)


def _where_jvp(tangents, ans, condition, x=None, y=None):
    """np.where(c, x, y) is linear in x and y; the condition (which may be a float array
    used for its truth) passes no tangent."""
    def part(t, value):
        return _zero_tangent(value) if t is None else t
    return np.where(condition, part(tangents[1], x), part(tangents[2], y))


def _cumprod_jvp(tangents, ans, a, axis=None, dtype=None, out=None):
    """d p_k = d p_{k-1} x_k + p_{k-1} t_k along the axis (exact where x has zeros)."""
    t = tangents[0]
    if axis is None:
        a, t, axis = np.ravel(a), np.ravel(t), 0
    x, dx = np.moveaxis(a, axis, 0), np.moveaxis(np.broadcast_to(t, np.shape(a)), axis, 0)
    p = np.moveaxis(np.reshape(ans, np.shape(a)), axis, 0)
    dp = np.zeros_like(p)
    previous_p, previous_dp = 1.0, 0.0
    for k in range(len(p)):
        dp[k] = previous_dp * x[k] + previous_p * dx[k]
        previous_p, previous_dp = p[k], dp[k]
    return np.reshape(np.moveaxis(dp, 0, axis), np.shape(ans))


def _clip_jvp(tangents, ans, a, a_min=None, a_max=None, *rest, **kwargs):
    """As the reverse rule: a_max's tangent where it bounds the result, else a_min's
    where a is below it, else a's."""
    lower, upper = kwargs.get("min", a_min), kwargs.get("max", a_max)
    ta, t_min, t_max = (tuple(tangents) + (None, None))[:3]
    out = 0.0 if ta is None else ta
    if lower is not None:
        out = np.where(np.less(a, lower), 0.0 if t_min is None else t_min, out)
    if upper is not None:
        raised = a if lower is None else np.maximum(a, lower)
        out = np.where(np.greater(raised, upper), 0.0 if t_max is None else t_max, out)
    return out


_HAND_WRITTEN = {np.linalg.solve: _solve_jvp, np.linalg.inv: _inv_jvp, np.sort: _sort_jvp,
                 np.clip: _clip_jvp, np.cumprod: _cumprod_jvp, np.where: _where_jvp,
                 np.sum: _reduction_jvp(np.sum), np.mean: _reduction_jvp(np.mean),
                 np.reshape: _reshape_jvp, np.ravel: _reshape_jvp,
                 np.transpose: _transpose_jvp, np.matmul: _matmul_jvp}
for _func, _rule in _HAND_WRITTEN.items():
    _JVPS[id(_func)] = (_func, _rule)
del _func, _rule


# --------------------------------------------------------------------------- operators


def _binary(func, op):
    """Dual's method for the operator `op` whose derivative is `func`'s (np.add for +),
    and the reflected method (`2.0 * d`)."""
    rule = jvp_rule(func, 2)

    def method(self, other):
        return _operate(rule, op, self, other)

    def reflected(self, other):
        return _operate(rule, op, other, self)
    return method, reflected


def _operate(rule, op, x, y):
    # Scalar loops run this for every operation: plain attribute reads, no recursion.
    tx = x.tangent if isinstance(x, DualValue) else None
    ty = y.tangent if isinstance(y, DualValue) else None
    px = x if tx is None else x.primal
    py = y if ty is None else y.primal
    if isinstance(px, (list, tuple, str)) or isinstance(py, (list, tuple, str)):
        return NotImplemented
    ans = op(px, py)
    if not _is_float_value(ans):
        return ans
    return _paired(ans, _call_rule(rule, (tx, ty), ans, (px, py), {}))


def _unary(func, op):
    rule = jvp_rule(func, 1)

    def method(self):
        ans = op(self.primal)
        return _paired(ans, _call_rule(rule, (self.tangent,), ans, (self.primal,), {}))
    return method


def _in_place(method):
    """`a += b` on a dual array updates a's value and tangent in place (views of a see
    it, as they see NumPy's in-place update); on a scalar it rebinds, as for floats."""
    def update(self, other):
        result = method(self, other)
        if result is NotImplemented or not isinstance(self, DualArray):
            return result
        self[...] = result
        return self
    return update


for _name, _func, _op in (("add", np.add, operator.add), ("sub", np.subtract, operator.sub),
                          ("mul", np.multiply, operator.mul),
                          ("truediv", np.divide, operator.truediv),
                          ("pow", np.power, operator.pow), ("matmul", np.matmul, operator.matmul),
                          ("floordiv", np.floor_divide, operator.floordiv),
                          ("mod", np.remainder, operator.mod)):
    _method, _reflected = _binary(_func, _op)
    setattr(DualValue, f"__{_name}__", _method)
    setattr(DualValue, f"__r{_name}__", _reflected)
    setattr(DualValue, f"__i{_name}__", _in_place(_method))
for _name, _func, _op in (("neg", np.negative, operator.neg), ("pos", np.positive, operator.pos),
                          ("abs", np.absolute, operator.abs)):
    setattr(DualValue, f"__{_name}__", _unary(_func, _op))
for _name in ("lt", "le", "gt", "ge", "eq", "ne"):
    setattr(DualValue, f"__{_name}__", functools.partialmethod(
        lambda self, other, op: op(self.primal, primal(other)), op=getattr(operator, _name)))
del _name, _func, _op, _method, _reflected


# --------------------------------------------------------------------------- f's namespace


class _DualModule(types.ModuleType):
    """A module as dual-number code sees it: `math` with dual-aware functions; NumPy
    with constructors that make dual arrays."""

    def __init__(self, module, wrap):
        super().__init__(module.__name__)
        self._module = module
        self._wrap = wrap

    def __getattr__(self, name):
        value = self._wrap(getattr(self._module, name))
        setattr(self, name, value)  # module attributes do not change: keep it
        return value


@functools.lru_cache(maxsize=None)  # math's functions, registered primitives: few
def _dual_callable(func):
    """A callable that does not dispatch to `Dual` itself (a math function, `float`),
    made dual-aware: plain arguments give f's plain result."""
    def call(*args, **kwargs):
        if not carries_duals(args):
            return func(*args, **kwargs)
        return apply(func, args, kwargs)
    call.__name__ = getattr(func, "__name__", "call")
    call.__wrapped__ = func
    return _same_rules(call, func)


rules._ON_REGISTER.append(_dual_callable.cache_clear)  # its wrappers copy func's rule


def _same_rules(wrapper, func):
    """Give `wrapper` the reverse rule and templates of `func`: a gradient sweep running
    in a dual namespace (forward over reverse) calls the wrapper where f calls func."""
    rule = rules.vjp_rule(func)
    if rule is not None:
        rules._set_vjp(wrapper, rule)
    if id(func) in rules._TEMPLATES:
        rules._TEMPLATES[id(wrapper)] = rules._TEMPLATES[id(func)]
    return wrapper


@functools.lru_cache(maxsize=None)
def _with_dual_floats(constructor):
    """np.zeros & co.: a float result is a dual array (with a zero tangent when no
    argument has one), so that values f writes into it keep their tangents; np.array of
    a list of dual numbers is a dual array."""
    def construct(*args, **kwargs):
        value = apply(constructor, args, kwargs)
        if is_array(value) and value.dtype.kind in "fc" and not isinstance(value, DualValue):
            return DualArray(value, zeros_tangent(value))
        return value
    construct.__name__ = constructor.__name__
    construct.__wrapped__ = constructor
    return _same_rules(construct, constructor)


_NUMPY_CONSTRUCTORS = {id(f) for f in (
    np.zeros, np.ones, np.empty, np.full, np.eye, np.identity, np.array, np.asarray,
    np.asanyarray, np.ascontiguousarray, np.zeros_like, np.ones_like, np.empty_like,
    np.full_like, np.linspace, np.arange)}
_NUMPY_SCALAR_TYPES = {id(t) for t in (np.float64, np.float32, np.float16)}


def dual_value(value):
    """What dual-number code gets for a global value: dual-aware math and NumPy, the
    dual version of a user's function, dual-aware forms of NumPy's constructors and of
    callables that do not dispatch (math's functions, NumPy's float types); anything
    else unchanged."""
    if value is math:
        return _DUAL_MATH
    if value is np:
        return _DUAL_NUMPY
    if id(value) in _NUMPY_CONSTRUCTORS:
        return _with_dual_floats(value)
    if id(value) in _NUMPY_SCALAR_TYPES or (isinstance(value, types.BuiltinFunctionType)
                                            and _module_of(value) == "math"):
        return _dual_callable(value)
    if callable(value) and not isinstance(value, type) and not _in_library(_module_of(value)) \
            and (id(value) in _JVPS or rules.vjp_rule(value) is not None):
        return _dual_callable(value)  # a primitive with a rule: called, not looked into
    if isinstance(value, types.FunctionType):
        return dual_function(value)
    return value


_DUAL_MATH = _DualModule(math, dual_value)
_DUAL_NUMPY = _DualModule(np, dual_value)
def _dual_sum(iterable, /, start=0):
    """The builtin `sum`: on floats Python 3.12+ sums with compensation, so the values
    are summed by `sum` itself, not by adding dual numbers one by one."""
    items = iterable if isinstance(iterable, DualValue) else list(iterable)
    return _dual_callable(builtins.sum)(items, start)


_same_rules(_dual_sum, builtins.sum)


_DUAL_BUILTINS = dict(vars(builtins), float=_dual_callable(builtins.float), sum=_dual_sum)
_LIBRARIES = ("numpy", "scipy", "cupy", "cupyx", "math", "bytrev")


def _module_of(func) -> str:
    """The module that defined `func` (for a Python function, its globals' name: a
    wrapper made by functools.wraps claims the wrapped function's module)."""
    if isinstance(func, types.FunctionType):
        return func.__globals__.get("__name__") or ""
    return getattr(func, "__module__", None) or ""


def _in_library(module: str) -> bool:
    """Code that reaches dual numbers only through NumPy's protocols and is not run
    in a dual namespace: NumPy, SciPy, CuPy, and bytrev itself (its demo examples in
    `bytrev.__main__` are ordinary user code)."""
    return module.split(".")[0] in _LIBRARIES and module != "bytrev.__main__"


class DualNamespace(dict):
    """A function's globals as dual-number code sees them: each name is looked up in
    the real globals when it is read (so later changes to them are seen) and handed out
    in its dual-aware form (`dual_value`); the builtins are `_DUAL_BUILTINS`."""

    def __init__(self, globals_: dict):
        super().__init__(__builtins__=_DUAL_BUILTINS)
        self.real = globals_

    def __missing__(self, name):
        return dual_value(self.real[name])  # KeyError: CPython looks in the builtins


_NAMESPACES: dict = {}  # id(globals) -> (globals, DualNamespace)
_FUNCTIONS: dict = {}  # id(function) -> (function, dual version)


def namespace_of(globals_: dict) -> DualNamespace:
    """The `DualNamespace` of a module's globals (one per module)."""
    entry = _NAMESPACES.get(id(globals_))
    if entry is None:
        entry = _NAMESPACES[id(globals_)] = (globals_, DualNamespace(globals_))
    return entry[1]


def carries_duals(values) -> bool:
    """Whether dual numbers are among `values` (in tuples, lists and dicts too)."""
    for v in values:
        if isinstance(v, DualValue) or (isinstance(v, (tuple, list)) and carries_duals(v)) \
                or (isinstance(v, dict) and carries_duals(v.values())):
            return True
    return False


def dual_function(f):
    """`f` compiled against its `DualNamespace` (same code, defaults and closure; cells
    holding functions or modules get their dual forms). Functions of bytrev, NumPy and
    other libraries are returned unchanged: they reach dual numbers through NumPy's
    protocols."""
    if _in_library(_module_of(f)):
        return f
    entry = _FUNCTIONS.get(id(f))
    if entry is not None:
        return entry[1]
    closure = None
    if f.__closure__:
        closure = tuple(_dual_cell(cell) for cell in f.__closure__)
    g = types.FunctionType(f.__code__, namespace_of(f.__globals__), f.__name__,
                           f.__defaults__, closure)
    g.__kwdefaults__ = f.__kwdefaults__
    g.__qualname__ = f.__qualname__
    g.__wrapped__ = f
    _FUNCTIONS[id(f)] = (f, g)
    return g


def _dual_cell(cell):
    try:
        value = cell.cell_contents
    except ValueError:  # not yet bound
        return cell
    dual_form = dual_value(value)
    return cell if dual_form is value else types.CellType(dual_form)


# --------------------------------------------------------------------------- the API


def jvp(f, primals, tangents):
    """`(out, tangent_out)`: f's value at `primals` (a tuple of its positional
    arguments) and its directional derivative along `tangents` (a tuple of the same
    structure: a tangent per float or float array, in the same containers; None or an
    int where an argument has none)."""
    primals, tangents = tuple(primals), tuple(tangents)
    if len(primals) != len(tangents):
        raise TypeError(f"jvp: {len(primals)} primals but {len(tangents)} tangents")
    changed = _changed_in_place(f)
    duals = tuple(_dual_tree(p, t, changed is None or i in changed)
                  for i, (p, t) in enumerate(zip(primals, tangents)))
    runner = _runner(f)
    try:
        out = runner(*duals)
    except DualConversionError as exc:
        raise _located(exc, f) from exc
    except UnsupportedError as exc:
        if exc.line is None:
            raise _located(exc, f) from exc
        raise
    return primal(out), _tangent_out(out)


def _runner(f):
    """What jvp calls: a Python function's dual version (inside functools.partial too);
    any other callable as it is (it meets dual numbers through NumPy's protocols)."""
    if isinstance(f, functools.partial):
        return functools.partial(_runner(f.func), *f.args, **f.keywords)
    return dual_function(f) if isinstance(f, types.FunctionType) else f


def _changed_in_place(f):
    """The positions of the parameters f updates in place (`a[i] = v`, `a += v`), or
    None when bytrev cannot tell (f cannot be lifted, or is not a Python function)."""
    if isinstance(f, functools.partial) and not f.args:
        return _changed_in_place(f.func)
    if not isinstance(f, types.FunctionType) or _in_library(_module_of(f)):
        return None
    from .analysis import mutated
    from .lift import lift
    try:
        fn = lift(f)
    except UnsupportedError:
        return None
    params = fn.params + fn.kwonly
    return {params.index(name) for name in mutated(fn.body) if name in params}


def _dual_tree(primal, tangent, written):
    """The argument passed to f: float leaves with a tangent as dual numbers (the
    tangent copied, since f may update it in place along with an array). Float arrays
    of an argument f updates in place (`written`) become dual arrays with a zero
    tangent when they have none, so that dual values can be written into them."""
    if isinstance(primal, (tuple, list)):
        if tangent is None and not written:
            return primal
        tangent = [None] * len(primal) if tangent is None else tangent
        parts = [_dual_tree(p, t, written) for p, t in zip(primal, tangent, strict=True)]
        return parts if isinstance(primal, list) else _rebuilt(primal, parts)
    if isinstance(primal, dict):
        if tangent is None and not written:
            return primal
        tangent = {} if tangent is None else tangent
        return {k: _dual_tree(v, tangent.get(k), written) for k, v in primal.items()}
    if written and tangent is None and is_array(primal) and primal.dtype.kind in "fc":
        return DualArray(primal, zeros_tangent(primal))
    if not _is_float_value(primal) or tangent is None:
        return primal
    if np.shape(tangent) != _batch_shape(np.shape(primal)):
        raise ValueError(f"jvp: a tangent of shape {np.shape(tangent)} for a primal of "
                         f"shape {np.shape(primal)}")
    if is_array(primal):
        return DualArray(primal, np.array(tangent, dtype=primal.dtype, copy=True) if
                         not is_array(tangent) else tangent.astype(primal.dtype, copy=True))
    if _BATCH.get() is not None:
        return Dual(primal, np.asarray(tangent, dtype=np.result_type(primal, np.float64)))
    return Dual(primal, type(primal)(tangent) if isinstance(primal, float) else tangent)


def _tangent_out(out):
    """The tangent of f's result, in its structure: zeros where it has none."""
    if isinstance(out, DualValue):
        t = out.tangent
        return float(t) if isinstance(out.primal, float) and np.ndim(t) == 0 else t
    if isinstance(out, (tuple, list)):
        parts = [_tangent_out(part) for part in out]
        return parts if isinstance(out, list) else _rebuilt(out, parts)
    if isinstance(out, dict):
        return {k: _tangent_out(v) for k, v in out.items()}
    return rules.zeros_like_value(out)


def _located(exc, f):
    """`exc` as an UnsupportedError naming the line of f (or of its helpers) where it
    happened: the innermost traceback frame outside bytrev and the libraries."""
    frame_line = None
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        module = tb.tb_frame.f_globals.get("__name__", "") if not isinstance(
            tb.tb_frame.f_globals, DualNamespace) else tb.tb_frame.f_globals.real.get(
                "__name__", "")
        if not _in_library(module):
            frame_line = (code.co_qualname, code.co_filename, tb.tb_lineno)
        tb = tb.tb_next
    function, filename, line = frame_line or (getattr(f, "__qualname__", repr(f)), "?", None)
    construct = exc.construct if isinstance(exc, UnsupportedError) else \
        "a conversion of a dual number to float or to a NumPy array"
    hint = exc.hint if isinstance(exc, UnsupportedError) else (
        f"{exc}; a callable there has no forward rule: register one with bytrev.defjvp")
    return UnsupportedError(construct, function=function, filename=filename, line=line,
                            hint=hint)


def jacfwd(f, argnums=0):
    """`J(*args)`: the Jacobian of f with respect to the positional argument `argnums`,
    of shape `out.shape + arg.shape`, by one forward run on dual numbers whose tangents
    are all the unit vectors at once (a batch: each tangent has a leading axis of the
    argument's size)."""
    if not isinstance(argnums, int):
        raise TypeError("jacfwd takes one argnums (an int)")

    def jac(*args):
        arg = args[argnums]
        if not _is_float_value(arg):
            raise TypeError(f"jacfwd: argument {argnums} of {f.__qualname__} is not a float "
                            "or a float array")
        n = max(np.size(arg), 1)
        tangents = [None] * len(args)
        eye = np.eye(n, dtype=np.result_type(arg, np.float64),  # on arg's device
                     **({"like": arg} if is_device_array(arg) else {}))
        tangents[argnums] = np.reshape(eye, (n,) + np.shape(arg))
        token = _BATCH.set(n)
        try:
            out, t = jvp(f, args, tangents)
        finally:
            _BATCH.reset(token)
        t = np.broadcast_to(t if is_array(t) else np.asarray(t),  # zeros: no tangent
                            (n,) + np.shape(out))
        return np.moveaxis(t, 0, -1).reshape(np.shape(out) + np.shape(arg))

    functools.update_wrapper(jac, f)
    return jac
