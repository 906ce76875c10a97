"""The gradient API: `grad`, `value_and_grad`, `vjp`, `jacobian`.

Shaped like autograd's and JAX's. Each runs the reversible form's forward run (which
records the tape: branch bits, trip counts, stashed values) and then the gradient sweep
of `bytrev.adjoint`, which restores earlier states by running the function backwards and
accumulates adjoints on the way. The arguments come back restored (arrays the function
changes in place are put back into the caller's objects), and the restored values are
compared with the originals: floating-point inverses are not exact, and a drift larger
than `DRIFT_TOLERANCE` (relative) warns with `ReversalDriftWarning`, or raises
`ReversalError` with `strict=True`.

Conventions: gradients have the structure and types of the arguments (a Python float
gets a float, an array an array of its shape and dtype, a dict/list/tuple the same
container). Integer and boolean values get no gradient: asking for one through `argnums`
raises TypeError; integer leaves inside a container get zeros. Keyword arguments of
NumPy primitives get no gradient.
"""
from __future__ import annotations

import copy
import functools
import math
import numbers
import warnings

import numpy as np

from . import forward as forward_mode
from . import rules, scalars
from .adjoint import GradGenerator
from .analysis import cached_per_function, unchanged
from .api import _run_backward, reversible
from .backend import is_array
from .errors import BytrevError, ReversalDriftWarning, ReversalError, UnsupportedError
from .tape import bit_bytes

DRIFT_TOLERANCE = 1e-6  # max |restored - original| / (max |original| + DRIFT_FLOOR)
DRIFT_FLOOR = 1e-6  # so that a state that starts at 0.0 is measured on an absolute scale


def _differentiable(value) -> bool:
    """Whether a value can carry a gradient (floats, complex, float arrays, containers
    holding any)."""
    if isinstance(value, (bool, np.bool_)) or value is None:
        return False
    if isinstance(value, (float, complex, np.floating, np.complexfloating)):
        return True
    if isinstance(value, numbers.Integral):
        return False
    dtype = getattr(value, "dtype", None)
    if dtype is not None:
        return getattr(dtype, "kind", "f") in "fc"
    if isinstance(value, (tuple, list)):
        return any(_differentiable(v) for v in value)
    if isinstance(value, dict):
        return any(_differentiable(v) for v in value.values())
    return False


class GradientProgram:
    """Per function: its reversible form plus gradient sweeps compiled per argument-type
    signature (which arguments are active, which are Python floats)."""

    dependencies: dict = {}  # what compiling read (cached_per_function sets it)

    def __init__(self, f):
        self.function = f
        self.reversible = reversible(f)
        an = self.reversible.analysis
        self.params = an.params
        cells = f.__closure__ or ()
        self.freevars = an.function.freevars
        self._free_inputs = [name for name, cell in zip(self.freevars, cells)
                             if _differentiable(_cell_value(cell))]
        self._sweeps = {}

    def sweep_for(self, values, wrt=None):
        """The gradient sweep for these argument types, differentiating with respect to
        the parameters named in `wrt` (None: every parameter holding a float value).
        Leaving out what nobody asked for saves its adjoint work (a time step `dt`)."""
        an = self.reversible.analysis
        inputs = tuple(p for p, v in zip(an.params, values)
                       if _differentiable(v) and (wrt is None or p in wrt))
        duals = forward_mode.carries_duals(values)
        key = (tuple((type(v), getattr(v, "dtype", None)) for v in values), inputs, duals)
        sweep = self._sweeps.get(key)
        if sweep is None:
            types = [scalars.type_name(v) for v in values]
            floats = scalars.FloatVars(an.body, an.params, types, an.context)
            inputs = list(inputs)
            gen = GradGenerator(an, self.function, floats, inputs + self._free_inputs, types)
            if duals:  # forward over reverse: the sweep sees f's globals for dual numbers
                gen.namespace = forward_mode.namespace_of(self.function.__globals__)
            sweep, _ = gen.build_gradient()
            if len(self._sweeps) < 32:
                self._sweeps[key] = sweep
        return sweep

    def vjp(self, args, kwargs, strict=False, result=None, wrt=None):
        """Run the function forward; return (result, pullback) where pullback(ct)
        returns (cotangents of the parameters in signature order, cotangents of the
        closure cells in `freevars` order). A caller that already has the `result`
        of this call may pass it: a function whose reversible form needs no tape then
        is not run forward again. Parameters outside `wrt` (names) get no cotangent."""
        if not unchanged(self.dependencies):  # a name it was compiled from was rebound
            return gradient_program(self.function).vjp(args, kwargs, strict, result, wrt)
        rev = self.reversible
        values = rev._bind(args, kwargs)
        sweep = self.sweep_for(values, wrt)
        # Undoing `p["b"] += e` by `p["b"] -= e` leaves a NumPy scalar where the caller's
        # dict held a Python float when e is a NumPy scalar: note where the containers f
        # changes in place hold floats, to make those floats again.
        float_items = {i: list(_float_items(v)) for i, (p, v) in
                       enumerate(zip(self.params, values))
                       if p in rev._in_place_params and isinstance(v, (dict, list))}
        containers = []
        if result is None or rev.analysis.sites or rev._changes_in_place:
            # The sweep consumes the records right away: they stay unpacked lists.
            result, containers, _ = rev.record(values)
            containers = [list(bit_bytes(site, c)) if site.bitmap else c
                          for site, c in zip(rev.analysis.sites, containers)]
        changes_in_place = rev._changes_in_place
        kept = copy.deepcopy(result) if changes_in_place else result

        def pullback(ct):
            held = [values[i] for i in rev._held_index]
            start = copy.deepcopy(kept) if changes_in_place else kept
            records = [c[:] for c in containers]  # pullback may be called again
            restored, grads, free = _run_backward(rev.ir, sweep, records, ct, start, *held)
            _put_back(rev, values, restored, strict)
            for i, paths in float_items.items():
                _make_floats(values[i], paths)
            free_by_name = dict(zip(self._free_inputs, free))
            return grads, tuple(free_by_name.get(n, rules.ZERO) for n in self.freevars)

        return result, pullback


