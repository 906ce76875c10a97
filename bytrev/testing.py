"""Checks for users' CI: gradients against finite differences, inverses by round trip.

    from bytrev.testing import check_grad, check_inverse
    check_grad(energy, x0, v0, 0.01, 20, argnums=(0, 1))
    check_inverse(step, x, v, 0.1)

    @given(x=arrays(8), v=arrays(8))          # hypothesis strategies for such inputs
    def test_energy(x, v): check_grad(energy, x, v, 0.01, 20)

Both raise `CheckFailed` (an AssertionError, so pytest reports it as a failed assertion)
with the worst element, what was expected and what bytrev gave, and the input; on
success they return what they compared (the gradients; the restored arguments).

`check_grad` compares `bytrev.grad` (and, unless `modes=("reverse",)`, forward mode's
`bytrev.jvp` along the same directions) with central differences. For a differentiated
argument of at most `FULL_SIZE` elements it checks every element of the gradient; for a
larger one it checks `directions` random projections `g . u` against the directional
difference `(f(x + h u) - f(x - h u)) / 2h`, which costs two calls of f each instead of two
per element. The step `h` and the tolerances default by dtype: h = eps ** (1/3) times the
argument's magnitude (the step that balances truncation against rounding), rtol = 1e-5
for float64 and 1e-2 for float32; atol is rtol times the largest value compared, at
least rtol (central differences are off by about h^2 times the third derivative even
where the gradient is 0; pass `atol` for functions whose gradients are much below 1).
"""
from __future__ import annotations

import copy
import functools
import inspect

import numpy as np

from .api import inverse, reversible
from .backend import is_array
from .errors import BytrevError
from .forward import jvp
from .gradient import grad

FULL_SIZE = 64  # elements up to which every element of a gradient is checked
RTOL = {np.dtype(np.float64): 1e-5, np.dtype(np.float32): 1e-2, np.dtype(np.float16): 1e-1}


class CheckFailed(BytrevError, AssertionError):
    """A gradient or an inverse that does not match; the message says where and by how much."""


def check_grad(f, *args, argnums=0, rtol=None, atol=None, step=None, directions=4, seed=0,
               modes=("reverse", "forward"), **kwargs):
    """Check `bytrev.grad(f, argnums)` (mode "reverse") and `bytrev.jvp` (mode "forward")
    at `args` against central finite differences; return the gradients (a tuple when
    argnums is a tuple). A differentiated argument is a float, a float array, or a
    tuple/list/dict nesting them (a pytree): each float leaf is checked on its own,
    integer leaves are left alone."""
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    got = grad(f, argnums=argnums)(*copy.deepcopy(args), **kwargs)
    grads = got if isinstance(argnums, tuple) else (got,)
    rng = np.random.default_rng(seed)
    for i, g in zip(nums, grads):
        leaves = float_leaves(args[i])
        if not leaves:
            raise TypeError(f"check_grad: argument {i} of {f.__qualname__} holds no float "
                            "or float array")
        for path, leaf in leaves:
            _check_leaf(f, args, kwargs, i, path, leaf, _leaf_at(g, path), rtol, atol, step,
                        directions, rng, modes)
    return got


def _check_leaf(f, args, kwargs, i, path, leaf, g, rtol, atol, step, directions, rng, modes):
    """Compare the gradient `g` of one float leaf of argument i, and forward mode's
    directional derivatives there, with central differences."""
    x = np.asarray(leaf)
    h = step if step is not None else \
        float(np.finfo(x.dtype).eps ** (1 / 3) * max(1.0, float(np.max(np.abs(x), initial=0))))
    r = rtol if rtol is not None else RTOL.get(x.dtype, 1e-5)
    g = np.asarray(g, dtype=np.float64)

    def at_leaf(value):
        """The arguments (copied) with `value` at the leaf."""
        call = list(copy.deepcopy(args))
        new_leaf = type(leaf)(value) if _is_float(leaf) else value.astype(x.dtype)
        call[i] = _replaced(call[i], path, new_leaf)
        return call

    def moved(direction):
        """The directional difference quotient of f at the leaf, along `direction`."""
        values = [float(f(*at_leaf(x + sign * h * direction), **kwargs)) for sign in (1.0, -1.0)]
        return (values[0] - values[1]) / (2 * h)

    def forward(direction):
        """Forward mode's derivative of f at the leaf, along `direction`."""
        tangents = [None] * len(args)
        tangents[i] = _replaced(_nothing_like(args[i]), path,
                                type(leaf)(direction) if _is_float(leaf) else direction)
        _, t = jvp(functools.partial(f, **kwargs), copy.deepcopy(args), tangents)
        return float(t)

    if x.size <= FULL_SIZE:
        units = []
        for k in np.ndindex(x.shape):
            e = np.zeros(x.shape)
            e[k] = 1.0
            units.append(e)
        moves, what = units, "element"
    else:
        moves = [rng.standard_normal(x.shape) for _ in range(directions)]
        what = "random projection"
    expected = np.array([moved(d) for d in moves])
    results = {"reverse": np.array([float(np.sum(g * d)) for d in moves])}
    if "forward" in modes:
        results["forward"] = np.array([forward(d) for d in moves])
    for mode in modes:
        checked = results[mode]
        # Central differences are off by about h^2 times the third derivative even where
        # the gradient is 0: the absolute tolerance is relative to a scale of at least 1.
        a = atol if atol is not None else r * max(
            1.0, float(np.max(np.abs(checked), initial=0)), float(np.max(np.abs(expected))))
        shape = x.shape if what == "element" else expected.shape
        _compare(f, mode, f"{i}{_path_text(path)}", checked.reshape(shape),
                 expected.reshape(shape), r, a, h, leaf, what)


