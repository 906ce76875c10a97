"""bytrev on device arrays, without a device: every corpus function that takes arrays runs
on `DeviceArray` (tests/device_array.py), which refuses NumPy conversions and NumPy arrays
mixed in as CuPy does. Forward results, restored arguments and gradients must equal the
NumPy run's and stay device arrays. The same tests run on real CuPy arrays when CuPy and
a GPU are present (`-m gpu`); elsewhere they are skipped.
"""
import types

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bytrev
import device_array
import grad_corpus
from corpus import CORPUS, clone
from device_array import DeviceArray


def _cupy():
    """CuPy, when it is installed and sees a GPU; else None."""
    try:
        import cupy
        return cupy if cupy.cuda.runtime.getDeviceCount() > 0 else None
    except Exception:  # not installed, no driver, no device
        return None


class Backend:
    """Moving pytrees of float arrays to a device array type and back."""

    def __init__(self, name):
        self.name = name

    def to_device(self, tree):
        if self.name == "stand-in":
            return device_array.to_device(tree)
        return device_array.map_leaves(tree, lambda v: _cupy().asarray(v) if isinstance(
            v, np.ndarray) and v.dtype.kind == "f" else v)

    def on_host(self, tree):
        """`tree` with NumPy leaves, checking that every array leaf was a device array
        (nothing leaked to NumPy)."""
        for leaf in grad_corpus.leaves(tree):
            if isinstance(leaf, np.ndarray) and leaf.ndim:
                raise AssertionError(f"a NumPy array where a device array was expected: "
                                     f"{leaf!r}")
        if self.name == "stand-in":
            return device_array.to_host(tree)
        return device_array.map_leaves(
            tree, lambda v: v.get() if hasattr(v, "__cuda_array_interface__") else v)


BACKENDS = [pytest.param(Backend("stand-in"), id="stand-in"),
            pytest.param(Backend("cupy"), id="cupy", marks=[
                pytest.mark.gpu,
                pytest.mark.skipif(_cupy() is None, reason="CuPy or a GPU is missing")])]

def runs_on_device(backend, f, args):
    """Whether calling `f` directly on device arrays works: functions that build NumPy
    arrays themselves (np.zeros(3), np.eye(2), an index array) and use them with their
    arguments fail, as they would with CuPy, and are not bytrev's to run."""
    try:
        f(*backend.to_device(args))
    except TypeError:
        return False
    return True


def has_arrays(tree):
    if isinstance(tree, np.ndarray):
        return tree.dtype.kind == "f"
    if isinstance(tree, (tuple, list)):
        return any(has_arrays(v) for v in tree)
    if isinstance(tree, dict):
        return any(has_arrays(v) for v in tree.values())
    return False


def assert_close(got, want, what):
    got, want = grad_corpus.leaves(got), grad_corpus.leaves(want)
    assert len(got) == len(want), what
    for g, w in zip(got, want):
        if isinstance(w, (str, type(None))):
            assert g == w, what
            continue
        np.testing.assert_allclose(np.asarray(g), np.asarray(w),
                                   rtol=1e-11, atol=1e-12, err_msg=what)


