"""Initialisation of the means from an explicit ``jax.random`` key.

Both rules are pure functions of ``(key, X, k)``: ``jax.vmap`` over a batch of keys gives a batch
of initialisations, so restarts are a vmap. ``k`` is static (it fixes the output shape).
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
from jax import lax

from . import _offset
from ._validation import (
    as_data,
    at_unit_scale,
    check_k,
    check_key,
    check_positive_int,
    is_traced,
    weights_or_ones,
    with_float64_scope,
)

__all__ = ["kmeans_plusplus", "random_points"]


@with_float64_scope
def random_points(key: jax.Array, X: jax.Array, k: int) -> jax.Array:
    """The textbook rule: k distinct data points chosen uniformly at random.

    Args:
        key: a ``jax.random`` key.
        X: (N, D) data.
        k: number of means, 1 <= k <= N.

    Returns:
        (k, D) initial means in X's dtype.

    Raises:
        ValueError: on a bad key, bad data or k outside [1, N].
    """
    check_key(key)
    X = as_data(X)
    k = check_k(k, X.shape[0])
    return _random_points(key, X, k)


@partial(jax.jit, static_argnames=("k",))
def _random_points(key: jax.Array, X: jax.Array, k: int) -> jax.Array:
    idx = jax.random.choice(key, X.shape[0], shape=(k,), replace=False)
    return X[idx]


@with_float64_scope
def kmeans_plusplus(
    key: jax.Array,
    X: jax.Array,
    k: int,
    *,
    weights: jax.Array | None = None,
    n_local_trials: int | None = None,
) -> jax.Array:
    """Greedy k-means++ (Arthur and Vassilvitskii, with scikit-learn's greedy trials).

    The first mean is a data point drawn with probability proportional to its weight. Each next
    mean is the best of ``n_local_trials`` candidates drawn with probability proportional to
    weight times squared distance to the nearest chosen mean: the one that lowers the weighted
    potential sum_n w_n min_j ||x_n - c_j||^2 most.

    Args:
        key: a ``jax.random`` key.
        X: (N, D) data.
        k: number of means, 1 <= k <= N.
        weights: optional (N,) non-negative sample weights.
        n_local_trials: candidates per step; default ``2 + int(ln k)`` as in scikit-learn.

    Returns:
        (k, D) initial means in X's dtype. Memory is O(n_local_trials * N).

    Raises:
        ValueError: on a bad key, bad data, bad weights or k outside [1, N].
    """
    check_key(key)
    X = as_data(X)
    k = check_k(k, X.shape[0])
    w = weights_or_ones(weights, X.shape[0], X.dtype)
    trials = 2 + int(math.log(k)) if n_local_trials is None else n_local_trials
    trials = check_positive_int(trials, "n_local_trials")
    # rows far from the origin are drawn by their distances translated by an exact offset
    # (gmmlimit._offset: the expanded squares would cancel), and returned as given; traced rows
    # (a vmap over data sets, a jit) by the same offset computed on the device
    offset = _offset.traced_offset(X) if is_traced(X) else _offset.offset_of(X)
    # X itself where no offset applies: one program structure per shape either way
    moved = X if offset is None else _offset.translate(X, offset)
    return _kmeans_plusplus(key, X, w, k, trials, moved)


def _sq_dists_to(X: jax.Array, x_sq: jax.Array, centres: jax.Array) -> jax.Array:
    """(L, N) squared distances from L centres to all rows, clamped at 0."""
    cross = lax.dot_general(centres, X, (((1,), (1,)), ((), ())), precision=lax.Precision.HIGHEST)
    c_sq = jnp.sum(centres * centres, axis=1)
    return jnp.maximum(c_sq[:, None] - 2.0 * cross + x_sq[None, :], 0.0)


@partial(jax.jit, static_argnames=("k", "trials"))
def _kmeans_plusplus(
    key: jax.Array,
    X: jax.Array,
    w: jax.Array,
    k: int,
    trials: int,
    moved: jax.Array,
) -> jax.Array:
    n, d = X.shape
    rows = X  # the means are rows of X as given
    X = moved  # the distances: of the rows less their exact offset (X itself where none)
    # Distances are computed on X / 2^e, e the binary exponent of the largest magnitude (exact):
    # float32 squares near 1e18 would overflow and the draws' probabilities become 0.
    X, _ = at_unit_scale(X)
    x_sq = jnp.sum(X * X, axis=1)
    first_key, loop_key = jax.random.split(key)
    first = jax.random.choice(first_key, n, p=w / jnp.sum(w))
    centres = jnp.zeros((k, d), X.dtype).at[0].set(rows[first])
    closest = _sq_dists_to(X, x_sq, X[first][None, :])[0]

    def body(i: jax.Array, carry: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        centres, closest = carry
        mass = w * closest
        total = jnp.sum(mass)
        # All remaining mass zero (duplicated points): fall back to weight-proportional draws.
        p = jnp.where(total > 0, mass / jnp.where(total > 0, total, 1.0), w / jnp.sum(w))
        cand = jax.random.choice(jax.random.fold_in(loop_key, i), n, shape=(trials,), p=p)
        dist = jnp.minimum(closest[None, :], _sq_dists_to(X, x_sq, X[cand]))
        potential = jnp.sum(dist * w[None, :], axis=1)
        best = jnp.argmin(potential)
        return centres.at[i].set(rows[cand[best]]), dist[best]

    centres, _ = lax.fori_loop(1, k, body, (centres, closest))
    return centres
