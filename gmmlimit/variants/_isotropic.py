"""The isotropic, equal-prior Gaussian mixture: the model of record.

p(x) = sum_k (1/K) N(x; mu_k, sigma2 I), with sigma2 >= 0 fixed and shared. At sigma2 = 0 the
responsibilities are the one-hot of the nearest mean and the fit is Lloyd's K-means; the same
functions serve both.

Empty components:
    * soft fit (sigma2 > 0): a component whose total responsibility underflows to 0 keeps its
      previous mean;
    * hard fit (sigma2 = 0): an empty cluster is moved to the point farthest from its assigned
      centre (scikit-learn's rule): that point's weight leaves its old cluster's statistics and
      becomes the new cluster's. Several empty clusters take the farthest points in order of
      decreasing distance, the lowest-indexed empty cluster first.
"""

from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from .._logdomain import pairwise_sq_dists_partial, shifted_softmax
from .._validation import check_k, check_means, check_sigma2, is_soft, with_float64_scope
from .._variant import (
    EStepBlock,
    FarPoints,
    Scaling,
    Temperature,
    Variant,
    log2_shift,
    scale_fields,
    temperature_field,
    translate_field,
    with_engine,
)
from ._isotropic_engines import fast_e_step

# assign, log_likelihood_from_stats and validate_params serve the isotropic front ends
# (gmmlimit.em, the diagnostics, annealing)
__all__ = [
    "TEMPERATURE",
    "IsotropicParams",
    "IsotropicStats",
    "assign",
    "isotropic",
    "isotropic_bounded",
    "log_likelihood_from_stats",
    "model",
    "validate_params",
]


class IsotropicParams(NamedTuple):
    """Parameters of the isotropic mixture.

    Attributes:
        means: (K, D) component means.
        sigma2: scalar shared variance >= 0 (a traced leaf: sweeping it never recompiles).
    """

    means: jax.Array
    sigma2: jax.Array


class IsotropicStats(NamedTuple):
    """Weighted sufficient statistics of the isotropic mixture, summed over rows.

    Attributes:
        counts: (K,) sum_n w_n r_nk.
        sums: (K, D) sum_n w_n r_nk x_n.
        total_weight: () sum_n w_n.
        log_lik_core: () sum_n w_n [lse_n - d_n* / (2 sigma2)] (0 at sigma2 = 0).
        distortion: () sum_n w_n d_n*, the K-means objective J.
    """

    counts: jax.Array
    sums: jax.Array
    total_weight: jax.Array
    log_lik_core: jax.Array
    distortion: jax.Array


def assign(params: IsotropicParams, x: jax.Array) -> tuple[EStepBlock, jax.Array]:
    """The E-step on one block, also returning the per-row log-sum-exp.

    Args:
        params: the current parameters.
        x: (B, D) rows.

    Returns:
        ``(estep, lse)``: the :class:`EStepBlock` and lse (B,) in [0, ln K].
    """
    means, sigma2 = params
    soft = is_soft(sigma2)
    means_sq = jnp.sum(means * means, axis=1)
    partial = pairwise_sq_dists_partial(x, means, means_sq)
    resp, labels, _, lse = shifted_softmax(partial, jnp.where(soft, 2.0 * sigma2, 0.0))
    # The assigned distance, computed directly (no cancellation), as scikit-learn's inertia.
    diff = x - means[labels]
    nearest = jnp.sum(diff * diff, axis=1)
    log_lik = jnp.where(soft, lse - nearest / (2.0 * jnp.where(soft, sigma2, 1.0)), 0.0)
    return EStepBlock(resp=resp, labels=labels, log_lik=log_lik, distortion=nearest), lse


def _e_step(params: IsotropicParams, x: jax.Array) -> EStepBlock:
    return assign(params, x)[0]


def _sufficient_stats(x: jax.Array, weight: jax.Array, estep: EStepBlock) -> IsotropicStats:
    weighted = estep.resp * weight[:, None]
    sums = lax.dot_general(weighted, x, (((0,), (0,)), ((), ())), precision=lax.Precision.HIGHEST)
    return IsotropicStats(
        counts=jnp.sum(weighted, axis=0),
        sums=sums,
        total_weight=jnp.sum(weight),
        # rows of weight 0 add nothing, even a log-likelihood of -inf (no 0 * inf)
        log_lik_core=jnp.sum(jnp.where(weight > 0, weight * estep.log_lik, 0.0)),
        distortion=jnp.sum(weight * estep.distortion),
    )