GRAD_CASES = [c for c in grad_corpus.CASES if c.output == "scalar"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", GRAD_CASES, ids=lambda c: c.name)
@settings(max_examples=5, deadline=None)
@given(data=st.data())
def test_gradient_on_device_arrays_equals_numpy(backend, case, data):
    args = data.draw(case.strategy, label="args")
    if not has_arrays(args) or not runs_on_device(backend, case.f, grad_corpus.copy_tree(args)):
        return
    want = bytrev.grad(case.f, argnums=case.argnums)(*grad_corpus.copy_tree(args))
    passed = backend.to_device(args)
    got = bytrev.grad(case.f, argnums=case.argnums)(*passed)
    assert_close(backend.on_host(got), want, "gradient")
    assert_close(backend.on_host(passed), args, "arguments after the gradient")


def ones_tangents(args):
    """A tangent of ones for every float array argument, None for the rest."""
    return tuple(np.ones_like(a) if isinstance(a, np.ndarray) and a.dtype.kind == "f" else None
                 for a in args)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", grad_corpus.CASES, ids=lambda c: c.name)
@settings(max_examples=3, deadline=None)
@given(data=st.data())
def test_forward_mode_on_device_arrays_equals_numpy(backend, case, data):
    args = data.draw(case.strategy, label="args")
    if not has_arrays(args) or not runs_on_device(backend, case.f, grad_corpus.copy_tree(args)):
        return
    want = bytrev.jvp(case.f, grad_corpus.copy_tree(args), ones_tangents(args))
    got = bytrev.jvp(case.f, backend.to_device(args),
                     backend.to_device(ones_tangents(args)))
    assert_close(backend.on_host(got), want, "value and tangent")


ARRAY_HESSIANS = [c for c in GRAD_CASES if isinstance(c.argnums, int)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", ARRAY_HESSIANS, ids=lambda c: c.name)
@settings(max_examples=2, deadline=None)
@given(data=st.data())
def test_hessian_on_device_arrays_equals_numpy(backend, case, data):
    args = data.draw(case.strategy, label="args")
    x = args[case.argnums]
    if not (isinstance(x, np.ndarray) and x.dtype.kind == "f") or \
            not runs_on_device(backend, case.f, grad_corpus.copy_tree(args)):
        return
    want = bytrev.hessian(case.f, case.argnums)(*grad_corpus.copy_tree(args))
    got = bytrev.hessian(case.f, case.argnums)(*backend.to_device(args))
    assert_close(backend.on_host(got), want, "Hessian")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CORPUS, ids=lambda c: c.name)
@settings(max_examples=5, deadline=None)
@given(data=st.data())
def test_forward_and_backward_on_device_arrays(backend, case, data):
    args = data.draw(case.args, label="args")
    if not has_arrays(args) or not runs_on_device(backend, case.func, clone(args)):
        return
    want = case.func(*clone(args))
    passed = backend.to_device(clone(args))
    rev = bytrev.reversible(case.func)
    out, tape = rev.forward(*passed)
    assert_close(backend.on_host(out), want, "forward result")
    restored = rev.backward(out, tape)
    assert_close(backend.on_host(restored), args, "arguments restored by the backward run")


def test_a_numpy_array_next_to_a_device_array_is_refused_by_the_stand_in():
    """The stand-in must refuse what CuPy refuses, or the tests above prove nothing."""
    d = DeviceArray(np.ones(3))
    with pytest.raises(TypeError):
        np.asarray(d)
    with pytest.raises(TypeError):
        d + np.ones(3)
    assert isinstance(np.sum(d * 2.0), DeviceArray)


def via_host_scalars(a, b):
    # float() brings a device scalar to the host: the cotangents flowing back into the
    # `@` and the product are then Python floats, which the rules put back on the device.
    return float(a @ b) * 2.0 + float(np.sum(a * b)) ** 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_host_scalar_cotangents_go_back_to_the_device(backend):
    a, b = np.array([0.5, -1.0, 2.0]), np.array([1.5, 0.25, -0.5])
    want = bytrev.grad(via_host_scalars, argnums=(0, 1))(a, b)
    got = bytrev.grad(via_host_scalars, argnums=(0, 1))(*backend.to_device((a, b)))
    assert_close(backend.on_host(got), want, "gradient")


@pytest.mark.parametrize("n", [1, 50])
def test_a_gradient_brings_only_the_drift_check_to_the_host(n):
    """No device-to-host transfer per step: the only ones are the drift check's two
    scalars per array argument that the backward run restores (x and v here), whatever
    the number of steps."""
    x, v = np.linspace(-1.0, 1.0, 5), np.linspace(0.5, -0.5, 5)
    passed = device_array.to_device((x, v))
    gradient = bytrev.grad(grad_corpus.leapfrog_energy, argnums=(0, 1))
    gradient(*passed, 0.01, n)
    DeviceArray.transfers = 0
    gradient(*passed, 0.01, n)
    assert DeviceArray.transfers == 4


def array_module(x):
    """What cupy.get_array_module returns for NumPy arrays and for the stand-in (whose
    calls go through NumPy's dispatch)."""
    return np


def through_array_module(x, w):
    xp = array_module(x)
    return xp.sum(xp.sin(x) * w) + xp.dot(x, w)


@pytest.mark.parametrize("backend", BACKENDS)
def test_functions_written_with_an_array_module_variable(backend):
    x, w = np.array([0.3, -1.2, 2.0]), np.array([1.5, 0.5, -0.25])
    got = bytrev.grad(through_array_module, argnums=(0, 1))(*backend.to_device((x, w)))
    assert_close(backend.on_host(got), (np.cos(x) * w + w, np.sin(x) + x), "gradient")


cp = device_array.cupy_like


def written_with_cupy_functions(x, w):
    h = cp.tanh(cp.dot(x, w.T)) @ w + cp.roll(x, 1) * cp.sin(x)
    return cp.sum(cp.exp(-h * h)) + cp.linalg.norm(cp.multiply(x, w[0])) + cp.mean(x)


def test_functions_written_with_cupy_functions_use_numpys_rules():
    """cupy.sum, the ufunc named 'cupy_tanh', cupy.linalg.norm, ...: the rules of their
    NumPy twins (the stand-ins are named and placed as CuPy's functions are)."""
    x, w = np.array([0.3, -1.2, 2.0]), np.array([[1.5, 0.5, -0.25], [0.1, 0.2, 0.3]])
    with_numpy = types.FunctionType(written_with_cupy_functions.__code__,
                                    dict(written_with_cupy_functions.__globals__, cp=np))
    want = bytrev.grad(with_numpy, argnums=(0, 1))(x, w)
    got = bytrev.grad(written_with_cupy_functions, argnums=(0, 1))(
        *device_array.to_device((x, w)))
    assert_close(device_array.to_host(got), want, "gradient")
