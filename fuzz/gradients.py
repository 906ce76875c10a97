"""Differential fuzzing of bytrev's gradients on generated programs.

    python fuzz/gradients.py [START] [COUNT]

Each seed gives a random well-formed function `f(x, a, y, n)` (floats x and y, a float64
array a of length 3 or 4, a small int n; on some seeds also a dict `p = {"w": array,
"b": float}`) and the helper functions it calls, defined in the same source. Bodies are
built from float and array arithmetic, smooth `math`/NumPy calls kept bounded (`math.exp`
of a sine, `np.sqrt(1.0 + a ** 2)`, `np.tanh`, ...), reductions (`np.sum`, `np.mean`,
`np.dot`, `@`), functions with kinks (`abs`, `max`, `np.maximum`), overwrites, augmented
assignments, swaps, in-place array updates (`a[i] += v`, `a[0:2] *= c`, `a *= c`),
nested `if`/`else` on values, `for` loops over `range(n)`, arrays and `enumerate`,
counted `while` loops, `break`/`continue`, early returns and calls to the helpers. Every
program returns a scalar (a float, a NumPy float64 or a 0-d array). Constructs left out
because of known bugs are marked "Known bug" below.

Oracles, on three random inputs per program, two differentiated with respect to every
float argument and one with respect to one of them or a few in random order:

* `bytrev.value_and_grad(f, argnums)` returns exactly the value (and type) that calling
  `f` on copies of the inputs returns, and gradients shaped like their arguments;
* each element of the gradient agrees with central finite differences in float64.
  Near a kink or a branch boundary the difference quotient is meaningless: an element
  whose quotients at steps h and h/4 disagree with each other is skipped as non-smooth;
* the arguments are unchanged after the call (arrays and dict items changed in place
  come back to within 1e-9, relative, and with their types);
* building and running the gradient raises only `UnsupportedError`, never crashes.

Outcomes, one per input: "passed", "partly skipped: non-smooth" (the other elements
passed), "skipped: f fails" (f itself raises, overflows or grows past 1e6 there), or
"unsupported" (bytrev refuses the program, or this use of it: what it refuses can depend
on argnums). Prints each failure with its program and the count of each outcome; exits
1 on any failure.
"""
from __future__ import annotations

import copy
import math
import random
import re
import traceback
import warnings

import numpy as np

import bytrev
from common import Failed, campaign, indent, load

FLOAT_CONSTANTS = ["0.5", "1.5", "-0.75", "0.25", "2.0"]
F_INDICES = ["0", "1", "2", "-1", "i % 3", "n % 3"]
F_LOOPS = ["for i in range(n):", "for i in range(2):", "for t in a:", "for t in np.tanh(a):",
           "for i, t in enumerate(a):", "for t in a[::-1]:", "for i, t in enumerate(b):"]

# Known bug: the backward run decides again what the forward run decided on values, on
# the values as it restored them, with a rounding (s from `return s + x` as
# `result - x`). Where a test ties exactly (`x = s`, then `if s > x:`) or a factor is
# exactly 0 (with s = 0.0, `z = x + y * s` stashes y, as `(z - x) / s` cannot give it
# back), it can decide otherwise: pop an empty stash, undo what never ran, divide by a
# rounding error, or differentiate the other arm. So tests (`if`, conditional
# expressions, np.where) compare with constants that no value of a program equals (sums
# and products of its constants, multiples of 0.25, never make 0.3 or -0.2; the inputs
# are random), and s starts at 0.125, not 0.0.
THRESHOLDS = ["0.3", "-0.2"]

# Expression forms, (weight, templates): {F} stands for a float sub-expression, {A} for an
# array one. Exponentials get bounded arguments, so that no value overflows.
FLOAT_FORMS = [
    (20, ["({F} + {F})", "({F} - {F})", "({F} * {F})"]),
    (8, ["math.sin({F})", "math.cos({F})", "math.tanh({F})", "np.sin({F})", "np.tanh({F})"]),
    (4, ["math.exp(math.sin({F}))", "np.exp(np.tanh({F}))"]),
    (4, ["math.sqrt(1.0 + {F} ** 2)", "math.log(1.0 + {F} ** 2)", "{F} / (1.0 + {F} ** 2)",
         "({F} ** 2)"]),
    (6, ["abs({F})", "max({F}, {F})", "min({F}, {F})"]),  # kinks
    (5, ["({F} if {F} > 0.3 else {F})", "({F} if {F} < -0.2 else {F})"]),
]
REDUCTIONS = (12, ["np.sum({A})", "np.mean({A})", "{A}.sum()", "np.dot({A}, {A})",
                   "({A} @ {A})", "np.sum({A} * {A})", "np.max({A})"])
