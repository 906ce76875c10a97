"""The `bytrev` command: `bytrev demo`, `bytrev show module:function`."""
from __future__ import annotations

import argparse
import importlib
import inspect
import math
import sys
import traceback

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

    say("\n== 3. Derivatives of the branchy loop (n = 20), against central differences\n")
    from . import forward, gradient
    n, h = 20, 1e-5
    first = gradient.grad(branchy)(x0, n)
    _, tangent = forward.jvp(branchy, (x0, n), (1.0, None))
    second = gradient.grad(gradient.grad(branchy))(x0, n)
    say(f"grad (reverse, by running it backwards): {first!r}")
    say(f"jvp (forward, on dual numbers):          {tangent!r}")
    say(f"central differences:                     "
        f"{(branchy(x0 + h, n) - branchy(x0 - h, n)) / (2 * h)!r}")
    say(f"grad(grad) (forward over reverse):       {second!r}")
    say(f"central differences of grad:             "
        f"{(gradient.grad(branchy)(x0 + h, n) - gradient.grad(branchy)(x0 - h, n)) / (2 * h)!r}")
    return 0


def _resolve(target: str, command: str):
    """The object `module:attribute` names, or None after printing why not."""
    module_name, _, attr = target.partition(":")
    if not attr:
        print(f"usage: bytrev {command} module:function", file=sys.stderr)
        return None
    try:
        obj = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        print(f"bytrev {command}: cannot find {target}: {e}", file=sys.stderr)
        return None
    return obj


def show(target: str, out=None) -> int:
    obj = _resolve(target, "show")
    if obj is None:
        return 2
    api.show(obj, file=out or sys.stdout)
    return 0


def check(target: str, inverse: bool, examples: int | None) -> int:
    """Run the property tests of a function: those of its `bytrev.testing.verify` mark,
    or, for a function whose parameters are annotated `float`/`int`, its gradient with
    respect to the floats (and its inverse with --inverse). Exit status 1 on a failure,
    printed with the minimal input hypothesis found."""
    from . import testing
    f = _resolve(target, "check")
    if f is None:
        return 2
    if not hasattr(f, "__bytrev_verify__"):
        hints = {p.name: p.annotation
                 for p in inspect.signature(f, eval_str=True).parameters.values()}
        kinds = {float: testing.floats(), int: testing.counts()}
        if not hints or any(h not in kinds for h in hints.values()):
            print(f"bytrev check: {target} needs a strategy per parameter: mark it with "
                  "bytrev.testing.verify(...) or annotate its parameters float/int",
                  file=sys.stderr)
            return 2
        testing.verify(grad=[p for p, h in hints.items() if h is float], inverse=inverse,
                       **{p: kinds[h] for p, h in hints.items()})(f)
    if examples is not None:
        f.__bytrev_verify__["max_examples"] = examples
    failed = 0
    for name, test in testing.properties(f).items():
        try:
            test()
        except Exception as e:  # a failed check, or f raising on some input
            failed += 1
            print(f"{target}[{name}]: FAILED", file=sys.stderr)
            # (with hypothesis's notes: the minimal failing input)
            print("".join(traceback.format_exception_only(e)).rstrip(), file=sys.stderr)
        else:
            print(f"{target}[{name}]: passed")
    return 1 if failed else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="bytrev", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="run a built-in example forward and backward")
    p = sub.add_parser("show", help="print the reversible form of module:function")
    p.add_argument("target")
    p = sub.add_parser("check", help="property-test the gradient (and inverse) of "
                                     "module:function against finite differences")
    p.add_argument("target")
    p.add_argument("--inverse", action="store_true",
                   help="also check the inverse (functions without a verify mark)")
    p.add_argument("--examples", type=int, help="hypothesis examples per property")
    args = parser.parse_args(argv)
    sys.path.insert(0, "")
    try:
        if args.command == "demo":
            return demo()
        if args.command == "check":
            return check(args.target, args.inverse, args.examples)
        return show(args.target)
    except BytrevError as e:
        print(f"bytrev: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
