"""Tests of the bytecode lifter (bytrev.lift) on the running interpreter.

* A corpus of small functions covering every construct the IR expresses is lifted,
  compiled back to Python by `ir_exec`, and run on hypothesis-generated inputs: the
  result (or the exception), and every argument the function mutates, must equal what
  calling the function directly gives.
* Structural checks pin down the shape of the IR for the constructs the analysis relies
  on (AugAssign, While, BoolOp for chained comparisons, ...).
* Every unsupported construct raises UnsupportedError naming the function, the file and
  the line marked `# <- unsupported`.
"""
import copy
import inspect
import math
import os
import types

import numpy as np
import pytest
from hypothesis import given, strategies as st

from bytrev import ir, lift as lift_module
from bytrev.errors import UnsupportedError
from bytrev.lift import lift, lift_code
from ir_exec import compile_ir

# --------------------------------------------------------------------------- strategies

INT = st.integers(-20, 20)
SMALL = st.integers(0, 12)
FLOAT = st.floats(-100.0, 100.0, allow_nan=False, allow_infinity=False)
BOOL = st.booleans()
ANY = st.one_of(INT, FLOAT, BOOL, st.none())
INTS = st.lists(INT, min_size=0, max_size=8)
INTS1 = st.lists(INT, min_size=1, max_size=8)
OPT_INT = st.one_of(st.none(), INT)


def arrays(n=6):
    return st.lists(FLOAT, min_size=n, max_size=n).map(lambda v: np.array(v, dtype=float))


ARR = arrays()
MAT = st.lists(FLOAT, min_size=12, max_size=12).map(lambda v: np.array(v).reshape(3, 4))
IDX = st.integers(0, 5)

CASES = []


def case(*strategies):
    """Register a corpus function with one strategy per argument."""
    def deco(f):
        f.strategies = strategies
        CASES.append(f)
        return f
    return deco


# --------------------------------------------------------------------------- helpers of the corpus

SCALE = 3  # a global read by corpus functions


def record(log, v):
    """A call with a visible effect on its argument: evaluation order shows in `log`."""
    log.append(v)
    return v


# --------------------------------------------------------------------------- the corpus
# arithmetic, unary, comparisons

@case(INT, INT)
def arith_int(a, b):
    x = a + b * 2 - (a - b)
    y = a ** 2 % 7 + (b << 2) - (a >> 1)
    z = (a & b) | (a ^ 3)
    if b != 0:
        z = z + a // b + a % b
    return x, y, z, -a, +b, ~a


@case(FLOAT, FLOAT)
def arith_float(x, y):
    r = x * y - x / (abs(y) + 1.0)
    r = r + (x ** 2) / 3.0
    return r, -r, +r


@case(INT, INT)
def compare_all(a, b):
    return a < b, a <= b, a == b, a != b, a > b, a >= b


@case(ANY, INTS)
def identity_membership(x, xs):
    return x is None, x is not None, x in xs, x not in xs, not x


@case(INT, INT, INT)
def chained_value(a, b, c):
    return a < b < c, a <= b == c, a < b > c != a


@case(INTS1, INT, INT)
def chained_nontrivial_middle(xs, lo, hi):
    # the middle operand is a call: evaluated once
    if lo < len(xs) <= hi:
        return 1
    return lo <= sum(xs) < hi


@case(ANY, ANY, ANY)
def and_or_values(a, b, c):
    x = a and b
    y = a or b
    z = (a and b) or c
    w = a and (b or c)
    v = not a or b and c
    return x, y, z, w, v


@case(st.lists(INT, max_size=3), INT)
def and_or_with_calls(log, n):
    x = record(log, n) and record(log, n + 1) or record(log, n - 1)
    return x, log


@case(INT, INT)
def ifexp(a, b):
    x = a if a > b else b
    y = (a - b) if a > 0 else (b - a) if b > 0 else 0
    return x, y, x * (2 if a > b else 3)


@case(FLOAT)
def ifexp_rebinding(x):
    x = x if x > 0 else -x
    return x


@case(FLOAT, FLOAT)
def ifexp_in_product(x, a):
    x = x + (a if a > 0 else -a)
    x = x * (2.0 if a > 0 else 0.5)
    return x


# assignments

@case(INT)
def augassign_all(x):
    y = 7
    y += x
    y -= 3
    y *= 2
    y //= 3
    y %= 50
    y **= 2
    y <<= 1
    y >>= 2
    y &= 255
    y |= 16
    y ^= 5
    z = 1.5
    z /= 2.0
    return y, z


