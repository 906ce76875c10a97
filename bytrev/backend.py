"""Array backends: NumPy, and array types NumPy dispatches to (CuPy).

bytrev's generated code and its derivative rules call NumPy functions (`np.sum`,
`np.zeros_like`, ufuncs) on whatever arrays the user passes. For a CuPy array NumPy hands
each such call to CuPy through `__array_function__` / `__array_ufunc__`, so the work stays
on the device. What must not happen is a NumPy array appearing next to a device array
(`np.asarray(x)`, `np.zeros(shape)` without `like=`): CuPy refuses to mix them, or the
data goes to the host. The run-time helpers therefore ask `is_array` ("an array of any
backend") instead of `isinstance(v, np.ndarray)`, and build new arrays with `like=`.

The tests check this on the CPU with a stand-in array type that behaves like CuPy's
(`tests/device_array.py`).
"""
from __future__ import annotations

import numpy as np


def is_array(v) -> bool:
    """Whether `v` is an n-dimensional array of NumPy or of a backend NumPy dispatches
    to (it defines `__array_function__` and has a shape and a dtype); NumPy scalars are
    not arrays."""
    if isinstance(v, np.ndarray):
        return True
    return (hasattr(type(v), "__array_function__") and not isinstance(v, np.generic)
            and hasattr(v, "shape") and hasattr(v, "dtype"))


def is_device_array(v) -> bool:
    """An array of a backend other than NumPy (a CuPy array)."""
    return not isinstance(v, np.ndarray) and is_array(v)


def like(value, reference):
    """`value` (a number or a NumPy array) as an array of `reference`'s backend when
    that is not NumPy; otherwise `value` unchanged."""
    if is_device_array(reference) and not is_device_array(value):
        return np.asarray(value, like=reference)
    return value
