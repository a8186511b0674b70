"""Shared machinery of the tempered mixtures: one divergence, one inverse temperature beta.

Every variant built here has per-component divergences d_nk >= (any constant) and mixing weights
pi_k, and responsibilities

    r_nk = pi_k exp(-beta d_nk) / sum_j pi_j exp(-beta d_nj),

computed in the log domain as softmax_k(-(s_nk - s_n*) * beta) with the *score*
s_nk = d_nk - ln(pi_k) / beta and s_n* = min_k s_nk (``_logdomain.shifted_softmax``). beta is a
traced leaf of the parameters, so sweeping it never recompiles; beta = +inf is the hard limit:
the one-hot of argmin_k d_nk (the weights drop out) and the fit is hard clustering with the
divergence d. The analogue of bound 1 holds for every such variant:

    |r_nk - onehot_nk| <= (K - 1) exp(-beta * gap_n),  gap_n = (second smallest s_nk) - s_n*.

The soft objective is the tempered free energy F_beta = sum_n w_n (1/beta) ln sum_k pi_k
exp(-beta d_nk) (the log-likelihood up to a parameter-free constant at beta = 1), which EM never
decreases; at beta = +inf the objective is the hard distortion J = sum_n w_n d_n,label(n), which
the hard iteration never increases.

A variant supplies ``divergence(params, x) -> (B, K)``, ``moments(params, x, wr) -> pytree`` (the
weighted moments its M-step needs, ``wr = w_n r_nk``) and ``m_step(params, stats) -> params``;
:func:`tempered_variant` turns them into a :class:`~gmmlimit.Variant` for the one fit driver.
Parameters must be a NamedTuple with ``weights`` (K,) and ``beta`` () fields.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._logdomain import shifted_softmax
from .._validation import check_k, float64_scope, is_traced
from .._variant import Params, Scaling, Variant, temperature_field
from ..checks import (  # noqa: F401  (re-exported: the variants import them from here)
    _cast,
    check_array,
    check_beta,
    check_mixing_weights,
    check_positive_scalar,
)

__all__ = [
    "MixtureStats",
    "TemperedEStep",
    "check_beta",
    "check_mixing_weights",
    "check_positive_scalar",
    "distinct_rows",
    "tempered_assign",
    "tempered_variant",
    "update_weights",
]


class TemperedEStep(NamedTuple):
    """The E-step of one block: :class:`~gmmlimit.EStepBlock`'s fields, then two more.

    Attributes:
        resp: (B, K) responsibilities.
        labels: (B,) int32 argmin of the score (ties: the nearest by d, then the lowest index).
        log_lik: (B,) the per-row free energy (1/beta) ln sum_k pi_k exp(-beta d_nk); at
            beta = inf its limit -d_n,label.
        distortion: (B,) d_n,label, the divergence to the assigned component.
        gap: (B,) the score gap to the runner-up (inf when K = 1), for the bound-1 analogue.
        params: the parameters the E-step ran at, passed on to the moments (e.g. as the centre of
            numerically stable centred second moments).
    """

    resp: jax.Array
    labels: jax.Array
    log_lik: jax.Array
    distortion: jax.Array
    gap: jax.Array
    params: Any


class MixtureStats(NamedTuple):
    """Weighted statistics of a tempered mixture, summed over rows.

    Attributes:
        counts: (K,) sum_n w_n r_nk.
        total_weight: () sum_n w_n.
        free_energy: () sum_n w_n (1/beta) ln sum_k pi_k exp(-beta d_nk).
        distortion: () sum_n w_n d_n,label (the hard objective J).
        moments: the variant's own weighted moments (a pytree).
    """

    counts: jax.Array
    total_weight: jax.Array
    free_energy: jax.Array
    distortion: jax.Array
    moments: Any


def inverse_to_temperature(beta: jax.Array) -> jax.Array:
    """The temperature 1 / beta, exactly 0 at beta = inf."""
    finite = jnp.isfinite(beta)
    return jnp.where(finite, 1.0 / jnp.where(finite, beta, 1.0), 0.0)


def tempered_assign(
    divergence: jax.Array, weights: jax.Array, beta: jax.Array, params: Any = None
) -> TemperedEStep:
    """Tempered responsibilities from divergences, mixing weights and beta (log domain).

    Args:
        divergence: (B, K) divergences d_nk (finite or +inf).
        weights: (K,) mixing weights pi_k >= 0, read as the distribution pi / sum(pi) (a zero
            weight switches the component off while beta is finite; at beta = inf the weights
            play no part).
        beta: scalar inverse temperature in (0, inf].
        params: carried into the result for the moments.

    Returns:
        The :class:`TemperedEStep`.
    """
    k = jnp.shape(weights)[0]
    if jnp.ndim(divergence) != 2 or jnp.shape(divergence)[1] != k:
        raise ValueError(
            f"divergence must have shape (B, K) with K = {k} (the weights' length); got shape "
            f"{jnp.shape(divergence)}."
        )
    tau = inverse_to_temperature(beta)
    alive = weights > 0
    total = jnp.sum(weights)  # the weights are >= 0: the live ones make the whole sum
    # ln p_k of p = pi / sum(pi): the weights are a distribution; rounding leaves their sum a
    # few ulps from 1, which tau ln(sum) would carry into the free energy at small beta
    log_w = jnp.log(jnp.where(alive, weights, 1.0)) - jnp.log(total)
    prior = jnp.where(alive, tau * log_w, jnp.where(tau > 0, -jnp.inf, 0.0))
    score = divergence - prior[None, :]
    resp, labels, gap, lse = shifted_softmax(score, tau)
    # Of components whose scores tie, the nearest: at small beta tau ln p_k swamps d_k in the
    # score (float64 at beta = 1e-20, equal weights: every row tied, all labels 0); elsewhere
    # the tied scores are the lowest index's as before (the hard limit: the scores are d).
    tied = gap == 0
    labels = jnp.argmin(jnp.where(tied, divergence, jnp.inf), axis=1).astype(labels.dtype)
    runner_up = jnp.min(jnp.where(jax.nn.one_hot(labels, k, dtype=bool), jnp.inf, gap), axis=1)
    best_score = jnp.take_along_axis(score, labels[:, None], axis=1)[:, 0]
    nearest = jnp.take_along_axis(divergence, labels[:, None], axis=1)[:, 0]
    warm = _free_energy_near_one(divergence, weights / total, alive, beta, tau)
    cold = tau * lse - best_score
    free = jnp.where(tau > 0, jnp.where(warm.near, warm.value, cold), -nearest)
    return TemperedEStep(resp, labels, free, nearest, runner_up, params)


class _Warm(NamedTuple):
    value: jax.Array  # (B,) the free energy -d_ref + tau log1p(x)
    near: jax.Array  # (B,) bool, x >= -1/2: where this value is the accurate one


def _free_energy_near_one(
    divergence: jax.Array, weights: jax.Array, alive: jax.Array, beta: jax.Array, tau: jax.Array
) -> _Warm:
    """The free energy tau ln sum_k p_k exp(-beta d_k) where the sum is near one (small beta).

    With p = pi / sum(pi) (the mixing weights are a distribution; validation normalises them),
    d_ref = min_k d_k over live components and g_k = beta (d_k - d_ref) >= 0, the free energy is
    -d_ref + tau log1p(x), x = sum_k p_k expm1(-g_k) in (-1, 0]. Every term of x has one sign,
    so x has a small relative error, and so has tau log1p(x) while x >= -1/2. The score form
    tau lse - s* subtracts two numbers near tau ln p_k instead: as beta -> 0 its rounding, about
    eps tau |ln p|, swamps the value (float32 at beta = 1e-8 was off by 8 per row, float64 at
    beta = 1e-300 by 1e284). Where x < -1/2, |tau ln(1 + x)| >= tau ln 2 and the score form is
    accurate.

    Args:
        divergence: (B, K) divergences.
        weights: (K,) mixing weights p, normalised.
        alive: (K,) bool, p > 0.
        beta: () inverse temperature.
        tau: () 1 / beta.

    Returns:
        The value and where it is to be used.
    """
    live = jnp.where(alive[None, :], divergence, jnp.inf)
    ref = jnp.min(live, axis=1, keepdims=True)
    # the reference component (and every row whose live divergences are all inf) adds 0
    above = live != ref
    delta = jnp.where(above, live - ref, 0.0)
    g = jnp.where(above, beta * delta, 0.0)
    x = jnp.sum(weights[None, :] * jnp.expm1(-g), axis=1)  # a switched-off weight adds 0
    value = -ref[:, 0] + tau * jnp.log1p(x)
    # A term p_k g_k below the smallest normal number is flushed to 0 on the CPU (beta near
    # 1e-306 in float64), and with it that component's share of the correction. Where every g_k
    # is below eps, F = -d_ref - sum_k p_k (d_k - d_ref) to first order, within eps of itself
    # (the next term is g_k / 2 times smaller): that form is taken wherever a term was flushed.
    finfo = jnp.finfo(divergence.dtype)
    counted = above & alive[None, :]  # a switched-off component (divergence inf here) adds 0
    small = jnp.all(jnp.where(counted, g < finfo.eps, True), axis=1)
    flushed = small & jnp.any(counted & (weights[None, :] * g < finfo.tiny), axis=1)
    finite = jnp.where(counted & jnp.isfinite(delta), delta, 0.0)  # (no 0 * inf, in a gradient)
    first_order = -ref[:, 0] - jnp.sum(weights[None, :] * finite, axis=1)
    return _Warm(jnp.where(flushed, first_order, value), flushed | (x >= -0.5))


def update_weights(params: Params, stats: MixtureStats) -> jax.Array:
    """The M-step of the mixing weights: pi_k = counts_k / total weight."""
    return stats.counts / stats.total_weight


def distinct_rows(key: jax.Array, X: jax.Array, k: int) -> jax.Array:
    """Rows of X at k distinct positions, drawn uniformly (jit-able): the usual seed of an init.

    The positions are distinct, not the values: data with repeated rows can give equal rows,
    hence equal components, which EM keeps equal (draw several starts: ``gl.restarts``).

    Args:
        key: a ``jax.random`` key.
        X: (N, D) data, N >= k.
        k: the number of rows.

    Returns:
        (k, D) rows of X.

    Raises:
        ValueError: if k is not an integer in [1, N] (a static check, also under ``jit``).
    """
    k = check_k(k, X.shape[0])
    index = jax.random.choice(key, X.shape[0], (k,), replace=False)
    return X[index]


def _in_data_scope(init: Callable[[jax.Array, Any, int], Params]) -> Callable[..., Params]:
    """``init`` run under the float64 scope of its data (its second argument).

    Float64 data give float64 parameters with JAX's x64 flag off, as every tool computes them
    (called directly, an init truncated them to float32).
    """

    @functools.wraps(init)
    def run(key: jax.Array, X: Any, k: int) -> Params:
        with float64_scope(X):
            return init(key, X, k)

    return run


def tempered_variant(
    name: str,
    *,
    divergence: Callable[[Params, jax.Array], jax.Array],
    moments: Callable[[Params, jax.Array, jax.Array], Any],
    m_step: Callable[[Params, MixtureStats], Params],
    means: Callable[[Params], jax.Array],
    validate: Callable[[jax.Array, Params], Params],
    hard_stop: str = "labels",
    init: Callable[[jax.Array, jax.Array, int], Params] | None = None,
    check_data: Callable[[np.ndarray], None] | None = None,
    scaling: Scaling | None = None,
) -> Variant:
    """Build a :class:`~gmmlimit.Variant` from a divergence, weighted moments and an M-step.

    Args:
        name: the variant's identifier.
        divergence: ``(params, x (B, D)) -> (B, K)`` divergences d_nk.
        moments: ``(params, x (B, D), wr (B, K)) -> pytree`` weighted moments of a block, where
            ``wr = w_n r_nk`` (zero on padding rows) and params are those of the E-step.
        m_step: ``(params, stats: MixtureStats) -> params``.
        means: ``(params) -> (K, D)`` component locations.
        validate: eager ``(X, params) -> params`` checks and dtype casts of the parameters; it
            may read only ``X.shape`` and ``X.dtype`` (data values are ``check_data``'s).
        hard_stop: how a beta = inf fit stops. ``"labels"`` (default): the driver's hard rule,
            no label changed (right when the M-step is a function of the partition alone, as for
            every closed-form variant here). ``"objective"``: the soft rule on the free energy,
            which at beta = inf is -J (so the history holds -J); for M-steps with inner latent
            variables (Student-t scale weights), whose parameters keep moving after the labels
            freeze.
        init: optional jit-able ``(key, X, k) -> params`` (any beta): restarts, annealing and
            the scikit-learn wrapper call it.
        check_data: optional ``(x (n, D) numpy) -> None`` raising ValueError on rows the model
            cannot take; run on the whole data in memory and on every chunk out of core.
        scaling: optional :class:`~gmmlimit._variant.Scaling` (usually
            :func:`~gmmlimit._variant.density_scaling`): data past the dtype's scale window are
            then fit rescaled by a power of two, exactly.

    Returns:
        The variant: objective the free energy (maximised), -J at beta = inf; temperature
        ``beta`` with its hard limit at +inf.
    """
    if hard_stop not in ("labels", "objective"):
        raise ValueError(f"hard_stop must be 'labels' or 'objective'; got {hard_stop!r}.")
    by_labels = hard_stop == "labels"

    def e_step(params: Params, x: jax.Array) -> TemperedEStep:
        d_nk = divergence(params, x)
        expected = (x.shape[0], jnp.shape(params.weights)[0])
        if jnp.shape(d_nk) != expected:  # at trace time: before any compiled code runs
            raise ValueError(
                f"the divergence of variant {name!r} must return (B, K) = {expected} for a "
                f"block of B = {x.shape[0]} rows and K = {expected[1]} components; it returned "
                f"shape {jnp.shape(d_nk)}."
            )
        return tempered_assign(d_nk, params.weights, params.beta, params)

    def sufficient_stats(x: jax.Array, weight: jax.Array, estep: TemperedEStep) -> MixtureStats:
        wr = estep.resp * weight[:, None]
        return MixtureStats(
            counts=jnp.sum(wr, axis=0),
            total_weight=jnp.sum(weight),
            free_energy=jnp.sum(weight * estep.log_lik),
            distortion=jnp.sum(weight * estep.distortion),
            moments=moments(estep.params, x, wr),
        )

    def objective(params: Params, stats: MixtureStats) -> jax.Array:
        return stats.free_energy

    def is_hard(params: Params) -> jax.Array:
        return jnp.isinf(params.beta) & by_labels

    def log_odds_gap(params: Params, x: jax.Array) -> jax.Array:
        gap = e_step(params, x).gap
        return jnp.where(gap > 0, params.beta * gap, 0.0)

    return Variant(
        name=name,
        e_step=e_step,
        sufficient_stats=sufficient_stats,
        m_step=m_step,
        objective=objective,
        is_hard=is_hard,
        means=means,
        relocate=None,
        validate=validate,
        init=None if init is None else _in_data_scope(init),
        temperature=temperature_field("beta", math.inf),
        check_data=check_data,
        log_odds_gap=log_odds_gap,
        scaling=scaling,
    )


def is_concrete(*values: Any) -> bool:
    """Whether none of ``values`` is traced (their values can be checked eagerly)."""
    return not any(is_traced(v) for v in values)