@case(INT, INT, INT)
def tuple_pack_unpack(a, b, c):
    t = a, b, c
    x, y, z = t
    p, (q, r) = a, (b, c)
    return z, y, x, p, q, r, t


@case(INT, INT, INT)
def swaps(a, b, c):
    a, b = b, a
    a, b, c = c, a, b
    b, a = a + b, a
    return a, b, c


@case(INT, INT)
def chained_assignment(a, b):
    x = y = a + b
    x += 1
    return x, y


@case(INTS1, st.integers(0, 7), st.integers(0, 7))
def list_swap(xs, i, j):
    i = i % len(xs)
    j = j % len(xs)
    xs[i], xs[j] = xs[j], xs[i]
    return xs


@case(st.lists(INT, max_size=2), INT)
def evaluation_order_store(log, n):
    out = [0, 0]
    out[0], out[1] = record(log, n), record(log, n + 1)
    return out, log


@case(INT, INT, INT, INT, st.lists(INT, max_size=5))
def pending_value_across_nested_branches(a, b, c, d, xs):
    # the first value is computed before the nested tests of the second (which cannot
    # be one condition: the chained comparison needs a temporary), and 3.12+ duplicate
    # the exit into their arms: it must be evaluated once, before the tests
    log = []
    d, b = (abs(3 + b) if (b == 1 and (0 < d and len([v for v in xs if v != a]) < record(log, b)))
            else a - (len([v for v in xs if v < a]) + record(log, c))), \
        (2 if ((b >= b if c != -2 else 3 == len([v for v in xs if v != c]))
               or c <= sum([i * v for i, v in enumerate(xs)]) > c) else -abs(d))
    return log


@case(INT)
def walrus(n):
    if (m := n * 2) > 4:
        return m
    return -m


# if / elif / else and conditions

@case(INT, INT)
def if_elif_else(a, b):
    if a > b:
        r = 1
    elif a == b:
        r = 2
    else:
        r = 3
    if a < 0:
        r = r * 10
    return r


@case(INT, INT, INT)
def compound_conditions(a, b, c):
    r = 0
    if a > 0 and b > 0:
        r += 1
    if a > 0 or b > 0:
        r += 2
    if (a > 0 or b > 0) and c > 0:
        r += 4
    if a > 0 and not b > 0:
        r += 8
    if not (a > 0 and b > 0 and c > 0):
        r += 16
    if a if c > 0 else b:
        r += 32
    return r


@case(OPT_INT)
def is_none(x):
    if x is None:
        return 0
    if x is not None and x > 3:
        return x * 2
    return x


@case(INT, INT, INT)
def nested_ifs_early_returns(a, b, c):
    if a > 0:
        if b > 0:
            return 1
        elif c > 0:
            return 2
        a = -a
    if c == 0:
        return a
    return a + b + c


@case(INT)
def bare_return(x):
    if x > 0:
        return
    x = x + 1


@case(INT)
def no_return(x):
    y = x + 1


@case(INT, INT)
def chained_condition_nontrivial(a, b):
    if a < abs(b) < 10:
        return "in"
    elif a < b < 5 != a:
        return "mid"
    return "out"


# for loops

@case(SMALL)
def for_range(n):
    s = 0
    for i in range(n):
        s += i * i
    return s


@case(SMALL, SMALL)
def for_range_start_step(a, n):
    s = []
    for i in range(a, a + n, 2):
        s = s + [i]
    return s


@case(INTS)
def for_enumerate(xs):
    t = 0
    for i, v in enumerate(xs):
        t += i * v
    return t


@case(INTS, INTS)
def for_zip(xs, ys):
    t = 0
    for x, y in zip(xs, ys):
        t = t + x * y
    return t


@case(INTS)
def for_over_name(xs):
    best = None
    for x in xs:
        if best is None or x > best:
            best = x
    return best


@case(INTS, INT)
def for_break_continue(xs, stop):
    t = 0
    for x in xs:
        if x == 3:
            continue
        if x == stop:
            break
        t += x
    return t


@case(INTS, INT)
def for_return_inside(xs, target):
    for i, x in enumerate(xs):
        if x == target:
            return i
    return -1


@case(SMALL, SMALL)
def nested_for(n, m):
    t = 0
    for i in range(n):
        for j in range(m):
            if j > i:
                break
            t += i * j
    return t


@case(SMALL, SMALL)
def nested_for_continue_outer_tail(n, m):
    out = []
    for i in range(n):
        for j in range(m):
            if (i + j) % 3 == 0:
                continue
            out = out + [(i, j)]
        if i > 4:
            break
    return out


