"""The gradient corpus: ordinary Python/NumPy functions that `bytrev.grad` must
differentiate without being changed.

Every function is written the way a user would write it (module-level `np` and `math`,
module-level helpers) and registered with `@case(strategy, ...)`, which returns it
unchanged and appends a `Case` to `CASES`:

* `strategy`: a hypothesis strategy for the positional arguments (a tuple). Strategies
  keep every sampled point at least `MARGIN` (1e-3) away from any kink of the function
  (a branch condition, a trip count, `abs`, `max`, `np.where`, ...) so central finite
  differences are valid there; `away(strategy, margin)` filters on a margin function
  that replays the function's control flow;
* `argnums`: what to differentiate (an int or a tuple, as in `bytrev.grad`);
* `autograd_ok`: the function runs under autograd when its globals are patched so that
  `np` is `autograd.numpy` and `math` is a shim over it (see `autograd_version`); False
  for in-place updates (autograd does not support them) and anything else awkward;
* `output`: "scalar" (for grad), or "array"/"tuple" (for vjp and jacobian);
* `mutates`: the function changes an array argument in place (the gradient call must
  give it back within 1e-12);
* `cat` (the section it is in) and `notes`.

The comparison helpers at the bottom (pytree flattening, central finite differences,
the autograd patch) are shared by tests/test_grad.py.
"""
from __future__ import annotations

import math
import types
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from bytrev.__main__ import branchy

MARGIN = 1e-3

# --------------------------------------------------------------------------- strategies


def floats(lo, hi):
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False, allow_subnormal=False)


X = floats(-2.0, 2.0)
POS = floats(0.5, 3.0)
UNIT = floats(-1.0, 1.0)
STEP = floats(0.01, 0.1)


def arr(shape, lo=-2.0, hi=2.0):
    """A float64 array of `shape` (an int, a tuple, or a strategy for either)."""
    return hnp.arrays(np.float64, shape, elements=floats(lo, hi))


def vec(lo=-2.0, hi=2.0, min_size=1, max_size=6):
    return arr(st.integers(min_size, max_size), lo, hi)


def well_conditioned(n):
    """An n x n matrix M + 4 I with |M_ij| <= 1 (diagonally dominant for n <= 4)."""
    return arr((n, n), -1.0, 1.0).map(lambda m: m + 4.0 * np.eye(n))


@st.composite
def same_size(draw, count, lo=-2.0, hi=2.0, min_size=1, max_size=6):
    n = draw(st.integers(min_size, max_size))
    return tuple(draw(arr(n, lo, hi)) for _ in range(count))


def args(*strategies):
    return st.tuples(*strategies)


def away(strategy, margin, eps=MARGIN):
    """The argument tuples of `strategy` whose distance to the nearest kink, as computed
    by `margin(*args)`, is at least `eps`."""
    return strategy.filter(lambda a: margin(*a) >= eps)


def spread(a):
    """The smallest gap between two distinct-position elements of a (inf for size 1)."""
    s = np.sort(np.ravel(a))
    return float(np.min(np.diff(s))) if s.size > 1 else math.inf


def top_gap(a, axis=None):
    """The gap between the largest and second-largest element (per `axis`, minimum)."""
    if axis is None:
        s = np.sort(np.ravel(a))
        return float(s[-1] - s[-2]) if s.size > 1 else math.inf
    s = np.sort(a, axis=axis)
    if s.shape[axis] < 2:
        return math.inf
    return float(np.min(np.take(s, -1, axis=axis) - np.take(s, -2, axis=axis)))


# --------------------------------------------------------------------------- registry


@dataclass
class Case:
    f: Callable
    strategy: st.SearchStrategy
    argnums: Any = 0
    autograd_ok: bool = True
    notes: str = ""
    output: str = "scalar"
    mutates: bool = False
    cat: str = ""

    @property
    def name(self):
        return self.f.__name__

    @property
    def argnums_tuple(self):
        return (self.argnums,) if isinstance(self.argnums, int) else tuple(self.argnums)

    def __repr__(self):
        return f"<grad case {self.name}>"


CASES: list[Case] = []
_section = ""


def section(name):
    global _section
    _section = name


def case(strategy, *, argnums=0, autograd_ok=True, notes="", output="scalar", mutates=False):
    if not isinstance(strategy, st.SearchStrategy):
        strategy = st.tuples(*strategy)

    def register(f):
        assert output in ("scalar", "array", "tuple"), output
        assert all(c.name != f.__name__ for c in CASES), f"duplicate {f.__name__}"
        CASES.append(Case(f, strategy, argnums, autograd_ok, notes, output, mutates, _section))
        return f

    return register


# --------------------------------------------------------------------------- module-level helpers the corpus calls

GAIN = 1.5
COEFFS = (0.5, -1.0, 0.25, 2.0)
WEIGHTS = np.array([0.5, -1.0, 2.0])
IDX = np.array([2, 0, 1, 2])


def affine(x, a=2.0, b=1.0):
    return a * x + b


def softplus(x):
    return np.log1p(np.exp(x))


def smooth_sq(x, scale=1.0):
    return scale * x * x + np.sin(x)


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def force(x):
    return -np.sin(x)


def spring(x, k=1.0):
    return -k * x


def rpow(base, n):
    if n == 0:
        return 1.0
    return base * rpow(base, n - 1)


def rpoly(coeffs, x, i):
    """Horner's rule by recursion: coeffs[i] + x * (coeffs[i+1] + x * (...))."""
    if i == len(coeffs) - 1:
        return coeffs[i]
    return coeffs[i] + x * rpoly(coeffs, x, i + 1)


