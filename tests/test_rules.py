"""The derivative rules of bytrev.rules, checked against central finite differences.

For a call `ans = f(*args)`, a random cotangent g and a random direction d for argument
i, a rule is right when <rule's cotangent of i, d> equals the directional derivative
d/dt <g, f(..., args[i] + t d, ...)> at t = 0, which central differences give to about
1e-10 in float64. The checks also run the rules on read-only arrays (a rule must not
change g, ans or the arguments) and compare the structure of each cotangent with its
argument's.
"""
import builtins
import math
import operator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from bytrev import rules
from bytrev.rules import ZERO

EPS = 1e-5


# ---------------------------------------------------------------------------------------
# Helpers: random values, pytree inner products, the finite-difference check


def random_like(rng, value):
    """A random value with the structure (and float type) of `value`."""
    if isinstance(value, (list, tuple)):
        parts = [random_like(rng, v) for v in value]
        return type(value)(*parts) if hasattr(value, "_fields") else type(value)(parts)
    if isinstance(value, (int, np.integer)):
        return 0  # a constant
    if type(value) is float:
        return float(rng.standard_normal())
    if isinstance(value, np.generic):
        return type(value)(rng.standard_normal())
    return rng.standard_normal(np.shape(value)).astype(value.dtype)


def inner(c, d):
    """<c, d> for cotangents and values of the same structure (ZERO and None are 0)."""
    if c is None or c is ZERO:
        return 0.0
    if isinstance(c, dict):
        return sum(inner(v, d[k]) for k, v in c.items())
    if isinstance(c, (list, tuple)):
        assert len(c) == len(d)
        return sum(inner(ci, di) for ci, di in zip(c, d))
    return float(np.sum(np.asarray(c, dtype=float) * np.asarray(d, dtype=float)))


def moved(value, t, direction):
    """value + t * direction, keeping the structure (Python floats stay floats)."""
    if isinstance(value, (list, tuple)):
        parts = [moved(v, t, d) for v, d in zip(value, direction)]
        return type(value)(parts)
    if isinstance(value, (int, np.integer)) or isinstance(value, np.ndarray) \
            and value.dtype.kind in "biu":
        return value
    return value + t * direction


def assert_structure(c, like):
    """A cotangent has its argument's structure: same shape for arrays, a scalar for
    numbers, the same container type and length for lists and tuples."""
    if c is ZERO:
        return
    if isinstance(like, (list, tuple)):
        assert isinstance(c, (list, tuple)) and isinstance(c, list) == isinstance(like, list)
        assert len(c) == len(like)
        for ci, li in zip(c, like):
            assert_structure(ci, li)
    elif isinstance(like, (float, int, np.generic)):
        assert np.ndim(c) == 0, (type(c), np.shape(c))
    else:
        assert np.shape(c) == np.shape(like), (np.shape(c), np.shape(like))


def frozen(value):
    """A read-only copy of an array (other values as they are)."""
    if isinstance(value, np.ndarray):
        value = value.copy()
        value.setflags(write=False)
    elif isinstance(value, list):
        return [frozen(v) for v in value]
    elif isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(frozen(v) for v in value)
    return value


def is_float_valued(value):
    if isinstance(value, (list, tuple)):
        return any(is_float_valued(v) for v in value)
    return isinstance(value, float) or isinstance(value, np.ndarray) and \
        value.dtype.kind == "f"


def check_vjp(func, args, kwargs=None, *, rule=None, wrt=None, seed=0, rtol=1e-6):
    """Compare `rule` (default: vjp_rule(func)) with central differences of `func` for
    every float-valued argument in `wrt` (default: all of them); the others must get
    None. A None cotangent of an argument in `wrt` counts as zero (the losing argument of
    max). Returns the cotangents."""
    kwargs = kwargs or {}
    rule = rule or rules.vjp_rule(func)
    assert rule is not None, f"no rule for {func}"
    rng = np.random.default_rng(seed)
    ans = func(*args, **kwargs)
    g = random_like(rng, ans)
    cotangents = rule(frozen(g), frozen(ans), *[frozen(a) for a in args], **kwargs)
    assert isinstance(cotangents, tuple) and len(cotangents) == len(args)
    wrt = [i for i, a in enumerate(args) if is_float_valued(a)] if wrt is None else wrt
    for i, arg in enumerate(args):
        if i not in wrt:
            assert cotangents[i] is None, (i, cotangents[i])
            continue
        if cotangents[i] is not None:
            assert_structure(cotangents[i], arg)
        direction = random_like(rng, arg)

        def along(t):
            shifted = list(args)
            shifted[i] = moved(arg, t, direction)
            return inner(g, func(*shifted, **kwargs))
        numeric = (along(EPS) - along(-EPS)) / (2 * EPS)
        analytic = inner(cotangents[i], direction)
        scale = max(1.0, abs(along(0.0)))
        assert abs(analytic - numeric) <= rtol * abs(numeric) + 1e-8 * scale, \
            (f"argument {i}", analytic, numeric)
    return cotangents


def uniform(rng, shape, low=-2.0, high=2.0):
    return rng.uniform(low, high, shape) if shape != () else float(rng.uniform(low, high))


def well_conditioned(rng, *shape):
    n = shape[-1]
    return rng.standard_normal(shape) + 3 * np.eye(n)


# ---------------------------------------------------------------------------------------
# Elementwise functions from templates


DOMAINS = {  # (low, high) for functions not defined, or not smooth, on all of [-2, 2]
    "log": (0.5, 2), "log2": (0.5, 2), "log10": (0.5, 2), "sqrt": (0.5, 2),
    "cbrt": (0.5, 2), "reciprocal": (0.5, 2), "arcsin": (-0.9, 0.9), "asin": (-0.9, 0.9),
    "arccos": (-0.9, 0.9), "acos": (-0.9, 0.9), "arctanh": (-0.9, 0.9),
    "atanh": (-0.9, 0.9), "arccosh": (1.5, 3), "acosh": (1.5, 3), "log1p": (-0.5, 2),
    "tan": (-1.2, 1.2), "power": (0.5, 2), "pow": (0.5, 2),
}

NUMPY_UNARY = """negative positive conjugate absolute fabs exp exp2 expm1 log log2 log10 log1p
    sqrt cbrt square reciprocal sin cos tan arcsin arccos arctan sinh cosh tanh arcsinh
    arccosh arctanh degrees rad2deg radians deg2rad""".split()
NUMPY_BINARY = """add subtract multiply divide power remainder fmod arctan2 hypot logaddexp
    maximum minimum fmax fmin""".split()
MATH_UNARY = """fabs exp exp2 expm1 log log2 log10 log1p sqrt cbrt sin cos tan asin acos atan
    sinh cosh tanh asinh acosh atanh degrees radians erf erfc""".split()
MATH_BINARY = "pow fmod atan2 hypot".split()


@pytest.mark.parametrize("name", NUMPY_UNARY)
@pytest.mark.parametrize("kind", ["array", "float", "numpy scalar"])
def test_numpy_unary(name, kind):
    rng = np.random.default_rng(1)
    low, high = DOMAINS.get(name, (-2, 2))
    x = {"array": lambda: uniform(rng, (3, 4), low, high),
         "float": lambda: uniform(rng, (), low, high),
         "numpy scalar": lambda: np.float64(uniform(rng, (), low, high))}[kind]()
    check_vjp(getattr(np, name), (x,))


@pytest.mark.parametrize("name", NUMPY_BINARY)
@pytest.mark.parametrize("shapes", [((3, 4), (3, 4)), ((3, 1), (4,)), ((), (2, 3)),
                                    ((2, 3), ()), ((2, 1, 3), (4, 1))],
                         ids=lambda s: "x".join(map(str, s)))
def test_numpy_binary_broadcasting(name, shapes):
    rng = np.random.default_rng(2)
    low, high = DOMAINS.get(name, (-2, 2))
    x = uniform(rng, shapes[0], low, high)
    y = uniform(rng, shapes[1], 0.5 if name == "power" else -2, 2)
    if name in ("remainder", "fmod"):
        y = uniform(rng, shapes[1], 2.5, 3.0)  # away from the jumps of x mod y
    check_vjp(getattr(np, name), (x, y))


@pytest.mark.parametrize("name", MATH_UNARY)
def test_math_unary(name):
    low, high = DOMAINS.get(name, (-2, 2))
    for seed in range(3):
        x = uniform(np.random.default_rng(seed), (), low, high)
        check_vjp(getattr(math, name), (x,), seed=seed)