@case(st.lists(st.tuples(INT, st.tuples(INT, INT)), max_size=5))
def for_nested_target(items):
    t = 0
    for a, (b, c) in items:
        t += a * b - c
    return t


@case(SMALL)
def for_nested_return(n):
    for t in range(n):
        for u in range(n):
            if u * t > 6:
                return u, t
    return None


# while loops

@case(SMALL)
def while_simple(n):
    i = 0
    s = 0
    while i < n:
        s += i
        i += 1
    return s


@case(SMALL, INT)
def while_break_continue(n, k):
    i = 0
    s = 0
    while i < n:
        i += 1
        if i % 2:
            continue
        if i == k:
            break
        s += i
    return s, i


@case(st.integers(1, 50))
def while_true(n):
    i = 0
    while True:
        i += 3
        if i > n:
            break
    return i


@case(st.integers(-5, 5), st.integers(-5, 5), SMALL)
def while_compound(a, b, n):
    while (a > 0 or b > 0) and n:
        a -= 1
        b -= 1
        n -= 1
    return a, b, n


@case(st.integers(-5, 5), st.integers(-5, 12), st.integers(-5, 12))
def while_chained_continue(a, b, c):
    steps = 0
    while a < b < c:
        a += 1
        steps += 1
        if a == 2:
            continue
        b -= 1
    return a, b, steps


@case(st.integers(0, 30))
def while_return_inside(n):
    i = 0
    while i * i < n:
        if i * i == n - 1:
            return -i
        i += 1
    return i


@case(st.integers(0, 8), st.integers(0, 8))
def nested_while_for(n, m):
    out = 0
    i = 0
    while i < n:
        for j in range(m):
            if j == i:
                continue
            out += j
        i += 1
    return out


@case(st.integers(1, 300))
def while_not(n):
    done = False
    k = 0
    while not done:
        k += 1
        done = k * k >= n
    return k


# calls, attributes, subscripts

def helper(a, b=2, *, scale=1):
    return (a + b) * scale


@case(INT, INT)
def calls_keywords(a, b):
    return helper(a), helper(a, b), helper(a, scale=3), helper(b=a, a=b, scale=b)


@case(ARR)
def numpy_calls(x):
    y = np.sin(x) + np.cos(x) * 2.0
    z = np.sum(y, axis=0)
    w = np.clip(x, a_min=-1.0, a_max=1.0)
    return y, z, w, np.maximum(x, 0.0).sum()


@case(ARR, ARR)
def methods_and_attributes(a, b):
    return a.sum(), a.dot(b), a.shape, a.T.shape, a.reshape(2, 3).mean(axis=1), a.max()


@case(FLOAT)
def math_and_builtins(x):
    y = math.sqrt(abs(x)) + math.exp(-abs(x)) + math.pi
    return min(x, 1.0), max(x, -1.0), round(y, 6), float(int(x)), len((x, y))


@case(MAT, st.integers(0, 2), st.integers(0, 3))
def subscripts_and_slices(m, i, j):
    return (m[i], m[i, j], m[:, 0], m[1:, ::2], m[i][j], m[-1], m[:i, :j],
            m[::-1, 1], m[..., 0], m[i:, j:].sum())


@case(ARR, IDX, IDX, FLOAT)
def subscript_writes(a, i, j, v):
    a[i] = v
    a[i:j] = v * 2.0
    a[-1] = a[0] + 1.0
    return a


@case(MAT, st.integers(0, 2), st.integers(0, 3), FLOAT)
def subscript_writes_2d(m, i, j, v):
    m[i, j] = v
    m[:, 0] = m[:, 1] * 2.0
    m[i] += 1.0
    return m


@case(ARR, IDX, FLOAT, SMALL)
def array_augassign(a, i, v, n):
    a[i] += v
    a[1:3] *= 2.0
    a[i:] -= 1.0
    for k in range(n):
        a[k % len(a)] += 0.5 * k
    a += 1.0
    return a


@case(ARR, st.integers(0, 2), st.integers(2, 6))
def slice_augassign_expr(a, i, j):
    a[i:j - 1] *= 3.0
    a[i + 1] /= 2.0
    return a


@case(ARR, IDX, IDX)
def array_swap(a, i, j):
    a[i], a[j] = a[j], a[i]
    return a


# globals, closures, nested functions

@case(INT)
def globals_and_builtins(x):
    return x * SCALE + len(CASES) * 0, abs(x), math.floor(x / 2)


