"""Derivative rules: the vector-Jacobian products (VJPs) of the functions a program calls.

`bytrev.grad(f)` runs `f` forward, then runs its adjoint backward: every call
`ans = func(*args, **kwargs)` in `f` becomes, in the backward sweep,

    cotangents = vjp_rule(func)(g, ans, *args, **kwargs)

where `g` is the cotangent of `ans` (d loss / d ans) and `cotangents[i]` is what flows
into positional argument `i`. This module holds those rules, looked up by the identity of
the callable, and the small algebra of cotangent values the code generator needs.

Conventions
-----------
* `ZERO` is the zero cotangent (a singleton). Rules are never called with `g = ZERO`;
  `add`, `materialize` and `accumulate_index` accept it.
* A rule returns a tuple with one entry per *positional* argument: that argument's
  cotangent, or `None` when it gets none (an axis, a shape, an index, a mask, an integer,
  a non-differentiable function). Keyword arguments never get cotangents: pass
  differentiable values positionally. `None` also stands for a cotangent that is zero by
  construction (the losing argument of the builtin `max`).
* A cotangent has the structure of its argument: broadcasting is undone (`unbroadcast`),
  a Python float gets a Python float or a NumPy scalar, a list or tuple argument (as in
  `np.array([x, y])` or `np.concatenate((a, b))`) gets a list or tuple with one cotangent
  per element (`ZERO` for constants such as ints). Integer and boolean inputs (Python ints,
  integer arrays) get no gradient.
* Rules never change `g`, `ans` or the arguments. What they return may be `g` itself, share
  memory with it, or be a read-only broadcast view (`np.broadcast_to`): never update a
  cotangent in place unless you made it. The one exception is the buffer `getitem_vjp`
  returns for an array: it is always fresh, and `accumulate_index` updates it in place.
* Rules are backend-agnostic so that they also run on CuPy arrays: they create arrays with
  `np.zeros_like(x)` and friends or array methods, call NumPy functions that dispatch
  through `__array_function__` / `__array_ufunc__`, and never convert an argument that may
  be an array with `np.asarray` or `float()`. (Python numbers and lists are converted: they
  cannot hold device arrays in a call NumPy accepted.) A scalar `g` for a 0-d CuPy result
  (such as the seed 1.0) is first made a 0-d CuPy array (`_like_result`).
* Complex numbers are not supported (rules are written for real inputs).

Elementwise functions (NumPy ufuncs, `math` functions, the builtins `abs`, `pow`, `min`
and `max` of two numbers) are defined by derivative *templates*: one Python expression per
positional argument in the names `g`, `ans`, `x` (first argument) and `y` (second), with
`np` and `math` the modules. `elementwise_template(func, nargs)` gives them to the code
generator, which inlines them in float code; the runtime rules are compiled from the same
strings. Other callables have hand-written rules, grouped below as reductions, shape and
copy operations, linear algebra, builtins, operators, subscripts, methods and attributes.

Subgradients at kinks: `abs` and `norm` give 0 at 0; `maximum`, `minimum`, `max`, `min`,
`amax`, `amin` and the builtins `max`/`min` split `g` evenly among tied arguments or
elements (like JAX); `clip` gives `g` to the argument when it sits exactly on a bound.

Public registration: `defvjp(func, *rules_per_arg)`, `defvjp_all(func, rule)` and
`definverse(func, inverse)` (read back with `inverse_of(func)`; the analysis undoes an
overwrite through func by calling the inverse).
"""
from __future__ import annotations

import builtins
import itertools
import math
import numbers
import string
import sys

import numpy as np

from .backend import is_device_array, like
from .errors import UnsupportedError

__all__ = [
    "ZERO", "vjp_rule", "method_rule", "attribute_rule", "binop_vjp", "unop_vjp",
    "getitem_vjp", "accumulate_index", "unbroadcast", "add", "zeros_like_value",
    "materialize", "elementwise_template", "defvjp", "defvjp_all", "definverse", "inverse_of",
]


# ---------------------------------------------------------------------------------------
# The zero cotangent and the algebra of cotangent values


class _Zero:
    """The type of `ZERO`, the cotangent of a value that does not influence the result.

    It is deliberately inert (no arithmetic): code that forgets to handle it fails loudly
    instead of silently turning it into an object array."""

    __slots__ = ()
    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self):
        return "ZERO"

    def __reduce__(self):
        return "ZERO"  # pickles and copies as the module attribute: still the singleton


ZERO = _Zero()


def _differentiable(value) -> bool:
    """Whether `value` can carry a gradient: floats, complex numbers, float arrays and
    sequences (which may hold floats) can; ints, bools, integer and boolean arrays,
    strings and other objects cannot."""
    if type(value) is float:  # the common case first
        return True
    dtype = getattr(value, "dtype", None)
    if isinstance(dtype, np.dtype):
        return dtype.kind in "fc"
    return isinstance(value, (float, complex, list, tuple))


def _rebuild(like, parts: list):
    """`parts` in the container type of `like`: a list, a tuple, or `like`'s namedtuple."""
    if isinstance(like, list):
        return parts
    if hasattr(like, "_fields"):
        return type(like)(*parts)
    return tuple(parts)


def _sum_to_shape(c, shape: tuple):
    """`c` summed over the axes along which it was broadcast from `shape` (and broadcast
    up to `shape` where it is smaller, e.g. a scalar cotangent of a one-element array)."""
    c_shape = np.shape(c)
    if c_shape == shape:
        return c
    lead = len(c_shape) - len(shape)
    axes = tuple(i for i, n in enumerate(c_shape)
                 if i < lead or (n != 1 and shape[i - lead] == 1))
    if axes:
        c = c.sum(axis=axes, keepdims=True)
    if lead > 0:
        c = c.reshape(c.shape[lead:])
    return c if np.shape(c) == shape else np.broadcast_to(c, shape)


def unbroadcast(c, like):
    """The cotangent `c` of a broadcast result, reduced to the cotangent of `like`: summed
    over the broadcast axes; a scalar sum when `like` is a Python number, a NumPy scalar
    or a 0-d array; split into a list/tuple when `like` is one (`ZERO` for constant
    elements)."""
    shape = getattr(like, "shape", None)
    if shape:  # an array with at least one axis
        return _sum_to_shape(c, shape)
    if shape is None and type(like) is not float and isinstance(like, (list, tuple)):
        c = _sum_to_shape(c, np.shape(like))
        return _rebuild(like, [unbroadcast(c[i], element) if _differentiable(element) else ZERO
                               for i, element in enumerate(like)])
    # a Python number (no shape), a NumPy scalar or a 0-d array (shape ())
    return c.sum() if getattr(c, "ndim", 0) else c


_PLAIN_VALUES = frozenset((float, np.float64, np.ndarray))


def add(a, b):
    """The sum of two cotangents of the same value. `ZERO` is the identity; tuples and
    lists add elementwise; dicts by key (a key missing from one side counts as `ZERO`, so
    the sparse dicts of `getitem_vjp` merge). Never changes `a` or `b`."""
    if a is ZERO:
        return b
    if b is ZERO:
        return a
    if type(a) in _PLAIN_VALUES:  # the common case first: these run once per operation
        return a + b
    if isinstance(a, (list, tuple)):
        return _rebuild(a, [add(x, y) for x, y in zip(a, b, strict=True)])
    if isinstance(a, dict):
        total = dict(a)
        for key, value in b.items():
            total[key] = add(total[key], value) if key in total else value
        return total
    return a + b


def zeros_like_value(x):
    """The zero cotangent of `x`, materialised: 0.0 for a float, 0 for an int or bool
    (integer inputs get zero gradient), a zero NumPy scalar or `np.zeros_like` array of
    the same dtype, the same structure for tuples, lists and dicts, and None for values
    that have no cotangent (strings, None, functions, ...)."""
    kind = type(x)
    if kind is float:
        return 0.0
    if kind is int or kind is bool:
        return 0
    if kind is complex:
        return 0j
    if isinstance(x, (list, tuple)):
        return _rebuild(x, [zeros_like_value(element) for element in x])
    if isinstance(x, dict):
        return {key: zeros_like_value(value) for key, value in x.items()}
    if isinstance(x, np.generic):
        return kind(0)
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        return np.zeros_like(x)
    if isinstance(x, numbers.Real):  # a dual number (forward mode over a gradient)
        return 0.0
    return None


def materialize(c, like):
    """`c` with every `ZERO` (or None) replaced by `zeros_like_value` of the matching part
    of `like`, in `like`'s structure: tuples stay tuples, lists lists, namedtuples keep
    their type, and dicts get all of `like`'s keys."""
    if c is ZERO or c is None:
        return zeros_like_value(like)
    if isinstance(like, (list, tuple)):
        return _rebuild(like, [materialize(part, element)
                               for part, element in zip(c, like, strict=True)])
    if isinstance(like, dict):
        return {key: materialize(c.get(key, ZERO), value) for key, value in like.items()}
    return c