def rtanh_chain(x, depth):
    if depth <= 0:
        return x
    return rtanh_chain(math.tanh(x) + 0.5 * x, depth - 1)


def layer(w, b, h):
    return np.tanh(w @ h + b)


def make_scaled_sin(k):
    def scaled_sin(x):
        return k * math.sin(x) + x * x
    return scaled_sin


def make_poly(c0, c1, c2):
    def poly(x):
        return c0 + c1 * x + c2 * x * x
    return poly


SQUASH = make_poly(0.5, -0.25, 0.125)

# ============================================================================ straight-line scalar code
section("scalar")


@case((X,))
def poly3(x):
    return 3.0 * x ** 3 - 2.0 * x ** 2 + x - 5.0


@case((X, X), argnums=(0, 1))
def two_var_mix(x, y):
    return x * y + x / (1.0 + y * y) - y ** 2


@case((X,))
def rational(x):
    num = x * x + 1.0
    den = x * x + 2.0
    return num / den


@case((POS, X), argnums=(0, 1))
def powers(x, y):
    return x ** 2.5 + x ** -1 + 2.0 ** y + x ** y


@case((X,))
def math_funcs(x):
    return math.sin(x) * math.exp(-x * x) + math.log(1.0 + x * x) + math.tanh(x) + math.sqrt(1.0 + x * x)


@case((POS, POS), argnums=(0, 1))
def math_two_arg(x, y):
    return math.atan2(y, x) + math.hypot(x, y) + math.cos(x * y)


@case((POS,))
def math_logs(x):
    return math.pow(x, 1.5) + math.log10(x) + math.log2(x) + math.exp(math.sin(x)) + math.log1p(x)


@case((X, X), argnums=(0, 1))
def shared_subexpr(x, y):
    a = x * y
    b = a + x
    c = a * b
    return c / (1.0 + b * b)


@case((X, X), argnums=1)
def rebind_chain(x, y):
    y = y * 2.0 + x
    y = y * y
    y = math.sin(y) + 0.5 * y
    x = x + y
    return x * y


@case((X,))
def numpy_on_float(x):
    return np.sin(x) + np.exp(x) * np.cos(x) + np.tanh(2.0 * x)


@case((X.map(np.float64),), notes="the argument is a NumPy float64 scalar")
def numpy_scalar_arg(x):
    return x * np.exp(-x) + np.arctan(x)


@case((X, X), argnums=(0, 1))
def constants_and_globals(x, y):
    return GAIN * x * x + math.pi * y + math.e * x * y


@case(away(args(X, X), lambda x, y: min(abs(x), abs(x - y), abs(x - 1.0))), argnums=(0, 1),
      notes="abs/max/min kinks kept 1e-3 away")
def builtin_abs_max_min(x, y):
    return abs(x) + max(x, y) + min(x, 1.0) * y


@case((X, floats(-1.0, 1.0)), argnums=(0, 1))
def default_and_kw(x, y):
    return affine(x) + affine(y, b=0.5) + affine(x=y, a=-1.0)


# ============================================================================ NumPy elementwise and broadcasting
section("numpy elementwise")


@case((vec(),))
def ew_basic(a):
    return np.sum(np.sin(a) * np.exp(-a * a) + a ** 2)


@case((arr((3, 1)), arr(4)), argnums=(0, 1), notes="broadcast (3,1) with (4,)")
def broadcast_col_row(a, b):
    return np.sum(np.tanh(a * b + a - b))


@case((X, vec()), argnums=(0, 1), notes="scalar with array: the float's gradient is a float")
def scalar_with_array(s, a):
    return np.sum((a - s) ** 2 * s)


@case((vec(0.5, 3.0),))
def ew_log_sqrt(a):
    return np.sum(np.log(a) / (1.0 + a) + np.sqrt(a))


@case((vec(),))
def logistic(a):
    return np.sum(1.0 / (1.0 + np.exp(-a)))


@case((vec(),))
def ew_more(a):
    return np.sum(np.log1p(np.exp(a)) + np.expm1(0.5 * a) + np.cosh(a) * np.arctan(a) + np.square(a))


@case(same_size(2, 0.5, 2.0), argnums=(0, 1))
def ew_power_arrays(a, b):
    return np.sum(a ** b + np.hypot(a, b) + np.reciprocal(a + b))


@case((arr((2, 3)), arr((3,)), X), argnums=(0, 1, 2), notes="2-D with 1-D and float")
def broadcast_three(m, v, s):
    return np.sum(np.sin(m + v) * s + (m * v) ** 2)


@case((arr((4, 1)), arr((1, 3))), argnums=(0, 1), notes="outer-product-style broadcast")
def broadcast_outer(a, b):
    d = a - b
    return np.sum(np.exp(-d * d))


@case(away(args(vec()), lambda a: float(np.min(np.abs(a)))), notes="np.abs kinks kept away")
def ew_abs(a):
    return np.sum(np.abs(a) * a + np.abs(np.sin(a)))


@case((vec(),), autograd_ok=False, notes="ndarray methods (autograd's ArrayBox has no .dot)")
def array_methods(a):
    return a.sum() * 0.5 + (a * a).mean() + a.dot(a) + np.prod(1.0 + 0.1 * a)


@case((vec(),))
def sigmoid_helper(a):
    return np.sum(sigmoid(a) * softplus(-a))


# ============================================================================ branches
section("branches")


@case(away(args(floats(-3.0, 3.0)), lambda x: min(abs(x - 1.0), abs(x + 1.0))),
      notes="if/elif/else on the argument's value")
def piecewise(x):
    if x > 1.0:
        y = x * x
    elif x > -1.0:
        y = 2.0 * x - 1.0 + math.sin(x - 1.0)
    else:
        y = -3.0 - 0.5 * x
    return y


