"""Forward mode (bytrev.jvp, bytrev.jacfwd) on the whole gradient corpus
(tests/grad_corpus.py): the value is f's own, bit for bit; the tangent J u agrees with
central finite differences, and <w, J u> with <J^T w, u> from the reverse sweep."""
import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import bytrev
from grad_corpus import CASES, copy_tree, is_float_leaf, powers, to_vector
from test_grad import assert_tree_equal, case_id

RTOL, ATOL = 1e-5, 1e-7  # against finite differences (ATOL scaled by the magnitudes)
VJP_RTOL = 1e-9          # against the reverse sweep (exact vs exact)


def tangent_like(tree, rng):
    """A random tangent with the structure of `tree`: float leaves get values, other
    leaves None."""
    if isinstance(tree, (tuple, list)):
        return type(tree)(tangent_like(t, rng) for t in tree)
    if isinstance(tree, dict):
        return {k: tangent_like(v, rng) for k, v in tree.items()}
    if not is_float_leaf(tree):
        return None
    if isinstance(tree, np.ndarray):
        return rng.standard_normal(tree.shape).astype(tree.dtype)
    return float(rng.standard_normal())


def moved(tree, tangent, s):
    """`tree` + s * `tangent` on its float leaves (types kept)."""
    if tangent is None:
        return copy_tree(tree)
    if isinstance(tree, (tuple, list)):
        return type(tree)(moved(a, t, s) for a, t in zip(tree, tangent))
    if isinstance(tree, dict):
        return {k: moved(tree[k], tangent[k], s) for k in tree}
    if isinstance(tree, np.ndarray):
        return (tree + s * tangent).astype(tree.dtype)
    return type(tree)(tree + s * tangent)


def weights_like(out, rng):
    return rng.standard_normal(to_vector(out).size)


@pytest.mark.parametrize("case", CASES, ids=case_id)
@settings(max_examples=6, deadline=None)
@given(data=st.data())
def test_jvp_matches_finite_differences_and_the_reverse_sweep(case, data):
    args = data.draw(case.strategy, label="args")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    u = tangent_like(args, rng)
    want_out = case.f(*copy_tree(args))

    out, t = bytrev.jvp(case.f, copy_tree(args), u)
    assert_tree_equal(out, want_out, what="jvp's primal output")
    got = to_vector(t)
    assert got.shape == to_vector(want_out).shape, "the tangent has the output's structure"

    w = weights_like(want_out, rng)
    scale = max(1.0, float(np.max(np.abs(to_vector(args)), initial=0.0)))
    h = 1e-6 * scale / max(1e-300, float(np.max(np.abs(to_vector(u)), initial=0.0)))

    def phi(s):
        return float(np.dot(w, to_vector(case.f(*moved(args, u, s)))))

    fd = (phi(h) - phi(-h)) / (2 * h)
    projected = float(np.dot(w, got))
    size = max(1.0, abs(fd), float(np.sum(np.abs(w * got))))
    assert abs(projected - fd) <= RTOL * abs(fd) + ATOL * size, (
        f"<w, J u> = {projected!r}, finite differences {fd!r}")

    # <w, J u> = <J^T w, u>, with J^T w from bytrev.vjp
    _, vjp_fn = bytrev.vjp(case.f, *copy_tree(args))
    cts = vjp_fn(_unflatten_like(want_out, w))
    reverse = sum(float(np.dot(to_vector(c), to_vector(ui)))
                  for c, ui in zip(cts, u) if c is not None and ui is not None)
    assert abs(projected - reverse) <= VJP_RTOL * size, (
        f"<w, J u> = {projected!r} forward, {reverse!r} reverse")


def _unflatten_like(tree, vec):
    """`vec`'s consecutive pieces in the structure of `tree`'s float leaves."""
    pos = [0]

    def go(t):
        if isinstance(t, (tuple, list)):
            return type(t)(go(x) for x in t)
        if not is_float_leaf(t):
            return 0.0
        n = np.size(t)
        piece = vec[pos[0]:pos[0] + n]
        pos[0] += n
        return piece.reshape(np.shape(t)) if isinstance(t, np.ndarray) else float(piece[0])
    return go(tree)


