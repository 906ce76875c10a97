"""Constructs bytrev does not support raise `bytrev.UnsupportedError` naming the function,
the file, the line and the construct -- when `reversible(f)` is built or, at the latest,
at the first `forward` call (before f's body has any effect).

The offending line of each function is marked with the comment `# <- unsupported`.
"""
import inspect
import os
import types

import numpy as np
import pytest

import bytrev
from bytrev.errors import BytrevError

MARK = "# <- unsupported"

NAMESPACE = types.SimpleNamespace(value=0.0)
COUNTER = 0


def marked_line(f):
    lines, start = inspect.getsourcelines(f)
    hits = [start + i for i, text in enumerate(lines) if MARK in text]
    assert len(hits) == 1, (f.__name__, hits)
    return hits[0]


def def_line(f):
    lines, start = inspect.getsourcelines(f)
    for i, text in enumerate(lines):
        if text.lstrip().startswith(("def ", "async def ")):
            return start + i
    raise AssertionError(f.__name__)


# --------------------------------------------------------------------------- the constructs


def uses_try_except(x):
    y = x + 1.0
    try:  # <- unsupported
        y = y / x
    except ZeroDivisionError:
        y = 0.0
    return y


def uses_try_finally(x):
    y = x * 2.0
    try:  # <- unsupported
        y = y + 1.0
    finally:
        y = y - 1.0
    return y


def uses_with(x):
    y = x + 1.0
    with open(os.devnull) as fh:  # <- unsupported
        y = y + len(fh.name)
    return y


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def uses_with_context_object(x):
    y = x - 1.0
    with _Null():  # <- unsupported
        y = y * 2.0
    return y


def with_breaking_out_of_a_nested_loop(x):
    # 3.12+: the break leaves both the with and the for loop, an exit the loop analysis
    # took for a loop's else clause (found by fuzz/unsupported.py on 3.12).
    n = 0
    while n < 2:
        n += 1
        for i in range(3):
            with _Null():  # <- unsupported
                break
    return x


def uses_yield(x):
    y = x + 1.0
    yield y  # <- unsupported


async def uses_async(x):  # <- unsupported
    return x + 1.0


def defines_class(x):
    y = x * 3.0
    class Local:  # <- unsupported
        pass
    return y


def writes_global(x):
    global COUNTER
    y = x + 1.0
    COUNTER = y  # <- unsupported
    return y


def _make_nonlocal_writer():
    total = 0.0

    def writes_nonlocal(x):
        nonlocal total
        y = x * 2.0
        total = y  # <- unsupported
        return y
    return writes_nonlocal


writes_nonlocal = _make_nonlocal_writer()


def uses_del(x):
    y = x + 1.0
    z = y * 2.0
    del y  # <- unsupported
    return z


def imports_module(x):
    y = x + 1.0
    import math  # <- unsupported
    return y + math.pi


def imports_from(x):
    y = x - 1.0
    from math import sqrt  # <- unsupported
    return y + sqrt(4.0)


def assigns_attribute(x):
    y = x + 1.0
    NAMESPACE.value = y  # <- unsupported
    return y


def calls_print(x):
    y = x * 2.0
    print(y)  # <- unsupported
    return y


def calls_open(x):
    y = x + 1.0
    fh = open(os.devnull)  # <- unsupported
    return y


def calls_input(x):
    y = x + 1.0
    s = input()  # <- unsupported
    return y


def prints_on_a_path_not_taken(x):
    y = x + 1.0
    if x > 1e300:
        print(y)  # <- unsupported
    return y


# Also listed as unsupported in README.md: `out=`, methods that change their object, and
# called functions that store into their array arguments.


def calls_with_out(a, b):
    c = a + b
    np.add(a, b, out=a)  # <- unsupported
    return c


def calls_append(a, b):
    vals = [a.sum()]
    vals.append(b.sum())  # <- unsupported
    return vals[0]


def calls_sort(a, b):
    keys = [3.0, 1.0, 2.0]
    keys.sort()  # <- unsupported
    return a + keys[0]


def _store_first(a, v):
    a[0] = v  # <- helper store


def calls_mutating_helper(a, b):
    c = b * 2.0
    _store_first(a, 1.0)  # <- unsupported
    return c


# Each statement is named by its own line, also after code that emits nothing: the jump
# closing an if's arm, `pass`, an expression statement, 3.12+ restoring a comprehension's
# variable (found by fuzz/unsupported.py: the error named the line of the arm's last
# statement, of the comprehension).