@case(args(X, st.integers(0, 2)), notes="branch on an int that does not change")
def branch_mode(x, mode):
    if mode == 0:
        r = x * x
    elif mode == 1:
        r = math.sin(x) * 3.0
    else:
        r = math.exp(0.5 * x)
    return r + x


@case(away(args(X, X), lambda x, y: min(abs(x), abs(y - 0.5), abs(y + 0.5), abs(y + 1.5))), argnums=(0, 1),
      notes="nested if/elif/else")
def nested_branches(x, y):
    if x > 0.0:
        if y > 0.5:
            r = x * y
        else:
            r = x + y * y
    else:
        if y > -0.5:
            r = math.exp(x) * y
        elif y > -1.5:
            r = x - y
        else:
            r = 0.5 * x
    return r


@case(away(args(floats(-1.0, 2.0)), lambda x: abs(x - 0.5)),
      notes="the branch rebinds what its condition reads (needs a recorded bit)")
def branch_rebinds(x):
    if x > 0.5:
        x = x * x + 0.25
    else:
        x = math.sin(x)
    return x * 3.0


@case(away(args(vec()), lambda a: abs(float(np.sum(a)))), notes="branch on an array reduction")
def branch_on_sum(a):
    if np.sum(a) > 0.0:
        return np.sum(a * a)
    return np.sum(np.sin(a))


@case(away(args(X, X), lambda x, y: min(abs(x), abs(y), abs(x - 1.0))), argnums=(0, 1),
      notes="conditional expressions and chained comparisons")
def ternary_chain(x, y):
    a = x * x if x > 0.0 else -x * 0.5
    b = y if 0.0 < x < 1.0 and y > 0.0 else 2.0 * y
    return a * b + a


# ============================================================================ loops
section("loops")

N = st.integers(0, 20)


@case(args(X, N))
def for_range_scalar(x, n):
    for i in range(n):
        x = x * 0.9 + 0.1 * math.sin(x + i)
    return x


@case((vec(),))
def for_over_array(a):
    s = 0.0
    for v in a:
        s = s + v * v * 0.5 + math.sin(v)
    return s


@case((st.lists(X, min_size=1, max_size=6),), notes="a list argument: its gradient is a list of floats")
def for_over_list(xs):
    s = 0.0
    for v in xs:
        s = s + math.exp(-v * v) * v
    return s


@case((vec(),))
def for_enumerate(a):
    s = 0.0
    for i, v in enumerate(a):
        s = s + (i + 1) * v ** 2
    return s


@case(same_size(2), argnums=(0, 1))
def for_zip(a, b):
    s = 0.0
    for u, w in zip(a, b):
        s = s + u * w + math.sin(u - w)
    return s


@case(same_size(2), argnums=(0, 1), notes="indexing loop s = s + a[i]*b[i]")
def indexed_dot(a, b):
    s = 0.0
    for i in range(len(a)):
        s = s + a[i] * b[i]
    return s


@case((vec(), vec()), argnums=(0, 1), notes="nested loops")
def nested_loops(a, b):
    s = 0.0
    for i in range(len(a)):
        for j in range(len(b)):
            s = s + math.cos(a[i] - b[j]) * (i + 1)
    return s


@case(args(X, st.integers(1, 15)))
def range_start_step(x, n):
    t = 0.0
    for k in range(1, 2 * n, 3):
        t = t + x ** 2 / k - math.sin(k * x)
    return t


@case(args(vec()), notes="continue skips on the index (not the value)")
def loop_continue(a):
    s = 0.0
    for i in range(len(a)):
        if i % 2 == 1:
            continue
        s = s + a[i] * a[i]
    return s


def _while_grow_margin(x):
    m = abs(x - 10.0)
    i = 0
    while x < 10.0:
        x = x * 1.5 + 0.1
        i += 1
        m = min(m, abs(x - 10.0))
        if i > 40:
            break
    return m


@case(away(args(floats(0.5, 9.0)), _while_grow_margin), notes="while on a value; trip count kept stable")
def while_grow(x):
    i = 0
    while x < 10.0:
        x = x * 1.5 + 0.1
        i += 1
        if i > 40:
            break
    return x * x + i


@case((floats(0.5, 10.0),), notes="while True with break on convergence (Newton sqrt)")
def newton_sqrt(a):
    x = a
    i = 0
    while True:
        x_new = 0.5 * (x + a / x)
        i += 1
        if abs(x_new - x) < 1e-13 or i >= 60:
            x = x_new
            break
        x = x_new
    return x


def _first_crossing_margin(x, n):
    m = math.inf
    for i in range(n):
        x = x * 1.2 + 0.1
        m = min(m, abs(x - 3.0))
        if x > 3.0:
            break
    return m


@case(away(args(floats(-1.0, 2.5), st.integers(0, 12)), _first_crossing_margin),
      notes="early return inside a loop")
def first_crossing(x, n):
    for i in range(n):
        x = x * 1.2 + 0.1
        if x > 3.0:
            return x * x + i
    return -x


@case(args(X, X, st.integers(0, 25)), argnums=(0, 1), notes="x, y = y, x + y")
def fib_like(x, y, n):
    for i in range(n):
        x, y = y, x + y
    return y * 0.001 + x * 0.002


@case(args(X, X, st.integers(0, 30)), argnums=(0, 1), notes="tuple swap and parallel assignment")
def swap_feistel(x, y, n):
    for i in range(n):
        x, y = y, x + 0.1 * np.sin(y)
    return x * y


