"""von Mises-Fisher mixture with a shared concentration kappa; kappa = inf: spherical K-means.

p(x) = sum_k pi_k C_D(kappa) exp(kappa mu_k^T x) on the unit sphere. With the concentration
shared, C_D(kappa) cancels from the responsibilities, which are r_nk ∝ pi_k exp(-kappa d_nk) with
the cosine dissimilarity d_nk = 1 - mu_k^T x_n: here the inverse temperature beta *is* the
concentration. The M-step direction is mu_k = sum_n w_n r_nk x_n / ||...|| (exact for any kappa),
and kappa -> inf gives spherical K-means (Dhillon and Modha, 2001): each point to the most
cosine-similar mean, each mean the normalised sum of its points. Rows of X and of the means must
have unit norm.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .._validation import check_means
from ..checks import check_unit_rows
from ._tempered import (
    MixtureStats,
    check_beta,
    check_mixing_weights,
    distinct_rows,
    tempered_variant,
    update_weights,
)

__all__ = ["VMFParams", "check_unit_rows", "cosine_dissimilarity", "vmf"]


class VMFParams(NamedTuple):
    """Parameters of the vMF mixture with shared concentration.

    Attributes:
        means: (K, D) unit mean directions.
        weights: (K,) mixing weights (normalised by validation).
        beta: () the shared concentration kappa in (0, inf]; inf is spherical K-means.
    """

    means: jax.Array
    weights: jax.Array
    beta: jax.Array


def cosine_dissimilarity(x: jax.Array, means: jax.Array) -> jax.Array:
    """(B, K) ``1 - <x_n, mu_k>`` for unit rows, clipped to [0, 2]."""
    cos = lax.dot_general(x, means, (((1,), (1,)), ((), ())), precision=lax.Precision.HIGHEST)
    return jnp.clip(1.0 - cos, 0.0, 2.0)


def normalized_sums(sums: jax.Array, old: jax.Array) -> jax.Array:
    """Rows of ``sums`` scaled to unit norm; the ``old`` row where a sum is zero or not finite."""
    norm = jnp.sqrt(jnp.sum(sums * sums, axis=1, keepdims=True))
    ok = (norm > 0) & jnp.isfinite(norm)
    return jnp.where(ok, sums / jnp.where(ok, norm, 1.0), old)


def _moments(params: VMFParams, x: jax.Array, wr: jax.Array) -> jax.Array:
    return lax.dot_general(wr, x, (((0,), (0,)), ((), ())), precision=lax.Precision.HIGHEST)


def _m_step(params: VMFParams, stats: MixtureStats) -> VMFParams:
    means = normalized_sums(stats.moments, params.means)
    return params._replace(means=means, weights=update_weights(params, stats))


def _validate(X: jax.Array, params: VMFParams) -> VMFParams:
    if not isinstance(params, VMFParams):
        raise ValueError(f"vmf takes VMFParams(means, weights, beta); got {type(params)}.")
    means = check_means(params.means, X, name="means", for_fit=True)
    check_unit_rows(params.means, "means")
    means = means / jnp.linalg.norm(means, axis=1, keepdims=True)
    return VMFParams(
        means=means,
        weights=check_mixing_weights(params.weights, means.shape[0], X.dtype),
        beta=check_beta(params.beta, X.dtype),
    )


def _check_data(x: np.ndarray) -> None:
    check_unit_rows(x, "X")


def _init(key: jax.Array, X: jax.Array, k: int) -> VMFParams:
    """Random (unit) rows, equal weights, kappa = 1."""
    return VMFParams(
        distinct_rows(key, X, k), jnp.full((k,), 1.0 / k, X.dtype), jnp.ones((), X.dtype)
    )


vmf = tempered_variant(
    "vmf",
    divergence=lambda p, x: cosine_dissimilarity(x, p.means),
    moments=_moments,
    m_step=_m_step,
    means=lambda p: p.means,
    validate=_validate,
    init=_init,
    check_data=_check_data,
)
"""vMF mixture with shared concentration beta = kappa; kappa = inf: spherical K-means."""