# ---------------------------------------------------------------------------------------
# The registry


_VJPS: dict = {}  # id(func) -> (func, rule); keeping func alive keeps its id unique
_INVERSES: dict = {}  # id(func) -> (func, inverse)
_ON_REGISTER: list = []  # cache_clear of the caches of compiled forms (api, gradient)
_TEMPLATES: dict = {}  # id(func) -> derivative templates, one per positional argument


def vjp_rule(func):
    """The rule registered for the callable `func` (looked up by identity), or None."""
    entry = _VJPS.get(id(func))
    if entry is None and _register_scipy():
        entry = _VJPS.get(id(func))
    if entry is None:  # CuPy's functions share NumPy's rules, which dispatch back to CuPy
        entry = _VJPS.get(id(_numpy_function_of(func)))
    return None if entry is None else entry[1]


def _numpy_function_of(func):
    """The NumPy function a CuPy function mirrors (cupy.sum -> np.sum, the ufunc named
    'cupy_sin' -> np.sin, cupy.linalg.solve -> np.linalg.solve), or None."""
    module = getattr(func, "__module__", None) or type(func).__module__ or ""
    if not module.startswith(("cupy.", "cupyx.")) and module != "cupy":
        return None
    name = getattr(func, "__name__", "").removeprefix("cupy_")
    namespace = np.linalg if ".linalg" in module else np.fft if ".fft" in module else np
    return getattr(namespace, name, None)


def _set_vjp(func, rule):
    """Register a rule (bytrev's own, at import or on first use: nothing compiled yet
    can have read another rule for func)."""
    _VJPS[id(func)] = (func, rule)
    return func


def _forget_compiled():
    """A user's registration changes how functions compile: drop the compiled ones."""
    for forget in _ON_REGISTER:
        forget()


def defvjp_all(func, rule):
    """Register `rule(g, ans, *args, **kwargs) -> tuple` (one cotangent or None per
    positional argument) as the VJP of `func`, replacing any earlier rule; functions
    bytrev compiled before are compiled again. Returns func."""
    _set_vjp(func, rule)
    _forget_compiled()
    return func


def defvjp(func, *rules_per_arg):
    """Register the VJP of `func` one argument at a time, in autograd's style:
    `rules_per_arg[i](g, ans, *args, **kwargs)` returns the cotangent of positional
    argument i, shaped like it (see `unbroadcast`). A rule given as None, or missing, means
    no gradient for that argument, so `defvjp(func)` marks `func` non-differentiable.
    Replaces any earlier rule; returns func."""
    def rule(g, ans, *args, **kwargs):
        per_arg_rules = (rules_per_arg + (None,) * len(args))[:len(args)]
        return tuple(None if per_arg is None else per_arg(g, ans, *args, **kwargs)
                     for per_arg in per_arg_rules)
    return defvjp_all(func, rule)


def definverse(func, inverse):
    """Record `inverse` as the inverse of `func` in its first argument:
    `inverse(func(x, *rest), *rest) == x`. The reversible form then undoes a statement
    that overwrites x through func (`x = func(x)`, `y = 2 * func(x, c) + 1`) by calling
    `inverse` instead of stashing x; `bytrev.inverse(func)` returns `inverse`. Functions
    bytrev compiled before the registration are compiled again. Returns func."""
    _INVERSES[id(func)] = (func, inverse)
    _forget_compiled()
    return func


def inverse_of(func):
    """The inverse registered with `definverse` for `func`, or None."""
    entry = _INVERSES.get(id(func))
    return None if entry is None else entry[1]


def elementwise_template(func, nargs=None):
    """The derivative templates of an elementwise callable: one Python expression per
    positional argument, in `g` (the cotangent of the result), `ans` (the result), `x`
    and `y` (the arguments), with `np` and `math` the modules; None for other callables.
    `math` and builtin templates hold for Python floats, NumPy ones for arrays and
    scalars; they do not undo broadcasting. They describe calls with exactly that many
    positional arguments (`math.log(x)`, not `math.log(x, base)`; `max(x, y)`, not
    `max(x, y, z)`): given `nargs`, the number of positional arguments of the call, the
    answer is None unless they describe it."""
    templates = _TEMPLATES.get(id(func))
    if nargs is not None and templates is not None and len(templates) != nargs:
        return None
    return templates


def _like_result(g, ans):
    """`g` in the array type of `ans`: a Python or NumPy scalar cotangent of a 0-d CuPy
    result (the seed 1.0 of a scalar result is one) becomes a 0-d CuPy array, so that
    rules build the cotangents of CuPy arguments on the device, not with NumPy."""
    return like(g, ans)


def _padded(leading_rule):
    """A full rule from `leading_rule`, which returns the cotangents of the leading
    positional arguments only: the rest get None; extra entries (for parameters the call
    did not pass positionally) are dropped. `g` comes in the array type of `ans`."""
    def rule(g, ans, *args, **kwargs):
        cotangents = leading_rule(_like_result(g, ans), ans, *args, **kwargs)
        missing = len(args) - len(cotangents)
        return cotangents + (None,) * missing if missing >= 0 else cotangents[:len(args)]
    rule.__name__ = rule.__qualname__ = leading_rule.__name__
    rule.__doc__ = leading_rule.__doc__
    return rule


def _rule_for(*funcs):
    """Decorator: register a leading-arguments rule (see `_padded`) for each of `funcs`
    that exists in this NumPy (None stands for one that does not)."""
    def register(leading_rule):
        rule = _padded(leading_rule)
        for func in funcs:
            if func is not None:
                _set_vjp(func, rule)
        return leading_rule
    return register


def _no_gradient(g, ans, *args, **kwargs):
    """The rule of a non-differentiable callable: no argument gets a cotangent."""
    return (None,) * len(args)


# ---------------------------------------------------------------------------------------
# Elementwise functions, from derivative templates

_LN2 = "0.6931471805599453"
_LN10 = "2.302585092994046"
_TWO_OVER_SQRT_PI = "1.1283791670955126"

# NumPy ufunc names, math function names, and one derivative template per argument, in
# g, ans, x, y; "{m}" stands for the module ("np" or "math"). Derivatives that are
# infinite (sqrt at 0, x ** 0.5 at 0) give inf with a warning on arrays and raise
# ZeroDivisionError in float code.
_ELEMENTWISE = (
    ("negative", "", ("-g",)),
    ("positive", "", ("g",)),
    ("conjugate", "", ("np.conjugate(g)",)),
    ("absolute fabs", "", ("g * np.sign(x)",)),
    ("", "fabs", ("(g if x > 0 else -g if x < 0 else 0.0)",)),
    ("exp", "exp", ("g * ans",)),
    ("exp2", "exp2", (f"g * ans * {_LN2}",)),
    ("expm1", "expm1", ("g * (ans + 1)",)),
    ("log", "log", ("g / x",)),
    ("log2", "log2", (f"g / (x * {_LN2})",)),
    ("log10", "log10", (f"g / (x * {_LN10})",)),
    ("log1p", "log1p", ("g / (1 + x)",)),
    ("sqrt", "sqrt", ("g / (2 * ans)",)),
    ("cbrt", "cbrt", ("g / (3 * ans * ans)",)),
    ("square", "", ("2 * g * x",)),
    ("reciprocal", "", ("-g * ans * ans",)),
    ("sin", "sin", ("g * {m}.cos(x)",)),
    ("cos", "cos", ("-g * {m}.sin(x)",)),
    ("tan", "tan", ("g * (1 + ans * ans)",)),
    ("arcsin", "asin", ("g / {m}.sqrt(1 - x * x)",)),
    ("arccos", "acos", ("-g / {m}.sqrt(1 - x * x)",)),
    ("arctan", "atan", ("g / (1 + x * x)",)),
    ("sinh", "sinh", ("g * {m}.cosh(x)",)),
    ("cosh", "cosh", ("g * {m}.sinh(x)",)),
    ("tanh", "tanh", ("g * (1 - ans * ans)",)),
    ("arcsinh", "asinh", ("g / {m}.sqrt(x * x + 1)",)),
    ("arccosh", "acosh", ("g / {m}.sqrt(x * x - 1)",)),
    ("arctanh", "atanh", ("g / (1 - x * x)",)),
    ("degrees rad2deg", "degrees", (f"g * {180 / math.pi!r}",)),
    ("radians deg2rad", "radians", (f"g * {math.pi / 180!r}",)),
    ("", "erf", (f"g * {_TWO_OVER_SQRT_PI} * math.exp(-x * x)",)),
    ("", "erfc", (f"-g * {_TWO_OVER_SQRT_PI} * math.exp(-x * x)",)),
    # two arguments
    ("add", "", ("g", "g")),
    ("subtract", "", ("g", "-g")),
    ("multiply", "", ("g * y", "g * x")),
    ("divide", "", ("g / y", "-g * ans / y")),
    # x ** y: no 0 * inf when y == 0 (the exponent there is y - 1 unless x == 0 too, so
    # that its derivative in y, a Hessian's entry, is right); log(x) only where x > 0
    ("power", "", ("g * y * x ** np.where(y, y - 1, np.where(x, -1.0, 1.0))",
                   "g * ans * np.log(np.where(x > 0, x, 1))")),
    ("", "pow", ("(g * y * x ** (y - 1) if y else 0.0)",
                 "(g * ans * math.log(x) if x > 0 else 0.0)")),
    ("remainder", "", ("g", "-g * np.floor(x / y)")),
    ("fmod", "fmod", ("g", "-g * {m}.trunc(x / y)")),
    ("arctan2", "atan2", ("g * y / (x * x + y * y)", "-g * x / (x * x + y * y)")),
    ("hypot", "hypot", ("g * x / ans", "g * y / ans")),
    ("logaddexp", "", ("g * np.exp(x - ans)", "g * np.exp(y - ans)")),
    # ties split g evenly; fmax/fmin pass over a nan argument to the other one
    ("maximum", "", ("g * ((x > y) + 0.5 * (x == y))", "g * ((y > x) + 0.5 * (x == y))")),
    ("minimum", "", ("g * ((x < y) + 0.5 * (x == y))", "g * ((y < x) + 0.5 * (x == y))")),
    ("fmax", "", ("g * ((x > y) + 0.5 * (x == y) + np.isnan(y) * ~np.isnan(x))",
                  "g * ((y > x) + 0.5 * (x == y) + np.isnan(x) * ~np.isnan(y))")),
    ("fmin", "", ("g * ((x < y) + 0.5 * (x == y) + np.isnan(y) * ~np.isnan(x))",
                  "g * ((y < x) + 0.5 * (x == y) + np.isnan(x) * ~np.isnan(y))")),
)