@pytest.mark.parametrize("name", MATH_BINARY)
def test_math_binary(name):
    rng = np.random.default_rng(3)
    x = uniform(rng, (), 0.5, 2)
    y = uniform(rng, (), 2.5, 3) if name == "fmod" else uniform(rng, (), -2, 2)
    check_vjp(getattr(math, name), (x, y))


def test_math_log_with_base_and_hypot_of_three():
    check_vjp(math.log, (1.7, 3.0))
    check_vjp(math.log, (1.7,))
    check_vjp(math.hypot, (1.0, -2.0, 0.5))


def test_integer_arguments_get_no_gradient():
    assert rules.vjp_rule(math.sin)(1.0, math.sin(2), 2) == (None,)
    assert rules.vjp_rule(np.multiply)(1.0, 6.0, 2.0, 3) == (3, None)
    x = np.arange(3)
    assert rules.vjp_rule(np.sin)(np.ones(3), np.sin(x), x) == (None,)


def test_ufunc_out_argument_gets_none():
    x, out = np.ones(3), np.empty(3)
    assert rules.vjp_rule(np.sin)(np.ones(3), np.sin(x), x, out)[1] is None


def all_templated_functions():
    found = {}
    for module in (np, math, builtins):
        for name in dir(module):
            func = getattr(module, name)
            if callable(func) and rules.elementwise_template(func) is not None:
                found[id(func)] = (f"{module.__name__}.{name}", func, module)
    return sorted(found.values(), key=lambda entry: entry[0])


@pytest.mark.parametrize("name, func, module", all_templated_functions(),
                         ids=lambda v: v if isinstance(v, str) else "")
def test_templates_inline_to_the_rule(name, func, module):
    """Each template, evaluated as an expression (as the code generator inlines it),
    equals the runtime rule: on floats for math and builtins (giving floats), on arrays
    for NumPy."""
    templates = rules.elementwise_template(func)
    assert isinstance(templates, tuple) and all(isinstance(t, str) for t in templates)
    short = name.split(".")[-1]
    low, high = DOMAINS.get(short, (-0.9, 0.9))
    rng = np.random.default_rng(4)
    shape = () if module is not np else (5,)
    args = [uniform(rng, shape, low, high) for _ in templates]
    if short in ("fmod", "remainder"):
        args[1] = uniform(rng, shape, 2.5, 3)
    g = uniform(rng, shape)
    ans = func(*args)
    expected = rules.vjp_rule(func)(g, ans, *args)
    for template, expect in zip(templates, expected):
        expect = 0.0 if expect is None else expect  # the losing argument of max(x, y)
        if module is not np:
            assert "np." not in template, template  # valid for Python floats
        env = {"np": np, "math": math, "g": g, "ans": ans, "x": args[0]}
        if len(args) > 1:
            env["y"] = args[1]
        inlined = eval(template, env)
        np.testing.assert_allclose(inlined, expect, rtol=1e-15, atol=0)
        if module is not np:
            assert type(inlined) is float, (template, type(inlined))


def test_templates_for_a_number_of_arguments():
    assert rules.elementwise_template(max, 2) == rules.elementwise_template(max)
    assert rules.elementwise_template(max, 3) is None
    assert rules.elementwise_template(math.log, 1) == ("g / x",)
    assert rules.elementwise_template(math.log, 2) is None
    assert rules.elementwise_template(np.sum, 1) is None


def test_ties_split_evenly():
    x = np.array([1.0, 2.0, 3.0])
    y = np.array([1.0, 5.0, 0.0])
    g = np.ones(3)
    cx, cy = rules.vjp_rule(np.maximum)(g, np.maximum(x, y), x, y)
    np.testing.assert_array_equal(cx, [0.5, 0, 1])
    np.testing.assert_array_equal(cy, [0.5, 1, 0])
    cx, cy = rules.vjp_rule(np.fmax)(g, np.fmax(x, np.nan), x, np.array(np.nan))
    np.testing.assert_array_equal(cx, [1, 1, 1])
    assert cy == 0
    assert rules.vjp_rule(builtins.max)(1.0, 2.0, 2.0, 2.0, 1.0) == (0.5, 0.5, None)
    assert rules.vjp_rule(abs)(1.0, 0.0, 0.0) == (0.0,)
    a = np.array([3.0, 1.0, 3.0])
    np.testing.assert_array_equal(rules.vjp_rule(np.max)(1.0, 3.0, a)[0], [0.5, 0, 0.5])


def test_power_at_zero_has_no_nan():
    x = np.array([0.0, 1.0, 2.0])
    for op, y in (("**", 2), ("**", 3.0), ("**", 0)):
        cx, cy = rules.binop_vjp(op, np.ones(3), x ** y, x, y)
        assert cx is None or np.all(np.isfinite(cx))
        assert cy is None or np.all(np.isfinite(cy))
    cx, cy = rules.vjp_rule(np.power)(np.ones(3), x ** 2.0, x, 2.0)
    assert np.all(np.isfinite(cx)) and np.isfinite(cy)
    exponents = np.array([0.0, 1.0, 2.0])
    cx, cy = rules.vjp_rule(np.power)(np.ones(3), np.zeros(3) ** exponents, np.zeros(3),
                                      exponents)
    np.testing.assert_array_equal(cx, [0, 1, 0])
    np.testing.assert_array_equal(cy, [0, 0, 0])
    assert rules.binop_vjp("**", 1.0, 0.0, 0.0, 2) == (0.0, None)
    assert rules.binop_vjp("**", 1.0, 1.0, 0.0, 0) == (None, None)
    assert rules.binop_vjp("**", 1.0, 0.0, 0.0, 2.0) == (0.0, 0.0)


def test_where_and_clip():
    rng = np.random.default_rng(5)
    cond = rng.uniform(size=(3, 4)) > 0.5
    check_vjp(np.where, (cond, rng.standard_normal((3, 4)), rng.standard_normal(4)))
    check_vjp(np.where, (cond, 1.5, rng.standard_normal((3, 1))))
    a = rng.uniform(-2, 2, (4, 5))
    check_vjp(np.clip, (a, -0.5, 0.7))
    check_vjp(np.clip, (a, rng.uniform(-1, 0, 5), rng.uniform(0, 1, (4, 1))))
    check_vjp(np.clip, (a, None, 0.5))
    check_vjp(np.clip, (a, -0.5, None))
    check_vjp(np.clip, (a,), {"min": -0.3, "max": 0.4})
    check_vjp(np.clip, (1.5, 0.0, 1.0))
    crossing = rng.uniform(-1, 1, 5)  # a_min > a_max in some places: the result is a_max
    check_vjp(np.clip, (a, crossing, -crossing))
    # g goes to exactly one place even on the bounds
    x = np.array([-1.0, 0.0, 0.5, 1.0, 2.0])
    ca, clo, chi = rules.vjp_rule(np.clip)(np.ones(5), np.clip(x, 0.0, 1.0), x, 0.0, 1.0)
    np.testing.assert_array_equal(ca, [0, 1, 1, 1, 0])
    assert (clo, chi) == (1, 1)


@settings(max_examples=20, deadline=None)
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3,
                                                max_side=3),
       name=st.sampled_from(["add", "subtract", "multiply", "divide", "arctan2", "hypot",
                             "maximum"]))
def test_binary_broadcasting_property(shapes, name):
    rng = np.random.default_rng(6)
    x, y = (uniform(rng, s, 0.5, 2) for s in shapes.input_shapes)
    check_vjp(getattr(np, name), (x, y))


# ---------------------------------------------------------------------------------------
# Reductions


AXES = [None, 0, -1, 1, (0, 2), (-1, 0)]


@pytest.mark.parametrize("name", ["sum", "mean", "prod", "max", "min", "amax", "amin",
                                  "var", "std"])
@pytest.mark.parametrize("axis", AXES, ids=str)
@pytest.mark.parametrize("keepdims", [False, True])
def test_reductions(name, axis, keepdims):
    x = np.random.default_rng(7).uniform(0.5, 2, (2, 3, 4))
    check_vjp(getattr(np, name), (x,), {"axis": axis, "keepdims": keepdims})


