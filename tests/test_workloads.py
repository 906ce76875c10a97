"""The peer benchmark's workloads (benchmarks/workloads.py) at tiny sizes: bytrev's gradient
of each plain function matches central finite differences, and every installed peer
(autograd, JAX eagerly and jitted, PyTorch) computes the same gradient as bytrev to 1e-8
relative. Peers that are not installed are skipped."""
import pathlib
import sys

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "benchmarks"))
import workloads  # noqa: E402

NAMES = sorted(workloads.WORKLOADS)


def _inputs(name, seed=0):
    w = workloads.WORKLOADS[name]
    dims = dict(w.tiny)
    size = dims.pop("size")
    return w, w.make_inputs(size, seed, **dims)


def _as_tuple(g, argnums):
    return tuple(g) if isinstance(argnums, tuple) else (g,)


_BYTREV = {}


def _bytrev_gradient(name):
    if name not in _BYTREV:
        w, inputs = _inputs(name)
        _BYTREV[name] = _as_tuple(w.bytrev_grad(inputs)(), w.argnums)
    return _BYTREV[name]


@pytest.mark.parametrize("name", NAMES)
def test_bytrev_gradient_matches_finite_differences(name):
    w, inputs = _inputs(name)
    argnums = w.argnums if isinstance(w.argnums, tuple) else (w.argnums,)
    grads = _bytrev_gradient(name)
    rng = np.random.default_rng(1)
    dirs = [rng.standard_normal(np.shape(inputs[i])) for i in argnums]
    for i, g, d in zip(argnums, grads, dirs):
        assert np.shape(g) == np.shape(inputs[i])
        assert np.asarray(g).dtype == np.float64

    def at(t):
        args = list(inputs)
        for i, d in zip(argnums, dirs):
            moved = np.asarray(args[i], dtype=np.float64) + t * d
            args[i] = float(moved) if isinstance(inputs[i], float) else moved
        return w.f(*args)

    eps = 1e-6
    fd = (at(eps) - at(-eps)) / (2 * eps)
    projected = sum(float(np.sum(np.asarray(g) * d)) for g, d in zip(grads, dirs))
    assert projected == pytest.approx(fd, rel=1e-6, abs=1e-7)
    assert isinstance(grads[0], float) == isinstance(inputs[argnums[0]], float)


def _check_peer(name, build):
    w, inputs = _inputs(name)
    ref = _bytrev_gradient(name)
    got = _as_tuple(build(w)(inputs)(), w.argnums)
    assert len(got) == len(ref)
    for g, r in zip(got, ref):
        g, r = np.asarray(g), np.asarray(r)
        assert isinstance(g, np.ndarray) and g.shape == r.shape and g.dtype == np.float64
        assert np.max(np.abs(g - r), initial=0.0) <= 1e-8 * max(np.max(np.abs(r)), 1e-300)


@pytest.mark.parametrize("name", NAMES)
def test_autograd_agrees(name):
    pytest.importorskip("autograd")
    _check_peer(name, lambda w: w.autograd_grad)


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("name", NAMES)
def test_jax_agrees(name, jit):
    pytest.importorskip("jax")
    _check_peer(name, lambda w: (lambda inputs: w.jax_grad(inputs, jit=jit)))


@pytest.mark.parametrize("name", NAMES)
def test_torch_agrees(name):
    pytest.importorskip("torch")
    _check_peer(name, lambda w: w.torch_grad)


def test_missing_peer_raises_peer_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)   # `import torch` raises ImportError
    w, inputs = _inputs("W3")
    with pytest.raises(workloads.PeerMissing, match="torch"):
        w.torch_grad(inputs)


def test_registry_covers_every_tool():
    for w in workloads.WORKLOADS.values():
        for tool in workloads.TOOLS:
            assert callable(w.builder(tool))
        assert w.sizes and w.tiny["size"] < min(w.sizes)