def _cell_value(cell):
    try:
        return cell.cell_contents
    except ValueError:
        return None


def gradient_program(f) -> GradientProgram:
    """f's GradientProgram (cached as `reversible(f)` is)."""
    return _gradient_program(f)


_gradient_program = cached_per_function(GradientProgram)
rules._ON_REGISTER.append(_gradient_program.cache_clear)


def _put_back(rev, originals, restored, strict):
    """Restore changed arrays into the caller's objects and check the drift of values
    the backward run recomputed."""
    in_place = rev._in_place_params
    worst, worst_param = 0.0, None
    for p, original, value in zip(rev.analysis.params, originals, restored):
        if original is value:
            continue
        if p in in_place:
            if is_array(original) and is_array(value) and value.shape == original.shape:
                original[...] = value
            continue
        d = _relative_drift(original, value)
        if d > worst:
            worst, worst_param = d, p
    if worst > DRIFT_TOLERANCE:
        fn = rev.ir
        msg = (f"{fn.qualname} ({fn.filename}:{fn.firstlineno}): running it backwards "
               f"restored {worst_param} with a relative drift of {worst:.3g} (tolerance "
               f"{DRIFT_TOLERANCE:g}); floating-point inverses are not exact, and the "
               "gradient was computed along the drifted states")
        if strict:
            raise ReversalError(msg)
        warnings.warn(msg, ReversalDriftWarning, stacklevel=4)


def _float_items(container, path=()):
    """The paths (tuples of keys) to the Python floats within nested dicts and lists."""
    items = container.items() if isinstance(container, dict) else enumerate(container)
    for key, value in items:
        if type(value) is float:
            yield path + (key,)
        elif isinstance(value, (dict, list)):
            yield from _float_items(value, path + (key,))


def _make_floats(container, paths):
    """Make the items at `paths` (from `_float_items`) Python floats again."""
    for path in paths:
        inner = container
        for key in path[:-1]:
            inner = inner[key]
        inner[path[-1]] = float(inner[path[-1]])


def _relative_drift(original, value) -> float:
    original, value = forward_mode.primal(original), forward_mode.primal(value)
    if type(original) is float and type(value) is float:  # scalar code: no NumPy calls
        diff = abs(value - original)
        return diff / (abs(original) + DRIFT_FLOOR) if math.isfinite(diff) else float("inf")
    try:
        if isinstance(original, (tuple, list)):
            return max([_relative_drift(o, v) for o, v in zip(original, value)] or [0.0])
        if isinstance(original, dict):
            return max([_relative_drift(original[k], value[k]) for k in original] or [0.0])
        if not _differentiable(original):
            return 0.0
        if not is_array(original):  # a NumPy scalar or a complex number
            original, value = np.asarray(original), np.asarray(value)
        if not original.size:
            return 0.0
        # two scalars come to the host (a synchronisation each for device arrays)
        diff = float(np.max(np.abs(value - original)))
        scale = float(np.max(np.abs(original))) + DRIFT_FLOOR
        return diff / scale if math.isfinite(diff) else float("inf")
    except (TypeError, ValueError):
        return 0.0


