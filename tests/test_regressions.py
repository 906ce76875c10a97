"""Programs on which random-program testing once found a wrong backward run, minimised.
Each one runs forward, backward, and (where it is invertible) through the inverse."""
import math

import numpy as np
import pytest

import bytrev


def _helper(u, c):
    return u * 1.25 + c


def dead_copy_then_overwrite(x, y):
    # `x = x` has a target nobody reads later: its new value is not kept, so it cannot
    # be inverted to give x back (found: seed 23).
    x = x
    w = y
    x = w
    y, w = w, y
    return x + 2.0 * y - w


def loop_target_rebound(x, y):
    # The body rebinds the loop target and a recomputed branch reads it (seed 119).
    z = 0.0
    for t in (x, y):
        t = 2.0 * y
        if z + t > 1.0:
            z = z + t
        else:
            z = z - t
    return z + x


def sequence_changed_while_iterated(x, a):
    # Iterating an array reads each element when it gets there (seed 467).
    for t in a:
        a[2] += t * 0.5 + x
    return x


def inverse_reads_a_stashed_value(x, a, y):
    # Two values die in one statement; the one recovered reads the stashed one inside
    # a conditional expression (seed 463).
    t = 1.0
    i = 0
    z = t + y - (0.25 if a[i % 3] > 0 else 1.5) + 1.5
    return x + 2.0 * y + z


def iterable_rebound_in_loop(x, y):
    # The loop reads y once, on entry, and then rebinds it (seed 576).
    for t in [x, y]:
        y = (t - 0.5) * 1.5 * _helper(t, 0.25)
    return x


CASES = [
    (dead_copy_then_overwrite, (0.3, 1.7)),
    (loop_target_rebound, (0.3, 0.4)),
    (loop_target_rebound, (0.3, 0.9)),
    (sequence_changed_while_iterated, (0.25, np.array([0.5, -1.0, 2.0]))),
    (inverse_reads_a_stashed_value, (0.3, np.array([0.5, -1.0, 2.0]), 1.7)),
    (inverse_reads_a_stashed_value, (0.3, np.array([-0.5, -1.0, 2.0]), 1.7)),
    (iterable_rebound_in_loop, (0.3, 1.7)),
]


@pytest.mark.parametrize("f, args", CASES, ids=lambda v: getattr(v, "__name__", ""))
def test_forward_and_backward(f, args):
    expected = f(*[a.copy() if isinstance(a, np.ndarray) else a for a in args])
    given = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    r = bytrev.reversible(f)
    result, tape = r.forward(*given)
    assert result == expected
    back = r.backward(result, tape)
    for original, value in zip(args, back):
        np.testing.assert_allclose(value, original, rtol=1e-12, atol=1e-12)
    for passed, value in zip(given, back):
        if isinstance(passed, np.ndarray):
            assert value is passed


def test_a_parameter_overwritten_before_use_is_not_invertible():
    with pytest.raises(bytrev.NotInvertibleError) as e:
        bytrev.inverse(dead_copy_then_overwrite)
    line = dead_copy_then_overwrite.__code__.co_firstlineno + 3
    assert f"line {line}: `x = x` overwrites x and has no inverse" in str(e.value)


def test_dividing_back_is_floor_division_only_for_integers():
    # `x * c` was undone by floor division for any non-float type, Fractions included.
    from fractions import Fraction

    def f(x, c):
        x = (x + 1) * c
        return x

    g = bytrev.inverse(f)
    assert g(f(Fraction(3, 10), Fraction(1, 2)), Fraction(1, 2)) == Fraction(3, 10)
    assert g(f(7, 3), 3) == 7 and isinstance(g(f(7, 3), 3), int)
    a = np.array([4, 5, 6])
    assert np.array_equal(g(f(a.copy(), 3), 3), a)
