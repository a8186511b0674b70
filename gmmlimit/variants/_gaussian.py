"""Pieces shared by the Gaussian variants with learned covariances.

Second moments are accumulated *centred at the means of the E-step* (c_k), block by block:
s1_k = sum_n w_n r_nk (x_n - c_k) and s2_k = sum_n w_n r_nk (x_n - c_k)(x_n - c_k)^T (or its
diagonal or trace). Then mu_k = c_k + s1_k / n_k and Sigma_k = s2_k / n_k - delta delta^T with
delta = s1_k / n_k, which is the two-pass covariance up to rounding and keeps float32 accurate
when the data sit far from the origin (the raw E[x x^T] - mu mu^T would cancel).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jax.scipy.linalg import solve_triangular

from .._validation import at_unit_scale, check_means
from ..checks import check_beta, check_mixing_weights, check_positive_scalar, check_variances
from ._tempered import distinct_rows

__all__ = [
    "LOG_2PI",
    "centred",
    "centred_moments",
    "check_common",
    "check_variances",
    "data_spread",
    "init_common",
    "inverse_cholesky",
    "mahalanobis_sq",
    "mean_update",
]

LOG_2PI = math.log(2.0 * math.pi)


def centred(x: jax.Array, means: jax.Array) -> jax.Array:
    """(B, K, D) differences x_n - mu_k."""
    return x[:, None, :] - means[None, :, :]


PER_COMPONENT_MIN_FEATURES = 16
"""From this many features on, the helpers below loop over the components (``lax.map``)."""


def _per_component(fn: Callable[..., Any], *per_component_args: jax.Array) -> Any:
    """``fn`` of each component's slice of the arguments, stacked on a leading K axis.

    One component at a time: one (B, D) block of differences is live, and each product is one
    matrix product. Under an outer ``vmap`` it stays a loop over K with batched bodies.
    """
    return lax.map(lambda args: fn(*args), per_component_args)


def mahalanobis_sq(x: jax.Array, means: jax.Array, inv_chols: jax.Array) -> jax.Array:
    """(B, K) squared Mahalanobis distances ||L_k^-1 (x_n - mu_k)||^2.

    Computed from the differences (no cancellation when the rows sit far from the origin). From
    ``PER_COMPONENT_MIN_FEATURES`` features on, one component at a time, each a (B, D) by (D, D)
    matrix product; below, all components in one contraction of the (B, K, D) differences, which
    XLA fuses. Either is several times faster than the other on its side of D = 16 on CPU
    (docs/benchmarks.md, "Full and tied covariances").

    Args:
        x: (B, D) rows.
        means: (K, D) means mu_k.
        inv_chols: (K, D, D) inverse lower Cholesky factors L_k^-1 (:func:`inverse_cholesky`).
    """
    if x.shape[1] >= PER_COMPONENT_MIN_FEATURES:

        def one(mean: jax.Array, inv_chol: jax.Array) -> jax.Array:  # (B,)
            z = jnp.matmul(x - mean, inv_chol.T, precision=jax.lax.Precision.HIGHEST)
            return jnp.sum(z * z, axis=1)

        return _per_component(one, means, inv_chols).T
    z = jnp.einsum(
        "bke,kde->bkd", centred(x, means), inv_chols, precision=jax.lax.Precision.HIGHEST
    )
    return jnp.sum(z * z, axis=2)


def centred_moments(
    x: jax.Array, means: jax.Array, weighted_resp: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Each component's first and second moments of a block, centred at its E-step mean.

    One component at a time from ``PER_COMPONENT_MIN_FEATURES`` features on (a (D, B) by (B, D)
    product each, no (B, K, D) tensor); below, the components batched (``vmap``), and below 8
    features one contraction of the weighted (B, K, D) differences, each the fastest of the three
    on CPU in its range (docs/benchmarks.md, "Full and tied covariances").

    Args:
        x: (B, D) rows.
        means: (K, D) the means c_k at the E-step.
        weighted_resp: (B, K) w_n r_nk.

    Returns:
        ``(s1, s2)``: sum_n w_n r_nk (x_n - c_k), (K, D), and
        sum_n w_n r_nk (x_n - c_k)(x_n - c_k)^T, (K, D, D).
    """

    def one(mean: jax.Array, resp: jax.Array) -> tuple[jax.Array, jax.Array]:
        diff = x - mean
        weighted = resp[:, None] * diff
        return jnp.sum(weighted, axis=0), jnp.matmul(
            weighted.T, diff, precision=jax.lax.Precision.HIGHEST
        )

    d = x.shape[1]
    if d >= PER_COMPONENT_MIN_FEATURES:
        return _per_component(one, means, weighted_resp.T)
    if d >= 8:
        return jax.vmap(one)(means, weighted_resp.T)
    diff = centred(x, means)
    weighted = weighted_resp[:, :, None] * diff
    return jnp.sum(weighted, axis=0), jnp.einsum(
        "bkd,bke->kde", weighted, diff, precision=jax.lax.Precision.HIGHEST
    )


def inverse_cholesky(chol: jax.Array) -> jax.Array:
    """(..., D, D) inverse of lower-triangular Cholesky factors L, by triangular solves L X = I.

    L^-1 (x - mu) is then one matrix product per component (scikit-learn's precision Cholesky
    factor, transposed); its rounding is that of a triangular solve's, a few ulps.
    """
    eye = jnp.broadcast_to(jnp.eye(chol.shape[-1], dtype=chol.dtype), chol.shape)
    return solve_triangular(chol, eye, lower=True)


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


def data_spread(X: jax.Array, moment: Callable[[jax.Array], jax.Array]) -> jax.Array:
    """``moment(X)``, a second moment of the data, computed on X / 2^e and scaled by 4^e.

    e is the binary exponent of the largest magnitude (traced: jit-able), so the squares
    neither overflow (float32 data near 1e18) nor vanish; a power of two is exact, so within
    the dtype's range the value is ``moment(X)`` bit for bit.
    """
    scaled, exponent = at_unit_scale(X)
    return jnp.ldexp(moment(scaled), 2 * exponent)


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
        "variance": data_spread(X, lambda x: jnp.mean(jnp.var(x, axis=0))) + reg,
    }
