"""DP-means (Kulis and Jordan, 2012): the small-variance limit of a Dirichlet-process mixture.

As sigma2 -> 0 with the DP concentration scaled as alpha = (1 + lambda / (2 sigma2))^(D/2)
exp(-lambda / (2 sigma2)), Gibbs sampling / EM for the DP mixture of isotropic Gaussians becomes
hard clustering with the objective

    J + lambda K = sum_n w_n min_k ||x_n - mu_k||^2 + lambda * (number of clusters),

where a point whose squared distance to every mean exceeds lambda opens a new cluster.

The compiled loop here is the batch form: an E-step (nearest active mean, the isotropic hard
E-step with inactive slots masked, streamed by the driver's ``e_pass``); then, if the largest
weighted squared distance w_n d_n (the row whose own cluster lowers J + lambda K most; a row of
weight 0 never opens one) exceeds lambda and a slot is free, that row opens a new cluster
(its weight leaves its old cluster's statistics); then the Lloyd M-step, which also switches off
clusters left empty. Each of the three moves lowers J + lambda K, so the recorded objective never
increases. It stops when no label changes and no cluster opens. Clusters live in ``max_clusters``
fixed slots (``active`` marks the used ones), so shapes are static and lambda, a traced leaf,
never recompiles.

Rows far from the origin relative to their spread are computed less an exact offset
(:mod:`gmmlimit._offset`): the expanded squared distances ``|x|^2 - 2 m.x + |m|^2`` would
otherwise cancel. J + lambda K is invariant under the translation, so labels, K, iterations and
the objective are those of the data as given; the returned means are moved back. Data whose
largest magnitude (after the translation) lies outside the dtype's window are computed as
X / 2^e with lambda / 4^e, and weights outside theirs as w / 2^v with lambda / 2^v (exact powers
of two, as the isotropic model does: :mod:`gmmlimit._rescale`): each squared distance and each
comparison with lambda then moves by the same exact power of two, so labels and K are those of
the data as given, where float32 rows near 2^64 would otherwise overflow every squared distance.
The loop records J and K apart, and J + lambda K is formed in the data's units.
"""

from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .._driver import e_pass, history_length, make_blocks, trim_history
from .._logdomain import pairwise_sq_dists_partial, shifted_softmax
from .._offset import offset_of, traced_offset, translate
from .._validation import (
    as_data,
    check_k,
    check_max_iter,
    check_means,
    check_positive_int,
    exact_ldexp,
    is_traced,
    relative_weights,
    scale_exponent,
    traced_exponent,
    with_float64_scope,
)
from .._variant import EStepBlock, Variant
from ._tempered import check_positive_scalar

__all__ = ["DPMeansParams", "DPMeansResult", "dpmeans", "dpmeans_objective"]


class DPMeansParams(NamedTuple):
    """DP-means state.

    Attributes:
        means: (max_clusters, D) cluster means (only ``active`` slots are meaningful).
        active: (max_clusters,) bool, which slots hold a cluster.
        lam: () the penalty lambda > 0 per cluster (a squared distance).
    """

    means: jax.Array
    active: jax.Array
    lam: jax.Array


class DPMeansResult(NamedTuple):
    """The result of :func:`dpmeans`.

    Attributes:
        means: (max_clusters, D) final means (inactive slots hold stale values).
        active: (max_clusters,) bool, the clusters in use.
        labels: (N,) int32 slot index of each row's nearest active mean.
        n_clusters: () int32 number of active clusters K.
        n_iter: () int32 iterations run.
        converged: () bool, stopped because nothing changed (not at max_iter).
        saturated: () bool, a row still farther than lambda wanted a cluster but no slot was free.
        objective: () J + lambda K at the returned means.
        history: (max_iter,) J + lambda K before each iteration's update; the final value after.
    """

    means: jax.Array
    active: jax.Array
    labels: jax.Array
    n_clusters: jax.Array
    n_iter: jax.Array
    converged: jax.Array
    saturated: jax.Array
    objective: jax.Array
    history: jax.Array


class _Stats(NamedTuple):
    counts: jax.Array
    sums: jax.Array
    distortion: jax.Array


