"""Gaussian mixture with one learned covariance shared by all components, and mixing weights.

p(x) = sum_k pi_k N(x; mu_k, Sigma). Log densities use the Cholesky factor L of the shared Sigma:
ln N = -(D ln 2 pi + 2 sum_i ln L_ii + ||L^-1 (x - mu_k)||^2) / 2. The M-step pools the centred
second moments of all components, Sigma = sum_k (s2_k - n_k delta_k delta_k^T) / sum_k n_k, and
adds ``reg_covar * I``. At beta = 1 the fit is scikit-learn's
``GaussianMixture(covariance_type="tied")``; beta = inf is its hard limit, classification EM with
d_nk = -ln N(x_n; mu_k, Sigma), i.e. K-means in the Mahalanobis metric of the pooled within-cluster
covariance.
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
    factorable_update,
    init_common,
    inverse_cholesky,
    mahalanobis_sq,
    mean_update,
)
from ._tempered import MixtureStats, tempered_variant, update_weights

__all__ = ["TiedParams", "tied"]


class TiedParams(NamedTuple):
    """Parameters of the tied-covariance mixture.

    Attributes:
        means: (K, D) component means.
        covariance: (D, D) the shared symmetric positive definite covariance.
        weights: (K,) mixing weights (normalised by validation).
        beta: () inverse temperature in (0, inf]; 1 is EM, inf the hard limit.
        reg_covar: () added to the diagonal of every updated covariance.
    """

    means: jax.Array
    covariance: jax.Array
    weights: jax.Array
    beta: jax.Array
    reg_covar: jax.Array


def _divergence(params: TiedParams, x: jax.Array) -> jax.Array:
    chol = jnp.linalg.cholesky(params.covariance)  # (D, D) lower, Sigma = L L^T
    k, d = params.means.shape
    inv_chols = jnp.broadcast_to(inverse_cholesky(chol), (k, d, d))  # L^-1 for every component
    maha = mahalanobis_sq(x, params.means, inv_chols)  # (B, K)
    log_det = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol)))
    return 0.5 * (d * LOG_2PI + log_det + maha)


def _moments(params: TiedParams, x: jax.Array, wr: jax.Array) -> tuple[jax.Array, jax.Array]:
    s1, s2 = centred_moments(x, params.means, wr)
    return s1, jnp.sum(s2, axis=0)  # s2 pooled over the components, (D, D)


def _m_step(params: TiedParams, stats: MixtureStats) -> TiedParams:
    s1, s2 = stats.moments
    means, delta, ok = mean_update(params.means, stats.counts, s1)
    d = params.means.shape[1]
    counts = jnp.where(ok, stats.counts, 0.0)
    total = jnp.sum(stats.counts)
    between = jnp.sum(counts[:, None, None] * delta[:, :, None] * delta[:, None, :], axis=0)
    cov = (s2 - between) / jnp.where(total > 0, total, 1.0)
    cov = 0.5 * (cov + cov.T) + params.reg_covar * jnp.eye(d, dtype=cov.dtype)
    # one pooled covariance, by the rule of the full variant's covariances (raised to a floor at
    # the dtype's resolution, or the previous one kept): the next E-step can always factor it
    covariance = factorable_update(cov[None], params.covariance[None], (total > 0)[None])[0]
    return params._replace(
        means=means,
        covariance=covariance,
        weights=update_weights(params, stats),
    )


def _validate(X: jax.Array, params: TiedParams) -> TiedParams:
    common = check_common(X, params, TiedParams, "means, covariance, weights, beta, reg_covar")
    d = common["means"].shape[1]
    covariance = check_covariances(params.covariance, (d, d), X.dtype, "covariance")
    return TiedParams(covariance=covariance, **common)


def _init(key: jax.Array, X: jax.Array, k: int) -> TiedParams:
    """Random rows as means, the mean per-feature spread times I, equal weights, beta 1."""
    c = init_common(key, X, k)
    d = X.shape[1]
    return TiedParams(
        means=c["means"],
        covariance=c["variance"] * jnp.eye(d, dtype=X.dtype),
        weights=c["weights"],
        beta=c["beta"],
        reg_covar=c["reg_covar"],
    )


tied = tempered_variant(
    "tied",
    divergence=_divergence,
    moments=_moments,
    m_step=_m_step,
    means=lambda p: p.means,
    validate=_validate,
    init=_init,
    scaling=density_scaling(location="means", means=1, covariance=2, reg_covar=2),
)
"""One shared covariance Sigma with a reg_covar floor, learned weights; beta = 1: sklearn's EM."""
