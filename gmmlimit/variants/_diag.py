"""Gaussian mixture with learned diagonal covariances and learned mixing weights.

p(x) = sum_k pi_k N(x; mu_k, diag(v_k)). At beta = 1 the fit is scikit-learn's
``GaussianMixture(covariance_type="diag")`` (same ``reg_covar`` floor added to every new
variance); beta = inf is its hard limit, classification EM with d_nk = -ln N(x_n; mu_k, diag(v_k)).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from .._variant import density_scaling
from ._gaussian import (
    LOG_2PI,
    centred,
    check_common,
    check_variances,
    data_spread,
    init_common,
    mean_update,
)
from ._tempered import MixtureStats, tempered_variant, update_weights

__all__ = ["DiagParams", "diag"]


class DiagParams(NamedTuple):
    """Parameters of the diagonal-covariance mixture.

    Attributes:
        means: (K, D) component means.
        variances: (K, D) per-component, per-feature variances > 0.
        weights: (K,) mixing weights (normalised by validation).
        beta: () inverse temperature in (0, inf]; 1 is EM, inf the hard limit.
        reg_covar: () floor added to every updated variance (scikit-learn's reg_covar).
    """

    means: jax.Array
    variances: jax.Array
    weights: jax.Array
    beta: jax.Array
    reg_covar: jax.Array


def _divergence(params: DiagParams, x: jax.Array) -> jax.Array:
    v = params.variances
    maha = jnp.sum(centred(x, params.means) ** 2 / v[None, :, :], axis=2)
    log_det = jnp.sum(jnp.log(v), axis=1)
    return 0.5 * (x.shape[1] * LOG_2PI + log_det[None, :] + maha)


def _moments(params: DiagParams, x: jax.Array, wr: jax.Array) -> tuple[jax.Array, jax.Array]:
    diff = centred(x, params.means)
    return (
        jnp.einsum("bk,bkd->kd", wr, diff, precision=jax.lax.Precision.HIGHEST),
        jnp.einsum("bk,bkd->kd", wr, diff * diff, precision=jax.lax.Precision.HIGHEST),
    )


def _m_step(params: DiagParams, stats: MixtureStats) -> DiagParams:
    s1, s2 = stats.moments
    means, delta, ok = mean_update(params.means, stats.counts, s1)
    safe = jnp.where(ok, stats.counts, 1.0)[:, None]
    var = jnp.maximum(s2 / safe - delta * delta, 0.0) + params.reg_covar
    keep = ok[:, None] & jnp.isfinite(var)
    variances = jnp.where(keep, var, params.variances)
    return params._replace(means=means, variances=variances, weights=update_weights(params, stats))


def _validate(X: jax.Array, params: DiagParams) -> DiagParams:
    common = check_common(X, params, DiagParams, "means, variances, weights, beta, reg_covar")
    shape = common["means"].shape
    variances = check_variances(params.variances, shape, X.dtype, "variances")
    return DiagParams(variances=variances, **common)


def _init(key: jax.Array, X: jax.Array, k: int) -> DiagParams:
    """Random rows as means, the data's spread as every component's, equal weights, beta 1."""
    c = init_common(key, X, k)
    return DiagParams(
        means=c["means"],
        variances=jnp.broadcast_to(
            data_spread(X, lambda x: jnp.var(x, axis=0)) + c["reg_covar"], (k, X.shape[1])
        ),
        weights=c["weights"],
        beta=c["beta"],
        reg_covar=c["reg_covar"],
    )


diag = tempered_variant(
    "diag",
    divergence=_divergence,
    moments=_moments,
    m_step=_m_step,
    means=lambda p: p.means,
    validate=_validate,
    init=_init,
    scaling=density_scaling(location="means", means=1, variances=2, reg_covar=2),
)
"""Diagonal covariances diag(v_k), learned weights; beta = 1: scikit-learn's EM."""
