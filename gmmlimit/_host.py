"""NumPy arrays handed to JAX with as few copies as the CPU allows.

On the CPU ``jax.device_put`` aliases a C-contiguous NumPy array whose data start on a 64-byte
boundary (no copy). NumPy's own allocations are only 16-byte aligned, and for those both
``device_put`` and ``jnp.asarray`` copy, slowly: for (140000, 784) float32 (440 MB) their copies
took 356 to 723 ms and 240 ms or more, where NumPy's copy into an aligned buffer, then aliased,
took 38 to 44 ms (docs/benchmarks.md, "The centred rows handed to JAX in place").
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from ._block_size import default_platform

__all__ = ["aligned_copy", "aligned_empty", "is_aligned", "to_jax"]

_ALIGNMENT = 64


def aligned_empty(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """An uninitialised C-contiguous array whose data start on a 64-byte boundary.

    Args:
        shape: the array's shape.
        dtype: its dtype.

    Returns:
        The array; :func:`to_jax` hands it to JAX without a copy.
    """
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(nbytes + _ALIGNMENT, np.uint8)
    start = (-raw.ctypes.data) % _ALIGNMENT
    return raw[start : start + nbytes].view(dtype).reshape(shape)


def is_aligned(a: np.ndarray) -> bool:
    """Whether ``a`` is C-contiguous with data on a 64-byte boundary (JAX's CPU can alias it)."""
    return bool(a.flags.c_contiguous) and a.ctypes.data % _ALIGNMENT == 0


def aligned_copy(a: np.ndarray) -> jax.Array:
    """A JAX array with ``a``'s values that never shares ``a``'s memory.

    On the CPU: NumPy's copy into a fresh aligned buffer, which JAX then aliases (the buffer is
    this array's alone). Elsewhere: ``jax.device_put``, a transfer to the device.
    """
    if default_platform() != "cpu":
        return jax.device_put(a)
    copy = aligned_empty(a.shape, a.dtype)
    np.copyto(copy, a)
    return jax.device_put(copy)


def to_jax(a: np.ndarray) -> jax.Array:
    """``a`` as a JAX array, sharing its memory where the CPU can (else :func:`aligned_copy`).

    For arrays nobody writes to while the JAX array lives: the scikit-learn estimators' own
    buffers, and rows read within one call.
    """
    if default_platform() == "cpu" and is_aligned(a):
        return jax.device_put(a)
    return aligned_copy(a)
