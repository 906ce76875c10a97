"""The property-test corpus: ordinary Python functions that bytrev must run backwards.

Every function is registered with `@case(...)`, which records

* `args`: a hypothesis strategy for its positional arguments (a tuple);
* `invertible`: True when `bytrev.inverse(f)` must succeed, False when it must raise
  `bytrev.NotInvertibleError` (statically, when `inverse(f)` is called);
* `exact`: True when every argument must be restored exactly (integer programs, and
  programs whose rebound values are only ever restored from the tape); False for float
  programs, which are restored within `rtol=1e-12` and `atol=1e-12 * scale`;
* optional tape facts checked by tests/test_tape.py: `zero_tape` (no bits, no trip
  counts, nothing stashed), `bits`, `counts`, `stashed` (an int, or a callable taking the
  arguments and returning the expected int);
* `mutates`: the array parameters the function mutates in place (test_roundtrip also
  detects in-place mutation at run time);
* `k`: how many leading parameters the return value gives back (inverse convention);
  derived from the source: a `return a, b` tuple display gives k = 2, anything else 1.

Expectations follow the spec in the task brief ("How the reversible form decides what
to record"). A comment on each function says why it is or is not invertible when that is
not obvious. Functions are registered in the order they appear; `CORPUS` is the list.
"""
from __future__ import annotations

import ast
import copy
import inspect
import math
import textwrap
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from bytrev.__main__ import branchy

# --------------------------------------------------------------------------- strategies

FLOAT = st.floats(-10.0, 10.0, allow_nan=False, allow_infinity=False, allow_subnormal=False)
SMALL = st.floats(-3.0, 3.0, allow_nan=False, allow_infinity=False, allow_subnormal=False)
# Multipliers/divisors bounded away from 0 so that `x * k` is inverted well by `/ k`.
NONZERO = st.one_of(st.floats(0.25, 4.0), st.floats(-4.0, -0.25))
INT = st.integers(-50, 50)
SMALL_INT = st.integers(-10, 10)
COUNT = st.integers(0, 20)
SMALL_COUNT = st.integers(0, 8)
STEP = st.floats(0.01, 0.2)


def farray(size=None, elements=FLOAT):
    """A small float64 array (1-D; `size` an int or a strategy)."""
    if size is None:
        size = st.integers(1, 6)
    return hnp.arrays(np.float64, size, elements=elements)


def matrix(max_side=4):
    return hnp.arrays(np.float64, hnp.array_shapes(min_dims=2, max_dims=2, max_side=max_side),
                      elements=FLOAT)


@st.composite
def same_size_arrays(draw, count, elements=FLOAT, min_size=1, max_size=6):
    n = draw(st.integers(min_size, max_size))
    return tuple(draw(farray(n, elements)) for _ in range(count))


def args(*strategies):
    return st.tuples(*strategies)


# --------------------------------------------------------------------------- registry


@dataclass
class Case:
    func: Callable
    args: st.SearchStrategy
    invertible: bool
    exact: bool
    zero_tape: bool = False
    bits: Any = None
    counts: Any = None
    stashed: Any = None
    mutates: tuple = ()
    scale: float = 1.0
    k: int = 1
    params: tuple = ()
    rebound: frozenset = field(default_factory=frozenset)

    @property
    def name(self) -> str:
        return self.func.__name__

    def __repr__(self):
        return f"<case {self.name}>"

    def expected(self, attr, call_args):
        """The expected value of tape fact `attr` ('bits', 'counts', 'stashed') for
        these arguments, or None when the case makes no claim."""
        v = getattr(self, attr)
        if v is None and self.zero_tape:
            return 0
        if callable(v):
            return v(*call_args)
        return v


CORPUS: list[Case] = []


def _function_node(f):
    src = textwrap.dedent(inspect.getsource(f))
    tree = ast.parse(src)
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == f.__name__:
            return node
    raise LookupError(f"no def for {f.__name__}")