@case(args(X, st.integers(0, 30)), notes="augmented assignment on a float")
def aug_scalar(x, n):
    for i in range(n):
        x *= 1.01
        x += 0.1 * math.sin(i + x)
        x -= 0.01
        x /= 1.005
    return x


@case(args(X, X, st.integers(0, 10)), argnums=(0, 1), notes="nested loop with swaps and a dependency")
def loop_two_state(x, y, n):
    for i in range(n):
        for j in range(2):
            x = x + 0.1 * math.tanh(y)
            y = y - 0.1 * math.tanh(x)
        x, y = y, x
    return x + 2.0 * y


@case((st.lists(X, min_size=1, max_size=6),), notes="list comprehension, sum builtin")
def comprehension_sum(xs):
    ys = [v * v + 0.5 * v for v in xs]
    return sum(ys) * 0.5


def _branchy_margin(x, n):
    m = math.inf
    for i in range(n):
        m = min(m, abs(x - 0.5))
        if x > 0.5:
            x = x * 0.7 + 0.1 * math.sin(x)
        else:
            x = x * 1.3 + 0.05
    return m


branchy_loop = case(away(args(floats(0.0, 2.0), st.integers(0, 30)), _branchy_margin),
                    notes="README's branchy loop: the branch flips with the state; every iterate >= 1e-3 from 0.5")(branchy)  # the README/demo example


# ============================================================================ augmented / in-place arrays
section("in-place arrays")


@case((vec(),), autograd_ok=False, notes="x *= c, x += e on a copy")
def aug_array_copy(a):
    b = a.copy()
    b *= 2.0
    b += np.sin(a)
    b -= 0.5 * a * a
    return np.sum(b * b)


@case((vec(),), autograd_ok=False, mutates=True, notes="x *= c, x += e on the argument itself")
def aug_array_arg(a):
    a *= 1.5
    a += np.cos(a)
    return np.sum(a * a)


@case((vec(min_size=3), X), argnums=(0, 1), autograd_ok=False, notes="a[i] += v, a[i:j] *= c, a[i] = v on a copy")
def setitem_copy(x, v):
    a = x.copy()
    a[0] += v
    a[1:3] *= 2.0
    a[2] = v * v
    return np.sum(a * a) + a[1] * v


@case((vec(min_size=3), X), argnums=(0, 1), autograd_ok=False, mutates=True,
      notes="a[i] += v, a[i:j] *= c, a[i] = v on the argument itself")
def setitem_arg(a, v):
    a[0] += v * v
    a[1:] *= 0.5
    a[-1] = math.sin(v) + a[0]
    return np.sum(np.sin(a))


@case((vec(), st.integers(0, 15)), autograd_ok=False, mutates=True, notes="in-place updates in a loop")
def inplace_loop(a, n):
    for i in range(n):
        a[i % len(a)] += 0.1 * np.sin(a[(i + 1) % len(a)])
    return np.sum(a * a)


@case((vec(),), autograd_ok=False, notes="running sum written into a copy (overwrites need stashes)")
def cumsum_by_hand(x):
    a = x.copy()
    for i in range(1, len(a)):
        a[i] = a[i] + a[i - 1] * 0.5
    return np.sum(a ** 2)


@case((arr((3, 3)), arr(3)), argnums=(0, 1), autograd_ok=False, mutates=True,
      notes="row and column updates of a matrix argument")
def matrix_rows_inplace(m, v):
    m[0] += v
    m[:, 1] *= 0.5
    m[2, 2] = v[0] * m[1, 1]
    return np.sum(m * m)


@case((vec(min_size=2),), autograd_ok=False, notes="a[i] = f(a[i]) overwrites on a copy, in a loop")
def overwrite_loop_copy(x):
    a = x.copy()
    for i in range(len(a)):
        a[i] = math.tanh(a[i]) * 2.0
    return np.sum(a * x)


# ============================================================================ indexing reads
section("indexing")


@case((vec(min_size=3),))
def fancy_index(a):
    return np.sum(a[[0, 2, 1, 0]] * a[IDX % len(a)] + a[-1]) + a[np.array([1, 1])].sum()


@case(away(args(vec()), lambda a: float(np.min(np.abs(a)))), notes="boolean mask read; mask away from 0")
def mask_read(a):
    return np.sum(a[a > 0.0] ** 2) + np.sum(np.sin(a[a <= 0.0]))


@case((vec(min_size=2),))
def slice_reads(a):
    d = a[1:] - a[:-1]
    return np.sum(d * d) + a[::2].sum() * a[-1]


@case((arr((3, 4)),))
def index_2d(m):
    return m[0, 1] * m[2, 3] + np.sum(m[:, 0] ** 2) + np.sum(m[1] * m[2]) + m[1:, ::2].sum()


@case((vec(min_size=4), st.lists(st.integers(0, 3), min_size=1, max_size=5)), autograd_ok=False,
      notes="indices from an int list argument (no gradient); autograd has no VJP for np.take")
def take_indices(a, idx):
    s = 0.0
    for k in idx:
        s = s + a[k] * a[(k + 1) % len(a)]
    return s + np.sum(np.take(a, idx))


# ============================================================================ reductions
section("reductions")


@case((arr((3, 4)),))
def sum_axis_keepdims(m):
    r = np.sum(m, axis=1, keepdims=True)
    c = m.mean(axis=0)
    return np.sum((m - r) ** 2) + np.sum(c * c) + np.sum(np.cumsum(m, axis=1))


@case(away(args(arr((3, 4))), lambda m: min(top_gap(m, 1), top_gap(m))), notes="max with a unique argmax")
def max_reductions(m):
    return np.sum(np.max(m, axis=1)) + np.max(m) * 0.5 + np.sum(m.max(axis=1, keepdims=True) - m)


