"""Eager input validation, run before any compiled code.

Every public entry point calls these helpers on its arguments. Concrete arrays are checked for
shapes *and* values (NaN, inf, negative weights, ...). Values that are being traced under ``jit``
or ``vmap`` cannot be inspected; for those only static facts (shapes, dtypes) are checked, and the
caller that made them concrete is responsible for their values.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "as_data",
    "check_k",
    "check_key",
    "check_means",
    "check_sigma2",
    "check_weights",
    "is_traced",
    "weights_or_ones",
]


def is_traced(value: Any) -> bool:
    """Whether ``value`` is a JAX tracer (its values are unknown at this point)."""
    return isinstance(value, jax.core.Tracer)


def _float_dtype(dtype: Any) -> jnp.dtype:
    """The floating dtype an input of ``dtype`` is computed in (integers become the default)."""
    dtype = jnp.dtype(dtype)
    if jnp.issubdtype(dtype, jnp.floating):
        # float16/bfloat16 are too coarse for the log domain; widen them to float32.
        if dtype.itemsize < 4:
            return jnp.dtype(jnp.float32)
        return jnp.dtype(jax.dtypes.canonicalize_dtype(dtype))
    if jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.bool_):
        return jnp.dtype(jax.dtypes.canonicalize_dtype(jnp.float64))
    raise ValueError(f"X must hold real numbers; got dtype {dtype}.")


def as_data(X: Any, name: str = "X") -> jax.Array:
    """Validate a data matrix and return it as a floating JAX array.

    Args:
        X: array-like of shape (N, D).
        name: the argument's name, used in error messages.

    Returns:
        The data as a JAX array of shape (N, D) in its floating dtype (float32 stays float32,
        float64 stays float64 when x64 is enabled; integers become the default float dtype).

    Raises:
        ValueError: if X is not two-dimensional, is empty, is complex, or holds NaN or inf.
    """
    if not is_traced(X) and not isinstance(X, jax.Array):
        X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of shape (N, D); got shape {tuple(X.shape)}.")
    if X.shape[0] < 1 or X.shape[1] < 1:
        raise ValueError(f"{name} must have at least one row and one column; got {tuple(X.shape)}.")
    if jnp.issubdtype(X.dtype, jnp.complexfloating):
        raise ValueError(f"{name} must be real; got complex dtype {X.dtype}.")
    dtype = _float_dtype(X.dtype)
    if not is_traced(X):
        host = np.asarray(X)
        if not np.all(np.isfinite(host)):
            bad = int(np.size(host) - np.count_nonzero(np.isfinite(host)))
            raise ValueError(f"{name} contains {bad} NaN or inf value(s); clean the data first.")
    return jnp.asarray(X, dtype=dtype)


def check_key(key: Any) -> None:
    """Validate a single ``jax.random`` key (new-style typed key or legacy uint32 (2,) key).

    Raises:
        ValueError: if ``key`` is not a single JAX PRNG key.
    """
    if is_traced(key):
        return
    if not isinstance(key, jax.Array):
        raise ValueError(f"key must be a jax.random key (jax.random.key(seed)); got {type(key)}.")
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.shape != ():
            raise ValueError(f"key must be a single key; got a batch of shape {key.shape}.")
    elif key.shape != (2,) or key.dtype != jnp.uint32:
        raise ValueError(
            "key must be a single jax.random key: jax.random.key(seed) or PRNGKey(seed); "
            f"got an array of shape {key.shape} and dtype {key.dtype}."
        )


def check_k(k: Any, n_samples: int) -> int:
    """Validate the number of components against the number of samples.

    Args:
        k: the number of components; must be a Python or NumPy integer.
        n_samples: N, the number of rows of the data.

    Returns:
        k as a Python int.

    Raises:
        ValueError: if k is not an integer, k < 1 or k > N.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"k must be an integer number of components; got {k!r}.")
    k = int(k)
    if k < 1:
        raise ValueError(f"k must be at least 1; got k={k}.")
    if k > n_samples:
        raise ValueError(f"k={k} exceeds the number of samples N={n_samples}; need k <= N.")
    return k


