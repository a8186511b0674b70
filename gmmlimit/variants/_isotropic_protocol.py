"""The protocol fields of the isotropic model: its init, temperature and log-odds gap.

They make every tool that takes a variant (restarts, :func:`gmmlimit.anneal_variant`, the limit
diagnostics, the scikit-learn wrapper) take the isotropic model too. The model file itself stays
the model; ``gmmlimit.variants.isotropic`` is the model with these fields attached.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .._logdomain import pairwise_sq_dists_partial, shifted_softmax
from .._variant import Temperature, Variant, temperature_field
from .isotropic import IsotropicParams

__all__ = ["TEMPERATURE", "init", "log_odds_gap", "with_protocol"]

TEMPERATURE: Temperature = temperature_field("sigma2", 0.0)
"""The isotropic model's temperature: the shared variance sigma2, hard limit 0 (K-means)."""


def init(key: jax.Array, X: jax.Array, k: int) -> IsotropicParams:
    """Random distinct rows as means, at sigma2 = 0 (jit-able; tools set the temperature)."""
    index = jax.random.choice(key, X.shape[0], (k,), replace=False)
    return IsotropicParams(X[index], jnp.zeros((), X.dtype))


def log_odds_gap(params: IsotropicParams, x: jax.Array) -> jax.Array:
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
    positive = params.sigma2 > 0
    scaled = delta / (2.0 * jnp.where(positive, params.sigma2, 1.0))
    return jnp.where(positive, scaled, jnp.where(delta > 0, jnp.inf, 0.0))


def with_protocol(variant: Variant) -> Variant:
    """The isotropic variant with any missing protocol field filled in from this module."""
    fields = {"init": init, "temperature": TEMPERATURE, "log_odds_gap": log_odds_gap}
    return variant._replace(**{k: v for k, v in fields.items() if getattr(variant, k) is None})