# --------------------------------------------------------------------------- jacfwd


def rotation(theta, v):
    c, s = math.cos(theta), math.sin(theta)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])


def test_jacfwd_equals_the_reverse_jacobian():
    v = np.array([0.5, -2.0])
    np.testing.assert_allclose(bytrev.jacfwd(rotation, 1)(0.3, v),
                               bytrev.jacobian(rotation, 1)(0.3, v), rtol=1e-14)
    assert bytrev.jacfwd(rotation, 0)(0.3, v).shape == (2,)


# --------------------------------------------------------------------------- what the dual numbers must get right


def test_a_scalar_tangent_broadcasts_to_an_array_result():
    out, t = bytrev.jvp(lambda s, a: s + a, (0.5, np.zeros(3)), (2.0, None))
    np.testing.assert_array_equal(t, [2.0, 2.0, 2.0])


def fills_in_place(x, w):
    out = np.zeros(3)
    for i in range(3):
        out[i] = x[i] * w
    out[0:2] *= w  # through a view of out
    y = out + 1.0
    y += out  # y's tangent is its own: out's stays as it was
    return out, y


def test_arrays_filled_and_updated_in_place_keep_their_tangents():
    x = np.array([1.0, 2.0, 3.0])
    (out, y), (t_out, t_y) = bytrev.jvp(fills_in_place, (x, 2.0), (np.zeros(3), 1.0))
    np.testing.assert_array_equal(out, [4.0, 8.0, 6.0])
    np.testing.assert_array_equal(t_out, [4.0, 8.0, 3.0])  # d(x_i w^2)/dw, d(x_2 w)/dw
    np.testing.assert_array_equal(t_y, 2 * t_out)


def helper_with_math(u):
    return math.exp(math.sin(u)) + float(u) * 2.0


def calls_a_helper(x):
    return helper_with_math(x) * x


def test_math_functions_and_float_inside_the_users_helpers():
    x = 0.7
    out, t = bytrev.jvp(calls_a_helper, (x,), (1.0,))
    assert out == calls_a_helper(x) and type(t) is float
    want = (math.exp(math.sin(x)) * math.cos(x) + 2.0) * x + helper_with_math(x)
    assert t == pytest.approx(want, rel=1e-14)


class Opaque:
    """A callable bytrev cannot see into (it converts its argument to float)."""

    def __call__(self, x):
        return math.erf(float(x))  # <- drops the tangent


opaque = Opaque()


def uses_opaque(x):
    y = x * 2.0
    return opaque(y)


def test_a_conversion_that_would_drop_a_tangent_is_refused_with_its_line():
    with pytest.raises(bytrev.UnsupportedError, match="defjvp") as info:
        bytrev.jvp(uses_opaque, (0.3,), (1.0,))
    assert info.value.filename == __file__ and info.value.function == "Opaque.__call__"
    assert "# <- drops the tangent" in open(__file__).read().splitlines()[info.value.line - 1]


class Scaled:
    def __call__(self, x):
        return 3.0 * np.asarray(x) ** 2


scaled = Scaled()
bytrev.defjvp(scaled, lambda t, ans, x: 6.0 * x * t)


def test_defjvp_gives_a_callable_its_forward_rule():
    x = np.array([0.5, -1.0])
    out, t = bytrev.jvp(lambda a: np.sum(scaled(a)), (x,), (np.array([1.0, 2.0]),))
    assert t == pytest.approx(6.0 * 0.5 * 1.0 + 6.0 * -1.0 * 2.0)


# --------------------------------------------------------------------------- Hessians: forward over reverse

SCALAR = [c for c in CASES if c.output == "scalar"]
AUTOGRAD = [c for c in SCALAR if c.autograd_ok]


def tangents_on(args, argnums, rng):
    """Random tangents for the differentiated arguments, None for the others."""
    return tuple(tangent_like(a, rng) if i in argnums else None for i, a in enumerate(args))


