"""The API around the reversible form: show, the command line, errors, caching."""
import math
import types

import numpy as np
import pytest

import bytrev
from bytrev.__main__ import branchy, leapfrog, main


def test_show_marks_each_statement_with_how_it_is_undone(capsys):
    text = bytrev.show(branchy)
    assert capsys.readouterr().out.strip() == text.strip()
    lines = text.splitlines()
    row = {key: next(l for l in lines if key in l) for key in (
        "if x > 0.5", "x = x * 0.7", "x = x * 1.3", "for i in range(n)")}
    assert "1 bit" in row["if x > 0.5"]
    assert "stash" in row["x = x * 0.7"]
    assert "inverse: x = (x - 0.05) / 1.3" in row["x = x * 1.3"]
    assert row["x = x * 1.3"].rstrip().endswith("-")  # no tape cost
    assert "recomputed" in row["for i in range(n)"]


def test_show_command_prints_the_reversible_form(capsys):
    assert main(["show", "bytrev.__main__:leapfrog"]) == 0
    out = capsys.readouterr().out
    assert "inverse: x = x - dt * v" in out
    assert "tape sites: 0" in out


def test_show_command_reports_bytrev_errors(capsys):
    assert main(["show", "tests.test_api:uses_print"]) == 1
    err = capsys.readouterr().err
    assert "print" in err and "uses_print" in err


def uses_print(x):
    print(x)
    return x


def test_demo_round_trips(capsys):
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "identical to calling it: True" in out
    errors = [float(l.rsplit(" ", 1)[1]) for l in out.splitlines() if "round-trip error" in l]
    assert len(errors) == 2 and max(errors) < 1e-12
    values = {l.split(":")[0].strip(): float(l.rsplit(" ", 1)[1]) for l in out.splitlines()
              if l.startswith(("grad", "jvp", "central"))}
    assert values["grad (reverse, by running it backwards)"] == pytest.approx(
        values["central differences"], rel=1e-8)
    assert values["jvp (forward, on dual numbers)"] == pytest.approx(
        values["grad (reverse, by running it backwards)"], rel=1e-14)
    assert values["grad(grad) (forward over reverse)"] == pytest.approx(
        values["central differences of grad"], rel=1e-7)


def test_tape_from_another_function_is_rejected():
    def f(x):
        return x + 1.0

    def g(x):
        return x + 2.0

    _, tape = bytrev.reversible(f).forward(1.0)
    with pytest.raises(bytrev.TapeMismatchError):
        bytrev.reversible(g).backward(3.0, tape)


def test_reversible_form_is_cached():
    assert bytrev.reversible(branchy) is bytrev.reversible(branchy)
    assert bytrev.inverse(leapfrog) is bytrev.inverse(leapfrog)


def test_closure_over_a_reassigned_variable_is_unsupported():
    def outer(x):
        y = x * 2.0
        def inner(z):
            return z + y
        y = 5.0  # the closure would see this in CPython
        return inner(3.0)

    with pytest.raises(bytrev.UnsupportedError) as e:
        bytrev.reversible(outer)
    assert "closure over y" in str(e.value)


def test_closure_over_a_fixed_variable_matches_cpython():
    def outer(x, w):
        scale = w * 2.0
        def inner(z):
            return z * scale + 1.0
        return inner(x) + inner(1.0)

    r = bytrev.reversible(outer)
    y, tape = r.forward(1.5, 0.25)
    assert y == outer(1.5, 0.25)
    assert r.backward(y, tape) == (1.5, 0.25)


def test_inverse_checks_its_arity():
    def f(x, k):
        return x * 2.0 + k

    g = bytrev.inverse(f)
    assert g(f(3.0, 1.0), 1.0) == 3.0
    with pytest.raises(TypeError, match="takes 2 arguments"):
        g(7.0)