def _make_closure(k):
    def closure_reader(x):
        return x * k + len([k])
    return closure_reader


closure_reader = case(INT)(_make_closure(5))


@case(INT, INT)
def nested_def_closure(x, y):
    def inner(z, w=y):
        return x + z * w
    x = x + 1
    return inner(2), inner(3, 4)


@case(INT)
def lambda_defaults(x):
    f = lambda a, b=x: a * b  # noqa: E731
    g = lambda: x + 1  # noqa: E731
    return f(3), f(3, 4), g()


@case(INT)
def kwonly_nested(x):
    def h(a, *, k=x * 2, m=1):
        return a + k * m
    return h(1), h(1, k=5), h(2, m=3)


@case(FLOAT, FLOAT)
def closure_over_local(x, w):
    scale = w * 2.0
    def inner(z):
        return z * scale + 1.0
    r = inner(x)
    scale = 5.0  # the closure sees the new value
    return r + inner(1.0)


@case(INT)
def closure_late_binding(x):
    g = lambda: x  # noqa: E731
    x += 1
    return g()


@case(INT)
def closure_read_in_loop(a):
    total = a

    def add(v):
        return v + total
    for i in range(3):
        total = total + add(i)
    return total


@case(INT, INT)
def closure_in_loop(x, n):
    fs = []
    for i in range(3):
        fs = fs + [lambda v, i=i: v + i + x]
    return [f(n) for f in fs]


# displays and comprehensions

@case(INT, INT)
def displays(a, b):
    t = (a, b, (1, 2))
    xs = [a, b, a + b]
    ys = [1, 2, 3]
    d = {"a": a, "b": b}
    d2 = {a: 1, b: 2}
    e = []
    return t, xs, ys, d, d2, e, (), (1, 2)


@case(INTS, INT)
def list_comprehensions(xs, c):
    a = [x * 2 for x in xs]
    b = [x for x in xs if x > c]
    d = [x + y for x in xs for y in range(2) if x != y]
    e = [[y * c for y in range(x % 3)] for x in xs]
    f = [i * v for i, v in enumerate(xs) if v if i]
    return a, b, d, e, f


@case(INTS, INT)
def comprehension_keeps_outer_variable(xs, x):
    ys = [x * 2 for x in xs]
    return x, ys


@case(INT, SMALL)
def comprehension_captured_by_lambda(k, n):
    f = lambda v: v + k  # noqa: E731
    return [f(i) for i in range(n)]


@case(INTS, st.lists(st.tuples(INT, INT), max_size=4))
def comprehension_in_expression(xs, pairs):
    return sum([x * x for x in xs]) + len([a for a, b in pairs if a < b])


# realistic numeric kernels

@case(FLOAT, FLOAT, st.floats(0.001, 0.1), SMALL)
def leapfrog(x, v, dt, n):
    for _ in range(n):
        v = v - 0.5 * dt * x
        x = x + dt * v
        v = v - 0.5 * dt * x
    return x, v


@case(ARR)
def cumsum_inplace(a):
    for i in range(1, len(a)):
        a[i] += a[i - 1]
    return a


@case(ARR)
def mask_and_scale(a):
    a[a < 0.0] = 0.0
    b = a * 2.0 + np.where(a > 1.0, 1.0, -1.0)
    return b


@case(MAT, MAT)
def matmul_normalise(a, b):
    c = a @ b.T
    n = np.sqrt((c * c).sum())
    return c / n if n > 0 else c


@case(FLOAT, st.lists(FLOAT, max_size=6))
def horner(x, coeffs):
    r = 0.0
    for c in coeffs:
        r = r * x + c
    return r


@case(ARR, st.floats(0.1, 2.0), st.integers(1, 30))
def relax_until_small(a, tol, max_iter):
    it = 0
    while np.abs(a).max() > tol and it < max_iter:
        a *= 0.5
        it += 1
    return a, it


# misc

@case(INT, INT)
def kwonly_params(a, *, b=3):
    return a * b


@case(INT, INT, INT)
def positional_only(a, b, /, c):
    return a - b + c


@case(INT, INT)
def dead_code_after_return(a, b):
    return a + b
    a = a * 2  # noqa: F841 (unreachable)


@case(INT)
def expression_statements(x):
    abs(x)
    x + 1
    return x


@case(INT, INT)
def division_may_raise(a, b):
    return a // b + a % b