def _own_nodes(fn_node):
    """The AST nodes of a function's own body: nested defs, lambdas, classes and
    comprehensions (which have their own scopes) are not entered."""
    stack = list(fn_node.body)
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda,
                                  ast.ClassDef, ast.ListComp, ast.SetComp, ast.DictComp,
                                  ast.GeneratorExp)):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    yield child  # its name is bound, but its body is not ours
                continue
            stack.append(child)


def return_arity(f) -> int:
    """k of the inverse convention: the length of the tuple display every `return`
    statement of f returns, or 1."""
    arities = set()
    for node in _own_nodes(_function_node(f)):
        if isinstance(node, ast.Return):
            if isinstance(node.value, ast.Tuple):
                arities.add(len(node.value.elts))
            else:
                arities.add(1)
    if len(arities) != 1:
        return 1
    return arities.pop()


def rebound_names(f) -> frozenset:
    """Local names f assigns to (so a parameter not in this set is never rebound)."""
    out = set()
    for node in _own_nodes(_function_node(f)):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            out.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
    return frozenset(out)


def case(arg_strategy, *, invertible, exact, zero_tape=False, bits=None, counts=None,
         stashed=None, mutates=(), scale=1.0, k=None):
    if not isinstance(arg_strategy, st.SearchStrategy):
        arg_strategy = st.tuples(*arg_strategy)

    def register(f):
        params = tuple(inspect.signature(f).parameters)
        kk = return_arity(f) if k is None else k
        assert 1 <= kk <= len(params), f.__name__
        assert all(m in params for m in mutates), f.__name__
        c = Case(f, arg_strategy, invertible, exact, zero_tape, bits, counts, stashed,
                 tuple(mutates), scale, kk, params, rebound_names(f))
        assert all(existing.name != c.name for existing in CORPUS), f"duplicate {c.name}"
        CORPUS.append(c)
        return f

    return register


# --------------------------------------------------------------------------- helpers the corpus calls
# Module-level globals and helper functions (read by corpus functions, never written).

SCALE = 2.5
OFFSET = 3
CONFIG = {"gain": 1.25, "bias": -0.5}


def helper_affine(x, a=2.0, b=1.0):
    return a * x + b


def helper_square(x):
    return x * x + 1.0


def pendulum_force(x):
    return -np.sin(x)


def rpow(base, n):
    """Recursive power (n >= 0)."""
    if n == 0:
        return 1.0
    return base * rpow(base, n - 1)


def rsum(n):
    """Recursive 1 + 2 + ... + n."""
    if n <= 0:
        return 0
    return n + rsum(n - 1)


def make_shift(c):
    def shift_by_c(x, y):
        x = x + c * y
        return x
    return shift_by_c


# --------------------------------------------------------------------------- scalar arithmetic


@case((FLOAT,), invertible=True, exact=False, zero_tape=True)
def affine(x):
    x = x * 1.5 + 1.0
    return x


@case((FLOAT, FLOAT), invertible=True, exact=False, zero_tape=True)
def add_sub(x, y):
    x = x + y
    x += y
    x = x - 2.0 * y
    x -= 0.5
    return x


@case((FLOAT, FLOAT), invertible=True, exact=False, zero_tape=True)
def lin_combo(x, y):
    x = 2.0 * x - y
    x = y - x
    return x


@case((INT, INT), invertible=True, exact=True, zero_tape=True)
def lin_combo_int(x, y):
    x = 2 * x - y
    x = x + 3 * y
    return x


@case((FLOAT, NONZERO), invertible=True, exact=False, zero_tape=True)
def scale_by_param(x, k):
    # x is never rebound: held by reference, so the reversible tape is empty; the inverse
    # divides by k (k != 0 here; see test_roundtrip for the k == 0 guard).
    return x * k


@case((FLOAT, NONZERO), invertible=True, exact=False, zero_tape=True)
def div_by_param(x, k):
    x = x / k
    x = x + 1.0
    x *= k
    return x


@case((FLOAT,), invertible=True, exact=False, zero_tape=True)
def unary_chain(x):
    x = -x
    x = +x
    x = x - 3.0
    return -x