def hessian_times(case, args, u):
    """(grad, H u) of the case at args: jvp of its gradient (forward over reverse)."""
    g = bytrev.grad(case.f, argnums=case.argnums_tuple)
    grads, hu = bytrev.jvp(g, copy_tree(args), u)
    return grads, hu


def no_underflow(args):
    """Whether products of the arguments stay clear of underflow: below 1e-150 a product
    of two values rounds to 0, and the backward run's inverse of a product (a division)
    cannot restore the factor's value or its tangent (see the issue note)."""
    return all(v == 0 or abs(v) > 1e-150 for v in to_vector(args))


@pytest.mark.parametrize("case", SCALAR, ids=case_id)
@settings(max_examples=4, deadline=None)
@given(data=st.data())
def test_hessian_vector_products_match_differences_of_gradients_and_are_symmetric(case, data):
    args = data.draw(case.strategy, label="args")
    assume(no_underflow(args))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    nums = case.argnums_tuple
    u1, u2 = tangents_on(args, nums, rng), tangents_on(args, nums, rng)
    grads, hu1 = hessian_times(case, args, u1)
    want = to_vector(bytrev.grad(case.f, argnums=nums)(*copy_tree(args)))
    # the gradient itself (on dual numbers the sweep takes the generic rules, not the
    # inlined float code: an ulp may differ)
    np.testing.assert_allclose(to_vector(grads), want, rtol=1e-12, atol=1e-300)

    scale = max(1.0, float(np.max(np.abs(to_vector(args)), initial=0.0)))
    h = 1e-5 * scale / max(1e-300, float(np.max(np.abs(to_vector(u1)), initial=0.0)))
    g = bytrev.grad(case.f, argnums=nums)
    fd = (to_vector(g(*moved(args, u1, h))) - to_vector(g(*moved(args, u1, -h)))) / (2 * h)
    got = to_vector(hu1)
    size = max(1.0, float(np.max(np.abs(fd), initial=0.0)))
    assert np.all(np.abs(got - fd) <= 1e-4 * np.abs(fd) + 1e-6 * size), (
        f"H u = {got}, differences of gradients {fd}")

    # symmetry: <u2, H u1> = <u1, H u2>
    _, hu2 = hessian_times(case, args, u2)
    sel1 = to_vector(tuple(u1[i] for i in nums))
    sel2 = to_vector(tuple(u2[i] for i in nums))
    a, b = float(np.dot(sel2, got)), float(np.dot(sel1, to_vector(hu2)))
    assert abs(a - b) <= 1e-9 * max(1.0, abs(a), float(np.sum(np.abs(sel2 * got)))), (a, b)


@pytest.mark.parametrize("case", AUTOGRAD, ids=case_id)
@settings(max_examples=3, deadline=None)
@given(data=st.data())
def test_hessian_vector_products_match_autograd(case, data):
    import autograd
    from grad_corpus import autograd_version
    args = data.draw(case.strategy, label="args")
    # autograd's x ** y has the wrong mixed second derivative at y == 0 exactly (its VJP
    # replaces the exponent y - 1 there); bytrev's matches finite differences (above)
    assume(not (case.f is powers and args[1] == 0.0) and no_underflow(args))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    nums = case.argnums_tuple
    u = tangents_on(args, nums, rng)
    _, hu = hessian_times(case, args, u)
    fa = autograd_version(case.f)
    g = autograd.grad(fa, nums)

    def dot(grad_part, tangent):  # on autograd's boxes, following the tangent's structure
        if tangent is None:
            return 0.0
        if isinstance(tangent, dict):
            return sum(dot(grad_part[k], tangent[k]) for k in tangent)
        if isinstance(tangent, (tuple, list)):
            return sum(dot(grad_part[i], t) for i, t in enumerate(tangent))
        return autograd.numpy.sum(grad_part * tangent)

    def directional(*a):  # <grad f, u>, whose gradient is H u
        return sum(dot(gi, u[i]) for gi, i in zip(g(*a), nums))
    want = autograd.grad(directional, nums)(*copy_tree(args))
    ref = to_vector(tuple(want))
    scale = max(1.0, float(np.max(np.abs(ref), initial=0.0)))
    np.testing.assert_allclose(to_vector(hu), ref, rtol=1e-8, atol=1e-10 * scale)