def _e_step(params: DPMeansParams, x: jax.Array) -> EStepBlock:
    means = params.means
    partial_d = pairwise_sq_dists_partial(x, means, jnp.sum(means * means, axis=1))
    partial_d = jnp.where(params.active[None, :], partial_d, jnp.inf)
    resp, labels, _, _ = shifted_softmax(partial_d, jnp.zeros((), x.dtype))
    diff = x - means[labels]
    nearest = jnp.sum(diff * diff, axis=1)
    return EStepBlock(resp=resp, labels=labels, log_lik=jnp.zeros_like(nearest), distortion=nearest)


def _sufficient_stats(x: jax.Array, weight: jax.Array, estep: EStepBlock) -> _Stats:
    wr = estep.resp * weight[:, None]
    sums = lax.dot_general(wr, x, (((0,), (0,)), ((), ())), precision=lax.Precision.HIGHEST)
    return _Stats(jnp.sum(wr, axis=0), sums, jnp.sum(weight * estep.distortion))


def _m_step(params: DPMeansParams, stats: _Stats) -> DPMeansParams:
    occupied = stats.counts > 0
    means = stats.sums / jnp.where(occupied, stats.counts, 1.0)[:, None]
    means = jnp.where(occupied[:, None], means, params.means)
    return params._replace(means=means, active=occupied)


_VARIANT = Variant(
    name="dpmeans",
    e_step=_e_step,
    sufficient_stats=_sufficient_stats,
    m_step=_m_step,
    objective=lambda p, s: s.distortion + p.lam * jnp.sum(p.active),
    is_hard=lambda p: jnp.ones((), bool),
    means=lambda p: p.means,
)
"""The DP-means E-step and M-step for the driver's streamed ``e_pass`` (its loop is its own:
``objective`` here is J + lambda K, minimised by that loop, not a driver objective)."""


class _State(NamedTuple):
    params: DPMeansParams
    labels: jax.Array
    n_iter: jax.Array
    done: jax.Array
    saturated: jax.Array
    distortions: jax.Array
    counts: jax.Array


class _Run(NamedTuple):
    """The compiled loop's answer; J and K apart (J + lambda K is formed in the data's units)."""

    means: jax.Array
    active: jax.Array
    labels: jax.Array
    n_iter: jax.Array
    converged: jax.Array
    saturated: jax.Array
    distortion: jax.Array
    distortions: jax.Array
    counts: jax.Array


class _Map(NamedTuple):
    """How the computed problem maps to the data's: rows (X - offset) / 2^data, weights / 2^weight.

    Squared distances and weighted sums of them are 4^data 2^weight times those computed
    (exact powers of two), and lambda is divided by the same factor. For traced data (a
    ``vmap`` over data sets) the offset and ``data`` are computed on the device (:func:`_map_of`).
    """

    offset: Any
    data: int | jax.Array
    weight: int | jax.Array

    @property
    def scaled(self) -> bool:
        """Whether distances may be computed smaller (a traced exponent always may)."""
        traced = is_traced(self.data) or is_traced(self.weight)
        return traced or self.distortion_exponent != 0

    @property
    def distortion_exponent(self) -> int:
        """The power of two by which weighted squared distances are computed smaller."""
        return 2 * self.data + self.weight

    def rows(self, a: Any) -> Any:
        """(n, D) rows or means as the computation takes them (exact)."""
        return exact_ldexp(translate(a, self.offset), -self.data)

    def lam(self, lam: jax.Array) -> jax.Array:
        """Lambda / 4^data 2^weight; refused below the smallest normal, capped at the largest.

        A cap is exact in effect: lambda then exceeds every computed squared distance either
        way, and J + lambda K is formed from the given lambda.
        """
        exponent = self.distortion_exponent
        if not self.scaled:
            return lam
        dtype = lam.dtype
        if not is_traced(lam) and not is_traced(exponent):
            value = float(np.asarray(lam))
            if np.ldexp(value, -exponent) < np.finfo(dtype).tiny:
                raise ValueError(
                    f"lam={value!r} is below the smallest normal number relative to the data's "
                    f"scale (weighted squared distances are computed / 2^{exponent}, and "
                    f"lam / 2^{exponent} underflows in {np.dtype(dtype)}): every distinct row "
                    "would open a cluster; pass a larger lam."
                )
        return jnp.minimum(jnp.ldexp(lam, -exponent), jnp.asarray(jnp.finfo(dtype).max, dtype))

    def objective(self, distortion: jax.Array, counts: jax.Array, lam: jax.Array) -> jax.Array:
        """J + lambda K in the data's units from the computed J and K."""
        exponent = self.distortion_exponent
        J = jnp.ldexp(distortion, exponent) if self.scaled else distortion
        return J + lam * counts.astype(distortion.dtype)


