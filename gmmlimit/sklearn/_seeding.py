"""Seeding for the K-means estimator: greedy k-means++ and weighted random rows.

The random numbers come from one explicit ``jax.random`` key and are drawn in float64 (inside
an x64 context), and the distances are computed in float64 on the host whatever the data's
dtype, so the same ``random_state`` picks the same rows for float32 and float64 input and for
dense and sparse (CSR) input. Distances use a dense-dense or sparse-dense product, in chunks of
rows, so a sparse matrix is never densified.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from ._lloyd import HOST_CHUNK

__all__ = ["kmeans_plusplus_rows", "random_rows"]


def _rows(X: Any, idx: np.ndarray) -> np.ndarray:
    """(m, D) float64 copies of the rows ``idx``."""
    rows = X[idx]
    return np.asarray(rows.toarray() if sp.issparse(rows) else rows, dtype=np.float64)


def _row_sq_norms(X: Any) -> np.ndarray:
    if sp.issparse(X):
        return np.asarray(X.multiply(X).sum(axis=1), dtype=np.float64).ravel()
    out = np.empty(X.shape[0], np.float64)
    for start in range(0, X.shape[0], HOST_CHUNK):
        block = np.asarray(X[start : start + HOST_CHUNK], dtype=np.float64)
        out[start : start + HOST_CHUNK] = np.einsum("nd,nd->n", block, block)
    return out


def _sq_dists(X: Any, x_sq: np.ndarray, C: np.ndarray) -> np.ndarray:
    """(m, N) float64 squared distances from the m rows of C to every row of X, clipped at 0."""
    c_sq = np.einsum("md,md->m", C, C)
    out = np.empty((C.shape[0], X.shape[0]), np.float64)
    for start in range(0, X.shape[0], HOST_CHUNK):
        stop = min(start + HOST_CHUNK, X.shape[0])
        block = X[start:stop]
        cross = block @ C.T if sp.issparse(block) else np.asarray(block, np.float64) @ C.T
        out[:, start:stop] = np.asarray(cross).T
    out *= -2.0
    out += c_sq[:, None]
    out += x_sq[None, :]
    return np.maximum(out, 0.0, out=out)


def kmeans_plusplus_rows(key: jax.Array, X: Any, w: np.ndarray, k: int) -> np.ndarray:
    """Greedy k-means++ (scikit-learn's rule: 2 + int(ln k) candidates per step).

    Args:
        key: a ``jax.random`` key (call inside an x64 context).
        X: (N, D) dense array or CSR matrix.
        w: (N,) non-negative sample weights.
        k: number of seeds, 1 <= k <= N.

    Returns:
        (k,) int64 row indices of the seeds.
    """
    n = X.shape[0]
    trials = 2 + int(math.log(k))
    u = np.asarray(jax.random.uniform(key, (1 + (k - 1) * trials,), jnp.float64))
    w = np.asarray(w, np.float64)
    cdf = np.cumsum(w)
    first = min(int(np.searchsorted(cdf, u[0] * cdf[-1], side="right")), n - 1)
    idx = np.full(k, first, np.int64)
    x_sq = _row_sq_norms(X)
    closest = _sq_dists(X, x_sq, _rows(X, idx[:1]))[0]
    pot = float(closest @ w)
    for c in range(1, k):
        draws = u[1 + (c - 1) * trials : 1 + c * trials] * pot
        cand = np.searchsorted(np.cumsum(w * closest), draws)
        cand = np.minimum(cand, n - 1)
        dist = np.minimum(closest[None, :], _sq_dists(X, x_sq, _rows(X, cand)))
        pots = dist @ w
        best = int(np.argmin(pots))
        pot, closest, idx[c] = float(pots[best]), dist[best], cand[best]
    return idx


def random_rows(key: jax.Array, w: np.ndarray, k: int) -> np.ndarray:
    """K distinct rows drawn with probability proportional to their weights (no replacement).

    Args:
        key: a ``jax.random`` key (call inside an x64 context).
        w: (N,) non-negative sample weights.
        k: number of rows.

    Returns:
        (k,) int64 row indices.
    """
    p = np.asarray(w, np.float64)
    p = jnp.asarray(p / p.sum(), jnp.float64)
    return np.asarray(jax.random.choice(key, p.shape[0], (k,), replace=False, p=p), np.int64)
