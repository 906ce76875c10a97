"""What the reversible form records, and where.

Expectations follow the rules in the spec: a recomputable branch costs no bit, a
`for ... in range(n)` loop with n unchanged and no `break` costs no trip count, an
invertible update costs nothing, `while` loops and loops with `break` record one trip
count per loop execution, and an overwritten value that cannot be recomputed is
stashed. Line numbers are absolute source lines, found through markers in comments.
"""
import ast
import functools
import inspect
import math
import numbers

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import bytrev
from corpus import CORPUS, branchy_loop, clone

MiB = 1 << 20


@functools.lru_cache(maxsize=None)
def rev(f):
    return bytrev.reversible(f)


def counters(tape):
    return tape.nbits, tape.ncounts, tape.nstashed


def marked_line(f, marker):
    lines, start = inspect.getsourcelines(f)
    hits = [start + i for i, text in enumerate(lines) if marker in text]
    assert len(hits) == 1, (f.__name__, marker, hits)
    return hits[0]


# --------------------------------------------------------------------------- corpus facts

TAPE_CASES = [c for c in CORPUS
              if c.zero_tape or any(getattr(c, a) is not None for a in ("bits", "counts", "stashed"))]


@pytest.mark.parametrize("case", TAPE_CASES, ids=lambda c: c.name)
@given(data=st.data())
def test_corpus_tape_facts(case, data):
    args = data.draw(case.args, label="args")
    _, tape = rev(case.func).forward(*clone(args))
    for attr, field in (("bits", "nbits"), ("counts", "ncounts"), ("stashed", "nstashed")):
        want = case.expected(attr, args)
        if want is not None:
            assert getattr(tape, field) == want, f"tape.{field} = {getattr(tape, field)}, want {want}"
    assert isinstance(tape.nbytes, numbers.Integral) and tape.nbytes >= 0


# --------------------------------------------------------------------------- branches


def sign_step(x, k):
    if k > 0:
        x = x + 1.0
    else:
        x = x - 1.0
    return x


def branch_on_later_count(x, n):
    if n > 3:
        x = x * 2.0
    for i in range(n):
        x = x + 1.0
    return x


def branch_on_changed_value(x):
    if x > 0:
        x = x - 1.0
    return x


@pytest.mark.parametrize("k", [-2.0, 0.0, 3.0])
def test_branch_on_untouched_parameter_records_no_bit(k):
    _, tape = rev(sign_step).forward(0.25, k)
    assert counters(tape) == (0, 0, 0)


@pytest.mark.parametrize("n", [0, 2, 9])
def test_branch_on_variable_used_later_records_no_bit(n):
    _, tape = rev(branch_on_later_count).forward(0.25, n)
    assert counters(tape) == (0, 0, 0)


@pytest.mark.parametrize("x", [-1.0, 0.5, 3.0])
def test_branch_on_changed_value_records_one_bit(x):
    _, tape = rev(branch_on_changed_value).forward(x)
    assert tape.nbits == 1
    assert tape.ncounts == 0


# --------------------------------------------------------------------------- loops


def range_sum(x, n):
    for i in range(n):
        x = x + i * 0.5
    return x


def affine_loop(x, n):
    for i in range(n):
        x = x * 1.5 + 1.0
    return x


def while_grow(x):
    while x < 100.0:
        x = x * 1.5 + 1.0
    return x


def while_in_for(x, m):
    for j in range(m):
        while x < 10.0 * (j + 1):
            x = x + 1.0
    return x


def break_loop(x, n):
    for i in range(n):
        x = x + 1.0
        if x > 5.0:
            break
    return x


@pytest.mark.parametrize("n", [0, 1, 7, 50])
def test_range_loop_records_no_trip_count(n):
    _, tape = rev(range_sum).forward(1.0, n)
    assert counters(tape) == (0, 0, 0)


def test_affine_loop_tape_does_not_grow_with_n():
    _, small = rev(affine_loop).forward(0.5, 10)
    # Start at the fixed point -2 (-2 * 1.5 + 1 == -2) so that 1000 steps stay finite.
    _, large = rev(affine_loop).forward(-2.0, 1000)
    assert counters(small) == (0, 0, 0)
    assert counters(large) == (0, 0, 0)
    assert small.nbytes == large.nbytes


@pytest.mark.parametrize("n", [0, 1, 10, 1000])
def test_branchy_loop_records_one_bit_per_iteration(n):
    _, tape = rev(branchy_loop).forward(0.3, n)
    assert tape.nbits == n
    assert tape.ncounts == 0


def test_branchy_loop_tape_is_small():
    n = 100_000
    r = rev(branchy_loop)
    out, tape = r.forward(0.3, n)
    assert out == branchy_loop(0.3, n)
    assert tape.nbits == n
    assert tape.ncounts == 0
    assert 0 < tape.nbytes < MiB, tape.nbytes
    x, m = r.backward(out, tape)
    assert m == n
    assert x == pytest.approx(0.3, rel=1e-9)


