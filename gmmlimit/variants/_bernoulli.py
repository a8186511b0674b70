"""Bernoulli mixture with inverse temperature beta; beta = inf: hard clustering in logistic loss.

p(x) = sum_k pi_k prod_d p_kd^x_d (1 - p_kd)^(1 - x_d) for x in {0, 1}^D (fractions in [0, 1]
are accepted too). Its log-likelihood is -d(x, p_k) plus a term free of the parameters, with the
Bregman divergence of the Bernoulli family, the logistic loss (binary relative entropy)

    d(x, p) = sum_d [x_d ln(x_d / p_d) + (1 - x_d) ln((1 - x_d) / (1 - p_d))],

which for binary x is the cross-entropy -sum_d [x_d ln p_d + (1 - x_d) ln(1 - p_d)]. beta = 1 is
EM; beta -> inf gives Bregman hard clustering with the logistic loss, whose M-step is the cluster
mean. Probabilities are clipped to [floor, 1 - floor] so that no count becomes impossible.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import xlogy

from .._validation import check_k, is_traced
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

__all__ = ["BernoulliParams", "bernoulli", "check_unit_interval", "logistic_loss"]


class BernoulliParams(NamedTuple):
    """Parameters of the Bernoulli mixture.

    Attributes:
        probs: (K, D) success probabilities in (0, 1).
        weights: (K,) mixing weights (normalised by validation).
        beta: () inverse temperature in (0, inf]; 1 is EM, inf the hard limit.
        floor: () M-step probabilities are clipped to [floor, 1 - floor] (0 < floor < 1/2).
    """

    probs: jax.Array
    weights: jax.Array
    beta: jax.Array
    floor: jax.Array


def _dot(a: jax.Array, b: jax.Array) -> jax.Array:
    return lax.dot_general(a, b, (((1,), (1,)), ((), ())), precision=lax.Precision.HIGHEST)


def logistic_loss(x: jax.Array, probs: jax.Array) -> jax.Array:
    """(B, K) Bernoulli Bregman divergences d(x_n, p_k) of rows (B, D) from probabilities (K, D)."""
    const = jnp.sum(xlogy(x, x) + xlogy(1.0 - x, 1.0 - x), axis=1)
    cross = _dot(x, jnp.log(probs)) + _dot(1.0 - x, jnp.log1p(-probs))
    return jnp.maximum(const[:, None] - cross, 0.0)


def _moments(params: BernoulliParams, x: jax.Array, wr: jax.Array) -> jax.Array:
    return lax.dot_general(wr, x, (((0,), (0,)), ((), ())), precision=lax.Precision.HIGHEST)


def _m_step(params: BernoulliParams, stats: MixtureStats) -> BernoulliParams:
    occupied = stats.counts > 0
    probs = stats.moments / jnp.where(occupied, stats.counts, 1.0)[:, None]
    ok = occupied[:, None] & jnp.isfinite(probs)
    probs = jnp.where(ok, jnp.clip(probs, params.floor, 1.0 - params.floor), params.probs)
    return params._replace(probs=probs, weights=update_weights(params, stats))


def check_unit_interval(x: np.ndarray) -> None:
    """Raise ValueError unless every entry of the rows ``x`` lies in [0, 1]."""
    x = np.asarray(x)
    if np.any(x < 0) or np.any(x > 1):
        raise ValueError("Bernoulli data must lie in [0, 1]; X has entries outside.")


def _validate(X: jax.Array, params: BernoulliParams) -> BernoulliParams:
    if not isinstance(params, BernoulliParams):
        raise ValueError(
            f"bernoulli takes BernoulliParams(probs, weights, beta, floor); got {params}."
        )
    k = np.shape(params.probs)[0] if np.ndim(params.probs) == 2 else -1
    probs = check_array(params.probs, (k, X.shape[1]), X.dtype, "probs", open_unit=True)
    check_k(k, X.shape[0])
    floor = check_positive_scalar(params.floor, X.dtype, "floor")
    if not is_traced(params.floor) and float(np.asarray(params.floor)) >= 0.5:
        raise ValueError(f"floor must be < 1/2; got {params.floor!r}.")
    if not is_traced(params.floor) and np.asarray(1.0 - np.asarray(params.floor, X.dtype)) >= 1:
        raise ValueError(
            f"floor={params.floor!r} is too small for {np.dtype(X.dtype)}: 1 - floor is 1."
        )
    return BernoulliParams(
        probs=probs,
        weights=check_mixing_weights(params.weights, k, X.dtype),
        beta=check_beta(params.beta, X.dtype),
        floor=floor,
    )


def _init(key: jax.Array, X: jax.Array, k: int) -> BernoulliParams:
    """Random rows, pulled halfway to the column means and clipped to [1e-3, 1 - 1e-3]."""
    floor = jnp.asarray(1e-3, X.dtype)
    probs = 0.5 * distinct_rows(key, X, k) + 0.5 * jnp.mean(X, axis=0)
    probs = jnp.clip(probs, floor, 1.0 - floor)
    return BernoulliParams(probs, jnp.full((k,), 1.0 / k, X.dtype), jnp.ones((), X.dtype), floor)


bernoulli = tempered_variant(
    "bernoulli",
    divergence=lambda p, x: logistic_loss(x, p.probs),
    moments=_moments,
    m_step=_m_step,
    means=lambda p: p.probs,
    validate=_validate,
    init=_init,
    check_data=check_unit_interval,
)
"""Bernoulli mixture; beta = 1: EM, beta = inf: hard clustering in logistic loss."""