def _numbers_or_arrays(number_rule, array_rule):
    """A rule that applies `number_rule` when every argument is a Python number (or a
    NumPy float scalar), and `array_rule` otherwise."""
    def rule(g, ans, *args, **kwargs):
        numbers = all(isinstance(arg, (int, float)) for arg in args)
        return (number_rule if numbers else array_rule)(g, ans, *args, **kwargs)
    return rule


def _compile_templates(templates):
    """The templates as functions of (g, ans, x[, y])."""
    params = "g, ans, x" if len(templates) == 1 else "g, ans, x, y"
    namespace = {"np": np, "math": math}
    return tuple(eval(f"lambda {params}: {template}", namespace) for template in templates)


def _template_rule(templates):
    """The runtime rule of an elementwise function: each template evaluated for the
    arguments that can carry a gradient, with broadcasting undone. Arguments after the
    templated ones (a ufunc's positional `out`) get None. (Written out for one and two
    arguments: these rules run once per operation in scalar loops.)"""
    if len(templates) == 1:
        (dx,) = _compile_templates(templates)

        def unary(g, ans, x, *out, **kwargs):
            return (unbroadcast(dx(g, ans, x), x) if _differentiable(x) else None,
                    ) + (None,) * len(out)
        return unary
    dx, dy = _compile_templates(templates)

    def binary(g, ans, x, y, *out, **kwargs):
        return (unbroadcast(dx(g, ans, x, y), x) if _differentiable(x) else None,
                unbroadcast(dy(g, ans, x, y), y) if _differentiable(y) else None,
                ) + (None,) * len(out)
    return binary


for _numpy_names, _math_names, _templates in _ELEMENTWISE:
    for _module_name, _module, _names in (("np", np, _numpy_names), ("math", math, _math_names)):
        _written = tuple(t.format(m=_module_name) for t in _templates)
        for _name in _names.split():
            _func = getattr(_module, _name)
            _TEMPLATES[id(_func)] = _written
            _set_vjp(_func, _template_rule(_written))
del _numpy_names, _math_names, _templates, _module_name, _module, _names, _written, _name
del _func

# A math function called on something other than numbers (a dual number, when forward
# mode runs over a gradient) gets its NumPy twin's rule, which dispatches.
for _numpy_names, _math_names, _ in _ELEMENTWISE:
    _twin = {"fabs": np.absolute, "pow": np.power}
    for _name in _math_names.split():
        _numpy_twin = getattr(np, _numpy_names.split()[0]) if _numpy_names else _twin.get(_name)
        if _numpy_twin is not None:
            _func = getattr(math, _name)
            _set_vjp(_func, _numbers_or_arrays(vjp_rule(_func), vjp_rule(_numpy_twin)))
del _numpy_names, _math_names, _twin, _name, _numpy_twin, _func


# Builtins that take numbers or arrays: the math rule for numbers, the NumPy one otherwise.
# Their templates are the math ones (the code generator inlines templates in float code).
for _builtin, _math_twin, _numpy_twin in ((builtins.abs, math.fabs, np.absolute),
                                          (builtins.pow, math.pow, np.power)):
    _TEMPLATES[id(_builtin)] = _TEMPLATES[id(_math_twin)]
    _set_vjp(_builtin, _numbers_or_arrays(vjp_rule(_math_twin), vjp_rule(_numpy_twin)))
del _builtin, _math_twin, _numpy_twin

_log_of_one_argument = vjp_rule(math.log)  # from the table


@_rule_for(math.log)
def _math_log(g, ans, x, base=None):
    """math.log(x) and math.log(x, base)."""
    if base is None:
        return _log_of_one_argument(g, ans, x)
    return (g / (x * math.log(base)) if _differentiable(x) else None,
            -g * ans / (base * math.log(base)) if _differentiable(base) else None)


@_rule_for(math.hypot)
def _math_hypot(g, ans, *coordinates):
    """math.hypot with any number of coordinates (the templates cover two)."""
    return tuple(g * c / ans if _differentiable(c) else None for c in coordinates)


@_rule_for(np.where)
def _where(g, ans, condition, x=None, y=None):
    """np.where(condition, x, y); the condition gets no gradient (nor np.where(c))."""
    if x is None:
        return (None,)
    return (None,
            unbroadcast(np.where(condition, g, 0.0), x) if _differentiable(x) else None,
            unbroadcast(np.where(condition, 0.0, g), y) if _differentiable(y) else None)


@_rule_for(np.clip)
def _clip(g, ans, a, a_min=None, a_max=None, *rest, **kwargs):
    """np.clip(a, a_min, a_max) = minimum(maximum(a, a_min), a_max): `g` goes to a_max
    where it bounds the result, else to a_min where a is below it, else to a (also when a
    sits exactly on a bound). Bounds given as min=/max= keywords get no gradient."""
    lower = kwargs.get("min", a_min)
    upper = kwargs.get("max", a_max)
    raised = a if lower is None else np.maximum(a, lower)
    capped = False if upper is None else raised > upper  # where a_max is the result
    below = False if lower is None else a < lower  # where a_min is, unless capped
    through = g * np.logical_not(capped)
    return (unbroadcast(through * np.logical_not(below), a) if _differentiable(a) else None,
            unbroadcast(through * below, a_min) if _differentiable(a_min) else None,
            unbroadcast(g * capped, a_max) if _differentiable(a_max) else None)


# ---------------------------------------------------------------------------------------
# Reductions


def _as_array(value):
    """`value` if it is an array (NumPy or CuPy) or a NumPy scalar, else converted by
    NumPy (a Python number or list, which cannot hold device arrays)."""
    return value if hasattr(value, "ndim") else np.asarray(value)


def _reduced_axes(axis, ndim: int) -> tuple:
    """The non-negative axes a reduction with `axis` (None, an int or a tuple) removes."""
    if axis is None:
        return tuple(range(ndim))
    axes = axis if isinstance(axis, (tuple, list)) else (axis,)
    return tuple(sorted(a % ndim for a in axes))


def _unreduce(g, shape: tuple, axis, keepdims):
    """The cotangent `g` of a reduction over `axis` of an array of `shape`, broadcast
    back over the reduced axes (a read-only view)."""
    if not keepdims:
        axes = _reduced_axes(axis, len(shape))
        g = np.reshape(g, [1 if i in axes else n for i, n in enumerate(shape)])
    return np.broadcast_to(g, shape)


def _count(shape: tuple, axis) -> int:
    """How many elements each result of a reduction over `axis` combines."""
    return math.prod(shape[i] for i in _reduced_axes(axis, len(shape)))


@_rule_for(np.sum)
def _sum(g, ans, a, axis=None, dtype=None, out=None, keepdims=False, initial=None,
         where=True):
    c = _unreduce(g, np.shape(a), axis, keepdims)
    return (unbroadcast(c if where is True else c * where, a),)


@_rule_for(np.mean)
def _mean(g, ans, a, axis=None, dtype=None, out=None, keepdims=False, *, where=True):
    shape = np.shape(a)
    c = _unreduce(g, shape, axis, keepdims)
    if where is True:
        return (unbroadcast(c / _count(shape, axis), a),)
    mask = np.broadcast_to(where, shape)
    counts = mask.sum(axis=_reduced_axes(axis, len(shape)), keepdims=True)
    return (unbroadcast(c * mask / counts, a),)