def test_multiplying_by_a_runtime_zero_is_stashed_not_divided():
    def f(x, k):
        x = x * k
        return x

    r = bytrev.reversible(f)
    y, tape = r.forward(3.0, 0.0)
    assert r.backward(y, tape) == (3.0, 0.0)
    assert tape.nstashed == 1
    y, tape = r.forward(3.0, 2.0)
    assert tape.nstashed == 0 and r.backward(y, tape) == (3.0, 2.0)
    with pytest.raises(bytrev.NotInvertibleError, match="zero"):
        bytrev.inverse(f)(0.0, 0.0)


def test_backward_restores_a_rebound_array_argument_in_place():
    def f(a):
        a[0] += 1.0
        a = a * 2.0
        return a

    a = np.array([1.0, 2.0, 3.0])
    original = a.copy()
    r = bytrev.reversible(f)
    y, tape = r.forward(a)
    assert not np.array_equal(a, original)  # f changed the caller's array
    (back,) = r.backward(y, tape)
    assert back is a and np.array_equal(a, original)


def test_call_updating_an_array_argument_inside_a_helper_is_refused_at_run_time():
    def helper(v):
        v += 1.0
        return v

    def f(x):
        return helper(x) * 2.0

    r = bytrev.reversible(f)
    assert r.forward(1.0)[0] == 4.0  # numbers: `v += 1` rebinds, nothing changes in place
    with pytest.raises(bytrev.UnsupportedError, match="updates its argument v in place"):
        r.forward(np.ones(3))


def test_sqrt_of_sum_of_squares_of_dead_values_is_stashed():
    def norm(x, y):
        return math.sqrt(x * x + y * y)

    with pytest.raises(bytrev.NotInvertibleError):
        bytrev.inverse(norm)


def test_overlapping_array_arguments_are_refused_when_f_changes_arrays():
    def f(a, b):
        a[0] += b[0]
        return a

    x = np.ones(3)
    with pytest.raises(bytrev.UnsupportedError, match="share memory"):
        bytrev.reversible(f).forward(x, x)
    y, tape = bytrev.reversible(f).forward(x, np.ones(3))
    assert bytrev.reversible(f).backward(y, tape)[0][0] == 1.0


def test_shuffle_is_refused():
    def f(a):
        np.random.shuffle(a)
        return a

    with pytest.raises(bytrev.UnsupportedError, match="shuffle"):
        bytrev.reversible(f)


def _affine_step(x, c):
    return x * 1.5 + c


def test_inverse_goes_through_calls_to_invertible_user_functions():
    def f(x, n):
        for i in range(n):
            x = _affine_step(x, 1.0)
        return x

    assert bytrev.inverse(f)(f(2.0, 5), 5) == pytest.approx(2.0, rel=1e-14)
    y, tape = bytrev.reversible(f).forward(2.0, 5)
    assert tape.nbytes == 0
    assert "inverse_of__affine_step" in bytrev.show(f)


def test_loops_over_nested_enumerate_and_zip_run_backwards_without_a_tape():
    def f(s, a, b):
        for i, (u, v) in enumerate(zip(a, b), 1):
            s = s + u * v * i
        return s

    a, b = np.array([1.0, 2.0, 3.0]), [0.5, -1.0, 2.0, 9.0]
    r = bytrev.reversible(f)
    y, tape = r.forward(0.25, a, b)
    assert y == f(0.25, a, b) and tape.nbytes == 0
    assert r.backward(y, tape)[0] == pytest.approx(0.25, abs=1e-14)
    assert bytrev.inverse(f)(y, a, b) == pytest.approx(0.25, abs=1e-14)


def test_iterating_over_a_generator_is_refused_with_its_line():
    def f(x, n):
        for v in (i * 2 for i in range(n)):
            x = x + v
        return x

    with pytest.raises(bytrev.UnsupportedError) as e:
        bytrev.reversible(f).forward(1.0, 3)
    assert e.value.line == f.__code__.co_firstlineno + 1


def test_a_backward_run_that_cannot_apply_an_inverse_says_where():
    def f(s):
        s = s + "a"
        return s

    r = bytrev.reversible(f)
    y, tape = r.forward("b")
    with pytest.raises(bytrev.ReversalError, match=r":%d\b.*TypeError" % (f.__code__.co_firstlineno + 1)):
        r.backward(y, tape)


