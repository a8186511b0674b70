"""Eager input validation, run before any compiled code.

Every public entry point calls these helpers on its arguments. Concrete arrays are checked for
shapes *and* values (NaN, inf, negative weights, ...). Values that are being traced under ``jit``
or ``vmap`` cannot be inspected; for those only static facts (shapes, dtypes) are checked, and the
caller that made them concrete is responsible for their values.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._block_size import default_block_size
from ._host import aligned_copy, aligned_empty

__all__ = [
    "as_data",
    "check_k",
    "check_key",
    "check_means",
    "check_scalar",
    "check_sigma2",
    "check_weights",
    "dtype_scope",
    "float64_scope",
    "is_soft",
    "is_traced",
    "largest_magnitude",
    "problem_exponent",
    "relative_weights",
    "rows_kept_exponent",
    "scale_exponent",
    "traced_exponent",
    "traced_magnitudes",
    "weights_or_ones",
    "with_float64_scope",
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


def check_integers_held(top: Any, bottom: Any, dtype: Any, name: str = "X") -> None:
    """Refuse integer data that the float dtype they are computed in cannot hold exactly.

    Every integer of magnitude at most 2^(p) is a float of p significand bits (2^24 for float32,
    2^53 for float64); past that, converting would round counts without a word.

    Args:
        top: the largest integer entry.
        bottom: the smallest.
        dtype: the floating dtype the data would be computed in.
        name: the argument's name, used in the message.

    Raises:
        ValueError: if an entry's magnitude is past 2^p for ``dtype``.
    """
    largest = max(abs(int(top)), abs(int(bottom)))
    bits = np.finfo(dtype).nmant + 1
    if largest > 2**bits:
        raise ValueError(
            f"{name} holds integers up to {largest}, past 2^{bits} = {2**bits}: {np.dtype(dtype)}, "
            "the dtype integer data are computed in here, would round them. Convert them "
            "yourself to choose the rounding (X.astype(np.float64) is computed in float64, "
            "exact for integers up to 2^53)."
        )


def as_data(X: Any, name: str = "X") -> jax.Array:
    """Validate a data matrix and return it as a floating JAX array.

    Args:
        X: array-like of shape (N, D).
        name: the argument's name, used in error messages.

    Returns:
        The data as a JAX array of shape (N, D) in its floating dtype (float32 stays float32,
        float64 stays float64 when x64 is enabled; integers become the default float dtype).

    Raises:
        ValueError: if X is not two-dimensional, is empty, is complex, holds NaN or inf, or holds
            integers its float dtype cannot hold exactly.
    """
    if not is_traced(X) and not isinstance(X, jax.Array):
        X = np.asarray(X)
        if not X.dtype.isnative:  # big-endian data (np.fromfile, FITS): JAX takes native only
            X = X.astype(X.dtype.newbyteorder("="))
    if X.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of shape (N, D); got shape {tuple(X.shape)}.")
    if X.shape[0] < 1 or X.shape[1] < 1:
        raise ValueError(f"{name} must have at least one row and one column; got {tuple(X.shape)}.")
    if jnp.issubdtype(X.dtype, jnp.complexfloating):
        raise ValueError(f"{name} must be real; got complex dtype {X.dtype}.")
    dtype = _float_dtype(X.dtype)
    if not is_traced(X):
        host = np.asarray(X)
        # All finite exactly when the largest and the smallest value are (NaN propagates through
        # both): two reductions without the (N, D) temporary of np.isfinite.
        top, bottom = host.max(), host.min()
        if not (np.isfinite(top) and np.isfinite(bottom)):
            bad = int(np.size(host) - np.count_nonzero(np.isfinite(host)))
            raise ValueError(f"{name} contains {bad} NaN or inf value(s); clean the data first.")
        if np.issubdtype(host.dtype, np.integer):
            check_integers_held(top, bottom, dtype, name)
        if isinstance(X, np.ndarray) and X.dtype == dtype:
            return aligned_copy(X)  # one fast copy, never the caller's memory
    return jnp.asarray(X, dtype=dtype)


def _real_array(values: Any, name: str) -> np.ndarray:
    """``values`` as a NumPy array of real numbers (floats, integers or booleans).

    Raises:
        ValueError: naming ``name``, for complex, string, object or other non-numeric values.
    """
    try:
        host = np.asarray(values)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be an array of real numbers; got {values!r}.") from error
    if jnp.issubdtype(host.dtype, jnp.complexfloating):
        raise ValueError(f"{name} must be real; got complex dtype {host.dtype}.")
    if not (
        jnp.issubdtype(host.dtype, jnp.floating)  # also bfloat16 (not a NumPy floating type)
        or np.issubdtype(host.dtype, np.integer)
        or np.issubdtype(host.dtype, np.bool_)
    ):
        raise ValueError(f"{name} must hold real numbers; got dtype {host.dtype}.")
    return host


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
        ValueError: on a wrong shape, K < 1, K > N for a fit, NaN/inf entries, or entries
            that overflow X's dtype.
    """
    if not is_traced(means) and not isinstance(means, jax.Array):
        means = _real_array(means, name)
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
        host = _real_array(means, name)
        if not np.all(np.isfinite(host)):
            raise ValueError(f"{name} contains NaN or inf values.")
        largest = np.finfo(X.dtype).max
        if host.size and np.max(np.abs(host.astype(np.float64))) > largest:
            raise ValueError(
                f"{name} has entries beyond the largest {np.dtype(X.dtype)} number "
                f"({largest:.4g}), the data's dtype: they would become inf."
            )
    return jnp.asarray(means, dtype=X.dtype)


