"""Gaussian mixture with one learned variance per component and learned mixing weights.

p(x) = sum_k pi_k N(x; mu_k, v_k I). At beta = 1 the fit is scikit-learn's
``GaussianMixture(covariance_type="spherical")`` (same ``reg_covar`` floor added to every new
variance); beta is the inverse temperature of :mod:`gmmlimit.variants._tempered` and beta = inf
its hard limit: classification EM, each point to the component of largest density (argmin of
d_nk = -ln N(x_n; mu_k, v_k I)), then the usual updates from the hard counts.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from .._variant import density_scaling
from ._gaussian import LOG_2PI, centred, check_common, check_variances, init_common, mean_update
from ._tempered import MixtureStats, tempered_variant, update_weights

__all__ = ["SphericalParams", "spherical"]


class SphericalParams(NamedTuple):
    """Parameters of the spherical mixture.

    Attributes:
        means: (K, D) component means.
        variances: (K,) per-component variances v_k > 0.
        weights: (K,) mixing weights (normalised by validation).
        beta: () inverse temperature in (0, inf]; 1 is EM, inf the hard limit.
        reg_covar: () floor added to every updated variance (scikit-learn's reg_covar).
    """

    means: jax.Array
    variances: jax.Array
    weights: jax.Array
    beta: jax.Array
    reg_covar: jax.Array


def _divergence(params: SphericalParams, x: jax.Array) -> jax.Array:
    d = x.shape[1]
    sq = jnp.sum(centred(x, params.means) ** 2, axis=2)
    v = params.variances
    return 0.5 * (d * LOG_2PI + d * jnp.log(v)[None, :] + sq / v[None, :])


def _moments(params: SphericalParams, x: jax.Array, wr: jax.Array) -> tuple[jax.Array, jax.Array]:
    diff = centred(x, params.means)
    return (
        jnp.einsum("bk,bkd->kd", wr, diff, precision=jax.lax.Precision.HIGHEST),
        jnp.einsum("bk,bkd->k", wr, diff * diff, precision=jax.lax.Precision.HIGHEST),
    )


def _m_step(params: SphericalParams, stats: MixtureStats) -> SphericalParams:
    s1, s2 = stats.moments
    means, delta, ok = mean_update(params.means, stats.counts, s1)
    d = params.means.shape[1]
    safe = jnp.where(ok, stats.counts, 1.0)
    var = jnp.maximum(s2 / safe - jnp.sum(delta * delta, axis=1), 0.0) / d + params.reg_covar
    variances = jnp.where(ok & jnp.isfinite(var), var, params.variances)
    return params._replace(means=means, variances=variances, weights=update_weights(params, stats))


def _validate(X: jax.Array, params: SphericalParams) -> SphericalParams:
    common = check_common(X, params, SphericalParams, "means, variances, weights, beta, reg_covar")
    k = common["means"].shape[0]
    variances = check_variances(params.variances, (k,), X.dtype, "variances")
    return SphericalParams(variances=variances, **common)


def _init(key: jax.Array, X: jax.Array, k: int) -> SphericalParams:
    """Random rows as means, the data's spread as every component's, equal weights, beta 1."""
    c = init_common(key, X, k)
    return SphericalParams(
        means=c["means"],
        variances=jnp.full((k,), c["variance"]),
        weights=c["weights"],
        beta=c["beta"],
        reg_covar=c["reg_covar"],
    )


spherical = tempered_variant(
    "spherical",
    divergence=_divergence,
    moments=_moments,
    m_step=_m_step,
    means=lambda p: p.means,
    validate=_validate,
    init=_init,
    scaling=density_scaling(location="means", means=1, variances=2, reg_covar=2),
)
"""Per-component spherical covariances v_k I, learned weights; beta = 1: scikit-learn's EM."""
