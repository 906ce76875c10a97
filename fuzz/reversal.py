"""Differential fuzzing of the reversible form on generated programs.

    python fuzz/reversal.py [START] [COUNT]

Each seed gives a random well-formed function `f(x, a, y, j)` (floats, an array, an int)
built from assignments, augmented assignments, swaps, item updates, calls to helper
functions, conditional expressions, list comprehensions, nested `if`/`for`/`while` with
`break`/`continue`/`return`. Oracles, on a few inputs each:

* `reversible(f).forward` returns exactly what calling `f` returns;
* `backward(*forward(...))` gives the arguments back (arrays in the same objects);
* when `inverse(f)` exists, it gives `x` back and restores the array;
* building either raises only `UnsupportedError` / `NotInvertibleError`, never crashes.

Prints each failure with its program and the count of each outcome; exits 1 on any
failure.
"""
from __future__ import annotations

import math
import random
import re
import traceback
from fractions import Fraction as F

import numpy as np

import bytrev
from common import Failed, campaign, indent, load


def helper(u, c):
    return u * 1.25 + c


def helper2(u, v):
    return u * v - math.cos(u)


def exact_helper(u, c):
    return u * F(5, 4) + c


def exact_helper2(u, v):
    return u * v - u / 2


VARS = ["x", "y", "z"]


def _index(r):
    return r.choice(["0", "1", "2", "i % 3", "-1", "j"])


def expression(r, depth=0):
    """A random float expression over x, y, z, t and a (also used by fuzz/unsupported.py)."""
    c = r.random()
    if depth > 2 or c < 0.3:
        return r.choice(VARS + ["1.5", "0.25", f"a[{_index(r)}]", "t"])
    sub = lambda: expression(r, depth + 1)  # noqa: E731
    if c < 0.4:
        return f"helper({sub()}, {sub()})"
    if c < 0.45:
        return f"helper2({sub()}, {sub()})"
    if c < 0.5:
        return "a.sum()"
    if c < 0.55:
        return f"({sub()} if {sub()} > 0 else {sub()})"
    return f"({sub()} {r.choice(['+', '-', '*', '+', '-'])} {sub()})"


def _stmt(r, depth, in_loop):
    c = r.random()
    v = r.choice(VARS)
    if depth < 3 and c < 0.12:
        cond = f"{expression(r)} > {r.choice(['0', '1', 'x', 'a[0]'])}"
        return ([f"if {cond}:"] + indent(block(r, depth + 1, in_loop))
                + ["else:"] + indent(block(r, depth + 1, in_loop)))
    if depth < 2 and c < 0.2:
        it = r.choice(["range(3)", "range(j)", "a", "enumerate(a)", "zip(a, a[::-1])", "[x, y]"])
        target = {"enumerate(a)": "i, t", "zip(a, a[::-1])": "t, i"}.get(
            it, "t" if it in ("a", "[x, y]") else "i")
        return [f"for {target} in {it}:"] + indent(block(r, depth + 1, True))
    if depth < 2 and c < 0.25:
        k = f"k{depth}"
        return ([f"{k} = 0", f"while {k} < {r.randint(0, 3)}:", f"    {k} += 1"]
                + indent(block(r, depth + 1, True)))
    if in_loop and c < 0.29:
        return [r.choice(["break", "continue"])]
    if c < 0.31:
        return [f"return {expression(r)}"]
    if c < 0.4:
        return [f"{v} += {expression(r)}"]
    if c < 0.46:
        return [f"a[{_index(r)}] += {expression(r)}"]
    if c < 0.5:
        return [f"a[{_index(r)}] = {expression(r)}"]
    if c < 0.53:
        return [f"a[0:2] *= {r.choice(['2.0', 'x', '0.5'])}"]
    if c < 0.56:
        return [f"a -= {expression(r)}"]
    if c < 0.6:
        p, q = r.sample(VARS, 2)
        return [f"{p}, {q} = {q}, {p}"]
    if c < 0.66:
        return [f"{v} = {v} * {r.choice(['0.5', '2.0', '-1.25', 'x', 'y'])} + {expression(r)}"]
    if c < 0.7:
        return [f"{v} = helper({v}, {expression(r)})"]
    if c < 0.73:
        return [f"b = [e * 2 for e in a if e > {expression(r)}]", f"{v} = {v} + len(b)"]
    if c < 0.76:
        return [f"t = a[{_index(r)}] * 2"]
    return [f"{v} = {expression(r)}"]


def block(r, depth, in_loop):
    """1 to 3 random statements (the source lines, unindented) for a block nested `depth`
    deep, inside a loop or not (also used by fuzz/unsupported.py)."""
    out = []
    for _ in range(r.randint(1, 3)):
        out += _stmt(r, depth, in_loop)
    return out