def out_after_an_arm_that_returns(a, b):
    if b[0] > 0:
        b = b * 2.0
    else:
        return a
    np.add(a, b, out=a)  # <- unsupported
    return a


def appends_after_pass(a, b):
    vals = [a.sum()]
    pass
    vals.append(b.sum())  # <- unsupported
    return vals[0]


def sorts_after_an_expression_statement(a, b):
    c = a + b
    b  # an expression statement, with no effect
    c.sort()  # <- unsupported
    return c


def puts_after_a_comprehension(a, b):
    kept = [e for e in b if e > 0]
    a.put(0, len(kept))  # <- unsupported
    return a


# Calls in a list comprehension's element and condition are checked too (found by
# fuzz/unsupported.py: the call ran and the backward run did not undo it).


def sorts_in_a_comprehension(a, b):
    done = [a.sort() for e in b]  # <- unsupported
    return a.sum() + len(done)


def out_in_a_comprehension_condition(a, b):
    kept = [e for e in b if np.add(a, e, out=a)[0] > 0]  # <- unsupported
    return a.sum() + len(kept)


def out_on_a_continuation_line(a, b):
    y = np.sum(b) + np.sum(
        np.sin(a, out=a))  # <- unsupported
    return y


def sorts_in_a_nested_test(a, b):
    if b[0] > 0:
        if a.sort() is None:  # <- unsupported (CPython merges the two tests)
            b = b * 2.0
    return b


# With two refused statements the error names the first in the source, although bytrev
# plans statements from the last to the first, and a `continue` makes the normal form
# copy the rest of the loop body into the other arm (fuzz/unsupported.py seeds 7207 and
# 7961: the error named the later `a[i % 3] = ...`, whose index may change with a).


def out_before_an_aliased_index(a, b):
    np.multiply(a, 2.0, out=a)  # <- unsupported
    for t, i in zip(b, b[::-1]):
        a[int(i) % 3] = t
    return a


def out_before_a_continue_and_an_aliased_index(a, b):
    for t, i in zip(a, a[::-1]):
        if t > 0.5:
            b = b * 2.0
        elif np.multiply(a, 2.0, out=a)[0] > 0:  # <- unsupported
            continue
        a[int(i) % 3] = t
    return a


ARRAY_CASES = [calls_with_out, calls_append, calls_sort, out_after_an_arm_that_returns,
               appends_after_pass, sorts_after_an_expression_statement,
               puts_after_a_comprehension,
               sorts_in_a_comprehension, out_in_a_comprehension_condition,
               out_on_a_continuation_line, sorts_in_a_nested_test,
               out_before_an_aliased_index, out_before_a_continue_and_an_aliased_index]

CASES = [
    uses_try_except,
    uses_try_finally,
    uses_with,
    uses_with_context_object,
    with_breaking_out_of_a_nested_loop,
    defines_class,
    writes_global,
    writes_nonlocal,
    uses_del,
    imports_module,
    imports_from,
    assigns_attribute,
    calls_print,
    calls_open,
    calls_input,
    prints_on_a_path_not_taken,
]

# For generators and coroutines the construct is the function itself: the error may name
# the `def` line or the line of the yield.
WHOLE_FUNCTION_CASES = [uses_yield, uses_async]


def raise_unsupported(f):
    with pytest.raises(bytrev.UnsupportedError) as info:
        bytrev.reversible(f).forward(1.0)
    return info.value


def check_error(err, f):
    assert isinstance(err, bytrev.UnsupportedError)
    assert isinstance(err, BytrevError)
    assert isinstance(err, bytrev.errors.UnsupportedError)
    assert f.__name__ in str(err), str(err)
    assert f.__name__ in err.function, err.function
    assert os.path.basename(err.filename) == os.path.basename(f.__code__.co_filename), err.filename
    assert isinstance(err.construct, str) and err.construct.strip(), err.construct


@pytest.mark.parametrize("f", CASES, ids=lambda f: f.__name__)
def test_unsupported_construct_names_its_line(f):
    before = (COUNTER, NAMESPACE.value)
    err = raise_unsupported(f)
    check_error(err, f)
    assert err.line == marked_line(f), (err.line, marked_line(f), str(err))
    assert (COUNTER, NAMESPACE.value) == before, "f's body ran before the error"