@pytest.mark.parametrize("name", ["sum", "mean", "prod", "max", "var", "std"])
def test_reductions_positional_and_scalar(name):
    x = np.random.default_rng(8).uniform(0.5, 2, (3, 4))
    check_vjp(getattr(np, name), (x, 1))
    check_vjp(getattr(np, name), (x,))
    check_vjp(getattr(np, name), ([1.5, 0.7, 2.5],))


def test_var_std_ddof():
    x = np.random.default_rng(9).standard_normal((4, 5))
    check_vjp(np.var, (x,), {"axis": 0, "ddof": 1})
    check_vjp(np.std, (x,), {"axis": 1, "ddof": 1, "keepdims": True})
    check_vjp(np.var, (x, None, None, None, 1))


def test_prod_with_zeros():
    x = np.array([[2.0, 0.0, 3.0], [0.0, 0.0, 1.5], [1.0, 2.0, 4.0]])
    check_vjp(np.prod, (x,), {"axis": 1})
    check_vjp(np.prod, (x,), {"axis": 0})
    (c,) = rules.vjp_rule(np.prod)(1.0, 0.0, np.array([2.0, 0.0, 3.0]))
    np.testing.assert_array_equal(c, [0.0, 6.0, 0.0])


def test_reductions_with_where():
    rng = np.random.default_rng(10)
    x, mask = rng.standard_normal((3, 4)), rng.uniform(size=(3, 4)) > 0.3
    mask[:, 0] = True
    check_vjp(np.sum, (x,), {"axis": 1, "where": mask})
    check_vjp(np.mean, (x,), {"axis": 1, "where": mask})
    check_vjp(np.max, (x,), {"axis": 1, "where": mask, "initial": -10.0})
    with pytest.raises(NotImplementedError):
        rules.vjp_rule(np.var)(np.ones(3), np.var(x, axis=1), x, axis=1, where=mask)


@pytest.mark.parametrize("axis", [None, 0, 1, -1])
def test_cumsum_and_sort(axis):
    x = np.random.default_rng(11).standard_normal((3, 4))
    check_vjp(np.cumsum, (x,), {"axis": axis})
    check_vjp(np.sort, (x,), {"axis": axis})


@settings(max_examples=20, deadline=None)
@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, max_side=3), data=st.data(),
       name=st.sampled_from(["sum", "mean", "max", "prod", "var"]), keepdims=st.booleans())
def test_reduction_axes_property(shape, data, name, keepdims):
    axes = data.draw(st.lists(st.integers(-len(shape), len(shape) - 1), unique_by=lambda
                              a: a % len(shape), max_size=len(shape)).map(tuple))
    x = np.random.default_rng(12).uniform(0.5, 2, shape)
    if name == "var" and math.prod(shape[a] for a in axes) < 2:
        return
    check_vjp(getattr(np, name), (x,), {"axis": axes, "keepdims": keepdims})


# ---------------------------------------------------------------------------------------
# Linear algebra


DOT_SHAPES = [((3,), (3,)), ((2, 3), (3,)), ((3,), (3, 4)), ((2, 3), (3, 4)),
              ((2, 3, 4), (4,)), ((4,), (2, 4, 3)), ((2, 3, 4), (5, 4, 2)), ((), (3,)),
              ((2, 2), ())]


@pytest.mark.parametrize("shapes", DOT_SHAPES, ids=str)
def test_dot(shapes):
    rng = np.random.default_rng(13)
    check_vjp(np.dot, tuple(uniform(rng, s) for s in shapes))


MATMUL_SHAPES = [((3,), (3,)), ((2, 3), (3,)), ((3,), (3, 4)), ((2, 3), (3, 4)),
                 ((5, 2, 3), (3, 4)), ((5, 1, 2, 3), (4, 3, 2)), ((3,), (5, 3, 2)),
                 ((5, 2, 3), (3,))]


@pytest.mark.parametrize("shapes", MATMUL_SHAPES, ids=str)
def test_matmul(shapes):
    rng = np.random.default_rng(14)
    args = tuple(uniform(rng, s) for s in shapes)
    check_vjp(np.matmul, args)
    check_vjp(operator.matmul, args, rule=lambda g, ans, x, y: rules.binop_vjp("@", g, ans, x, y))


@pytest.mark.parametrize("func, shapes", [
    (np.outer, ((3,), (4,))), (np.outer, ((2, 2), (3,))), (np.inner, ((3,), (3,))),
    (np.inner, ((2, 3), (4, 3))), (np.inner, ((2, 3, 4), (5, 4))), (np.inner, ((), (3,))),
    (np.vdot, ((2, 3), (3, 2))), (np.kron, ((2, 3), (4, 2))), (np.kron, ((2,), (3,))),
    (np.kron, ((2, 2), (3,))), (np.kron, ((2,), (2, 3, 1)))], ids=str)
def test_products(func, shapes):
    rng = np.random.default_rng(15)
    check_vjp(func, tuple(uniform(rng, s) for s in shapes))


EINSUMS = [
    ("ij,jk->ik", (2, 3), (3, 4)), ("ij,jk", (2, 3), (3, 4)), ("i,i", (3,), (3,)),
    ("i,i->", (3,), (3,)), ("ii->", (3, 3)), ("ii->i", (3, 3)), ("ii", (3, 3)),
    ("ij->", (2, 3)), ("ij->j", (2, 3)), ("ji", (2, 3)), ("ij->ji", (2, 3)),
    ("...ij,...jk->...ik", (2, 3, 4), (2, 4, 5)), ("...ij,...jk", (1, 3, 4), (2, 4, 5)),
    ("...ij,jk->...ik", (2, 2, 3, 4), (4, 5)), ("ij...,j->i...", (2, 3, 4), (3,)),
    ("bij,bjk,bkl->bil", (2, 2, 3), (2, 3, 4), (2, 4, 2)), ("i,j,k->ijk", (2,), (3,), (2,)),
    ("ij,ij->", (2, 3), (2, 3)), ("iij->j", (2, 2, 3)), ("ij,->ij", (2, 3), ()),
    ("ab,bc,cd->", (2, 3), (3, 2), (2, 4)), ("ijk,k->", (1, 3, 4), (4,)),
]


@pytest.mark.parametrize("subscripts, shapes", [(case[0], case[1:]) for case in EINSUMS],
                         ids=[case[0] for case in EINSUMS])
def test_einsum(subscripts, shapes):
    rng = np.random.default_rng(16)
    operands = tuple(uniform(rng, s) for s in shapes)
    check_vjp(np.einsum, (subscripts,) + operands)
    check_vjp(np.einsum, (subscripts,) + operands, {"optimize": True})


def test_einsum_sublist_form():
    rng = np.random.default_rng(17)
    a, b = rng.standard_normal((2, 3)), rng.standard_normal((3, 4))
    check_vjp(np.einsum, (a, [0, 1], b, [1, 2], [0, 2]))
    check_vjp(np.einsum, (a, [0, 1], b, [1, 2]))
    check_vjp(np.einsum, (rng.standard_normal((2, 3, 3)), [Ellipsis, 1, 1], [Ellipsis]))


@pytest.mark.parametrize("shapes, axes", [
    (((2, 3, 4), (3, 4, 5)), 2), (((2, 3), (3, 4)), 1), (((2, 3), (4,)), 0),
    (((2, 3, 4), (3, 2, 5)), ([1, 0], [0, 1])), (((2, 3, 4), (4, 5, 2)), ([2, 0], [0, 2])),
    (((2, 3, 4), (5, 3)), (1, 1)), (((2, 3, 4), (4, 3, 2)), ([-1, 1], [0, -2])),
    (((2, 3, 4), (3, 2, 5)), ([0, 1], [1, 0])), (((2, 3, 4), (4, 5, 2)), ([0, 2], [2, 0]))],
    ids=str)
def test_tensordot(shapes, axes):
    rng = np.random.default_rng(18)
    check_vjp(np.tensordot, tuple(uniform(rng, s) for s in shapes) + (axes,))


@pytest.mark.parametrize("func", [np.trace, np.diagonal])
@pytest.mark.parametrize("shape, args", [((3, 3), ()), ((3, 4), (1,)), ((4, 3), (-1,)),
                                         ((2, 3, 3), (0, 1, 2)), ((3, 2, 4), (-1, 2, 0)),
                                         ((3, 3), (5,))], ids=str)
def test_trace_and_diagonal(func, shape, args):
    x = np.random.default_rng(19).standard_normal(shape)
    check_vjp(func, (x,) + args)