@case(INTS, INT)
def for_else_then_return(xs, k):
    # supported: the code after the loop ends in a return, so it is inlined at the break
    t = 0
    for x in xs:
        if x == k:
            break
        t += x
    else:
        t = -1
    t = t * 2
    t = t + 1
    return t


@case(st.integers(-2, 9))
def while_else(n):
    # supported: the else block runs on the paths that leave the loop by its test
    while n > 0:
        n -= 1
        if n == 3:
            break
    else:
        n = 10
    for i in range(n):
        n += i
    return n


@case(st.integers(0, 9), INT)
def while_else_then_return(n, k):
    while n > 0:
        n -= 1
        if n == k:
            break
    else:
        n = -5
    return n * 3


@case(INTS)
def empty_loops(xs):
    for x in xs:
        pass
    while False:
        pass
    return len(xs)


# --------------------------------------------------------------------------- equality of results

def same(a, b):
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.shape == b.shape
                and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True))
    if isinstance(a, (np.generic, float)) or isinstance(b, (np.generic, float)):
        if type(a) is not type(b):
            return False
        return a == b or (a != a and b != b)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return type(a) is type(b) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def outcome(f, args):
    try:
        return ("ok", f(*args))
    except Exception as exc:  # the lifted function must raise the same exception type
        return ("raise", type(exc))


# --------------------------------------------------------------------------- corpus tests

def test_corpus_is_large_enough():
    assert len(CASES) >= 50


@pytest.mark.parametrize("f", CASES, ids=lambda f: f.__name__)
def test_lifted_function_computes_the_same(f):
    fn = lift(f)
    assert fn.params == f.__code__.co_varnames[:f.__code__.co_argcount]
    g = compile_ir(fn, f)

    @given(st.tuples(*f.strategies))
    def check(args):
        a1, a2 = copy.deepcopy(args), copy.deepcopy(args)
        want, got = outcome(f, a1), outcome(g, a2)
        assert want[0] == got[0] and same(want[1], got[1]), (args, want, got, ir.unparse(fn))
        assert same(list(a1), list(a2)), ("arguments mutated differently", args, ir.unparse(fn))

    check()


@pytest.mark.parametrize("f", CASES, ids=lambda f: f.__name__)
def test_lifted_ir_uses_only_ir_nodes(f):
    fn = lift(f)
    stmt_types = (ir.Assign, ir.AugAssign, ir.ExprStmt, ir.If, ir.While, ir.For, ir.Break,
                  ir.Continue, ir.Return)

    def check_stmts(stmts):
        for s in stmts:
            assert isinstance(s, stmt_types), s
            assert isinstance(s.line, int) and s.line >= f.__code__.co_firstlineno, s
            for sub in ("body", "orelse"):
                check_stmts(getattr(s, sub, []))
    check_stmts(fn.body)
    assert lift(f) is fn  # cached


def test_nested_code_lifts_with_lift_code():
    outer = nested_def_closure
    made = [c for c in ir_walk_exprs(lift(outer).body) if isinstance(c, ir.MakeFunction)]
    assert len(made) == 1 and made[0].closure == ("x",)
    inner_ir = lift_code(made[0].code, outer.__globals__)
    assert inner_ir.params == ("z", "w") and inner_ir.freevars == ("x",)
    # run the IR of the inner function on a real closure of it
    inner = _make_closure(7)
    g = compile_ir(lift(inner), inner)
    assert g(3) == inner(3)
    assert any(isinstance(e, ir.FreeVar) for e in ir_walk_exprs(lift(inner).body))


# --------------------------------------------------------------------------- structure of the IR

def ir_walk_stmts(stmts):
    for s in stmts:
        yield s
        for sub in ("body", "orelse"):
            yield from ir_walk_stmts(getattr(s, sub, []))


def ir_walk_exprs(stmts):
    for s in ir_walk_stmts(stmts):
        for name in ("target", "value", "test", "iter"):
            e = getattr(s, name, None)
            if e is not None:
                yield from ir.walk(e)


def body_of(f):
    return lift(f).body


def s_augassign_name(x):
    x += 1
    return x


def s_augassign_subscript(a, i, v):
    a[i] += v


def s_augassign_slice(a, i, j, c):
    a[i:j] *= c


def s_while(n):
    i = 0
    while i < n:
        i += 1
    return i


def s_chained(a, b, c):
    return a < b < c


def s_chained_call(a, xs, c):
    return a < len(xs) < c


def s_if_and(a, b):
    if a and b:
        return 1
    return 2


def s_is_none(x):
    if x is None:
        return 0
    return 1


