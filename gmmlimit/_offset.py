"""An exact translation of data that lie far from the origin relative to their spread.

The E-step forms squared distances as ``|x|^2 - 2 m.x + |m|^2``. For rows far from the origin
relative to their spread (float32 GPS coordinates near (37.7, -122.4) spread over 0.1 degree)
the three terms are ~1e4 and their rounding ~1e-3, larger than the distances between the
rows: labels come out wrong and Lloyd's iterations cycle until ``max_iter``.

Each feature is translated by an offset c read from its extremes ``lo <= x <= hi`` and, where
the extremes alone do not settle it, from two exact row counts:

1. A feature whose values all lie within a factor of two of one another (``0 < lo <= x <= hi
   <= 2 lo``, or ``2 hi <= lo <= x <= hi < 0``) is computed as ``x - lo`` (or ``x - hi``). By
   Sterbenz's lemma each such difference is exact, so the computed problem is the original one
   translated: labels, responsibilities, distortions and log-likelihoods are those of the data
   as given, and the means move by the offset (mapped back with one rounding).
2. Any other feature (not 0 at both ends) has two candidates, its extremes, each with a
   window of the values within ``|c| / 16`` of it: ``c = lo`` with ``[lo, fl(lo + |lo| /
   16)]`` and ``c = hi`` with ``[fl(hi - |hi| / 16), hi]`` (bounds rounded in the data's
   dtype, the same on every path); a candidate at 0 has no window. Each window lies inside
   the candidate's Sterbenz window (``[lo, 2 lo]``, ``[lo, lo / 2]``, ``[hi / 2, hi]`` or ``[2
   hi, hi]`` by sign), so the difference of every value in it is exact. The rows whose value
   lies in each window are counted (:func:`window_counts`; rows, not weights: a row of weight
   0 counts as any other, so the offset depends on the data alone), and the feature is
   translated by the candidate whose window holds a strict majority of the N rows (more than
   N / 2; where both do, the one with more rows, ``lo`` on a tie), else computed as given
   (offset 0). One outlier (a "null island" row at 0 among rows near 1e6, or a row at 1e9
   among them) thus leaves the bulk translated, and one row near 1e6 among rows near 0 leaves
   them as given. Every row within a factor of two of c (the Sterbenz window, which holds the
   counted majority) is translated exactly; a row outside it is computed as ``fl(x - c)``,
   with one rounding, relative error at most ``eps / 2`` of its distance from c (the outlier
   moves by at most half a unit in the last place of ``|x - c|``, no more than rounding it
   into the dtype would): its own squared distances are those of a row less than
   ``eps |x - c|`` away, while every other row's are exact.

   The window is narrower than the Sterbenz window on purpose: the rule then fires only where
   the translation gains at least a factor 16 in the majority's magnitude (a bulk whose
   spread is a few percent of its distance from the origin or less: GPS coordinates, rows at
   1e6 + N(0, 1)), never on data near the origin (uniform on [0, 1): 6 % of the rows lie in
   ``[15/16, 1]``), and it is idempotent after itself (the translated majority lies within
   ``|c| / 16`` of 0 while the other extreme lies at least ``|c| / 2`` from it). It is not
   idempotent after rule 1: data translated by rule 1 (``[0, hi - lo]``) whose majority lies
   within 1/16 of their largest value would be translated again. So the fit paths derive the
   offset once, from the data as given: a fit whose caller translated and rescaled its data
   (``em`` and ``kmeans`` in memory through ``_rescale.fit_rescaled``, the isotropic sharded
   fits of host data) fits them as given (``_api._fit(mapped=True)``, ``_sharding._fit_host``).

A feature with no offset (both rules fail) has no majority near either extreme: data near
the origin (its values span at least half their largest magnitude, so ``|x|^2`` is no more
than a few times the squared spread), or far rows whose bulk is not near an extreme (two far
clusters of equal size, outliers on both sides of a spread bulk), which still cancel
(docs/design.md). Data of which no feature gets an offset run exactly as before: no copy, the
same bits; data that meet rule 1 in every feature pay no count pass. Both the extremes and
the counts are exact and order-independent (a minimum, a maximum and integer sums), so every
path (in memory, out of core, sharded host and global arrays, several processes) merges them
over chunks and processes into the same offset bits.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._host import aligned_empty
from ._validation import is_traced

__all__ = [
    "candidate_windows",
    "data_offset",
    "feature_range",
    "offset_of",
    "traced_offset",
    "translate",
    "translated_largest",
    "window_counts",
]

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


def _factor_of_two(lo: Any, hi: Any) -> tuple[Any, Any]:
    """The (D,) features of rule 1 (module docstring): ``(positive, negative)`` masks.

    NumPy or JAX arrays (:func:`traced_offset`); so are the arguments of the rules below.
    """
    with np.errstate(over="ignore"):
        return (lo > 0) & (hi <= 2 * lo), (hi < 0) & (lo >= 2 * hi)


_NEAR = 16
"""A candidate c's window holds the values within |c| / _NEAR of it (module docstring)."""


