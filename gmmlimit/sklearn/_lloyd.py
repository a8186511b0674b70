"""Lloyd's iterations with scikit-learn's exact rules, compiled (dense) or on the host (sparse).

Both paths run, per iteration, what ``sklearn.cluster.KMeans(algorithm="lloyd")`` runs:

1. E-step: each row to its nearest centre (ties: the lowest index);
2. empty clusters take the rows farthest from their assigned (old) centres, in decreasing order of
   distance, unless every row already sits on its centre (then relocating is pointless: fewer
   distinct points than clusters);
3. M-step: weighted means; a cluster still empty is put at the centre of the heaviest cluster;
4. stop on *strict convergence* (no label changed) or when the total squared centre shift is
   <= the absolute tolerance ``tol * mean_d Var(X[:, d])``.

The dense path is the toolkit's isotropic variant at sigma2 = 0 (its fused E-step kernel and the
one driver's :func:`~gmmlimit._driver.em_iteration`) with the two empty-cluster rules above
swapped in; ``max_iter`` is a traced loop bound, so it never recompiles. Sparse input (CSR) runs
the same iteration with numpy/scipy on the host: a sparse-dense product per E-step and a sparse
one-hot product per M-step; the (N, D) matrix is never densified.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from jax import lax

from .._driver import (
    Blocks,
    _skipping_iteration,
    _skipping_pass,
    compare_labels,
    e_pass,
    em_iteration,
)
from .._variant import FarPoints, Variant
from ..variants._isotropic import IsotropicParams, IsotropicStats, isotropic, isotropic_bounded
from ._common import fit_blocks

__all__ = ["LloydRun", "lloyd_dense", "lloyd_sparse", "sparse_labels", "sq_dist_to_assigned"]

# Rows per host chunk: bounds the (chunk, K) dense temporaries of the sparse path.
HOST_CHUNK = 1 << 15


class LloydRun(NamedTuple):
    """One Lloyd run from one initialisation.

    Attributes:
        means: (K, D) final centres.
        labels: (N,) int64 labels of the final E-step at ``means``.
        inertia: sum_n w_n ||x_n - means[labels_n]||^2 (float).
        n_iter: iterations run (scikit-learn's ``n_iter_``).
    """

    means: np.ndarray
    labels: np.ndarray
    inertia: float
    n_iter: int


def _relocate(params: IsotropicParams, stats: IsotropicStats, far: FarPoints) -> IsotropicStats:
    """The isotropic variant's farthest-point relocation, skipped when all rows sit on centres."""
    diff = far.x - params.means[far.label]
    spread = jnp.any(far.valid & (jnp.sum(diff * diff, axis=1) > 0))
    moved = isotropic.relocate(params, stats, far)
    return jax.tree.map(lambda a, b: jnp.where(spread, a, b), moved, stats)


def _m_step(params: IsotropicParams, stats: IsotropicStats) -> IsotropicParams:
    """Weighted means; a cluster still empty goes to the heaviest cluster's centre."""
    occupied = stats.counts > 0
    means = stats.sums / jnp.where(occupied, stats.counts, 1.0)[:, None]
    heaviest = means[jnp.argmax(stats.counts)]
    return params._replace(means=jnp.where(occupied[:, None], means, heaviest[None, :]))


_KMEANS = isotropic._replace(relocate=_relocate, m_step=_m_step)
_KMEANS_BOUNDED = isotropic_bounded._replace(relocate=_relocate, m_step=_m_step)
"""The same iterations with Hamerly's bounds (``algorithm="elkan"``: Lloyd's iterates, bit for
bit, skipping the rows whose label cannot change)."""


class _State(NamedTuple):
    means: jax.Array
    labels: jax.Array
    n_iter: jax.Array
    done: jax.Array
    skip: Any  # the bounded engine's state (None for plain Lloyd)


def _step(
    blocks: Blocks, means: jax.Array, old_labels: jax.Array, tol: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array, jax.Array]:
    """One iteration: (new means, labels, inertia at the old means, strict, shift, done)."""
    params = IsotropicParams(means, jnp.zeros((), means.dtype))
    new, stats, labels = em_iteration(_KMEANS, params, blocks)
    labels, strict = compare_labels(labels, old_labels)
    shift = jnp.sum((new.means - means) ** 2)
    return new.means, labels, stats.distortion, strict, shift, strict | (shift <= tol)


def _final(blocks: Blocks, means: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Labels and inertia of the E-step at ``means``."""
    params = IsotropicParams(means, jnp.zeros((), means.dtype))
    stats, labels, _ = e_pass(_KMEANS, params, blocks)
    return labels, stats.distortion


def _bounded_step(
    blocks: Blocks, means: jax.Array, old_labels: jax.Array, tol: jax.Array, skip: Any
) -> tuple[jax.Array, jax.Array, jax.Array, Any]:
    """:func:`_step` through the bounded engine: (new means, labels, done, bounds)."""
    params = IsotropicParams(means, jnp.zeros((), means.dtype))
    new, _, labels, skip = _skipping_iteration(_KMEANS_BOUNDED, params, blocks, old_labels, skip)
    labels, strict = compare_labels(labels, old_labels)
    shift = jnp.sum((new.means - means) ** 2)
    return new.means, labels, strict | (shift <= tol), skip


def _loop(
    blocks: Blocks, means: jax.Array, tol: jax.Array, max_iter: jax.Array, bounded: bool
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Iterations until done or ``max_iter``, then the final E-step.

    Returns:
        (means, labels, inertia, n_iter).
    """
    variant: Variant = _KMEANS_BOUNDED if bounded else _KMEANS

    def cond(s: _State) -> jax.Array:
        return (~s.done) & (s.n_iter < max_iter)

    def body(s: _State) -> _State:
        if bounded:
            new, labels, done, skip = _bounded_step(blocks, s.means, s.labels, tol, s.skip)
        else:
            new, labels, _, _, _, done = _step(blocks, s.means, s.labels, tol)
            skip = None
        return _State(new, labels, s.n_iter + 1, done, skip)

    params = IsotropicParams(means, jnp.zeros((), means.dtype))
    start = _State(
        means,
        jnp.full(blocks.valid.size, -1, jnp.int32),
        jnp.zeros((), jnp.int32),
        jnp.zeros((), bool),
        variant.engine.skipping.init(params, blocks.x) if bounded else None,
    )
    end = lax.while_loop(cond, body, start)
    if not bounded:
        labels, inertia = _final(blocks, end.means)
        return end.means, labels, inertia, end.n_iter
    final = IsotropicParams(end.means, jnp.zeros((), means.dtype))
    stats, labels, _, _ = _skipping_pass(
        variant, final, blocks, end.labels, end.skip, track_farthest=False
    )
    return end.means, labels, stats.distortion, end.n_iter


# Small problems are dominated by compilation: LLVM optimisation level 0 halves it and changes
# no floating-point semantics (XLA:CPU never enables fast-math).
_SMALL = 1 << 16
_FAST_COMPILE = {"xla_backend_optimization_level": 0}


def _on_rows(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn(blocks, ...)`` as ``f(x, w, n, ...)``, its blocks built inside the compiled function.

    :func:`~gmmlimit.sklearn._common.fit_blocks` there, so the CPU kernels read the rows in place.
    """

    def on_rows(
        x: jax.Array, w: jax.Array, n: jax.Array, means: jax.Array, *args: Any, **kwargs: Any
    ) -> Any:
        return fn(fit_blocks(x, w, n, means.shape[0]), means, *args, **kwargs)

    return on_rows


def _compiled(
    fn: Callable[..., Any], static: tuple[str, ...] = ()
) -> tuple[Callable[..., Any], Callable[..., Any]]:
    return (
        jax.jit(_on_rows(fn), static_argnames=static),
        jax.jit(_on_rows(fn), static_argnames=static, compiler_options=_FAST_COMPILE),
    )


_LOOP = _compiled(_loop, ("bounded",))
_STEP = _compiled(_step)
_FINAL = _compiled(_final)


def _pick(pair: tuple[Callable[..., Any], Callable[..., Any]], x: jax.Array) -> Callable:
    return pair[1] if x.size <= _SMALL else pair[0]


def lloyd_dense(
    x: jax.Array,
    w: jax.Array,
    n: int,
    means0: np.ndarray,
    tol: float,
    max_iter: int,
    verbose: bool,
    bounded: bool = False,
) -> tuple[np.ndarray, np.ndarray, float, int]:
    """Lloyd's iterations on dense rows (call inside an x64 context for float64).

    Args:
        x: (M, D') rows from :func:`~gmmlimit.sklearn._common._pad`: the data, padded to
            power-of-two shapes when small (rows from ``n`` on carry zero weight and are never
            relocated).
        w: (M,) weights.
        n: the number of real rows.
        means0: (K, D') initial centres in the data's dtype.
        tol: the absolute centre-shift tolerance.
        max_iter: the iteration bound.
        verbose: print scikit-learn's per-iteration lines (runs one compiled step at a time).
        bounded: skip, with Hamerly's bounds, the rows whose label cannot change (the same
            iterates, bit for bit; not with ``verbose``, which runs one plain step at a time).

    Returns:
        ``(means, labels (n,), inertia, n_iter)``; the inertia is the compiled E-step's.
    """
    dtype = x.dtype
    means = jnp.asarray(means0, dtype)
    tol_j = jnp.asarray(tol, dtype)
    rows = (x, w, jnp.asarray(n, jnp.int32))
    if not verbose:
        limit = jnp.asarray(max_iter, jnp.int32)
        out = _pick(_LOOP, x)(*rows, means, tol_j, limit, bounded=bounded)
        means, labels, inertia, n_iter = out
        return np.asarray(means), np.asarray(labels)[:n], float(inertia), int(n_iter)
    step = _pick(_STEP, x)
    labels = jnp.full(fit_blocks(*rows, means.shape[0]).valid.size, -1, jnp.int32)
    for i in range(max_iter):
        new, labels, inertia, strict, shift, done = step(*rows, means, labels, tol_j)
        means = new
        print(f"Iteration {i}, inertia {float(inertia)}.")
        if bool(strict):
            print(f"Converged at iteration {i}: strict convergence.")
            break
        if bool(done):
            print(
                f"Converged at iteration {i}: center shift {float(shift)} within tolerance {tol}."
            )
            break
    n_iter = i + 1
    labels, inertia = _pick(_FINAL, x)(*rows, means)
    return np.asarray(means), np.asarray(labels)[:n], float(inertia), n_iter


def sparse_cross(X: sp.csr_matrix, C: np.ndarray, start: int, stop: int) -> np.ndarray:
    """(stop - start, K) products X[start:stop] C^T, a sparse-dense product."""
    return np.asarray(X[start:stop] @ C.T)


def sparse_labels(X: sp.csr_matrix, C: np.ndarray) -> np.ndarray:
    """(N,) index of the nearest centre of each sparse row (ties: the lowest index)."""
    c_sq = np.einsum("kd,kd->k", C, C)
    out = np.empty(X.shape[0], np.int64)
    for start in range(0, X.shape[0], HOST_CHUNK):
        stop = min(start + HOST_CHUNK, X.shape[0])
        partial_d = c_sq[None, :] - 2.0 * sparse_cross(X, C, start, stop)
        out[start:stop] = np.argmin(partial_d, axis=1)
    return out


def sq_dist_to_assigned(X: Any, C: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(N,) ||x_n - C[labels_n]||^2 from differences (exactly 0 for a row equal to its centre).

    Args:
        X: (N, D) dense array or CSR matrix.
        C: (K, D) centres.
        labels: (N,) assignments.
    """
    if not sp.issparse(X):
        out = np.empty(X.shape[0], np.result_type(X.dtype, C.dtype))
        for start in range(0, X.shape[0], HOST_CHUNK):
            stop = min(start + HOST_CHUNK, X.shape[0])
            diff = X[start:stop] - C[labels[start:stop]]
            out[start:stop] = np.einsum("nd,nd->n", diff, diff)
        return out
    # Sparse: ||c||^2 plus, over the stored entries, (x_j - c_j)^2 - c_j^2.
    rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
    c = C[labels[rows], X.indices]
    terms = (X.data - c) ** 2 - c * c
    c_sq = np.einsum("kd,kd->k", C, C)
    return c_sq[labels] + np.bincount(rows, weights=terms, minlength=X.shape[0]).astype(C.dtype)


def lloyd_sparse(
    X: sp.csr_matrix,
    w: np.ndarray,
    means0: np.ndarray,
    tol: float,
    max_iter: int,
    verbose: bool,
) -> tuple[np.ndarray, np.ndarray, float, int]:
    """Lloyd's iterations on a CSR matrix with numpy/scipy (the same rules as the dense path).

    Args:
        X: (N, D) CSR data.
        w: (N,) sample weights.
        means0: (K, D) initial centres.
        tol: the absolute centre-shift tolerance.
        max_iter: the iteration bound.
        verbose: print scikit-learn's per-iteration lines.

    Returns:
        ``(means, labels, inertia, n_iter)``.
    """
    k = means0.shape[0]
    n = X.shape[0]
    means = np.array(means0, dtype=X.dtype)
    old = np.full(n, -1, np.int64)
    for i in range(max_iter):
        labels = sparse_labels(X, means)
        dist = sq_dist_to_assigned(X, means, labels)
        if verbose:
            print(f"Iteration {i}, inertia {float(np.dot(w, dist))}.")
        counts = np.bincount(labels, weights=w, minlength=k).astype(X.dtype)
        onehot = sp.csr_matrix((w, (labels, np.arange(n))), shape=(k, n))
        sums = np.asarray((onehot @ X).todense(), dtype=X.dtype)
        empty = np.flatnonzero(counts == 0)
        if empty.size and np.max(dist) > 0:
            order = np.argsort(-dist, kind="stable")[: empty.size]
            for target, row in zip(empty, order, strict=True):
                x_row = X[row].toarray()[0]
                sums[labels[row]] -= w[row] * x_row
                counts[labels[row]] -= w[row]
                sums[target] = w[row] * x_row
                counts[target] = w[row]
        occupied = counts > 0
        new = sums / np.where(occupied, counts, 1)[:, None]
        new[~occupied] = new[np.argmax(counts)]
        shift = float(np.sum((new - means) ** 2))
        means = new
        if np.array_equal(labels, old):
            if verbose:
                print(f"Converged at iteration {i}: strict convergence.")
            break
        if shift <= tol:
            if verbose:
                print(f"Converged at iteration {i}: center shift {shift} within tolerance {tol}.")
            break
        old = labels
    labels = sparse_labels(X, means)
    inertia = float(np.dot(w, sq_dist_to_assigned(X, means, labels)))
    return means, labels, inertia, i + 1