ARRAY_FORMS = [
    (20, ["({A} + {A})", "({A} - {A})", "({A} * {A})", "({A} * {F})", "({F} - {A})",
          "({A} + {F})"]),
    (12, ["np.sin({A})", "np.cos({A})", "np.tanh({A})"]),
    (5, ["np.exp(np.sin({A}))", "np.sqrt(1.0 + {A} ** 2)", "({A} ** 2)"]),
    (8, ["np.maximum({A}, 0.1)", "np.minimum({A}, {F})", "np.abs({A})",  # kinks
         "np.where({A} > 0.3, {A}, {F})"]),
    (8, ["np.roll({A}, 1)", "{A}[::-1]", "np.cumsum({A})"]),
]
LEAF_CHANCE = {"F": 0.3, "A": 0.35}


class Scope:
    """What generated code may read where it is written: float and array variables,
    the helpers defined so far, index expressions, loop headers, the bound of counted
    loops, and whether it is inside a loop (where values are squashed, so that
    repeating a statement cannot overflow)."""

    def __init__(self, floats, arrays, float_helpers=(), array_helpers=(),
                 indices=("0", "1", "-1"), loops=("for k in range(2):",), count="2"):
        self.floats = list(floats)
        self.arrays = list(arrays)
        self.float_helpers = list(float_helpers)
        self.array_helpers = list(array_helpers)
        self.indices = list(indices)
        self.loops = list(loops)
        self.count = count
        self.in_loop = False

    def looping(self):
        inner = copy.copy(self)
        inner.in_loop = True
        return inner

    def forms(self, kind):
        """The (weight, templates) of the expressions of a kind ("F" or "A") here."""
        if kind == "A":
            helpers = [(6, [f"{g}({{A}}, {{F}})" for g in self.array_helpers])]
            return ARRAY_FORMS + (helpers if self.array_helpers else [])
        helpers = [(6, [f"{h}({{F}}, {{F}})" for h in self.float_helpers])]
        return FLOAT_FORMS + (helpers if self.float_helpers else []) + \
            ([REDUCTIONS] if self.arrays else [])

    def leaf(self, r, kind):
        if kind == "A":
            return r.choice(self.arrays)
        elements = [f"{r.choice(self.arrays)}[{r.choice(self.indices)}]"] if self.arrays else []
        return r.choice(self.floats + FLOAT_CONSTANTS + elements)


def _expression(r, scope, kind, depth=0):
    """An expression of a kind: "F" (a Python float or NumPy float64) or "A" (an array
    of the shape of the array variables)."""
    if depth >= 3 or r.random() < LEAF_CHANCE[kind]:
        return scope.leaf(r, kind)
    weights, templates = zip(*scope.forms(kind))
    template = r.choice(r.choices(templates, weights)[0])
    return re.sub(r"\{([FA])\}", lambda m: _expression(r, scope, m.group(1), depth + 1),
                  template)


def _float(r, scope):
    return _expression(r, scope, "F")


def _array(r, scope):
    return _expression(r, scope, "A")


def _squashed_float(r, scope):
    """A float expression whose value is at most about 1 inside loops."""
    e = _float(r, scope)
    return f"{r.choice(['math.tanh', 'math.sin', 'np.tanh'])}({e})" if scope.in_loop else e


def _squashed_array(r, scope):
    e = _array(r, scope)
    return f"{r.choice(['np.tanh', 'np.sin'])}({e})" if scope.in_loop else e


# Known bug: the analysis undoes `b = a * y`, where it is the last use of the float y,
# by `y = b / a`, which gives back an array of copies of y (it inverts `*`, `+`, ...
# without regard to broadcasting). Until that is fixed, what is assigned an array is
# always a NumPy call, which the analysis does not invert through.
def _assigned_array(r, scope):
    return f"{r.choice(['np.tanh', 'np.sin', 'np.cos'])}({_array(r, scope)})"