def _window_edges(lo: Any, hi: Any) -> tuple[Any, Any]:
    """``(fl(lo + |lo| / 16), fl(hi - |hi| / 16))``: the inner ends of the candidates' windows."""
    return lo + abs(lo) / _NEAR, hi - abs(hi) / _NEAR


def _by_the_rules(xp: Any, lo: Any, hi: Any, counts: tuple[Any, Any] | None, n: int) -> Any:
    """The (D,) offsets of rules 1 and 2 from the extremes and, where given, the window counts.

    Args:
        xp: ``numpy`` or ``jax.numpy``, the module of the arrays.
        lo: (D,) each feature's smallest value.
        hi: (D,) each feature's largest value.
        counts: None (rule 1 only), or the rows within each (D,) window, ``c = lo``'s first.
        n: N, the number of rows counted.
    """
    positive, negative = _factor_of_two(lo, hi)
    offset = xp.where(positive, lo, xp.where(negative, hi, xp.zeros_like(lo)))
    if counts is None:
        return offset
    rest = ~(positive | negative)
    lo_count = xp.where(lo != 0, counts[0], 0)  # a candidate at 0 has no window
    hi_count = xp.where(hi != 0, counts[1], 0)
    by_lo = rest & (2 * lo_count > n) & (lo_count >= hi_count)
    by_hi = rest & (2 * hi_count > n) & (hi_count > lo_count)
    return xp.where(by_lo, lo, xp.where(by_hi, hi, offset))


def candidate_windows(lo: np.ndarray, hi: np.ndarray) -> np.ndarray | None:
    """The windows whose rows :func:`window_counts` counts; None where no count is needed.

    A feature of rule 1 (module docstring), or one whose extremes are both 0, needs no count:
    its windows are empty (``[inf, -inf]``), as is that of a candidate at 0. The others are
    ``[lo, fl(lo + |lo| / 16)]`` and ``[fl(hi - |hi| / 16), hi]``, rounded in the dtype of
    ``lo``, so every path compares the same values with the same bounds.

    Args:
        lo: (D,) each feature's smallest value, in the data's dtype.
        hi: (D,) each feature's largest value.

    Returns:
        (2, 2, D) bounds ``[candidate, (low, high), feature]``, candidate 0 being ``c = lo``
        and 1 ``c = hi``; or None when no feature needs a count.
    """
    lo, hi = np.asarray(lo), np.asarray(hi)
    positive, negative = _factor_of_two(lo, hi)
    counted = ~(positive | negative) & ((lo != 0) | (hi != 0))
    if not counted.any():
        return None
    inf = np.asarray(np.inf, lo.dtype)
    with np.errstate(under="ignore"):
        below, above = _window_edges(lo, hi)
    lo_window, hi_window = (lo, below), (above, hi)
    windows = np.stack([np.stack(lo_window), np.stack(hi_window)]).astype(lo.dtype)
    live = counted & np.stack([lo != 0, hi != 0])  # (2, D)
    windows[:, 0] = np.where(live, windows[:, 0], inf)
    windows[:, 1] = np.where(live, windows[:, 1], -inf)
    return windows