@case((INT,), invertible=True, exact=True, zero_tape=True)
def int_invert(x):
    x = ~x
    x = x + 5
    return -x


@case((INT, st.integers(0, 255)), invertible=True, exact=True, zero_tape=True)
def int_xor(x, k):
    x ^= k
    x = x + k
    x = x ^ 0b1011
    return x


@case((INT, INT), invertible=True, exact=True, zero_tape=True)
def int_arith(x, y):
    x = x * 3 + y
    x = x - 7
    return x


@case((FLOAT,), invertible=True, exact=False, zero_tape=True)
def rename_scale(x):
    # `y = x * 3.0` when x is not used afterwards; `z = y - 1.0` when y is not.
    y = x * 3.0
    z = y - 1.0
    return z


@case((FLOAT,), invertible=True, exact=False, zero_tape=True)
def copy_chain(x):
    y = x
    z = y
    return z + 1.0


@case((FLOAT,), invertible=False, exact=True, stashed=1, bits=0, counts=0)
def square(x):
    x = x * x
    return x


@case((FLOAT,), invertible=False, exact=True, stashed=1, bits=0, counts=0)
def sin_update(x):
    x = math.sin(x)
    return x + 1.0


@case((FLOAT,), invertible=False, exact=True, stashed=1, bits=0, counts=0)
def double_self(x):
    # `x + x` reads x twice: not an invertible update by the rules, so it is stashed.
    x = x + x
    return x


@case((FLOAT, SMALL_COUNT), invertible=False, exact=True, stashed=lambda x, n: n, bits=0,
      counts=0)
def sin_loop(x, n):
    for i in range(n):
        x = math.sin(x) * 2.0
    return x


@case((FLOAT, FLOAT), invertible=False, exact=True)
def sum_of_squares_locals(a, b):
    u = a * a
    w = b * b
    z = u + w
    return z


@case((FLOAT, FLOAT), invertible=False, exact=True, zero_tape=True)
def norm2(x, y):
    # Nothing is rebound, so the reversible tape is empty; but x is not available to the
    # inverse and x*x loses its sign.
    return x * x + y * y


@case((FLOAT, FLOAT), invertible=False, exact=True)
def float_pow(x, y):
    return x ** 2 + 2.0 ** y + abs(y) ** 0.5


