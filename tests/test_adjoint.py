"""The gradient sweep's own decisions (bytrev/adjoint.py): what it refuses, what it
shares between calls, and the paths it specialises (inlined float code, in-place
gradient buffers, callees run or not run forward). The broad corpus is test_grad.py."""
import math

import numpy as np
import pytest

import bytrev
from bytrev.__main__ import branchy


def central(f, x, eps=1e-6):
    return (f(x + eps) - f(x - eps)) / (2 * eps)


# --------------------------------------------------------------------------- refusals


def alias_then_update(a):
    b = a
    b[0] *= 2.0
    return np.sum(a)


def view_then_update(a):
    row = a[0]
    row *= 2.0
    return np.sum(a)


def copy_then_update(a):
    b = a.copy()
    b[0] *= 2.0
    return np.sum(b * a)


def test_shared_memory_with_an_in_place_change_is_refused():
    for f, line in ((alias_then_update, "b = a"), (view_then_update, "row = a[0]")):
        with pytest.raises(bytrev.UnsupportedError) as info:
            bytrev.grad(f)(np.ones((2, 2)))
        assert line in str(info.value) and "copy" in str(info.value)


def test_a_copy_then_an_in_place_change_is_differentiated():
    a = np.array([1.0, 2.0, 3.0])
    assert np.array_equal(bytrev.grad(copy_then_update)(a), [4.0, 4.0, 6.0])  # 2a0² + a1² + a2²
    assert np.array_equal(a, [1.0, 2.0, 3.0])


def numpy_python_function(x):
    return np.sum(np.convolve(x, x))


def test_numpy_functions_are_not_differentiated_through():
    with pytest.raises(bytrev.UnsupportedError) as info:
        bytrev.grad(numpy_python_function)(np.ones(3))
    assert "numpy.convolve" in str(info.value) and "defvjp" in str(info.value)


def bound_method_in_a_variable(x):
    total = x.sum
    return total()


def test_a_bound_method_held_in_a_variable_is_refused():
    with pytest.raises(bytrev.UnsupportedError) as info:
        bytrev.grad(bound_method_in_a_variable)(np.ones(3))
    assert "bound method sum" in str(info.value)


def lossy_shift(x):
    x = x + 1e15
    x = x - 1e15
    return x * 2.0


def test_strict_turns_the_drift_warning_into_an_error():
    with pytest.raises(bytrev.ReversalError, match="drift"):
        bytrev.grad(lossy_shift, strict=True)(0.3)


# --------------------------------------------------------------------------- specialised paths


def dot_loop(a, b, n):
    s = 0.0
    for i in range(n):
        s = s + a[i] * b[i]
    return s


def test_indexing_loop_gradient_is_exact():
    a, b = np.linspace(0.5, 2.0, 7), np.linspace(-1.0, 1.0, 7)
    ga, gb = bytrev.grad(dot_loop, (0, 1))(a, b, 7)
    assert np.array_equal(ga, b) and np.array_equal(gb, a)


def dot_loop_2d(m, v):
    s = 0.0
    for i in range(m.shape[0]):
        s = s + np.sum(m[i] * v)
    return s


def test_rows_of_a_matrix_accumulate_into_one_buffer():
    m, v = np.arange(6.0).reshape(3, 2), np.array([0.5, -1.0])
    gm, gv = bytrev.grad(dot_loop_2d, (0, 1))(m, v)
    assert np.array_equal(gm, np.tile(v, (3, 1))) and np.array_equal(gv, m.sum(axis=0))


def test_a_pullback_can_run_twice():
    out, vjp_fn = bytrev.vjp(branchy, 0.3, 50)
    first, second = vjp_fn(1.0), vjp_fn(2.0)
    assert first[0] == pytest.approx(central(lambda x: branchy(x, 50), 0.3), rel=1e-7)
    assert second[0] == pytest.approx(2 * first[0], rel=1e-12)
    assert first[1] is None  # an int argument gets no cotangent


def halve_until_small(x):
    while x > 1.0:  # a trip count: this callee needs its forward run for the backward
        x = x * 0.5
    return x * x


def calls_a_callee_with_a_tape(x):
    return halve_until_small(x * 3.0) + halve_until_small(x)


