"""Round trips over the corpus (tests/corpus.py), driven by hypothesis.

(a) `reversible(f).forward(*args)` returns exactly what `f(*args)` returns and leaves the
    arguments as f leaves them;
(b) `backward(*forward(...))` gives back every argument (exactly for exact programs,
    within tolerance for float programs); arrays mutated in place are restored in the
    very objects that were passed, and parameters f never rebinds or mutates come back
    as the same objects;
(c) for invertible functions, `inverse(f)(*outs, *rest)` gives back the first k arguments;
(d) for the others, `inverse(f)` raises NotInvertibleError naming the line.
"""
import functools
import inspect
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import bytrev
from bytrev.errors import BytrevError, NotInvertibleError
from corpus import CORPUS, clone, close, identical, magnitude

INVERTIBLE = [c for c in CORPUS if c.invertible]
NOT_INVERTIBLE = [c for c in CORPUS if not c.invertible]


def case_id(c):
    return c.name


@functools.lru_cache(maxsize=None)
def rev(f):
    return bytrev.reversible(f)


@functools.lru_cache(maxsize=None)
def inv(f):
    return bytrev.inverse(f)


def tolerance(case, *values):
    return 1e-12 * case.scale * magnitude(*values)


# --------------------------------------------------------------------------- (a) forward == f


@pytest.mark.parametrize("case", CORPUS, ids=case_id)
@given(data=st.data())
def test_forward_matches_direct_call(case, data):
    args = data.draw(case.args, label="args")
    direct_args = clone(args)
    want = case.func(*direct_args)
    fwd_args = clone(args)
    got, tape = rev(case.func).forward(*fwd_args)
    assert identical(got, want), f"forward returned {got!r}, f returned {want!r}"
    for name, after_fwd, after_direct in zip(case.params, fwd_args, direct_args):
        assert identical(after_fwd, after_direct), (
            f"after forward, argument {name} is {after_fwd!r}; f leaves {after_direct!r}")


# --------------------------------------------------------------------------- (b) backward restores


@pytest.mark.parametrize("case", CORPUS, ids=case_id)
@given(data=st.data())
def test_backward_restores_arguments(case, data):
    args = data.draw(case.args, label="args")
    original = clone(args)
    passed = clone(args)
    r = rev(case.func)
    out, tape = r.forward(*passed)
    atol = tolerance(case, original, out)
    mutated = [not identical(p, o) for p, o in zip(passed, original)]

    restored = r.backward(out, tape)

    assert isinstance(restored, tuple), type(restored)
    assert len(restored) == len(case.params), restored
    for i, name in enumerate(case.params):
        assert close(restored[i], original[i], exact=case.exact, atol=atol), (
            f"argument {name}: restored {restored[i]!r}, was {original[i]!r}")
        if isinstance(passed[i], (np.ndarray, list)):
            if mutated[i] or name in case.mutates:
                assert restored[i] is passed[i], (
                    f"{name} was mutated in place; backward must restore that same object")
                assert close(passed[i], original[i], exact=case.exact, atol=atol), (
                    f"{name} not restored in place: {passed[i]!r}, was {original[i]!r}")
            elif name not in case.rebound:
                assert restored[i] is passed[i], (
                    f"{name} is never rebound or mutated; it must come back by reference")


# --------------------------------------------------------------------------- (c) inverse


@pytest.mark.parametrize("case", INVERTIBLE, ids=case_id)
@given(data=st.data())
def test_inverse_recovers_leading_arguments(case, data):
    args = data.draw(case.args, label="args")
    original = clone(args)
    k = case.k
    out = case.func(*clone(args))
    if k > 1:
        assert isinstance(out, tuple) and len(out) == k
        outs = out
    else:
        outs = (out,)
    atol = tolerance(case, original, out)

    got = inv(case.func)(*clone(outs), *clone(args[k:]))

    if k == 1:
        want = original[0]
    else:
        want = tuple(original[:k])
        assert isinstance(got, tuple) and len(got) == k, got
    assert close(got, want, exact=case.exact, atol=atol), f"inverse gave {got!r}, want {want!r}"


# --------------------------------------------------------------------------- (d) not invertible


def source_range(f):
    lines, start = inspect.getsourcelines(f)
    return start, start + len(lines) - 1


