"""Peer benchmark: bytrev's gradients against autograd, JAX (eager and jitted) and PyTorch.

    python benchmarks/bench_peers.py [--quick] [--only W1 W3 ...] [--tools bytrev,torch,...]
                                     [--all-allocators] [--json PATH] [--out DIR]

Runs the five workloads of benchmarks/workloads.py (W1..W5) at each size of their sweep
with every tool (bytrev, autograd, jax, jax-jit, torch) and writes RESULTS.md,
w1_memory.png and w3_time.png to DIR (default: this folder). A peer that is not installed
is reported as "skipped (not installed)". --quick runs each workload at its tiny size
only, with at most 2 rounds, in seconds, and writes to a fresh temporary folder unless
--out is given (the test suite's smoke test runs it).

Every measurement (workload, size, tool, allocator setting) runs in a fresh child process
(`--one SPEC`) that prints one JSON line with:
- check_error: the tool's gradient at the workload's tiny size against central
  differences (bytrev) or against bytrev's gradient (peers), max absolute difference over
  max absolute value. This is also the warm-up: bytrev lifts and compiles f and the peers
  trace before anything is timed. JAX, eager and jitted, also runs once at the full size
  first (first_call), since it compiles per shape, per static n and, eagerly, per static
  index (W3's first eager call compiles a kernel per element);
- f, grad, ratio: rounds of one gradient run and one run of f, the plain NumPy function
  for every tool so that ratios are comparable, until ROUND_BUDGET_S is spent or
  MAX_ROUNDS are done (slow cases run once). Times are medians; ratio is the median of the
  per-round ratios, since a slow spell of the machine hits a round's two runs alike;
- rss_peak: the RSS high-water mark (VmHWM, reset through /proc/self/clear_refs) during
  the first timed gradient run, minus the RSS before it, after imports, inputs and
  warm-up; for bytrev, traced_peak: the tracemalloc peak of a separate run (default
  allocator only, and only where a gradient run takes at most TRACE_MAX_S).
A child gets MEMORY_LIMIT of address space (RLIMIT_AS) and TIMEOUT_S; running out is
reported as "OOM" or "timeout". A tool is not run at a larger size after failing at a
smaller one, nor where its time there (first call and one round) or its peak, scaled
linearly in n, predicts more than PREDICTED_MAX_S (the timeout less a margin for
superlinear growth) or the memory limit.

Allocators: glibc's default malloc hands freed large blocks back to the OS and faults them
in again; "no-trim" raises MALLOC_MMAP_THRESHOLD_ and MALLOC_TRIM_THRESHOLD_ so that they
stay in the heap. bytrev runs under both, the peers under the default only unless
--all-allocators is given: on the 2-core development machine no-trim changes neither f nor
autograd at W1, and would add about a quarter of an hour. The full run takes 35 to 40
minutes there, two thirds of it W1, whose f alone takes over a minute at n = 5000.
"""
from __future__ import annotations

import argparse
import gc
import importlib.metadata
import importlib.util
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import tracemalloc
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from workloads import TOOLS, WORKLOADS, PeerMissing  # noqa: E402

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
NO_TRIM = {"MALLOC_MMAP_THRESHOLD_": "1000000000", "MALLOC_TRIM_THRESHOLD_": "1000000000"}
ALLOCATORS = {"default": {}, "no-trim": NO_TRIM}
MEMORY_LIMIT = 16 << 30          # bytes of address space per child
TIMEOUT_S = 600                  # per child (--quick: QUICK_TIMEOUT_S)
QUICK_TIMEOUT_S = 120
PREDICTED_MAX_S = 400            # a larger size predicted to take longer is not run
ROUND_BUDGET_S = 15              # rounds stop once they have taken this long ...
MAX_ROUNDS = 15                  # ... or after this many (--quick: 2)
TRACE_MAX_S = 20                 # no tracemalloc run for slower gradients
WARM_AT_FULL_SIZE = ("jax", "jax-jit")   # they compile per shape (and static n, index)
MODULE_OF_TOOL = {"bytrev": "bytrev", "autograd": "autograd", "jax": "jax",
                  "jax-jit": "jax", "torch": "torch"}
DISTRIBUTIONS = ("numpy", "bytrev", "autograd", "jax", "jaxlib", "torch")
OOM_MESSAGES = ("out of memory", "can't allocate memory", "cannot allocate memory",
                "resource_exhausted", "bad_alloc")


def looks_like_oom(message):
    return any(m in message.lower() for m in OOM_MESSAGES)