# --------------------------------------------------------------------------- public API


def _check_argnums(f, args, argnums):
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    for i in nums:
        if not -len(args) <= i < len(args):
            raise TypeError(f"argnums {i} is out of range for {len(args)} positional arguments "
                            f"of {f.__qualname__}")
        if not _differentiable(args[i]):
            raise TypeError(
                f"{f.__qualname__}: argument {i} is a {type(args[i]).__name__} without a "
                "floating-point value; bytrev differentiates only with respect to float "
                "values (floats, float arrays, containers of them)")
    return nums


def _gradient_of(ct, like):
    """The cotangent `ct` of a value `like`, with its structure and types."""
    return _typed_like(rules.materialize(ct, like), like)


def _typed_like(g, like):
    """Python float leaves of `like` get Python floats (a rule may give NumPy scalars)."""
    if type(forward_mode.primal(like)) is float:
        return forward_mode.as_float(g) if np.ndim(g) == 0 else g
    if isinstance(like, (tuple, list)) and isinstance(g, (tuple, list)):
        return type(like)(_typed_like(a, b) for a, b in zip(g, like))
    if isinstance(like, dict) and isinstance(g, dict):
        return {k: _typed_like(g[k], like[k]) for k in like}
    return g


def _is_scalar(value) -> bool:
    return isinstance(value, (numbers.Number, np.generic)) or \
        (hasattr(value, "shape") and value.shape == ())


def _unit(value):
    """The seed 1 of the type of a scalar result."""
    if is_array(value):
        return np.ones_like(value)
    return type(value)(1) if isinstance(value, (float, np.floating)) else 1.0


def value_and_grad(f, argnums=0, has_aux=False, *, strict=False):
    """`g(*args, **kwargs) -> (value, gradient)`: f's value and its gradient with respect
    to the positional argument(s) `argnums` (an int, or a tuple of ints giving a tuple of
    gradients). f must return a scalar (or `(scalar, aux)` with `has_aux`; then the
    value is `(scalar, aux)`). `strict=True` turns the drift warning into an error.
    When f is itself a derivative made by bytrev (`grad(grad(g))`), its gradient is
    computed by forward mode, one run per element of the differentiated arguments."""
    if _is_derivative(f):
        return _derivative(_forward_value_and_grad(f, argnums, has_aux), f)
    program = gradient_program(f)

    def value_and_gradient(*args, **kwargs):
        nums = _check_argnums(f, args, argnums)
        wrt = {program.params[i % len(args)] for i in nums}
        out, pullback = program.vjp(args, kwargs, strict, wrt=wrt)
        value = out
        if has_aux:
            if not (isinstance(out, tuple) and len(out) == 2):
                raise BytrevError(f"{f.__qualname__} was differentiated with has_aux=True but "
                                  "did not return a pair (value, aux)")
            value = out[0]
        if not _is_scalar(value):
            raise BytrevError(
                f"{f.__qualname__} returned a {type(value).__name__}"
                f"{' of shape ' + str(value.shape) if hasattr(value, 'shape') else ''}; "
                "grad needs a scalar output: use bytrev.vjp(f, *args) for a vector-Jacobian "
                "product or bytrev.jacobian(f) for the whole Jacobian")
        seed = _unit(value)
        grads, _ = pullback((seed, rules.ZERO) if has_aux else seed)
        picked = tuple(_gradient_of(grads[i % len(args)], args[i]) for i in nums)
        return out, (picked[0] if isinstance(argnums, int) else picked)

    return _derivative(value_and_gradient, f)


def grad(f, argnums=0, has_aux=False, *, strict=False):
    """`g(*args, **kwargs)`: the gradient of scalar-valued f with respect to the
    positional argument(s) `argnums`; with `has_aux`, `(gradient, aux)`."""
    vg = value_and_grad(f, argnums, has_aux, strict=strict)

    def gradient(*args, **kwargs):
        out, g = vg(*args, **kwargs)
        return (g, out[1]) if has_aux else g

    return _derivative(gradient, f)


def vjp(f, *args, strict=False, **kwargs):
    """`(out, vjp_fn)`: f's value and a function mapping a cotangent of the output
    (same structure as `out`) to the tuple of cotangents of the positional arguments."""
    program = gradient_program(f)
    out, pullback = program.vjp(args, kwargs, strict)

    def vjp_fn(ct):
        grads, _ = pullback(ct)
        return tuple(_gradient_of(grads[i], a) if _differentiable(a) else None
                     for i, a in enumerate(args))

    return out, vjp_fn