def _factor(r, scope):
    """A multiplier for `v *= ...` that keeps loops from growing values."""
    factors = ["0.5", "-0.75", f"math.cos({_float(r, scope)})"]
    return r.choice(factors if scope.in_loop else factors + ["1.5"])


def _stmt(r, scope, depth, returns):
    """One statement (a list of lines); `returns` whether it may return early."""
    c = r.random()
    v = r.choice(scope.floats)
    if depth < 3 and c < 0.1:
        test = f"{_float(r, scope)} > {r.choice(THRESHOLDS)}"
        return ([f"if {test}:"] + indent(_block(r, scope, depth + 1, returns))
                + ["else:"] + indent(_block(r, scope, depth + 1, returns)))
    if depth < 2 and c < 0.17:
        return [r.choice(scope.loops)] + indent(_block(r, scope.looping(), depth + 1, returns))
    if depth < 2 and c < 0.21:
        k = f"k{depth}"
        test = r.choice([f"{k} < {scope.count}", f"{k} < 3 and {_float(r, scope)} < 1.0"])
        return ([f"{k} = 0", f"while {test}:", f"    {k} += 1"]
                + indent(_block(r, scope.looping(), depth + 1, returns)))
    if scope.in_loop and c < 0.25:
        jump = r.choice(["break", "continue"])
        test = f"{_float(r, scope)} > {r.choice(THRESHOLDS)}"
        return r.choice([[jump], [f"if {test}:", f"    {jump}"]])
    if returns and depth > 0 and c < 0.27:
        return [f"return {_float(r, scope)}"]
    if c < 0.34:
        return [f"{v} = {_squashed_float(r, scope)}"]
    if c < 0.4:
        return [f"{v} {r.choice(['+=', '-='])} {_squashed_float(r, scope)}"]
    if c < 0.43:
        return [f"{v} *= {_factor(r, scope)}"]
    if c < 0.48:
        return [f"{v} = {v} * {_factor(r, scope)} + {_squashed_float(r, scope)}"]
    if c < 0.51 and scope.float_helpers:
        return [f"{v} = {r.choice(scope.float_helpers)}({v}, {_squashed_float(r, scope)})"]
    if c < 0.55 and len(scope.floats) > 1:
        p, q = r.sample(scope.floats, 2)
        return [f"{p}, {q} = {q}, {p}"]
    if not scope.arrays:
        return [f"{v} = {_squashed_float(r, scope)}"]
    target = r.choice(scope.arrays)
    if c < 0.63:
        return [f"{target}[{r.choice(scope.indices)}] {r.choice(['+=', '-='])} "
                f"{_squashed_float(r, scope)}"]
    if c < 0.67:
        return [f"{target}[{r.choice(scope.indices)}] = {_squashed_float(r, scope)}"]
    if c < 0.71:
        return [f"{target}[{r.choice(['0:2', '1:', ':'])}] "
                f"{r.choice(['+= ' + _squashed_float(r, scope), '*= ' + _factor(r, scope)])}"]
    if c < 0.75:
        return [f"{target} *= {_factor(r, scope)}"]
    if c < 0.8:
        return [f"{target} {r.choice(['+=', '-='])} {_squashed_array(r, scope)}"]
    if c < 0.85:
        return [f"{target} = {_assigned_array(r, scope)}"]
    if c < 0.86 and {"a", "b"} <= set(scope.arrays):
        # Refused (UnsupportedError) where a or b is differentiated and changed in place;
        # otherwise an update of one that reads the other is undone from a stash.
        return [r.choice(["a, b = b, a", "b = a", "b = a[::-1]", "b = a.reshape(-1)"])]
    return [f"{v} = {_squashed_float(r, scope)}"]


def _block(r, scope, depth, returns, size=(1, 3)):
    out = []
    for _ in range(r.randint(*size)):
        out += _stmt(r, scope, depth, returns)
    return out


def _helpers(r):
    """Source lines of the helpers `f` calls (ordinary differentiable functions, each
    able to call the ones before it) and their names: float helpers `h(u, v)`, array
    helpers `g(c, u)`."""
    lines, float_helpers, array_helpers = [], [], []
    for k in range(r.randint(0, 2)):
        inner = Scope(["u", "v", "w"], [], float_helpers)
        body = ["w = 0.5"] + _block(r, inner, 1, returns=False)
        lines += [f"def h{k}(u, v):"] + indent(body + [f"return {_float(r, inner)}"]) + [""]
        float_helpers.append(f"h{k}")
    if r.random() < 0.4:
        inner = Scope(["u"], ["c"], float_helpers)
        lines += ["def g0(c, u):"] + indent(
            [f"return {_assigned_array(r, inner)} * {_assigned_array(r, inner)}"]) + [""]
        array_helpers.append("g0")
    return lines, float_helpers, array_helpers


