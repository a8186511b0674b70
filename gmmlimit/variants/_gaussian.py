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
import numpy as np
from jax import lax
from jax.scipy.linalg import solve_triangular

from .._validation import at_unit_scale, check_means, is_traced
from ..checks import check_beta, check_mixing_weights, check_positive_scalar, check_variances
from ._tempered import distinct_rows

__all__ = [
    "LOG_2PI",
    "centred",
    "centred_moments",
    "check_common",
    "check_covariances",
    "check_variances",
    "data_spread",
    "factorable_update",
    "init_common",
    "inverse_cholesky",
    "mahalanobis_sq",
    "mean_update",
    "positive_definite",
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


def check_covariances(cov: Any, shape: tuple[int, ...], dtype: Any, name: str) -> jax.Array:
    """Validate symmetric positive definite covariances, as computed in ``dtype``.

    A covariance positive definite in float64 can be singular (or, past the float32 maximum,
    infinite) once cast to float32; such a start would give the first E-step no Cholesky
    factor, so it is refused here, with the fix named.

    Args:
        cov: (..., D, D) covariances (traced: only the shape is checked).
        shape: the expected shape.
        dtype: the data's dtype, in which the fit computes.
        name: the field's name for messages.

    Returns:
        ``cov`` as a ``dtype`` array.

    Raises:
        ValueError: on a wrong shape, NaN or inf, an asymmetric matrix, or one without a
            Cholesky factor in float64 or in ``dtype``.
    """
    if not is_traced(cov) and not isinstance(cov, jax.Array):
        cov = np.asarray(cov)
    if tuple(cov.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}; got {tuple(cov.shape)}.")
    if not is_traced(cov):
        host = np.asarray(cov, dtype=np.float64)
        if not np.all(np.isfinite(host)):
            raise ValueError(f"{name} holds NaN or inf values.")
        if not np.allclose(host, np.swapaxes(host, -1, -2), rtol=1e-5, atol=0.0):
            raise ValueError(f"{name} must be symmetric.")
        if not _has_cholesky(host):
            raise ValueError(f"{name} must be positive definite.")
        if not _has_cholesky(np.asarray(host, dtype=np.dtype(dtype))):
            raise ValueError(
                f"{name} is not positive definite in {np.dtype(dtype)} (singular or not finite "
                "after the cast); add a larger diagonal or fit in float64."
            )
    return jnp.asarray(cov, dtype=dtype)


def _has_cholesky(cov: np.ndarray) -> bool:
    """Whether every (D, D) matrix of ``cov`` has a finite Cholesky factor with diagonal > 0."""
    if not np.all(np.isfinite(cov)):
        return False
    try:
        chol = np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        return False
    diag = np.diagonal(chol, axis1=-2, axis2=-1)
    return bool(np.all(np.isfinite(chol)) and np.all(diag > 0))


def positive_definite(cov: jax.Array) -> jax.Array:
    """(K,) whether each (D, D) matrix has a Cholesky factor, diagonal > 0, in its dtype."""
    chol = jnp.linalg.cholesky(cov)
    diag = jnp.diagonal(chol, axis1=1, axis2=2)
    return jnp.all(jnp.isfinite(chol), axis=(1, 2)) & jnp.all(diag > 0, axis=1)


def factorable_update(cov: jax.Array, previous: jax.Array, ok: jax.Array) -> jax.Array:
    """The M-step's covariances, each one the next E-step can factor.

    A ``reg_covar`` below the dtype's resolution of a covariance cannot keep it positive
    definite (float32 with reg_covar = 1e-12, a collapsed component, or features that are
    copies of one another): then the floor is raised to D * eps * the largest variance of the
    matrix, and a covariance that still has no Cholesky factor is not taken (its component
    keeps the previous one). No M-step returns a covariance the next E-step cannot factor.

    Args:
        cov: (K, D, D) symmetric updated covariances, ``reg_covar * I`` added.
        previous: (K, D, D) the E-step's covariances.
        ok: (K,) bool, whether each update may be taken at all (its component had weight).

    Returns:
        (K, D, D) covariances.
    """
    d = cov.shape[-1]
    eye = jnp.eye(d, dtype=cov.dtype)
    scale = jnp.max(jnp.abs(jnp.diagonal(cov, axis1=1, axis2=2)), axis=1)
    jitter = d * jnp.finfo(cov.dtype).eps * jnp.where(jnp.isfinite(scale), scale, 0.0)
    raised = cov + jitter[:, None, None] * eye
    pd = positive_definite(jnp.where(jnp.isfinite(cov), cov, eye))
    cov = jnp.where(pd[:, None, None], cov, raised)
    pd = positive_definite(jnp.where(jnp.isfinite(cov), cov, eye))
    keep = ok & jnp.all(jnp.isfinite(cov), axis=(1, 2)) & pd
    return jnp.where(keep[:, None, None], cov, previous)


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
