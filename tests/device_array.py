"""A stand-in for a GPU array type, so that CPU tests catch what would break on CuPy.

`DeviceArray` behaves as CuPy's ndarray does towards NumPy: NumPy functions and ufuncs
called on it dispatch to it (`__array_function__`, `__array_ufunc__`) and give
`DeviceArray`s back, but it refuses to become a NumPy array implicitly (`np.asarray(d)`
raises TypeError, as `cupy.ndarray.__array__` does) and refuses to be mixed with NumPy
arrays in one operation. Scalars come back to the host only when asked (`float(d)`,
`d.item()`, `bool(d)`), which CuPy allows with a device synchronisation; each such
transfer is counted in `DeviceArray.transfers`.

So a bytrev code path that calls NumPy on a device array's data, or mixes in a NumPy
array, fails here on the CPU instead of on the GPU. Data lives in a private NumPy array.
"""
from __future__ import annotations

import types

import numpy as np


class DeviceArray(np.lib.mixins.NDArrayOperatorsMixin):
    transfers = 0  # device -> host scalar reads so far (float(), item(), bool())

    __slots__ = ("_data",)

    def __init__(self, data):
        self._data = np.asarray(data)

    # ---- the dispatch protocols

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if any(hasattr(type(x), "__array_ufunc__") and
               not isinstance(x, (DeviceArray, np.ndarray, np.generic)) for x in inputs):
            return NotImplemented  # another array type (a dual array): it decides, as NumPy does
        out = kwargs.get("out")
        if out is not None:
            kwargs["out"] = tuple(_unwrap(o) for o in out)
        result = getattr(ufunc, method)(*(_unwrap(x) for x in inputs), **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _wrap(result)

    def __array_function__(self, func, types, args, kwargs):
        if not all(issubclass(t, (DeviceArray, np.ndarray)) for t in types):
            return NotImplemented
        return _wrap(func(*_unwrap(args), **_unwrap(kwargs)))

    def __array__(self, dtype=None, copy=None):
        raise TypeError("implicit conversion of a DeviceArray to a NumPy array is not allowed "
                        "(as for cupy.ndarray); use .get()")

    def get(self):
        """The data on the host (cupy.ndarray.get)."""
        return self._data.copy()

    # ---- host scalars (a synchronisation each on a GPU)

    def _to_host(self):
        DeviceArray.transfers += 1
        return self._data

    def __float__(self):
        return float(self._to_host())

    def __int__(self):
        return int(self._to_host())

    def __bool__(self):
        return bool(self._to_host())

    def __index__(self):
        return self._to_host().__index__()

    def item(self):
        return self._to_host().item()

    def tolist(self):
        return self._to_host().tolist()

    # ---- the ndarray interface, evaluated on the data and wrapped again

    shape = property(lambda self: self._data.shape)
    dtype = property(lambda self: self._data.dtype)
    ndim = property(lambda self: self._data.ndim)
    size = property(lambda self: self._data.size)
    nbytes = property(lambda self: self._data.nbytes)
    flags = property(lambda self: self._data.flags)
    T = property(lambda self: DeviceArray(self._data.T))
    real = property(lambda self: DeviceArray(self._data.real))
    imag = property(lambda self: DeviceArray(self._data.imag))

    def __len__(self):
        return len(self._data)

    def __iter__(self):
        return (_wrap(x) for x in self._data)

    def __getitem__(self, index):
        return _wrap(self._data[_unwrap(index)])

    def __setitem__(self, index, value):
        self._data[_unwrap(index)] = _unwrap(value)

    def __getattr__(self, name):  # methods: x.sum(), x.reshape(...), x.copy(), ...
        method = getattr(self._data, name)
        if not callable(method):
            raise AttributeError(name)
        return lambda *args, **kwargs: _wrap(method(*_unwrap(args), **_unwrap(kwargs)))

    def __repr__(self):
        return f"DeviceArray({self._data!r})"


def map_leaves(tree, leaf):
    """`tree` (tuples, namedtuples, lists, dicts, nested) with `leaf` applied to each leaf."""
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):  # np.linalg.eigh's result
        return type(tree)(*(map_leaves(v, leaf) for v in tree))
    if isinstance(tree, (tuple, list)):
        return type(tree)(map_leaves(v, leaf) for v in tree)
    if isinstance(tree, dict):
        return {k: map_leaves(v, leaf) for k, v in tree.items()}
    return leaf(tree)


def _unwrap_leaf(x):
    """DeviceArray -> its data. A NumPy array in an operation with device arrays is
    refused, as CuPy refuses it."""
    if isinstance(x, DeviceArray):
        return x._data
    if type(x) is np.ndarray and x.ndim > 0:
        raise TypeError("a NumPy array mixed with DeviceArrays (CuPy refuses this: "
                        "move it to the device first)")
    return x


def _wrap_leaf(x):
    """Results back on the device; NumPy scalars become 0-d arrays (CuPy's reductions
    return 0-d arrays, not scalars)."""
    if isinstance(x, (np.ndarray, np.generic)):
        return DeviceArray(np.asarray(x))
    return x


def _unwrap(tree):
    return map_leaves(tree, _unwrap_leaf)


def _wrap(tree):
    return map_leaves(tree, _wrap_leaf)


def to_device(tree):
    """Arrays of a pytree as (copied) DeviceArrays."""
    return map_leaves(tree, lambda v: DeviceArray(v.copy()) if isinstance(v, np.ndarray) else v)


def to_host(tree):
    return map_leaves(tree, lambda v: v.get() if isinstance(v, DeviceArray) else v)


# ----------------------------------------------------------------------------- a CuPy-like module
# `cupy_like.sum`, `cupy_like.tanh`, ...: stand-ins for CuPy's own functions, named and
# placed as CuPy's are (Python functions in a `cupy.` module; ufunc objects named
# 'cupy_<name>'), so that code written with `cp.` functions is exercised on the CPU.


class _CupyUfunc:
    __module__ = "cupy._core._kernel"

    def __init__(self, numpy_ufunc):
        self._ufunc = numpy_ufunc
        self.__name__ = "cupy_" + numpy_ufunc.__name__

    def __call__(self, *args, **kwargs):
        return self._ufunc(*args, **kwargs)


def _cupy_function(numpy_function):
    def function(*args, **kwargs):
        return numpy_function(*args, **kwargs)
    function.__name__ = numpy_function.__name__
    function.__module__ = "cupy._standin"
    return function


cupy_like = types.ModuleType("cupy_like")
for _name in ("sum", "dot", "roll", "mean", "linalg"):
    if _name == "linalg":
        cupy_like.linalg = types.ModuleType("cupy_like.linalg")
        cupy_like.linalg.norm = _cupy_function(np.linalg.norm)
        cupy_like.linalg.norm.__module__ = "cupy.linalg._norms"
    else:
        setattr(cupy_like, _name, _cupy_function(getattr(np, _name)))
for _name in ("sin", "cos", "tanh", "exp", "multiply"):
    setattr(cupy_like, _name, _CupyUfunc(getattr(np, _name)))