def test_callees_with_and_without_a_tape():
    for x in (0.2, 0.9, 5.0):
        g = bytrev.grad(calls_a_callee_with_a_tape)(x)
        assert g == pytest.approx(central(calls_a_callee_with_a_tape, x), rel=1e-6)


def closure_gradient(x, w):
    def scale(u):
        return u * w + x

    return scale(x) * scale(2.0)


def test_gradient_flows_into_captured_variables():
    gx, gw = bytrev.grad(closure_gradient, (0, 1))(0.7, 1.3)
    assert gx == pytest.approx(central(lambda x: closure_gradient(x, 1.3), 0.7), rel=1e-7)
    assert gw == pytest.approx(central(lambda w: closure_gradient(0.7, w), 1.3), rel=1e-7)


def two_clause_comprehension(xs, ys):
    products = [x * y for x in xs for y in ys if x > y]
    return sum(products) + len(products)


def test_list_comprehension_with_two_clauses_and_a_condition():
    xs, ys = np.array([1.0, 2.0, 3.0]), np.array([1.5, 2.5])
    gx, gy = bytrev.grad(two_clause_comprehension, (0, 1))(xs, ys)
    assert np.array_equal(gx, [0.0, 1.5, 4.0]) and np.array_equal(gy, [5.0, 3.0])


def power_tower(x, n):
    if n == 0:
        return x
    return math.sin(power_tower(x, n - 1)) * x


def test_recursion_is_differentiated_through():
    g = bytrev.grad(power_tower)(0.8, 6)
    assert g == pytest.approx(central(lambda x: power_tower(x, 6), 0.8), rel=1e-7)


# --------------------------------------------------------------------------- shapes, not values

def shape_only_operands(a, b, w):
    # `+` needs only the shapes of its operands: the einsum and the products are not
    # recomputed in the sweep (rules.Abstract); `b` broadcasts against them.
    y = np.einsum("...i,ij->...j", a, w) + w[0] * a
    y = y - b
    z = np.sum((y * 0.5) ** 2, axis=-1)
    return np.sum(z + -y[..., 0]) + np.sum(a * [1.0, -2.0, 0.5])


@pytest.mark.parametrize("shape_a, shape_b", [((4, 3), (3,)), ((2, 1, 3), (5, 1)),
                                               ((3,), ())])
def test_values_needed_only_for_their_shape_are_not_recomputed(shape_a, shape_b):
    """Against autograd, with operands that broadcast in every direction, and a list
    operand (where the shape-only evaluation gives way to the value)."""
    import types
    import autograd
    import autograd.numpy as anp
    on_autograd = types.FunctionType(shape_only_operands.__code__,
                                     dict(shape_only_operands.__globals__, np=anp))
    rng = np.random.default_rng(0)
    a, b, w = rng.standard_normal(shape_a), rng.standard_normal(shape_b), \
        rng.standard_normal((3, 3))
    got = bytrev.grad(shape_only_operands, argnums=(0, 1, 2))(a, b, w)
    want = autograd.grad(on_autograd, (0, 1, 2))(a, b, w)
    for g, h in zip(got, want):
        np.testing.assert_allclose(g, h, rtol=1e-12, atol=1e-12)


def read_only_parameters(W, b, h, n):
    # W and b are only read: their adjoints accumulate in place once the sweep owns an
    # array; `b + b` hands the same cotangent object to both operands.
    for t in range(n):
        h = np.tanh(W @ h + (b + b) * 0.5)
    return np.sum(h * h) + np.sum(b)


@pytest.mark.parametrize("n", [0, 1, 5])
def test_adjoints_of_read_only_parameters_accumulate_in_place(n):
    import types
    import autograd
    import autograd.numpy as anp
    on_autograd = types.FunctionType(read_only_parameters.__code__,
                                     dict(read_only_parameters.__globals__, np=anp))
    rng = np.random.default_rng(1)
    W, b, h = rng.standard_normal((4, 4)) / 2, rng.standard_normal(4), rng.standard_normal(4)
    got = bytrev.grad(read_only_parameters, argnums=(0, 1, 2))(W, b, h, n)
    want = autograd.grad(on_autograd, (0, 1, 2))(W, b, h, n)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)