def s_for_range(n):
    t = 0
    for i in range(n):
        t += i
    return t


def s_calls(x, a, b):
    return x.sum(), a.dot(b), np.sin(x)


def s_listcomp(xs):
    return [x * 2 for x in xs if x]


def s_closure(x):
    f = lambda y: x + y  # noqa: E731
    return f(1)


def s_bare_return(x):
    return


def s_index_tuple(a, i, j):
    return a[i, j], a[:, 0]


def s_swap(a, b):
    a, b = b, a
    return a, b


def s_continue(xs):
    t = 0
    for x in xs:
        if x > 2:
            continue
        t += x
    return t


def s_unreachable(x):
    while True:
        return x
    x = x + 1  # <- dead
    return x


def test_augassign_name():
    s = body_of(s_augassign_name)[0]
    assert s == ir.AugAssign(ir.Name("x"), "+", ir.Const(1), s.line)


def test_augassign_subscript():
    s = body_of(s_augassign_subscript)[0]
    assert s == ir.AugAssign(ir.Subscript(ir.Name("a"), ir.Name("i")), "+", ir.Name("v"), s.line)


def test_augassign_slice():
    s = body_of(s_augassign_slice)[0]
    target = ir.Subscript(ir.Name("a"), ir.Slice(ir.Name("i"), ir.Name("j"), ir.Const(None)))
    assert s == ir.AugAssign(target, "*", ir.Name("c"), s.line)


def test_while_has_its_test():
    loops = [s for s in body_of(s_while) if isinstance(s, ir.While)]
    assert len(loops) == 1
    assert loops[0].test == ir.Compare("<", ir.Name("i"), ir.Name("n"))
    assert not any(isinstance(s, ir.Break) for s in ir_walk_stmts(loops[0].body))


def test_chained_comparison_is_boolop():
    ret = body_of(s_chained)[0]
    assert ret.value == ir.BoolOp("and", ir.Compare("<", ir.Name("a"), ir.Name("b")),
                                  ir.Compare("<", ir.Name("b"), ir.Name("c")))


def test_chained_comparison_spills_a_call():
    body = body_of(s_chained_call)
    assert isinstance(body[0], ir.Assign) and body[0].target.id.startswith("$")
    tmp = body[0].target
    assert body[0].value == ir.Call(ir.Global("len"), (ir.Name("xs"),))
    assert body[1].value == ir.BoolOp("and", ir.Compare("<", ir.Name("a"), tmp),
                                      ir.Compare("<", tmp, ir.Name("c")))


def test_if_and_is_one_condition():
    s = body_of(s_if_and)[0]
    assert isinstance(s, ir.If) and s.test == ir.BoolOp("and", ir.Name("a"), ir.Name("b"))


def test_is_none():
    s = body_of(s_is_none)[0]
    assert s.test == ir.Compare("is", ir.Name("x"), ir.Const(None))


def test_for_range():
    loop = [s for s in body_of(s_for_range) if isinstance(s, ir.For)][0]
    assert loop.target == ir.Name("i")
    assert loop.iter == ir.Call(ir.Global("range"), (ir.Name("n"),))
    assert loop.body == [ir.AugAssign(ir.Name("t"), "+", ir.Name("i"), loop.body[0].line)]


def test_method_and_module_calls():
    ret = body_of(s_calls)[0]
    a, b, c = ret.value.elts
    assert a == ir.Call(ir.Attribute(ir.Name("x"), "sum"))
    assert b == ir.Call(ir.Attribute(ir.Name("a"), "dot"), (ir.Name("b"),))
    assert c == ir.Call(ir.Attribute(ir.Global("np"), "sin"), (ir.Name("x"),))


def test_list_comprehension():
    ret = body_of(s_listcomp)[0]
    x = ir.Name("x")
    assert ret.value == ir.ListComp(ir.BinOp("*", x, ir.Const(2)),
                                    (ir.CompFor(x, ir.Name("xs"), (x,)),))


def test_closure_and_freevars():
    fn = lift(s_closure)
    assert fn.cellvars == ("x",)
    made = body_of(s_closure)[0].value
    assert isinstance(made, ir.MakeFunction) and made.closure == ("x",)
    inner = lift_code(made.code, s_closure.__globals__)
    assert inner.freevars == ("x",)
    assert inner.body[0].value == ir.BinOp("+", ir.FreeVar("x"), ir.Name("y"))