def _refuse_where(name, where):
    if where is not True:
        raise UnsupportedError(f"the gradient of {name}(..., where=...)",
                               hint="apply np.where to the argument instead")


def _product_of_others(x, axes: tuple):
    """For each element of `x`, the product of the other elements it is reduced with:
    exclusive prefix times exclusive suffix products (exact with zeros, unlike ans / x)."""
    kept = [i for i in range(x.ndim) if i not in axes]
    order = kept + list(axes)
    moved = np.transpose(x, order)
    rows = moved.reshape(moved.shape[:len(kept)] + (-1,))
    ones = np.ones_like(rows[..., :1])
    before = np.cumprod(np.concatenate([ones, rows[..., :-1]], axis=-1), axis=-1)
    after = np.flip(np.cumprod(np.flip(np.concatenate([rows[..., 1:], ones], axis=-1),
                                       axis=-1), axis=-1), axis=-1)
    return np.transpose((before * after).reshape(moved.shape), _inverse_permutation(order))


@_rule_for(np.prod)
def _prod(g, ans, a, axis=None, dtype=None, out=None, keepdims=False, initial=None,
          where=True):
    """Exact also when elements are zero."""
    _refuse_where("np.prod", where)
    x = _as_array(a)
    others = _product_of_others(x, _reduced_axes(axis, x.ndim))
    return (unbroadcast(_unreduce(g, x.shape, axis, keepdims) * others, a),)


def _extremum_of(reduce):
    """The rule of the reduction `reduce` (np.max or np.min)."""
    def extremum(g, ans, a, axis=None, out=None, keepdims=False, initial=None, where=True):
        """The elements equal to the extremum share g evenly (none when `initial` wins).
        The extremum is taken again over `a` rather than read from `ans`: the backward
        run restores the two separately, and a rounding in either (`a = a * 1.1` undone
        by a division) would leave no element equal to `ans`, and no gradient."""
        x = _as_array(a)
        options = {} if initial is None else {"initial": initial}
        if where is not True:
            options["where"] = where
        hits = x == reduce(x, axis=axis, keepdims=True, **options)
        if where is not True:
            hits = hits & where
        counts = hits.sum(axis=_reduced_axes(axis, x.ndim), keepdims=True)
        c = _unreduce(g, x.shape, axis, keepdims) * hits / np.maximum(counts, 1)
        return (unbroadcast(c, a),)
    return extremum


_rule_for(np.max, np.amax)(_extremum_of(np.max))
_rule_for(np.min, np.amin)(_extremum_of(np.min))


def _centered(x, axis, ddof, correction):
    """(x - mean) / (n - ddof): the shared factor of the gradients of var and std."""
    ddof = ddof if correction is None else correction
    mean = x.mean(axis=_reduced_axes(axis, x.ndim), keepdims=True)
    return (x - mean) / (_count(x.shape, axis) - ddof)


@_rule_for(np.var)
def _var(g, ans, a, axis=None, dtype=None, out=None, ddof=0, keepdims=False, *,
         where=True, mean=None, correction=None):
    _refuse_where("np.var", where)
    x = _as_array(a)
    c = 2 * _unreduce(g, x.shape, axis, keepdims) * _centered(x, axis, ddof, correction)
    return (unbroadcast(c, a),)


@_rule_for(np.std)
def _std(g, ans, a, axis=None, dtype=None, out=None, ddof=0, keepdims=False, *,
         where=True, mean=None, correction=None):
    """Infinite (nan) where the standard deviation is 0."""
    _refuse_where("np.std", where)
    x = _as_array(a)
    c = _unreduce(g / ans, x.shape, axis, keepdims) * _centered(x, axis, ddof, correction)
    return (unbroadcast(c, a),)


@_rule_for(np.cumsum)
def _cumsum(g, ans, a, axis=None, dtype=None, out=None):
    """Reversed cumulative sums of g (over the flattened array when axis is None)."""
    reversed_cumsum = np.flip(np.cumsum(np.flip(g, axis), axis=axis), axis)
    return (unbroadcast(np.reshape(reversed_cumsum, np.shape(a)), a),)


@_rule_for(np.sort)
def _sort(g, ans, a, axis=-1, kind=None, order=None, **kwargs):
    """g sent back to where each sorted element came from."""
    x = _as_array(a)
    if axis is None:
        x, g, axis = x.reshape(-1), np.reshape(g, -1), 0
    c = np.zeros_like(x)
    np.put_along_axis(c, np.argsort(x, axis=axis, kind="stable"), g, axis=axis)
    return (unbroadcast(c.reshape(np.shape(a)), a),)


# ---------------------------------------------------------------------------------------
# Shape and copy operations: the cotangent is g rearranged the other way


def _inverse_permutation(order) -> list:
    inverse = [0] * len(order)
    for position, axis in enumerate(order):
        inverse[axis] = position
    return inverse


def _reshaped_like(c, a, order="C"):
    """c reshaped to the shape of `a` (an array, a number, or a list/tuple), reading and
    writing elements in `order` ('A' and 'K' mean a's memory order, as in np.reshape)."""
    if order in ("A", "K"):
        flags = getattr(a, "flags", None)
        order = "F" if flags is not None and flags.f_contiguous and not flags.c_contiguous \
            else "C"
    return unbroadcast(np.reshape(c, np.shape(a), order=order), a)


def _cast_like(c, x):
    """c in the dtype of x (the cotangent of a float32 array is float32)."""
    dtype = getattr(x, "dtype", None)
    if dtype is None or getattr(c, "dtype", dtype) == dtype:
        return c
    return c.astype(dtype)


@_rule_for(np.reshape)
def _reshape(g, ans, a, shape=None, order="C", **kwargs):
    return (_reshaped_like(g, a, order),)


@_rule_for(np.ravel)
def _ravel(g, ans, a, order="C"):
    return (_reshaped_like(g, a, order),)


@_rule_for(np.squeeze, np.expand_dims, np.copy, np.ascontiguousarray,
           np.asfortranarray, np.real)
def _same_elements(g, ans, a, *args, **kwargs):
    """Functions whose result has a's elements in a's order (only the shape may differ)."""
    return (_reshaped_like(g, a),)


@_rule_for(np.array, np.asarray, np.asanyarray)
def _array(g, ans, obj, *args, **kwargs):
    """Identity for arrays; a list/tuple of numbers or arrays gets a list/tuple. An
    integer result (dtype=int) gets no gradient."""
    if not _differentiable(ans):
        return (None,)
    return (_reshaped_like(_cast_like(g, obj), obj),)


@_rule_for(np.atleast_1d, np.atleast_2d, np.atleast_3d)
def _atleast(g, ans, *arrays):
    parts = (g,) if len(arrays) == 1 else g
    return tuple(None if part is ZERO else _reshaped_like(part, a)
                 for part, a in zip(parts, arrays))


@_rule_for(np.transpose)
def _transpose(g, ans, a, axes=None):
    if axes is None:
        return (unbroadcast(np.transpose(g), a),)
    ndim = np.ndim(a)
    return (unbroadcast(np.transpose(g, _inverse_permutation([i % ndim for i in axes])), a),)


@_rule_for(np.swapaxes)
def _swapaxes(g, ans, a, axis1, axis2):
    return (unbroadcast(np.swapaxes(g, axis1, axis2), a),)


@_rule_for(np.moveaxis)
def _moveaxis(g, ans, a, source, destination):
    return (unbroadcast(np.moveaxis(g, destination, source), a),)


@_rule_for(np.broadcast_to)
def _broadcast_to(g, ans, array, shape, **kwargs):
    return (unbroadcast(g, array),)


@_rule_for(np.roll)
def _roll(g, ans, a, shift, axis=None):
    back = -shift if np.ndim(shift) == 0 else [-s for s in shift]
    return (unbroadcast(np.roll(g, back, axis=axis), a),)


# Linear maps that are their own transpose: the cotangent is the map applied to g.
_SELF_ADJOINT = (np.flip, np.fliplr, np.flipud, np.tril, np.triu)


def _self_adjoint_rule(func):
    def self_adjoint(g, ans, a, *args, **kwargs):
        return (unbroadcast(func(g, *args, **kwargs), a),)
    return _padded(self_adjoint)


for _func in _SELF_ADJOINT:
    _set_vjp(_func, _self_adjoint_rule(_func))
del _func


@_rule_for(np.rot90)
def _rot90(g, ans, m, k=1, axes=(0, 1)):
    return (unbroadcast(np.rot90(g, -k, axes), m),)


def _diagonal_length(n1: int, n2: int, offset: int) -> int:
    return max(0, min(n1, n2 - offset) if offset >= 0 else min(n1 + offset, n2))


