"""The five workloads of the peer benchmark (issue 4), each written once.

Every workload has
- `make_inputs(size, seed=0, **dims)`: the positional arguments of the plain function, as a
  tuple (float64 NumPy arrays, Python floats and ints). `size` is the parameter the
  benchmark sweeps (the step count n for W1, W2, W3; the number of points N for W4; the
  sequence length for W5); `dims` overrides the fixed dimensions (tests use tiny ones);
- the plain NumPy/Python function a user would write. bytrev differentiates *this*
  function, unchanged;
- `ARGNUMS`: the arguments differentiated;
- builders `bytrev_grad(inputs)`, `autograd_grad(inputs)`, `jax_grad(inputs, jit)` and
  `torch_grad(inputs)`, each returning a zero-argument callable that computes the gradient
  and returns it as NumPy (a float for W2, an array for one argument, a tuple of arrays for
  several), so that a harness can time it. The peers' versions are what a user of that
  tool would write: autograd.numpy; jax.numpy eagerly (`jit=False`, Python loops as in the
  NumPy code) or under `jax.jit` (`jit=True`, loops as `lax.fori_loop`/`lax.scan` and
  branches as `lax.cond`, because a jitted Python loop unrolls every step into the
  program); torch float64 on the CPU with autograd. The inputs are converted to the peer's
  arrays once, when the callable is built; the callable includes making fresh leaves that
  require grad (torch) and waiting for the result (JAX).

Peers are imported inside the builders; a peer that is not installed raises `PeerMissing`
(the harness reports the tool as skipped). JAX is switched to float64 with
`jax.config.update("jax_enable_x64", True)`.

`WORKLOADS` maps "W1".."W5" to a `Workload` record holding all of the above.
"""
from __future__ import annotations

import math
import types
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from bytrev.__main__ import branchy


class PeerMissing(RuntimeError):
    """A peer AD tool (autograd, jax, torch) is not installed."""


def _import_autograd():
    try:
        import autograd
        import autograd.numpy as anp
    except ImportError as e:
        raise PeerMissing(f"autograd is not installed ({e})") from e
    return autograd, anp


def _autograd_version(f, math_too=False):
    """`f`, and the functions of its module it calls, running on autograd.numpy: autograd
    differentiates the very source the other tools run (`math_too`: `math.sin` and the like
    become autograd's, which accept its boxed values)."""
    _, anp = _import_autograd()
    namespace = dict(f.__globals__, np=anp, **({"math": anp} if math_too else {}))

    done = set()

    def rebind(func):
        for name in func.__code__.co_names:
            value = f.__globals__.get(name)
            if isinstance(value, types.FunctionType) and value.__module__ == f.__module__ \
                    and name not in done:
                done.add(name)
                namespace[name] = rebind(value)
        return types.FunctionType(func.__code__, namespace, func.__name__, func.__defaults__)

    return rebind(f)


def _import_jax():
    try:
        import jax
    except ImportError as e:
        raise PeerMissing(f"jax is not installed ({e})") from e
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    return jax, jnp


def _import_torch():
    try:
        import torch
    except ImportError as e:
        raise PeerMissing(f"torch is not installed ({e})") from e
    return torch


def _bytrev_grad(f, argnums):
    def build(inputs):
        import bytrev
        g = bytrev.grad(f, argnums=argnums)
        return lambda: g(*inputs)
    return build


def _jax_out(g, argnums):
    """JAX result -> NumPy, after waiting for it."""
    if isinstance(argnums, tuple):
        return tuple(np.asarray(x.block_until_ready()) for x in g)
    return np.asarray(g.block_until_ready())


# =============================================================================== W1
# Anharmonic leapfrog chain: M springs, n leapfrog steps, gradient of the final energy-like
# sum with respect to the initial positions.


def force(x):
    return -(x - 0.5 * (np.roll(x, 1) + np.roll(x, -1)) + 0.1 * x ** 3)