def test_diag():
    rng = np.random.default_rng(20)
    for k in (0, 1, -2):
        check_vjp(np.diag, (rng.standard_normal(3), k))
        check_vjp(np.diag, (rng.standard_normal((3, 4)), k))


def test_solve_inv_det():
    rng = np.random.default_rng(21)
    a = well_conditioned(rng, 3, 3)
    batch = well_conditioned(rng, 4, 3, 3)
    check_vjp(np.linalg.solve, (a, rng.standard_normal(3)))
    check_vjp(np.linalg.solve, (a, rng.standard_normal((3, 2))))
    check_vjp(np.linalg.solve, (batch, rng.standard_normal((4, 3, 2))))
    check_vjp(np.linalg.solve, (batch, rng.standard_normal(3)))
    check_vjp(np.linalg.solve, (batch, rng.standard_normal((3, 2))))
    for x in (a, batch):
        check_vjp(np.linalg.inv, (x,))
        check_vjp(np.linalg.det, (x,))
        check_vjp(np.linalg.slogdet, (x,))
    g = np.linalg.slogdet(a)
    assert rules.vjp_rule(np.linalg.slogdet)((1.0, ZERO), g, a) == (None,)


NORMS = [((5,), {}), ((5,), {"ord": 1}), ((5,), {"ord": np.inf}), ((5,), {"ord": -np.inf}),
         ((5,), {"ord": 3}), ((5,), {"ord": 0.5}), ((3, 4), {"axis": 1}),
         ((3, 4), {"axis": -1, "keepdims": True, "ord": np.inf}), ((3, 4), {}),
         ((3, 4), {"ord": "fro"}), ((3, 4), {"ord": "nuc"}), ((3, 4), {"ord": 2}),
         ((3, 4), {"ord": -2}), ((3, 4), {"ord": 1}), ((3, 4), {"ord": -1}),
         ((3, 4), {"ord": np.inf}), ((3, 4), {"ord": -np.inf}),
         ((2, 3, 4), {"axis": (1, 2), "ord": 2}), ((2, 3, 4), {"axis": (2, 0), "ord": 1}),
         ((2, 3, 4), {"axis": (0, 2), "keepdims": True}), ((2, 3, 4), {}),
         ((2, 3, 4), {"axis": (2, 1), "ord": "nuc", "keepdims": True})]


@pytest.mark.parametrize("shape, kwargs", NORMS, ids=str)
def test_norm(shape, kwargs):
    check_vjp(np.linalg.norm, (np.random.default_rng(22).standard_normal(shape),), kwargs)


def test_norm_ties_share_g():
    norm_rule = rules.vjp_rule(np.linalg.norm)
    x = np.array([[1.0, -1.0], [-2.0, 2.0]])  # column sums 3, 3; row sums 2, 4
    c, _ = norm_rule(1.0, np.linalg.norm(x, 1), x, 1)
    np.testing.assert_array_equal(c, [[0.5, -0.5], [-0.5, 0.5]])
    c, _ = norm_rule(1.0, np.linalg.norm(x, -np.inf), x, -np.inf)
    np.testing.assert_array_equal(c, [[1, -1], [0, 0]])
    v = np.array([3.0, -3.0, 1.0])
    c, _ = norm_rule(1.0, np.linalg.norm(v, np.inf), v, np.inf)
    np.testing.assert_array_equal(c, [0.5, -0.5, 0])


def test_norm_at_zero_is_zero():
    (c,) = rules.vjp_rule(np.linalg.norm)(1.0, 0.0, np.zeros(3))
    np.testing.assert_array_equal(c, np.zeros(3))
    assert rules.vjp_rule(np.linalg.norm)(1.0, 2.0, np.ones(3), 0) == (None, None)


# ---------------------------------------------------------------------------------------
# Shape and copy operations


def _a(*shape):
    return np.random.default_rng(sum(shape) + len(shape)).standard_normal(shape)


SHAPE_OPS = [
    (np.reshape, (_a(2, 3, 4), (6, 4))), (np.reshape, (_a(2, 3, 4), -1)),
    (np.reshape, (_a(2, 3), (3, 2), "F")), (np.reshape, (np.asfortranarray(_a(2, 3)), 6, "A")),
    (np.ravel, (_a(2, 3),)), (np.ravel, (_a(2, 3), "F")), (np.squeeze, (_a(2, 1, 3),)),
    (np.squeeze, (_a(2, 1, 3, 1), -1)), (np.expand_dims, (_a(2, 3), 1)),
    (np.expand_dims, (_a(2, 3), (0, -1))), (np.transpose, (_a(2, 3, 4),)),
    (np.transpose, (_a(2, 3, 4), (2, 0, 1))), (np.transpose, (_a(2, 3, 4), (-1, 0, -2))),
    (np.swapaxes, (_a(2, 3, 4), 0, -1)), (np.moveaxis, (_a(2, 3, 4), 0, -1)),
    (np.moveaxis, (_a(2, 3, 4), (0, 1), (2, 0))), (np.broadcast_to, (_a(3, 1), (2, 3, 4))),
    (np.broadcast_to, (1.5, (2, 3))), (np.roll, (_a(3, 4), 1)),
    (np.roll, (_a(3, 4), (1, -2), (0, 1))), (np.roll, (_a(3, 4), 2, -1)),
    (np.flip, (_a(3, 4),)), (np.flip, (_a(3, 4), 1)), (np.fliplr, (_a(3, 4),)),
    (np.flipud, (_a(3, 4),)), (np.rot90, (_a(3, 4),)), (np.rot90, (_a(3, 4, 2), 3, (1, 2))),
    (np.copy, (_a(3, 4),)), (np.asarray, (_a(3, 4),)), (np.array, ([1.5, -0.5, 2.0],)),
    (np.array, ([_a(2), _a(2)],)), (np.array, (2.5,)), (np.asarray, ((1.0, 2.0),)),
    (np.array, (_a(3), np.float64)), (np.atleast_2d, (_a(3),)),
    (np.atleast_3d, (_a(3), _a(2, 2))), (np.tril, (_a(3, 4),)), (np.tril, (_a(3, 4), -1)),
    (np.triu, (_a(2, 3, 3), 1)), (np.real, (_a(3),)), (np.ascontiguousarray, (_a(3, 2).T,)),
    (np.take, (_a(5), [0, 2, 2, 4])), (np.take, (_a(3, 4), np.array([[1, 1], [3, 0]]), 1)),
    (np.take, (_a(3, 4), [5, 5, 11])), (np.take, (_a(3, 4), [-1, 7], 0), {"mode": "wrap"}),
    (np.take, (_a(3, 4), [-1, 7], 1), {"mode": "clip"}),
    (np.repeat, (_a(2, 3), 2)), (np.repeat, (_a(2, 3), 3, 1)),
    (np.repeat, (_a(2, 3), [1, 0, 2], -1)), (np.repeat, (_a(3), [2, 1, 3])),
    (np.tile, (_a(3), 2)), (np.tile, (_a(2, 3), (2, 1, 2))), (np.tile, (_a(2, 1, 3), (2, 2))),
    (np.concatenate, ((_a(2, 3), _a(1, 3)),)), (np.concatenate, ([_a(2, 3), _a(2, 2)], 1)),
    (np.concatenate, ((_a(2, 3), _a(4)), None)), (np.concatenate, ([_a(2, 3), _a(2, 1)], -1)),
    (np.stack, ([_a(2, 3), _a(2, 3)],)), (np.stack, ((_a(2, 3), _a(2, 3), _a(2, 3)), -1)),
    (np.stack, ([1.5, 2.5],)), (np.vstack, ([_a(3), _a(3)],)),
    (np.vstack, ((_a(2, 3), _a(3)),)), (np.hstack, ([_a(3), _a(2)],)),
    (np.hstack, ((_a(2, 3), _a(2, 1)),)), (np.hstack, ([1.5, _a(2)],)),
    (np.dstack, ([_a(2, 3), _a(2, 3)],)), (np.column_stack, ((_a(3), _a(3, 2)),)),
]


def with_kwargs(cases):
    """Cases given as (..., args) or (..., args, kwargs), all with kwargs."""
    return [case if isinstance(case[-1], dict) else case + ({},) for case in cases]


@pytest.mark.parametrize("func, args, kwargs", with_kwargs(SHAPE_OPS),
                         ids=[f"{case[0].__name__}-{i}" for i, case in enumerate(SHAPE_OPS)])