def program(seed: int) -> str:
    """The source for `seed`: its helpers, then `f`."""
    r = random.Random(seed)
    with_dict = r.random() < 0.25
    helper_lines, float_helpers, array_helpers = _helpers(r)
    scope = Scope(["x", "y", "z", "s"], ["a", "b"], float_helpers, array_helpers, F_INDICES,
                  F_LOOPS, "n")
    if with_dict:
        scope.floats.append('p["b"]')
        scope.arrays.append('p["w"]')
    body = ["z = 0.5 * x", "s = 0.125", "t = 0.25", "i = 0",
            r.choice(["b = a.copy()", "b = np.tanh(a)", "b = np.tanh(a * y)"])]
    body += _block(r, scope, 0, returns=True, size=(2, 4))
    ending = r.choice(["x * y + z + s", "np.sum(a * a) + np.sum(b)", "x + np.sum(a * b) * y",
                       "s + np.dot(a, b) + z * x"])
    if with_dict:
        ending += ' + p["b"] * np.sum(p["w"] ** 2)'
    result = f"{ending} + {_float(r, scope)}"
    body.append(f"return {result}" if r.random() < 0.9 else f"return np.array({result})")
    params = "x, a, y, n, p" if with_dict else "x, a, y, n"
    return "\n".join(helper_lines + [f"def f({params}):"] + indent(body)) + "\n"


# --------------------------------------------------------------------------- inputs


def _inputs(seed: int, with_dict: bool):
    """Three inputs for the seed's program, each with the argnums to differentiate: all
    float arguments for two, and for the third one of them or a few in random order (a
    gradient sweep is compiled per argnums: two per program keep the campaign fast)."""
    r = random.Random(f"inputs {seed}")
    floats = [0, 1, 2, 4] if with_dict else [0, 1, 2]
    some = r.choice([r.choice(floats), tuple(r.sample(floats, r.randint(1, len(floats))))])
    for argnums in (tuple(floats), tuple(floats), some):
        # Values unrelated to each other and to the program's constants: a kink where
        # two values meet exactly fools the difference quotients at both steps alike.
        size = r.choice([3, 4])
        array = lambda: np.array([r.uniform(-1.5, 1.5) for _ in range(size)])  # noqa: E731
        args = [r.uniform(-1.5, 1.5), array(), r.uniform(-1.5, 1.5), r.randint(0, 3)]
        if with_dict:
            args.append({"w": array(), "b": r.uniform(-1.5, 1.5)})
        yield args, argnums


# --------------------------------------------------------------------------- pytrees


