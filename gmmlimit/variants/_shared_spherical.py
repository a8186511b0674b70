"""Gaussian mixture with one learned, shared isotropic variance sigma2 and learned weights.

p(x) = sum_k pi_k N(x; mu_k, sigma2 I), sigma2 re-estimated at every M-step as the weighted mean
squared distance to the means per coordinate (plus the ``reg_covar`` floor). Its hard limit
beta = inf is exactly Lloyd's K-means for the means and labels (with equal variances the weights
drop out and the nearest mean wins), with sigma2 = J / (N D) + reg_covar estimated alongside:
the learned-variance counterpart of :data:`gmmlimit.variants.isotropic`, whose sigma2 is fixed.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from .._variant import density_scaling
from ._gaussian import LOG_2PI, centred, check_common, check_variances, init_common, mean_update
from ._tempered import MixtureStats, tempered_variant, update_weights

__all__ = ["SharedSphericalParams", "shared_spherical"]


class SharedSphericalParams(NamedTuple):
    """Parameters of the shared-variance mixture.

    Attributes:
        means: (K, D) component means.
        sigma2: () the shared variance > 0 (learned).
        weights: (K,) mixing weights (normalised by validation).
        beta: () inverse temperature in (0, inf]; 1 is EM, inf the hard limit (K-means).
        reg_covar: () floor added to every updated sigma2.
    """

    means: jax.Array
    sigma2: jax.Array
    weights: jax.Array
    beta: jax.Array
    reg_covar: jax.Array


def _divergence(params: SharedSphericalParams, x: jax.Array) -> jax.Array:
    d = x.shape[1]
    sq = jnp.sum(centred(x, params.means) ** 2, axis=2)
    return 0.5 * (d * (LOG_2PI + jnp.log(params.sigma2)) + sq / params.sigma2)


def _moments(
    params: SharedSphericalParams, x: jax.Array, wr: jax.Array
) -> tuple[jax.Array, jax.Array]:
    diff = centred(x, params.means)
    return (
        jnp.einsum("bk,bkd->kd", wr, diff, precision=jax.lax.Precision.HIGHEST),
        jnp.einsum("bk,bkd->k", wr, diff * diff, precision=jax.lax.Precision.HIGHEST),
    )


def _m_step(params: SharedSphericalParams, stats: MixtureStats) -> SharedSphericalParams:
    s1, s2 = stats.moments
    means, delta, ok = mean_update(params.means, stats.counts, s1)
    d = params.means.shape[1]
    within = jnp.sum(jnp.where(ok, s2 - stats.counts * jnp.sum(delta * delta, axis=1), 0.0))
    var = jnp.maximum(within, 0.0) / (stats.total_weight * d) + params.reg_covar
    sigma2 = jnp.where(jnp.isfinite(var), var, params.sigma2)
    return params._replace(means=means, sigma2=sigma2, weights=update_weights(params, stats))


def _validate(X: jax.Array, params: SharedSphericalParams) -> SharedSphericalParams:
    common = check_common(
        X, params, SharedSphericalParams, "means, sigma2, weights, beta, reg_covar"
    )
    sigma2 = check_variances(params.sigma2, (), X.dtype, "sigma2")
    return SharedSphericalParams(sigma2=sigma2, **common)


def _init(key: jax.Array, X: jax.Array, k: int) -> SharedSphericalParams:
    """Random rows as means, the data's spread as every component's, equal weights, beta 1."""
    c = init_common(key, X, k)
    return SharedSphericalParams(
        means=c["means"],
        sigma2=c["variance"],
        weights=c["weights"],
        beta=c["beta"],
        reg_covar=c["reg_covar"],
    )


shared_spherical = tempered_variant(
    "shared_spherical",
    divergence=_divergence,
    moments=_moments,
    m_step=_m_step,
    means=lambda p: p.means,
    validate=_validate,
    init=_init,
    scaling=density_scaling(location="means", means=1, sigma2=2, reg_covar=2),
)
"""One learned shared variance sigma2 I, learned weights; beta = inf: K-means plus sigma2."""
