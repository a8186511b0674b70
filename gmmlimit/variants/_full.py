"""Gaussian mixture with learned full covariances (Cholesky log densities) and mixing weights.

p(x) = sum_k pi_k N(x; mu_k, Sigma_k). Log densities use the Cholesky factor L_k of Sigma_k:
ln N = -(D ln 2 pi + 2 sum_i ln L_k,ii + ||L_k^-1 (x - mu_k)||^2) / 2, with L_k^-1 from triangular
solves (scikit-learn's precision Cholesky factor), never an inverse of Sigma_k.
Every updated covariance gets ``reg_covar * I`` added (the floor that keeps it positive definite).
At beta = 1 the fit is scikit-learn's ``GaussianMixture(covariance_type="full")``; beta = inf is
its hard limit, classification EM with d_nk = -ln N(x_n; mu_k, Sigma_k).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from .._variant import density_scaling
from ._gaussian import (
    LOG_2PI,
    centred_moments,
    check_common,
    check_covariances,
    data_spread,
    factorable_update,
    init_common,
    inverse_cholesky,
    mahalanobis_sq,
    mean_update,
)
from ._tempered import MixtureStats, tempered_variant, update_weights

__all__ = ["FullParams", "full"]


class FullParams(NamedTuple):
    """Parameters of the full-covariance mixture.

    Attributes:
        means: (K, D) component means.
        covariances: (K, D, D) symmetric positive definite covariances.
        weights: (K,) mixing weights (normalised by validation).
        beta: () inverse temperature in (0, inf]; 1 is EM, inf the hard limit.
        reg_covar: () added to the diagonal of every updated covariance.
    """

    means: jax.Array
    covariances: jax.Array
    weights: jax.Array
    beta: jax.Array
    reg_covar: jax.Array


def _divergence(params: FullParams, x: jax.Array) -> jax.Array:
    chol = jnp.linalg.cholesky(params.covariances)  # (K, D, D) lower, Sigma_k = L_k L_k^T
    maha = mahalanobis_sq(x, params.means, inverse_cholesky(chol))  # (B, K)
    log_det = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=1, axis2=2)), axis=1)
    return 0.5 * (x.shape[1] * LOG_2PI + log_det[None, :] + maha)


def _moments(params: FullParams, x: jax.Array, wr: jax.Array) -> tuple[jax.Array, jax.Array]:
    return centred_moments(x, params.means, wr)  # (K, D), (K, D, D)


def _m_step(params: FullParams, stats: MixtureStats) -> FullParams:
    s1, s2 = stats.moments
    means, delta, ok = mean_update(params.means, stats.counts, s1)
    d = params.means.shape[1]
    eye = jnp.eye(d, dtype=s2.dtype)
    safe = jnp.where(ok, stats.counts, 1.0)[:, None, None]
    cov = s2 / safe - delta[:, :, None] * delta[:, None, :]
    cov = 0.5 * (cov + jnp.swapaxes(cov, 1, 2)) + params.reg_covar * eye
    covariances = factorable_update(cov, params.covariances, ok)
    return params._replace(
        means=means, covariances=covariances, weights=update_weights(params, stats)
    )


def _validate(X: jax.Array, params: FullParams) -> FullParams:
    common = check_common(X, params, FullParams, "means, covariances, weights, beta, reg_covar")
    k, d = common["means"].shape
    covariances = check_covariances(params.covariances, (k, d, d), X.dtype, "covariances")
    return FullParams(covariances=covariances, **common)


def _init(key: jax.Array, X: jax.Array, k: int) -> FullParams:
    """Random rows as means, the data's spread as every component's, equal weights, beta 1."""
    c = init_common(key, X, k)
    with jax.default_matmul_precision("highest"):  # a GPU's default for float32 is TF32
        spread = data_spread(X, lambda x: jnp.cov(x, rowvar=False, bias=True))
    spread = spread.reshape(X.shape[1], X.shape[1])
    return FullParams(
        means=c["means"],
        covariances=jnp.broadcast_to(
            spread + c["reg_covar"] * jnp.eye(X.shape[1], dtype=X.dtype),
            (k, X.shape[1], X.shape[1]),
        ),
        weights=c["weights"],
        beta=c["beta"],
        reg_covar=c["reg_covar"],
    )


full = tempered_variant(
    "full",
    divergence=_divergence,
    moments=_moments,
    m_step=_m_step,
    means=lambda p: p.means,
    validate=_validate,
    init=_init,
    scaling=density_scaling(location="means", means=1, covariances=2, reg_covar=2),
)
"""Full covariances Sigma_k with a reg_covar floor, learned weights; beta = 1: scikit-learn's EM."""
