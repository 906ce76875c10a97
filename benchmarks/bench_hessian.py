"""Hessians: bytrev (forward over reverse) against autograd and JAX.

    python benchmarks/bench_hessian.py [--quick]

The objective is the stress of an embedding of the Petersen graph (10 vertices) in 10
dimensions, 100 parameters: the sum over vertex pairs of (|x_i - x_j| - d_ij)^2 with d
the graph distance. Two ways of writing it, as users do: a loop over the 45 pairs (scalar
Python control flow) and a vectorised one. Each tool computes the full 100 x 100 Hessian
of the same plain-NumPy function (autograd and JAX through their own numpy modules);
the Hessians are checked against each other, and the median times printed as a table
with ratios to autograd. Peers that are not installed are reported as skipped.
"""
from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
import types

import numpy as np

import bytrev

VERTICES, DIMENSIONS = 10, 10


def petersen_distances():
    """Graph distances of the Petersen graph (outer 5-cycle, inner pentagram, spokes)."""
    edges = [(i, (i + 1) % 5) for i in range(5)] + [(5 + i, 5 + (i + 2) % 5) for i in range(5)] \
        + [(i, i + 5) for i in range(5)]
    d = np.full((VERTICES, VERTICES), np.inf)
    np.fill_diagonal(d, 0.0)
    for i, j in edges:
        d[i, j] = d[j, i] = 1.0
    for k, i, j in itertools.product(range(VERTICES), repeat=3):  # Floyd-Warshall
        d[i, j] = min(d[i, j], d[i, k] + d[k, j])
    return d


def stress_loop(x, d):
    X = np.reshape(x, (10, 10))
    s = 0.0
    for i in range(10):
        for j in range(i + 1, 10):
            diff = X[i] - X[j]
            r = np.sqrt(np.sum(diff * diff))
            s = s + (r - d[i, j]) ** 2
    return s


def stress_vectorised(x, d):
    X = np.reshape(x, (10, 10))
    i, j = np.triu_indices(10, 1)
    diff = X[i] - X[j]
    r = np.sqrt(np.sum(diff * diff, axis=1))
    return np.sum((r - d[i, j]) ** 2)


def with_numpy(f, numpy_module):
    """f with its global `np` replaced (autograd.numpy, jax.numpy)."""
    g = dict(f.__globals__, np=numpy_module)
    return types.FunctionType(f.__code__, g, f.__name__, f.__defaults__)


def hessian_makers():
    """{tool: (make(f) -> hessian function of (x, d), or None if not installed)}."""
    makers = {"bytrev": lambda f: bytrev.hessian(f)}
    try:
        import autograd
        import autograd.numpy as anp
        makers["autograd"] = lambda f: autograd.hessian(with_numpy(f, anp))
    except ImportError:
        makers["autograd"] = None
    try:
        import jax
        import jax.numpy as jnp
        jax.config.update("jax_enable_x64", True)
        makers["jax (eager)"] = lambda f: jax.hessian(with_numpy(f, jnp))
        makers["jax (jit)"] = lambda f: jax.jit(jax.hessian(with_numpy(f, jnp)))
    except ImportError:
        makers["jax (eager)"] = makers["jax (jit)"] = None
    return makers


def median_time(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true", help="one timing run each (smoke test)")
    a = p.parse_args(argv)
    repeat = 1 if a.quick else 5
    d = petersen_distances()
    x = np.random.default_rng(0).standard_normal(VERTICES * DIMENSIONS)
    makers = hessian_makers()
    print(f"Python {sys.version.split()[0]}, NumPy {np.__version__}\n")
    print("| objective | tool | Hessian (100 x 100) | / autograd | max |H - H_bytrev| |")
    print("|---|---|---|---|---|")
    records = []
    for f in (stress_loop, stress_vectorised):
        reference, rows = None, []
        for tool, make in makers.items():
            if make is None:
                rows.append((tool, None, None))
                continue
            h = make(f)
            H = np.asarray(h(x, d))  # first call: compiles, traces, caches
            if reference is None:
                reference = H
            assert H.shape == (100, 100) and np.allclose(H, H.T, rtol=1e-9, atol=1e-9)
            rows.append((tool, median_time(lambda: np.asarray(h(x, d)), repeat),
                         float(np.max(np.abs(H - reference)))))
        t_autograd = dict((t, s) for t, s, _ in rows).get("autograd")
        records += [(f.__name__, tool, seconds, err) for tool, seconds, err in rows]
        for tool, seconds, err in rows:
            if seconds is None:
                print(f"| {f.__name__} | {tool} | skipped (not installed) | | |")
                continue
            ratio = f"{seconds / t_autograd:.2f}x" if t_autograd else ""
            print(f"| {f.__name__} | {tool} | {seconds * 1e3:.1f} ms | {ratio} | {err:.1e} |")
    return records


if __name__ == "__main__":
    main()
