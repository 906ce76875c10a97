"""GPU benchmark: the anharmonic leapfrog chain (W1) on the device, bytrev on CuPy arrays
against PyTorch CUDA autograd and JAX on the GPU.

    python benchmarks/bench_gpu.py [--sizes 100,1000,10000] [--elements 10000000]
    python benchmarks/bench_gpu.py --cpu --elements 1000 --sizes 5,10   # smoke test

Each (tool, n) runs in its own child process and reports the time of the forward pass
(the plain function on CuPy arrays), of the gradient, their ratio, and the peak device
memory above the inputs: for bytrev the CuPy memory pool's bytes after the gradient (the
pool keeps freed blocks, so it holds its high-water mark; it is emptied first), for PyTorch
`torch.cuda.max_memory_allocated`, for JAX the device's `peak_bytes_in_use`. Targets
(issue 5): bytrev's peak flat in n and at most 5x the inputs; gradient at most 4x the
forward. `--cpu` runs the same code on NumPy, PyTorch CPU and JAX CPU without memory
figures, so that the script is tested where there is no GPU.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from workloads import PeerMissing, leapfrog_energy, w1_inputs  # noqa: E402

TOOLS = ("bytrev", "torch", "jax-jit")
TIMEOUT_S = 1800
ROUNDS = 3


def synchronize(tool, cpu):
    if cpu:
        return
    if tool == "bytrev":
        import cupy
        cupy.cuda.Device().synchronize()
    elif tool == "torch":
        import torch
        torch.cuda.synchronize()


def prepare(tool, inputs, cpu):
    """(forward, gradient, input bytes, reset_peak, peak): zero-argument callables on the
    tool's device arrays."""
    x, v, dt, n = inputs
    nbytes = x.nbytes + v.nbytes
    if tool == "bytrev":
        import bytrev
        xp = np if cpu else __import__("cupy")
        xd, vd = xp.asarray(x), xp.asarray(v)
        gradient = bytrev.grad(leapfrog_energy)
        pool = None if cpu else xp.get_default_memory_pool()
        return (lambda: leapfrog_energy(xd, vd, dt, n), lambda: gradient(xd, vd, dt, n), nbytes,
                (lambda: pool.free_all_blocks()) if pool else (lambda: None),
                (lambda: pool.total_bytes()) if pool else (lambda: None))
    if tool == "torch":
        try:
            import torch
        except ImportError as e:
            raise PeerMissing(str(e)) from e
        device = "cpu" if cpu else "cuda"
        xt, vt = torch.tensor(x, device=device), torch.tensor(v, device=device)

        def force(x):
            return -(x - 0.5 * (torch.roll(x, 1) + torch.roll(x, -1)) + 0.1 * x ** 3)

        def energy(x, v):
            for _ in range(n):
                v = v + 0.5 * dt * force(x)
                x = x + dt * v
                v = v + 0.5 * dt * force(x)
            return torch.sum(x * x) + torch.sum(v * v)

        def gradient():
            leaf = xt.clone().requires_grad_()
            return torch.autograd.grad(energy(leaf, vt), (leaf,))[0]
        if cpu:
            return lambda: energy(xt, vt), gradient, nbytes, lambda: None, lambda: None
        return (lambda: energy(xt, vt), gradient, nbytes, torch.cuda.reset_peak_memory_stats,
                torch.cuda.max_memory_allocated)
    try:
        import jax
    except ImportError as e:
        raise PeerMissing(str(e)) from e
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    device = jax.devices("cpu" if cpu else "gpu")[0]
    xj, vj = jax.device_put(x, device), jax.device_put(v, device)

    def force(x):
        return -(x - 0.5 * (jnp.roll(x, 1) + jnp.roll(x, -1)) + 0.1 * x ** 3)

    def energy(x, v):
        def step(i, xv):
            x, v = xv
            v = v + 0.5 * dt * force(x)
            x = x + dt * v
            return x, v + 0.5 * dt * force(x)
        x, v = jax.lax.fori_loop(0, n, step, (x, v))
        return jnp.sum(x * x) + jnp.sum(v * v)
    forward, gradient = jax.jit(energy), jax.jit(jax.grad(energy))
    stats = (lambda: None) if cpu else (lambda: device.memory_stats()["peak_bytes_in_use"])
    return (lambda: forward(xj, vj).block_until_ready(),
            lambda: gradient(xj, vj).block_until_ready(), nbytes, lambda: None, stats)


def measure(spec):
    tool, cpu = spec["tool"], spec["cpu"]
    inputs = w1_inputs(spec["n"], M=spec["elements"])
    forward, gradient, nbytes, reset_peak, peak = prepare(tool, inputs, cpu)
    forward(), gradient()  # compile (JAX), warm the pools
    synchronize(tool, cpu)
    reset_peak()
    times_f, times_g = [], []
    for _ in range(spec["rounds"]):
        for fn, times in ((gradient, times_g), (forward, times_f)):
            t0 = time.perf_counter()
            fn()
            synchronize(tool, cpu)
            times.append(time.perf_counter() - t0)
    high = peak()
    return {"status": "ok", "f": statistics.median(times_f), "grad": statistics.median(times_g),
            "peak_above_inputs": None if high is None else high - nbytes, "inputs": nbytes}


def child(spec_json):
    try:
        out = measure(json.loads(spec_json))
    except PeerMissing as e:
        out = {"status": f"skipped (not installed: {e})"}
    except Exception as e:  # out of device memory, a driver error: reported, not raised
        out = {"status": "OOM" if "out of memory" in str(e).lower() else "error",
               "error": f"{type(e).__name__}: {e}"}
    print(json.dumps(out))


def run(spec):
    cmd = [sys.executable, os.path.abspath(__file__), "--one", json.dumps(spec)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"status": "timeout"}
    lines = p.stdout.strip().splitlines()
    return json.loads(lines[-1]) if lines else {"status": f"error (exit {p.returncode})",
                                                "error": p.stderr[-2000:]}


def mib(b):
    return "n/a" if b is None else f"{b / 2**20:.0f} MiB"


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", default="100,1000,10000")
    p.add_argument("--elements", type=int, default=10_000_000)
    p.add_argument("--cpu", action="store_true", help="NumPy/CPU instead of the GPU (smoke test)")
    p.add_argument("--one", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.one:
        return child(a.one)
    if not a.cpu:
        try:
            import cupy
            cupy.cuda.runtime.getDeviceCount()
        except Exception as e:
            print(f"no GPU with CuPy here ({type(e).__name__}): nothing measured")
            return []
    rows = []
    print(f"| tool | n | forward | gradient | gradient / forward | peak above inputs "
          f"({a.elements} float64 x 2 = {mib(16 * a.elements)}) | status |")
    print("|---|---|---|---|---|---|---|")
    for tool in TOOLS:
        for n in (int(s) for s in a.sizes.split(",")):
            r = run({"tool": tool, "n": n, "elements": a.elements, "cpu": a.cpu,
                     "rounds": 1 if n >= 10_000 else ROUNDS})
            rows.append(dict(r, tool=tool, n=n))
            if r["status"] == "ok":
                print(f"| {tool} | {n} | {r['f'] * 1e3:.1f} ms | {r['grad'] * 1e3:.1f} ms "
                      f"| {r['grad'] / r['f']:.2f}x | {mib(r['peak_above_inputs'])} | ok |",
                      flush=True)
            else:
                print(f"| {tool} | {n} | | | | | {r['status']} {r.get('error', '')[:80]} |",
                      flush=True)
    return rows


if __name__ == "__main__":
    main()