@pytest.mark.parametrize("case", NOT_INVERTIBLE, ids=case_id)
def test_inverse_refuses_information_loss(case):
    with pytest.raises(bytrev.NotInvertibleError) as info:
        bytrev.inverse(case.func)
    err = info.value
    assert isinstance(err, BytrevError)
    message = str(err)
    assert "line" in message, message
    lines = [int(n) for n in re.findall(r"line (\d+)", message)]
    first, last = source_range(case.func)
    assert lines and all(first <= n <= last for n in lines), (
        f"lines {lines} named in the message are not inside {case.name} ({first}-{last})")


# --------------------------------------------------------------------------- API details


def test_error_classes_are_exported():
    assert bytrev.NotInvertibleError is NotInvertibleError
    assert bytrev.UnsupportedError is bytrev.errors.UnsupportedError


def kw_affine(x, k=2.0):
    x = x * k + 1.0
    return x


def kwonly_affine(x, *, k=2.0):
    x = x * k - 1.0
    return x


def test_forward_accepts_keywords_and_backward_fills_defaults():
    r = bytrev.reversible(kw_affine)
    out, tape = r.forward(3.0, k=0.5)
    assert out == kw_affine(3.0, k=0.5)
    assert r.backward(out, tape) == pytest.approx((3.0, 0.5), rel=1e-12)

    out, tape = r.forward(x=3.0)
    assert out == kw_affine(3.0)
    assert r.backward(out, tape) == pytest.approx((3.0, 2.0), rel=1e-12)


def test_keyword_only_parameters_are_restored_in_signature_order():
    r = bytrev.reversible(kwonly_affine)
    out, tape = r.forward(4.0, k=0.25)
    assert out == kwonly_affine(4.0, k=0.25)
    assert r.backward(out, tape) == pytest.approx((4.0, 0.25), rel=1e-12)
    out, tape = r.forward(4.0)
    assert r.backward(out, tape) == pytest.approx((4.0, 2.0), rel=1e-12)


def test_default_none_parameter_comes_back():
    from corpus import default_none
    r = bytrev.reversible(default_none)
    out, tape = r.forward(1.5)
    assert out == default_none(1.5)
    x, y = r.backward(out, tape)
    assert y is None
    assert x == pytest.approx(1.5, rel=1e-12)


def scale_rebind(x, k):
    x = x * k
    return x


def test_inverse_guard_is_checked_when_called():
    g = bytrev.inverse(scale_rebind)  # statically invertible: the guard k != 0 is data
    assert g(6.0, 2.0) == 3.0
    with pytest.raises(bytrev.NotInvertibleError):
        g(0.0, 0.0)


def test_reversible_survives_a_failed_guard():
    # In reversible mode a zero multiplier must not lose x: the value goes to the tape.
    r = bytrev.reversible(scale_rebind)
    out, tape = r.forward(5.0, 0.0)
    assert out == 0.0
    assert r.backward(out, tape) == (5.0, 0.0)
    out, tape = r.forward(5.0, 2.0)
    assert r.backward(out, tape) == (5.0, 2.0)


def test_tapes_of_separate_calls_are_independent():
    from corpus import branchy_loop
    r = bytrev.reversible(branchy_loop)
    out1, tape1 = r.forward(0.3, 7)
    out2, tape2 = r.forward(-2.0, 12)
    x2, n2 = r.backward(out2, tape2)
    x1, n1 = r.backward(out1, tape1)
    assert (n1, n2) == (7, 12)
    assert x1 == pytest.approx(0.3, rel=1e-12)
    assert x2 == pytest.approx(-2.0, rel=1e-12)


def test_in_place_array_restored_in_same_object():
    from corpus import array_inplace_add
    a = np.array([1.0, 2.0, 3.0])
    before = a.copy()
    r = bytrev.reversible(array_inplace_add)
    out, tape = r.forward(a, 4.0, 2)
    assert out is a
    assert np.array_equal(a, [1.0 - 2.0, 2.0, 7.0])
    restored = r.backward(out, tape)
    assert restored[0] is a
    assert np.allclose(a, before, rtol=1e-12, atol=1e-12)
    assert restored[1:] == (4.0, 2)


def test_inverse_of_swap_takes_and_returns_tuples():
    from corpus import swap
    g = bytrev.inverse(swap)
    assert g(2, 1) == (1, 2)