# --------------------------------------------------------------------------- pytrees
# Arguments may nest floats and arrays in tuples, lists and dicts. A leaf is named by
# its path: the keys and indices leading to it.


def _is_float(value, kinds="f") -> bool:
    """A float scalar (kinds "f") or a float or complex one (kinds "fc")."""
    return isinstance(value, (float, complex) if "c" in kinds else float) or \
        (isinstance(value, np.generic) and value.dtype.kind in kinds)


def float_leaves(tree, kinds="f", path=()) -> list:
    """[(path, leaf)] for the floats and float arrays in `tree`, in order (complex ones
    too with kinds="fc")."""
    if isinstance(tree, (tuple, list)):
        return [leaf for k, part in enumerate(tree)
                for leaf in float_leaves(part, kinds, path + (k,))]
    if isinstance(tree, dict):
        return [leaf for k, part in tree.items()
                for leaf in float_leaves(part, kinds, path + (k,))]
    if _is_float(tree, kinds) or (is_array(tree) and tree.dtype.kind in kinds):
        return [(path, tree)]
    return []


def _nothing_like(tree):
    """`tree`'s structure with None for every leaf (a tangent for none of them)."""
    if isinstance(tree, dict):
        return {k: _nothing_like(v) for k, v in tree.items()}
    if isinstance(tree, (tuple, list)):
        return type(tree)(_nothing_like(v) for v in tree) if not hasattr(tree, "_fields") \
            else type(tree)(*(_nothing_like(v) for v in tree))
    return None


def _leaf_at(tree, path):
    for k in path:
        tree = tree[k]
    return tree


def _replaced(tree, path, leaf):
    """`tree` with the leaf at `path` replaced (tuples rebuilt, lists and dicts copied)."""
    if not path:
        return leaf
    k, rest = path[0], path[1:]
    if isinstance(tree, dict):
        return {**tree, k: _replaced(tree[k], rest, leaf)}
    parts = list(tree)
    parts[k] = _replaced(tree[k], rest, leaf)
    if isinstance(tree, list):
        return parts
    return type(tree)(*parts) if hasattr(tree, "_fields") else tuple(parts)  # namedtuples


def _path_text(path) -> str:
    return "".join(f"[{k!r}]" for k in path)


def _compare(f, mode, argument, got, expected, rtol, atol, h, x, what):
    excess = np.abs(got - expected) - (atol + rtol * np.abs(expected))
    if excess.size == 0 or np.max(excess) <= 0:
        return
    worst = np.unravel_index(int(np.argmax(excess)), excess.shape)
    where = "" if not worst else f" at {what} {worst if len(worst) > 1 else worst[0]}"
    raise CheckFailed(
        f"check_grad({f.__qualname__}): the {mode}-mode derivative of argument {argument} "
        f"differs from central differences (step {h:.3g}){where}: "
        f"bytrev gave {float(got[worst]):.10g}, finite differences "
        f"{float(expected[worst]):.10g} "
        f"(|difference| {abs(got[worst] - expected[worst]):.3g} > atol {atol:.3g} + rtol "
        f"{rtol:g} * |expected|); argument {argument}: {_short(x)}")


def check_inverse(f, *args, rtol=1e-12, atol=None):
    """Check that `reversible(f)`'s backward run restores every argument and that
    `inverse(f)` (which must exist: NotInvertibleError says why not) maps f's results back
    to its first arguments; return the restored arguments. Floating-point inverses round
    at the scale of the values they combine, so atol defaults to rtol times the largest
    magnitude among the float arguments (a small v next to x = 1 comes back to within
    1e-16, not to within 1e-12 of itself)."""
    if atol is None:
        atol = rtol * max([float(np.max(np.abs(leaf), initial=0)) for a in args
                           for _, leaf in float_leaves(a, "fc")] or [0.0])
    rev = reversible(f)
    out, tape = rev.forward(*copy.deepcopy(args))
    restored = rev.backward(out, tape)
    for name, want, back in zip(rev.analysis.params, args, restored):
        _same(f, f"the backward run restored {name}", back, want, rtol, atol)
    g = inverse(f)
    results = f(*copy.deepcopy(args))
    outs = results if g.k > 1 else (results,)
    firsts = g(*outs, *copy.deepcopy(args[g.k:]))
    for name, want, back in zip(rev.analysis.params, args[:g.k], firsts if g.k > 1 else (firsts,)):
        _same(f, f"inverse({f.__qualname__}) gave back {name}", back, want, rtol, atol)
    return restored


