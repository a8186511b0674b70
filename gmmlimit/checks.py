"""Validation helpers for variant authors (the public face of the package's own checks).

A variant's ``validate(X, params)`` casts every parameter to the data's dtype and refuses what
the model cannot take, eagerly, before any compiled code runs; its ``check_data(x)`` refuses rows
the model cannot take (it runs on the whole data in memory and on every chunk out of core). These
helpers raise ``ValueError`` naming the parameter, check values *after* the cast to the data's
dtype (a rate of 1e-50 is 0 in float32), and pass traced values through (their caller validated
them when they were concrete).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._validation import check_k, check_means, check_scalar, is_traced

__all__ = [
    "check_array",
    "check_beta",
    "check_k",
    "check_means",
    "check_mixing_weights",
    "check_nonnegative_data",
    "check_positive_data",
    "check_positive_scalar",
    "check_unit_interval_data",
    "check_unit_rows",
    "check_variances",
    "is_traced",
]


def check_positive_data(x: np.ndarray, what: str = "this model") -> None:
    """Raise ValueError unless every entry of the rows ``x`` is > 0 (a ``check_data``).

    A positive entry below the dtype's smallest normal number is refused too: XLA on the CPU
    flushes it to 0 before any arithmetic, so its logarithm would be -inf.
    """
    x = np.asarray(x)
    if np.any(x <= 0):
        raise ValueError(f"{what} needs strictly positive data; X has entries <= 0.")
    if jnp.issubdtype(x.dtype, jnp.floating):
        tiny = float(jnp.finfo(x.dtype).tiny)
        if np.any(x < tiny):
            raise ValueError(
                f"{what} needs strictly positive data; X has entries below the smallest normal "
                f"{x.dtype} number ({tiny:.3g}), which the CPU flushes to 0: rescale the data."
            )


def check_nonnegative_data(x: np.ndarray, what: str = "this model") -> None:
    """Raise ValueError unless every entry of the rows ``x`` is >= 0 (a ``check_data``)."""
    if np.any(np.asarray(x) < 0):
        raise ValueError(f"{what} needs non-negative data; X has negative entries.")


def check_unit_interval_data(x: np.ndarray, what: str = "this model") -> None:
    """Raise ValueError unless every entry of the rows ``x`` lies in [0, 1] (a ``check_data``)."""
    x = np.asarray(x)
    if np.any(x < 0) or np.any(x > 1):
        raise ValueError(f"{what} needs data in [0, 1]; X has entries outside.")


def _cast(value: Any, dtype: Any) -> np.ndarray:
    """The host value as it will be computed: cast to ``dtype`` (overflow gives inf, no warning)."""
    with np.errstate(over="ignore", under="ignore"):
        return np.asarray(value).astype(np.dtype(dtype))


def check_beta(beta: Any, dtype: Any, name: str = "beta") -> jax.Array:
    """Validate an inverse temperature: a scalar in (0, +inf] (+inf is the hard limit).

    Checked as given and after the cast to ``dtype`` (a positive beta below the smallest normal
    number there, 0 or subnormal, is refused; one that overflows is the hard limit only if it was
    given as inf).

    Raises:
        ValueError: if beta is not a real scalar, is NaN, is <= 0, or is not representable.
    """
    if not is_traced(beta):
        host = np.asarray(beta)
        if host.dtype == object or not (
            jnp.issubdtype(host.dtype, jnp.floating) or np.issubdtype(host.dtype, np.integer)
        ):
            raise ValueError(f"{name} must be a real number in (0, inf]; got {beta!r}.")
        if host.ndim != 0:
            raise ValueError(f"{name} must be a scalar; got shape {host.shape}.")
        if np.isnan(host) or host <= 0:
            raise ValueError(f"{name} must be in (0, inf] (inf is the hard limit); got {beta!r}.")
        cast = _cast(host, dtype)
        if np.isinf(cast) and not np.isinf(host):
            raise ValueError(
                f"{name}={beta!r} is not representable in {np.dtype(dtype)} (it becomes {cast}); "
                "pass inf for the hard limit."
            )
        if cast < np.finfo(dtype).tiny:
            raise ValueError(
                f"{name}={beta!r} is not representable in {np.dtype(dtype)}: it is below the "
                f"smallest normal number ({np.finfo(dtype).tiny:.4g}), which the CPU flushes to "
                "zero."
            )
    beta = jnp.asarray(beta, dtype=dtype)
    if beta.ndim != 0:
        raise ValueError(f"{name} must be a scalar; got shape {tuple(beta.shape)}.")
    return beta


def check_positive_scalar(value: Any, dtype: Any, name: str) -> jax.Array:
    """Validate a finite scalar > 0 (a covariance floor, a rate floor, ...), also after the cast.

    The package's one scalar check (:func:`gmmlimit._validation.check_scalar`) with ``positive``
    and ``dtype``; traced values pass through.

    Raises:
        ValueError: naming ``name``, if it is not a real scalar, not finite, <= 0, or below the
            smallest normal number ("underflows in <dtype>") or inf ("overflows in <dtype>")
            in ``dtype``.
    """
    if not is_traced(value):
        check_scalar(value, name, positive=True, dtype=dtype)
    return jnp.asarray(value, dtype=dtype)


def check_mixing_weights(weights: Any, k: int, dtype: Any, name: str = "weights") -> jax.Array:
    """Validate mixing weights: shape (K,), finite, >= 0, positive sum; returned normalised.

    The weights are relative: they are normalised in float64 before the cast, so weights that
    are all tiny or all huge are accepted as long as their ratios fit the dtype.

    Raises:
        ValueError: on a wrong shape, NaN/inf or negative entries, or an all-zero vector (also
            after the cast to ``dtype``).
    """
    if not is_traced(weights) and not isinstance(weights, jax.Array):
        weights = np.asarray(weights)
    if tuple(weights.shape) != (k,):
        raise ValueError(f"{name} must have shape (K,) = ({k},); got {tuple(weights.shape)}.")
    if not is_traced(weights):
        raw = np.asarray(weights)
        if np.iscomplexobj(raw) or not jnp.issubdtype(raw.dtype, jnp.number):
            raise ValueError(f"{name} must hold real numbers; got dtype {raw.dtype}.")
        host = raw.astype(np.float64)
        if not np.all(np.isfinite(host)) or np.any(host < 0) or not np.any(host > 0):
            raise ValueError(f"{name} must be finite, >= 0 and not all zero; got {host}.")
        normalised = _cast(host / host.sum(), dtype)
        if not np.any(normalised > 0):
            raise ValueError(f"{name} underflow to 0 in {np.dtype(dtype)} after normalising.")
        return jnp.asarray(normalised / normalised.sum(), dtype=dtype)
    weights = jnp.asarray(weights, dtype=dtype)
    return weights / jnp.sum(weights)


def check_array(
    value: Any,
    shape: tuple[int, ...],
    dtype: Any,
    name: str,
    *,
    positive: bool = False,
    open_unit: bool = False,
) -> jax.Array:
    """Validate a finite real parameter array of an exact shape and cast it to ``dtype``.

    The values are checked as they will be computed, after the cast: a rate of 1e-50 is 0 in
    float32 and a probability of 1 - 1e-10 is 1 there, and both are refused.

    Args:
        value: the parameter.
        shape: its required shape.
        dtype: the data's dtype.
        name: its name, for error messages.
        positive: require every entry > 0 (after the cast).
        open_unit: require every entry strictly between 0 and 1 (after the cast).

    Raises:
        ValueError: on a wrong shape, non-real dtype, NaN/inf entries, or a value outside the
            required range in ``dtype``.
    """
    if not is_traced(value) and not isinstance(value, jax.Array):
        value = np.asarray(value)
    if tuple(value.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}; got {tuple(value.shape)}.")
    if not is_traced(value):
        host = np.asarray(value)
        if not jnp.issubdtype(host.dtype, jnp.number) or np.issubdtype(
            host.dtype, np.complexfloating
        ):
            raise ValueError(f"{name} must hold real numbers; got dtype {host.dtype}.")
        if not np.all(np.isfinite(host)):
            raise ValueError(f"{name} contains NaN or inf values.")
        cast = _cast(host, dtype)
        where = f" in {np.dtype(dtype)}"
        if not np.all(np.isfinite(cast)):
            raise ValueError(f"{name} overflows{where}.")
        tiny = _smallest_normal(cast)
        if positive and np.any(cast < tiny):
            raise ValueError(
                f"{name} must be > 0{where}, at least its smallest normal number {tiny:.4g} "
                "(values <= 0, or subnormal ones, which XLA computes as 0)."
            )
        if open_unit and (np.any(cast < tiny) or np.any(cast >= 1)):
            raise ValueError(
                f"{name} must lie strictly between 0 and 1{where}, at least its smallest normal "
                f"number {tiny:.4g} (a subnormal value is computed as 0)."
            )
    return jnp.asarray(value, dtype=dtype)


def _smallest_normal(cast: np.ndarray) -> float:
    """The smallest positive normal number of ``cast``'s floating dtype.

    A value below it (subnormal) is computed as 0 by XLA, which flushes subnormals.
    """
    return float(np.finfo(cast.dtype).tiny)


def check_variances(value: Any, shape: tuple[int, ...], dtype: Any, name: str) -> jax.Array:
    """Validate positive finite variances of an exact shape.

    Checked as given and after the cast to ``dtype`` (a variance that underflows to 0 or
    overflows there is refused).

    Raises:
        ValueError: on a wrong shape, or non-finite or non-positive entries.
    """
    if not is_traced(value) and not isinstance(value, jax.Array):
        value = np.asarray(value)
    if tuple(value.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}; got {tuple(value.shape)}.")
    if not is_traced(value):
        raw = np.asarray(value)
        if np.iscomplexobj(raw) or not jnp.issubdtype(raw.dtype, jnp.number):
            raise ValueError(f"{name} must hold real numbers; got dtype {raw.dtype}.")
        host = raw.astype(np.float64)
        if not np.all(np.isfinite(host)) or np.any(host <= 0):
            raise ValueError(f"{name} must be finite and > 0.")
        cast = _cast(host, dtype)
        tiny = _smallest_normal(cast)
        if not np.all(np.isfinite(cast)) or np.any(cast < tiny):
            raise ValueError(
                f"{name} must be finite and > 0 in {np.dtype(dtype)} (after the cast), at least "
                f"its smallest normal number {tiny:.4g} (a subnormal value is computed as 0)."
            )
    return jnp.asarray(value, dtype=dtype)


def check_unit_rows(a: jax.Array, name: str) -> None:
    """Raise ValueError unless every row of a concrete ``a`` has unit norm (to 1e-3)."""
    if is_traced(a):
        return
    norms = np.linalg.norm(np.asarray(a, dtype=np.float64), axis=1)
    if np.any(np.abs(norms - 1.0) > 1e-3):
        raise ValueError(f"{name} must have unit-norm rows (normalise them first).")