def test_tuple_index_and_slices():
    first, second = body_of(s_index_tuple)[0].value.elts
    a = ir.Name("a")
    assert first == ir.Subscript(a, ir.Tuple((ir.Name("i"), ir.Name("j"))))
    none = ir.Const(None)
    assert second == ir.Subscript(a, ir.Tuple((ir.Slice(none, none, none), ir.Const(0))))


def test_bare_return():
    assert body_of(s_bare_return)[0].value == ir.Const(None)


def test_swap_is_one_assignment_or_correct_sequence():
    body = body_of(s_swap)
    g = compile_ir(lift(s_swap), s_swap)
    assert g(1, 2) == (2, 1)
    assert body[0] == ir.Assign(ir.Tuple((ir.Name("a"), ir.Name("b"))),
                                ir.Tuple((ir.Name("b"), ir.Name("a"))), body[0].line) or \
        body[0] == ir.Assign(ir.Tuple((ir.Name("b"), ir.Name("a"))),
                             ir.Tuple((ir.Name("a"), ir.Name("b"))), body[0].line)


def test_continue():
    loop = body_of(s_continue)[1]
    assert isinstance(loop, ir.For)
    assert isinstance(loop.body[0], ir.If) and loop.body[0].body == [ir.Continue(loop.body[0].line)]


def test_unreachable_code_is_dropped():
    assert not any(isinstance(s, ir.Assign) for s in ir_walk_stmts(body_of(s_unreachable)))


def src_line(f, text):
    lines, start = inspect.getsourcelines(f)
    hits = [start + i for i, t in enumerate(lines) if text in t]
    assert len(hits) == 1, (f.__name__, text, hits)
    return hits[0]


def test_statement_lines():
    fn = lift(nested_ifs_early_returns)
    ifs = [s for s in ir_walk_stmts(fn.body) if isinstance(s, ir.If)]
    assert ifs[0].line == src_line(nested_ifs_early_returns, "if a > 0:")
    returns = {s.line for s in ir_walk_stmts(fn.body) if isinstance(s, ir.Return)}
    assert src_line(nested_ifs_early_returns, "return 1") in returns
    assert src_line(nested_ifs_early_returns, "return a + b + c") in returns
    loop = [s for s in lift(for_range).body if isinstance(s, ir.For)][0]
    assert loop.line == src_line(for_range, "for i in range(n):")
    assert loop.body[0].line == src_line(for_range, "s += i * i")
    w = [s for s in lift(while_simple).body if isinstance(s, ir.While)][0]
    assert w.line == src_line(while_simple, "while i < n:")


# --------------------------------------------------------------------------- unsupported constructs

MARK = "# <- unsupported"
NS = type("NS", (), {})()
COUNTER = 0


def u_try(x):
    try:  # <- unsupported
        x = 1 / x
    except ZeroDivisionError:
        x = 0
    return x


def u_try_finally(x):
    y = x
    try:  # <- unsupported
        y = y + 1
    finally:
        y = y - 1
    return y


def u_with(x):
    with x:  # <- unsupported
        x = 1
    return x


def u_yield(x):
    y = x + 1
    yield y  # <- unsupported


async def u_async(x):  # <- unsupported
    return x


def u_class(x):
    class C:  # <- unsupported
        pass
    return x


def u_global(x):
    global COUNTER
    COUNTER = x  # <- unsupported


def _make_nonlocal():
    total = 0

    def u_nonlocal(x):
        nonlocal total
        total = x  # <- unsupported
        return x
    return u_nonlocal


u_nonlocal = _make_nonlocal()


def u_del(x):
    y = x
    del y  # <- unsupported
    return x


def u_del_item(a):
    del a[0]  # <- unsupported
    return a


def u_import(x):
    import math as m  # <- unsupported
    return m.sqrt(x)


def u_attribute_store(x):
    NS.value = x  # <- unsupported
    return x


def u_star_call(xs):
    return max(*xs)  # <- unsupported


def u_kwargs_call(d):
    return dict(**d)  # <- unsupported


def u_star_args(*args):  # <- unsupported
    return args


def u_star_kwargs(x, **kw):  # <- unsupported
    return x


def u_genexpr(xs):
    return sum(x for x in xs)  # <- unsupported


def u_setcomp(xs):
    return {x for x in xs}  # <- unsupported


def u_dictcomp(xs):
    return {x: 1 for x in xs}  # <- unsupported


def u_for_else(xs):
    for x in xs:  # <- unsupported
        if x:
            break
    else:
        xs = [1]
    for y in xs:
        xs = xs + [y]
    return xs




def u_print(x):
    y = x + 1
    print(y)  # <- unsupported
    return y