def test_shape_ops(func, args, kwargs):
    check_vjp(func, args, kwargs)


def test_constant_elements_of_sequences_get_zero():
    (c,) = rules.vjp_rule(np.array)(np.ones(3), np.array([1.5, 2, 3.0]), [1.5, 2, 3.0])
    assert c == [1.0, ZERO, 1.0]
    ints = np.arange(3)
    (c,) = rules.vjp_rule(np.concatenate)(np.ones(6), np.concatenate((_a(3), ints)),
                                          (_a(3), ints))
    assert isinstance(c, tuple) and c[1] is ZERO
    assert rules.vjp_rule(np.array)(np.ones(2), np.array([1.5, 2.5], dtype=int),
                                    [1.5, 2.5], int) == (None, None)


# ---------------------------------------------------------------------------------------
# math and builtins


def test_builtins():
    rng = np.random.default_rng(23)
    x, y, z = (float(v) for v in rng.standard_normal(3))
    a = rng.standard_normal(4)
    check_vjp(abs, (x,))
    check_vjp(abs, (a,))
    check_vjp(pow, (1.3, y))
    check_vjp(pow, (np.abs(a) + 0.5, 1.7))
    check_vjp(max, (x, y))
    check_vjp(max, (x, y, z))
    check_vjp(min, (x, y, z))
    check_vjp(max, (a,))
    check_vjp(min, (a,))
    check_vjp(max, ([x, y, z],))
    check_vjp(min, ((x, 2, z),))
    check_vjp(max, ([x, y, z],), {"key": abs})
    check_vjp(sum, ([x, y, z],))
    check_vjp(sum, ((x, a, 2),))
    check_vjp(sum, ([x, y], z))
    check_vjp(sum, (a,))
    check_vjp(sum, (rng.standard_normal((3, 2)),))
    check_vjp(float, (x,))
    check_vjp(float, (np.float64(x),))
    check_vjp(float, (np.array(x),))
    check_vjp(np.float64, (x,))
    assert rules.vjp_rule(float)(1.0, 2.0, "2.0") == (None,)
    (c,) = rules.vjp_rule(max)(1.0, 2.0, [2.0, 1, 2.0])
    assert c == [0.5, ZERO, 0.5]
    items = [-2.0, 2.0, 1.0]  # tied by the key: they share g
    (c,) = rules.vjp_rule(max)(1.0, max(items, key=abs), items, key=abs)
    assert c == [0.5, 0.5, ZERO]


NON_DIFFERENTIABLE = [
    (np.less, (1.0, 2.0)), (np.equal, (_a(3), _a(3))), (np.greater, (_a(3), 0.0)),
    (np.floor, (_a(3),)), (np.ceil, (1.5,)), (np.round, (_a(3), 1)), (np.rint, (_a(3),)),
    (np.sign, (_a(3),)), (np.argmax, (_a(3, 2), 1)), (np.argmin, (_a(3),)),
    (np.argsort, (_a(3),)), (np.nonzero, (_a(3),)), (np.shape, (_a(3),)), (np.ndim, (_a(3),)),
    (np.size, (_a(3),)), (np.isnan, (_a(3),)), (np.isfinite, (1.0,)),
    (np.logical_and, (_a(3) > 0, True)), (np.zeros, (3,)), (np.ones, ((2, 3),)),
    (np.empty, (2,)), (np.full, (2, 1.5)), (np.zeros_like, (_a(3),)),
    (np.ones_like, (_a(3),)), (np.full_like, (_a(3), 2.5)), (np.arange, (0.0, 1.0, 0.25)),
    (np.linspace, (0.0, 1.0, 5)), (np.eye, (3,)), (np.identity, (3,)),
    (np.floor_divide, (_a(3), 0.7)), (len, ([1.0, 2.0],)), (int, (2.5,)), (round, (2.5,)),
    (round, (2.567, 2)), (bool, (1.0,)), (isinstance, (1.0, float)), (range, (3,)),
    (math.floor, (2.5,)), (math.ceil, (2.5,)), (math.isnan, (2.5,)),
]


@pytest.mark.parametrize("func, args", NON_DIFFERENTIABLE,
                         ids=[f"{f.__name__}-{i}" for i, (f, _) in enumerate(NON_DIFFERENTIABLE)])
def test_non_differentiable(func, args):
    ans = func(*args)
    g = ZERO if ans is None else random_like(np.random.default_rng(0), np.asarray(ans, float))
    assert rules.vjp_rule(func)(g, ans, *args) == (None,) * len(args)


# ---------------------------------------------------------------------------------------
# Operators


NUMBERS = {
    "floats": lambda rng: (float(rng.uniform(0.5, 2)), float(rng.uniform(0.5, 2))),
    "float and array": lambda rng: (float(rng.uniform(0.5, 2)), rng.uniform(0.5, 2, (2, 3))),
    "array and float": lambda rng: (rng.uniform(0.5, 2, (2, 3)), float(rng.uniform(0.5, 2))),
    "broadcast arrays": lambda rng: (rng.uniform(0.5, 2, (3, 1)), rng.uniform(0.5, 2, 4)),
    "numpy scalar and array": lambda rng: (np.float64(rng.uniform(0.5, 2)),
                                           rng.uniform(0.5, 2, 3)),
    "0-d and array": lambda rng: (np.array(rng.uniform(0.5, 2)), rng.uniform(0.5, 2, 3)),
}
OPERATORS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
             "**": operator.pow, "%": operator.mod}


@pytest.mark.parametrize("op", OPERATORS)
@pytest.mark.parametrize("kind", NUMBERS)
def test_binop_vjp(op, kind):
    x, y = NUMBERS[kind](np.random.default_rng(24))
    if op == "%":
        y = y + 2.0  # away from the jumps of x % y
    check_vjp(OPERATORS[op], (x, y),
              rule=lambda g, ans, a, b: rules.binop_vjp(op, g, ans, a, b))


@pytest.mark.parametrize("op", OPERATORS)
def test_binop_with_integers(op):
    x, a = 1.7, np.random.default_rng(25).uniform(0.5, 2, 3)
    for left, right, wrt in ((x, 3, [0]), (3, x, [1]), (a, 2, [0]), (2, a, [1])):
        check_vjp(OPERATORS[op], (left, right), wrt=wrt,
                  rule=lambda g, ans, l, r: rules.binop_vjp(op, g, ans, l, r))


def test_floor_division_and_sequences():
    assert rules.binop_vjp("//", 1.0, 2.0, 5.0, 2.0) == (None, None)
    assert rules.binop_vjp("+", [1.0, 2.0, 3.0], None, [0.0], (0.0, 0.0)) == ([1.0], [2.0, 3.0])
    assert rules.binop_vjp("*", [1.0, 2.0, 3.0, 4.0], None, 2, [0.0, 0.0]) == \
        (None, [4.0, 6.0])
    assert rules.binop_vjp("*", [], None, [0.0], 0) == (None, None)
    assert rules.binop_vjp("+", "ab", None, "a", "b") == (None, None)


def test_unop_vjp():
    a = _a(3)
    np.testing.assert_array_equal(rules.unop_vjp("-", a, -a, a), -a)
    assert rules.unop_vjp("+", 2.0, 1.5, 1.5) == 2.0
    assert rules.unop_vjp("-", 2.0, -1, 1) is None
    assert rules.unop_vjp("not", 1.0, False, 1.5) is None
    assert rules.unop_vjp("~", 1.0, -2, 1) is None
    with pytest.raises(ValueError):
        rules.unop_vjp("?", 1.0, 1.0, 1.0)


# ---------------------------------------------------------------------------------------
# Subscripts


ARRAY_INDICES = [2, -1, slice(1, 3), slice(None, None, -2), (1, slice(None)), (Ellipsis, 2),
                 (None, 1), np.int64(3), (slice(1, None), [0, 0, 4]), [0, 0, 2],
                 (np.array([0, 1, 1]), np.array([2, 2, 2])), ([1, 1], slice(None)),
                 (np.array([[0, 0], [3, 3]]), 1), "mask", ("mask-row", slice(None, 2)),
                 (slice(None), np.array([True, False, True, True, False]))]


def _index(index, x, rng):
    if isinstance(index, str):
        mask = rng.uniform(size=x.shape) > 0.4
        return mask if index == "mask" else (mask[:, 0], slice(None, 2))
    if isinstance(index, tuple) and isinstance(index[0], str):
        return (rng.uniform(size=x.shape[0]) > 0.4,) + index[1:]
    return index