def check_sigma2(
    sigma2: Any, dtype: Any, name: str = "sigma2", *, scalar: bool = True
) -> jax.Array:
    """Validate a variance and cast it to ``dtype``.

    Rules (docs/design.md, "Numerics at the edges"): sigma2 is a real number >= 0, 0 being the
    hard (K-means) limit. A positive value that is not a normal number of ``dtype`` (below the
    smallest normal, e.g. 1.2e-38 in float32, 2.2e-308 in float64) is refused: the CPU flushes
    such values to zero, so they would silently act as 0 in some operations and as a positive
    number in others. Traced values cannot be inspected; the compiled code treats any sigma2
    below the smallest normal number as the hard limit, everywhere alike.

    Args:
        sigma2: the shared variance.
        dtype: the data's dtype.
        name: the argument's name, used in error messages.
        scalar: require a scalar (shape ()); False accepts an array of variances (a schedule).

    Returns:
        sigma2 as a JAX array in ``dtype``.

    Raises:
        ValueError: if sigma2 is not a real number, negative, NaN, infinite, positive but
            below the smallest normal number of ``dtype``, or not a scalar when ``scalar``.
    """
    if not is_traced(sigma2):
        try:
            host = np.asarray(sigma2)
        except (TypeError, ValueError):
            host = np.asarray(None)
        if host.dtype == np.bool_ or not (
            jnp.issubdtype(host.dtype, jnp.floating) or np.issubdtype(host.dtype, np.integer)
        ):
            raise ValueError(f"{name} must be a real number >= 0; got {sigma2!r}.")
        if np.any(np.isnan(host)):
            raise ValueError(f"{name} is NaN; it must be a real number >= 0.")
        if np.any(np.isinf(host)):
            raise ValueError(f"{name} is infinite; it must be a finite number >= 0.")
        if np.any(host < 0):
            raise ValueError(f"{name} must be >= 0 (0 is the K-means limit); got {sigma2!r}.")
        target = np.dtype(dtype)
        if np.any(host.astype(np.float64) > np.finfo(target).max):
            raise ValueError(
                f"{name}={sigma2!r} overflows {target} (largest {np.finfo(target).max:.4g})."
            )
        if np.any((host > 0) & (host.astype(target) < np.finfo(target).tiny)):
            raise ValueError(
                f"{name}={sigma2!r} underflows: it is below the smallest normal {target} "
                f"number ({np.finfo(target).tiny:.4g}), and the CPU flushes such values to zero. "
                "Pass 0 for the hard limit or a larger value."
            )
    shape = tuple(sigma2.shape) if is_traced(sigma2) else host.shape
    if scalar and shape != ():
        raise ValueError(f"{name} must be a scalar; got shape {shape}.")
    return jnp.asarray(sigma2, dtype=dtype)


def is_soft(sigma2: jax.Array) -> jax.Array:
    """Whether a (possibly traced) variance is in the soft regime: >= the smallest normal number.

    Every piece of the isotropic model (E-step engines, objective, hard/soft test) uses this one
    predicate, so a traced sigma2 below the smallest normal number is the hard limit everywhere.
    """
    return sigma2 >= jnp.finfo(sigma2.dtype).tiny


def check_weights(
    weights: Any, n_samples: int, dtype: Any, *, check_scale: bool = True
) -> jax.Array | None:
    """Validate non-negative sample weights.

    Args:
        weights: None, or array-like of shape (N,).
        n_samples: N.
        dtype: the data's dtype.
        check_scale: refuse a largest weight outside :data:`SCALE_WINDOW` of ``dtype`` (False
            where the caller scales the weights itself).

    Returns:
        None, or the weights as a JAX array of shape (N,) in ``dtype``.

    Raises:
        ValueError: on a wrong shape, negative, NaN or infinite weights, all-zero weights,
            or, with ``check_scale``, a largest weight outside ``dtype``'s
            :data:`SCALE_WINDOW`.
    """
    if weights is None:
        return None
    if is_traced(weights):
        _check_weights_shape(weights, n_samples)
    else:
        if not isinstance(weights, jax.Array):
            weights = _real_array(weights, "weights")
        host = _host_weights(weights, n_samples)
        if check_scale:
            _check_weights_scale(host, np.dtype(dtype))
    return jnp.asarray(weights, dtype=dtype)


def _check_weights_shape(weights: Any, n_samples: int) -> None:
    """Refuse weights whose shape is not (N,)."""
    if weights.shape != (n_samples,):
        raise ValueError(
            f"weights must have shape (N,) = ({n_samples},); got {tuple(weights.shape)}."
        )