def test_branchy_loop_tape_grows_with_n():
    _, t10 = rev(branchy_loop).forward(0.3, 10)
    _, t1000 = rev(branchy_loop).forward(0.3, 1000)
    assert t1000.nbytes > t10.nbytes


def bitmap_loops(x, lo, hi, m):
    for j in range(m):
        for i in range(lo, hi):
            if x > 0.5:
                x = x * 0.5
            else:
                x = x * 1.5 + i * 0.01
            if x > 0.25:
                x = x - 0.1
    return x


def test_branches_run_every_iteration_of_a_range_loop_use_bitmaps():
    assert [s.bitmap for s in rev(bitmap_loops).analysis.sites if s.kind == "bit"] == [True, True]
    assert not any(s.bitmap for s in rev(break_loop).analysis.sites)


@given(x=st.floats(0.0, 2.0), lo=st.integers(-5, 5), hi=st.integers(-5, 12),
       m=st.integers(0, 3))
def test_bitmap_bits_round_trip_and_differentiate(x, lo, hi, m):
    """Bits set in a per-loop bitmap (nested loops, a start offset, an empty range) give
    the same tape size, the same backward run and the same gradient as bits appended."""
    import autograd
    r = rev(bitmap_loops)
    out, tape = r.forward(x, lo, hi, m)
    assert out == bitmap_loops(x, lo, hi, m)
    assert tape.nbits == 2 * m * max(0, hi - lo)
    back = r.backward(out, tape)
    assert back[1:] == (lo, hi, m) and back[0] == pytest.approx(x, rel=1e-12, abs=1e-12)
    g = bytrev.grad(bitmap_loops)(x, lo, hi, m)
    assert g == pytest.approx(autograd.grad(bitmap_loops)(x, lo, hi, m), rel=1e-12)


def stash_in_if_arm(x, n):
    for i in range(n):
        if x > 0.5:
            x = x * 0.7 + 0.1 * np.sin(x)
        else:
            x = x * 1.3 + 0.05
    return x


def stash_in_else_arm(x, n):
    for i in range(2, n + 2):
        if x <= 0.5:
            x = x * 1.3 + 0.05
        else:
            x = x * 0.7 + 0.1 * np.sin(x)
    return x


def stash_in_both_arms(x, n):
    for i in range(n):
        if x > 0.5:
            x = x * 0.7 + 0.1 * np.sin(x)
        else:
            x = 0.3 + 0.5 * np.cos(x)
    return x


def stash_in_if_arm_nested(x, n):
    for j in range(3):
        for i in range(j, n):
            if x > 0.5:
                x = x * 0.7 + 0.1 * np.sin(x)
            else:
                x = x * 1.3 + 0.05
    return x


def _arm_taken(f, x, n):
    """How many iterations of the loop take the arm with np.sin."""
    taken = 0
    for _ in range(n):
        y = f(x, 1)
        taken += y == x * 0.7 + 0.1 * np.sin(x)
        x = y
    return taken


@pytest.mark.parametrize("f", [stash_in_if_arm, stash_in_else_arm, stash_in_both_arms,
                               stash_in_if_arm_nested])
@given(x=st.floats(0.0, 2.0), n=st.integers(0, 40))
def test_a_bitmap_marked_in_either_arm_reads_back_as_the_if_arm(f, x, n):
    """The bitmap of a branch is marked from the arm that writes less to the tape (the
    `else` arm when the `if` arm stashes) and flipped at the loop's end: the backward
    run and the gradient take the arms the forward run took."""
    import autograd
    out, tape = rev(f).forward(x, n)
    assert out == f(x, n)
    assert tape.nbits == (n + max(n - 1, 0) + max(n - 2, 0) if f is stash_in_if_arm_nested
                          else n)
    if f in (stash_in_if_arm, stash_in_else_arm):
        assert tape.nstashed == _arm_taken(f, x, n)
    back = rev(f).backward(out, tape)
    assert back[1] == n and back[0] == pytest.approx(x, rel=1e-12, abs=1e-12)
    assert bytrev.grad(f)(x, n) == pytest.approx(autograd.grad(f)(x, n), rel=1e-12, abs=1e-300)


@pytest.mark.parametrize("f, marked", [(stash_in_if_arm, "orelse"), (stash_in_else_arm, "body"),
                                       (stash_in_both_arms, "body")])
def test_the_bitmap_is_marked_in_the_arm_without_a_stash(f, marked):
    """No iteration pays for both a stash and the bitmap's mark; on a tie, the `if` arm
    marks it."""
    branch = next(node for node in ast.walk(rev(f).module) if isinstance(node, ast.If)
                  and "_br_bm" in ast.unparse(node))
    arms = {"body": ast.unparse(branch.body), "orelse": ast.unparse(branch.orelse)}
    assert "_br_bm" in arms[marked]
    assert "_br_bm" not in arms["orelse" if marked == "body" else "body"]


@pytest.mark.parametrize("x", [0.0, 50.0, 99.0, 150.0])
def test_while_loop_records_one_trip_count(x):
    _, tape = rev(while_grow).forward(x)
    assert tape.ncounts == 1
    assert tape.nbits == 0