@case(away(args(vec(min_size=2)), lambda a: float(np.var(a))), notes="std: variance kept away from 0")
def mean_var_std(a):
    return np.mean(a) + np.var(a) + np.std(a)


@case((vec(0.5, 2.0),))
def prod_reduction(a):
    return np.prod(a) + np.prod(a[:2]) * np.mean(a)


@case((vec(),), notes="logsumexp by hand; exact at ties of the max")
def logsumexp_by_hand(a):
    m = np.max(a)
    return m + np.log(np.sum(np.exp(a - m)))


# ============================================================================ linear algebra
section("linalg")


@case(same_size(2), argnums=(0, 1))
def dot_outer(a, b):
    return np.dot(a, b) + np.sum(np.outer(a, b) ** 2) + a @ b


@case((arr((3, 2)), arr((2, 4)), arr(4)), argnums=(0, 1, 2))
def matmul_chain(a, b, v):
    return np.sum(np.tanh(a @ b) @ v) + np.sum(np.matmul(a, b))


@case((well_conditioned(3), arr(3)), argnums=(0, 1))
def linear_solve(a, b):
    x = np.linalg.solve(a, b)
    return np.sum(x * x) + x[0]


@case((well_conditioned(3),))
def matrix_inverse(a):
    ai = np.linalg.inv(a)
    return np.trace(ai) + np.sum(ai ** 2)


@case((well_conditioned(3),), notes="away from singular matrices (det's VJP uses the inverse)")
def determinant(a):
    return np.linalg.det(a) + np.linalg.det(a[:2, :2] * 2.0 - np.eye(2)) * 0.1


@case(away(args(vec(), arr((3, 3))), lambda v, m: min(float(np.linalg.norm(v)), float(np.linalg.norm(m)))),
      argnums=(0, 1), notes="vector 2-norm and Frobenius norm (away from 0)")
def norms(v, m):
    return np.linalg.norm(v) + np.linalg.norm(m) + np.linalg.norm(m, 'fro') * 0.5


@case((arr((3, 3)), arr((3, 2)), arr(3)), argnums=(0, 1, 2))
def einsum_mix(a, b, v):
    return (np.einsum('ij,jk->', a, b) + np.einsum('i,ij,j->', v, a, v)
            + np.sum(np.einsum('ij,jk->ik', a, b) ** 2) + np.einsum('ij,ij', a, a))


@case((arr((3, 3)), arr(3)), argnums=(0, 1), autograd_ok=False,
      notes="repeated einsum indices (trace, diagonal); autograd cannot differentiate them")
def einsum_trace_diag(a, v):
    return np.einsum('ii->', a) * np.sum(v) + np.sum(np.einsum('ii->i', a) * v) + np.einsum('ii', a @ a)


@case((vec(), arr((3, 3))), argnums=(0, 1), notes="quadratic form with the array transpose")
def quadratic_form(x, a):
    y = x[:3] if len(x) >= 3 else np.concatenate([x, np.zeros(3 - len(x))])
    return y @ a @ y + y @ a.T @ a @ y * 0.1


@case((arr((3, 3)),))
def trace_products(a):
    return np.trace(a @ a) + np.trace(a.T @ a) + np.trace(a) ** 2


# ============================================================================ shape operations
section("shape ops")


@case((arr(6),))
def reshape_transpose(a):
    m = a.reshape(2, 3)
    t = m.T
    u = np.transpose(m)
    return np.sum(t @ m) + np.sum(u[0] * t[1]) + np.sum(np.reshape(a, (3, 2)) ** 3)


@case((arr(3), arr(4)), argnums=(0, 1))
def concat_stack(a, b):
    c = np.concatenate([a, b, a * b[:3]])
    s = np.stack([a, b[1:], a * a])
    return np.sum(c ** 2) + np.sum(s[1] * s[2]) + np.sum(np.stack([a, a], axis=1) ** 3)


@case((vec(),), autograd_ok=False, notes="autograd has no VJP for np.flip")
def roll_flip(a):
    return np.sum(a * np.roll(a, 1)) + np.sum(np.flip(a) * a ** 2) + np.sum(a[::-1] * np.roll(a, -2))


@case((arr((2, 3)),))
def ravel_expand(m):
    r = m.ravel()
    e = np.expand_dims(r, 0)
    return np.sum(e.T @ e) + np.sum(np.squeeze(e) * r) + np.sum(m.flatten() ** 3)


# ============================================================================ where / maximum / clip
section("where/maximum/clip")


@case(away(args(vec()), lambda a: float(np.min(np.abs(a)))))
def where_relu(a):
    return np.sum(np.where(a > 0.0, a * a, 0.1 * a)) + np.sum(np.maximum(a, 0.0) ** 2)


@case(away(args(vec()), lambda a: float(np.min(np.minimum(np.abs(a - 1.0), np.abs(a + 1.0))))))
def clip_values(a):
    return np.sum(np.clip(a, -1.0, 1.0) ** 3 + np.clip(a, -1.0, 1.0) * a)


@case(away(same_size(2), lambda a, b: float(np.min(np.abs(a - b)))), argnums=(0, 1))
def maximum_minimum(a, b):
    return np.sum(np.maximum(a, b) * np.minimum(a, b) + np.maximum(a, b) ** 2)


# ============================================================================ calls: helpers, nested, closures, lambdas, recursion
section("calls")


@case((X, floats(-1.0, 1.0)), argnums=(0, 1), notes="module-level helpers with keyword arguments")
def call_helpers_kw(x, y):
    return smooth_sq(x, scale=0.5) + smooth_sq(y) * affine(x, b=y) + softplus(x * y)


