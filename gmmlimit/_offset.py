"""An exact translation of data that lie far from the origin relative to their spread.

The E-step forms squared distances as ``|x|^2 - 2 m.x + |m|^2``. For rows far from the origin
relative to their spread (float32 GPS coordinates near (37.7, -122.4) spread over 0.1 degree)
the three terms are ~1e4 and their rounding ~1e-3, larger than the distances between the
rows: labels come out wrong and Lloyd's iterations cycle until ``max_iter``.

A feature whose values all lie within a factor of two of one another (``0 < lo <= x <= hi <= 2
lo``, or ``2 hi <= lo <= x <= hi < 0``) is computed as ``x - lo`` (or ``x - hi``). By Sterbenz's
lemma each such difference is exact, so the computed problem is the original one translated:
labels, responsibilities, distortions and log-likelihoods are those of the data as given, and
the means move by the offset (mapped back with one rounding). Every other feature is computed
as given (its offset is 0): its values span at least half their largest magnitude, so
``|x|^2`` is no more than a few times the squared spread. Data that need no translation (no
such feature) run exactly as before: no copy, the same bits.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._host import aligned_empty
from ._validation import is_traced

__all__ = ["data_offset", "feature_range", "offset_of", "translate", "translated_largest"]

_ROW_WIDTH = 4096
"""Values per row of the view the per-feature extremes are reduced over (see feature_range)."""


def feature_range(X: Any) -> tuple[np.ndarray, np.ndarray]:
    """The (D,) smallest and largest value of each feature of concrete (N, D) data.

    Host data are reduced as rows of about 4096 values (a row-major (N, D) array reduced over
    its first axis runs D values at a time: 34 ms at (1M, 2) float32 against 0.8 ms so);
    device data are reduced on the device.

    Args:
        X: (N, D) concrete data (NumPy, or a JAX array).

    Returns:
        ``(lo, hi)``, two (D,) NumPy arrays in X's dtype.
    """
    host_array = isinstance(X, np.ndarray) or (
        isinstance(X, jax.Array)
        and X.is_fully_addressable
        and all(device.platform == "cpu" for device in X.devices())
    )
    if not host_array:
        return np.asarray(jnp.min(X, axis=0)), np.asarray(jnp.max(X, axis=0))
    host = np.asarray(X)
    n, d = host.shape
    group = max(1, _ROW_WIDTH // d)
    whole = (n // group) * group
    parts_lo, parts_hi = [], []
    if whole:
        rows = host[:whole].reshape(whole // group, group * d)
        parts_lo.append(rows.min(axis=0).reshape(group, d).min(axis=0))
        parts_hi.append(rows.max(axis=0).reshape(group, d).max(axis=0))
    if whole < n:
        parts_lo.append(host[whole:].min(axis=0))
        parts_hi.append(host[whole:].max(axis=0))
    return np.minimum.reduce(parts_lo), np.maximum.reduce(parts_hi)


def data_offset(lo: np.ndarray, hi: np.ndarray) -> np.ndarray | None:
    """The exact offset of each feature from its (D,) extremes; None where every one is 0.

    Args:
        lo: (D,) each feature's smallest value.
        hi: (D,) each feature's largest value.

    Returns:
        (D,) offsets in ``lo``'s dtype: ``lo_d`` where ``0 < lo_d`` and ``hi_d <= 2 lo_d``,
        ``hi_d`` where ``hi_d < 0`` and ``lo_d >= 2 hi_d``, else 0; or None when all are 0.
    """
    lo, hi = np.asarray(lo), np.asarray(hi)
    positive = (lo > 0) & (hi <= 2 * lo)
    negative = (hi < 0) & (lo >= 2 * hi)
    if not (positive.any() or negative.any()):
        return None
    return np.where(positive, lo, np.where(negative, hi, np.zeros_like(lo)))


def translated_largest(
    lo: np.ndarray, hi: np.ndarray, largest: float, offset: np.ndarray | None
) -> float:
    """The largest magnitude of data less ``offset``, from each feature's (D,) extremes.

    Exact: each difference is (:func:`data_offset`). ``largest`` (the data's own largest
    magnitude) is returned when ``offset`` is None.
    """
    if offset is None:
        return largest
    return float(np.max(np.maximum(hi - offset, offset - lo)))


def offset_of(X: Any) -> np.ndarray | None:
    """:func:`data_offset` of concrete data; None for traced data (computed as given)."""
    if is_traced(X):
        return None
    return data_offset(*feature_range(X))


def translate(X: Any, offset: np.ndarray | None) -> Any:
    """``X - offset`` (exact for data whose offset :func:`data_offset` gave); X when None.

    Host data are translated by NumPy: XLA on the CPU flushes subnormal results to 0, and the
    difference of two normal numbers can be subnormal. Arrays on several devices stay there.

    Args:
        X: (N, D) data, or (K, D) locations.
        offset: (D,) offsets, or None.

    Returns:
        The translated array (a JAX array), or ``X`` itself when ``offset`` is None.
    """
    if offset is None:
        return X
    if is_traced(X) or (isinstance(X, jax.Array) and len(X.sharding.device_set) > 1):
        return X - jnp.asarray(offset, X.dtype)
    host = np.asarray(X)
    moved = aligned_empty(host.shape, host.dtype)
    np.subtract(host, offset.astype(host.dtype), out=moved)
    return jax.device_put(moved)
