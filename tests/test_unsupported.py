"""Constructs bytrev does not support raise `bytrev.UnsupportedError` naming the function,
the file, the line and the construct -- when `reversible(f)` is built or, at the latest,
at the first `forward` call (before f's body has any effect).

The offending line of each function is marked with the comment `# <- unsupported`.
"""
import inspect
import os
import types

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


CASES = [
    uses_try_except,
    uses_try_finally,
    uses_with,
    uses_with_context_object,
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


def test_unsupported_error_is_raised_for_inverse_too():
    with pytest.raises(bytrev.UnsupportedError) as info:
        bytrev.inverse(calls_print)
    assert info.value.line == marked_line(calls_print)