def _place_diagonal(d, x, offset, axis1, axis2):
    """The transpose of np.diagonal: zeros shaped like `x` with `d` (x's other axes, then
    the diagonal) on the `offset` diagonal of axes (axis1, axis2)."""
    axis1, axis2 = axis1 % x.ndim, axis2 % x.ndim
    n1, n2 = x.shape[axis1], x.shape[axis2]
    other = tuple(n for i, n in enumerate(x.shape) if i not in (axis1, axis2))
    planes = np.zeros_like(x, shape=other + (n1 * n2,))
    # in a row-major n1 x n2 plane, the diagonal elements are every (n2 + 1)-th
    start = offset if offset >= 0 else -offset * n2
    planes[..., start::n2 + 1][..., :_diagonal_length(n1, n2, offset)] = d
    return np.moveaxis(planes.reshape(other + (n1, n2)), (-2, -1), (axis1, axis2))


@_rule_for(np.diagonal)
def _diagonal(g, ans, a, offset=0, axis1=0, axis2=1):
    return (unbroadcast(_place_diagonal(g, _as_array(a), offset, axis1, axis2), a),)


@_rule_for(np.trace)
def _trace(g, ans, a, offset=0, axis1=0, axis2=1, dtype=None, out=None):
    x = _as_array(a)
    length = _diagonal_length(x.shape[axis1], x.shape[axis2], offset)
    d = np.broadcast_to(np.expand_dims(g, -1), np.shape(g) + (length,))
    return (unbroadcast(_place_diagonal(d, x, offset, axis1, axis2), a),)


@_rule_for(np.diag)
def _diag(g, ans, v, k=0):
    """np.diag builds a matrix from a vector, or takes a matrix's diagonal."""
    if np.ndim(v) == 1:
        return (unbroadcast(np.diagonal(g, k), v),)
    return (unbroadcast(_place_diagonal(g, _as_array(v), k, 0, 1), v),)


def _index_along(axis: int, index) -> tuple:
    """The index tuple that applies `index` to axis `axis` (all of the axes before it)."""
    return (slice(None),) * axis + (index,)


@_rule_for(np.take)
def _take(g, ans, a, indices, axis=None, out=None, mode="raise"):
    """Repeated indices accumulate."""
    x = _as_array(a)
    if axis is None:
        x, axis = x.reshape(-1), 0
    axis %= x.ndim
    n = x.shape[axis]
    if mode == "wrap":
        indices = np.mod(indices, n)
    elif mode == "clip":
        indices = np.clip(indices, 0, n - 1)
    c = np.zeros_like(x)
    np.add.at(c, _index_along(axis, indices), g)
    return (_reshaped_like(c, a),)


@_rule_for(np.repeat)
def _repeat(g, ans, a, repeats, axis=None):
    """Each element gets the sum of g over its copies."""
    x = _as_array(a)
    if axis is None:
        x, axis = x.reshape(-1), 0
    axis %= x.ndim
    shape = x.shape
    if np.ndim(repeats) == 0:  # the same count for every element: sum over one new axis
        grouped = np.reshape(g, shape[:axis] + (shape[axis], -1) + shape[axis + 1:])
        c = grouped.sum(axis=axis + 1)
    else:
        source = np.repeat(np.arange(shape[axis], like=x), repeats)  # each copy's origin
        c = np.zeros_like(x)
        np.add.at(c, _index_along(axis, source), g)
    return (_reshaped_like(c, a),)


@_rule_for(np.tile)
def _tile(g, ans, A, reps):
    """Sum over the tiles: g viewed as (reps0, n0, reps1, n1, ...)."""
    reps = (reps,) if np.ndim(reps) == 0 else tuple(reps)
    shape = np.shape(A)
    ndim = max(len(shape), len(reps))
    shape = (1,) * (ndim - len(shape)) + shape
    reps = (1,) * (ndim - len(reps)) + reps
    tiles = np.reshape(g, [n for pair in zip(reps, shape) for n in pair])
    return (_reshaped_like(tiles.sum(axis=tuple(range(0, 2 * ndim, 2))), A),)


def _unjoin(g, seq, shapes, axis):
    """The cotangents of the elements of `seq`, which were brought to `shapes` and joined
    along `axis` into the result whose cotangent is `g`; `ZERO` for constant elements."""
    bounds = list(itertools.accumulate(shape[axis] for shape in shapes))[:-1]
    parts = np.split(g, bounds, axis=axis)
    return _rebuild(seq, [_reshaped_like(part, e) if _differentiable(e) else ZERO
                          for part, e in zip(parts, seq)])


@_rule_for(np.concatenate)
def _concatenate(g, ans, arrays, axis=0, out=None, **kwargs):
    if axis is None:  # the flattened arrays
        return (_unjoin(g, arrays, [(np.size(e),) for e in arrays], 0),)
    return (_unjoin(g, arrays, [np.shape(e) for e in arrays], axis % np.ndim(ans)),)


@_rule_for(np.stack)
def _stack(g, ans, arrays, axis=0, out=None, **kwargs):
    axis %= np.ndim(ans)
    shapes = [np.shape(e)[:axis] + (1,) + np.shape(e)[axis:] for e in arrays]
    return (_unjoin(g, arrays, shapes, axis),)


def _column_shape(e) -> tuple:
    shape = np.shape(e)
    return shape if len(shape) >= 2 else (np.size(e), 1)


# The stacking helpers: the shape each element takes before joining, and the join axis
# (from the result's number of dimensions).
_JOINS = {
    np.vstack: (lambda e: np.shape(np.atleast_2d(e)), lambda ndim: 0),
    np.hstack: (lambda e: np.shape(np.atleast_1d(e)), lambda ndim: 0 if ndim == 1 else 1),
    np.dstack: (lambda e: np.shape(np.atleast_3d(e)), lambda ndim: 2),
    np.column_stack: (_column_shape, lambda ndim: 1),
}


def _stacking_rule(joined_shape, join_axis):
    def stacking(g, ans, tup, *args, **kwargs):
        return (_unjoin(g, tup, [joined_shape(e) for e in tup], join_axis(np.ndim(ans))),)
    return _padded(stacking)


for _func, (_joined_shape, _join_axis) in _JOINS.items():
    _set_vjp(_func, _stacking_rule(_joined_shape, _join_axis))
del _func, _joined_shape, _join_axis


# ---------------------------------------------------------------------------------------
# Linear algebra


def _matrix_transpose(a):
    return np.swapaxes(a, -1, -2)


_multiply_rule = vjp_rule(np.multiply)


@_rule_for(np.dot)
def _dot(g, ans, a, b, out=None):
    """dot(a, b) sums a's last axis against b's only axis (b 1-D) or its second-to-last."""
    if np.ndim(a) == 0 or np.ndim(b) == 0:
        return _multiply_rule(g, ans, a, b)
    x, y = _as_array(a), _as_array(b)
    a_free = list(range(x.ndim - 1))
    if y.ndim == 1:
        ga = np.tensordot(g, y, axes=0)
        gb = np.tensordot(x, g, axes=(a_free, list(range(np.ndim(g)))))
    else:  # g's axes: a's free axes, then b's batch axes and its last axis
        ga = np.tensordot(g, y, axes=(list(range(len(a_free), np.ndim(g))),
                                      list(range(y.ndim - 2)) + [y.ndim - 1]))
        gb = np.moveaxis(np.tensordot(x, g, axes=(a_free, list(range(len(a_free))))), 0, -2)
    return (unbroadcast(ga, a) if _differentiable(a) else None,
            unbroadcast(gb, b) if _differentiable(b) else None)


@_rule_for(np.matmul, getattr(np.linalg, "matmul", None))
def _matmul(g, ans, x1, x2, *args, **kwargs):
    """1-D operands are promoted to matrices (a row on the left, a column on the right);
    the batch axes broadcast."""
    a, b = _as_array(x1), _as_array(x2)
    if b.ndim == 1:
        b, g = b[:, None], np.expand_dims(g, -1)
    if a.ndim == 1:
        a, g = a[None, :], np.expand_dims(g, -2)
    ga = _matmul_or_product(g, _matrix_transpose(b))
    gb = _matmul_or_product(_matrix_transpose(a), g)
    return (_reshaped_like(_sum_to_shape(ga, a.shape), x1) if _differentiable(x1) else None,
            _reshaped_like(_sum_to_shape(gb, b.shape), x2) if _differentiable(x2) else None)


def _matmul_or_product(x, y):
    """x @ y; a broadcast product when the contracted axis has length 1 (the outer product
    `g h^T` of a matrix-vector product's cotangent), which is the same numbers at half the
    cost of a BLAS call with an inner dimension of 1."""
    return x * y if x.shape[-1] == 1 else np.matmul(x, y)


@_rule_for(np.outer)
def _outer(g, ans, a, b, out=None):
    return (_reshaped_like(np.dot(g, np.ravel(b)), a) if _differentiable(a) else None,
            _reshaped_like(np.dot(np.ravel(a), g), b) if _differentiable(b) else None)


