"""bytrev.testing: the checks pass on correct gradients and inverses and fail, with a
message naming the place, on wrong ones (a deliberately wrong derivative rule; an inverse
that loses the value to cancellation)."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bytrev
from bytrev.testing import CheckFailed, check_grad, check_inverse


def energy(x, v, dt, n):
    for i in range(n):
        v = v - dt * np.sin(x)
        x = x + dt * v
    return np.sum(0.5 * v * v - np.cos(x))


@settings(max_examples=20, deadline=None)
@given(size=st.sampled_from([1, 5, 100]), n=st.integers(0, 6), seed=st.integers(0, 99))
def test_check_grad_passes_on_correct_gradients(size, n, seed):
    """Small arguments are checked element by element, large ones (100 > FULL_SIZE) by
    random projections; the gradients come back."""
    rng = np.random.default_rng(seed)
    x, v = rng.uniform(-1, 1, size), rng.uniform(-1, 1, size)
    got = check_grad(energy, x, v, 0.1, n, argnums=(0, 1))
    want = bytrev.grad(energy, argnums=(0, 1))(x, v, 0.1, n)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_check_grad_on_a_float_argument():
    assert check_grad(lambda t: math.sin(t) * t, 0.7) == pytest.approx(
        math.cos(0.7) * 0.7 + math.sin(0.7))


class Wobble:
    """A callable with a deliberately wrong derivative rule (2 cos x for sin x)."""

    def __call__(self, x):
        return np.sin(x)


wobble = Wobble()
bytrev.defvjp(wobble, lambda g, ans, x: g * 2 * np.cos(x))


def uses_wobble(x):
    return np.sum(wobble(x) * x)


@pytest.mark.parametrize("size, what", [(1, "element 0"), (5, "element"),
                                        (200, "random projection")])
def test_check_grad_fails_on_a_wrong_rule_and_says_where(size, what):
    x = np.linspace(0.1, 1.0, size)
    with pytest.raises(CheckFailed) as info:
        check_grad(uses_wobble, x)
    message = str(info.value)
    assert isinstance(info.value, AssertionError)
    assert "uses_wobble" in message and what in message and "finite differences" in message


def step(x, v, dt):
    v = v - dt * x
    x = x + dt * v
    return x, v


def cancels(x):
    x = x + 1e20
    x = x - 1e20
    return x


def squares(x):
    x = x * x
    return x


def test_check_inverse_passes_on_an_invertible_function():
    x, v = np.array([0.5, -1.0]), np.array([0.25, 2.0])
    restored = check_inverse(step, x, v, 0.1)
    np.testing.assert_allclose(restored[0], x, rtol=1e-12)


def test_check_inverse_fails_when_rounding_loses_the_value():
    with pytest.raises(CheckFailed, match="restored x"):
        check_inverse(cancels, 0.3)


def test_check_inverse_says_why_there_is_no_inverse():
    with pytest.raises(bytrev.NotInvertibleError, match="x \\* x"):
        check_inverse(squares, 3.0)


from hypothesis.extra import numpy as hnp  # noqa: E402

from bytrev.testing import arrays, float_leaves, floats, trees  # noqa: E402


@settings(max_examples=25, deadline=None)
@given(x=arrays(hnp.array_shapes(max_dims=2, max_side=5), min_value=-2.0, max_value=2.0),
       c=floats(0.5, 2.0))
def test_strategies_feed_check_grad(x, c):
    assert x.dtype == np.float64 and np.all(np.abs(x) <= 2.0) and 0.5 <= c <= 2.0
    check_grad(lambda a, k: np.sum(np.tanh(a * k) * a), x, c, argnums=(0, 1))


@settings(max_examples=10, deadline=None)
@given(x=arrays(4, dtype=np.float32, min_value=-1.0, max_value=1.0))
def test_float32_arrays_and_their_default_tolerance(x):
    assert x.dtype == np.float32
    check_grad(lambda a: np.sum(a * a * a), x)


# --------------------------------------------------------------------------- pytrees


def tree_loss(params, x):
    hidden = np.tanh(params["w"] * x + params["b"][0])
    return np.sum(hidden * params["b"][1]) + params["scale"] * np.sum(x * x)


def tree_params(rng):
    return {"w": rng.uniform(-1, 1, 3), "b": (0.25, rng.uniform(-1, 1, 3)), "scale": 0.5,
            "steps": 3}


def test_check_grad_checks_every_float_leaf_of_a_pytree():
    params, x = tree_params(np.random.default_rng(0)), np.array([0.5, -1.0, 2.0])
    got = check_grad(tree_loss, params, x, argnums=(0, 1))
    assert set(got[0]) == set(params) and got[0]["steps"] == 0


def wobbly_tree_loss(params):
    return np.sum(wobble(params["b"][1])) + params["scale"]


def test_check_grad_names_the_leaf_whose_gradient_is_wrong():
    with pytest.raises(CheckFailed, match=r"argument 0\['b'\]\[1\] differs"):
        check_grad(wobbly_tree_loss, tree_params(np.random.default_rng(1)))


def shift(x, state):
    state["x"] += 1.5
    state["x"] -= 1.5
    x = x + state["scale"][0]
    return x


def lossy_shift(x, state):
    state["x"] += 1e20  # rounds state["x"] away: the backward run cannot restore it
    state["x"] -= 1e20
    x = x + state["scale"][0]
    return x


def test_check_inverse_compares_pytrees_leaf_by_leaf():
    state = {"x": np.array([0.5, -1.0]), "scale": [0.25, 3]}
    restored = check_inverse(shift, 0.5, state)
    assert restored[1]["scale"] == [0.25, 3]
    np.testing.assert_array_equal(restored[1]["x"], state["x"])
    with pytest.raises(CheckFailed, match=r"restored state\['x'\] as"):
        check_inverse(lossy_shift, 0.5, {"x": np.array([0.5, -1.0]), "scale": [0.25, 3]})


def squares_of_leaves(tree):
    """A primitive over any pytree (not lifted: it has a rule)."""
    return sum(float(np.sum(leaf * leaf)) for _, leaf in float_leaves(tree))


def _doubled(g, tree):
    if isinstance(tree, dict):
        return {k: _doubled(g, v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_doubled(g, v) for v in tree)
    return 2.0 * g * tree


bytrev.defvjp(squares_of_leaves, lambda g, ans, tree: _doubled(g, tree))


def scaled_squares(tree, c):
    return squares_of_leaves(tree) * c


@settings(max_examples=30, deadline=None)
@given(tree=trees(), c=floats(0.5, 2.0))
def test_trees_feed_check_grad(tree, c):
    leaves = float_leaves(tree)
    assert leaves and all(np.all(np.isfinite(leaf)) for _, leaf in leaves)
    got = check_grad(scaled_squares, tree, c, argnums=(0, 1))
    for path, leaf in leaves:  # the gradient has the tree's structure
        g = got[0]
        for k in path:
            g = g[k]
        np.testing.assert_allclose(g, 2.0 * c * np.asarray(leaf), rtol=1e-14)


# --------------------------------------------------------------------------- the pytest plugin

pytest_plugins = ["pytester"]

USER_TESTS = '''
import numpy as np
import bytrev
from bytrev.testing import arrays, floats, verify

@verify(x=arrays(4, min_value=-2.0, max_value=2.0), v=arrays(4, min_value=-2.0, max_value=2.0),
        dt=floats(0.01, 0.1), inverse=True, max_examples=15)
def step(x, v, dt):
    v = v - dt * np.sin(x)
    x = x + dt * v
    return x, v

class Wobble:
    def __call__(self, x):
        return np.sin(x)

wobble = Wobble()
bytrev.defvjp(wobble, lambda g, ans, x: g * 2 * np.cos(x))

@verify(x=arrays(3, min_value=0.5, max_value=1.5), grad=("x",), max_examples=15)
def wrong_rule(x):
    return float(np.sum(wobble(x)))
'''


def test_marked_functions_become_property_tests(pytester):
    """The plugin turns @verify functions into `name[gradient]` / `name[inverse]` tests;
    a wrong derivative rule fails with the input hypothesis shrank it to and the worst
    element."""
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest("-v", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*step[[]inverse[]] PASSED*",
                                 "*wrong_rule[[]gradient[]] FAILED*",
                                 "*CheckFailed*wrong_rule*finite differences*",
                                 "*Failing test case*"])


# --------------------------------------------------------------------------- bytrev check

CHECKED_MODULE = USER_TESTS + '''
import math

def annotated(x: float, n: int):
    for i in range(n):
        x = x + 0.1 * math.sin(x) * x
    return x

def unannotated(x):
    return x
'''


@pytest.mark.parametrize("target, status, says", [
    ("step", 0, "step[inverse]: passed"),
    ("annotated", 0, "annotated[gradient]: passed"),
    ("wrong_rule", 1, "Failing test case"),
    ("unannotated", 2, "needs a strategy per parameter"),
    ("nothing_here", 2, "cannot find"),
])
def test_bytrev_check_command(tmp_path, monkeypatch, capsys, target, status, says):
    from bytrev.__main__ import main
    (tmp_path / "checked_module.py").write_text(CHECKED_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["check", f"checked_module:{target}", "--examples", "10"]) == status
    out = capsys.readouterr()
    assert says in out.out + out.err


class Skewed:
    """Right reverse rule, wrong forward rule (3 cos x for sin x)."""

    def __call__(self, x):
        return np.sin(x)


skewed = Skewed()
bytrev.defvjp(skewed, lambda g, ans, x: g * np.cos(x))
bytrev.defjvp(skewed, lambda t, ans, x: 3.0 * np.cos(x) * t)


def uses_skewed(x):
    return np.sum(skewed(x) * x)


def test_check_grad_checks_forward_mode_too():
    x = np.linspace(0.1, 1.0, 4)
    check_grad(uses_skewed, x, modes=("reverse",))
    with pytest.raises(CheckFailed, match="forward-mode derivative of argument 0"):
        check_grad(uses_skewed, x)