def _map_of(X: jax.Array, weight_exponent: int, *locations: jax.Array) -> _Map:
    """The :class:`_Map` of (N, D) data and (K, D) locations.

    The offset of the data and the exponent of the translated data and locations: for traced
    data both computed on the device, from every location; for concrete data from the concrete
    locations (a traced one, a sweep's, is skipped).
    """
    if is_traced(X):
        offset = traced_offset(X)
        moved = [translate(a, offset) for a in (X, *locations)]
        return _Map(offset, traced_exponent(*moved), weight_exponent)
    offset = offset_of(X)
    moved = [translate(a, offset) for a in (X, *locations)]
    return _Map(offset, scale_exponent(*moved), weight_exponent)


@partial(jax.jit, static_argnames=("history", "block_size"))
def _dpmeans_compiled(
    X: jax.Array,
    weights: jax.Array,
    params: DPMeansParams,
    max_iter: jax.Array,
    *,
    history: int,
    block_size: int,
) -> _Run:
    """The DP-means loop; ``max_iter`` traced, the history buffers ``history`` long (static)."""
    n = X.shape[0]
    blocks = make_blocks(X, weights, block_size)
    flat_x = blocks.x.reshape(-1, X.shape[1])
    flat_w = blocks.weight.reshape(-1)

    def cond(state: _State) -> jax.Array:
        return (~state.done) & (state.n_iter < max_iter)

    def body(state: _State) -> _State:
        p = state.params
        stats, labels, _ = e_pass(_VARIANT, p, blocks)
        # the row whose own cluster lowers J + lam K most: the largest w_n d_n, not the largest
        # d_n (a light or weightless far row would block every other from opening one)
        moved = flat_x - p.means[labels]
        gains = jnp.where(flat_w > 0, flat_w * jnp.sum(moved * moved, axis=1), 0.0)
        row = jnp.argmax(gains)
        w = flat_w[row]
        wants = jnp.isfinite(gains[row]) & (gains[row] > p.lam)
        free = ~jnp.all(p.active)
        create = wants & free
        slot = jnp.argmin(p.active)  # the first inactive slot
        source = labels[row]
        wx = jnp.where(create, w, 0.0) * flat_x[row]
        wc = jnp.where(create, w, 0.0)
        sums = stats.sums.at[source].add(-wx).at[slot].add(wx)
        counts = stats.counts.at[source].add(-wc).at[slot].add(wc)
        new = _m_step(p, stats._replace(sums=sums, counts=counts))
        changed = jnp.any(labels != state.labels) | create
        distortions = state.distortions.at[state.n_iter].set(stats.distortion)
        counts = state.counts.at[state.n_iter].set(jnp.sum(p.active).astype(jnp.int32))
        return _State(new, labels, state.n_iter + 1, ~changed, wants & ~free, distortions, counts)

    state = _State(
        params=params,
        labels=jnp.full((flat_w.shape[0],), -1, jnp.int32),
        n_iter=jnp.zeros((), jnp.int32),
        done=jnp.zeros((), bool),
        saturated=jnp.zeros((), bool),
        distortions=jnp.zeros((history,), X.dtype),
        counts=jnp.zeros((history,), jnp.int32),
    )
    state = lax.while_loop(cond, body, state)
    stats, labels, _ = e_pass(_VARIANT, state.params, blocks)
    n_clusters = jnp.sum(state.params.active).astype(jnp.int32)
    recorded = jnp.arange(history) < state.n_iter
    return _Run(
        means=state.params.means,
        active=state.params.active,
        labels=labels[:n],
        n_iter=state.n_iter,
        converged=state.done,
        saturated=state.saturated,
        distortion=stats.distortion.astype(X.dtype),
        distortions=jnp.where(recorded, state.distortions, stats.distortion.astype(X.dtype)),
        counts=jnp.where(recorded, state.counts, n_clusters),
    )