def _host_weights(weights: Any, n_samples: int) -> np.ndarray:
    """Concrete weights checked on the host (shape, finite, >= 0, one > 0), as float64 NumPy.

    The checks of :func:`check_weights` that need no dtype; nothing goes to a device (under
    JAX's x64 flag off, a float64 device array would be truncated to float32).

    Raises:
        ValueError: as :func:`check_weights`, the window of the largest weight aside.
    """
    host = _real_array(weights, "weights").astype(np.float64)  # a list has no shape yet
    _check_weights_shape(host, n_samples)
    if not np.all(np.isfinite(host)):
        raise ValueError("weights contain NaN or inf values.")
    if np.any(host < 0):
        raise ValueError(f"weights must be non-negative; found {int(np.sum(host < 0))} < 0.")
    if not np.any(host > 0):
        raise ValueError("weights are all zero; at least one sample needs positive weight.")
    return host


def _check_weights_scale(host: np.ndarray, dtype: np.dtype) -> None:
    """Refuse weights whose largest lies outside :data:`SCALE_WINDOW` of ``dtype``.

    ``em`` and ``kmeans`` scale such weights by a power of two themselves
    (:func:`relative_weights`); the other entry points compute with the weights as given, where
    weighted sums past the window overflow (NaN, inf objectives) or flush to zero.

    Raises:
        ValueError: naming the largest weight and the remedy (weights are relative).
    """
    if not np.issubdtype(dtype, np.floating):
        return
    largest = float(np.max(host))
    if window_exponent(largest, dtype):
        window = SCALE_WINDOW[jnp.dtype(dtype)]
        raise ValueError(
            f"the largest weight ({largest:.4g}) lies outside [2^-{window}, 2^{window}], where "
            f"{dtype} weighted sums can overflow or vanish; weights are relative: divide them "
            "by their largest (em and kmeans do so themselves)."
        )


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


def check_fit_inputs(
    variant: Any,
    X: Any,
    params: Any,
    weights: Any,
    max_iter: Any,
    block_size: Any,
    tol: Any,
    *,
    rows: int | None = None,
    backend: str | None = None,
) -> tuple[Any, jax.Array, int, int, float]:
    """The checks of an in-memory fit (``fit``, ``fit_sharded``) on data from :func:`as_data`.

    The variant's ``check_data`` (on concrete data) and ``validate``, the weights and the loop's
    options, in that order.

    Args:
        variant: the mixture variant.
        X: (N, D) data from :func:`as_data`.
        params: the initial parameters.
        weights: None or (N,) sample weights.
        max_iter: the maximum number of iterations.
        block_size: rows per E-step block, or None for the default device's.
        tol: the convergence tolerance.
        rows: the rows one device holds, for the default block size (default N).
        backend: the platform the fit runs on, for the default block size (default that of
            JAX's default device).

    Returns:
        ``(params, weights, max_iter, block_size, tol)``: the parameters as ``validate`` returns
        them, (N,) weights in X's dtype (ones for None) and the checked options.

    Raises:
        ValueError: naming the first input that is not valid.
    """
    if variant.check_data is not None and not is_traced(X):
        variant.check_data(np.asarray(X))
    from ._variant import checked_means, checked_validate  # _variant imports this module

    if variant.validate is not None:
        params = checked_validate(variant, X, params)
    w = weights_or_ones(weights, X.shape[0], X.dtype)
    max_iter = check_max_iter(max_iter)
    k = checked_means(variant, params, X.shape[1], X.dtype).shape[0]
    n = X.shape[0] if rows is None else rows
    block_size = check_block_size(block_size, n, k, X.shape[1], backend=backend)
    return params, w, max_iter, block_size, check_tol(tol)


def check_block_size(
    block_size: Any, n: int, k: int, d: int, lanes: int = 1, backend: str | None = None
) -> int:
    """A fit's rows per E-step block: ``block_size`` checked, or the default device's for None.

    Args:
        block_size: None (the default of :func:`~gmmlimit._block_size.default_block_size`) or a
            positive integer.
        n: rows one device holds.
        k: components.
        d: features.
        lanes: fits run side by side in one program (vmapped restarts or a batch).
        backend: the platform the fit runs on (default that of JAX's default device).

    Raises:
        ValueError: when ``block_size`` is neither None nor a positive integer.
    """
    if block_size is None:
        return default_block_size(n, k, d, lanes, backend)
    return check_positive_int(block_size, "block_size")