_COUNT_ROWS = 128
"""Rows of the view :func:`window_counts` compares at once (2 MiB of float32, read for both
candidates while in cache; their uint8 sum cannot wrap below 256 rows)."""


def window_counts(X: Any, windows: np.ndarray) -> np.ndarray:
    """The rows of concrete (N, D) data whose value lies in each candidate's window.

    Exact integers, summed over chunks or processes into those of their rows together. Every
    value lies within the extremes the windows were read from (the data's, or those of every
    chunk and process), so each window is one-sided: ``x <= high`` for ``c = lo`` (``x >= lo``
    always holds) and ``x >= low`` for ``c = hi``, one comparison per value and candidate.
    Host data are compared as rows of about 4096 values (see :func:`feature_range`), 128 rows
    at a time into a reused buffer; device data on the device.

    Args:
        X: (N, D) concrete data in the dtype of ``windows``, within their extremes.
        windows: (2, 2, D) bounds from :func:`candidate_windows`.

    Returns:
        (2, D) int64 counts, candidate ``c = lo`` first.
    """
    d = windows.shape[-1]
    below, above = windows[0, 1], windows[1, 0]  # x <= below: c = lo's; x >= above: c = hi's
    host_array = isinstance(X, np.ndarray) or (
        isinstance(X, jax.Array)
        and X.is_fully_addressable
        and all(device.platform == "cpu" for device in X.devices())
    )
    if not host_array:
        return _device_counts(jnp.asarray(X), below, above)
    host = np.asarray(X)
    n = host.shape[0]
    counts = np.zeros((2, d), np.int64)
    group = max(1, _ROW_WIDTH // d)
    whole = (n // group) * group
    if whole:
        rows = host[:whole].reshape(whole // group, group * d)
        bounds = (np.tile(below, group), np.tile(above, group))
        compare = (np.less_equal, np.greater_equal)
        buffer = np.empty((min(_COUNT_ROWS, rows.shape[0]), group * d), np.bool_)
        for start in range(0, rows.shape[0], _COUNT_ROWS):
            part = rows[start : start + _COUNT_ROWS]
            inside = buffer[: part.shape[0]]
            for c in range(2):
                compare[c](part, bounds[c], out=inside)
                summed = np.add.reduce(inside.view(np.uint8), axis=0, dtype=np.uint8)
                counts[c] += summed.reshape(group, d).sum(axis=0, dtype=np.int64)
    if whole < n:
        counts[0] += np.count_nonzero(host[whole:] <= below, axis=0)
        counts[1] += np.count_nonzero(host[whole:] >= above, axis=0)
    return counts


def _device_counts(data: jax.Array, below: np.ndarray, above: np.ndarray) -> np.ndarray:
    """:func:`window_counts` of (N, D) device data: (2, D) int64, ``x <= below``, ``x >= above``."""
    lo_count = jnp.sum(data <= jnp.asarray(below, data.dtype), axis=0, dtype=jnp.int32)
    hi_count = jnp.sum(data >= jnp.asarray(above, data.dtype), axis=0, dtype=jnp.int32)
    return np.asarray(jnp.stack([lo_count, hi_count]), np.int64)


def data_offset(
    lo: np.ndarray, hi: np.ndarray, counts: np.ndarray | None = None, n: int = 0
) -> np.ndarray | None:
    """The offset of each feature from its (D,) extremes and window counts; None if all 0.

    Args:
        lo: (D,) each feature's smallest value.
        hi: (D,) each feature's largest value.
        counts: None, or (2, D) :func:`window_counts` of the N rows for the windows of
            :func:`candidate_windows` (None there: no feature needs them).
        n: N, the number of rows counted.

    Returns:
        (D,) offsets in ``lo``'s dtype (module docstring): ``lo_d`` where ``0 < lo_d`` and
        ``hi_d <= 2 lo_d``, ``hi_d`` where ``hi_d < 0`` and ``lo_d >= 2 hi_d``; otherwise the
        candidate whose window holds more than ``n / 2`` rows (the larger count, ``lo_d`` on
        a tie), else 0; or None when all are 0.
    """
    lo, hi = np.asarray(lo), np.asarray(hi)
    if counts is not None:
        counts = np.asarray(counts, np.int64)
        counts = (counts[0], counts[1])
    offset = _by_the_rules(np, lo, hi, counts, n)
    if not offset.any():
        return None
    return offset


def translated_largest(
    lo: np.ndarray, hi: np.ndarray, largest: float, offset: np.ndarray | None
) -> float:
    """The largest magnitude of data less ``offset``, from each feature's (D,) extremes.

    The largest ``|fl(x - c)|`` of each feature is that of one of its extremes (rounding is
    monotone), computed as :func:`translate` computes it, in the extremes' dtype. ``largest``
    (the data's own largest magnitude) is returned when ``offset`` is None.
    """
    if offset is None:
        return largest
    lo, hi = np.asarray(lo), np.asarray(hi)
    c = np.asarray(offset, lo.dtype)
    return float(np.max(np.maximum(np.abs(hi - c), np.abs(lo - c))))


def offset_of(X: Any) -> np.ndarray | None:
    """:func:`data_offset` of concrete (N, D) data; None for traced data (:func:`traced_offset`).

    The window counts are taken (one more pass over X) only where :func:`candidate_windows`
    asks for them.
    """
    if is_traced(X):
        return None
    lo, hi = feature_range(X)
    windows = candidate_windows(lo, hi)
    counts = None if windows is None else window_counts(X, windows)
    return data_offset(lo, hi, counts, int(X.shape[0]))


def traced_offset(rows: jax.Array) -> jax.Array:
    """:func:`offset_of` of traced (N, D) data ``rows`` (inside ``jit`` or ``vmap``), on the device.

    The same rules, extremes and window bounds as the host's (the counts of every feature are
    taken, those the rules do not read are ignored), so data within the dtype's normal range get
    the offset bits :func:`offset_of` gives them concretely.

    Returns:
        (D,) offsets in the rows' dtype, 0 for a feature without one.
    """
    lo, hi = jnp.min(rows, axis=0), jnp.max(rows, axis=0)
    below, above = _window_edges(lo, hi)
    counts = (
        jnp.sum(rows <= below, axis=0, dtype=jnp.int32),
        jnp.sum(rows >= above, axis=0, dtype=jnp.int32),
    )
    return _by_the_rules(jnp, lo, hi, counts, rows.shape[0])


def translate(X: Any, offset: Any) -> Any:
    """``X - offset`` (exact in each feature's window, module docstring); X when None.

    Host data are translated by NumPy: XLA on the CPU flushes subnormal results to 0, and the
    difference of two normal numbers can be subnormal. Arrays on several devices stay there.

    Args:
        X: (N, D) data, or (K, D) locations.
        offset: (D,) offsets (NumPy, or traced: :func:`traced_offset`), or None.

    Returns:
        The translated array (a JAX array), or ``X`` itself when ``offset`` is None.
    """
    if offset is None:
        return X
    traced = is_traced(X) or is_traced(offset)
    if traced or (isinstance(X, jax.Array) and len(X.sharding.device_set) > 1):
        offset = jnp.asarray(offset, X.dtype)
        # A feature without an offset is selected as it is: XLA on the CPU flushes subnormal
        # inputs of X - 0 to 0 (a subnormal offset compares equal to 0 there too, and is
        # skipped alike in Scale.means_back, which adds it back through this function).
        return jnp.where(offset == 0, X, X - offset)
    host = np.asarray(X)
    moved = aligned_empty(host.shape, host.dtype)
    np.subtract(host, np.asarray(offset, host.dtype), out=moved)
    return jax.device_put(moved)