def u_print_on_branch(x):
    if x > 1e300:
        print(x)  # <- unsupported
    return x


def u_open(x):
    return open(x)  # <- unsupported


def u_next(x):
    return next(x)  # <- unsupported


def u_raise(x):
    if x:
        raise ValueError(x)  # <- unsupported
    return x


def u_assert(x):
    assert x > 0  # <- unsupported
    return x


def u_fstring(x):
    return f"{x}!"  # <- unsupported


def u_starred_assign(xs):
    a, *b = xs  # <- unsupported
    return a


def u_set_display(x):
    return {x, 1}  # <- unsupported


def u_lambda_captures_comprehension_variable(n):
    fs = [lambda: v for v in range(n)]  # <- unsupported
    return [g() for g in fs]


UNSUPPORTED = [u_try, u_try_finally, u_with, u_class, u_global, u_nonlocal, u_del, u_del_item,
               u_import, u_attribute_store, u_star_call, u_kwargs_call, u_star_args,
               u_star_kwargs, u_genexpr, u_setcomp, u_dictcomp, u_for_else, u_print,
               u_print_on_branch, u_open, u_next, u_raise, u_assert, u_fstring,
               u_starred_assign, u_set_display, u_lambda_captures_comprehension_variable]


def marked_line(f):
    return src_line(f, MARK)


@pytest.mark.parametrize("f", UNSUPPORTED, ids=lambda f: f.__name__)
def test_unsupported_construct_names_function_file_and_line(f):
    with pytest.raises(UnsupportedError) as info:
        lift(f)
    err = info.value
    assert err.line == marked_line(f), (err.line, marked_line(f), str(err))
    assert err.function == f.__qualname__
    assert os.path.basename(err.filename) == os.path.basename(__file__)
    assert err.construct and f.__name__ in str(err)


@pytest.mark.parametrize("f", [u_yield, u_async], ids=lambda f: f.__name__)
def test_generators_and_coroutines(f):
    with pytest.raises(UnsupportedError) as info:
        lift(f)
    assert info.value.line == marked_line(f)


@pytest.mark.parametrize("f, words", [
    (u_try, "try"), (u_with, "with"), (u_class, "class"), (u_global, "global 'COUNTER'"),
    (u_nonlocal, "nonlocal 'total'"), (u_del, "del"), (u_import, "import"),
    (u_attribute_store, "attribute assignment"), (u_genexpr, "generator expression"),
    (u_setcomp, "set comprehension"), (u_dictcomp, "dict comprehension"),
    (u_print, "print"), (u_yield, "generator"), (u_async, "async"), (u_for_else, "else"),
    (u_star_args, "*args"), (u_star_kwargs, "**kwargs"), (u_star_call, "*args"),
])
def test_unsupported_construct_names(f, words):
    with pytest.raises(UnsupportedError) as info:
        lift(f)
    assert words in info.value.construct, info.value.construct


def test_side_effect_hint():
    with pytest.raises(UnsupportedError) as info:
        lift(u_print)
    assert "side effect" in info.value.construct
    assert info.value.hint == "move the side effect outside the function bytrev runs"


def _shadowed_print(x):
    return print(x)


def test_shadowed_builtin_is_an_ordinary_call():
    # A global named `print` in the function's module is not the builtin.
    namespace = {"print": lambda *args: args, "__builtins__": __builtins__}
    f = types.FunctionType(_shadowed_print.__code__, namespace, "shadowed_print")
    g = compile_ir(lift(f), f)
    assert g(3) == (3,)


def test_unknown_opcode_is_reported(monkeypatch):
    monkeypatch.delitem(lift_module._HANDLERS, "UNARY")

    def neg(x):
        y = x + 1
        return -y  # <- opcode
    with pytest.raises(UnsupportedError) as info:
        lift_module._Lifter(neg.__code__, neg.__globals__, neg.__qualname__).run()
    assert info.value.construct == "opcode UNARY"
    assert info.value.line == src_line(neg, "# <- opcode")


def test_internal_errors_do_not_escape(monkeypatch):
    def broken(lf, st, x):
        raise KeyError("boom")
    monkeypatch.setitem(lift_module._HANDLERS, "BINARY_OP", broken)

    def add(x):
        return x + 1  # <- here
    with pytest.raises(UnsupportedError) as info:
        lift_module._Lifter(add.__code__, add.__globals__, add.__qualname__).run()
    assert "BINARY_OP" in info.value.construct
    assert info.value.line == src_line(add, "# <- here")