def check_means(
    means: Any, X: jax.Array, name: str = "init_means", *, for_fit: bool = False
) -> jax.Array:
    """Validate initial means against the data and cast them to the data's dtype.

    Args:
        means: array-like of shape (K, D).
        X: validated data of shape (N, D).
        name: the argument's name, used in error messages.
        for_fit: also require K <= N (a fit cannot have more components than rows; evaluating
            a model on a few rows can).

    Returns:
        The means as a JAX array of shape (K, D) in X's dtype.

    Raises:
        ValueError: on a wrong shape, K < 1, K > N for a fit, or NaN/inf entries.
    """
    if not is_traced(means) and not isinstance(means, jax.Array):
        means = np.asarray(means)
    if means.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of shape (K, D); got {tuple(means.shape)}.")
    if means.shape[1] != X.shape[1]:
        raise ValueError(
            f"{name} has {means.shape[1]} columns but X has {X.shape[1]}; "
            "the means and the data must have the same dimension D."
        )
    if means.shape[0] < 1:
        raise ValueError(f"{name} must hold at least one mean; got shape {tuple(means.shape)}.")
    if for_fit:
        check_k(int(means.shape[0]), int(X.shape[0]))
    if not is_traced(means):
        host = np.asarray(means)
        if jnp.issubdtype(host.dtype, jnp.complexfloating):
            raise ValueError(f"{name} must be real; got complex dtype {host.dtype}.")
        if not np.all(np.isfinite(host)):
            raise ValueError(f"{name} contains NaN or inf values.")
    return jnp.asarray(means, dtype=X.dtype)


def check_sigma2(sigma2: Any, dtype: Any, name: str = "sigma2") -> jax.Array:
    """Validate a variance (scalar or any-shaped array of them) and cast it to ``dtype``.

    Args:
        sigma2: the shared variance, >= 0; sigma2 = 0 is the hard (K-means) limit.
        dtype: the data's dtype.
        name: the argument's name, used in error messages.

    Returns:
        sigma2 as a JAX array in ``dtype``.

    Raises:
        ValueError: if sigma2 is negative, NaN or infinite.
    """
    if not is_traced(sigma2):
        host = np.asarray(sigma2)
        if host.dtype == object or not (
            np.issubdtype(host.dtype, np.floating) or np.issubdtype(host.dtype, np.integer)
        ):
            raise ValueError(f"{name} must be a real number >= 0; got {sigma2!r}.")
        if np.any(np.isnan(host)):
            raise ValueError(f"{name} is NaN; it must be a real number >= 0.")
        if np.any(np.isinf(host)):
            raise ValueError(f"{name} is infinite; it must be a finite number >= 0.")
        if np.any(host < 0):
            raise ValueError(f"{name} must be >= 0 (0 is the K-means limit); got {sigma2!r}.")
        if np.any((host > 0) & (host.astype(np.dtype(dtype)) == 0)):
            raise ValueError(
                f"{name}={sigma2!r} underflows to 0 in {np.dtype(dtype)}; pass 0 explicitly for "
                "the hard limit or use a larger value."
            )
    return jnp.asarray(sigma2, dtype=dtype)


def check_weights(weights: Any, n_samples: int, dtype: Any) -> jax.Array | None:
    """Validate non-negative sample weights.

    Args:
        weights: None, or array-like of shape (N,).
        n_samples: N.
        dtype: the data's dtype.

    Returns:
        None, or the weights as a JAX array of shape (N,) in ``dtype``.

    Raises:
        ValueError: on a wrong shape, negative, NaN or infinite weights, or all-zero weights.
    """
    if weights is None:
        return None
    if not is_traced(weights) and not isinstance(weights, jax.Array):
        weights = np.asarray(weights)
    if weights.shape != (n_samples,):
        raise ValueError(
            f"weights must have shape (N,) = ({n_samples},); got {tuple(weights.shape)}."
        )
    if not is_traced(weights):
        host = np.asarray(weights, dtype=np.float64)
        if not np.all(np.isfinite(host)):
            raise ValueError("weights contain NaN or inf values.")
        if np.any(host < 0):
            raise ValueError(f"weights must be non-negative; found {int(np.sum(host < 0))} < 0.")
        if not np.any(host > 0):
            raise ValueError("weights are all zero; at least one sample needs positive weight.")
    return jnp.asarray(weights, dtype=dtype)


def weights_or_ones(weights: Any, n_samples: int, dtype: Any) -> jax.Array:
    """:func:`check_weights`, with ``None`` read as unit weights.

    Args:
        weights: None, or array-like of shape (N,).
        n_samples: N.
        dtype: the data's dtype.

    Returns:
        (N,) weights in ``dtype`` (ones when ``weights`` is None).

    Raises:
        ValueError: as :func:`check_weights`.
    """
    checked = check_weights(weights, n_samples, dtype)
    return jnp.ones((n_samples,), dtype) if checked is None else checked


def check_positive_int(value: Any, name: str, minimum: int = 1) -> int:
    """Validate a static positive integer option (max_iter, block_size, n_init, ...)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer; got {value!r}.")
    if int(value) < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}.")
    return int(value)


def check_tol(tol: Any) -> float:
    """Validate a convergence tolerance (a finite float >= 0)."""
    if is_traced(tol):
        return tol
    try:
        value = float(tol)
    except (TypeError, ValueError):
        raise ValueError(f"tol must be a real number >= 0; got {tol!r}.") from None
    if math.isnan(value) or math.isinf(value) or value < 0:
        raise ValueError(f"tol must be a finite number >= 0; got {tol!r}.")
    return value