@pytest.mark.parametrize("index", ARRAY_INDICES, ids=str)
def test_getitem_and_accumulate_index(index):
    """The adjoint identity <getitem_vjp(g, x, i), d> = <g, d[i]>, and accumulate_index
    adds exactly that in place."""
    rng = np.random.default_rng(26)
    x = rng.standard_normal((4, 5))
    index = _index(index, x, rng)
    g = frozen(random_like(rng, x[index]))
    c = rules.getitem_vjp(g, frozen(x), index)
    assert c.shape == x.shape and c.flags.writeable
    d = rng.standard_normal(x.shape)
    assert inner(c, d) == pytest.approx(inner(g, d[index]), rel=1e-12, abs=1e-12)
    buffer = rng.standard_normal(x.shape)
    before = buffer.copy()
    assert rules.accumulate_index(buffer, index, g) is None
    np.testing.assert_allclose(buffer, before + c, rtol=1e-14)


def test_accumulate_index_broadcasts_and_repeats():
    buffer = np.zeros(4)
    rules.accumulate_index(buffer, [1, 1, 3], 2.0)
    np.testing.assert_array_equal(buffer, [0, 4, 0, 2])
    rules.accumulate_index(buffer, slice(None, 2), 1.0)
    np.testing.assert_array_equal(buffer, [1, 5, 0, 2])
    rules.accumulate_index(buffer, 0, ZERO)
    np.testing.assert_array_equal(buffer, [1, 5, 0, 2])
    matrix = np.zeros((2, 3))
    rules.accumulate_index(matrix, (slice(None), [0, 0]), np.array([1.0, 2.0]))
    np.testing.assert_array_equal(matrix, [[3, 0, 0], [3, 0, 0]])


def test_accumulate_index_in_a_loop_updates_one_buffer():
    a = np.arange(5.0)
    buffer = rules.getitem_vjp(1.0, a, 0)
    for i in range(1, 5):
        rules.accumulate_index(buffer, i, float(i))
    np.testing.assert_array_equal(buffer, [1, 1, 2, 3, 4])


def test_getitem_on_containers():
    xs = (1.0, _a(2), "label", 3)
    assert rules.getitem_vjp(2.0, xs, 0) == (2.0, ZERO, ZERO, ZERO)
    c = rules.getitem_vjp([1.0, 2.0], list(xs), slice(None, None, -2))
    assert c == [ZERO, 2.0, ZERO, 1.0]
    assert rules.getitem_vjp(5.0, [1.0, 2.0], -1) == [ZERO, 5.0]
    assert rules.getitem_vjp(5.0, {"a": 1.0, "b": 2.0}, "b") == {"b": 5.0}
    assert rules.getitem_vjp(1.0, np.arange(3), 1) is None
    assert rules.getitem_vjp(1.0, "abc", 1) is None


def test_accumulate_index_on_containers():
    buffer = [ZERO, 1.0, ZERO]
    rules.accumulate_index(buffer, 1, 2.0)
    rules.accumulate_index(buffer, slice(0, 2), [4.0, 5.0])
    assert buffer == [4.0, 8.0, ZERO]
    sparse = {"a": 1.0}
    rules.accumulate_index(sparse, "a", 2.0)
    rules.accumulate_index(sparse, "b", 3.0)
    assert sparse == {"a": 3.0, "b": 3.0}


def test_getitem_float32():
    x = np.ones(3, np.float32)
    c = rules.getitem_vjp(np.float64(2.0), x, 1)
    assert c.dtype == np.float32 and c[1] == 2.0


# ---------------------------------------------------------------------------------------
# Methods and attributes


def method(name):
    return lambda x, *args, **kwargs: getattr(x, name)(*args, **kwargs)


METHODS = [
    ("sum", ()), ("sum", (1,)), ("sum", (), {"axis": 0, "keepdims": True}), ("mean", (-1,)),
    ("prod", (0,)), ("max", (1,)), ("min", ()), ("var", (0,)), ("std", (), {"ddof": 1}),
    ("dot", (_a(4, 2),)), ("dot", (_a(4),)), ("reshape", (4, 3)), ("reshape", ((2, 6),)),
    ("reshape", (-1,), {"order": "F"}), ("transpose", ()), ("transpose", (1, 0)),
    ("transpose", ((1, 0),)), ("ravel", ()), ("flatten", ()), ("flatten", ("F",)),
    ("squeeze", ()), ("copy", ()), ("clip", (-0.5, 0.5)), ("cumsum", (1,)),
    ("swapaxes", (0, 1)), ("repeat", (2,)), ("take", ([0, 0, 5],)), ("trace", ()),
    ("diagonal", (1,)), ("conj", ()), ("conjugate", ()), ("item", (4,)), ("item", (1, 2)),
    ("item", ((2, 3),)), ("item", (-1,)),
]


@pytest.mark.parametrize("name, args, kwargs", with_kwargs(METHODS),
                         ids=[f"{m[0]}-{i}" for i, m in enumerate(METHODS)])
def test_methods(name, args, kwargs):
    x = np.random.default_rng(27).uniform(0.5, 2, (3, 4))
    check_vjp(method(name), (x,) + args, kwargs, rule=rules.method_rule(x, name))


def test_method_special_cases():
    check_vjp(method("item"), (np.array([2.5]),), rule=rules.method_rule(np.ones(1), "item"))
    x = _a(3, 2).astype(np.float32)
    c, _ = rules.method_rule(x, "astype")(np.ones((3, 2)), x.astype(float), x, float)
    assert c.dtype == np.float32
    x64 = _a(3)
    assert rules.method_rule(x64, "astype")(np.ones(3), x64.astype(int), x64, int) == (None, None)
    for name in ("all", "any", "argmax", "argmin", "argsort", "nonzero", "round"):
        rule = rules.method_rule(x64, name)
        assert rule(np.ones(3), getattr(x64, name)(), x64) == (None,)
    assert rules.method_rule([1.0], "copy") is None
    assert rules.method_rule(x64, "no_such_method") is None
    check_vjp(method("sum"), (np.float64(2.5),), rule=rules.method_rule(np.float64(1), "sum"))


def test_attributes():
    x = _a(2, 3, 4)
    for name in ("T", "mT", "real"):
        check_vjp(lambda a: getattr(a, name), (x,), rule=rules.attribute_rule(x, name))
    for name in ("shape", "ndim", "size", "dtype", "itemsize", "nbytes", "imag"):
        assert rules.attribute_rule(x, name)(ZERO, getattr(x, name), x) == (None,)
    assert rules.attribute_rule(x, "flat") is None
    assert rules.attribute_rule(1.5, "real") is None
    assert rules.attribute_rule(x.astype(complex), "real") is None


# ---------------------------------------------------------------------------------------
# Cotangent values: ZERO, add, zeros_like_value, materialize, unbroadcast


def test_zero_is_a_singleton():
    import copy
    import pickle
    assert repr(ZERO) == "ZERO"
    assert type(ZERO)() is ZERO
    assert copy.deepcopy(ZERO) is ZERO and pickle.loads(pickle.dumps(ZERO)) is ZERO


def test_add():
    a = np.ones(3)
    assert rules.add(ZERO, a) is a and rules.add(a, ZERO) is a
    assert rules.add(ZERO, ZERO) is ZERO
    assert rules.add(1.5, 2.0) == 3.5
    np.testing.assert_array_equal(rules.add(2.0, a), [3, 3, 3])
    total = rules.add(a, a)
    assert total is not a and np.all(a == 1)
    assert rules.add((1.0, ZERO), (ZERO, 2.0)) == (1.0, 2.0)
    assert rules.add([1.0, ZERO, [ZERO]], [1.0, 3.0, [4.0]]) == [2.0, 3.0, [4.0]]
    left, right = {"a": 1.0}, {"a": 2.0, "b": 5.0}
    assert rules.add(left, right) == {"a": 3.0, "b": 5.0}
    assert left == {"a": 1.0} and right == {"a": 2.0, "b": 5.0}
    with pytest.raises(ValueError):
        rules.add((1.0,), (1.0, 2.0))