@case((INT, st.integers(-20, 20)), invertible=False, exact=True)
def int_ops_mix(x, y):
    return (x // 3) + (x % 5) + (x << 1) + (y >> 1) + (x & y) + (x | 1) + x ** 2


@case((INT,), invertible=False, exact=True, stashed=1)
def int_mod(x):
    x = x % 7
    return x


@case((INT,), invertible=False, exact=True, stashed=1)
def floor_div(x):
    x = x // 2
    return x


# --------------------------------------------------------------------------- comparisons, is/in, boolean logic


@case((FLOAT, FLOAT), invertible=False, exact=True)
def comparisons(x, y):
    return [x < y, x <= y, x == y, x != y, x > y, x >= y]


@case((st.one_of(st.none(), FLOAT), st.one_of(st.none(), st.sampled_from([0.0, 1.0, 2.0]))),
      invertible=False, exact=True)
def identity_checks(x, y):
    a = x is None
    b = y is not None
    c = y in (1.0, 2.0, 3.0)
    d = y not in [0.0]
    return [a, b, c, d]


@case((INT, st.integers(-2, 8)), invertible=True, exact=True, zero_tape=True)
def membership(x, k):
    if k in (1, 2, 3):
        x = x + 10
    if k not in (5, 6):
        x = x - 3
    if k is not None:
        x = x * 2
    return x


@case((FLOAT, SMALL_INT.map(float), SMALL_INT.map(float)), invertible=True, exact=False,
      zero_tape=True)
def boolean_logic(x, a, b):
    if (a > 0 and b > 0) or not (a < -5):
        x = x + 1.0
    else:
        x = x - 1.0
    x = x + (a or b)
    x = x - (a and b)
    return x


@case((FLOAT, st.booleans()), invertible=True, exact=False, zero_tape=True)
def not_flag(x, flag):
    if not flag:
        x = x + 1.0
    else:
        x = -x
    return x


@case((FLOAT, FLOAT), invertible=True, exact=False, zero_tape=True)
def chained_cmp(x, a):
    if -1.0 < a <= 2.0:
        x = x + a
    elif 2.0 < a < 5.0 != a:
        x = x - a
    else:
        x = x * 0.5
    return x


@case((FLOAT,), invertible=False, exact=True)
def chained_flag(x):
    return 0.0 < x < 1.0


@case((FLOAT, FLOAT), invertible=True, exact=False, zero_tape=True)
def cond_expr(x, a):
    x = x + (a if a > 0 else -a)
    x = x * (2.0 if a > 0 else 0.5)
    return x


@case((FLOAT,), invertible=False, exact=True, stashed=1)
def abs_via_ifexp(x):
    x = x if x > 0 else -x
    return x


# --------------------------------------------------------------------------- tuples, swaps, unpacking


@case((INT, INT), invertible=True, exact=True, zero_tape=True)
def swap(a, b):
    a, b = b, a
    return a, b


@case((INT, INT, COUNT), invertible=True, exact=True, zero_tape=True)
def fib_pair(a, b, n):
    for i in range(n):
        a, b = b, a + b
    return a, b


@case((INT, INT, INT), invertible=True, exact=True, zero_tape=True)
def rotate3(a, b, c):
    a, b, c = b, c, a
    return a, b, c


@case((INT, INT), invertible=True, exact=True, zero_tape=True)
def tuple_display_return(a, b):
    a = a + 1
    b = b - a
    a, b = b, a
    return a, b


@case((FLOAT, FLOAT), invertible=False, exact=True)
def tuple_unpack_destroy(x, y):
    t = (x, y, 1.0)
    p, q, r = t
    return p * p + q * r


@case((st.lists(FLOAT, min_size=3, max_size=3),), invertible=False, exact=True)
def unpack_list(xs):
    a, b, c = xs
    return a + 2.0 * b + 3.0 * c


@case((INT, st.tuples(INT, INT, INT)), invertible=True, exact=True, zero_tape=True)
def tuple_index(x, t):
    x = x + t[0] - t[-1]
    return x


# --------------------------------------------------------------------------- if / elif / else, early return


@case((INT, st.integers(-2, 8)), invertible=True, exact=True, zero_tape=True)
def if_elif_else(x, k):
    if k == 0:
        x = x + 1
    elif k == 1:
        x = x - 3
    elif k > 5:
        x = x ^ 7
    else:
        x = -x
    return x


@case((FLOAT,), invertible=False, exact=False, bits=1, stashed=0, counts=0)
def branch_on_self(x):
    if x > 0:
        x = x - 1.0
    else:
        x = x + 2.0
    return x


@case((FLOAT, SMALL), invertible=True, exact=False, zero_tape=True)
def early_return(x, k):
    if k < 0:
        return x - 1.0
    x = x * 2.0
    return x + k


@case((FLOAT,), invertible=False, exact=False)
def early_return_self(x):
    if x < 0:
        return -x
    x = x * 2.0
    return x


# --------------------------------------------------------------------------- loops


def _branchy_stashes(x, n):
    count = 0
    for i in range(n):
        if x > 0.5:
            count += 1
            x = x * 0.7 + 0.1 * math.sin(x)
        else:
            x = x * 1.3 + 0.05
    return count


branchy_loop = case((FLOAT, COUNT), invertible=False, exact=False, bits=lambda x, n: n, counts=0,
                    stashed=_branchy_stashes)(branchy)  # the README/demo example


@case((FLOAT, COUNT), invertible=True, exact=False, zero_tape=True)
def affine_loop(x, n):
    for i in range(n):
        x = x * 1.5 + 1.0
    return x


@case((INT, SMALL_INT, SMALL_INT), invertible=True, exact=True, zero_tape=True)
def range_args(x, a, b):
    for i in range(a, b, 2):
        x = x + i
    for j in range(b, a, -3):
        x = x - 2 * j
    return x


@case((INT, COUNT), invertible=True, exact=True, zero_tape=True)
def range_neg_step(x, n):
    for i in range(n, 0, -1):
        x = x * 2 + i
    return x


@case((FLOAT,), invertible=True, exact=False, zero_tape=True)
def loop_over_tuple(x):
    for c in (1.0, 2.0, 3.0):
        x = x * 0.5 + c
    return x


@case((FLOAT, st.lists(FLOAT, max_size=6)), invertible=True, exact=False, zero_tape=True)
def loop_over_list_arg(x, ws):
    for w in ws:
        x = x + w * 2.0
    return x


@case((FLOAT, farray()), invertible=True, exact=False, zero_tape=True)
def loop_over_array(x, arr):
    for v in arr:
        x = x - v
    return x


@case((FLOAT, st.lists(FLOAT, max_size=6)), invertible=True, exact=False, zero_tape=True)
def enumerate_loop(x, ws):
    for i, w in enumerate(ws):
        x = x + i * w
    return x


@case((FLOAT, farray(), farray()), invertible=True, exact=False, zero_tape=True)
def zip_loop(x, a, b):
    for p, q in zip(a, b):
        x = x + p * q
    return x


@case((FLOAT, COUNT), invertible=True, exact=False, zero_tape=True)
def loop_if_index(x, n):
    # The condition reads only the loop index, which neither branch changes.
    for i in range(n):
        if i % 3 == 0:
            x = x * 2.0
        else:
            x = x - i
    return x


@case((INT, COUNT), invertible=True, exact=True, zero_tape=True)
def loop_continue(x, n):
    for i in range(n):
        if i % 2 == 0:
            continue
        x = x + i
    return x


@case((INT, SMALL_COUNT, SMALL_COUNT), invertible=True, exact=True, zero_tape=True)
def nested_loops(a, n, m):
    for i in range(n):
        for j in range(m):
            a = a + i * j + 1
    return a


@case((FLOAT, COUNT), invertible=False, exact=False, counts=1)
def while_loop(x, n):
    i = 0
    while i < n:
        x = x * 1.5 + 1.0
        i = i + 1
    return x


@case((FLOAT,), invertible=False, exact=False, counts=1)
def while_converge(x):
    while x > 1.0:
        x = x * 0.5
    return x


@case((FLOAT, COUNT), invertible=False, exact=False, counts=1)
def loop_break(x, n):
    for i in range(n):
        if i >= 5:
            break
        x = x + 1.0
    return x


@case((FLOAT, farray()), invertible=False, exact=False, counts=1)
def search_break(x, a):
    for v in a:
        if v > x:
            break
        x = x + 0.25
    return x


@case((st.integers(1, 60),), invertible=False, exact=True, counts=1)
def collatz_steps(n):
    steps = 0
    while n != 1:
        if n % 2 == 0:
            n = n // 2
        else:
            n = 3 * n + 1
        steps += 1
    return steps


@case((st.integers(0, 100), st.integers(0, 100)), invertible=False, exact=True, counts=1)
def gcd(a, b):
    while b != 0:
        a, b = b, a % b
    return a


@case((st.lists(FLOAT, max_size=8),), invertible=False, exact=True, zero_tape=True)
def loop_accumulate(xs):
    # Zero tape in reversible mode (xs is held by reference, s is rebuilt by subtraction),
    # but the inverse is not given xs and cannot recover it from the sum.
    s = 0.0
    for v in xs:
        s = s + v
    return s


# --------------------------------------------------------------------------- arrays mutated in place


@st.composite
def _array_and_index(draw):
    a = draw(farray())
    return a, draw(FLOAT), draw(st.integers(0, len(a) - 1))


@case(_array_and_index(), invertible=True, exact=False, zero_tape=True, mutates=("a",))
def array_inplace_add(a, x, i):
    a[i] += x
    a[0] -= 0.5 * x
    return a


@case((farray(st.integers(1, 6)),), invertible=True, exact=False, zero_tape=True,
      mutates=("a",))
def array_slice_scale(a):
    a[1:4] *= 2.0
    a[::2] += 1.0
    return a


@case(same_size_arrays(2), invertible=True, exact=False, zero_tape=True, mutates=("a",))
def array_whole_iadd(a, b):
    a += 2.0 * b
    return a


@st.composite
def _matrix_and_row(draw):
    n = draw(st.integers(2, 4))
    m = draw(hnp.arrays(np.float64, (n, n), elements=FLOAT))
    return m, draw(farray(n))


@case(_matrix_and_row(), invertible=True, exact=False, zero_tape=True, mutates=("m",))
def array_row_update(m, v):
    m[0] += v
    m[:, 1] -= 2.0 * v[1]
    return m


@case((farray(), COUNT), invertible=True, exact=False, zero_tape=True, mutates=("a",))
def array_loop_inplace(a, n):
    for i in range(n):
        a[i % len(a)] += 0.5 * i
    return a


@case((farray(), FLOAT), invertible=False, exact=True, stashed=1, mutates=("a",))
def array_setitem(a, v):
    a[0] = v
    return a


@st.composite
def _array_and_count(draw):
    a = draw(farray())
    return a, draw(st.integers(0, len(a)))


@case(_array_and_count(), invertible=False, exact=True, stashed=lambda a, n: n,
      mutates=("a",))
def array_overwrite_loop(a, n):
    for i in range(n):
        a[i] = a[i] * a[i]
    return a


@case((farray(),), invertible=False, exact=True)
def array_copy_modify(a):
    b = a.copy()
    b[0] = 1.0
    return b.sum()


# --------------------------------------------------------------------------- integrators, Feistel


@st.composite
def _leapfrog_args(draw):
    n = draw(st.integers(1, 5))
    x = draw(farray(n, SMALL))
    v = draw(farray(n, SMALL))
    return x, v, draw(STEP), draw(COUNT)


@case(_leapfrog_args(), invertible=True, exact=False, zero_tape=True)
def leapfrog(x, v, dt, n):
    for i in range(n):
        v = v + 0.5 * dt * pendulum_force(x)
        x = x + dt * v
        v = v + 0.5 * dt * pendulum_force(x)
    return x, v


@case(_leapfrog_args(), invertible=True, exact=False, zero_tape=True, mutates=("x", "v"))
def leapfrog_inplace(x, v, dt, n):
    for i in range(n):
        x += dt * v
        v -= dt * np.sin(x)
    return x, v


@st.composite
def _feistel_args(draw):
    a, b = draw(same_size_arrays(2, SMALL, max_size=5))
    return a, b, draw(COUNT)


@case(_feistel_args(), invertible=True, exact=False, zero_tape=True, mutates=("a", "b"))
def feistel_arrays(a, b, n):
    for i in range(n):
        a += np.cos(b)
        b -= 0.5 * np.tanh(a)
    return a, b


@case((FLOAT, FLOAT, COUNT), invertible=True, exact=False, zero_tape=True)
def feistel_scalar(x, y, n):
    for i in range(n):
        x = x + math.cos(y)
        y = y - math.sin(x)
    return x, y


# --------------------------------------------------------------------------- array reads, methods, numpy calls


@case(same_size_arrays(2), invertible=False, exact=True)
def array_reductions(a, b):
    return np.sum(a) + a.sum() * b.max() + a.dot(b)


@case((matrix(),), invertible=False, exact=True)
def array_attrs(m):
    rows = m.shape[0]
    t = m.T
    r = m.reshape(-1)
    return t[0].sum() + r[-1] * rows + m.ndim + len(m)


@st.composite
def _scalar_and_pair(draw):
    a, b = draw(same_size_arrays(2))
    return draw(FLOAT), a, b


@case(_scalar_and_pair(), invertible=True, exact=False, zero_tape=True)
def dot_shift(x, a, b):
    x = x + a.dot(b)
    x = x - 0.5 * b.sum()
    return x


@st.composite
def _vector_and_matrix(draw):
    n = draw(st.integers(1, 4))
    return draw(farray(n)), draw(hnp.arrays(np.float64, (n, n), elements=FLOAT))


@case(_vector_and_matrix(), invertible=True, exact=False, zero_tape=True)
def matvec_shift(x, m):
    x = x + m @ np.ones(m.shape[1])
    x = x * 0.5
    return x


@case((farray(st.integers(2, 6)),), invertible=False, exact=True)
def slice_diff(x):
    return x[1:] - x[:-1] + x[::-1][0]


@case((farray(),), invertible=False, exact=False)
def np_where_step(x):
    x = np.where(x > 0, x * 0.5, x * 2.0)
    return x


@case((farray(),), invertible=False, exact=True)
def np_stats(x):
    return np.sum(np.sin(x)) + np.max(x) - np.mean(np.exp(-x * x))


@case((FLOAT, farray()), invertible=True, exact=False, zero_tape=True)
def np_sum_shift(x, a):
    x = x + np.sum(a) * 0.5
    return x


@case(same_size_arrays(2), invertible=True, exact=False, zero_tape=True)
def np_sin_update(x, y):
    x = x + np.sin(y)
    x = x - 0.25 * np.cos(2.0 * y)
    return x


# --------------------------------------------------------------------------- displays and comprehensions


@case((FLOAT, FLOAT), invertible=False, exact=True)
def list_display(x, y):
    vals = [x, y, x + y]
    return vals[2] * vals[0]


@case((FLOAT, FLOAT), invertible=False, exact=True)
def dict_display(x, y):
    d = {"a": x, "b": y}
    return d["a"] ** 2 + d["b"]


@case((st.lists(FLOAT, max_size=6), NONZERO), invertible=False, exact=True)
def comp_sum(xs, c):
    ys = [v * c for v in xs if v > -5.0]
    return sum(ys) + len(ys)


@case((FLOAT, st.lists(FLOAT, max_size=6)), invertible=True, exact=False, zero_tape=True)
def list_comp_shift(x, ws):
    x = x + sum([w * w for w in ws])
    return x


# --------------------------------------------------------------------------- calls: helpers, nested defs, closures, recursion


@case((FLOAT, FLOAT), invertible=True, exact=False, zero_tape=True)
def call_helpers(x, y):
    x = x + helper_affine(y, 2.0, b=1.0)
    x = x - helper_affine(y, b=0.5)
    x = x + helper_affine(x=y)
    return x


@case((FLOAT,), invertible=False, exact=True, stashed=1)
def call_helper_destroy(x):
    x = helper_square(x)
    return x


@case((FLOAT, SMALL_COUNT), invertible=False, exact=False)
def nested_def(x, n):
    def step(v, c):
        return math.sin(v) * c + v * v * 0.01
    for i in range(n):
        x = step(x, 0.5)
    return x


@case((FLOAT, FLOAT), invertible=False, exact=True)
def cell_closure(x, k):
    def addk(v):
        return v * v + k
    x = addk(x)
    return x


shift_by_c = case((FLOAT, FLOAT), invertible=True, exact=False, zero_tape=True)(make_shift(2.5))


@case((FLOAT, COUNT), invertible=True, exact=False, zero_tape=True)
def recursive_power_shift(x, n):
    x = x + rpow(1.5, n)
    return x


@case((INT, COUNT), invertible=True, exact=True, zero_tape=True)
def recursive_sum_shift(x, n):
    x = x * 2 + rsum(n)
    return x


@case((FLOAT, COUNT), invertible=False, exact=True)
def rec_sum(x, n):
    if n <= 0:
        return x
    return rec_sum(x * 0.5 + n, n - 1)


# --------------------------------------------------------------------------- builtins, math, globals, defaults


@case((FLOAT, FLOAT), invertible=False, exact=True)
def builtins_mix(x, y):
    return abs(x) + min(x, y) + max(x, 1.0) + float(int(y)) + round(y, 2)


@case((FLOAT, SMALL_INT), invertible=True, exact=False, zero_tape=True)
def conversions(x, n):
    x = x + float(n)
    x = x - int(n * 0.5)
    x = x + abs(n) - max(n, 0) + min(n, 2)
    return x


@case((FLOAT, farray()), invertible=True, exact=False, zero_tape=True)
def len_shift(x, a):
    x = x + len(a) * 1.5
    return x


@case((FLOAT, FLOAT), invertible=True, exact=False, zero_tape=True)
def math_exp_shift(x, y):
    x = x + math.exp(-y * y)
    x = x * math.exp(0.5)
    return x


@case((FLOAT,), invertible=True, exact=False, zero_tape=True)
def global_affine(x):
    x = x * SCALE + OFFSET
    return x


@case((FLOAT,), invertible=True, exact=False, zero_tape=True)
def config_shift(x):
    x = x * CONFIG["gain"] + CONFIG["bias"]
    return x


@case((FLOAT, st.one_of(st.none(), FLOAT)), invertible=True, exact=False, zero_tape=True)
def default_none(x, y=None):
    if y is None:
        x = x + 1.0
    else:
        x = x + y
    return x


# --------------------------------------------------------------------------- comparison helpers used by the tests


def is_seq(v):
    return isinstance(v, (list, tuple))


def identical(a, b) -> bool:
    """Whether two results are the same value of the same type (what `f` itself would
    have returned), arrays element for element."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=True)
    if is_seq(a):
        return len(a) == len(b) and all(identical(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(identical(a[k], b[k]) for k in a)
    if isinstance(a, (float, np.floating)) and a != a:
        return b != b
    return bool(a == b)


def magnitude(*values) -> float:
    """The largest absolute number in `values` (nested), at least 1."""
    m = 1.0
    for v in values:
        if v is None or isinstance(v, (bool, np.bool_, str)):
            continue
        if isinstance(v, np.ndarray):
            if v.size and np.issubdtype(v.dtype, np.number):
                m = max(m, float(np.max(np.abs(v[np.isfinite(v)]), initial=0.0)))
        elif is_seq(v):
            m = max(m, magnitude(*v))
        elif isinstance(v, dict):
            m = max(m, magnitude(*v.values()))
        elif isinstance(v, (int, float, np.integer, np.floating)):
            if math.isfinite(float(v)):
                m = max(m, abs(float(v)))
    return m


def close(got, want, *, exact: bool, atol: float, rtol: float = 1e-12) -> bool:
    """Whether a restored value equals the original: exactly, or within tolerance for
    float programs. Types must agree up to Python/numpy scalars of the same kind."""
    if isinstance(want, np.ndarray):
        if not isinstance(got, np.ndarray) or got.shape != want.shape or got.dtype != want.dtype:
            return False
        if exact:
            return np.array_equal(got, want)
        return np.allclose(got, want, rtol=rtol, atol=atol)
    if is_seq(want):
        return (is_seq(got) and type(got) is type(want) and len(got) == len(want)
                and all(close(g, w, exact=exact, atol=atol, rtol=rtol) for g, w in zip(got, want)))
    if want is None or isinstance(want, (bool, np.bool_, str)):
        return bool(got == want) and type(got) is type(want)
    if isinstance(want, (int, np.integer)) and exact:
        return isinstance(got, (int, float, np.integer, np.floating)) and got == want
    if isinstance(want, (int, float, np.integer, np.floating)):
        if not isinstance(got, (int, float, np.integer, np.floating)) or isinstance(got, bool):
            return False
        if exact:
            return got == want
        return abs(float(got) - float(want)) <= atol + rtol * abs(float(want))
    return bool(got == want)


def clone(values):
    """Deep copies of arguments (arrays copied, scalars shared)."""
    return copy.deepcopy(values)


assert len(CORPUS) >= 60, len(CORPUS)
for _c in CORPUS:
    if _c.invertible:
        # The inverse is given the original values of params[k:], so an invertible
        # function must leave them alone.
        assert not (_c.rebound & set(_c.params[_c.k:])), _c.name
        assert set(_c.mutates) <= set(_c.params[:_c.k]), _c.name
del _c