@pytest.mark.parametrize("m", [0, 1, 4])
def test_while_loop_records_one_trip_count_per_execution(m):
    _, tape = rev(while_in_for).forward(0.0, m)
    assert tape.ncounts == m


@pytest.mark.parametrize("n", [0, 3, 20])
def test_loop_with_break_records_one_trip_count(n):
    _, tape = rev(break_loop).forward(1.0, n)
    assert tape.ncounts == 1


# --------------------------------------------------------------------------- stashes and empty tapes


def scale(x, k):
    return x * k


def swap_and_shift(a, b):
    a, b = b, a
    a += b
    return a, b


def both_die(a, b):
    x = a * 2.0
    y = b * 3.0
    z = x + y
    return z


def overwrite_element(a, v):
    a[1] = v
    return a


def in_place_updates(a, v):
    a[0] += v
    a[1:3] *= 2.0
    return a


def test_parameters_held_by_reference_make_an_empty_tape():
    _, tape = rev(scale).forward(np.arange(3.0), 2.0)
    assert counters(tape) == (0, 0, 0)
    assert tape.nbytes == 0


def test_swap_is_free():
    _, tape = rev(swap_and_shift).forward(1.5, -2.0)
    assert counters(tape) == (0, 0, 0)


def test_two_values_lost_at_once_stash_one():
    _, tape = rev(both_die).forward(1.0, 2.0)
    assert 1 <= tape.nstashed <= 2
    assert tape.nbits == 0 and tape.ncounts == 0


def test_subscript_store_stashes_old_element():
    a = np.array([1.0, 2.0, 3.0])
    r = rev(overwrite_element)
    out, tape = r.forward(a, 9.0)
    assert tape.nstashed == 1
    assert tape.nbits == 0 and tape.ncounts == 0
    restored = r.backward(out, tape)
    assert restored[0] is a and np.array_equal(a, [1.0, 2.0, 3.0])


def test_in_place_augmented_updates_are_free():
    a = np.array([1.0, 2.0, 3.0, 4.0])
    _, tape = rev(in_place_updates).forward(a, 0.5)
    assert counters(tape) == (0, 0, 0)


def test_stash_memory_grows_with_stashes():
    def squares(x, n):
        for i in range(n):
            x = x * x * 0.5
        return x
    _, t1 = rev(squares).forward(1.1, 1)
    _, t50 = rev(squares).forward(1.1, 50)
    assert t1.nstashed == 1 and t50.nstashed == 50
    assert t50.nbytes > t1.nbytes > 0


# --------------------------------------------------------------------------- breakdown()

_KEYS = {
    "nbits": ("nbits", "bits"),
    "ncounts": ("ncounts", "counts", "trip_counts"),
    "nstashed": ("nstashed", "stashed", "stash"),
}


def _numeric(v):
    return isinstance(v, numbers.Number) and not isinstance(v, bool)


def costly_lines(breakdown):
    assert isinstance(breakdown, dict)
    lines = set()
    for line, info in breakdown.items():
        assert isinstance(line, numbers.Integral), line
        assert isinstance(info, dict), info
        if any(_numeric(v) and v != 0 for v in info.values()):
            lines.add(line)
    return lines


def check_totals(breakdown, tape):
    """Where the per-line entries use recognisable names, they add up to the totals."""
    for total, names in _KEYS.items():
        found, s = False, 0
        for info in breakdown.values():
            for name in names:
                if name in info:
                    found, s = True, s + info[name]
                    break
        if found:
            assert s == getattr(tape, total), (total, s, getattr(tape, total))


def breakdown_example(x, n):
    for i in range(n):
        if x > 0.5:              # <- bit
            x = x * x            # <- stash
        else:
            x = x + 1.0
    while x < 100.0:             # <- count
        x = x * 1.5 + 1.0
    return x


def test_breakdown_attributes_costs_to_lines():
    _, tape = rev(breakdown_example).forward(0.2, 4)
    # 0.2 -> 1.2 (no stash), 1.44, 2.0736, 4.29981696 (three stashes); four bits; one while.
    assert (tape.nbits, tape.ncounts, tape.nstashed) == (4, 1, 3)
    bd = tape.breakdown()
    expected = {marked_line(breakdown_example, "# <- bit"),
                marked_line(breakdown_example, "# <- stash"),
                marked_line(breakdown_example, "# <- count")}
    assert costly_lines(bd) == expected, bd
    check_totals(bd, tape)


def test_breakdown_of_branch_only():
    _, tape = rev(breakdown_example).forward(-2.5, 2)  # -1.5, -0.5: bits, no stash
    bd = tape.breakdown()
    bit = marked_line(breakdown_example, "# <- bit")
    count = marked_line(breakdown_example, "# <- count")
    assert costly_lines(bd) == {bit, count}, bd
    check_totals(bd, tape)


def test_breakdown_of_empty_tape_has_no_costs():
    _, tape = rev(affine_loop).forward(0.5, 10)
    assert costly_lines(tape.breakdown()) == set()