def test_zeros_like_value():
    assert type(rules.zeros_like_value(2.5)) is float and rules.zeros_like_value(2.5) == 0.0
    assert rules.zeros_like_value(3) == 0 and type(rules.zeros_like_value(3)) is int
    z = rules.zeros_like_value(np.arange(3))
    assert z.dtype == np.arange(3).dtype and not z.any()
    z = rules.zeros_like_value(np.ones((2, 2), np.float32))
    assert z.dtype == np.float32 and z.shape == (2, 2)
    assert type(rules.zeros_like_value(np.float64(3))) is np.float64
    assert rules.zeros_like_value((1.5, [2, 3.0], {"k": 1.0})) == (0.0, [0, 0.0], {"k": 0.0})
    assert rules.zeros_like_value("text") is None


def test_materialize():
    like = (1.5, [np.ones(2), 3], {"a": 1.0, "b": 2.0})
    out = rules.materialize((ZERO, [np.full(2, 7.0), ZERO], {"b": 4.0}), like)
    assert isinstance(out, tuple) and isinstance(out[1], list)
    assert out[0] == 0.0 and out[1][1] == 0 and out[2] == {"a": 0.0, "b": 4.0}
    np.testing.assert_array_equal(out[1][0], [7, 7])
    assert rules.materialize(ZERO, like)[2] == {"a": 0.0, "b": 0.0}
    assert rules.materialize(None, 2.0) == 0.0
    slogdet = np.linalg.slogdet(np.eye(2))
    assert type(rules.materialize((ZERO, 1.0), slogdet)) is type(slogdet)


def test_unbroadcast():
    g = np.ones((2, 3, 4))
    assert rules.unbroadcast(g, np.ones((3, 1))).tolist() == [[8.0]] * 3
    assert rules.unbroadcast(g, 2.0) == 24.0 and np.ndim(rules.unbroadcast(g, 2.0)) == 0
    assert rules.unbroadcast(g, np.array(2.0)) == 24.0
    assert rules.unbroadcast(g, np.ones((1, 3, 4))).shape == (1, 3, 4)
    assert rules.unbroadcast(g, g) is g
    assert rules.unbroadcast(2.0, 1.0) == 2.0
    np.testing.assert_array_equal(rules.unbroadcast(2.0, np.ones((1,))), [2.0])
    assert rules.unbroadcast(np.ones((2, 2)), [1.0, 2]) == [2.0, ZERO]
    assert rules.unbroadcast(np.ones(3), (1.5, 2.5, 3.5)) == (1.0, 1.0, 1.0)


# ---------------------------------------------------------------------------------------
# Registration


def test_defvjp_registers_per_argument_rules():
    def scaled_sum(x, y, factor):
        return factor * (x + 2 * y)

    assert rules.vjp_rule(scaled_sum) is None
    assert rules.defvjp(scaled_sum, lambda g, ans, x, y, factor: g * factor,
                        lambda g, ans, x, y, factor: 2 * g * factor) is scaled_sum
    check_vjp(scaled_sum, (1.0, 2.0, 3), wrt=[0, 1])
    rules.defvjp(scaled_sum, None, lambda g, ans, x, y, factor: 0.0)
    assert rules.vjp_rule(scaled_sum)(1.0, 0.0, 1.0, 2.0, 3) == (None, 0.0, None)
    rules.defvjp(scaled_sum)
    assert rules.vjp_rule(scaled_sum)(1.0, 0.0, 1.0, 2.0, 3) == (None, None, None)


def test_defvjp_all_and_keywords():
    def shifted(x, shift=0.0):
        return x + shift

    rules.defvjp_all(shifted, lambda g, ans, x, *rest, shift=0.0: (g,) + (None,) * len(rest))
    assert rules.vjp_rule(shifted)(2.0, 1.0, 1.0, shift=5.0) == (2.0,)
    rules.defvjp(shifted, lambda g, ans, x, *rest, **kwargs: 3 * g)
    assert rules.vjp_rule(shifted)(2.0, 1.0, 1.0, 2.0) == (6.0, None)


def test_replacing_a_builtin_rule_and_restoring_it():
    original = rules.vjp_rule(np.tanh)
    try:
        rules.defvjp(np.tanh, lambda g, ans, x: 42.0)
        assert rules.vjp_rule(np.tanh)(1.0, 0.0, 0.0) == (42.0,)
    finally:
        rules.defvjp_all(np.tanh, original)
    assert rules.vjp_rule(np.tanh) is original


def test_definverse():
    def double(x):
        return 2 * x

    def half(y):
        return y / 2

    assert rules.inverse_of(double) is None
    assert rules.definverse(double, half) is double
    assert rules.inverse_of(double) is half
    assert rules.vjp_rule(double) is None


def test_a_rule_registered_again_replaces_the_compiled_one():
    """Gradients compiled with a rule are compiled again when the rule is replaced (a
    corrected rule must not leave the wrong gradient cached)."""
    import bytrev

    def square(x):
        return x * x

    def f(x):
        return square(x) + 1.0

    bytrev.defvjp(square, lambda g, ans, x: g * 3 * x)  # wrong
    assert bytrev.grad(f)(2.0) == 6.0
    bytrev.defvjp(square, lambda g, ans, x: g * 2 * x)
    assert bytrev.grad(f)(2.0) == 4.0
    assert bytrev.hessian(f)(2.0) == pytest.approx(2.0)


def cube(x):
    return x ** 3


def warp(x, c):
    return np.sinh(x) + c


def cubes(x, n):
    for i in range(n):
        x = 0.5 * cube(x) + 0.25
    return x


def warps(x, c, n):
    for i in range(n):
        x = warp(x, c) * 0.5
    return x


def test_a_registered_inverse_undoes_the_overwrite_without_a_tape():
    """Compiled before the registration, `cubes` stashes x and has no inverse; after
    `definverse(cube, np.cbrt)` it is compiled again and undoes `x = 0.5 * cube(x) +
    0.25` by `x = cbrt((x - 0.25) / 0.5)`, with no tape."""
    import bytrev
    _, tape = bytrev.reversible(cubes).forward(0.7, 4)
    assert tape.nstashed == 4
    with pytest.raises(bytrev.NotInvertibleError, match="cube"):
        bytrev.inverse(cubes)
    bytrev.definverse(cube, np.cbrt)
    assert bytrev.inverse(cube) is np.cbrt
    out, tape = bytrev.reversible(cubes).forward(0.7, 4)
    assert out == cubes(0.7, 4) and tape.nbytes == 0
    assert bytrev.reversible(cubes).backward(out, tape)[0] == pytest.approx(0.7, rel=1e-12)
    assert bytrev.inverse(cubes)(out, 4) == pytest.approx(0.7, rel=1e-12)
    assert "cbrt" in bytrev.reversible(cubes).show()


rules.definverse(warp, lambda y, c: np.arcsinh(y - c))


@given(x=st.floats(-2.0, 2.0), c=st.floats(-1.0, 1.0), n=st.integers(0, 6))
def test_a_registered_inverse_takes_the_other_arguments(x, c, n):
    import bytrev
    from bytrev.testing import check_grad
    out, tape = bytrev.reversible(warps).forward(x, c, n)
    assert out == warps(x, c, n) and tape.nbytes == 0
    assert bytrev.inverse(warps)(out, c, n) == pytest.approx(x, rel=1e-9, abs=1e-12)
    check_grad(warps, x, c, n, argnums=(0, 1), modes=("reverse",))


def test_lookup_is_by_identity():
    assert rules.vjp_rule(np.sin) is not None
    assert rules.vjp_rule(lambda x: x) is None
    assert rules.vjp_rule(np.abs) is rules.vjp_rule(np.absolute)
    assert rules.elementwise_template(np.sin) == ("g * np.cos(x)",)
    assert rules.elementwise_template(math.sin) == ("g * math.cos(x)",)
    assert rules.elementwise_template(np.sum) is None


# ---------------------------------------------------------------------------------------
# Backend independence: rules on a CuPy stand-in