@_rule_for(np.inner)
def _inner(g, ans, a, b):
    """inner(a, b) sums the last axes of a and b against each other."""
    if np.ndim(a) == 0 or np.ndim(b) == 0:
        return _multiply_rule(g, ans, a, b)
    x, y = _as_array(a), _as_array(b)
    n_free = x.ndim - 1
    ga = np.tensordot(g, y, axes=(list(range(n_free, np.ndim(g))), list(range(y.ndim - 1))))
    gb = np.tensordot(g, x, axes=(list(range(n_free)), list(range(n_free))))
    return (unbroadcast(ga, a) if _differentiable(a) else None,
            unbroadcast(gb, b) if _differentiable(b) else None)


@_rule_for(np.vdot)
def _vdot(g, ans, a, b):
    return (_reshaped_like(g * np.ravel(b), a) if _differentiable(a) else None,
            _reshaped_like(g * np.ravel(a), b) if _differentiable(b) else None)


def _argsort(values) -> list:
    return sorted(range(len(values)), key=values.__getitem__)


@_rule_for(np.tensordot)
def _tensordot(g, ans, a, b, axes=2):
    x, y = _as_array(a), _as_array(b)
    if np.ndim(axes) == 0:
        a_axes, b_axes = list(range(x.ndim - axes, x.ndim)), list(range(axes))
    else:
        a_axes, b_axes = ([axes_] if np.ndim(axes_) == 0 else list(axes_) for axes_ in axes)
        a_axes = [i % x.ndim for i in a_axes]
        b_axes = [i % y.ndim for i in b_axes]
    a_free = [i for i in range(x.ndim) if i not in a_axes]
    b_free = [i for i in range(y.ndim) if i not in b_axes]
    # tensordot(g, b) has a's free axes, then a's contracted ones in the order of b's
    # axes; transposing by the inverse of that order puts them back in place (and
    # likewise for b).
    ga = np.tensordot(g, y, axes=(list(range(len(a_free), np.ndim(g))), b_free))
    ga = np.transpose(ga, _inverse_permutation(
        a_free + [a_axes[i] for i in _argsort(b_axes)]))
    gb = np.tensordot(x, g, axes=(a_free, list(range(len(a_free)))))
    gb = np.transpose(gb, _inverse_permutation(
        [b_axes[i] for i in _argsort(a_axes)] + b_free))
    return (unbroadcast(ga, a) if _differentiable(a) else None,
            unbroadcast(gb, b) if _differentiable(b) else None)


@_rule_for(np.kron)
def _kron(g, ans, a, b):
    """g viewed as (a0, b0, a1, b1, ...) contracts with b for a, and with a for b."""
    x, y = _as_array(a), _as_array(b)
    ndim = max(x.ndim, y.ndim)
    x = x.reshape((1,) * (ndim - x.ndim) + x.shape)
    y = y.reshape((1,) * (ndim - y.ndim) + y.shape)
    pairs = np.reshape(g, [n for pair in zip(x.shape, y.shape) for n in pair])
    a_axes, b_axes = list(range(0, 2 * ndim, 2)), list(range(1, 2 * ndim, 2))
    ga = np.tensordot(pairs, y, axes=(b_axes, list(range(ndim))))
    gb = np.tensordot(x, pairs, axes=(list(range(ndim)), a_axes))
    return (_reshaped_like(ga, a) if _differentiable(a) else None,
            _reshaped_like(gb, b) if _differentiable(b) else None)


_SUBLIST_LETTERS = string.ascii_uppercase + string.ascii_lowercase


def _einsum_call(args):
    """(subscripts, operands, positions of the operands in args) for both call forms,
    np.einsum("ij,jk->ik", a, b) and np.einsum(a, [0, 1], b, [1, 2], [0, 2])."""
    if isinstance(args[0], str):
        return args[0], args[1:], range(1, len(args))

    def labels(sublist):  # 0-25 as A-Z, 26-51 as a-z: sorted letters keep the number order
        return "".join("..." if s is Ellipsis else _SUBLIST_LETTERS[s] for s in sublist)
    count = len(args) // 2
    inputs = ",".join(labels(args[2 * i + 1]) for i in range(count))
    output = "->" + labels(args[-1]) if len(args) % 2 else ""
    return inputs + output, args[0:2 * count:2], range(0, 2 * count, 2)


def _einsum_terms(subscripts: str, operands):
    """The input terms and the output term of an einsum, with each '...' spelled out as
    letters (aligned on the right, as NumPy broadcasts them), and an iterator over the
    letters still unused."""
    subscripts = subscripts.replace(" ", "")
    inputs, arrow, output = subscripts.partition("->")
    inputs = inputs.split(",")
    unused = (letter for letter in string.ascii_letters if letter not in subscripts)
    ellipsis_ndim = max((np.ndim(op) - len(term) + 3 for term, op in zip(inputs, operands)
                         if "..." in term), default=0)
    broadcast = "".join(itertools.islice(unused, ellipsis_ndim))

    def spell(term, ndim):
        return term.replace("...", broadcast[ellipsis_ndim - (ndim - len(term) + 3):])
    inputs = [spell(term, np.ndim(op)) for term, op in zip(inputs, operands)]
    if arrow:
        output = output.replace("...", broadcast)
    else:  # implicit output: the broadcast axes, then the letters used once, sorted
        letters = "".join(inputs)
        output = broadcast + "".join(sorted(
            letter for letter in set(letters) if letters.count(letter) == 1
            and letter not in broadcast))
    return inputs, output, unused


def _einsum_operand_cotangent(g, i, inputs, output, operands, unused, optimize):
    """The cotangent of operand i: the einsum of the other operands and g into operand i's
    term. A letter repeated in the term (a diagonal, as in "ii->") becomes a fresh letter
    tied to the first by an identity matrix; a letter summed out in operand i alone gets a
    vector of ones (g does not depend on it)."""
    operand = _as_array(operands[i])
    terms = [term for j, term in enumerate(inputs) if j != i] + [output]
    factors = [op for j, op in enumerate(operands) if j != i] + [g]
    available = set("".join(terms))
    target = ""
    for letter, n in zip(inputs[i], operand.shape):
        if letter in target:
            fresh = next(unused)
            terms.append(letter + fresh)
            factors.append(np.eye(n, like=operand))
            target += fresh
        else:
            if letter not in available:
                terms.append(letter)
                factors.append(np.ones(n, like=operand))
            target += letter
    return np.einsum(",".join(terms) + "->" + target, *factors, optimize=optimize)


# Elements above which the cotangent einsums search a contraction path (the search costs
# about 20 us, which small einsums in loops should not pay).
_EINSUM_PATH_SIZE = 1 << 14


def _einsum(g, ans, *args, out=None, optimize=False, **kwargs):
    """np.einsum with subscripts (explicit or implicit output, '...') or sublists."""
    g = _like_result(g, ans)
    subscripts, operands, positions = _einsum_call(args)
    inputs, output, unused = _einsum_terms(subscripts, operands)
    cotangents = [None] * len(args)
    if not optimize and np.size(g) + sum(np.size(op) for op in operands) > _EINSUM_PATH_SIZE:
        optimize = "greedy"  # BLAS-backed contractions: 4x faster on large operands
    for i, position in enumerate(positions):
        if _differentiable(operands[i]):
            c = _einsum_operand_cotangent(g, i, inputs, output, operands, unused, optimize)
            cotangents[position] = unbroadcast(c, operands[i])
    return tuple(cotangents)


_set_vjp(np.einsum, _einsum)

# NumPy 2 reads solve's b as one vector only when it is 1-D; NumPy 1 whenever it has one
# axis fewer than a.
_NUMPY_2 = int(np.__version__.split(".")[0]) >= 2


@_rule_for(np.linalg.solve)
def _solve(g, ans, a, b):
    """x = solve(a, b): b gets solve(a^T, g), a gets -solve(a^T, g) x^T."""
    vector = np.ndim(b) == 1 if _NUMPY_2 else np.ndim(b) == np.ndim(a) - 1
    g_columns = np.expand_dims(g, -1) if vector else g
    x_columns = np.expand_dims(ans, -1) if vector else ans
    gb = np.linalg.solve(_matrix_transpose(a), g_columns)
    ga = -np.matmul(gb, _matrix_transpose(x_columns))
    return (unbroadcast(ga, a) if _differentiable(a) else None,
            unbroadcast(gb[..., 0] if vector else gb, b) if _differentiable(b) else None)


@_rule_for(np.linalg.inv)
def _inv(g, ans, a):
    inverse_t = _matrix_transpose(ans)
    return (-np.matmul(np.matmul(inverse_t, g), inverse_t),)


@_rule_for(np.linalg.det)
def _det(g, ans, a):
    """d det(a) = det(a) inv(a)^T (a must be invertible)."""
    scale = np.expand_dims(g * ans, (-2, -1))
    return (scale * _matrix_transpose(np.linalg.inv(a)),)