# ----------------------------------------------------------------------- the child process


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def proc_field(path, key):
    """The value of the line "key: value" of a /proc file (Linux), or None."""
    try:
        with open(path) as fh:
            return next((line.split(":", 1)[1].strip() for line in fh if line.startswith(key)),
                        None)
    except OSError:
        return None


def proc_status(key):
    """A memory figure of this process (VmRSS, VmHWM), in bytes."""
    return int(proc_field("/proc/self/status", key).split()[0]) * 1024


def reset_rss_peak():
    """Reset the RSS high-water mark (VmHWM) by writing 5 to /proc/self/clear_refs; return
    the current RSS. Where the reset is refused, the peak read afterwards is the process's
    lifetime peak, the warm-up's included."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass
    return proc_status("VmRSS")


def differentiated(w):
    return w.argnums if isinstance(w.argnums, tuple) else (w.argnums,)


def as_arrays(gradient, w):
    """A gradient as returned by a builder -> a tuple of float64 arrays, one per argument."""
    parts = gradient if isinstance(w.argnums, tuple) else (gradient,)
    return tuple(np.asarray(g, dtype=np.float64) for g in parts)


def central_differences(w, inputs, h=1e-6):
    """The gradient of w.f with respect to its differentiated arguments, coordinate by
    coordinate (a Python float argument stays a float)."""
    grads = []
    for i in differentiated(w):
        x0 = np.asarray(inputs[i], dtype=np.float64)
        g = np.empty_like(x0)
        for k in np.ndindex(x0.shape):
            values = []
            for step in (h, -h):
                x = x0.copy()
                x[k] += step
                args = list(inputs)
                args[i] = float(x) if isinstance(inputs[i], float) else x
                values.append(w.f(*args))
            g[k] = (values[0] - values[1]) / (2 * h)
        grads.append(g)
    return tuple(grads)


def check_error(w, tool, inputs):
    """Max relative error of tool's gradient at inputs: against central differences for
    bytrev, against bytrev's gradient for a peer."""
    got = as_arrays(w.builder(tool)(inputs)(), w)
    ref = (central_differences(w, inputs) if tool == "bytrev"
           else as_arrays(w.bytrev_grad(inputs)(), w))
    scale = max(float(np.max(np.abs(r), initial=0.0)) for r in ref)
    return max(float(np.max(np.abs(g - r), initial=0.0)) for g, r in zip(got, ref)) \
        / max(scale, 1e-300)


def measure(spec):
    """One measurement; spec = {workload, size, dims, tool, max_rounds, budget_s, traced}.
    Returns the figures described in the module docstring."""
    w, tool = WORKLOADS[spec["workload"]], spec["tool"]
    # The check is also the warm-up: bytrev lifts and compiles f, the peers trace, at the
    # tiny size (whose small arrays leave no freed memory in the heap to hide the peak).
    dims = dict(w.tiny)
    tiny = w.make_inputs(dims.pop("size"), seed=1, **dims)
    out = {"check_error": check_error(w, tool, tiny)}
    w.call_f(tiny)()
    inputs = w.make_inputs(spec["size"], **spec["dims"])
    gradient, f = w.builder(tool)(inputs), w.call_f(inputs)
    if tool in WARM_AT_FULL_SIZE:
        out["first_call"] = timed(gradient)
    gc.collect()

    rss_before = reset_rss_peak()
    grad_times, f_times, ratios = [], [], []
    started = time.perf_counter()
    while len(ratios) < spec["max_rounds"]:
        grad_times.append(timed(gradient))
        if len(grad_times) == 1:
            out["rss_peak"] = proc_status("VmHWM") - rss_before
        f_times.append(timed(f))
        ratios.append(grad_times[-1] / f_times[-1])
        spent = time.perf_counter() - started
        if spent + spent / len(ratios) > spec["budget_s"]:   # the next round would overrun
            break
    out.update(f=statistics.median(f_times), grad=statistics.median(grad_times),
               ratio=statistics.median(ratios), rounds=len(ratios))

    if spec["traced"] and out["grad"] <= TRACE_MAX_S:   # separate: tracing slows Python
        gc.collect()
        tracemalloc.start()
        gradient()
        out["traced_peak"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return out


def child(spec_json):
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, hard))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out = {"status": "ok", **measure(json.loads(spec_json))}
        except PeerMissing as e:
            out = {"status": "skipped (not installed)", "error": str(e)}
        except MemoryError:
            out = {"status": "OOM"}
        except Exception as e:
            out = {"status": "OOM" if looks_like_oom(str(e)) else "error",
                   "error": traceback.format_exc()}
    out["warnings"] = sorted({f"{w.category.__name__}: {w.message}" for w in caught})
    print(json.dumps(out))