def check_positive_int(value: Any, name: str, minimum: int = 1) -> int:
    """Validate a static positive integer option (max_iter, block_size, n_init, ...)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer; got {value!r}.")
    if int(value) < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}.")
    if int(value) > _INT32_MAX:  # compiled loops count in int32
        raise ValueError(f"{name} must be at most 2^31 - 1; got {value}.")
    return int(value)


_INT32_MAX = 2**31 - 1

MAX_ITER_LIMIT = 2**24
"""The largest ``max_iter`` a fit takes: each fit keeps a history of up to ``max_iter``
objectives (rounded up to a power of two), so 2^30 allocated 8 GiB in float64 per fit."""


def check_max_iter(max_iter: Any) -> int:
    """Validate ``max_iter``: an integer in [1, :data:`MAX_ITER_LIMIT`].

    Raises:
        ValueError: if it is not an integer, < 1, or larger than the limit (naming the
            history it would allocate).
    """
    max_iter = check_positive_int(max_iter, "max_iter")
    if max_iter > MAX_ITER_LIMIT:
        raise ValueError(
            f"max_iter must be at most 2^24 = {MAX_ITER_LIMIT}; got {max_iter}: a fit records "
            "its objective at every iteration, in a buffer max_iter long."
        )
    return max_iter


def check_tol(tol: Any) -> float:
    """Validate a convergence tolerance (a finite real number >= 0; :func:`check_scalar`)."""
    if is_traced(tol):
        return tol
    return check_scalar(tol, "tol")


def check_scalar(
    value: Any,
    name: str,
    *,
    positive: bool = False,
    dtype: Any = None,
    owner: str = "the data's",
    subnormal_ok: bool = False,
) -> float:
    """The one check of a scalar option: a finite real number, >= 0 (or > 0), as a Python float.

    Every scalar option of the package (``tol``, ``floor_rel``, ``perturbation``, ``merge_tol``,
    ``rel_gap``, a step size, a covariance floor, ...) is checked here, so the refusals read
    alike and name the option. A real number is a Python or NumPy integer or float, or a 0-d
    array of one; booleans, complex numbers, strings, None and arrays of several values are
    refused, never cast. With ``dtype`` the value is also checked as that dtype holds it, after
    the cast: one that overflows to inf is refused, and so is a positive one that lands below
    the smallest normal number (the CPU flushes such values to zero), unless ``subnormal_ok``.

    Args:
        value: the option as given (concrete; callers pass traced values through themselves).
        name: the option's name, used in every message.
        positive: require > 0 (otherwise >= 0).
        dtype: the floating dtype the value is computed in, or None for no such check.
        owner: whose dtype ``dtype`` is, possessive, for the messages ("the data's",
            "the means'").
        subnormal_ok: accept a positive value below ``dtype``'s smallest normal number (the
            caller rescales it before the cast).

    Returns:
        ``float(value)``, the value as given (the caller casts it).

    Raises:
        ValueError: naming ``name``: "must be a real number" for a value of the wrong kind,
            "must be a finite number" for NaN, inf or one out of range, "overflows in <dtype>"
            or "underflows in <dtype>" (both saying "not representable in <dtype>") for one
            that the dtype cannot hold.
    """
    bound = "> 0" if positive else ">= 0"
    try:
        host = np.asarray(value)
    except (TypeError, ValueError):
        host = np.asarray(None)
    if host.shape != () or not (
        jnp.issubdtype(host.dtype, jnp.floating) or np.issubdtype(host.dtype, np.integer)
    ):
        raise ValueError(f"{name} must be a real number {bound}; got {value!r}.")
    number = float(host)
    if not (math.isfinite(number) and (number > 0 if positive else number >= 0)):
        raise ValueError(f"{name} must be a finite number {bound}; got {value!r}.")
    if dtype is None:
        return number
    target = np.dtype(dtype)
    info = np.finfo(target)
    with np.errstate(over="ignore", under="ignore"):
        cast = float(np.asarray(number).astype(target))
    where = f"{target}, {owner} dtype"
    if math.isinf(cast):
        raise ValueError(
            f"{name}={value!r} overflows in {where}: it is not representable in {target} (the "
            f"largest number is {info.max:.4g}) and would become inf."
        )
    if number > 0 and cast < float(info.tiny) and not subnormal_ok:
        remedy = "a larger value" if positive else "0 or a larger value"
        raise ValueError(
            f"{name}={value!r} underflows in {where}: it is not representable in {target}, "
            f"being below the smallest normal number {info.tiny:.4g}, which the CPU flushes to "
            f"zero. Pass {remedy}."
        )
    return number


SCALE_WINDOW = {jnp.dtype(jnp.float32): 32, jnp.dtype(jnp.float64): 256}
"""Half-width, in binary orders of magnitude, of the range of data magnitudes computed as given.