def leapfrog_energy(x, v, dt, n):
    for i in range(n):
        v = v + 0.5 * dt * force(x)
        x = x + dt * v
        v = v + 0.5 * dt * force(x)
    return np.sum(x * x) + np.sum(v * v)


def w1_inputs(size, seed=0, M=100_000, dt=0.01):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(M), rng.standard_normal(M), dt, int(size)


def w1_autograd(inputs):
    autograd, _ = _import_autograd()
    g = autograd.grad(_autograd_version(leapfrog_energy))
    return lambda: g(*inputs)


def w1_jax(inputs, jit):
    jax, jnp = _import_jax()
    x, v, dt, n = inputs
    x, v = jnp.asarray(x), jnp.asarray(v)

    def force(x):
        return -(x - 0.5 * (jnp.roll(x, 1) + jnp.roll(x, -1)) + 0.1 * x ** 3)

    if jit:
        def leapfrog_energy(x, v, dt, n):
            def step(i, xv):
                x, v = xv
                v = v + 0.5 * dt * force(x)
                x = x + dt * v
                v = v + 0.5 * dt * force(x)
                return x, v
            x, v = jax.lax.fori_loop(0, n, step, (x, v))
            return jnp.sum(x * x) + jnp.sum(v * v)
        g = jax.jit(jax.grad(leapfrog_energy), static_argnums=(3,))
    else:
        def leapfrog_energy(x, v, dt, n):
            for i in range(n):
                v = v + 0.5 * dt * force(x)
                x = x + dt * v
                v = v + 0.5 * dt * force(x)
            return jnp.sum(x * x) + jnp.sum(v * v)
        g = jax.grad(leapfrog_energy)
    return lambda: _jax_out(g(x, v, dt, n), 0)


def w1_torch(inputs):
    torch = _import_torch()
    x, v, dt, n = inputs

    def force(x):
        return -(x - 0.5 * (torch.roll(x, 1) + torch.roll(x, -1)) + 0.1 * x ** 3)

    def leapfrog_energy(x, v, dt, n):
        for i in range(n):
            v = v + 0.5 * dt * force(x)
            x = x + dt * v
            v = v + 0.5 * dt * force(x)
        return torch.sum(x * x) + torch.sum(v * v)

    vt = torch.from_numpy(v)

    def run():
        xt = torch.from_numpy(x).requires_grad_()
        (gx,) = torch.autograd.grad(leapfrog_energy(xt, vt, dt, n), (xt,))
        return gx.numpy()
    return run


# =============================================================================== W2
# `branchy` (bytrev.__main__, the README's example): a scalar loop on Python floats whose
# branch depends on the value. Gradient with respect to the starting x.


def w2_inputs(size, seed=0):
    rng = np.random.default_rng(seed)
    return float(rng.uniform(0.2, 0.8)), int(size)


def w2_autograd(inputs):
    autograd, _ = _import_autograd()
    g = autograd.grad(_autograd_version(branchy, math_too=True))  # its math.sin → anp.sin
    return lambda: float(g(*inputs))


def w2_jax(inputs, jit):
    jax, jnp = _import_jax()
    x, n = inputs
    if jit:
        def branchy(x, n):
            def step(i, x):
                return jax.lax.cond(x > 0.5,
                                    lambda x: x * 0.7 + 0.1 * jnp.sin(x),
                                    lambda x: x * 1.3 + 0.05, x)
            return jax.lax.fori_loop(0, n, step, x)
        g = jax.jit(jax.grad(branchy), static_argnums=(1,))
    else:
        def branchy(x, n):
            for i in range(n):
                if x > 0.5:
                    x = x * 0.7 + 0.1 * jnp.sin(x)
                else:
                    x = x * 1.3 + 0.05
            return x
        g = jax.grad(branchy)
    return lambda: float(g(x, n))