@case((vec(),), notes="helper calling a helper")
def helper_chain(a):
    return np.sum(sigmoid(affine(a, a=0.5, b=-0.25)))


@case(args(X, st.integers(0, 10)), notes="a nested def called in a loop")
def nested_def_loop(x, n):
    def step(v, c):
        return math.sin(v) * c + v * 0.5
    for i in range(n):
        x = step(x, 0.8)
    return x


@case((X, X), argnums=(0, 1), notes="closure reading outer variables")
def closure_reads(x, k):
    scale = k * 0.5 + 1.0

    def g(v):
        return scale * v * v + k * v
    return g(x) + g(x + 1.0)


@case((X, X, X), argnums=(0, 1, 2), notes="a lambda capturing a parameter")
def lambda_capture(x, y, k):
    sq = lambda t: t * t * k
    return sq(x) + sq(y) + sq(x * y)


@case(args(X, st.integers(0, 10)), notes="recursive power of depth <= 10")
def recursive_power(x, n):
    return rpow(x, n) + rpow(0.5 * x, 2)


@case((X,), notes="recursive Horner polynomial over a global tuple")
def recursive_poly(x):
    return rpoly(COEFFS, x, 0)


@case(args(X, st.integers(0, 8)), notes="recursion that rebinds its argument (math.tanh)")
def recursive_chain(x, depth):
    return rtanh_chain(x, depth) * 2.0


scaled_sin = case((X,), notes="the corpus function is itself a closure made by a factory")(
    make_scaled_sin(1.5))


@case((vec(),), notes="a global closure called on an array")
def global_closure_call(a):
    return np.sum(SQUASH(a) * a)


@case((X, X), argnums=(0, 1))
def list_dict_displays(x, y):
    vals = [x, y, x * y]
    d = {"a": x, "b": y * y}
    return vals[2] * vals[0] + d["a"] ** 2 + d["b"] * vals[1]


# ============================================================================ pytrees
section("pytrees")


@st.composite
def _linreg(draw):
    w = draw(arr(3))
    b = draw(X)
    xs = draw(arr((5, 3)))
    ys = draw(arr(5))
    return {"w": w, "b": b}, xs, ys


@case(_linreg(), notes="dict of parameters {'w': array, 'b': float}")
def linreg_loss(params, xs, ys):
    pred = xs @ params["w"] + params["b"]
    err = pred - ys
    return np.mean(err * err)


@case(args(st.tuples(arr(3), arr(3)), X), argnums=(0, 1), notes="a tuple of arrays and a float")
def tuple_of_arrays(pair, s):
    a, b = pair
    return np.sum(a * b) * s + np.sum(np.sin(a - b))


@st.composite
def _mlp(draw):
    w1 = draw(arr((4, 3), -1.0, 1.0))
    w2 = draw(arr((2, 4), -1.0, 1.0))
    x = draw(arr(3))
    return [w1, w2], x


@case(_mlp(), notes="a list of weight matrices")
def mlp_list(weights, x):
    h = x
    for w in weights:
        h = np.tanh(w @ h)
    return np.sum(h * h)


@st.composite
def _nested_tree(draw):
    layers = [{"w": draw(arr((3, 3), -1.0, 1.0)), "b": draw(arr(3, -0.5, 0.5))} for _ in range(2)]
    return {"layers": layers, "scale": draw(POS)}, draw(arr(3))


@case(_nested_tree(), notes="nested dict/list/dict with a float leaf")
def nested_params(params, x):
    h = x
    for p in params["layers"]:
        h = layer(p["w"], p["b"], h)
    return params["scale"] * np.sum(h ** 2)


@st.composite
def _int_leaf_tree(draw):
    return {"w": draw(arr(3)), "steps": draw(st.integers(1, 4)), "c": draw(X)}, draw(arr(3))


@case(_int_leaf_tree(), autograd_ok=False,
      notes="an int leaf inside the pytree gets a zero gradient (autograd refuses int leaves)")
def int_leaf_tree(params, x):
    h = x
    for i in range(params["steps"]):
        h = np.tanh(params["w"] * h + params["c"])
    return np.sum(h)


@case(args(X, arr(3), X), argnums=(0, 2), notes="argnums skipping an argument")
def argnums_skip(a, v, c):
    return a * np.sum(v ** 2) + c * a * a + math.sin(c)


@case(args(st.tuples(X, st.lists(X, min_size=2, max_size=2))), notes="a tuple holding a float and a list")
def tuple_with_list(p):
    x, ys = p
    return x * ys[0] + ys[1] ** 2 + x * x


# ============================================================================ integrators and recurrences
section("integrators")


@st.composite
def _leapfrog(draw, max_n=30):
    n = draw(st.integers(1, 5))
    return draw(arr(n, -1.0, 1.0)), draw(arr(n, -1.0, 1.0)), draw(STEP), draw(st.integers(0, max_n))


@case(_leapfrog(), argnums=(0, 1, 2), notes="pendulum leapfrog; energy at the end")
def leapfrog_energy(x, v, dt, n):
    for i in range(n):
        v = v + 0.5 * dt * force(x)
        x = x + dt * v
        v = v + 0.5 * dt * force(x)
    return np.sum(0.5 * v * v - np.cos(x))


@case(_leapfrog(), argnums=(0, 1), autograd_ok=False, mutates=True,
      notes="symplectic Euler updating its arguments in place")
def leapfrog_inplace(x, v, dt, n):
    for i in range(n):
        v += dt * force(x)
        x += dt * v
    return np.sum(x * x + v * v)


