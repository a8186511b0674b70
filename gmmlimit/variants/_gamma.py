"""Gamma mixture with a fixed, shared shape; beta = inf: Itakura-Saito hard clustering.

Written from docs/variants.md with public imports only (it is the guide's walkthrough).

p(x) = sum_k pi_k prod_d Gamma(x_d; shape a, mean mu_kd) for positive x. In its mean
parametrisation the Gamma log density is

    ln Gamma(x; a, mu) = -a d_IS(x, mu) + f(x),  d_IS(x, mu) = x / mu - ln(x / mu) - 1,

with f free of mu: the Itakura-Saito divergence is the Bregman divergence of the Gamma family
(Banerjee et al., 2005). With the shape a fixed and shared, the tempered responsibilities
r_nk ∝ pi_k exp(-beta a d_IS(x_n, mu_k)) are EM's at beta = 1 and tend, as beta -> inf, to the
one-hot of the IS-nearest mean: Itakura-Saito hard clustering, whose M-step is the cluster mean
(as for every Bregman divergence). The free energy at beta = 1 is the log-likelihood minus
sum_n f(x_n).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from gmmlimit.checks import (
    check_array,
    check_beta,
    check_k,
    check_mixing_weights,
    check_positive_data,
    check_positive_scalar,
)
from gmmlimit.variants import (
    MixtureStats,
    distinct_rows,
    invariant_scaling,
    tempered_variant,
    update_weights,
)

__all__ = ["GammaParams", "gamma", "itakura_saito"]


class GammaParams(NamedTuple):
    """Parameters of the fixed-shape Gamma mixture.

    Attributes:
        means: (K, D) component means mu_kd > 0.
        shape: () the shared Gamma shape a > 0 (fixed; not learned).
        weights: (K,) mixing weights (normalised by validation).
        beta: () inverse temperature in (0, inf]; 1 is EM, inf IS hard clustering.
    """

    means: jax.Array
    shape: jax.Array
    weights: jax.Array
    beta: jax.Array


def itakura_saito(x: jax.Array, means: jax.Array) -> jax.Array:
    """(B, K) Itakura-Saito divergences sum_d [x/mu - ln(x/mu) - 1] of rows (B, D) from (K, D)."""
    ratio = lax.dot_general(
        x, 1.0 / means, (((1,), (1,)), ((), ())), precision=lax.Precision.HIGHEST
    )
    log_x = jnp.sum(jnp.log(x), axis=1)
    log_mu = jnp.sum(jnp.log(means), axis=1)
    return jnp.maximum(ratio - log_x[:, None] + log_mu[None, :] - x.shape[1], 0.0)


def _divergence(params: GammaParams, x: jax.Array) -> jax.Array:
    return params.shape * itakura_saito(x, params.means)


def _moments(params: GammaParams, x: jax.Array, wr: jax.Array) -> jax.Array:
    return lax.dot_general(wr, x, (((0,), (0,)), ((), ())), precision=lax.Precision.HIGHEST)


def _m_step(params: GammaParams, stats: MixtureStats) -> GammaParams:
    occupied = stats.counts > 0
    means = stats.moments / jnp.where(occupied, stats.counts, 1.0)[:, None]
    # a mean of positive rows is positive; keep the old one where it underflowed or is empty
    ok = occupied[:, None] & jnp.isfinite(means) & (means > 0)
    means = jnp.where(ok, means, params.means)
    return params._replace(means=means, weights=update_weights(params, stats))


def _check_data(x: np.ndarray) -> None:
    check_positive_data(x, "the Gamma mixture")


def _validate(X: jax.Array, params: GammaParams) -> GammaParams:
    if not isinstance(params, GammaParams):
        raise ValueError(f"gamma takes GammaParams(means, shape, weights, beta); got {params}.")
    k = np.shape(params.means)[0] if np.ndim(params.means) == 2 else -1
    means = check_array(params.means, (k, X.shape[1]), X.dtype, "means", positive=True)
    check_k(k, X.shape[0])
    return GammaParams(
        means=means,
        shape=check_positive_scalar(params.shape, X.dtype, "shape"),
        weights=check_mixing_weights(params.weights, k, X.dtype),
        beta=check_beta(params.beta, X.dtype),
    )


def _init(key: jax.Array, X: jax.Array, k: int) -> GammaParams:
    """Random rows pulled halfway to the column means; shape 1 (exponential), beta 1."""
    rows = distinct_rows(key, X, k)  # first: it checks k
    mean = jnp.mean(X, axis=0)
    # rows near the dtype's largest number: their sum overflows; take it at unit scale (exact
    # powers of two: a division by such a number flushes its reciprocal to 0 on the CPU)
    top = jnp.frexp(jnp.max(X))[1]
    mean = jnp.where(jnp.isfinite(mean), mean, jnp.ldexp(jnp.mean(jnp.ldexp(X, -top), 0), top))
    means = 0.5 * rows + 0.5 * mean
    one = jnp.ones((), X.dtype)
    return GammaParams(means, one, jnp.full((k,), 1.0 / k, X.dtype), one)


gamma = tempered_variant(
    "gamma",
    divergence=_divergence,
    moments=_moments,
    m_step=_m_step,
    means=lambda p: p.means,
    validate=_validate,
    init=_init,
    check_data=_check_data,
    # d_IS(x / s, mu / s) = d_IS(x, mu): data past the scale window are fit as X / 2^e with the
    # means / 2^e and the same objectives (before, float32 rows near 3e38 overflowed the M-step's
    # sums, and the means were kept where they started without a word)
    scaling=invariant_scaling(means=1),
)
"""Fixed-shape Gamma mixture; beta = 1: EM, beta = inf: Itakura-Saito hard clustering."""
