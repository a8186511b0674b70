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

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._logdomain import shifted_softmax
from .._validation import is_traced
from .._variant import Params, Variant

__all__ = [
    "MixtureStats",
    "TemperedEStep",
    "check_beta",
    "check_mixing_weights",
    "check_positive_scalar",
    "tempered_assign",
    "tempered_variant",
    "update_weights",
]


class TemperedEStep(NamedTuple):
    """The E-step of one block: :class:`~gmmlimit.EStepBlock`'s fields, then two more.

    Attributes:
        resp: (B, K) responsibilities.
        labels: (B,) int32 argmin of the score (ties: lowest index).
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
        weights: (K,) mixing weights pi_k >= 0 (a zero weight switches the component off while
            beta is finite; at beta = inf the weights play no part).
        beta: scalar inverse temperature in (0, inf].
        params: carried into the result for the moments.

    Returns:
        The :class:`TemperedEStep`.
    """
    tau = inverse_to_temperature(beta)
    alive = weights > 0
    log_w = jnp.log(jnp.where(alive, weights, 1.0))
    prior = jnp.where(alive, tau * log_w, jnp.where(tau > 0, -jnp.inf, 0.0))
    score = divergence - prior[None, :]
    resp, labels, gap, lse = shifted_softmax(score, tau)
    k = divergence.shape[1]
    runner_up = jnp.min(jnp.where(jax.nn.one_hot(labels, k, dtype=bool), jnp.inf, gap), axis=1)
    best_score = jnp.take_along_axis(score, labels[:, None], axis=1)[:, 0]
    nearest = jnp.take_along_axis(divergence, labels[:, None], axis=1)[:, 0]
    free = jnp.where(tau > 0, tau * lse - best_score, -nearest)
    return TemperedEStep(resp, labels, free, nearest, runner_up, params)


def update_weights(params: Params, stats: MixtureStats) -> jax.Array:
    """The M-step of the mixing weights: pi_k = counts_k / total weight."""
    return stats.counts / stats.total_weight


def tempered_variant(
    name: str,
    *,
    divergence: Callable[[Params, jax.Array], jax.Array],
    moments: Callable[[Params, jax.Array, jax.Array], Any],
    m_step: Callable[[Params, MixtureStats], Params],
    means: Callable[[Params], jax.Array],
    validate: Callable[[jax.Array, Params], Params],
    hard_stop: str = "labels",
) -> Variant:
    """Build a :class:`~gmmlimit.Variant` from a divergence, weighted moments and an M-step.

    Args:
        name: the variant's identifier.
        divergence: ``(params, x (B, D)) -> (B, K)`` divergences d_nk.
        moments: ``(params, x (B, D), wr (B, K)) -> pytree`` weighted moments of a block, where
            ``wr = w_n r_nk`` (zero on padding rows) and params are those of the E-step.
        m_step: ``(params, stats: MixtureStats) -> params``.
        means: ``(params) -> (K, D)`` component locations.
        validate: eager ``(X, params) -> params`` checks and dtype casts.
        hard_stop: how a beta = inf fit stops. ``"labels"`` (default): the driver's hard rule,
            no label changed (right when the M-step is a function of the partition alone, as for
            every closed-form variant here). ``"objective"``: the soft rule on the free energy,
            which at beta = inf is -J (so the history holds -J); for M-steps with inner latent
            variables (Student-t scale weights), whose parameters keep moving after the labels
            freeze.

    Returns:
        The variant (soft objective: the free energy, maximised; hard: the distortion J, or -J
        with ``hard_stop="objective"``).
    """
    if hard_stop not in ("labels", "objective"):
        raise ValueError(f"hard_stop must be 'labels' or 'objective'; got {hard_stop!r}.")
    by_labels = hard_stop == "labels"

    def e_step(params: Params, x: jax.Array) -> TemperedEStep:
        return tempered_assign(divergence(params, x), params.weights, params.beta, params)

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
        if not by_labels:
            return stats.free_energy
        return jnp.where(jnp.isinf(params.beta), stats.distortion, stats.free_energy)

    def is_hard(params: Params) -> jax.Array:
        return jnp.isinf(params.beta) & by_labels

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
        maximize=True,
    )


