"""Deterministic annealing: EM along a decreasing sigma2 schedule, K-means as the last stage.

Going from a large variance to sigma2 = 0 is a path. At a large sigma2 every mean sits at the
data mean (the collapsed fixed point); it stays stable down to the critical variance
sigma2_c = lambda_max(C) of the 1/N data covariance and splits below it (DESIGN.md section 1,
statement 5). :func:`anneal` follows the path with warm starts: each stage is one run of the core
fit driver (:func:`gmmlimit._driver.fit_compiled` with the isotropic variant) started from the
previous stage's means plus a tiny symmetric-breaking perturbation drawn from an explicit key, and
the whole path is one ``lax.scan`` compiled once per schedule length.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._driver import DEFAULT_BLOCK_SIZE, e_pass, fit_compiled, make_blocks
from ._validation import (
    as_data,
    check_k,
    check_key,
    check_means,
    check_positive_int,
    check_sigma2,
    check_tol,
    weights_or_ones,
)
from .variants.isotropic import IsotropicParams, isotropic, log_likelihood_from_stats

__all__ = ["AnnealResult", "anneal", "count_distinct", "schedule_values", "split_points"]


class AnnealResult(NamedTuple):
    """The path of an annealing run: one entry per stage (S schedule stages, then K-means).

    Attributes:
        sigma2: (S + 1,) the variance of each stage; the last entry is 0 (the K-means stage).
        means: (S + 1, K, D) the means at the end of each stage.
        log_likelihood: (S + 1,) the log-likelihood at each stage's means and variance; at the
            K-means stage (sigma2 = 0) its limit, -inf (+inf if every point sits on a mean).
        distortion: (S + 1,) the K-means objective J at each stage's means.
        n_distinct: (S + 1,) int32 number of distinct centres (means closer than
            ``merge_tol * scale`` are one centre, transitively).
        n_iter: (S + 1,) int32 EM iterations run in each stage.
        labels: (N,) int32 labels of the final (K-means) stage.
        scale: () the data scale sqrt(trace C) = RMS distance of the points to their mean; the
            perturbation and the merge tolerance are relative to it.
    """

    sigma2: jax.Array
    means: jax.Array
    log_likelihood: jax.Array
    distortion: jax.Array
    n_distinct: jax.Array
    n_iter: jax.Array
    labels: jax.Array
    scale: jax.Array


Schedule = Callable[[int], Any] | Sequence[float] | np.ndarray | jax.Array


def schedule_values(schedule: Schedule, n_stages: int | None = None) -> np.ndarray:
    """Evaluate a sigma2 schedule on the stage indices 0, 1, ..., n_stages - 1.

    Args:
        schedule: an optax schedule (``optax.exponential_decay``, ``optax.cosine_decay_schedule``,
            ``optax.join_schedules``, ``optax.piecewise_constant_schedule``, ...), any callable
            mapping a stage index (a Python int) to a variance, or a 1-D array of variances.
        n_stages: the number of stages; required for a callable, optional (must match) for an
            array.

    Returns:
        (S,) float64 NumPy array of the variances, validated: finite, >= 0, non-increasing.

    Raises:
        ValueError: if n_stages is missing or wrong, or a value is negative, non-finite or larger
            than the one before it.
    """
    if callable(schedule):
        if n_stages is None:
            raise ValueError("a callable schedule needs n_stages (the number of stages to run).")
        n_stages = check_positive_int(n_stages, "n_stages")
        values = np.array([np.asarray(schedule(i), dtype=np.float64) for i in range(n_stages)])
    else:
        values = np.asarray(schedule, dtype=np.float64)
        if values.ndim != 1 or values.size < 1:
            raise ValueError(
                f"an array schedule must be 1-D and non-empty; got shape {values.shape}."
            )
        if n_stages is not None and check_positive_int(n_stages, "n_stages") != values.size:
            raise ValueError(f"n_stages={n_stages} but the schedule has {values.size} values.")
    if values.ndim != 1:
        raise ValueError(f"the schedule must give one scalar per stage; got shape {values.shape}.")
    if not np.all(np.isfinite(values)):
        raise ValueError("the schedule gives NaN or inf variances; every stage needs sigma2 >= 0.")
    if np.any(values < 0):
        bad = int(np.argmax(values < 0))
        raise ValueError(f"the schedule gives sigma2 = {values[bad]} < 0 at stage {bad}.")
    rises = np.nonzero(np.diff(values) > 0)[0]
    if rises.size:
        i = int(rises[0])
        raise ValueError(
            "annealing needs a non-increasing schedule; sigma2 rises from "
            f"{values[i]} at stage {i} to {values[i + 1]} at stage {i + 1}."
        )
    return values


def count_distinct(means: jax.Array, tol: jax.Array) -> jax.Array:
    """The number of distinct centres: groups of means linked by distances <= tol.

    Two means closer than ``tol`` belong to one centre, and the relation is closed transitively
    (connected components of the "closer than tol" graph), so the count does not depend on the
    order of the means.

    Args:
        means: (K, D) means.
        tol: scalar distance tolerance >= 0.

    Returns:
        () int32 number of groups, between 1 and K.
    """
    k = means.shape[0]
    sq = jnp.sum((means[:, None, :] - means[None, :, :]) ** 2, axis=-1)
    reach = sq <= tol * tol
    for _ in range(max(1, math.ceil(math.log2(max(k, 2))))):
        reach = reach | (reach.astype(jnp.int32) @ reach.astype(jnp.int32) > 0)
    first = jnp.argmax(reach, axis=1)  # lowest index of each mean's group
    return jnp.sum(first == jnp.arange(k)).astype(jnp.int32)


def anneal(
    X: Any,
    schedule: Schedule,
    *,
    key: jax.Array,
    k: int,
    n_stages: int | None = None,
    init_means: Any = None,
    max_iter: int = 100,
    tol: float | None = None,
    perturbation: float = 1e-4,
    merge_tol: float = 1e-2,
    weights: Any = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> AnnealResult:
    """Deterministic annealing: EM along a decreasing sigma2 schedule, then K-means.

    Stage s (s = 0..S-1) adds ``perturbation * scale * N(0, I)`` noise (from
    ``jax.random.fold_in(key, s)``) to the previous stage's means and runs EM at sigma2_s with the
    core driver; a final stage runs K-means (sigma2 = 0) from the last EM means, unperturbed.
    The noise breaks the symmetry of coinciding means, so a group of means splits as soon as
    the variance drops below the critical value of its cluster; it is tiny, so it changes nothing
    else. Changing the schedule's values (not its length) never recompiles.

    Args:
        X: (N, D) data, float32 or float64.
        schedule: the variances: an optax schedule or any callable of the stage index (then
            ``n_stages`` is required) or a 1-D array; non-increasing and >= 0.
        key: a ``jax.random`` key for the symmetric-breaking perturbations.
        k: the number of means.
        n_stages: the number of schedule stages (for a callable schedule).
        init_means: optional (k, D) starting means; default all k at the (weighted) data mean,
            the collapsed fixed point where annealing starts.
        max_iter: EM iterations per stage (the K-means stage stops earlier once no label changes).
        tol: per-stage stopping tolerance on the relative log-likelihood gain. The default None
            runs every EM stage for exactly ``max_iter`` iterations: near a bifurcation the gain
            from the growing perturbation is far below any tolerance (critical slowing down), and
            stopping early would freeze the means at the unstable collapsed point.
        perturbation: noise standard deviation relative to the data scale sqrt(trace C).
        merge_tol: distance, relative to the data scale, below which means count as one centre.
        weights: optional (N,) non-negative sample weights.
        block_size: rows per streamed E-step block.

    Returns:
        An :class:`AnnealResult` (S + 1 stages) in X's dtype.

    Raises:
        ValueError: on invalid data, schedule, key, k, means or options.
    """
    X = as_data(X)
    check_key(key)
    k = check_k(k, X.shape[0])
    values = schedule_values(schedule, n_stages)
    sigma2 = check_sigma2(values, X.dtype, name="schedule", scalar=False)
    w = weights_or_ones(weights, X.shape[0], X.dtype)
    if init_means is None:
        centre = (w @ X) / jnp.sum(w)
        init = jnp.broadcast_to(centre, (k, X.shape[1]))
    else:
        init = check_means(init_means, X, name="init_means", for_fit=True)
        if init.shape[0] != k:
            raise ValueError(f"init_means has {init.shape[0]} rows but k={k}.")
    max_iter = check_positive_int(max_iter, "max_iter")
    block_size = check_positive_int(block_size, "block_size")
    # A negative tolerance never fires: EM's log-likelihood gain is never below -|l|.
    tol_value = -1.0 if tol is None else check_tol(tol)
    for name, value in (("perturbation", perturbation), ("merge_tol", merge_tol)):
        v = float(value)
        if not (math.isfinite(v) and v >= 0):
            raise ValueError(f"{name} must be a finite number >= 0; got {value!r}.")
    return _anneal_compiled(
        X,
        w,
        sigma2,
        init,
        key,
        jnp.asarray(tol_value, X.dtype),
        jnp.asarray(perturbation, X.dtype),
        jnp.asarray(merge_tol, X.dtype),
        max_iter=max_iter,
        block_size=block_size,
    )


@partial(jax.jit, static_argnames=("max_iter", "block_size"))
def _anneal_compiled(
    X: jax.Array,
    w: jax.Array,
    sigma2: jax.Array,
    init: jax.Array,
    key: jax.Array,
    tol: jax.Array,
    perturbation: jax.Array,
    merge_tol: jax.Array,
    *,
    max_iter: int,
    block_size: int,
) -> AnnealResult:
    """The annealing path as one compiled scan (inputs already validated)."""
    dtype = X.dtype
    total = jnp.sum(w)
    centred = X - (w @ X) / total
    scale = jnp.sqrt(jnp.sum(w[:, None] * centred * centred) / total)
    stages = jnp.concatenate([sigma2, jnp.zeros((1,), dtype)])
    blocks = make_blocks(X, w, block_size)

    def stage(
        carry: tuple[jax.Array, jax.Array], inputs: tuple[jax.Array, jax.Array]
    ) -> tuple[tuple[jax.Array, jax.Array], Any]:
        means, _ = carry
        s2, index = inputs
        noise = jax.random.normal(jax.random.fold_in(key, index), means.shape, dtype)
        means = means + jnp.where(s2 > 0, perturbation * scale, 0.0) * noise
        fit = fit_compiled(
            isotropic,
            X,
            w,
            IsotropicParams(means, s2),
            tol,
            max_iter=max_iter,
            block_size=block_size,
        )
        params = fit.params
        stats, _, _ = e_pass(isotropic, params, blocks)
        positive = s2 > 0
        safe = IsotropicParams(params.means, jnp.where(positive, s2, 1.0))
        at_zero = jnp.where(stats.distortion > 0, -jnp.inf, jnp.inf)
        log_lik = jnp.where(positive, log_likelihood_from_stats(safe, stats), at_zero)
        out = (
            params.means,
            log_lik.astype(dtype),
            stats.distortion.astype(dtype),
            count_distinct(params.means, merge_tol * scale),
            fit.n_iter,
        )
        return (params.means, fit.labels), out

    indices = jnp.arange(stages.shape[0], dtype=jnp.int32)
    labels0 = jnp.zeros((X.shape[0],), jnp.int32)
    (_, labels), (means, log_lik, distortion, n_distinct, n_iter) = lax.scan(
        stage, (init.astype(dtype), labels0), (stages, indices)
    )
    return AnnealResult(
        sigma2=stages,
        means=means,
        log_likelihood=log_lik,
        distortion=distortion,
        n_distinct=n_distinct,
        n_iter=n_iter,
        labels=labels,
        scale=scale.astype(dtype),
    )


def split_points(result: AnnealResult) -> np.ndarray:
    """Where the number of distinct centres grows along an annealing path.

    Args:
        result: an :class:`AnnealResult`.

    Returns:
        (M, 4) float64 NumPy array, one row per increase of the distinct-centre count among the
        EM stages (the final K-means stage is left out): ``(sigma2_before, sigma2_after,
        count_before, count_after)``; the split happened between the two variances.
    """
    sigma2 = np.asarray(result.sigma2, dtype=np.float64)[:-1]
    count = np.asarray(result.n_distinct)[:-1]
    rows = [
        (sigma2[i], sigma2[i + 1], count[i], count[i + 1])
        for i in range(count.size - 1)
        if count[i + 1] > count[i]
    ]
    return np.asarray(rows, dtype=np.float64).reshape(-1, 4)