def w2_torch(inputs):
    torch = _import_torch()
    x0, n = inputs

    def branchy(x, n):
        for i in range(n):
            if x > 0.5:
                x = x * 0.7 + 0.1 * torch.sin(x)
            else:
                x = x * 1.3 + 0.05
        return x

    def run():
        x = torch.tensor(x0, dtype=torch.float64, requires_grad=True)
        (gx,) = torch.autograd.grad(branchy(x, n), (x,))
        return float(gx)
    return run


# =============================================================================== W3
# A dot product as an indexing loop. Gradient with respect to a.


def dot_loop(a, b, n):
    s = 0.0
    for i in range(n):
        s = s + a[i] * b[i]
    return s


def w3_inputs(size, seed=0):
    rng = np.random.default_rng(seed)
    n = int(size)
    return rng.standard_normal(n), rng.standard_normal(n), n


def w3_autograd(inputs):
    autograd, _ = _import_autograd()
    g = autograd.grad(_autograd_version(dot_loop))
    return lambda: g(*inputs)


def w3_jax(inputs, jit):
    jax, jnp = _import_jax()
    a, b, n = inputs
    a, b = jnp.asarray(a), jnp.asarray(b)
    if jit:
        def dot_loop(a, b, n):
            return jax.lax.fori_loop(0, n, lambda i, s: s + a[i] * b[i], 0.0)
        g = jax.jit(jax.grad(dot_loop), static_argnums=(2,))
    else:
        def dot_loop(a, b, n):
            s = 0.0
            for i in range(n):
                s = s + a[i] * b[i]
            return s
        g = jax.grad(dot_loop)
    return lambda: _jax_out(g(a, b, n), 0)


def w3_torch(inputs):
    torch = _import_torch()
    a, b, n = inputs

    def dot_loop(a, b, n):
        s = 0.0
        for i in range(n):
            s = s + a[i] * b[i]
        return s

    bt = torch.from_numpy(b)

    def run():
        at = torch.from_numpy(a).requires_grad_()
        (ga,) = torch.autograd.grad(dot_loop(at, bt, n), (at,))
        return ga.numpy()
    return run


# =============================================================================== W4
# ADBench's Gaussian mixture model objective (gmm_objective of ADBench's Python modules):
# K components in D dimensions, N points, each component's inverse covariance factor
# Q = diag(exp(icf[k, :D])) + L, L strictly lower triangular, filled column by column from
# icf[k, D:]; a Wishart prior on Q. Gradient with respect to (alphas, means, icf).
# Vectorized over K as ADBench's numpy/autograd/PyTorch references are (they build
# xcentered with a comprehension over the N points and L column by column; here that is
# broadcasting and one gather through a constant index). Every tool runs the same algorithm;
# logsumexp is the max-shifted np version for NumPy and autograd, the library's own for JAX
# and PyTorch. The multigammaln constant is computed with math.lgamma.


def lower_triangle_index(d):
    """(d, d) integers into [0, icf[:, d:]]: 0 above and on the diagonal, 1 + p at the
    strictly lower entry that icf[:, d + p] fills (column-major order, as ADBench)."""
    idx = np.zeros((d, d), dtype=np.int64)
    p = 1
    for j in range(d):
        for i in range(j + 1, d):
            idx[i, j] = p
            p += 1
    return idx


def log_gamma_distrib(a, p):
    """log of the multivariate gamma function (scipy.special.multigammaln)."""
    out = 0.25 * p * (p - 1) * math.log(math.pi)
    for j in range(1, p + 1):
        out = out + math.lgamma(a + 0.5 * (1 - j))
    return out


def logsumexp(x, axis=None):
    mx = np.max(x, axis=axis, keepdims=True)
    return np.log(np.sum(np.exp(x - mx), axis=axis)) + np.squeeze(mx, axis=axis)


def log_wishart_prior(p, wishart_gamma, wishart_m, sum_qs, Qdiags, icf):
    n = p + wishart_m + 1
    k = icf.shape[0]
    out = np.sum(0.5 * wishart_gamma * wishart_gamma
                 * (np.sum(Qdiags ** 2, axis=1) + np.sum(icf[:, p:] ** 2, axis=1))
                 - wishart_m * sum_qs)
    C = n * p * (math.log(wishart_gamma) - 0.5 * math.log(2)) - log_gamma_distrib(0.5 * n, p)
    return out - k * C