Squared distances of data whose largest magnitude m lies in [2^-W, 2^W] neither overflow nor
lose their significant bits to underflow (float32: W = 32, float64: W = 256); outside it the
data are rescaled by an exact power of two (:func:`scale_exponent`)."""


def window_exponent(largest: float, dtype: Any) -> int:
    """The binary exponent of ``largest`` (> 0), or 0 while it lies within ``dtype``'s window.

    The one rule behind :func:`scale_exponent` (data) and :func:`relative_weights` (weights).
    """
    return int(window_exponents(np.asarray([largest], np.float64), dtype)[0])


def window_exponents(largest: Any, dtype: Any, xp: Any = np) -> Any:
    """:func:`window_exponent` of each entry of ``largest`` (e.g. each row's magnitude).

    ``xp``: ``numpy``, or ``jax.numpy`` for traced values (:func:`traced_exponent`), whose
    binary exponents are read from the bits (:func:`_device_frexp_exponent`), subnormal
    magnitudes included.
    """
    exponent = _device_frexp_exponent(largest) if xp is jnp else xp.frexp(largest)[1]
    window = SCALE_WINDOW.get(jnp.dtype(dtype), 256)
    return xp.where((exponent >= -window) & (exponent <= window), 0, exponent)


def rows_kept_exponent(
    exponent: Any, rows_largest: Any, largest: Any, d: int, dtype: Any, xp: Any = np
) -> Any:
    """``exponent`` moved as little as needed to keep the rows inside the scale window.

    A problem's exponent is chosen for the largest magnitude of its rows and means together
    (:func:`window_exponents`, or a variant's rule). Where a mean lies more than 2^W times
    farther from the origin than every row, dividing by it would push the rows below the
    window's lower edge 2^-W and their squared distances to 0 (float32 rows near 1 with one
    mean at 2^70: every label 0, a K-means objective of 0). The exponent is clipped to
    [t - W, r + W], t and r the binary exponents of ``largest`` and ``rows_largest``: nothing
    past the window's top while the rows stay inside it, and the rows never below its lower
    edge, the far means then past its top. The clip is taken only where the far means' squared
    distances at that scale stay below the dtype's largest number, D 4 (2^(t - e))^2; past that
    (float32: means about 2^94 times farther than every row at D = 2) no scale holds both, and
    the exponent is left as chosen: right where every mean is that far (the rows are then 0 to
    the dtype's precision beside them), wrong where some means lie near the rows and others that
    far (docs/design.md, "Data scale"). Where the rows' largest is at least the means' (the
    common case), the exponent is returned unchanged.

    Args:
        exponent: the exponent chosen for ``largest`` (an int, or an int array).
        rows_largest: the rows' largest magnitude (0: the exponent is returned as it is).
        largest: the largest magnitude of the rows and means together.
        d: D, the number of features.
        dtype: the data's dtype.
        xp: ``numpy``, or ``jax.numpy`` for traced values (exponents, and whether the rows'
            largest is 0, read from the bits: XLA on the CPU compares a subnormal as 0).

    Returns:
        The exponent, of ``exponent``'s kind.
    """
    window = SCALE_WINDOW.get(jnp.dtype(dtype), 256)
    if xp is jnp:
        rows_e, top_e = _device_frexp_exponent(rows_largest), _device_frexp_exponent(largest)
        bits, _ = _float_bits(jnp.asarray(rows_largest))
        nonzero = (bits & jnp.iinfo(bits.dtype).max) != 0
    else:
        rows_e, top_e = np.frexp(rows_largest)[1], np.frexp(largest)[1]
        nonzero = np.asarray(rows_largest) > 0
    kept = xp.minimum(xp.maximum(exponent, top_e - window), rows_e + window)
    features = math.ceil(math.log2(max(int(d), 1)))
    held = 2 * (top_e - kept) + features + 2 < np.finfo(np.dtype(dtype)).maxexp
    return xp.where(nonzero & held, kept, exponent)


_BIT_INTEGERS = {
    jnp.dtype(jnp.float32): jnp.dtype(jnp.int32),
    jnp.dtype(jnp.float64): jnp.dtype(jnp.int64),
}
"""The signed integer type of each floating dtype's bits (:func:`_float_bits`)."""


def _float_bits(x: jax.Array) -> tuple[jax.Array, Any]:
    """The bits of float32 or float64 ``x`` as signed integers, and ``x``'s ``finfo``.

    A bitcast moves no value through floating-point arithmetic, so XLA on the CPU, which
    flushes subnormal inputs of arithmetic to 0, leaves them as they are.

    Args:
        x: (...) float32 or float64 array.

    Returns:
        ``(bits, info)``: (...) int32 or int64 bits and ``jnp.finfo(x.dtype)``.
    """
    return jax.lax.bitcast_convert_type(x, _BIT_INTEGERS[x.dtype]), jnp.finfo(x.dtype)


def _device_frexp_exponent(x: Any) -> jax.Array:
    """``frexp(x)[1]`` on the device, exact for subnormal ``x`` (``np.frexp``'s exponent).

    ``jnp.frexp`` gives subnormal inputs on the CPU the exponent of the smallest subnormal
    (float32 ``3 * 2^-135``: -149, NumPy -133). Here a normal entry's exponent is its exponent
    field less the bias, a subnormal's the bit length of its mantissa (``jax.lax.clz``) plus
    that of the smallest subnormal. Zero, inf and NaN give 0, as ``np.frexp``.

    Args:
        x: (...) array (traced or not); float32 and float64 are read from their bits, any
            other dtype is passed to ``jnp.frexp``.

    Returns:
        (...) int32 exponents e with ``x = m 2^e``, 0.5 <= |m| < 1.
    """
    x = jnp.asarray(x)
    if x.dtype not in _BIT_INTEGERS:
        return jnp.frexp(x)[1]
    bits, info = _float_bits(jax.lax.stop_gradient(x))
    field = (bits >> info.nmant) & ((1 << info.nexp) - 1)
    mantissa = bits & ((1 << info.nmant) - 1)
    length = info.bits - jax.lax.clz(mantissa)  # the bit length of a subnormal's mantissa
    exponent = jnp.where(field == 0, length + info.minexp - info.nmant, field + info.minexp)
    # Zero: a zero field and no mantissa bit (length 0; tested on the integers alone, as
    # _bits_ldexp does).
    special = ((field == 0) & (length == 0)) | (field == (1 << info.nexp) - 1)
    return jnp.where(special, 0, exponent).astype(jnp.int32)


def _device_largest(arrays: list[jax.Array], dtype: Any) -> jax.Array:
    """The largest magnitude of the (non-empty) arrays on the device, exact for subnormals.

    ``jnp.max(jnp.abs(a))`` flushes subnormal entries to 0 on the CPU. For float32 and
    float64 the maximum is taken over the magnitudes' bits, whose order as integers is that
    of the magnitudes (a NaN's bits are above inf's, so a NaN entry gives NaN, as ``jnp.max``).

    Args:
        arrays: arrays (traced or not) cast to ``dtype``; at least one has entries.
        dtype: the floating dtype of the result.

    Returns:
        () the largest magnitude, in ``dtype``.
    """
    arrays = [jnp.asarray(a).astype(dtype) for a in arrays if jnp.size(a)]
    if arrays[0].dtype not in _BIT_INTEGERS:
        return jnp.max(jnp.stack([jnp.max(jnp.abs(a)) for a in arrays]))
    bits = []
    for a in arrays:
        raw, _ = _float_bits(jax.lax.stop_gradient(a))
        bits.append(jnp.max(raw & jnp.iinfo(raw.dtype).max))
    return jax.lax.bitcast_convert_type(jnp.max(jnp.stack(bits)), arrays[0].dtype)


def largest_magnitude(a: Any) -> float:
    """The largest magnitude max |a| of a concrete array.

    Host data (NumPy, or a JAX array on the CPU) are read as max(a) and -min(a), without an |a|
    temporary or dispatched JAX operations; device data are reduced on the device.
    """
    on_host = isinstance(a, np.ndarray) or (
        isinstance(a, jax.Array)
        and a.is_fully_addressable
        and all(device.platform == "cpu" for device in a.devices())
    )
    if on_host:
        host = np.asarray(a)
        return float(np.maximum(host.max(), -host.min()))
    return float(jnp.max(jnp.abs(a)))


def scale_exponent(*arrays: jax.Array) -> int:
    """The power of two by which concrete data are divided before a computation (0: none).

    Scaling by a power of two is exact, so K-means and EM are computed on ``X * 2^-e`` and their
    results mapped back exactly (means times 2^e, distortion times 4^e). ``e`` is 0 while the
    largest magnitude m of the arrays lies within :data:`SCALE_WINDOW`; otherwise it is the
    binary exponent of m, so that the scaled data have largest magnitude in [0.5, 1). The first
    array holds the rows: where the others (means) lie more than 2^W times farther from the
    origin, e is moved to keep the rows inside the window (:func:`rows_kept_exponent`).

    Args:
        arrays: the rows, then other arrays of the same floating dtype (e.g. the means);
            traced arrays are skipped (their scale is unknown; they are computed as given).

    Returns:
        The exponent e as a Python int.
    """
    concrete = [a for a in arrays if not is_traced(a) and a.size]
    if not concrete:
        return 0
    magnitudes = [largest_magnitude(a) for a in concrete]
    if concrete[0] is not arrays[0]:  # traced or empty rows: the others alone
        return problem_exponent(0.0, max(magnitudes), 1, concrete[0].dtype)
    others = max(magnitudes[1:], default=0.0)
    return problem_exponent(magnitudes[0], others, arrays[0].shape[-1], arrays[0].dtype)


def problem_exponent(rows_largest: float, others_largest: float, d: int, dtype: Any) -> int:
    """:func:`scale_exponent` of rows and means known by their largest magnitudes.

    Args:
        rows_largest: the rows' largest magnitude (0: none known).
        others_largest: the means' largest magnitude (0: none).
        d: D, the number of features.
        dtype: the data's dtype.

    Returns:
        The exponent e as a Python int.
    """
    largest = max(rows_largest, others_largest)
    if not largest > 0:
        return 0
    exponent = window_exponent(largest, dtype)
    return int(rows_kept_exponent(exponent, rows_largest, largest, d, dtype))


def traced_exponent(*arrays: jax.Array) -> jax.Array:
    """:func:`scale_exponent` of traced arrays (inside ``jit`` or ``vmap``), on the device.

    Args:
        arrays: the rows, then other arrays of the same floating dtype (e.g. the means),
            traced or not.

    Returns:
        () int32 exponent e: 0 while the largest magnitude lies within :data:`SCALE_WINDOW`
        (or is 0, inf or NaN), else its binary exponent, moved to keep the rows inside the
        window (:func:`rows_kept_exponent`): the value :func:`scale_exponent` gives the same
        arrays concretely, subnormal magnitudes included (the largest and its exponent are read
        from the bits: :func:`_device_largest`).
    """
    dtype = arrays[0].dtype
    rows_largest, largest = traced_magnitudes(list(arrays), dtype)
    exponent = window_exponents(largest, dtype, jnp)
    d = arrays[0].shape[-1] if jnp.ndim(arrays[0]) else 1
    exponent = rows_kept_exponent(exponent, rows_largest, largest, d, dtype, jnp)
    return exponent.astype(jnp.int32)


def traced_magnitudes(arrays: list[jax.Array], dtype: Any) -> tuple[jax.Array, jax.Array]:
    """The largest magnitude of the rows ``arrays[0]`` and of all ``arrays``, on the device.

    Exact for subnormal entries (:func:`_device_largest`); empty rows give 0.

    Args:
        arrays: the (N, D) rows, then other arrays (e.g. the means), traced or not.
        dtype: the floating dtype of the results.

    Returns:
        () ``(rows_largest, largest)`` in ``dtype``.
    """
    rows = _device_largest(arrays[:1], dtype) if jnp.size(arrays[0]) else jnp.zeros((), dtype)
    others = [a for a in arrays[1:] if jnp.size(a)]
    if not others:
        return rows, rows
    # the rows are read once; the two maxima compared by their bits (subnormals included)
    return rows, _device_largest([rows, _device_largest(others, dtype)], dtype)


def exact_ldexp(a: Any, exponent: int) -> Any:
    """``a * 2^exponent`` exactly, subnormal entries included (data and means to rescale).

    XLA on the CPU flushes subnormal inputs to 0 before any arithmetic, so ``jnp.ldexp`` of
    float32 rows near 1e-36 moved their subnormal entries (below 1.2e-38) by up to 1 % of the
    data's scale. A concrete array on one device is scaled by NumPy on the host instead;
    traced arrays and arrays spread over several devices are scaled on the device from their
    bits (:func:`_device_ldexp`), with ``np.ldexp``'s result.

    Args:
        a: an array (NumPy or JAX) of a floating dtype.
        exponent: the power of two (a traced integer: :func:`traced_exponent`).

    Returns:
        A JAX array of ``a``'s dtype (``a`` itself when ``exponent`` is 0).
    """
    if is_traced(exponent):
        return _device_ldexp(a, exponent)
    if not exponent:
        return a
    if is_traced(a) or (isinstance(a, jax.Array) and len(a.sharding.device_set) > 1):
        return _device_ldexp(a, exponent)
    host = np.asarray(a)
    scaled = aligned_empty(host.shape, host.dtype)
    np.ldexp(host, exponent, out=scaled)
    return jax.device_put(scaled)


def _device_ldexp(a: Any, exponent: Any) -> jax.Array:
    """``np.ldexp(a, exponent)`` on the device, bit for bit, subnormal inputs and results too.

    ``jnp.ldexp`` leaves subnormal entries unscaled on the CPU (their inputs are flushed), and
    arithmetic cannot make a subnormal result there. For float32 and float64 the result is
    assembled from the bits: the significand (the mantissa, with its implicit leading 1 for a
    normal entry) is normalised to its full width and given the new exponent field; a result
    below the normal range keeps the significand shifted right, rounded to nearest, ties to
    even (as ``np.ldexp``); one above it is inf. Zeros, inf and NaN are returned as they are.
    The derivative with respect to ``a`` is 2^exponent (as ``jnp.ldexp``'s). Other dtypes go
    to ``jnp.ldexp``.

    Args:
        a: (...) floating array (traced or not).
        exponent: integer exponent (traced or not), broadcastable against ``a``.

    Returns:
        (...) ``a * 2^exponent`` in ``a``'s dtype.
    """
    a = jnp.asarray(a)
    if a.dtype not in _BIT_INTEGERS:
        return jnp.ldexp(a, exponent)
    return _bits_ldexp(a, jnp.asarray(exponent))


@jax.custom_jvp
def _bits_ldexp(a: jax.Array, exponent: jax.Array) -> jax.Array:
    """:func:`_device_ldexp` of a float32 or float64 ``a``, from its bits."""
    bits, info = _float_bits(a)
    nmant, top = info.nmant, (1 << info.nexp) - 1
    # Beyond this shift every finite nonzero entry is inf or 0; clipping keeps the sums small.
    reach = 2 * (info.maxexp - info.minexp + nmant + 2)
    shift = jnp.clip(exponent, -reach, reach).astype(bits.dtype)
    sign = bits & jnp.iinfo(bits.dtype).min
    field = (bits >> nmant) & top
    mantissa = bits & ((1 << nmant) - 1)
    significand = jnp.where(field == 0, mantissa, mantissa | (1 << nmant))
    # Normalised: the leading 1 at bit nmant, the value significand * 2^(exponent field of
    # the result less the bias less nmant), a subnormal's field counting as 1.
    lead = info.bits - jax.lax.clz(significand)  # 1 .. nmant + 1 for a nonzero entry
    normalised = significand << (nmant + 1 - lead)
    result = jnp.maximum(field, 1) - (nmant + 1 - lead) + shift
    normal = sign | (result << nmant) | (normalised & ((1 << nmant) - 1))
    # Below the normal range: the significand shifted right by 1 - result, rounded to even.
    right = jnp.clip(1 - result, 1, nmant + 2)
    kept = normalised >> right
    rest = normalised & ((1 << right) - 1)
    half = 1 << (right - 1)
    up = (rest > half) | ((rest == half) & ((kept & 1) == 1))
    tiny = sign | (kept + up.astype(bits.dtype))
    assembled = jnp.where(result >= top, sign | (top << nmant), normal)
    assembled = jnp.where(result < 1, tiny, assembled)
    # Zeros (no leading 1) and inf or NaN keep their bits. Tested on the integers alone: LLVM
    # turns a test of the bits for zero into a float comparison, which the CPU's flush makes
    # true for every subnormal.
    assembled = jnp.where(lead == 0, sign, jnp.where(field == top, bits, assembled))
    return jax.lax.bitcast_convert_type(assembled, a.dtype)


@_bits_ldexp.defjvp
def _bits_ldexp_jvp(primals: tuple, tangents: tuple) -> tuple[jax.Array, jax.Array]:
    """The derivative 2^exponent, a product of three normal powers of two (linear in da)."""
    a, exponent = primals
    info = jnp.finfo(a.dtype)
    reach = 3 * (info.maxexp - 2)
    shift = jnp.clip(exponent, -reach, reach)
    first = shift // 3
    second = (shift - first) // 2
    scale = tangents[0]
    for part in (first, second, shift - first - second):
        scale = scale * _bits_ldexp(jnp.ones((), a.dtype), part)
    return _bits_ldexp(a, exponent), scale


def float64_scope(X: Any) -> contextlib.AbstractContextManager:
    """The context a public function computes in: float64 data stay float64.

    Rule (docs/design.md): float64 data with JAX's x64 mode off are computed in float64 under a
    local x64 context (``jax.enable_x64``), never silently in float32; the results are float64
    arrays. Any other input uses the global setting.

    Args:
        X: the data argument as the user passed it.

    Returns:
        A context manager.
    """
    if jax.config.jax_enable_x64 or is_traced(X):
        return contextlib.nullcontext()
    dtype = getattr(X, "dtype", None)
    if dtype is None:
        try:
            dtype = np.asarray(X).dtype
        except (TypeError, ValueError):
            return contextlib.nullcontext()
    return dtype_scope(dtype)


def with_float64_scope(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``fn`` under :func:`float64_scope` of its data, the argument named ``X``."""
    position = list(inspect.signature(fn).parameters).index("X")

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        with float64_scope(kwargs["X"] if "X" in kwargs else args[position]):
            return fn(*args, **kwargs)

    return run


def dtype_scope(dtype: Any) -> contextlib.AbstractContextManager:
    """:func:`float64_scope` for data of ``dtype`` (None: unknown, the global setting)."""
    if dtype is not None and not jax.config.jax_enable_x64 and np.dtype(dtype) == np.float64:
        return jax.enable_x64(True)
    return contextlib.nullcontext()


def relative_weights(weights: Any, n_samples: int, dtype: Any) -> tuple[jax.Array, int]:
    """Validated sample weights divided by an exact power of two 2^e (weights are relative).

    When the largest weight lies outside [2^-W, 2^W] (:data:`SCALE_WINDOW`) the weights are
    scaled, before the cast to ``dtype``, so that the largest lies in [0.5, 1): tiny weights
    would otherwise flush to zero in ``dtype`` and huge ones overflow their totals. Means and
    responsibilities do not depend on the scale; weighted sums (distortion, log-likelihood) are
    multiplied back by 2^e.

    Args:
        weights: None (unit weights, e = 0), or array-like of shape (N,).
        n_samples: N.
        dtype: the data's dtype.

    Returns:
        ``(w, e)``: (N,) weights in ``dtype`` and the exponent e (a traced () int32 for traced
        weights: the same rule on the device, :func:`_device_largest`).

    Raises:
        ValueError: as :func:`check_weights`.
    """
    if weights is None:
        return weights_or_ones(weights, n_samples, dtype), 0
    if is_traced(weights):  # the same rule on the device (nothing is validated there)
        _check_weights_shape(weights, n_samples)
        w = jnp.asarray(weights)
        w = w if jnp.issubdtype(w.dtype, jnp.floating) else w.astype(dtype)
        exponent = window_exponents(_device_largest([w], w.dtype), dtype, jnp).astype(jnp.int32)
        return exact_ldexp(w, -exponent).astype(dtype), exponent
    host = _host_weights(weights, n_samples)
    exponent = window_exponent(float(np.max(host)), dtype)
    return jnp.asarray(np.ldexp(host, -exponent), dtype=dtype), exponent


def real_values(values: Any, name: str = "the schedule") -> np.ndarray:
    """Real values as float64; complex, boolean or non-numeric values are refused, never cast.

    The one check of ``gl.anneal``'s and ``study.anneal_variant``'s schedules and of
    ``gv.limit_sweep``'s grid.

    Args:
        values: the schedule's values (an array-like, or one stage's value).
        name: how error messages name them.

    Returns:
        The values as a float64 NumPy array of the same shape.

    Raises:
        ValueError: naming ``name``, for complex, string, object or boolean values.
    """
    host = _real_array(values, name)
    if host.dtype == np.bool_:
        raise ValueError(f"{name} must hold real numbers, not booleans; got {values!r}.")
    return host.astype(np.float64)


def at_unit_scale(X: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(X / 2^e, e)``, e the binary exponent of X's largest magnitude (0 for zeros).

    Traced (jit-able): the scaled values have largest magnitude in [0.5, 1), so their squares
    neither overflow nor vanish; a power of two is exact, so quantities computed on them map
    back exactly (squares by 4^e).
    """
    largest = jnp.max(jnp.abs(X))
    exponent = jnp.where(largest > 0, jnp.frexp(largest)[1], 0)
    return jnp.ldexp(X, -exponent), exponent