def _same(f, what, got, want, rtol, atol):
    if isinstance(want, (tuple, list, dict)):  # a pytree: the same structure, leaf by leaf
        keys = list(want) if isinstance(want, dict) else range(len(want))
        ok = type(got) is type(want) and len(got) == len(want) and \
            (not isinstance(want, dict) or got.keys() == want.keys())
        if ok:
            for k in keys:
                _same(f, f"{what}[{k!r}]", got[k], want[k], rtol, atol)
            return
    else:
        try:
            ok = np.allclose(got, want, rtol=rtol, atol=atol, equal_nan=True) and \
                np.shape(got) == np.shape(want)
        except (TypeError, ValueError):  # not numbers: compare as values
            ok = got == want
    if not ok:
        raise CheckFailed(f"check_inverse({f.__qualname__}): {what} as {_short(got)}, "
                          f"expected {_short(want)} (rtol {rtol:g}, atol {atol:g})")


# --------------------------------------------------------------------------- hypothesis
# Strategies for the inputs of numeric code (hypothesis is imported only when they are
# used: it is a test dependency, not one of bytrev's).


def floats(min_value=-10.0, max_value=10.0, width=64):
    """Finite floats in [min_value, max_value], no subnormals (whose finite differences
    are all rounding)."""
    from hypothesis import strategies as st
    return st.floats(min_value, max_value, allow_nan=False, allow_infinity=False,
                     allow_subnormal=False, width=width)


def counts(max_value=20):
    """Small non-negative integers (step counts, sizes)."""
    from hypothesis import strategies as st
    return st.integers(0, max_value)


def arrays(shape, dtype=np.float64, min_value=-10.0, max_value=10.0):
    """Float arrays of `shape` (an int, a tuple, or a strategy for one, such as
    `hypothesis.extra.numpy.array_shapes()`) with elements from `floats`."""
    from hypothesis.extra import numpy as hnp
    dtype = np.dtype(dtype)
    return hnp.arrays(dtype, shape, elements=floats(min_value, max_value, 8 * dtype.itemsize))


def trees(leaves=None, max_leaves=8):
    """Pytrees: tuples, lists and dicts (short string keys), nested, with leaves from
    `leaves` (default: `floats()` and 1-d float arrays of 1 to 4 elements) -- for code
    that takes its parameters as such structures."""
    from hypothesis import strategies as st
    from hypothesis.extra import numpy as hnp
    if leaves is None:
        leaves = st.one_of(floats(), arrays(hnp.array_shapes(max_dims=1, max_side=4)))
    return st.recursive(leaves, lambda children: st.one_of(
        st.lists(children, min_size=1, max_size=3),
        st.lists(children, min_size=1, max_size=3).map(tuple),
        st.dictionaries(st.text("abcdefgh", min_size=1, max_size=2), children,
                        min_size=1, max_size=3)), max_leaves=max_leaves)


# --------------------------------------------------------------------------- property tests


def verify(*, grad=(), inverse=False, max_examples=50, **strategies):
    """Mark a function for property tests: one hypothesis strategy per parameter (keyword
    arguments named after the parameters), `grad` the parameters whose gradient to check
    against finite differences, `inverse=True` to check the backward run and `inverse(f)`.
    With bytrev installed, pytest collects marked functions in test modules as the tests
    `name[gradient]` and `name[inverse]` (`bytrev.pytest_plugin`); `properties(f)` gives
    the same tests to call by hand. Returns the function unchanged."""
    def mark(f):
        f.__bytrev_verify__ = dict(strategies=strategies, grad=tuple(grad), inverse=inverse,
                                   max_examples=max_examples)
        return f
    return mark


def properties(f) -> dict:
    """The property tests of a function marked with `verify`: {"gradient": test,
    "inverse": test}, each a zero-argument hypothesis test (shrinking to a minimal failing
    input)."""
    from hypothesis import given, settings
    from hypothesis import strategies as st
    spec = f.__bytrev_verify__
    params = list(inspect.signature(f).parameters)
    missing = [p for p in params if p not in spec["strategies"]]
    if missing:
        raise TypeError(f"verify({f.__qualname__}): no strategy for {', '.join(missing)}")
    inputs = st.fixed_dictionaries({p: spec["strategies"][p] for p in params})
    run = settings(max_examples=spec["max_examples"], deadline=None)
    tests = {}
    if spec["grad"]:
        argnums = tuple(params.index(p) for p in spec["grad"])

        @run
        @given(inputs)
        def gradient(values):
            check_grad(f, *[values[p] for p in params], argnums=argnums)
        tests["gradient"] = gradient
    if spec["inverse"]:
        @run
        @given(inputs)
        def inverse_round_trip(values):
            check_inverse(f, *[values[p] for p in params])
        tests["inverse"] = inverse_round_trip
    return tests


def _short(value, limit=200):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