def jacobian(f, argnums=0, *, strict=False):
    """`J(*args, **kwargs)`: the Jacobian of f (array-valued or scalar) with respect to
    the positional argument `argnums`, as an array of shape `out.shape + arg.shape`, one
    reverse sweep per output element."""
    if not isinstance(argnums, int):
        raise TypeError("jacobian takes one argnums (an int)")
    if _is_derivative(f):  # jacobian(grad(g)): the Hessian, forward over reverse
        return forward_mode.jacfwd(f, argnums)
    program = gradient_program(f)

    def jac(*args, **kwargs):
        _check_argnums(f, args, argnums)
        out, pullback = program.vjp(args, kwargs, strict,
                                    wrt={program.params[argnums % len(args)]})
        arg = args[argnums]
        out_arr = out if is_array(out) else np.asarray(out)
        rows = []
        for k in range(max(out_arr.size, 1)):
            seed = np.zeros_like(out_arr, dtype=np.result_type(out_arr.dtype, np.float64))
            seed.reshape(-1)[k] = 1.0
            ct = seed if is_array(out) else type(out)(seed[()]) \
                if isinstance(out, (float, np.floating)) else seed
            grads, _ = pullback(ct)
            g = _gradient_of(grads[argnums], arg)
            rows.append(g if is_array(g) else np.asarray(g))
        return np.stack(rows).reshape(out_arr.shape + np.shape(arg))

    return _derivative(jac, f)


# --------------------------------------------------------------------------- higher derivatives
# Forward over reverse: the gradient sweep itself runs on dual numbers (bytrev.forward),
# so one sweep gives the gradient and its directional derivative, a Hessian-vector
# product, at about twice a gradient's cost and memory.


def hvp(f, x, v, *args, **kwargs):
    """The Hessian of scalar-valued `f(x, *args, **kwargs)` with respect to x, times v
    (x and v floats or float arrays of one shape): d/dt grad f(x + t v) at t = 0."""
    _, hv = forward_mode.jvp(lambda y: grad(f)(y, *args, **kwargs), (x,), (v,))
    return hv


def hessian(f, argnums=0):
    """`H(*args, **kwargs)`: the Hessian of scalar-valued f with respect to the positional
    argument `argnums`, of shape `arg.shape + arg.shape`: one forward-over-reverse sweep
    per element of the argument."""
    if not isinstance(argnums, int):
        raise TypeError("hessian takes one argnums (an int)")
    return _derivative(jacobian(grad(f, argnums), argnums), f)


def _derivative(made, f):
    """`made` (a derivative of f) with f's name and docs, and marked as a derivative:
    bytrev differentiates it again by forward mode, not by lifting its bytecode."""
    functools.update_wrapper(made, f)
    made.__bytrev_derivative__ = True
    return made


def _is_derivative(f) -> bool:
    return getattr(f, "__bytrev_derivative__", False) is True


def _forward_value_and_grad(f, argnums, has_aux):
    """value_and_grad of a derivative f (scalar-valued) by forward mode."""
    if has_aux:
        raise TypeError("has_aux is not supported when differentiating a derivative")

    def value_and_gradient(*args, **kwargs):
        nums = _check_argnums(f, args, argnums)
        call = functools.partial(f, **kwargs)
        out, picked = None, []
        for i in nums:
            arg = args[i]
            if isinstance(arg, forward_mode.DualValue):
                raise UnsupportedError("a third derivative (forward mode over forward mode)",
                                       function=f.__qualname__,
                                       hint="bytrev nests one forward mode over reverse mode")
            if not (isinstance(arg, float) or (is_array(arg) and arg.dtype.kind == "f")):
                raise TypeError(f"{f.__qualname__}: the gradient of a derivative is taken "
                                "with respect to floats and float arrays only")
            g = np.zeros(np.shape(arg), dtype=np.result_type(arg, np.float64))
            for k in np.ndindex(g.shape):
                unit = np.zeros_like(g)
                unit[k] = 1.0
                tangents = [None] * len(args)
                tangents[i] = unit if is_array(arg) else 1.0
                out, t = forward_mode.jvp(call, args, tangents)
                if not _is_scalar(out):
                    raise BytrevError(f"{f.__qualname__} returned a non-scalar; grad needs a "
                                      "scalar output: use bytrev.jacobian or bytrev.hessian")
                g[k] = t
            picked.append(float(g) if isinstance(arg, float) else g.astype(arg.dtype))
        return out, (picked[0] if isinstance(argnums, int) else tuple(picked))
    return value_and_gradient
