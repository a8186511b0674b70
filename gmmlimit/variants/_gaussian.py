"""Pieces shared by the Gaussian variants with learned covariances.

Second moments are accumulated *centred at the means of the E-step* (c_k), block by block:
s1_k = sum_n w_n r_nk (x_n - c_k) and s2_k = sum_n w_n r_nk (x_n - c_k)(x_n - c_k)^T (or its
diagonal or trace). Then mu_k = c_k + s1_k / n_k and Sigma_k = s2_k / n_k - delta delta^T with
delta = s1_k / n_k, which is the two-pass covariance up to rounding and keeps float32 accurate
when the data sit far from the origin (the raw E[x x^T] - mu mu^T would cancel).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from .._validation import check_means
from ..checks import check_beta, check_mixing_weights, check_positive_scalar, check_variances
from ._tempered import distinct_rows

__all__ = [
    "LOG_2PI",
    "centred",
    "check_common",
    "check_variances",
    "init_common",
    "mean_update",
]

LOG_2PI = math.log(2.0 * math.pi)


def centred(x: jax.Array, means: jax.Array) -> jax.Array:
    """(B, K, D) differences x_n - mu_k."""
    return x[:, None, :] - means[None, :, :]


def mean_update(
    old_means: jax.Array, counts: jax.Array, s1: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """New means from centred first moments.

    Args:
        old_means: (K, D) the centres c_k the moments were taken about.
        counts: (K,) total responsibilities n_k.
        s1: (K, D) sum_n w_n r_nk (x_n - c_k).

    Returns:
        ``(means, delta, ok)``: the new means (the old ones where a component is empty),
        delta = s1 / n (K, D), and ok (K,) whether the component had mass and a finite update.
    """
    occupied = counts > 0
    safe = jnp.where(occupied, counts, 1.0)
    delta = s1 / safe[:, None]
    ok = occupied & jnp.all(jnp.isfinite(delta), axis=1)
    delta = jnp.where(ok[:, None], delta, 0.0)
    return old_means + delta, delta, ok


def check_common(X: jax.Array, params: Any, cls: type, fields: str) -> dict[str, jax.Array]:
    """Validate the fields every Gaussian variant shares: means, weights, beta, reg_covar.

    Args:
        X: validated (N, D) data.
        params: the parameters to check.
        cls: the expected NamedTuple type.
        fields: its constructor signature, for the error message.

    Returns:
        A dict of the cast means, weights, beta and reg_covar.

    Raises:
        ValueError: on a wrong type or any invalid field.
    """
    if not isinstance(params, cls):
        raise ValueError(f"this variant takes {cls.__name__}({fields}); got {type(params)}.")
    means = check_means(params.means, X, name="means", for_fit=True)
    k = means.shape[0]
    return {
        "means": means,
        "weights": check_mixing_weights(params.weights, k, X.dtype),
        "beta": check_beta(params.beta, X.dtype),
        "reg_covar": check_positive_scalar(params.reg_covar, X.dtype, "reg_covar"),
    }


def init_common(key: jax.Array, X: jax.Array, k: int) -> dict[str, jax.Array]:
    """Starting fields shared by the Gaussian variants' ``init`` (jit-able).

    Returns:
        A dict: ``means`` (k random distinct rows), equal ``weights``, ``beta`` = 1,
        ``reg_covar`` = 1e-6 and ``variance``, the mean per-feature variance of X plus reg_covar
        (the starting variance of every component).
    """
    reg = jnp.asarray(1e-6, X.dtype)
    return {
        "means": distinct_rows(key, X, k),
        "weights": jnp.full((k,), 1.0 / k, X.dtype),
        "beta": jnp.ones((), X.dtype),
        "reg_covar": reg,
        "variance": jnp.mean(jnp.var(X, axis=0)) + reg,
    }
