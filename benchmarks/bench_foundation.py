"""Foundation benchmarks: the cost of the reversible form against plain CPython.

    python benchmarks/bench_foundation.py [--quick] [--instructions]

Prints a Markdown table: time of calling f directly, of the forward sweep (with tape
recording), of the backward sweep, their ratios, and the tape size; and the time to
lift + analyse + compile a 50-line function (first call, then cached).
Medians of several runs, all in one process.

`--instructions` also counts the instructions CPython executes for f and for the forward
sweep of the branchy loop (valgrind's callgrind, collecting inside `sorted` only, which
calls the measured run as its key): a deterministic ratio where wall clock wanders.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

import bytrev
from bytrev.__main__ import branchy, leapfrog  # the demo's examples


def median_times(fns, repeat):
    """Median time of each function, the runs interleaved (f, forward, backward, f, ...)
    so that a slow spell of the machine hits all of them alike."""
    times = [[] for _ in fns]
    for _ in range(repeat):
        for fn, ts in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
    return [statistics.median(ts) for ts in times]


def workload(name, f, args, repeat):
    r = bytrev.reversible(f)
    result, tape = r.forward(*args)
    t_f, t_fw, t_bw = median_times(
        [lambda: f(*args), lambda: r.forward(*args), lambda: r.backward(result, tape)], repeat)
    return (name, t_f, t_fw, t_bw, tape.nbytes)


FIFTY_LINES = "def fifty(x, y, n):\n" + "".join(
    f"    x = x + {i}.5 * y\n    y = y - 0.25 * x\n" if i % 3 else
    f"    if x > {i}:\n        x = x * 0.5\n" for i in range(24)) + "    return x, y\n"


def compile_time():
    namespace = {}
    exec(compile(FIFTY_LINES, "<fifty>", "exec"), namespace)
    f = namespace["fifty"]
    t0 = time.perf_counter()
    bytrev.reversible(f)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    bytrev.reversible(f)
    warm = time.perf_counter() - t0
    return cold, warm, FIFTY_LINES.count("\n")


def count_one(which, n):
    """The measured run for --instructions, in a process valgrind watches."""
    r = bytrev.reversible(branchy)
    r.forward(0.3, 10), branchy(0.3, 10)  # compiled and warmed up outside the count
    run = {"f": lambda _: branchy(0.3, n), "forward": lambda _: r.forward(0.3, n)}[which]
    sorted([0], key=run)


def instruction_counts(n):
    """(instructions of f, of the forward sweep) for the branchy loop, or None."""
    if shutil.which("valgrind") is None:
        return None
    counts = []
    for which in ("f", "forward"):
        out = subprocess.run(
            ["valgrind", "--tool=callgrind", "--toggle-collect=builtin_sorted",
             "--callgrind-out-file=/dev/null", sys.executable, __file__,
             "--count-one", which, "--n", str(n)],
            capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"},
            check=True)
        counts.append(int(re.search(r"Collected : (\d+)", out.stderr).group(1)))
    return counts


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    p.add_argument("--instructions", action="store_true",
                   help="also count instructions of the branchy loop under valgrind")
    p.add_argument("--count-one", choices=("f", "forward"), help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, default=100_000, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.count_one:
        return count_one(a.count_one, a.n)
    n_scalar, m, steps, repeat = (1000, 1000, 5, 3) if a.quick else (100_000, 100_000, 100, 15)
    rng = np.random.default_rng(0)
    rows = [  # the scalar loop takes milliseconds: more runs steady its median
        workload(f"branchy scalar loop, n={n_scalar}", branchy, (0.3, n_scalar), 5 * repeat),
        workload(f"leapfrog, {m} float64, {steps} steps", leapfrog,
                 (rng.standard_normal(m), rng.standard_normal(m), 0.01, steps), repeat),
    ]
    print(f"Python {sys.version.split()[0]}, NumPy {np.__version__}, bytrev {bytrev.__version__}\n")
    print("| workload | f | forward (tape) | forward / f | backward | backward / forward | tape |")
    print("|---|---|---|---|---|---|---|")
    for name, t_f, t_fw, t_bw, nbytes in rows:
        print(f"| {name} | {t_f * 1e3:.2f} ms | {t_fw * 1e3:.2f} ms | {t_fw / t_f:.2f}x "
              f"| {t_bw * 1e3:.2f} ms | {t_bw / t_fw:.2f}x | {nbytes / 1024:.1f} KiB |")
    cold, warm, lines = compile_time()
    print(f"\nlift + analysis + compilation of a {lines}-line function: {cold * 1e3:.1f} ms "
          f"(cached afterwards: {warm * 1e6:.1f} us)")
    if a.instructions:
        counts = instruction_counts(n_scalar)
        if counts is None:
            print("\ninstruction counts: valgrind not found")
        else:
            print(f"\nbranchy loop, instructions: f {counts[0]:,}, forward {counts[1]:,} "
                  f"({counts[1] / counts[0]:.3f}x)")
    return rows


if __name__ == "__main__":
    main()