def check_beta(beta: Any, dtype: Any, name: str = "beta") -> jax.Array:
    """Validate an inverse temperature: a scalar in (0, +inf] (+inf is the hard limit).

    Raises:
        ValueError: if beta is not a scalar, is NaN, or is <= 0.
    """
    if not is_traced(beta):
        host = np.asarray(beta)
        if host.dtype == object or not (
            np.issubdtype(host.dtype, np.floating) or np.issubdtype(host.dtype, np.integer)
        ):
            raise ValueError(f"{name} must be a real number in (0, inf]; got {beta!r}.")
        if host.ndim != 0:
            raise ValueError(f"{name} must be a scalar; got shape {host.shape}.")
        if np.isnan(host) or host <= 0:
            raise ValueError(f"{name} must be in (0, inf] (inf is the hard limit); got {beta!r}.")
    beta = jnp.asarray(beta, dtype=dtype)
    if beta.ndim != 0:
        raise ValueError(f"{name} must be a scalar; got shape {tuple(beta.shape)}.")
    return beta


def check_positive_scalar(value: Any, dtype: Any, name: str) -> jax.Array:
    """Validate a finite scalar > 0 (a covariance floor, a rate floor, ...)."""
    if not is_traced(value):
        host = np.asarray(value)
        if host.dtype == object or host.ndim != 0 or not np.issubdtype(host.dtype, np.number):
            raise ValueError(f"{name} must be a real scalar > 0; got {value!r}.")
        if not np.isfinite(host) or host <= 0:
            raise ValueError(f"{name} must be a finite number > 0; got {value!r}.")
        if np.asarray(host, dtype=np.dtype(dtype)) == 0:
            raise ValueError(f"{name}={value!r} underflows to 0 in {np.dtype(dtype)}.")
    return jnp.asarray(value, dtype=dtype)


def check_mixing_weights(weights: Any, k: int, dtype: Any, name: str = "weights") -> jax.Array:
    """Validate mixing weights: shape (K,), finite, >= 0, positive sum; returned normalised.

    Raises:
        ValueError: on a wrong shape, NaN/inf or negative entries, or an all-zero vector.
    """
    if not is_traced(weights) and not isinstance(weights, jax.Array):
        weights = np.asarray(weights)
    if tuple(weights.shape) != (k,):
        raise ValueError(f"{name} must have shape (K,) = ({k},); got {tuple(weights.shape)}.")
    if not is_traced(weights):
        host = np.asarray(weights, dtype=np.float64)
        if not np.all(np.isfinite(host)) or np.any(host < 0) or not np.any(host > 0):
            raise ValueError(f"{name} must be finite, >= 0 and not all zero; got {host}.")
    weights = jnp.asarray(weights, dtype=dtype)
    return weights / jnp.sum(weights)


def check_array(value: Any, shape: tuple[int, ...], dtype: Any, name: str) -> jax.Array:
    """Validate a finite real parameter array of an exact shape and cast it to ``dtype``.

    Raises:
        ValueError: on a wrong shape or NaN/inf entries.
    """
    if not is_traced(value) and not isinstance(value, jax.Array):
        value = np.asarray(value)
    if tuple(value.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}; got {tuple(value.shape)}.")
    if not is_traced(value):
        host = np.asarray(value)
        if not np.issubdtype(host.dtype, np.number) or np.issubdtype(
            host.dtype, np.complexfloating
        ):
            raise ValueError(f"{name} must hold real numbers; got dtype {host.dtype}.")
        if not np.all(np.isfinite(host)):
            raise ValueError(f"{name} contains NaN or inf values.")
    return jnp.asarray(value, dtype=dtype)


def is_concrete(*values: Any) -> bool:
    """Whether none of ``values`` is traced (their values can be checked eagerly)."""
    return not any(is_traced(v) for v in values)