@_rule_for(np.linalg.slogdet)
def _slogdet(g, ans, a):
    """Only the log-determinant carries a gradient: d log|det(a)| = inv(a)^T."""
    if g[1] is ZERO:
        return (None,)
    g_logdet = _like_result(g[1], ans[1])
    return (np.expand_dims(g_logdet, (-2, -1)) * _matrix_transpose(np.linalg.inv(a)),)


@_rule_for(np.linalg.norm)
def _norm(g, ans, x, ord=None, axis=None, keepdims=False):
    """Vector norms (ord p, inf, -inf; the 2-norm of the flattened array by default) and
    matrix norms ('fro', 'nuc', 2, -2, 1, -1, inf, -inf). Gradient 0 where the norm is 0;
    ties among maximal entries share g."""
    a = _as_array(x)
    if axis is None:
        axes = tuple(range(a.ndim))
    else:
        axes = tuple(i % a.ndim for i in (axis if isinstance(axis, tuple) else (axis,)))

    def kept(value):  # the value with the reduced axes kept as length 1
        return value if keepdims else np.reshape(
            value, [1 if i in axes else n for i, n in enumerate(a.shape)])
    gk, norm = kept(g), kept(ans)
    nonzero_norm = np.where(norm == 0, 1, norm)
    if len(axes) != 2 or ord in (None, "fro"):  # a vector norm (Frobenius: all entries)
        if ord in (None, "fro", 2):
            c = a * (gk / nonzero_norm)
        elif ord in (np.inf, -np.inf):  # the largest or smallest magnitude
            hits = np.abs(a) == norm
            c = np.sign(a) * hits * gk / hits.sum(axis=axes, keepdims=True)
        elif ord == 0:  # the number of nonzero entries
            return (None,)
        else:
            c = np.sign(a) * np.abs(a) ** (ord - 1) * gk / nonzero_norm ** (ord - 1)
    elif ord in ("nuc", 2, -2):
        u, _, vh = np.linalg.svd(np.moveaxis(a, axes, (-2, -1)), full_matrices=False)
        if ord == 2:
            u, vh = u[..., :, :1], vh[..., :1, :]
        elif ord == -2:
            u, vh = u[..., :, -1:], vh[..., -1:, :]
        c = np.moveaxis(np.matmul(u, vh), (-2, -1), axes) * gk
    else:  # 1, -1: the largest or smallest column sum; inf, -inf: row sum
        rows, columns = axes
        summed, across = (rows, columns) if ord in (1, -1) else (columns, rows)
        hits = np.abs(a).sum(axis=summed, keepdims=True) == norm
        c = np.sign(a) * hits * gk / hits.sum(axis=across, keepdims=True)
    return (unbroadcast(c, x),)


def _logsumexp(g, ans, a, axis=None, b=None, keepdims=False, return_sign=False):
    """scipy.special.logsumexp: g times the softmax of a (weighted by b). b gets no
    gradient; with return_sign=True only the value carries one."""
    if return_sign:
        if g[0] is ZERO:
            return (None,)
        g, ans = _like_result(g[0], ans[0]), ans[0]
    x = _as_array(a)
    weights = np.exp(x - _unreduce(ans, x.shape, axis, keepdims))
    if b is not None:
        weights = weights * b
    return (unbroadcast(weights * _unreduce(g, x.shape, axis, keepdims), a),)


_scipy_registered = False


def _register_scipy() -> bool:
    """Register scipy.special.logsumexp once the program has imported scipy.special
    (importing it here would slow down `import bytrev`); True if it registered now."""
    global _scipy_registered
    special = sys.modules.get("scipy.special")
    if _scipy_registered or special is None:
        return False
    _scipy_registered = True
    _set_vjp(special.logsumexp, _padded(_logsumexp))
    return True


# ---------------------------------------------------------------------------------------
# Builtins


# max(x, y) and min(x, y) of two numbers share np.maximum's and np.minimum's templates
# (they call no NumPy function); the rules below also take more arguments or one iterable.
_TEMPLATES[id(builtins.max)] = _TEMPLATES[id(np.maximum)]
_TEMPLATES[id(builtins.min)] = _TEMPLATES[id(np.minimum)]


def _builtin_extremum_of(pick):
    """The rule of the builtin `pick` (max or min)."""
    def builtin_extremum(g, ans, *args, key=None, default=None):
        """max/min of several arguments or of one list, tuple or 1-D array: the items
        equal to the extremum (by `key`) share g evenly; the others get None (or ZERO in
        a list). As for np.max, the extremum is found again over the items as the
        backward run restored them, not read from `ans`."""
        items = args[0] if len(args) == 1 else args
        if len(args) == 1 and hasattr(items, "ndim"):  # an array: compare all at once
            if key is not None:
                raise UnsupportedError("the gradient of max/min(array, key=...)")
            hits = items == getattr(items, pick.__name__)()
            return (unbroadcast(g * hits / hits.sum(), items),)
        keyed = list(items) if key is None else [key(item) for item in items]
        target = pick(keyed) if keyed else None
        hits = [value == target for value in keyed]
        share = g if sum(hits) == 1 else g / max(sum(hits), 1)
        cotangents = [unbroadcast(share, item) if hit and _differentiable(item) else None
                      for item, hit in zip(items, hits)]
        if len(args) > 1:
            return tuple(cotangents)
        return (_rebuild(items, [ZERO if c is None else c for c in cotangents]),)
    return builtin_extremum


_set_vjp(builtins.max, _builtin_extremum_of(builtins.max))
_set_vjp(builtins.min, _builtin_extremum_of(builtins.min))


@_rule_for(builtins.sum)
def _builtin_sum(g, ans, iterable, start=0):
    """sum over a list or tuple (each item gets g) or an array (each row gets g)."""
    if isinstance(iterable, (list, tuple)):
        items = _rebuild(iterable, [unbroadcast(g, item) if _differentiable(item) else ZERO
                                    for item in iterable])
    elif _differentiable(iterable):
        shape = np.shape(iterable)
        items = np.broadcast_to(_sum_to_shape(g, shape[1:]), shape)
    else:
        items = None
    return items, unbroadcast(g, start) if _differentiable(start) else None


@_rule_for(builtins.float, np.float64, np.float32, np.float16)
def _to_float(g, ans, x=0.0):
    """float(x) and the NumPy float types: the identity (for one-element arrays too)."""
    return (unbroadcast(g, x) if _differentiable(x) else None,)


# Callables that are piecewise constant, return integers, booleans or shapes, or build
# constants: no argument gets a gradient. (linspace's endpoints included.)
_NON_DIFFERENTIABLE = {
    np: """less less_equal greater greater_equal equal not_equal floor ceil round around
        rint trunc fix sign signbit floor_divide heaviside argmax argmin argsort argwhere
        nonzero flatnonzero searchsorted digitize unique count_nonzero bincount isin
        shape ndim size isnan isinf isfinite isclose allclose array_equal all any
        logical_and logical_or logical_not logical_xor bitwise_and bitwise_or bitwise_xor
        invert left_shift right_shift zeros ones empty full zeros_like ones_like
        empty_like full_like arange linspace logspace geomspace eye identity tri
        result_type can_cast""",
    math: """floor ceil trunc isnan isinf isfinite isclose factorial gcd lcm comb perm
        isqrt copysign""",
    builtins: """len int round bool isinstance issubclass range type id hash str repr
        callable divmod all any""",
}
for _module, _names in _NON_DIFFERENTIABLE.items():
    for _name in _names.split():
        _func = getattr(_module, _name, None)
        if _func is not None:
            _set_vjp(_func, _no_gradient)
del _module, _names, _name, _func


# ---------------------------------------------------------------------------------------
# Operators


_BINARY_OPERATORS = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide,
                     "**": np.power, "@": np.matmul, "//": np.floor_divide,
                     "%": np.remainder}
_BINARY_RULES = {op: vjp_rule(func) for op, func in _BINARY_OPERATORS.items()}
_BINARY_RULES["**"] = vjp_rule(builtins.pow)  # math's rule for numbers, NumPy's for arrays
_SEQUENCES = (list, tuple, str)


# ---------------------------------------------------------------------------------------
# Shapes without values: what the gradient sweep computes for a sub-expression that its
# parent's rule needs only for the shape (an operand of `+`/`-`, the argument of np.sum),
# instead of recomputing an einsum or a product just to learn its shape.


class Abstract:
    """The shape and dtype of an array that was not computed."""
    __slots__ = ("shape", "dtype")

    def __init__(self, shape, dtype):
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)

    @property
    def ndim(self):
        return len(self.shape)

    def __repr__(self):
        return f"Abstract({self.shape}, {self.dtype})"


def _promotable(v):
    """What np.result_type takes for `v` (Python numbers stay weakly typed), or None."""
    if isinstance(v, (Abstract, np.ndarray, np.generic)):
        return v.dtype
    return v if type(v) in (int, float, complex, bool) else None