class Duck(np.lib.mixins.NDArrayOperatorsMixin):
    """A stand-in for a CuPy array: NumPy's functions and ufuncs dispatch to it; it refuses
    to become a NumPy array and refuses NumPy arrays as operands, as CuPy does."""

    def __init__(self, data):
        self.data = data

    def __array__(self, *args, **kwargs):
        raise TypeError("a Duck array converted to a NumPy array")

    def __bool__(self):
        return bool(self.data)

    def __float__(self):
        return float(self.data)

    def __repr__(self):
        return f"Duck({self.data!r})"

    @classmethod
    def unwrap(cls, value):
        if isinstance(value, Duck):
            return value.data
        if isinstance(value, np.ndarray):
            raise TypeError(f"a NumPy array {value.shape} mixed with Duck arrays")
        if isinstance(value, (list, tuple)):
            return type(value)(cls.unwrap(v) for v in value)
        if isinstance(value, dict):
            return {k: cls.unwrap(v) for k, v in value.items()}
        return value

    @classmethod
    def wrap(cls, value):
        if isinstance(value, (np.ndarray, np.generic)):  # CuPy gives 0-d arrays, not scalars
            return Duck(np.asarray(value))
        if isinstance(value, tuple):
            return tuple(cls.wrap(v) for v in value)
        if isinstance(value, list):
            return [cls.wrap(v) for v in value]
        return value

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        return self.wrap(getattr(ufunc, method)(*self.unwrap(inputs), **self.unwrap(kwargs)))

    def __array_function__(self, func, types, args, kwargs):
        return self.wrap(func(*self.unwrap(args), **self.unwrap(kwargs)))

    shape = property(lambda self: self.data.shape)
    ndim = property(lambda self: self.data.ndim)
    dtype = property(lambda self: self.data.dtype)
    size = property(lambda self: self.data.size)
    flags = property(lambda self: self.data.flags)
    T = property(lambda self: Duck(self.data.T))

    def __len__(self):
        return len(self.data)

    def __getitem__(self, index):
        return self.wrap(self.data[self.unwrap(index)])

    def __setitem__(self, index, value):
        self.data[self.unwrap(index)] = self.unwrap(value)

    def __getattr__(self, name):  # methods: sum, reshape, astype, copy, ...
        method = getattr(self.data, name)
        return lambda *args, **kwargs: self.wrap(method(*self.unwrap(args), **self.unwrap(kwargs)))


def _ducks(*shape, positive=False):
    data = np.random.default_rng(sum(shape) + 29).standard_normal(shape)
    return Duck(np.abs(data) + 0.5 if positive else data)


def _invertible():
    return Duck(np.random.default_rng(30).standard_normal((3, 3)) + 3 * np.eye(3))


BACKEND_CASES = [
    (np.sum, (_ducks(3, 4),), {"axis": 1}), (np.sum, (_ducks(3, 4),), {}),
    (np.mean, (_ducks(3, 4),), {}), (np.max, (_ducks(3, 4),), {}),
    (np.prod, (_ducks(3, 4),), {"axis": 0}), (np.var, (_ducks(3, 4),), {}),
    (np.std, (_ducks(3, 4),), {"axis": 1}), (np.cumsum, (_ducks(3, 4),), {}),
    (np.linalg.norm, (_ducks(3, 4),), {}), (np.linalg.norm, (_ducks(3, 4),), {"ord": 2}),
    (np.linalg.norm, (_ducks(3, 4),), {"ord": 1}), (np.linalg.norm, (_ducks(5),), {"ord": np.inf}),
    (np.dot, (_ducks(3), _ducks(3)), {}), (np.dot, (_ducks(2, 3), _ducks(3, 4)), {}),
    (np.matmul, (_ducks(3), _ducks(3)), {}), (np.matmul, (_ducks(3), _ducks(3, 2)), {}),
    (np.inner, (_ducks(3), _ducks(3)), {}), (np.outer, (_ducks(3), _ducks(2)), {}),
    (np.vdot, (_ducks(3), _ducks(3)), {}), (np.trace, (_ducks(3, 3),), {}),
    (np.linalg.det, (_invertible(),), {}), (np.linalg.slogdet, (_invertible(),), {}),
    (np.linalg.inv, (_invertible(),), {}), (np.linalg.solve, (_invertible(), _ducks(3)), {}),
    (np.einsum, ("i,i", _ducks(3), _ducks(3)), {}), (np.einsum, ("ii->i", _ducks(3, 3)), {}),
    (np.einsum, ("ij->", _ducks(2, 3)), {}), (np.tensordot, (_ducks(2, 3), _ducks(2, 3)), {}),
    (np.kron, (_ducks(2), _ducks(3)), {}), (np.take, (_ducks(5), Duck(np.array([0, 0, 3]))), {}),
    (np.repeat, (_ducks(3), Duck(np.array([1, 0, 2]))), {}), (np.tile, (_ducks(3), 2), {}),
    (np.concatenate, ((_ducks(2), _ducks(3)),), {}), (np.stack, ([_ducks(2), _ducks(2)],), {}),
    (np.sort, (_ducks(4),), {}), (np.clip, (_ducks(4), -0.5, 0.5), {}),
    (np.where, (Duck(np.array([True, False, True])), _ducks(3), 1.0), {}),
    (np.maximum, (_ducks(3), _ducks(3)), {}), (np.power, (_ducks(3, positive=True), _ducks(3)), {}),
    (np.diag, (_ducks(3),), {}), (np.diag, (_ducks(3, 3),), {}),
    (np.diagonal, (_ducks(3, 4), 1), {}),
    (np.add, (_ducks(3, 1), _ducks(4)), {}), (np.multiply, (_ducks(3), 2.0), {}),
    (np.broadcast_to, (_ducks(3, 1), (2, 3, 4)), {}), (np.sin, (_ducks(3),), {}),
    (sum, (_ducks(3),), {}), (sum, (_ducks(3, 2),), {}), (max, (_ducks(3),), {}),
    (abs, (_ducks(3),), {}), (float, (_ducks(),), {}),
]


def _on_numpy(value):
    return Duck.unwrap(value) if not isinstance(value, np.ndarray) else value


@pytest.mark.parametrize("func, args, kwargs", BACKEND_CASES,
                         ids=[f"{getattr(c[0], '__name__', c[0])}-{i}"
                              for i, c in enumerate(BACKEND_CASES)])
def test_rules_stay_on_the_arguments_backend(func, args, kwargs):
    """With CuPy-like arguments (and the Python float seed 1.0 for a scalar result), the
    cotangents are arrays of that kind, equal to the ones computed with NumPy."""
    ans = func(*args, **kwargs)
    if isinstance(ans, tuple):
        g = (1.0, 1.0)
    elif np.ndim(ans) == 0:
        g = 1.0
    else:
        g = Duck(np.random.default_rng(31).standard_normal(np.shape(ans)))
    got = rules.vjp_rule(func)(g, ans, *args, **kwargs)
    expected = rules.vjp_rule(func)(_on_numpy(g), _on_numpy(ans), *_on_numpy(args),
                                    **kwargs)
    for c, c_numpy, arg in zip(got, expected, args):
        if not is_float_valued(_on_numpy(arg)):
            assert c is None
            continue
        for part, part_numpy, element in zip(*(v if isinstance(arg, (list, tuple)) else [v]
                                              for v in (c, c_numpy, arg))):
            if np.ndim(element) > 0:
                assert isinstance(part, Duck), type(part)
            np.testing.assert_allclose(_on_numpy(part), part_numpy, rtol=1e-12)


def test_getitem_and_accumulate_stay_on_the_backend():
    x = _ducks(4, 3)
    for index in (1, (slice(None), 0), Duck(np.array([0, 0, 2])), Duck(x.data > 0)):
        c = rules.getitem_vjp(x[index] * 0 + 1.0, x, index)
        assert isinstance(c, Duck)
        rules.accumulate_index(c, index, 1.0)
    np.testing.assert_array_equal(rules.unbroadcast(Duck(np.ones((2, 3))), Duck(np.ones(3))).data,
                                  [2, 2, 2])
    assert isinstance(rules.zeros_like_value(x), Duck)
    assert isinstance(rules.materialize(ZERO, [x])[0], Duck)


# ---------------------------------------------------------------------------------------
# SciPy (optional)


def test_logsumexp():
    pytest.importorskip("scipy")
    from scipy.special import logsumexp

    rng = np.random.default_rng(28)
    x = rng.standard_normal((3, 4))
    check_vjp(logsumexp, (x,))
    check_vjp(logsumexp, (x, 1))
    check_vjp(logsumexp, (x,), {"axis": (0, 1), "keepdims": True})
    check_vjp(logsumexp, (x,), {"axis": -1, "b": rng.uniform(0.5, 2, 4)})
    check_vjp(lambda a: logsumexp(a, axis=0, return_sign=True)[0], (x,),
              rule=lambda g, ans, a: rules.vjp_rule(logsumexp)(
                  (g, ZERO), logsumexp(a, axis=0, return_sign=True), a, axis=0,
                  return_sign=True))
