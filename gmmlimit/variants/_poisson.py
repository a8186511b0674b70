"""Poisson mixture with inverse temperature beta; beta = inf: hard clustering in generalised KL.

p(x) = sum_k pi_k prod_d Poisson(x_d; lambda_kd). Its log-likelihood is, up to a term free of the
parameters, -d(x, lambda_k) with the Bregman divergence of the Poisson family, the generalised
Kullback-Leibler divergence

    d(x, lambda) = sum_d [x_d ln(x_d / lambda_d) - x_d + lambda_d]   (0 ln 0 = 0),

so the tempered responsibilities r_nk ∝ pi_k exp(-beta d(x_n, lambda_k)) are EM's at beta = 1 and
tend, as beta -> inf, to the one-hot of the KL-nearest rate vector: Bregman hard clustering
(Banerjee et al., 2005), whose M-step is the cluster mean like Lloyd's. Rates are floored at
``floor`` > 0 so that a component with a zero rate never makes a count impossible.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import xlogy

from .._validation import check_k
from ._tempered import (
    MixtureStats,
    check_array,
    check_beta,
    check_mixing_weights,
    check_positive_scalar,
    distinct_rows,
    tempered_variant,
    update_weights,
)

__all__ = ["PoissonParams", "check_counts", "generalized_kl", "poisson"]


class PoissonParams(NamedTuple):
    """Parameters of the Poisson mixture.

    Attributes:
        rates: (K, D) Poisson rates > 0.
        weights: (K,) mixing weights (normalised by validation).
        beta: () inverse temperature in (0, inf]; 1 is EM, inf the hard limit.
        floor: () smallest rate an M-step may produce (> 0).
    """

    rates: jax.Array
    weights: jax.Array
    beta: jax.Array
    floor: jax.Array


def generalized_kl(x: jax.Array, rates: jax.Array) -> jax.Array:
    """(B, K) generalised KL divergences d(x_n, lambda_k) of counts (B, D) from rates (K, D)."""
    const = jnp.sum(xlogy(x, x) - x, axis=1)
    cross = lax.dot_general(
        x, jnp.log(rates), (((1,), (1,)), ((), ())), precision=lax.Precision.HIGHEST
    )
    return jnp.maximum(const[:, None] - cross + jnp.sum(rates, axis=1)[None, :], 0.0)


def _moments(params: PoissonParams, x: jax.Array, wr: jax.Array) -> jax.Array:
    return lax.dot_general(wr, x, (((0,), (0,)), ((), ())), precision=lax.Precision.HIGHEST)


def _m_step(params: PoissonParams, stats: MixtureStats) -> PoissonParams:
    occupied = stats.counts > 0
    rates = stats.moments / jnp.where(occupied, stats.counts, 1.0)[:, None]
    ok = occupied[:, None] & jnp.isfinite(rates)
    rates = jnp.where(ok, jnp.maximum(rates, params.floor), params.rates)
    return params._replace(rates=rates, weights=update_weights(params, stats))


def check_counts(x: np.ndarray) -> None:
    """Raise ValueError unless the rows ``x`` are counts the divergence can be computed for.

    Every entry must be >= 0, and the largest small enough that the terms of
    :func:`generalized_kl` (x ln x summed over the D features, a few times) stay below the
    dtype's largest number: float64 counts near 1e305 made them overflow, and the objective
    was -inf or NaN.
    """
    x = np.asarray(x)
    if np.any(x < 0):
        raise ValueError("Poisson data must be non-negative counts; X has negative entries.")
    largest = float(np.max(x, initial=0.0))
    bound = float(jnp.finfo(x.dtype).max) / 8 if jnp.issubdtype(x.dtype, jnp.floating) else 0.0
    if bound and largest > 1 and not largest * np.log(largest) * x.shape[-1] < bound:
        raise ValueError(
            f"Poisson counts as large as {largest:.3g} in {x.shape[-1]} features overflow the "
            f"generalised KL divergence in {x.dtype} (x ln x summed over the features must stay "
            f"below {bound:.3g}); rescale the counts"
            + (" or compute in float64." if x.dtype != np.float64 else ".")
        )


def _validate(X: jax.Array, params: PoissonParams) -> PoissonParams:
    if not isinstance(params, PoissonParams):
        raise ValueError(f"poisson takes PoissonParams(rates, weights, beta, floor); got {params}.")
    k = np.shape(params.rates)[0] if np.ndim(params.rates) == 2 else -1
    rates = check_array(params.rates, (k, X.shape[1]), X.dtype, "rates", positive=True)
    check_k(k, X.shape[0])
    return PoissonParams(
        rates=rates,
        weights=check_mixing_weights(params.weights, k, X.dtype),
        beta=check_beta(params.beta, X.dtype),
        floor=check_positive_scalar(params.floor, X.dtype, "floor"),
    )


def _init(key: jax.Array, X: jax.Array, k: int) -> PoissonParams:
    """Random rows, pulled halfway to the column means (never a zero rate); floor 1e-6 * mean."""
    rows = distinct_rows(key, X, k)  # first: it checks k
    mean = jnp.mean(X, axis=0)
    tiny = jnp.finfo(X.dtype).tiny
    floor = jnp.maximum(1e-6 * jnp.mean(mean), 1e3 * tiny)
    rates = jnp.maximum(0.5 * rows + 0.5 * mean, floor)
    return PoissonParams(rates, jnp.full((k,), 1.0 / k, X.dtype), jnp.ones((), X.dtype), floor)


poisson = tempered_variant(
    "poisson",
    divergence=lambda p, x: generalized_kl(x, p.rates),
    moments=_moments,
    m_step=_m_step,
    means=lambda p: p.rates,
    validate=_validate,
    init=_init,
    check_data=check_counts,
)
"""Poisson mixture; beta = 1: EM, beta = inf: hard clustering in generalised KL."""