@case(_leapfrog(), argnums=(0, 1), notes="spring leapfrog with a keyword helper")
def leapfrog_spring(x, v, dt, n):
    for i in range(n):
        v = v + dt * spring(x, k=2.0)
        x = x + dt * v
    return np.sum(x ** 2) + np.sum(v ** 2) * 0.5


@st.composite
def _rnn(draw):
    params = {"W": draw(arr((3, 3), -0.8, 0.8)), "U": draw(arr((3, 2), -1.0, 1.0)),
              "b": draw(arr(3, -0.5, 0.5))}
    xs = draw(arr((draw(st.integers(1, 6)), 2)))
    return params, xs


@case(_rnn(), notes="a tanh RNN cell over a sequence")
def rnn_loss(params, xs):
    h = np.zeros(3)
    for x in xs:
        h = np.tanh(params["W"] @ h + params["U"] @ x + params["b"])
    return np.sum(h * h)


@case(args(floats(0.05, 0.9), floats(0.5, 3.0), st.integers(0, 40)), argnums=(0, 1),
      notes="Euler steps of logistic growth")
def logistic_growth(p, r, n):
    dt = 0.05
    for i in range(n):
        p = p + dt * r * p * (1.0 - p)
    return p


@case(args(X, floats(0.05, 0.2), st.integers(0, 10)), argnums=(0, 1), notes="RK4 for y' = -y + sin(y)")
def rk4_scalar(y, h, n):
    for i in range(n):
        k1 = -y + math.sin(y)
        k2 = -(y + 0.5 * h * k1) + math.sin(y + 0.5 * h * k1)
        k3 = -(y + 0.5 * h * k2) + math.sin(y + 0.5 * h * k2)
        k4 = -(y + h * k3) + math.sin(y + h * k3)
        y = y + h / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
    return y


@case(args(vec(-1.0, 1.0), st.integers(0, 20)), notes="a recurrence on an array (roll, sin) read through a global array")
def array_recurrence(x, n):
    for i in range(n):
        x = 0.9 * x + 0.1 * np.roll(x, 1) + 0.05 * np.sin(x)
    return np.sum(x * WEIGHTS[0]) + np.sum(x ** 2)


@st.composite
def _gmm(draw):
    k = draw(st.integers(1, 3))
    params = {"means": draw(arr(k, -2.0, 2.0)), "log_sigmas": draw(arr(k, -0.5, 0.5)),
              "logits": draw(arr(k, -1.0, 1.0))}
    return params, draw(arr(draw(st.integers(1, 6)), -3.0, 3.0))


@case(_gmm(), notes="Gaussian-mixture log-likelihood with logsumexp by hand")
def gmm_loglik(params, data):
    means = params["means"]
    log_sigmas = params["log_sigmas"]
    logits = params["logits"]
    m = np.max(logits)
    log_w = logits - (m + np.log(np.sum(np.exp(logits - m))))
    total = 0.0
    for x in data:
        z = (x - means) / np.exp(log_sigmas)
        comp = log_w - 0.5 * z * z - log_sigmas - 0.5 * math.log(2.0 * math.pi)
        mc = np.max(comp)
        total = total + mc + np.log(np.sum(np.exp(comp - mc)))
    return total


@case(args(floats(0.5, 2.0), st.integers(0, 50)), notes="50-step scalar recurrence (logistic map, stable regime)")
def logistic_map(x, n):
    r = 2.5
    x = x * 0.3
    for i in range(n):
        x = r * x * (1.0 - x)
    return x


# ============================================================================ vector outputs (vjp / jacobian)
section("vector outputs")


@case((POS, X), argnums=(0, 1), output="tuple")
def polar_to_cart(r, th):
    return r * math.cos(th), r * math.sin(th)


@case((vec(),), output="array")
def softmax(a):
    e = np.exp(a - np.max(a))
    return e / np.sum(e)


@case((arr(3), arr((2, 3))), argnums=(0, 1), output="array")
def tanh_layer(x, w):
    return np.tanh(w @ x + 0.5)


@case((vec(), X), argnums=(0, 1), output="tuple", notes="returns (array, float)")
def array_and_scalar(a, s):
    return a * s + np.sin(a), np.sum(a ** 2) * s


@case((X,), output="array", notes="float to array")
def float_to_array(x):
    return np.array([x, x * x, math.sin(x)]) * np.arange(1.0, 4.0)


@case((vec(),), output="array")
def cumsum_sin(a):
    return np.cumsum(np.sin(a)) * 2.0


@case(args(vec(-1.0, 1.0), st.integers(0, 10)), output="array", notes="array state of a loop")
def loop_state_out(x, n):
    for i in range(n):
        x = x + 0.1 * np.tanh(np.roll(x, 1))
    return x


@case(_leapfrog(10), argnums=(0, 1), output="tuple", notes="leapfrog returning (x, v)")
def leapfrog_state(x, v, dt, n):
    for i in range(n):
        v = v + 0.5 * dt * force(x)
        x = x + dt * v
        v = v + 0.5 * dt * force(x)
    return x, v


# ============================================================================ comparison helpers for tests/test_grad.py


def is_float_leaf(v):
    if isinstance(v, (bool, np.bool_)):
        return False
    if isinstance(v, (float, np.floating)):
        return True
    return isinstance(v, np.ndarray) and np.issubdtype(v.dtype, np.floating)


def leaves(tree):
    """The leaves of a pytree (tuples, lists, dicts in key order), depth first."""
    if isinstance(tree, (tuple, list)):
        return [x for t in tree for x in leaves(t)]
    if isinstance(tree, dict):
        return [x for k in tree for x in leaves(tree[k])]
    return [tree]