def test_forward_specialised_to_float_arguments_keeps_ints_exact():
    def f(x, n):
        for i in range(n):
            if x > 0.5:
                x = x * x  # stashes x: a float, or an int after the other arm ran
            else:
                x = int(x * 10) + 1
        return x

    r = bytrev.reversible(f)
    for x0 in (0.3, 0.7, 0.05):
        y, tape = r.forward(x0, 6)
        assert y == f(x0, 6)
        back = r.backward(y, tape)
        assert back == (x0, 6) and type(back[0]) is float
    # the forward run specialised to (float, int) is the one used
    assert [key[0] for key in r._specialised] == [(float, int)]


def test_scalar_types_join_at_branches_and_loops():
    from bytrev import scalars

    def f(x, k):
        y = x * 2.0
        if k > 0:
            z = 1
        else:
            z = 2.5
        for i in range(k):
            w = y + i
        return x + y + z + w

    an = bytrev.reversible(f).analysis
    types = scalars.FloatVars(an.body, an.params, ["float", "int"], an.context)
    ret = an.body[-1]
    assert {"x", "y"} <= types.floats_before[id(ret)]
    assert "z" not in types.floats_before[id(ret)]  # int on one path
    assert "w" not in types.floats_before[id(ret)]  # unbound when the loop does not run


def test_show_command_reports_a_missing_function(capsys):
    assert main(["show", "bytrev.__main__:no_such_function"]) == 2
    assert "cannot find bytrev.__main__:no_such_function" in capsys.readouterr().err


# ---- module attributes (`math.sin`, `np.exp`) are read once per call, at its start

def _module(name, **attributes):
    module = types.ModuleType(name)
    vars(module).update(attributes)
    return module


HOISTED_SOURCE = '''
def reads_modules(x, n):
    for i in range(n):
        if x > lazy.limit:
            x = x * 0.5 + lazy.missing
        x = x * a_b.c + a.b_c
    return x
'''


def _reads_modules(**modules):
    namespace = dict(modules)
    exec(compile(HOISTED_SOURCE, "<reads_modules>", "exec"), namespace)
    return namespace["reads_modules"]


def test_module_attributes_read_early_are_the_ones_f_reads():
    """`a_b.c` and `a.b_c` are told apart; an attribute that a module's __getattr__
    supplies is read where f reads it, not at the start of the call; a module attribute
    rebound between calls is seen by the next call."""
    lookups = []

    def module_getattr(name):
        lookups.append(name)
        return 0.125

    lazy = _module("lazy", limit=10.0, __getattr__=module_getattr)
    a_b, a = _module("a_b", c=1.5), _module("a", b_c=-0.25)
    f = _reads_modules(lazy=lazy, a_b=a_b, a=a)
    r = bytrev.reversible(f)
    del lookups[:]
    out, tape = r.forward(1.0, 3)
    assert out == f(1.0, 3) == ((1.0 * 1.5 - 0.25) * 1.5 - 0.25) * 1.5 - 0.25
    assert lookups == []  # the arm reading lazy.missing never ran
    assert r.backward(out, tape) == (1.0, 3)
    a_b.c = 3.0
    assert r.forward(1.0, 3)[0] == f(1.0, 3) == ((1.0 * 3.0 - 0.25) * 3.0 - 0.25) * 3.0 - 0.25
    lazy.limit = 2.0
    out, tape = r.forward(1.0, 3)
    assert out == f(1.0, 3) and lookups  # the arm ran: lazy.missing was looked up
    assert r.backward(out, tape)[0] == pytest.approx(1.0, rel=1e-12)


# ---- a helper defined again (a notebook cell run twice) is not undone as the old one

NOTEBOOK = '''
def helper(u):
    return u * 2.0

def scale(u):
    return inner(u) + 1.0

def inner(u):
    return u * 4.0

def f(x):
    x = helper(x) + 1.0
    return x

def g(x):
    x = scale(x) * 0.5
    return x
'''


def _notebook():
    namespace = {}
    exec(compile(NOTEBOOK, "<notebook>", "exec"), namespace)
    return namespace