@pytest.mark.parametrize("f", WHOLE_FUNCTION_CASES, ids=lambda f: f.__name__)
def test_generators_and_coroutines_are_unsupported(f):
    err = raise_unsupported(f)
    check_error(err, f)
    assert err.line in {marked_line(f), def_line(f)}, (err.line, str(err))


@pytest.mark.parametrize("f", ARRAY_CASES, ids=lambda f: f.__name__)
def test_mutating_calls_are_unsupported(f):
    a = np.array([1.0, 2.0, 3.0])
    before = a.copy()
    with pytest.raises(bytrev.UnsupportedError) as info:
        bytrev.reversible(f).forward(a, np.array([0.5, 0.5, 0.5]))
    check_error(info.value, f)
    assert info.value.line == marked_line(f), (info.value.line, str(info.value))
    assert np.array_equal(a, before), "f's body ran before the error"


def test_called_function_storing_into_its_argument_is_unsupported():
    a = np.array([1.0, 2.0, 3.0])
    with pytest.raises(bytrev.UnsupportedError) as info:
        bytrev.reversible(calls_mutating_helper).forward(a, 2.0)
    err = info.value
    assert isinstance(err, BytrevError)
    # Either the call in the function (preferred) or the store inside the helper.
    lines, start = inspect.getsourcelines(_store_first)
    helper_line = start + next(i for i, t in enumerate(lines) if "# <- helper store" in t)
    assert err.line in {marked_line(calls_mutating_helper), helper_line}, (err.line, str(err))
    assert "calls_mutating_helper" in str(err) or "_store_first" in str(err)
    assert np.array_equal(a, [1.0, 2.0, 3.0]), "f's body ran before the error"


def test_unsupported_error_is_raised_for_inverse_too():
    with pytest.raises(bytrev.UnsupportedError) as info:
        bytrev.inverse(calls_print)
    assert info.value.line == marked_line(calls_print)


# ---- callables passed in as arguments: checked when the run starts

def calls_its_parameter(x, c, op):
    x = x + op(c)  # <- unsupported
    return x


def _random_offset(c):
    return c + np.random.random()


def _stores_into(a):
    a[0] = 1.0
    return a.sum()


def _pure_offset(c):
    return c * c + 0.5


def _not_liftable(c):
    try:
        return c * 2.0
    except ValueError:
        return 0.0


@pytest.mark.parametrize("op, says", [
    (np.random.normal, "RandomState.normal through a parameter"),
    (print, "call to print (a side effect) through a parameter"),
    (_random_offset, "_random_offset through a parameter (it has side effects"),
], ids=["numpy random", "print", "user function drawing"])
def test_a_parameter_holding_an_impure_callable_is_refused(op, says):
    """The analysis cannot see what a parameter holds and takes its calls as pure (the
    backward run calls `op` again to undo `x + op(c)`): the argument is checked when the
    run starts, so a random draw is refused rather than undone with another draw."""
    for run in (lambda: bytrev.reversible(calls_its_parameter).forward(1.0, 0.5, op),
                lambda: bytrev.inverse(calls_its_parameter)(2.0, 0.5, op),
                lambda: bytrev.grad(calls_its_parameter)(1.0, 0.5, op)):
        with pytest.raises(bytrev.UnsupportedError) as info:
            run()
        assert says in str(info.value)
        assert info.value.line == marked_line(calls_its_parameter)


def test_a_parameter_holding_a_function_that_stores_into_its_argument_is_refused():
    def f(a, op):
        b = a * 2.0
        s = op(b)
        a = a + s
        return a

    with pytest.raises(bytrev.UnsupportedError, match="_stores_into through a parameter"):
        bytrev.reversible(f).forward(np.ones(3), _stores_into)


@pytest.mark.parametrize("op", [_pure_offset, _not_liftable, np.sin, abs],
                         ids=["pure user function", "not liftable", "numpy ufunc", "builtin"])
def test_a_parameter_holding_a_pure_callable_runs_and_is_undone(op):
    out, tape = bytrev.reversible(calls_its_parameter).forward(1.25, 0.5, op)
    assert out == calls_its_parameter(1.25, 0.5, op)
    assert bytrev.reversible(calls_its_parameter).backward(out, tape) == (1.25, 0.5, op)
    assert bytrev.inverse(calls_its_parameter)(out, 0.5, op) == 1.25