def to_vector(tree):
    """The float leaves of `tree` flattened into one float64 vector (ints skipped)."""
    parts = [np.ravel(np.asarray(v, dtype=np.float64)) for v in leaves(tree) if is_float_leaf(v)]
    return np.concatenate(parts) if parts else np.zeros(0)


def from_vector(tree, vec_):
    """`tree` with its float leaves replaced by consecutive pieces of `vec_` (types kept:
    float stays float, np.float64 stays np.float64, arrays keep shape and dtype)."""
    pos = [0]

    def go(t):
        if isinstance(t, tuple):
            return tuple(go(x) for x in t)
        if isinstance(t, list):
            return [go(x) for x in t]
        if isinstance(t, dict):
            return {k: go(t[k]) for k in t}
        if not is_float_leaf(t):
            return t
        if isinstance(t, np.ndarray):
            n = t.size
            out = vec_[pos[0]:pos[0] + n].reshape(t.shape).astype(t.dtype)
            pos[0] += n
            return out
        v = vec_[pos[0]]
        pos[0] += 1
        return type(t)(v) if isinstance(t, np.floating) else float(v)

    out = go(tree)
    assert pos[0] == len(vec_), (pos[0], len(vec_))
    return out


def copy_tree(tree):
    if isinstance(tree, tuple):
        return tuple(copy_tree(x) for x in tree)
    if isinstance(tree, list):
        return [copy_tree(x) for x in tree]
    if isinstance(tree, dict):
        return {k: copy_tree(v) for k, v in tree.items()}
    if isinstance(tree, np.ndarray):
        return tree.copy()
    return tree


def scalar_of(y):
    return float(np.asarray(y, dtype=np.float64))


def fd_gradient(phi, x, rel=1e-6):
    """Central differences of the scalar function phi at the float64 vector x (full)."""
    g = np.zeros_like(x)
    for i in range(x.size):
        h = rel * max(1.0, abs(x[i]))
        xp = x.copy()
        xm = x.copy()
        xp[i] += h
        xm[i] -= h
        g[i] = (phi(xp) - phi(xm)) / (xp[i] - xm[i])
    return g


def fd_directional(phi, x, u, rel=1e-6):
    """Central difference of phi at x in direction u (d/dt phi(x + t u) at 0)."""
    h = rel * max(1.0, float(np.max(np.abs(x)))) / max(1e-300, float(np.max(np.abs(u))))
    return (phi(x + h * u) - phi(x - h * u)) / (2.0 * h)


def selected(args_, argnums):
    return tuple(args_[i] for i in argnums)


def substitute(args_, argnums, values):
    out = list(args_)
    for i, v in zip(argnums, values):
        out[i] = v
    return tuple(out)


def scalarized(case, args_, argnums, weights=None):
    """phi(vec) = f(*args with the float leaves of args[argnums] taken from vec), as a
    float (weighted by the cotangent `weights` for vector outputs). Every call runs on
    fresh copies (the function may change its arguments in place)."""
    sel = selected(args_, argnums)

    def phi(v):
        new = from_vector(sel, v)
        out = case.f(*copy_tree(substitute(args_, argnums, new)))
        if weights is None:
            return scalar_of(out)
        return float(np.dot(to_vector(out), to_vector(weights)))

    return phi, to_vector(sel)


# --------------------------------------------------------------------------- the autograd patch


def _math_shim():
    import autograd.numpy as anp
    shim = types.SimpleNamespace(
        sin=anp.sin, cos=anp.cos, tan=anp.tan, exp=anp.exp, log=anp.log, sqrt=anp.sqrt,
        tanh=anp.tanh, sinh=anp.sinh, cosh=anp.cosh, atan=anp.arctan, atan2=anp.arctan2,
        hypot=lambda a, b: anp.sqrt(a * a + b * b), log1p=anp.log1p, expm1=anp.expm1,
        log10=anp.log10, log2=anp.log2, pow=lambda a, b: a ** b, fabs=anp.abs,
        pi=math.pi, e=math.e)
    return shim


def autograd_version(f):
    """f with its globals patched for autograd: `np` is autograd.numpy, `math` a shim over
    it, and every function defined in this module (helpers, closures made by factories)
    re-created over the same patched globals, so calls into them are traced too."""
    import autograd.numpy as anp
    base = f.__globals__
    g = dict(base)
    g["np"] = anp
    g["math"] = _math_shim()

    def patch(fn):
        new = types.FunctionType(fn.__code__, g, fn.__name__, fn.__defaults__, fn.__closure__)
        new.__kwdefaults__ = fn.__kwdefaults__
        return new

    for name, value in base.items():
        if isinstance(value, types.FunctionType) and value.__globals__ is base and value.__module__ == __name__:
            g[name] = patch(value)
    return patch(f)


def autograd_grad(case, args_, argnums=None):
    """autograd's gradient of the case at args_, as a tuple over `argnums`."""
    import autograd
    argnums = case.argnums_tuple if argnums is None else argnums
    fa = autograd_version(case.f)
    g = autograd.grad(fa, argnums if len(argnums) > 1 else argnums[0])(*copy_tree(args_))
    return g if len(argnums) > 1 else (g,)


def autograd_vjp(case, args_, ct, argnums):
    import autograd
    from autograd.builtins import tuple as ag_tuple
    fa = autograd_version(case.f)
    if case.output == "tuple":  # autograd needs a boxed tuple to trace through
        inner = fa
        fa = lambda *a: ag_tuple(inner(*a))
    outs = []
    for i in argnums:
        vjp_fn, _ = autograd.make_vjp(fa, i)(*copy_tree(args_))
        outs.append(vjp_fn(ct))
    return tuple(outs)


assert len(CASES) >= 85, len(CASES)