def _m_step(params: IsotropicParams, stats: IsotropicStats) -> IsotropicParams:
    occupied = stats.counts > 0
    safe = jnp.where(occupied, stats.counts, 1.0)
    new_means = stats.sums / safe[:, None]
    ok = occupied[:, None] & jnp.isfinite(new_means)
    return IsotropicParams(means=jnp.where(ok, new_means, params.means), sigma2=params.sigma2)


def _log_two_pi(sigma2: jax.Array) -> jax.Array:
    """ln(2 pi sigma2), finite for every finite sigma2 > 0 (2 pi sigma2 overflows near the max)."""
    fits = sigma2 <= jnp.finfo(sigma2.dtype).max / 8
    return jnp.where(
        fits,
        jnp.log(2.0 * jnp.pi * jnp.where(fits, sigma2, 1.0)),
        math.log(2.0 * math.pi) + jnp.log(sigma2),
    )


def log_likelihood_from_stats(params: IsotropicParams, stats: IsotropicStats) -> jax.Array:
    """The log-likelihood l from the summed statistics (DESIGN.md section 1).

    Args:
        params: parameters (K is read from the means).
        stats: statistics summed over all rows.

    Returns:
        Scalar ``-W ln K - (W D / 2) ln(2 pi sigma2) + sum_n w_n [lse_n - d_n*/(2 sigma2)]`` with
        W the total weight; ``ln(2 pi sigma2)`` is taken as ``ln(2 pi) + ln(sigma2)`` where
        ``2 pi sigma2`` would overflow, so it is finite for every finite sigma2 > 0. Not finite
        at sigma2 = 0 (there the hard objective is used).
    """
    k, d = params.means.shape
    w = stats.total_weight
    return -w * math.log(k) - 0.5 * w * d * _log_two_pi(params.sigma2) + stats.log_lik_core


def _objective(params: IsotropicParams, stats: IsotropicStats) -> jax.Array:
    soft = is_soft(params.sigma2)
    safe = IsotropicParams(params.means, jnp.where(soft, params.sigma2, 1.0))
    return jnp.where(soft, log_likelihood_from_stats(safe, stats), stats.distortion)


def _is_hard(params: IsotropicParams) -> jax.Array:
    return ~is_soft(params.sigma2)


def _means(params: IsotropicParams) -> jax.Array:
    return params.means