def cubic(x):
    return np.sum(x[0] * x ** 3) + math.sin(x[1]) * x[2]


def test_hessian_nesting_and_refusals():
    x = np.array([0.5, -1.0, 2.0])
    H = bytrev.hessian(cubic)(x)
    assert H.shape == (3, 3)
    np.testing.assert_allclose(H, H.T, rtol=1e-14)
    np.testing.assert_array_equal(bytrev.jacobian(bytrev.grad(cubic))(x), H)
    v = np.array([1.0, 2.0, -0.5])
    np.testing.assert_allclose(bytrev.hvp(cubic, x, v), H @ v, rtol=1e-13)
    t = 0.7
    second = bytrev.grad(bytrev.grad(lambda s: math.sin(s) * s ** 3))(t)
    assert second == pytest.approx(-math.sin(t) * t ** 3 + 6 * math.cos(t) * t ** 2
                                   + 6 * t * math.sin(t), rel=1e-13)
    with pytest.raises(bytrev.UnsupportedError, match="third derivative"):
        bytrev.grad(bytrev.grad(bytrev.grad(lambda s: s ** 4)))(t)
    with pytest.raises(bytrev.UnsupportedError, match="derivative made by bytrev"):
        bytrev.vjp(bytrev.grad(cubic), x)


# --------------------------------------------------------------------------- batches of tangents

def _single_float_argument(case, args):
    """The position of the case's one differentiated argument, a float or a float array
    (jacfwd's and hessian's arguments); skips the example otherwise (a pytree)."""
    (i,) = case.argnums_tuple
    a = args[i]
    if not (type(a) is float or (isinstance(a, np.ndarray) and a.dtype.kind == "f")):
        pytest.skip("jacfwd and hessian take a float or a float array")
    return i


ARRAY_OUT = [c for c in CASES if c.output == "array" and len(c.argnums_tuple) == 1]
ONE_ARGUMENT = [c for c in SCALAR if len(c.argnums_tuple) == 1]


@pytest.mark.parametrize("case", ARRAY_OUT, ids=case_id)
@settings(max_examples=4, deadline=None)
@given(data=st.data())
def test_jacfwd_in_one_batched_run_equals_the_reverse_jacobian(case, data):
    args = data.draw(case.strategy, label="args")
    i = _single_float_argument(case, args)
    got = bytrev.jacfwd(case.f, i)(*copy_tree(args))
    want = bytrev.jacobian(case.f, i)(*copy_tree(args))
    scale = max(1.0, float(np.max(np.abs(want), initial=0.0)))
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12 * scale)


@pytest.mark.parametrize("case", ONE_ARGUMENT, ids=case_id)
@settings(max_examples=3, deadline=None)
@given(data=st.data())
def test_batched_hessians_equal_one_column_at_a_time(case, data):
    """bytrev.hessian pushes every unit tangent through one forward-over-reverse sweep;
    each column must be what jvp of the gradient gives for that tangent alone."""
    args = data.draw(case.strategy, label="args")
    assume(no_underflow(args))
    i = _single_float_argument(case, args)
    H = bytrev.hessian(case.f, i)(*copy_tree(args))
    x = args[i]
    assert H.shape == np.shape(x) + np.shape(x)
    g = bytrev.grad(case.f, i)
    for k in range(max(np.size(x), 1)):
        unit = np.zeros(np.shape(x))
        unit.reshape(-1)[k] = 1.0
        tangents = [None] * len(args)
        tangents[i] = unit if isinstance(x, np.ndarray) else 1.0
        _, column = bytrev.jvp(g, copy_tree(args), tangents)
        got = np.reshape(H, (np.size(x), np.size(x)))[:, k]
        scale = max(1.0, float(np.max(np.abs(column), initial=0.0)))
        np.testing.assert_allclose(got, np.ravel(column), rtol=1e-10, atol=1e-12 * scale)
