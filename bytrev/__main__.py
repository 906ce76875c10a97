"""The `bytrev` command: `bytrev demo`, `bytrev show module:function`."""
from __future__ import annotations

import argparse
import importlib
import math
import sys

import numpy as np

from . import api
from .errors import BytrevError


def branchy(x, n):
    """A scalar loop whose branch cannot be recomputed: 1 bit per iteration, and the
    `x > 0.5` arm stashes x (its update has no inverse)."""
    for i in range(n):
        if x > 0.5:
            x = x * 0.7 + 0.1 * math.sin(x)
        else:
            x = x * 1.3 + 0.05
    return x


def leapfrog(x, v, dt, n):
    """Coupled anharmonic springs, leapfrog steps: fully reversible, empty tape."""
    for step in range(n):
        v = v - 0.5 * dt * (x - 0.5 * (np.roll(x, 1) + np.roll(x, -1)) + 0.1 * x ** 3)
        x = x + dt * v
        v = v - 0.5 * dt * (x - 0.5 * (np.roll(x, 1) + np.roll(x, -1)) + 0.1 * x ** 3)
    return x, v


def demo(out=None) -> int:
    out = out or sys.stdout

    def say(*a):
        print(*a, file=out)

    say("== 1. A branchy scalar loop, run forward and backward\n")
    api.show(branchy, file=out)
    r = api.reversible(branchy)
    x0, n = 0.3, 100_000
    y, tape = r.forward(x0, n)
    (x_back, n_back) = r.backward(y, tape)
    say(f"\nforward: branchy({x0}, {n}) = {y!r}  (identical to calling it: {y == branchy(x0, n)})")
    say(f"tape: {tape.nbits} bits, {tape.ncounts} trip counts, {tape.nstashed} stashed values, "
        f"{tape.nbytes / 1024:.1f} KiB")
    for line, row in tape.breakdown().items():
        say(f"  line {line}: {row['bits']} bits, {row['stashed']} stashed, "
            f"{row['nbytes'] / 1024:.1f} KiB  ({'; '.join(row['why'])})")
    say(f"backward: x = {x_back!r}; round-trip error {abs(x_back - x0):.2e}")

    say("\n== 2. A leapfrog integrator on arrays: reversible with an empty tape\n")
    api.show(leapfrog, file=out)
    rng = np.random.default_rng(0)
    x, v = rng.standard_normal(100_000), rng.standard_normal(100_000)
    (xn, vn), tape = api.reversible(leapfrog).forward(x, v, 0.01, 100)
    say(f"\ntape after 100 steps on 1e5-element arrays: {tape.nbytes} bytes")
    g = api.inverse(leapfrog)
    x_back, v_back = g(xn, vn, 0.01, 100)
    err = max(np.max(np.abs(x_back - x)), np.max(np.abs(v_back - v)))
    say(f"inverse(leapfrog)(*leapfrog(x, v, dt, n), dt, n): max round-trip error {err:.2e}")
    return 0


def show(target: str, out=None) -> int:
    module_name, _, attr = target.partition(":")
    if not attr:
        print("usage: bytrev show module:function", file=sys.stderr)
        return 2
    try:
        obj = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        print(f"bytrev show: cannot find {target}: {e}", file=sys.stderr)
        return 2
    api.show(obj, file=out or sys.stdout)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="bytrev", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="run a built-in example forward and backward")
    p = sub.add_parser("show", help="print the reversible form of module:function")
    p.add_argument("target")
    args = parser.parse_args(argv)
    sys.path.insert(0, "")
    try:
        if args.command == "demo":
            return demo()
        return show(args.target)
    except BytrevError as e:
        print(f"bytrev: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