# ---------------------------------------------------------------------- the parent process


def run_child(spec, allocator, timeout):
    env = {k: v for k, v in os.environ.items() if k not in NO_TRIM}
    env.update(ALLOCATORS[allocator])
    cmd = [sys.executable, os.path.abspath(__file__), "--one", json.dumps(spec)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": "timeout"}
    lines = p.stdout.strip().splitlines()
    if p.returncode == 0 and lines:
        return json.loads(lines[-1])
    oom = p.returncode == -9 or looks_like_oom(p.stderr)     # SIGKILL: the kernel's OOM killer
    return {"status": "OOM" if oom else f"error (exit {p.returncode})",
            "error": p.stderr[-3000:]}


def not_run_reason(tool, previous, size):
    """Why tool is not run at size, given its result at the next smaller size (or None)."""
    if importlib.util.find_spec(MODULE_OF_TOOL[tool]) is None:
        return "skipped (not installed)"
    if previous is None:
        return None
    status, n = previous["status"], previous["size"]
    if status != "ok":
        return status if status.startswith(("skipped", "not run")) \
            else f"not run: {status} at a smaller n (n = {n})"
    scale = size / n
    predicted_s = (previous.get("first_call", 0) + previous["grad"] + previous["f"]) * scale
    if predicted_s > PREDICTED_MAX_S:
        return f"not run: > {PREDICTED_MAX_S} s predicted (~{predicted_s:.0f} s from n = {n})"
    if previous["rss_peak"] * scale > MEMORY_LIMIT:
        return f"not run: OOM predicted (~{size_of(previous['rss_peak'] * scale)} from n = {n})"
    return None


def allocators_for(tool, all_allocators):
    return tuple(ALLOCATORS) if tool == "bytrev" or all_allocators else ("default",)


def run_all(names, tools, quick, all_allocators):
    """Every measurement, in order of workload, size, tool; a list of flat records (the
    child's spec and result)."""
    records = []
    for name in names:
        w = WORKLOADS[name]
        dims = {k: v for k, v in w.tiny.items() if k != "size"} if quick else {}
        previous = {}                                # (tool, allocator) -> record
        for size in ([w.tiny["size"]] if quick else w.sizes):
            for tool in tools:
                for allocator in allocators_for(tool, all_allocators):
                    spec = dict(workload=name, size=size, dims=dims, tool=tool,
                                max_rounds=2 if quick else MAX_ROUNDS,
                                budget_s=1 if quick else ROUND_BUDGET_S,
                                traced=tool == "bytrev" and allocator == "default")
                    reason = not_run_reason(tool, previous.get((tool, allocator)), size)
                    result = {"status": reason} if reason else run_child(
                        spec, allocator, QUICK_TIMEOUT_S if quick else TIMEOUT_S)
                    record = previous[tool, allocator] = dict(spec, allocator=allocator,
                                                              **result)
                    records.append(record)
                    print(f"  {name} n={size} {tool} {allocator}: {brief(record)}",
                          file=sys.stderr, flush=True)
    return records


# ---------------------------------------------------------------------------- the report


def seconds(t):
    return f"{t:.3g} s" if t >= 1 else f"{t * 1e3:.3g} ms" if t >= 1e-3 else f"{t * 1e6:.3g} us"


def size_of(b):
    return (f"{b / 2**30:.1f} GiB" if abs(b) >= 2**30 else f"{b / 2**20:.1f} MiB"
            if abs(b) >= 2**20 else f"{b / 2**10:.0f} KiB")


def ratio_text(r):
    return f"{r['ratio']:.1f}x" if r["ratio"] < 100 else f"{r['ratio']:,.0f}x"


def figures(r):
    """The cells f, gradient, grad / f, peak RSS of one record (blank unless it is ok)."""
    if r is None or r["status"] != "ok":
        return ["", "", "", ""]
    return [seconds(r["f"]), seconds(r["grad"]), ratio_text(r), size_of(r["rss_peak"])]


def brief(r):
    return "f {}, grad {} ({}), peak {}".format(*figures(r)) if r["status"] == "ok" \
        else r["status"]


def by_key(records):
    return {(r["workload"], r["size"], r["tool"], r["allocator"]): r for r in records}


def machine_line():
    cpu = proc_field("/proc/cpuinfo", "model name") or platform.processor() or "unknown CPU"
    ram = proc_field("/proc/meminfo", "MemTotal")               # "24567890 kB"
    ram = f", {int(ram.split()[0]) / 2**20:.0f} GiB RAM" if ram else ""

    def version(dist):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"
    return (f"{cpu}, {os.cpu_count()} CPUs{ram}; Python {platform.python_version()}; "
            + ", ".join(f"{dist} {version(dist)}" for dist in DISTRIBUTIONS))


def workload_section(name, records, tools):
    """The Markdown table of one workload and its notes: correctness, JAX's first calls,
    errors and warnings."""
    w, table = WORKLOADS[name], by_key(records)
    mine = [r for r in records if r["workload"] == name]
    lines = [f"### {name}: {w.title}", "",
             "| n | tool | f | gradient | grad / f | peak RSS above inputs | tracemalloc peak "
             "| f, no-trim | gradient, no-trim | grad / f, no-trim | peak RSS, no-trim | status |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for size in sorted({r["size"] for r in mine}):
        for tool in tools:
            d = table[name, size, tool, "default"]
            nt = table.get((name, size, tool, "no-trim"))
            traced = size_of(d["traced_peak"]) if "traced_peak" in d else ""
            status = d["status"] + (f"; no-trim: {nt['status']}"
                                    if nt and nt["status"] != d["status"] else "")
            lines.append(f"| {size} | {tool} | " + " | ".join(
                figures(d) + [traced] + figures(nt) + [status]) + " |")

    errors = {}
    for r in mine:
        if "check_error" in r:
            errors[r["tool"]] = max(errors.get(r["tool"], 0.0), r["check_error"])
    tiny = ", ".join(f"{'n' if k == 'size' else k} = {v}" for k, v in w.tiny.items())
    lines += ["", f"Gradient at the tiny size ({tiny}), max relative error against central "
              "differences (bytrev) or against bytrev's gradient (peers): "
              + (", ".join(f"{tool} {err:.1e}" for tool, err in errors.items()) or "none ran")
              + "."]
    first_calls = [f"{r['tool']} n = {r['size']}"
                   + (f" {r['allocator']}" if r["allocator"] != "default" else "")
                   + f" {seconds(r['first_call'])}" for r in mine if "first_call" in r]
    if first_calls:
        lines.append("First full-size gradient call of JAX (compiling; not in the times "
                     "above): " + ", ".join(first_calls) + ".")
    for r in mine:
        problems = ([r["error"].strip().splitlines()[-1]] if r.get("error") else []) \
            + r.get("warnings", [])
        lines += [f"- {r['tool']}, n = {r['size']}, {r['allocator']}: {p}" for p in problems]
    return "\n".join(lines)


def summary_table(records, names, tools):
    """One row per workload and size, one column per tool: grad / f and peak RSS (default
    allocator), or the tool's status without its details."""
    table = by_key(records)
    lines = ["| workload | n | f (NumPy) | " + " | ".join(tools) + " |",
             "|---|---|---|" + "---|" * len(tools)]
    for name in names:
        for size in sorted({r["size"] for r in records if r["workload"] == name}):
            row = [table[name, size, tool, "default"] for tool in tools]
            f = next((seconds(r["f"]) for r in row if r["status"] == "ok"), "")
            cells = [f"{ratio_text(r)}, {size_of(r['rss_peak'])}" if r["status"] == "ok"
                     else r["status"].split(" (")[0] for r in row]
            lines.append(f"| {name} | {size} | {f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


METHOD = (
    "Each measurement ran in its own child process. Times: medians over rounds of one "
    f"gradient run and one run of f (at most {MAX_ROUNDS} rounds or about {ROUND_BUDGET_S} s, "
    "so slow cases ran once); f is the plain NumPy function for every tool; grad / f is the "
    "median of the per-round ratios. Peak RSS: the high-water mark during the first "
    "timed gradient run minus the RSS before it, after imports, inputs and a warm-up: the "
    "correctness check at the tiny size, and for JAX, eager and jitted, one full-size call, "
    "which compiles (under no-trim, memory that call freed can hide part of its peak). "
    "tracemalloc: bytrev "
    f"only, default allocator, gradients of at most {TRACE_MAX_S} s. Limits per child: "
    f"{MEMORY_LIMIT >> 30} GiB of address space, {TIMEOUT_S} s. A tool is not run at a "
    "larger n after failing at a smaller one, or where its time or peak there, scaled "
    f"linearly, predicts more than {PREDICTED_MAX_S} s or the memory limit. no-trim: "
    + " ".join(f"{k}={v}" for k, v in NO_TRIM.items()) + ".")


def report(records, names, tools, command, allocators_note, elapsed):
    return "\n\n".join(
        ["# Peer benchmark results",
         f"`{command}`, {time.strftime('%Y-%m-%d')}, {elapsed / 60:.1f} minutes. "
         f"{machine_line()}.",
         f"{METHOD} {allocators_note}",
         "## Summary (grad / f, peak RSS above inputs)",
         summary_table(records, names, tools),
         "## Per workload"]
        + [workload_section(name, records, tools) for name in names]) + "\n"


def plot(records, tools, workload, value, ylabel, path, oom_at=None):
    """value(record) against n for one workload, a line per tool (default allocator), on
    log-log axes; with oom_at, a line there marks the memory limit and crosses on it the
    sizes where a tool ran out of memory (or was predicted to)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for tool in tools:
        mine = [r for r in records if r["workload"] == workload and r["tool"] == tool
                and r["allocator"] == "default"]
        ok = [r for r in mine if r["status"] == "ok"]
        ooms = [r for r in mine if "OOM" in r["status"]] if oom_at else []
        label = tool + "".join(
            f" (OOM{' predicted' if 'predicted' in r['status'] else ''} at n = {r['size']})"
            for r in ooms)
        ooms = [r["size"] for r in ooms]
        line, = ax.plot([r["size"] for r in ok], [value(r) for r in ok], "o-", label=label)
        ax.plot(ooms, [oom_at] * len(ooms), "x", color=line.get_color(), ms=10, mew=2)
    if oom_at:
        ax.axhline(oom_at, color="gray", ls=":", lw=1, label="memory limit")
    ax.set(xscale="log", yscale="log", xlabel="n", ylabel=ylabel,
           title=f"{workload}: {WORKLOADS[workload].title}")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_plots(records, tools, out_dir):
    if importlib.util.find_spec("matplotlib") is None:
        print("matplotlib is not installed: no plots", file=sys.stderr)
        return []
    names = {r["workload"] for r in records}
    plots = []
    if "W1" in names:
        plots.append(plot(records, tools, "W1", lambda r: r["rss_peak"] / 2**20,
                          "peak RSS above inputs (MiB)", os.path.join(out_dir, "w1_memory.png"),
                          oom_at=MEMORY_LIMIT / 2**20))
    if "W3" in names:
        plots.append(plot(records, tools, "W3", lambda r: r["grad"], "gradient time (s)",
                          os.path.join(out_dir, "w3_time.png")))
    return plots


# ------------------------------------------------------------------------------------ main


def parse_tools(text):
    tools = [t.strip() for t in text.split(",") if t.strip()]
    unknown = set(tools) - set(TOOLS)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown tools {sorted(unknown)}; choose from {TOOLS}")
    return tools


def main(argv=None):
    p = argparse.ArgumentParser(description="bytrev against autograd, JAX and PyTorch")
    p.add_argument("--quick", action="store_true", help="tiny sizes, seconds (smoke test)")
    p.add_argument("--only", nargs="+", choices=sorted(WORKLOADS), help="these workloads only")
    p.add_argument("--tools", type=parse_tools, default=list(TOOLS),
                   help="comma-separated subset of " + ",".join(TOOLS))
    p.add_argument("--all-allocators", action="store_true",
                   help="run the peers under the no-trim allocator setting too")
    p.add_argument("--json", metavar="PATH", help="also write the raw measurements here")
    p.add_argument("--out", metavar="DIR", help="folder for RESULTS.md and the plots")
    p.add_argument("--one", metavar="SPEC", help=argparse.SUPPRESS)   # the child process
    a = p.parse_args(argv)
    if a.one:
        return child(a.one)

    names = sorted(a.only or WORKLOADS)
    out_dir = a.out or (tempfile.mkdtemp(prefix="bench_peers-") if a.quick else BENCH_DIR)
    os.makedirs(out_dir, exist_ok=True)
    started = time.perf_counter()
    records = run_all(names, a.tools, a.quick, a.all_allocators)
    allocators_note = ("Every tool ran under both allocator settings." if a.all_allocators
                       else "bytrev ran under both allocator settings, the peers under the "
                       "default only (rerun with --all-allocators for both).")
    command = " ".join(["python benchmarks/bench_peers.py"] + (sys.argv[1:] if argv is None
                                                                else argv))
    text = report(records, names, a.tools, command, allocators_note,
                  time.perf_counter() - started)
    with open(os.path.join(out_dir, "RESULTS.md"), "w") as fh:
        fh.write(text)
    plots = write_plots(records, a.tools, out_dir)
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"machine": machine_line(), "records": records}, fh, indent=1)
    print(text)
    print(f"wrote {', '.join([os.path.join(out_dir, 'RESULTS.md')] + plots)}", file=sys.stderr)
    return records


if __name__ == "__main__":
    main()
