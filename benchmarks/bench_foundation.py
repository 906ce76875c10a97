"""Foundation benchmarks: the cost of the reversible form against plain CPython.

    python benchmarks/bench_foundation.py [--quick]

Prints a Markdown table: time of calling f directly, of the forward sweep (with tape
recording), of the backward sweep, their ratios, and the tape size; and the time to
lift + analyse + compile a 50-line function (first call, then cached).
Medians of several runs, all in one process.
"""
from __future__ import annotations

import argparse
import statistics
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


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    a = p.parse_args(argv)
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
    return rows


if __name__ == "__main__":
    main()