def _relocate(params: IsotropicParams, stats: IsotropicStats, far: FarPoints) -> IsotropicStats:
    """Move empty clusters to the farthest points (scikit-learn's rule), on the statistics."""
    del params
    k = stats.counts.shape[0]
    empty = stats.counts == 0
    (empty_ids,) = jnp.nonzero(empty, size=k, fill_value=k)

    def move(i: jax.Array, carry: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        counts, sums = carry
        target = empty_ids[i]
        ok = (target < k) & far.valid[i]
        target = jnp.minimum(target, k - 1)
        source = far.label[i]
        w = jnp.where(ok, far.weight[i], 0.0)
        wx = w * far.x[i]
        sums = sums.at[source].add(-wx)
        counts = counts.at[source].add(-w)
        sums = sums.at[target].set(jnp.where(ok, wx, sums[target]))
        counts = counts.at[target].set(jnp.where(ok, w, counts[target]))
        return counts, sums

    counts, sums = lax.fori_loop(0, k, move, (stats.counts, stats.sums))
    return stats._replace(counts=counts, sums=sums)


def validate_params(
    X: jax.Array, params: IsotropicParams, *, for_fit: bool = True
) -> IsotropicParams:
    """Check means and sigma2 against the data and cast them to its dtype (eager).

    Args:
        X: validated (N, D) data.
        params: the parameters to check.
        for_fit: also require K <= N.

    Returns:
        The parameters in X's dtype.

    Raises:
        ValueError: on a wrong type or shape, non-finite means, or a bad sigma2.
    """
    if not isinstance(params, IsotropicParams):
        raise ValueError(
            f"the isotropic variant takes IsotropicParams(means, sigma2); got {type(params)}."
        )
    means = check_means(params.means, X, name="means", for_fit=for_fit)
    sigma2 = check_sigma2(params.sigma2, X.dtype)
    if sigma2.ndim != 0:
        raise ValueError(f"sigma2 must be a scalar; got shape {tuple(sigma2.shape)}.")
    return IsotropicParams(means=means, sigma2=sigma2)


TEMPERATURE: Temperature = temperature_field("sigma2", 0.0)
"""The model's temperature: the shared variance sigma2, hard limit 0 (K-means)."""


@with_float64_scope  # float64 data give float64 means with x64 off, as in the tools
def _init(key: jax.Array, X: jax.Array, k: int) -> IsotropicParams:
    """Random distinct rows as means, at sigma2 = 0 (jit-able; tools set the temperature)."""
    index = jax.random.choice(key, X.shape[0], (check_k(k, X.shape[0]),), replace=False)
    return IsotropicParams(X[index], jnp.zeros((), X.dtype))


def _log_odds_gap(params: IsotropicParams, x: jax.Array) -> jax.Array:
    """(B,) Delta_n / (2 sigma2): bound 1 reads |r_nk - onehot_nk| <= (K - 1) exp(-that).

    Delta_n is the squared-distance gap between the runner-up and the nearest mean, taken from
    the nearest mean's label, so it is exactly 0 only on a tie; at sigma2 = 0 the value is +inf
    without a tie and 0 with one.
    """
    means = params.means
    partial = pairwise_sq_dists_partial(x, means, jnp.sum(means * means, axis=1))
    _, labels, gap, _ = shifted_softmax(partial, jnp.zeros((), x.dtype))
    k = means.shape[0]
    delta = jnp.min(jnp.where(jax.nn.one_hot(labels, k, dtype=bool), jnp.inf, gap), axis=1)
    soft = is_soft(params.sigma2)
    scaled = delta / (2.0 * jnp.where(soft, params.sigma2, 1.0))
    return jnp.where(soft, scaled, jnp.where(delta > 0, jnp.inf, 0.0))


def _scaled(params: IsotropicParams, e: int) -> IsotropicParams:
    """The parameters of X / 2^e: means / 2^e, sigma2 / 4^e."""
    return scale_fields(params, e, {"means": 1, "sigma2": 2})


def _scaled_objective(
    value: jax.Array, params: IsotropicParams, total_weight: jax.Array, d: int, e: int
) -> jax.Array:
    """The log-likelihood l' - W D e ln 2 (sigma2 > 0); -J = 4^e (-J') at sigma2 = 0."""
    shift = log2_shift(total_weight, d, e, value.dtype)
    return jnp.where(is_soft(params.sigma2), value - shift, jnp.ldexp(value, 2 * e))


def _scaled_distortion(
    value: jax.Array, params: IsotropicParams, total_weight: jax.Array, d: int, e: int
) -> jax.Array:
    """J = 4^e J' (squared distances)."""
    return jnp.ldexp(value, 2 * e)


SCALING = Scaling(
    params=_scaled,
    objective=_scaled_objective,
    distortion=_scaled_distortion,
    translate=partial(translate_field, field="means"),
)
"""How the model moves under X / 2^e (the generic fit paths; ``gmmlimit.em`` and the isotropic
entry points use ``_rescale.Scale``, the same law with relative weights)."""


model = Variant(
    name="isotropic",
    e_step=_e_step,
    sufficient_stats=_sufficient_stats,
    m_step=_m_step,
    objective=_objective,
    is_hard=_is_hard,
    means=_means,
    relocate=_relocate,
    validate=validate_params,
    init=_init,
    temperature=TEMPERATURE,
    log_odds_gap=_log_odds_gap,
    scaling=SCALING,
)
"""The model alone: every function above, with the driver's generic E-step (``e_step`` then
``sufficient_stats`` block by block). It is the reference the fast engines are tested against."""

isotropic = with_engine(model, fast_e_step(IsotropicStats))
"""The isotropic equal-prior Gaussian mixture with fixed shared variance (sigma2 = 0: K-means):
:data:`model` with the fast E-step engines of :mod:`._isotropic_engines` attached (same values up
to rounding; the compiled CPU kernel, the wide sweep product, the reference derivative)."""

isotropic_bounded = with_engine(model, fast_e_step(IsotropicStats, skipping=True))
""":data:`isotropic` whose hard fits skip, with Hamerly's bounds, the rows whose label cannot
change (exact: the same iterates as Lloyd's, bit for bit; see ``_isotropic_engines.Bounds``)."""