def _element_paths(value, path=()):
    """The paths (tuples of keys) to the float elements of a value (a float, an array, a
    dict of them)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _element_paths(item, path + (key,))
    elif isinstance(value, np.ndarray):
        for k in np.ndindex(value.shape):
            yield path + (k,)
    elif isinstance(value, float):
        yield path


def _at(value, path):
    for key in path:
        value = value[key]
    return value


def _shifted(value, path, delta):
    """A copy of `value` with the element at `path` moved by delta."""
    if not path:
        return value + delta
    moved = copy.deepcopy(value)
    _at(moved, path[:-1])[path[-1]] += delta
    return moved


def _same_structure(g, like) -> bool:
    """Whether a gradient has the structure and types of its argument."""
    if isinstance(like, dict):
        return isinstance(g, dict) and g.keys() == like.keys() and \
            all(_same_structure(g[k], like[k]) for k in like)
    if isinstance(like, np.ndarray):
        return isinstance(g, np.ndarray) and g.shape == like.shape and g.dtype == like.dtype
    return type(g) is float


def _unchanged(before, after) -> bool:
    if isinstance(before, dict):
        return before.keys() == after.keys() and all(_unchanged(before[k], after[k])
                                                     for k in before)
    # Arrays and dict items changed in place come back by floating-point inverses.
    return type(after) is type(before) and np.shape(after) == np.shape(before) and \
        bool(np.allclose(after, before, rtol=1e-9, atol=1e-9 * np.max(np.abs(before))))


# --------------------------------------------------------------------------- oracles

RTOL = 1e-5


class NonSmooth(Exception):
    """The difference quotients at two steps disagree: a kink or a jump lies near."""


def _difference_quotient(f, args, i, path):
    """(the central difference of f along one element of argument i at step h/4, how
    much rounding may be in it), checked against the one at step h: raises NonSmooth
    when they disagree."""
    x = float(_at(args[i], path))
    h = np.finfo(np.float64).eps ** (1 / 3) * max(1.0, abs(x))
    quotients, largest = [], 0.0
    for step in (h, h / 4):
        values = []
        for sign in (1.0, -1.0):
            moved = copy.deepcopy(args)
            moved[i] = _shifted(args[i], path, sign * step)
            values.append(float(f(*moved)))
        largest = max(largest, *map(abs, values))
        quotients.append((values[0] - values[1]) / (2 * step))
    coarse, fine = quotients
    rounding = 256 * np.finfo(np.float64).eps * largest / (h / 4)  # a few hundred ulps of f
    if not _agree(coarse, fine, rounding):
        raise NonSmooth
    return fine, rounding


def _agree(u, v, rounding) -> bool:
    """Whether two derivatives agree: to RTOL relative to a scale of at least 1 (central
    differences are off by about h^2 f''' even where the derivative is 0), plus the
    rounding in a difference quotient."""
    return abs(u - v) <= RTOL * max(1.0, abs(u), abs(v)) + rounding


def check(f, args, argnums):
    """The outcome of the gradient of f at `args` (a label or a `Failed`)."""
    try:
        with np.errstate(all="raise"):
            expected = f(*copy.deepcopy(args))
    except Exception:
        return "skipped: f fails"  # the program itself fails on this input
    if not (np.isfinite(expected) and abs(expected) < 1e6):
        return "skipped: f fails"
    given = copy.deepcopy(args)
    try:
        with warnings.catch_warnings():
            # A drift that matters shows as a gradient unlike the difference quotients.
            warnings.simplefilter("ignore", bytrev.ReversalDriftWarning)
            value, grads = bytrev.value_and_grad(f, argnums=argnums)(*given)
    except bytrev.UnsupportedError:
        return "unsupported"
    except Exception:
        return Failed(f"value_and_grad crashed on {args}, argnums={argnums}:\n"
                      f"{traceback.format_exc()}")
    if not (value == expected and type(value) is type(expected)):
        return Failed(f"value_and_grad gave the value {value!r}, f gave {expected!r} on {args}")
    for k, (before, after) in enumerate(zip(args, given)):
        if not _unchanged(before, after):
            return Failed(f"argument {k} changed: {before!r} became {after!r}")
    nums = argnums if isinstance(argnums, tuple) else (argnums,)
    grads = grads if isinstance(argnums, tuple) else (grads,)
    non_smooth = False
    for i, g in zip(nums, grads):
        if not _same_structure(g, args[i]):
            return Failed(f"the gradient of argument {i}, {g!r}, is not shaped like "
                          f"{args[i]!r} (argnums={argnums}, inputs {args})")
        for path in _element_paths(args[i]):
            try:
                quotient, rounding = _difference_quotient(f, args, i, path)
            except NonSmooth:
                non_smooth = True
                continue
            got = float(_at(g, path))
            if not _agree(got, quotient, rounding):
                return Failed(f"the gradient of argument {i} at {path}: bytrev gave {got!r}, "
                              f"finite differences {quotient!r} (argnums={argnums}, "
                              f"inputs {args})")
    return "partly skipped: non-smooth" if non_smooth else "passed"


def outcomes(seed: int) -> list:
    """The seed's program checked on each of its inputs."""
    src = program(seed)
    try:
        f = load(src, f"<gradients {seed}>", {"math": math, "np": np})
        with_dict = f.__code__.co_argcount == 5
        results = [check(f, args, argnums) for args, argnums in _inputs(seed, with_dict)]
    except Exception:  # raised outside bytrev's calls: a bug in this fuzzer
        results = [Failed(traceback.format_exc())]
    return [Failed(f"seed {seed}: {outcome}\n{src}") if isinstance(outcome, Failed) else outcome
            for outcome in results]


if __name__ == "__main__":
    raise SystemExit(campaign(outcomes, "gradients"))