def abstract_elementwise(*operands):
    """The Abstract of an elementwise `+`, `-`, `*`, `**` or unary minus of the operands
    (arrays, NumPy or Python numbers, Abstracts); None for any other operand (a list, a
    user's object): the caller then computes the value."""
    dtypes = [_promotable(v) for v in operands]
    if any(d is None for d in dtypes):
        return None
    return Abstract(np.broadcast_shapes(*(np.shape(v) for v in operands)), np.result_type(*dtypes))


def abstract_einsum(subscripts, *operands):
    """The Abstract of np.einsum(subscripts, *operands) on arrays, or None."""
    if type(subscripts) is not str or not all(
            isinstance(v, (np.ndarray, Abstract)) for v in operands):
        return None
    inputs, output, _ = _einsum_terms(subscripts, operands)
    sizes = {}
    for term, v in zip(inputs, operands):
        for letter, n in zip(term, v.shape):
            if n != 1 or letter not in sizes:  # a length-1 axis broadcasts
                sizes[letter] = n
    return Abstract(tuple(sizes[letter] for letter in output),
                    np.result_type(*(v.dtype for v in operands)))


def _sequence_binop(op, g, x, y):
    """`x + y` concatenates and `x * n` repeats sequences: the cotangent is cut apart."""
    if isinstance(x, str) or isinstance(y, str):
        return None, None
    if op == "+":
        return g[:len(x)], g[len(x):]
    sequence, copies = (x, y) if isinstance(x, (list, tuple)) else (y, x)
    n = len(sequence)
    c = ZERO
    for start in range(0, n * copies, n):
        c = add(c, _rebuild(sequence, list(g[start:start + n])))
    c = None if c is ZERO else c
    return (c, None) if sequence is x else (None, c)


def binop_vjp(op: str, g, ans, x, y) -> tuple:
    """The cotangents (of x, of y) of `ans = x <op> y` for '+', '-', '*', '/', '**', '@',
    '//' and '%' on Python numbers, NumPy scalars and arrays, mixed, with broadcasting
    undone; also concatenation and repetition of lists and tuples."""
    g = like(g, x if is_device_array(x) else y)  # a number g of a device result (`a @ b`)
    if op == "**" and type(y) is int:  # a constant exponent: no log, no 0 * inf at x = 0
        return (g * y * x ** (y - 1) if y and _differentiable(x) else None), None
    if (op == "+" or op == "*") and (isinstance(x, _SEQUENCES) or isinstance(y, _SEQUENCES)):
        return _sequence_binop(op, g, x, y)
    return _BINARY_RULES[op](g, ans, x, y)


def unop_vjp(op: str, g, ans, x):
    """The cotangent of x for `ans = <op> x`: '-' and '+'; None for 'not' and '~' (and
    for integer operands)."""
    if op not in ("-", "+", "not", "~"):
        raise ValueError(f"unknown unary operator {op!r}")
    if op in ("not", "~") or not _differentiable(x):
        return None
    return -g if op == "-" else g


# ---------------------------------------------------------------------------------------
# Subscripts


def _each_element_once(index) -> bool:
    """Whether `buf[index] += g` adds each element of g into a different element of buf:
    true for basic indexing (ints, slices, Ellipsis, None) and boolean masks, not for
    integer arrays or lists, which may repeat an element."""
    for part in index if type(index) is tuple else (index,):
        if part is None or part is Ellipsis or isinstance(part, (int, np.integer, slice)):
            continue
        if getattr(part, "dtype", None) is not None and part.dtype.kind == "b":
            continue
        return False
    return True


def accumulate_index(buf, index, g) -> None:
    """`buf[index] += g`, in place, for an array buffer (repeated integer indices
    accumulate, g broadcasts to the indexed shape), a list buffer (items and slices, added
    with `add`) or a dict buffer (by key). Does nothing when g is ZERO."""
    if g is ZERO:
        return
    if type(index) is int and type(buf) is np.ndarray:  # once per loop iteration: cheap
        buf[index] += g
    elif isinstance(buf, list):
        if isinstance(index, slice):
            for position, part in zip(range(len(buf))[index], g):
                buf[position] = add(buf[position], part)
        else:
            buf[index] = add(buf[index], g)
    elif isinstance(buf, dict):
        buf[index] = add(buf[index], g) if index in buf else g
    elif _each_element_once(index):
        buf[index] += g
    else:
        np.add.at(buf, index, g)


def getitem_vjp(g, x, index):
    """The cotangent of x for `ans = x[index]`, as a new value: for an array, a fresh
    buffer of zeros with g added at index (which `accumulate_index` may update in place);
    for a list or tuple, one of ZERO with g at the index (g's items for a slice); for a
    dict, the sparse dict {index: g}; None when x cannot carry a gradient."""
    if isinstance(x, dict):
        return {index: g}
    if isinstance(x, (list, tuple)):
        cotangent = [ZERO] * len(x)
        if isinstance(index, slice):
            for position, part in zip(range(len(x))[index], g):
                cotangent[position] = part
        else:
            cotangent[index] = g
        return _rebuild(x, cotangent)
    if not _differentiable(x):
        return None
    buffer = np.zeros_like(x)
    accumulate_index(buffer, index, g)
    return buffer


# ---------------------------------------------------------------------------------------
# Methods and attributes of arrays


def _is_array(obj) -> bool:
    """A NumPy array or scalar, or an array of another backend (CuPy)."""
    return isinstance(obj, (np.ndarray, np.generic)) or \
        hasattr(type(obj), "__array_function__")


# Methods that take the arguments of a NumPy function after the array: x.sum(axis) is
# np.sum(x, axis), so they share its rule. (x.flatten() is np.ravel(x), x.conj() is
# np.conjugate(x).)
_METHOD_FUNCTION_NAMES = {"flatten": "ravel", "conj": "conjugate"}
_METHODS_AS_FUNCTIONS = {
    name: getattr(np, _METHOD_FUNCTION_NAMES.get(name, name)) for name in """
        sum mean prod max min var std dot ravel flatten squeeze copy clip cumsum swapaxes
        repeat take trace diagonal conj conjugate all any argmax argmin argsort nonzero
        round searchsorted""".split()
}


def _method_reshape(g, ans, x, *shape, order="C"):
    """x.reshape(2, 3) or x.reshape((2, 3))."""
    return (_reshaped_like(g, x, order),)


def _method_transpose(g, ans, x, *axes):
    """x.transpose(), x.transpose(1, 0) or x.transpose((1, 0))."""
    if len(axes) == 1:
        axes = axes[0]
    return _transpose(g, ans, x, axes or None)


def _method_astype(g, ans, x, dtype, *args, **kwargs):
    """A float result gets g cast back to x's dtype; an integer or bool one nothing."""
    if not (_differentiable(ans) and _differentiable(x)):
        return (None,)
    return (_cast_like(g, x),)


def _method_item(g, ans, x, *index):
    """x.item(), x.item(flat_index), x.item(i, j) or x.item((i, j))."""
    c = np.zeros_like(x)
    if not index:
        c[...] = g
    elif len(index) == 1 and not isinstance(index[0], tuple):
        c[np.unravel_index(index[0] % c.size, c.shape)] = g
    else:
        c[index if len(index) > 1 else index[0]] = g
    return (c,)


_METHOD_RULES = {
    "reshape": _padded(_method_reshape),
    "transpose": _padded(_method_transpose),
    "astype": _padded(_method_astype),
    "item": _padded(_method_item),
}


def method_rule(obj, name: str):
    """The rule for the method call `obj.name(*args, **kwargs)` on an array or NumPy
    scalar, as `rule(g, ans, obj, *args, **kwargs)` with cotangents for (obj, *args);
    None for other objects and unknown methods."""
    if not _is_array(obj):
        return None
    rule = _METHOD_RULES.get(name)
    if rule is not None:
        return rule
    function = _METHODS_AS_FUNCTIONS.get(name)
    return None if function is None else vjp_rule(function)


def _transposed(g, ans, obj):
    return (np.transpose(g),)


def _matrix_transposed(g, ans, obj):
    return (_matrix_transpose(g),)


def _real_part(g, ans, obj):
    return (g,)


def _no_attribute_gradient(g, ans, obj):
    return (None,)


_ATTRIBUTE_RULES = {"T": _transposed, "mT": _matrix_transposed, "real": _real_part}
_ATTRIBUTE_RULES.update(dict.fromkeys(
    ("shape", "ndim", "size", "dtype", "itemsize", "nbytes", "strides", "imag"),
    _no_attribute_gradient))


def attribute_rule(obj, name: str):
    """The rule `rule(g, ans, obj) -> (cotangent,)` for reading `obj.name` of a real array
    or NumPy scalar: .T, .mT, .real; .imag and the metadata (shape, ndim, size, dtype,
    itemsize, nbytes, strides) get none. None for other objects and attributes."""
    if not _is_array(obj) or obj.dtype.kind == "c":
        return None
    return _ATTRIBUTE_RULES.get(name)