def gmm_objective(alphas, means, icf, x, wishart_gamma, wishart_m):
    n, d = x.shape
    k = alphas.shape[0]
    Qdiags = np.exp(icf[:, :d])                              # (K, D)
    sum_qs = np.sum(icf[:, :d], axis=1)                      # (K,)
    padded = np.concatenate([np.zeros((k, 1)), icf[:, d:]], axis=1)
    Ls = padded[:, lower_triangle_index(d)]                  # (K, D, D)
    xcentered = x[:, None, :] - means[None, :, :]            # (N, K, D)
    Lxcentered = Qdiags * xcentered + np.einsum("kij,nkj->nki", Ls, xcentered)
    sqsum_Lxcentered = np.sum(Lxcentered ** 2, axis=2)       # (N, K)
    inner_term = alphas + sum_qs - 0.5 * sqsum_Lxcentered
    slse = np.sum(logsumexp(inner_term, axis=1))
    CONSTANT = -n * d * 0.5 * math.log(2 * math.pi)
    return (CONSTANT + slse - n * logsumexp(alphas)
            + log_wishart_prior(d, wishart_gamma, wishart_m, sum_qs, Qdiags, icf))


def w4_inputs(size, seed=0, D=10, K=25):
    rng = np.random.default_rng(seed)
    N = int(size)
    alphas = rng.standard_normal(K)
    means = rng.random((K, D))
    icf = rng.random((K, D + D * (D - 1) // 2))
    x = rng.random((N, D))
    return alphas, means, icf, x, 1.0, 0


def w4_autograd(inputs):
    autograd, _ = _import_autograd()
    g = autograd.grad(_autograd_version(gmm_objective), argnum=(0, 1, 2))
    return lambda: tuple(g(*inputs))


def w4_jax(inputs, jit):
    jax, jnp = _import_jax()
    from jax.scipy.special import logsumexp
    alphas, means, icf, x, wishart_gamma, wishart_m = inputs
    arrays = tuple(jnp.asarray(a) for a in (alphas, means, icf, x))
    idx = lower_triangle_index(x.shape[1])

    def log_wishart_prior(p, wishart_gamma, wishart_m, sum_qs, Qdiags, icf):
        n = p + wishart_m + 1
        k = icf.shape[0]
        out = jnp.sum(0.5 * wishart_gamma * wishart_gamma
                      * (jnp.sum(Qdiags ** 2, axis=1) + jnp.sum(icf[:, p:] ** 2, axis=1))
                      - wishart_m * sum_qs)
        C = n * p * (math.log(wishart_gamma) - 0.5 * math.log(2)) - log_gamma_distrib(0.5 * n, p)
        return out - k * C

    def gmm_objective(alphas, means, icf, x, wishart_gamma, wishart_m):
        n, d = x.shape
        k = alphas.shape[0]
        Qdiags = jnp.exp(icf[:, :d])
        sum_qs = jnp.sum(icf[:, :d], axis=1)
        padded = jnp.concatenate([jnp.zeros((k, 1)), icf[:, d:]], axis=1)
        Ls = padded[:, idx]
        xcentered = x[:, None, :] - means[None, :, :]
        Lxcentered = Qdiags * xcentered + jnp.einsum("kij,nkj->nki", Ls, xcentered)
        sqsum_Lxcentered = jnp.sum(Lxcentered ** 2, axis=2)
        inner_term = alphas + sum_qs - 0.5 * sqsum_Lxcentered
        slse = jnp.sum(logsumexp(inner_term, axis=1))
        CONSTANT = -n * d * 0.5 * math.log(2 * math.pi)
        return (CONSTANT + slse - n * logsumexp(alphas)
                + log_wishart_prior(d, wishart_gamma, wishart_m, sum_qs, Qdiags, icf))

    g = jax.grad(gmm_objective, argnums=(0, 1, 2))
    if jit:
        g = jax.jit(g, static_argnums=(4, 5))
    return lambda: _jax_out(g(*arrays, wishart_gamma, wishart_m), (0, 1, 2))


def w4_torch(inputs):
    torch = _import_torch()
    alphas, means, icf, x, wishart_gamma, wishart_m = inputs
    idx = torch.from_numpy(lower_triangle_index(x.shape[1]))
    xt = torch.from_numpy(x)

    def log_wishart_prior(p, wishart_gamma, wishart_m, sum_qs, Qdiags, icf):
        n = p + wishart_m + 1
        k = icf.shape[0]
        out = torch.sum(0.5 * wishart_gamma * wishart_gamma
                        * (torch.sum(Qdiags ** 2, 1) + torch.sum(icf[:, p:] ** 2, 1))
                        - wishart_m * sum_qs)
        C = n * p * (math.log(wishart_gamma) - 0.5 * math.log(2)) - log_gamma_distrib(0.5 * n, p)
        return out - k * C

    def gmm_objective(alphas, means, icf, x, wishart_gamma, wishart_m):
        n, d = x.shape
        k = alphas.shape[0]
        Qdiags = torch.exp(icf[:, :d])
        sum_qs = torch.sum(icf[:, :d], 1)
        padded = torch.cat([torch.zeros((k, 1), dtype=icf.dtype), icf[:, d:]], 1)
        Ls = padded[:, idx]
        xcentered = x[:, None, :] - means[None, :, :]
        Lxcentered = Qdiags * xcentered + torch.einsum("kij,nkj->nki", Ls, xcentered)
        sqsum_Lxcentered = torch.sum(Lxcentered ** 2, 2)
        inner_term = alphas + sum_qs - 0.5 * sqsum_Lxcentered
        slse = torch.sum(torch.logsumexp(inner_term, 1))
        CONSTANT = -n * d * 0.5 * math.log(2 * math.pi)
        return (CONSTANT + slse - n * torch.logsumexp(alphas, 0)
                + log_wishart_prior(d, wishart_gamma, wishart_m, sum_qs, Qdiags, icf))

    def run():
        leaves = [torch.from_numpy(a).requires_grad_() for a in (alphas, means, icf)]
        grads = torch.autograd.grad(gmm_objective(*leaves, xt, wishart_gamma, wishart_m), leaves)
        return tuple(g.numpy() for g in grads)
    return run


# =============================================================================== W5
# A tanh RNN: h = tanh(W h + U x_t + b) over a sequence, loss sum(h**2) of the final state.
# Each step overwrites h with a non-invertible value. Gradient with respect to (W, U, b).


def rnn_loss(W, U, b, h, xs):
    for t in range(xs.shape[0]):
        h = np.tanh(W @ h + U @ xs[t] + b)
    return np.sum(h * h)


def w5_inputs(size, seed=0, H=256, X=32):
    rng = np.random.default_rng(seed)
    T = int(size)
    W = rng.standard_normal((H, H)) / math.sqrt(H)
    U = rng.standard_normal((H, X)) / math.sqrt(X)
    b = 0.1 * rng.standard_normal(H)
    h0 = np.zeros(H)
    xs = rng.standard_normal((T, X))
    return W, U, b, h0, xs


def w5_autograd(inputs):
    autograd, _ = _import_autograd()
    g = autograd.grad(_autograd_version(rnn_loss), argnum=(0, 1, 2))
    return lambda: tuple(g(*inputs))


def w5_jax(inputs, jit):
    jax, jnp = _import_jax()
    arrays = tuple(jnp.asarray(a) for a in inputs)
    if jit:
        def rnn_loss(W, U, b, h, xs):
            def step(h, x_t):
                return jnp.tanh(W @ h + U @ x_t + b), None
            h, _ = jax.lax.scan(step, h, xs)
            return jnp.sum(h * h)
        g = jax.jit(jax.grad(rnn_loss, argnums=(0, 1, 2)))
    else:
        def rnn_loss(W, U, b, h, xs):
            for t in range(xs.shape[0]):
                h = jnp.tanh(W @ h + U @ xs[t] + b)
            return jnp.sum(h * h)
        g = jax.grad(rnn_loss, argnums=(0, 1, 2))
    return lambda: _jax_out(g(*arrays), (0, 1, 2))


def w5_torch(inputs):
    torch = _import_torch()
    W, U, b, h0, xs = inputs
    h0t, xst = torch.from_numpy(h0), torch.from_numpy(xs)

    def rnn_loss(W, U, b, h, xs):
        for t in range(xs.shape[0]):
            h = torch.tanh(W @ h + U @ xs[t] + b)
        return torch.sum(h * h)

    def run():
        leaves = [torch.from_numpy(a).requires_grad_() for a in (W, U, b)]
        grads = torch.autograd.grad(rnn_loss(*leaves, h0t, xst), leaves)
        return tuple(g.numpy() for g in grads)
    return run


# =============================================================================== registry


@dataclass
class Workload:
    name: str
    title: str
    f: Callable                      # the plain NumPy/Python function
    argnums: int | tuple
    make_inputs: Callable            # make_inputs(size, seed=0, **dims) -> tuple of args
    sizes: tuple                     # the benchmark's sweep of `size`
    tiny: dict = field(default_factory=dict)   # size and dims for smoke tests
    autograd_grad: Callable = None   # builder(inputs) -> zero-argument callable
    jax_grad: Callable = None        # builder(inputs, jit) -> zero-argument callable
    torch_grad: Callable = None      # builder(inputs) -> zero-argument callable

    def bytrev_grad(self, inputs):
        return _bytrev_grad(self.f, self.argnums)(inputs)

    def call_f(self, inputs):
        """A zero-argument callable running the plain function."""
        return lambda: self.f(*inputs)

    def builder(self, tool):
        """The gradient builder for tool in {"bytrev", "autograd", "jax", "jax-jit",
        "torch"}: builder(inputs) -> zero-argument callable."""
        if tool == "bytrev":
            return self.bytrev_grad
        if tool == "autograd":
            return self.autograd_grad
        if tool == "jax":
            return lambda inputs: self.jax_grad(inputs, jit=False)
        if tool == "jax-jit":
            return lambda inputs: self.jax_grad(inputs, jit=True)
        if tool == "torch":
            return self.torch_grad
        raise ValueError(f"unknown tool {tool!r}")


TOOLS = ("bytrev", "autograd", "jax", "jax-jit", "torch")

WORKLOADS = {
    "W1": Workload("W1", "anharmonic leapfrog chain, M = 1e5, n steps", leapfrog_energy, 0,
                   w1_inputs, (100, 1000, 5000), dict(size=5, M=16),
                   w1_autograd, w1_jax, w1_torch),
    "W2": Workload("W2", "branchy scalar loop on Python floats, n steps", branchy, 0,
                   w2_inputs, (1000, 100_000), dict(size=20),
                   w2_autograd, w2_jax, w2_torch),
    "W3": Workload("W3", "s = s + a[i] * b[i], n elements", dot_loop, 0,
                   w3_inputs, (1000, 10_000, 30_000), dict(size=12),
                   w3_autograd, w3_jax, w3_torch),
    "W4": Workload("W4", "ADBench GMM objective, D = 10, K = 25, N points", gmm_objective,
                   (0, 1, 2), w4_inputs, (10_000,), dict(size=7, D=3, K=4),
                   w4_autograd, w4_jax, w4_torch),
    "W5": Workload("W5", "tanh RNN, hidden 256, sequence length T", rnn_loss, (0, 1, 2),
                   w5_inputs, (100, 1000), dict(size=6, H=5, X=3),
                   w5_autograd, w5_jax, w5_torch),
}