@with_float64_scope
def dpmeans(
    X: Any,
    lam: Any,
    *,
    max_clusters: int | None = None,
    init_means: Any = None,
    max_iter: int = 300,
    weights: Any = None,
    block_size: int = 4096,
) -> DPMeansResult:
    """DP-means clustering: minimise J + lambda K over the means and their number K.

    Args:
        X: (N, D) data.
        lam: the penalty lambda > 0 per cluster, in squared-distance units (traced: sweeping it
            does not recompile).
        max_clusters: number of slots, an upper bound on K (default min(64, N));
            ``saturated`` says whether it bit.
        init_means: optional (K0, D) starting means, K0 <= max_clusters; by default one cluster
            at the weighted mean of X (Kulis and Jordan's start).
        max_iter: maximum number of iterations (each opens at most one cluster).
        weights: optional (N,) non-negative sample weights.
        block_size: rows per streamed E-step block.

    Returns:
        A :class:`DPMeansResult` in X's dtype.

    Raises:
        ValueError: on invalid data, lambda, weights, means or options.
    """
    X = as_data(X)
    lam = check_positive_scalar(lam, X.dtype, "lam")
    if max_clusters is None:
        max_clusters = min(64, X.shape[0])
    max_clusters = check_k(max_clusters, X.shape[0])
    max_iter = check_max_iter(max_iter)
    block_size = check_positive_int(block_size, "block_size")
    w, weight_exponent = relative_weights(weights, X.shape[0], X.dtype)
    if init_means is not None:
        init_means = check_means(init_means, X, name="init_means")
    # Far rows are fit less an exact offset (the expanded distances would cancel), and rows or
    # weights past the dtype's window by exact powers of two; data needing neither keep their
    # own array, so they run exactly as before.
    data_map = _map_of(X, weight_exponent, *(() if init_means is None else (init_means,)))
    offset = data_map.offset
    X = data_map.rows(X)
    if init_means is None:
        start = (jnp.matmul(w, X, precision=jax.lax.Precision.HIGHEST) / jnp.sum(w))[None, :]
    else:
        start = data_map.rows(init_means)
    k0 = start.shape[0]
    if k0 > max_clusters:
        raise ValueError(f"init_means has {k0} rows but max_clusters={max_clusters}.")
    means = jnp.zeros((max_clusters, X.shape[1]), X.dtype).at[:k0].set(start)
    active = jnp.arange(max_clusters) < k0
    params = DPMeansParams(means=means, active=active, lam=data_map.lam(lam))
    run = _dpmeans_compiled(
        X, w, params, max_iter, history=history_length(max_iter), block_size=block_size
    )
    means = run.means
    if offset is not None or is_traced(data_map.data) or data_map.data:
        # inactive slots hold stale values; only the active ones move back
        fitted = exact_ldexp(means, data_map.data)
        if offset is not None:
            fitted = translate(fitted, -offset)  # a subnormal sum is not flushed
        means = jnp.where(run.active[:, None], fitted, means)
    result = DPMeansResult(
        means=means,
        active=run.active,
        labels=run.labels,
        n_clusters=jnp.sum(run.active).astype(jnp.int32),
        n_iter=run.n_iter,
        converged=run.converged,
        saturated=run.saturated,
        objective=data_map.objective(run.distortion, jnp.sum(run.active), lam),
        history=data_map.objective(run.distortions, run.counts, lam),
    )
    return trim_history(result, max_iter)


@with_float64_scope
def dpmeans_objective(X: Any, means: Any, lam: Any, *, weights: Any = None) -> jax.Array:
    """J + lambda K for the given means (K = their number), each row at its nearest mean.

    Args:
        X: (N, D) data.
        means: (K, D) means.
        lam: the penalty lambda > 0.
        weights: optional (N,) sample weights.

    Returns:
        Scalar in X's dtype.
    """
    X = as_data(X)
    means = check_means(means, X, name="means")
    lam = check_positive_scalar(lam, X.dtype, "lam")
    w, weight_exponent = relative_weights(weights, X.shape[0], X.dtype)
    # J + lambda K is translation-invariant: far rows are scored less their exact offset, and
    # rows or weights past the dtype's window by exact powers of two (J mapped back).
    data_map = _map_of(X, weight_exponent, means)
    distortion = _distortion(data_map.rows(X), w, data_map.rows(means))
    return data_map.objective(distortion, jnp.asarray(means.shape[0]), lam)


@jax.jit
def _distortion(X: jax.Array, w: jax.Array, means: jax.Array) -> jax.Array:
    """J: the weighted squared distance of each row to its nearest of ``means``."""
    params = DPMeansParams(means, jnp.ones((means.shape[0],), bool), jnp.zeros((), X.dtype))
    return _sufficient_stats(X, w, _e_step(params, X)).distortion
