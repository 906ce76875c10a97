"""Gradient benchmarks: bytrev.grad against plain CPython (and autograd, for context).

    python benchmarks/bench_grad.py [--quick] [--only leapfrog|dot|branchy] [--json PATH]

Three workloads, each differentiated with respect to its first argument:

- leapfrog: an anharmonic chain of 1e5 float64 springs, n leapfrog steps, returning the
  final energy-like sum (no tape: the steps are undone by running them backwards);
- dot: `s = s + a[i] * b[i]` in a Python loop over n elements;
- branchy: a scalar loop whose branch must be recorded (1 bit per iteration).

Every measurement runs in a fresh child process (`--one SPEC`), which prints one JSON line:
the median time of f and of the gradient (runs interleaved, f, grad, f, grad, ... so that
a slow spell of this noisy machine hits both alike), the peak memory of the gradient above
its inputs (tracemalloc, which NumPy reports its allocations to; and the RSS high-water
mark), and the error of the gradient against central differences on a small case. The
child has a 16 GiB address-space limit: an autograd run that needs more reports OOM.

Each measurement runs twice, in two children: under glibc's default malloc, which hands
freed large blocks back to the OS and page-faults them in again, and with
MALLOC_MMAP_THRESHOLD_ and MALLOC_TRIM_THRESHOLD_ raised so that freed blocks stay in the
heap (the "no-trim" columns). The full run takes about 45 minutes on the 2-core
development machine (leapfrog at n = 5000: f alone takes over a minute, so it is run
once); --quick takes seconds.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
import warnings
from dataclasses import dataclass, field

import numpy as np

# ----------------------------------------------------------------------------- workloads
# Plain Python/NumPy, shared with the peer benchmarks (benchmarks/workloads.py) and the
# demo (branchy). The last argument of each is the iteration count n.
from workloads import _autograd_version, dot_loop, leapfrog_energy  # noqa: E402  (this folder is on sys.path)

from bytrev.__main__ import branchy  # noqa: E402


@dataclass
class Workload:
    title: str
    function: object
    make_args: object            # (n, size, rng) -> the arguments, n last
    per: str                     # what one of the n iterations is, for the "per ..." column
    sizes: list                  # n values of the full run
    quick_sizes: list            # n values of --quick
    size: int = 0                # array size (leapfrog), full / quick
    quick_size: int = 0
    repeat: dict = field(default_factory=dict)   # n -> runs (default: 7)
    autograd_n: dict = field(default_factory=dict)  # n -> n autograd runs at (None: skipped)
    check: tuple = (20, 8)       # (n, size) of the finite-difference check


WORKLOADS = {
    "leapfrog": Workload(
        title="Anharmonic leapfrog chain, gradient of the final sum(x*x) + sum(v*v) w.r.t. x",
        function=leapfrog_energy,
        make_args=lambda n, size, rng: (rng.standard_normal(size), rng.standard_normal(size),
                                        0.01, n),
        per="step", sizes=[100, 1000, 5000], quick_sizes=[5, 20], size=100_000, quick_size=1000,
        repeat={100: 5, 1000: 3, 5000: 1, 5: 3, 20: 3},
        autograd_n={100: 100, 1000: 1000, 5: 5, 20: 20}),
    "dot": Workload(
        title="Python loop s = s + a[i]*b[i] over float64 arrays of n elements, gradient w.r.t. a",
        function=dot_loop,
        make_args=lambda n, size, rng: (rng.standard_normal(n), rng.standard_normal(n), n),
        per="element", sizes=[1000, 10_000, 30_000], quick_sizes=[100, 1000],
        repeat={1000: 41, 10_000: 21, 30_000: 15, 100: 21},
        autograd_n={1000: 1000, 10_000: 10_000, 30_000: 30_000, 100: 100}, check=(8, 0)),
    "branchy": Workload(
        title="Branchy scalar loop from x0 = 0.3, gradient w.r.t. x0",
        function=branchy,
        make_args=lambda n, size, rng: (0.3, n),
        per="iteration", sizes=[100_000], quick_sizes=[1000],
        repeat={100_000: 21, 1000: 21},
        autograd_n={100_000: 10_000, 1000: 100}, check=(30, 0)),
}

NO_TRIM = {"MALLOC_MMAP_THRESHOLD_": "1000000000", "MALLOC_TRIM_THRESHOLD_": "1000000000"}
MEMORY_LIMIT = 16 << 30        # bytes of address space per child
TIMEOUT_S = 3600               # per child
WARM_N = 2                     # iterations of the warm-up run (small arguments)


def gradient_function(tool, f):
    """The gradient of f with respect to its first argument, by `tool`."""
    if tool == "bytrev":
        import bytrev
        return bytrev.grad(f, argnums=0)
    import autograd
    return autograd.grad(_autograd_version(f, math_too=True), 0)


# ------------------------------------------------------------------- the child process


def timed(fn, *args):
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def proc_status(key):
    """A memory figure of this process from /proc/self/status (Linux), in bytes."""
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith(key + ":"))


def reset_rss_peak():
    """Reset the RSS high-water mark (VmHWM, also what getrusage's ru_maxrss reports) by
    writing 5 to /proc/self/clear_refs, and return the current RSS. Without the reset the
    peak read afterwards is the process's lifetime peak: still right here, since only
    small warm-up runs come before (they keep it close to the current RSS)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass
    return proc_status("VmRSS")


def central_differences(f, args, h=1e-6):
    """d f / d args[0] by central differences, one coordinate at a time."""
    x0 = np.array(args[0], dtype=np.float64)
    as_arg = float if isinstance(args[0], float) else (lambda a: a)
    g = np.empty_like(x0)
    for i in np.ndindex(x0.shape):
        up, down = x0.copy(), x0.copy()
        up[i] += h
        down[i] -= h
        g[i] = (f(as_arg(up), *args[1:]) - f(as_arg(down), *args[1:])) / (2 * h)
    return g


def check_error(w, tool):
    """Max relative error of tool's gradient against central differences, small case."""
    n, size = w.check
    args = w.make_args(n, size, np.random.default_rng(1))
    g = np.asarray(gradient_function(tool, w.function)(*args))
    fd = central_differences(w.function, args)
    return float(np.max(np.abs(g - fd)) / max(float(np.max(np.abs(fd))), 1e-300))


def measure(spec):
    """One measurement: spec = {workload, n, tool, size, repeat, f_per_round, traced}."""
    w = WORKLOADS[spec["workload"]]
    f, n = w.function, spec["n"]
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, hard))
    out = {"check_error": check_error(w, spec["tool"])}
    # Warm-up on small arguments of the same types: bytrev lifts and compiles f's
    # gradient here (once per argument-type signature), and the heap does not grow to
    # the full size's peak before the measured run.
    gradient = gradient_function(spec["tool"], f)
    warm = w.make_args(WARM_N, w.check[1], np.random.default_rng(2))
    f(*warm)
    gradient(*warm)
    args = w.make_args(n, spec["size"], np.random.default_rng(0))
    gc.collect()

    # Rounds of one gradient run and `f_per_round` runs of f; the ratio is the median of
    # the per-round ratios (a slow spell of the machine hits a round's runs alike). The
    # very first full-size run is the gradient's, so that the RSS peak is measured from
    # the state after the inputs and the warm-up.
    rss0 = reset_rss_peak()
    t_grad, t_f, ratios = [], [], []
    for i in range(spec["repeat"]):
        t_grad.append(timed(gradient, *args))
        if i == 0:
            out["rss_peak"] = proc_status("VmHWM") - rss0
        round_f = [timed(f, *args) for _ in range(spec["f_per_round"])]
        t_f += round_f
        ratios.append(t_grad[-1] / statistics.median(round_f))
    out.update(f=statistics.median(t_f), grad=statistics.median(t_grad),
               ratio=statistics.median(ratios), f_runs=t_f, grad_runs=t_grad)

    if spec["traced"]:              # a separate run: tracemalloc slows Python allocations
        gc.collect()
        tracemalloc.start()
        tracemalloc.reset_peak()
        gradient(*args)
        out["traced_peak"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return out


def child(spec_json):
    spec = json.loads(spec_json)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out = measure(spec)
            out["status"] = "ok"
        except MemoryError:
            out = {"status": "OOM"}
        except Exception:
            import traceback
            out = {"status": "error", "error": traceback.format_exc()}
    out["warnings"] = sorted({f"{w.category.__name__}: {w.message}" for w in caught})
    print(json.dumps(out))


# ------------------------------------------------------------------ the parent process


def run_child(spec, env_extra):
    env = dict(os.environ, **env_extra)
    cmd = [sys.executable, os.path.abspath(__file__), "--one", json.dumps(spec)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=spec["timeout"])
    except subprocess.TimeoutExpired:
        return {"status": "timeout"}
    lines = p.stdout.strip().splitlines()
    if p.returncode != 0 or not lines:
        died = "OOM (killed)" if p.returncode in (-9, 137) else f"exit {p.returncode}"
        return {"status": died, "error": p.stderr[-4000:]}
    return json.loads(lines[-1])


def run_workload(name, quick):
    """All measurements of one workload: per n, per tool, both allocator settings in a row."""
    w = WORKLOADS[name]
    results = []
    for n in (w.quick_sizes if quick else w.sizes):
        for tool in ("bytrev", "autograd"):
            run_n = n if tool == "bytrev" else w.autograd_n.get(n)
            row = {"n": n, "tool": tool, "run_n": run_n}
            repeat = w.repeat.get(n, 7)
            if run_n is not None:
                for setting, env in (("default", {}), ("no_trim", NO_TRIM)):
                    spec = {"workload": name, "n": run_n, "tool": tool,
                            "size": w.quick_size if quick else w.size,
                            "repeat": repeat if tool == "bytrev" else min(3, repeat),
                            "f_per_round": 1 if tool == "bytrev" else min(5, repeat),
                            "traced": tool == "bytrev" and setting == "default",
                            "timeout": 120 if quick else TIMEOUT_S}
                    row[setting] = run_child(spec, env)
                    print(f"  {name} n={run_n} {tool} {setting}: {summary(row[setting])}",
                          file=sys.stderr, flush=True)
            results.append(row)
    return results


def summary(r):
    if r.get("status") != "ok":
        return r.get("status")
    return f"f {r['f']:.4g} s, grad {r['grad']:.4g} s ({r['ratio']:.2f}x)"


def seconds(t):
    return f"{t:.2f} s" if t >= 1 else f"{t * 1e3:.2f} ms" if t >= 1e-3 else f"{t * 1e6:.1f} us"


def mib(b):
    return f"{b / 2**20:.1f} MiB" if abs(b) >= 2**20 else f"{b / 2**10:.0f} KiB"


def table(name, results, quick):
    """The Markdown table of one workload, and the lines under it."""
    w = WORKLOADS[name]
    lines = [f"### {w.title}" + (f" (arrays of {w.quick_size if quick else w.size} float64)"
                                  if w.size else ""), "",
             f"| n | | time | / f | per {w.per} | time, no-trim | / f, no-trim "
             "| peak above inputs (tracemalloc) | peak RSS above inputs | peak RSS, no-trim |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    notes, errors = {}, []
    for row in results:
        n, tool, d, nt = row["n"], row["tool"], row.get("default"), row.get("no_trim")
        if tool == "bytrev" and d and d.get("status") == "ok":
            nt_f = seconds(nt["f"]) if nt and nt.get("status") == "ok" else nt and nt.get("status")
            lines.append(f"| {n} | f | {seconds(d['f'])} | | {seconds(d['f'] / n)} | {nt_f} "
                         "| | | | |")
        label = "bytrev.grad" if tool == "bytrev" else "autograd.grad"
        scale = n / row["run_n"] if row["run_n"] else 1
        if scale != 1:
            label += f" (run at n = {row['run_n']}, time x {scale:g})"
        if d is None:
            lines.append(f"| {n} | {label} | skipped | | | | | | | |")
            continue
        cells = []
        for r in (d, nt):
            ok = r.get("status") == "ok"
            cells.append((seconds(r["grad"] * scale), f"{r['ratio']:.1f}x") if ok
                         else (r.get("status"), ""))
            if not ok and r.get("error"):
                errors.append(f"{label}, n = {row['run_n']}: {r.get('error')}")
            if ok:
                notes.setdefault(tool, r["check_error"])
            for msg in r.get("warnings", []):
                errors.append(f"{label}, n = {row['run_n']}: {msg}")
        per = seconds(d["grad"] * scale / n) if d.get("status") == "ok" else ""
        traced = mib(d["traced_peak"]) if "traced_peak" in d else ""
        rss = [mib(r["rss_peak"]) if r.get("status") == "ok" else "" for r in (d, nt)]
        lines.append(f"| {n} | {label} | {cells[0][0]} | {cells[0][1]} | {per} | {cells[1][0]} "
                     f"| {cells[1][1]} | {traced} | {rss[0]} | {rss[1]} |")
    sizes = w.quick_sizes if quick else w.sizes
    runs = ", ".join(f"{w.repeat.get(n, 7)} (n = {n})" for n in sizes)
    check_n, check_size = w.check
    lines += ["", f"Times: medians over gradient runs, {runs}, each beside a run of f (autograd: "
              "3 runs, each beside 5 runs of f, in its own process)."
              " Ratios: medians of the ratios within rounds of interleaved runs."
              " Peaks: of the first full-size gradient run, after a warm-up on small arguments."
              f" Gradient against central differences (n = {check_n}"
              + (f", {check_size} elements" if check_size else "") + "): max relative error "
              + ", ".join(f"{tool} {err:.1e}" for tool, err in notes.items()) + "."]
    lines += [f"- {e}" for e in errors]
    return "\n".join(lines)


def machine_line():
    import bytrev
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or "unknown CPU"
    return (f"Python {platform.python_version()}, NumPy {np.__version__}, bytrev "
            f"{bytrev.__version__}, {os.cpu_count()} CPUs ({cpu}). no-trim: "
            + " ".join(f"{k}={v}" for k, v in NO_TRIM.items()))


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    p.add_argument("--only", choices=sorted(WORKLOADS), action="append",
                   help="run only this workload (may be repeated)")
    p.add_argument("--json", metavar="PATH", help="also write the raw measurements here")
    p.add_argument("--one", metavar="SPEC", help=argparse.SUPPRESS)  # the child process
    a = p.parse_args(argv)
    if a.one:
        return child(a.one)
    names = a.only or list(WORKLOADS)
    results = {}
    for name in names:
        results[name] = run_workload(name, a.quick)
    print(machine_line() + "\n")
    for name in names:
        print(table(name, results[name], a.quick) + "\n")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(results, fh, indent=1)
    return results


if __name__ == "__main__":
    main()