def program(seed: int, exact: bool = False) -> str:
    """The program for `seed`; with `exact`, its float literals are Fractions, so that
    running it on Fractions has no rounding and every oracle can demand equality."""
    r = random.Random(seed)
    body = (["z = 0.5", "t = 1.0", "i = 0"] + block(r, 0, False)
            + [r.choice(["return x + 2.0 * y + z", "return x"])])
    src = "def f(x, a, y, j):\n" + "\n".join(indent(body)) + "\n"
    if exact:
        src = re.sub(r"(?<![\w.])(\d+\.\d+)", r"F('\1')", src)
    return src


INPUTS = [(0.3, [0.5, -1.0, 2.0], 1.7, 2), (-1.1, [1.5, 0.25, -0.75], 0.4, 0),
          (2.0, [0.0, 1.0, 3.0], -0.6, 3)]


def _inputs(exact):
    for x, a, y, j in INPUTS:
        if exact:
            yield F(str(x)), np.array([F(str(v)) for v in a], dtype=object), F(str(y)), j
        else:
            yield x, np.array(a), y, j


def _close(u, v, tol):
    if tol == 0:
        return np.shape(u) == np.shape(v) and bool(np.all(u == v))
    if isinstance(u, np.ndarray) or isinstance(v, np.ndarray):
        return np.shape(u) == np.shape(v) and np.allclose(u, v, rtol=tol, atol=tol)
    return abs(u - v) <= tol * max(1.0, abs(u))


def check(seed: int, exact: bool = False):
    """The outcome of the seed's program: "passed" (with the inverse checked where it
    exists), "unsupported" (bytrev refused a construct), or a `Failed` saying how.

    On floats, restored values must agree to 1e-9 (float inverses round; a long enough
    chain of cancellations can still exceed that, so float failures need a look). On
    Fractions (`exact`) everything must be equal."""
    tol = 0 if exact else 1e-9
    src = program(seed, exact)
    filename = f"<fuzz {seed}{' exact' if exact else ''}>"
    f = load(src, filename, {"math": math, "F": F, "helper": exact_helper if exact else helper,
                             "helper2": exact_helper2 if exact else helper2})
    try:
        r = bytrev.reversible(f)
    except bytrev.UnsupportedError:
        return "unsupported"
    except Exception:
        return Failed(f"building reversible(f) crashed:\n{traceback.format_exc()}")
    try:
        g = bytrev.inverse(f)
    except bytrev.NotInvertibleError:
        g = None
    except Exception:
        return Failed(f"building inverse(f) crashed:\n{traceback.format_exc()}")
    for x, a, y, j in _inputs(exact):
        try:
            with np.errstate(all="raise"):
                expected = f(x, a.copy(), y, j)
        except Exception:
            continue  # the program itself fails on this input
        if not exact and (not np.all(np.isfinite(expected)) or np.any(np.abs(expected) > 1e6)):
            continue  # rounding would swamp the comparison
        given = a.copy()
        try:
            result, tape = r.forward(x, given, y, j)
            if result != expected:
                return Failed(f"forward gave {result!r}, f gave {expected!r} on {(x, a, y, j)}")
            back = r.backward(result, tape)
            if back[1] is not given:
                return Failed("backward did not restore the array argument in place")
            if not all(_close(o, b, tol) for o, b in zip((x, a, y, j), back)):
                return Failed(f"backward gave {back!r} for {(x, a, y, j)}")
            if g is not None:
                changed = a.copy()
                try:
                    x_back = g(f(x, changed, y, j), changed, y, j)
                except bytrev.NotInvertibleError:
                    continue  # a run-time guard: a factor was zero on this input
                if not (_close(x_back, x, tol) and _close(changed, a, tol)):
                    return Failed(f"inverse gave {x_back!r}, {changed!r} for {(x, a, y, j)}")
        except Exception:
            return Failed(f"{(x, a, y, j)}: {traceback.format_exc()}")
    return "passed, inverse checked" if g is not None else "passed"


def outcomes(seed: int) -> list:
    """The seed's program checked on Fractions and on floats."""
    out = []
    for exact in (True, False):
        outcome = check(seed, exact)
        out.append(Failed(f"seed {seed} on {'Fractions' if exact else 'floats'}: {outcome}\n"
                          f"{program(seed, exact)}")
                   if isinstance(outcome, Failed) else outcome)
    return out


if __name__ == "__main__":
    raise SystemExit(campaign(outcomes, "reversal (each program on Fractions and floats)"))