def _run_cell(namespace, source):
    exec(compile(source, "<cell>", "exec"), namespace)


@pytest.mark.parametrize("cell, fname, x", [
    ("def helper(u):\n    return u * 3.0\n", "f", 1.0),                  # f's callee
    ("def inner(u):\n    return u * 8.0\n", "g", 1.0),                   # a callee's callee
    ("def helper(u):\n    return u * u\n", "f", 1.5),                    # now needs a tape
])
def test_compiled_forms_follow_a_function_defined_again(cell, fname, x):
    ns = _notebook()
    f = ns[fname]
    r, inv, df = bytrev.reversible(f), bytrev.inverse(f), bytrev.grad(f)
    y, tape_before = r.forward(x)
    assert inv(y) == x and r.backward(y, tape_before) == (x,)
    _run_cell(ns, cell)
    y2 = f(x)
    # objects made before the cell ran, and ones made after, use the new definition
    for rev in (r, bytrev.reversible(f)):
        out, tape = rev.forward(x)
        assert out == y2
        assert rev.backward(out, tape)[0] == pytest.approx(x, rel=1e-12)
    assert r.backward(y, tape_before) == (x,)  # a tape recorded before: the old helper
    eps = 1e-6
    fd = (f(x + eps) - f(x - eps)) / (2 * eps)
    assert df(x) == pytest.approx(fd, rel=1e-6)
    assert bytrev.grad(f)(x) == pytest.approx(fd, rel=1e-6)
    if "u * u" in cell:
        with pytest.raises(bytrev.NotInvertibleError):
            inv(y2)
    else:
        assert inv(y2) == pytest.approx(x, rel=1e-12)


def test_a_closure_cell_and_a_module_attribute_defined_again_are_followed():
    ns = _notebook()
    ns["box"] = _module("box", op=ns["helper"])
    _run_cell(ns, """
def make(op):
    def h(x):
        x = op(x) - 2.0
        x = box.op(x) + 1.0
        return x
    return h
""")
    h = ns["make"](ns["helper"])
    inv = bytrev.inverse(h)
    assert inv(h(1.25)) == 1.25
    _run_cell(ns, "def helper(u):\n    return u * 5.0\n")
    h.__closure__[0].cell_contents = ns["helper"]
    assert h(1.25) == (1.25 * 5.0 - 2.0) * 2.0 + 1.0
    assert inv(h(1.25)) == pytest.approx(1.25, rel=1e-12)
    ns["box"].op = ns["helper"]
    assert inv(h(1.25)) == pytest.approx(1.25, rel=1e-12)


def test_a_global_value_rebound_to_one_of_its_type_keeps_the_compiled_form():
    ns = {"np": np}
    exec(compile("W = np.ones(3)\ndef f(x):\n    x = x * W.sum() + 1.0\n    return x\n",
                 "<w>", "exec"), ns)
    r = bytrev.reversible(ns["f"])
    ns["W"] = np.full(3, 2.0)
    assert bytrev.reversible(ns["f"]) is r  # not compiled again: W is an array still
    y, tape = r.forward(1.0)
    assert y == 7.0 and r.backward(y, tape) == (1.0,)


def test_closures_of_one_factory_get_their_own_effects():
    """The effects of a user function are judged per code *and* the cells it closes
    over: a closure over `print` is not pure because one over a pure function was."""
    from bytrev.analysis import user_function_is_pure

    def make(op):
        def h(x):
            return x + op(x)
        return h

    assert user_function_is_pure(make(abs))
    assert not user_function_is_pure(make(np.random.random))
    assert user_function_is_pure(make(abs))


def test_a_side_effect_builtin_under_another_name_is_refused():
    def make(op):
        def h(x):
            op(x)  # line marker: op call
            return x * 2.0
        return h

    def f(x):
        x = h(x) + 1.0
        return x

    h = make(print)
    with pytest.raises(bytrev.UnsupportedError, match="call to print") as e:
        bytrev.reversible(f)
    assert e.value.line == h.__code__.co_firstlineno + 1
