"""Public faces of the fit driver and the model's basic quantities.

Every function here validates its concrete arguments eagerly (ValueError naming the problem) and
then calls compiled code. Under ``jit``/``vmap`` the traced arguments are passed through.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from functools import partial
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from . import init as _init
from ._driver import (
    FitResult,
    fit_compiled,
    fit_program,
    history_length,
    stats_compiled,
    step_compiled,
    trim_history,
)
from ._offset import offset_of, traced_offset, translate
from ._rescale import (
    Scale,
    check_scaled_sigma2,
    fit_rescaled,
    offset_tuple,
    prepare,
    scaled_back,
    traced_scale,
)
from ._validation import (
    as_data,
    check_block_size,
    check_fit_inputs,
    check_k,
    check_key,
    check_max_iter,
    check_positive_int,
    check_sigma2,
    check_tol,
    exact_ldexp,
    float64_scope,
    is_soft,
    is_traced,
    relative_weights,
    scale_exponent,
    weights_or_ones,
    with_float64_scope,
)
from ._variant import (
    Params,
    Variant,
    abstract,
    check_temperature,
    check_variant,
    checked_validate,
    with_temperature,
)
from ._variant_scale import (
    NO_MAP,
    is_scaled,
    scaling_law,
    variant_fit_map,
    variant_params,
    variant_result,
)
from .variants._isotropic import (
    IsotropicParams,
    assign,
    isotropic,
    isotropic_bounded,
    log_likelihood_from_stats,
    validate_params,
)

__all__ = [
    "critical_sigma2",
    "em",
    "em_step",
    "fit",
    "kmeans",
    "kmeans_objective",
    "log_likelihood",
    "responsibilities",
    "restarts",
]


def fit(
    variant: Variant,
    X: Any,
    params: Params,
    *,
    max_iter: int = 300,
    tol: float = 1e-8,
    weights: Any = None,
    block_size: int | None = None,
) -> FitResult:
    """Fit any mixture variant with the one compiled driver.

    Args:
        variant: the :class:`~gmmlimit.Variant` (e.g. ``gmmlimit.variants.isotropic``).
        X: (N, D) data, float32 or float64.
        params: the variant's initial parameter pytree.
        max_iter: maximum number of E+M iterations (>= 1).
        tol: stopping tolerance: relative objective gain for soft fits; total squared centre
            shift relative to the mean per-feature variance of X for hard fits (which also stop
            as soon as no label changes).
        weights: optional (N,) non-negative sample weights.
        block_size: rows per streamed E-step block; None (default) takes the default device's
            (:func:`gmmlimit.scale.default_block_size`).

    Returns:
        A :class:`FitResult` in X's dtype: ``objective`` higher is better at every temperature
        (log-likelihood or free energy; -J at the hard limit), ``distortion`` the hard
        objective J; ``converged`` as promised by ``gmmlimit._driver.stop_rule``.

    Raises:
        ValueError: on invalid data (including values the variant's ``check_data`` refuses),
            parameters, weights or options, or a ``variant`` that is not a Variant.

    Example:
        >>> import jax.numpy as jnp
        >>> import gmmlimit as gl
        >>> X = jnp.array([[0.0, 0.0], [0.0, 2.0], [8.0, 0.0], [8.0, 2.0]])
        >>> start = gl.variants.IsotropicParams(X[::2], 0.0)  # sigma2 = 0: K-means
        >>> res = gl.fit(gl.variants.isotropic, X, start)
        >>> res.means.tolist(), res.labels.tolist()
        ([[0.0, 1.0], [8.0, 1.0]], [0, 0, 1, 1])
    """
    with float64_scope(X):
        return _fit(variant, as_data(X), params, max_iter, tol, weights, block_size)


def _fit(
    variant: Variant,
    X: jax.Array,
    params: Params,
    max_iter: int,
    tol: float,
    weights: Any,
    block_size: int,
    *,
    mapped: bool = False,
) -> FitResult:
    """:func:`fit` on data that has already passed :func:`as_data`.

    A variant with a ``scaling`` fits data past the dtype's scale window as X / 2^e, exactly,
    and maps the result back (``_variant_scale.variant_result``). ``mapped``: the caller has
    translated and rescaled the data already (``_rescale.fit_rescaled``): they are fit as given,
    never translated a second time (the offset rule is not idempotent on translated data).
    """
    check_variant(variant)
    params, w, max_iter, block_size, tol = check_fit_inputs(
        variant, X, params, weights, max_iter, block_size, tol
    )
    data_map = NO_MAP if mapped else variant_fit_map(variant, X, variant.means(params))
    if not data_map.identity:
        X, params = data_map.data(X), variant_params(variant, params, data_map)
    result = fit_compiled(variant, X, w, params, tol, max_iter=max_iter, block_size=block_size)
    return variant_result(variant, result, data_map, lambda: jnp.sum(w))


Algorithm = Literal["auto", "lloyd", "hamerly"]
"""How a hard (K-means) fit finds labels: every row against every mean, or Hamerly's bounds."""

ALGORITHMS = ("auto", "lloyd", "hamerly")

BOUNDS_MIN_FEATURES = 32
BOUNDS_MIN_SCORE_WORK = 4096
"""``algorithm="auto"`` uses Hamerly's bounds from 32 features and D * K >= 4096 on: below them
a row's scores cost little beside its bound test and the bounds' memory traffic (whole fits
measured by ``benchmarks/hamerly.py --no-sklearn``, docs/benchmarks.md)."""


def _hard_variant(algorithm: Any, d: int, k: int) -> Variant:
    """The isotropic variant of a hard fit by ``algorithm`` (both give the same iterates).

    Raises:
        ValueError: if ``algorithm`` is not one of :data:`ALGORITHMS`.
    """
    if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}; got {algorithm!r}.")
    if algorithm == "auto":
        wide = d >= BOUNDS_MIN_FEATURES and d * k >= BOUNDS_MIN_SCORE_WORK
        algorithm = "hamerly" if wide else "lloyd"
    return isotropic_bounded if algorithm == "hamerly" else isotropic


def _fit_isotropic(
    X: jax.Array,
    params: IsotropicParams,
    max_iter: int,
    tol: float,
    weights: Any,
    block_size: int,
    algorithm: Any = "auto",
) -> FitResult:
    """:func:`em` and :func:`kmeans`: the isotropic fit on exactly rescaled data, mapped back.

    A concrete sigma2 of 0 runs the variant ``algorithm`` picks (:func:`_hard_variant`); any
    other sigma2 runs the bounds only when asked (``algorithm="hamerly"``): whole EM fits
    measured both faster and slower with them (docs/benchmarks.md).
    """
    max_iter = check_max_iter(max_iter)
    original = validate_params(X, params)
    block_size = check_block_size(block_size, X.shape[0], original.means.shape[0], X.shape[1])
    hard = not is_traced(params.sigma2) and float(np.asarray(params.sigma2)) == 0.0
    chosen = _hard_variant(algorithm, X.shape[1], original.means.shape[0])
    soft_variant = isotropic_bounded if algorithm == "hamerly" else isotropic
    variant = chosen if hard else soft_variant

    def run(Xs: jax.Array, scaled: IsotropicParams, w: jax.Array) -> FitResult:
        return _fit(variant, Xs, scaled, max_iter, tol, w, block_size, mapped=True)

    return fit_rescaled(run, X, params, weights)


@with_float64_scope
def em(
    X: Any,
    init_means: Any,
    sigma2: Any,
    *,
    max_iter: int = 300,
    tol: float = 1e-8,
    weights: Any = None,
    block_size: int | None = None,
    algorithm: Algorithm = "auto",
) -> FitResult:
    """EM for the isotropic equal-prior mixture with fixed shared variance sigma2.

    ``em(X, m0, 0.0)`` runs exactly Lloyd's iterations (it is :func:`kmeans`, with ``tol`` read
    as kmeans reads it). Changing sigma2 between calls does not recompile. Data whose magnitude
    lies outside the dtype's safe range are computed rescaled by an exact power of two and the
    results mapped back, float64 data stay float64 with JAX's x64 mode off (docs/design.md).

    Args:
        X: (N, D) data.
        init_means: (K, D) initial means.
        sigma2: the shared variance, >= 0 (a scalar, possibly traced).
        max_iter: maximum number of iterations.
        tol: stop once the relative log-likelihood gain is <= tol (sigma2 > 0).
        weights: optional (N,) non-negative sample weights (relative: only ratios matter).
        block_size: rows per streamed E-step block; None (default) takes the default device's
            (:func:`gmmlimit.scale.default_block_size`).
        algorithm: ``"hamerly"`` keeps per-row bounds (as :func:`kmeans` does) and skips the
            rows whose responsibilities are provably exactly one-hot at sigma2 (every other
            component's exponential underflows to 0): the same iterates, bit for bit, with the
            compiled CPU kernel. ``"lloyd"`` scores every row; ``"auto"`` is ``"lloyd"`` for
            sigma2 > 0 and as in :func:`kmeans` at sigma2 = 0.

    Returns:
        :class:`FitResult`; ``objective`` and ``history`` hold the log-likelihood (higher is
        better; -J at sigma2 = 0, where the log-likelihood is not finite), ``distortion`` the
        K-means objective J at the returned means.

    Raises:
        ValueError: on invalid data, means, sigma2 (negative, NaN, infinite, subnormal, or
            vanishing relative to the data's scale), weights or options.

    Example:
        >>> import jax.numpy as jnp
        >>> import gmmlimit as gl
        >>> X = jnp.array([[0.0, 0.0], [0.0, 2.0], [8.0, 0.0], [8.0, 2.0]])
        >>> soft = gl.em(X, X[::2], 1.0)
        >>> jnp.round(soft.means, 6).tolist()  # each mean feels the far pair by exp(-32)
        [[0.0, 1.0], [8.0, 1.0]]
        >>> gl.em(X, X[::2], 0.0).labels.tolist() == gl.kmeans(X, X[::2]).labels.tolist()
        True
    """
    X = as_data(X)
    params = IsotropicParams(init_means, check_sigma2(sigma2, X.dtype))
    return _fit_isotropic(X, params, max_iter, tol, weights, block_size, algorithm)


@with_float64_scope
def kmeans(
    X: Any,
    init_means: Any,
    *,
    max_iter: int = 300,
    tol: float = 0.0,
    weights: Any = None,
    block_size: int | None = None,
    algorithm: Algorithm = "auto",
) -> FitResult:
    """Lloyd's K-means: the isotropic mixture at sigma2 = 0, run by the same driver as EM.

    Stops when no label changes, or when the total squared centre shift is <= tol times the mean
    per-feature variance of X (scikit-learn's convention, so ``tol`` means the same as in
    ``sklearn.cluster.KMeans``). An empty cluster is moved to the point farthest from its centre.
    The fit is scale-invariant: data at any magnitude the dtype holds are computed rescaled by
    an exact power of two and the results mapped back.

    ``algorithm="hamerly"`` keeps, per row, a lower bound on its distance to every other mean
    (Hamerly's bound, moved by the means' shifts each iteration) and does not compare a row with
    every mean when the bound proves, beyond the rounding error of the comparison, that its label
    cannot change. It produces Lloyd's iterates bit for bit (labels, means, objectives, iteration
    count) with far fewer distance computations once most labels have settled; it needs the
    compiled CPU kernel (elsewhere it is Lloyd). ``"auto"`` picks it from 32 features and
    D * K >= 4096 on.

    Args:
        X: (N, D) data.
        init_means: (K, D) initial means.
        max_iter: maximum number of iterations.
        tol: centre-shift tolerance (relative, see above).
        weights: optional (N,) non-negative sample weights (relative: only ratios matter).
        block_size: rows per streamed E-step block; None (default) takes the default device's
            (:func:`gmmlimit.scale.default_block_size`).
        algorithm: ``"lloyd"`` (every row against every mean), ``"hamerly"`` (the same iterates
            with Hamerly's bounds) or ``"auto"``.

    Returns:
        :class:`FitResult`; ``distortion`` is the inertia J at the returned means, ``objective``
        is -J (higher is better, as at every temperature) and ``history`` holds -J before each
        update.

    Example:
        >>> import jax.numpy as jnp
        >>> import gmmlimit as gl
        >>> X = jnp.array([[0.0, 0.0], [0.0, 2.0], [8.0, 0.0], [8.0, 2.0]])
        >>> res = gl.kmeans(X, X[::2])
        >>> res.means.tolist(), res.labels.tolist()
        ([[0.0, 1.0], [8.0, 1.0]], [0, 0, 1, 1])
        >>> float(gl.kmeans_objective(X, res.means))  # J: every point at distance 1
        4.0
    """
    X = as_data(X)
    params = IsotropicParams(init_means, jnp.zeros((), X.dtype))
    return _fit_isotropic(X, params, max_iter, tol, weights, block_size, algorithm)


@with_float64_scope
def em_step(
    X: Any,
    means: Any,
    sigma2: Any,
    *,
    weights: Any = None,
    block_size: int | None = None,
) -> jax.Array:
    """One EM update of the means (one Lloyd update at sigma2 = 0).

    A mean whose total responsibility sum_n w_n r_nk is 0 in the dtype (no row nearest to it at
    sigma2 = 0, or every r_nk below the smallest normal number) keeps its place, as in the fits'
    M-step: ``em_step`` never moves it (moving an empty cluster to the farthest point is a rule of
    the fit, :func:`kmeans`), so the update at sigma2 = 0 is the limit of the updates at sigma2 >
    0, as :func:`gmmlimit.study.update_gap` measures (before 2026-12-08 the step at sigma2 = 0
    relocated an empty cluster, a jump of order one at the limit). The update sums
    w_n r_nk x_n in the dtype: where a total is a normal number but the products r_nk x_n fall
    below the smallest normal one (a total within a factor of about 1 / max |x| of it, e.g.
    about 1e-287 for float64 rows near 2^-100), they are flushed to 0 and the mean moves toward
    the origin.

    Args:
        X: (N, D) data.
        means: (K, D) current means.
        sigma2: shared variance >= 0.
        weights: optional (N,) sample weights.
        block_size: rows per streamed E-step block; None (default) takes the default device's
            (:func:`gmmlimit.scale.default_block_size`).

    Returns:
        (K, D) updated means, in X's dtype.
    """
    X = as_data(X)
    Xs, params, w, scale = prepare(X, IsotropicParams(means, sigma2), weights, for_fit=True)
    block_size = check_block_size(block_size, X.shape[0], params.means.shape[0], X.shape[1])
    new = step_compiled(isotropic, Xs, w, params, block_size=block_size).means
    return scale.means_back(new)


@with_float64_scope
def responsibilities(X: Any, means: Any, sigma2: Any) -> jax.Array:
    """Posterior responsibilities r_nk of the isotropic equal-prior mixture.

    Computed as softmax_k(-(d_nk - d_n*) / (2 sigma2)) so that nothing overflows at any sigma2;
    at sigma2 = 0 the one-hot of the nearest mean (ties: lowest index).

    Args:
        X: (N, D) data.
        means: (K, D) means.
        sigma2: shared variance >= 0.

    Returns:
        (N, K) responsibilities in X's dtype (materialised: use for diagnostics, not for fits).

    Example:
        >>> import jax.numpy as jnp
        >>> import gmmlimit as gl
        >>> X, means = jnp.array([[0.0], [1.0], [2.0]]), jnp.array([[0.0], [2.0]])
        >>> gl.responsibilities(X, means, 0.0).tolist()  # row 1 ties: the lower index
        [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]
        >>> gl.responsibilities(X, means, 1.0)[1].tolist()
        [0.5, 0.5]
    """
    X = as_data(X)
    Xs, params, _, _ = prepare(X, IsotropicParams(means, sigma2), None, for_fit=False)
    return _responsibilities(Xs, params)


@jax.jit
def _responsibilities(X: jax.Array, params: IsotropicParams) -> jax.Array:
    return assign(params, X)[0].resp


@with_float64_scope
def log_likelihood(X: Any, means: Any, sigma2: Any, *, weights: Any = None) -> jax.Array:
    """Log-likelihood l of the isotropic equal-prior mixture.

    l = -N ln K - (N D / 2) ln(2 pi sigma2) + sum_n logsumexp_k(-d_nk / (2 sigma2)), evaluated as
    -d_n*/(2 sigma2) + ln sum_k exp(-(d_nk - d_n*)/(2 sigma2)) per row. With weights, N becomes
    the total weight and each row's term is weighted. Finite wherever the true value is
    representable, at every sigma2 > 0 up to the dtype's largest number.

    Args:
        X: (N, D) data.
        means: (K, D) means.
        sigma2: shared variance > 0 (the log-likelihood diverges at 0).
        weights: optional (N,) sample weights.

    Returns:
        Scalar log-likelihood in X's dtype. At a traced sigma2 that the E-step takes as the hard
        limit (0, or below the smallest normal number in the units it computes in), l's limit:
        -inf, or +inf where every row sits on a mean (J = 0).

    Raises:
        ValueError: on invalid inputs, including a concrete sigma2 = 0.

    Example:
        >>> import jax.numpy as jnp
        >>> import gmmlimit as gl
        >>> X, means = jnp.array([[0.0], [1.0], [2.0]]), jnp.array([[0.0], [2.0]])
        >>> round(float(gl.log_likelihood(X, means, 1.0)), 4)
        -4.3893
        >>> gl.log_likelihood(X, means, 0.0)
        Traceback (most recent call last):
            ...
        ValueError: the log-likelihood is not finite at sigma2 = 0; ...
    """
    X = as_data(X)
    original = check_sigma2(sigma2, X.dtype)
    if not is_traced(sigma2) and float(np.asarray(sigma2)) == 0.0:  # original: traced in jit
        raise ValueError(
            "the log-likelihood is not finite at sigma2 = 0; use kmeans_objective (its "
            "limit after scaling by -2 sigma2) or a positive sigma2."
        )
    Xs, params, w, scale = prepare(X, IsotropicParams(means, sigma2), weights, for_fit=False)
    stats, _ = stats_compiled(isotropic, Xs, w, params)
    # At a traced sigma2 of 0 (or below the smallest normal number: the hard limit, is_soft) l is
    # its limit: -J / (2 sigma2) -> -inf, or +inf where every row sits on a mean (J = 0).
    value = log_likelihood_from_stats(params, stats)
    if not scale.identity:
        value = scale.log_likelihood(value, original, params.sigma2, stats.total_weight, X.shape[1])
    limit = jnp.where(stats.distortion > 0, -jnp.inf, jnp.inf)
    return jnp.where(is_soft(params.sigma2), value, limit).astype(X.dtype)


@with_float64_scope
def kmeans_objective(X: Any, means: Any, *, weights: Any = None) -> jax.Array:
    """The K-means objective (distortion, inertia) J = sum_n w_n min_k ||x_n - mu_k||^2.

    Args:
        X: (N, D) data.
        means: (K, D) means.
        weights: optional (N,) sample weights.

    Returns:
        Scalar J in X's dtype.
    """
    X = as_data(X)
    zero = jnp.zeros((), X.dtype)
    Xs, params, w, scale = prepare(X, IsotropicParams(means, zero), weights, for_fit=False)
    stats, _ = stats_compiled(isotropic, Xs, w, params)
    return scale.distortion(stats.distortion)


@with_float64_scope
def critical_sigma2(X: Any, *, weights: Any = None) -> jax.Array:
    """The critical variance of the first phase transition: lambda_max of the 1/N covariance.

    Above it the collapsed fixed point mu_k = mean(X) is stable under EM; below it, it splits.
    Computed on the data translated by their exact offset (docs/design.md, "Data far from the
    origin": the covariance does not move) and rescaled by an exact power of two, so it is
    finite wherever the answer is representable, and rows far from the origin keep their bits
    (float32 rows near 1e6 with unit spread: a relative error of 7.8e-5 before the translation,
    1e-8 after).

    Args:
        X: (N, D) data.
        weights: optional (N,) sample weights (then the weighted covariance).

    Returns:
        Scalar lambda_max(C), C = (1/W) sum_n w_n (x_n - xbar)(x_n - xbar)^T, in X's dtype.
    """
    X = as_data(X)
    w, _ = relative_weights(weights, X.shape[0], X.dtype)  # the covariance is a weighted mean
    # Always to magnitude ~1 here: the covariance's products and sums would overflow or
    # underflow well inside the safe range of a distance computation. Traced data: the
    # exponent on the device (frexp gives 0 for 0).
    if is_traced(X):
        X = translate(X, traced_offset(X))
        e = jnp.frexp(jnp.max(jnp.abs(X)))[1]
    else:
        X = translate(X, offset_of(X))
        largest = float(jnp.max(jnp.abs(X)))
        e = math.frexp(largest)[1] if largest > 0 else 0
    return jnp.ldexp(_critical_sigma2(exact_ldexp(X, -e), w), 2 * e)


@jax.jit
def _critical_sigma2(X: jax.Array, w: jax.Array) -> jax.Array:
    total = jnp.sum(w)
    mean = jnp.matmul(w, X, precision=jax.lax.Precision.HIGHEST) / total
    # one correction pass: the rounded mean of constant rows is an ulp off them, and that ulp,
    # squared and scaled back by 4^e, was the answer (inf for float32 rows of 1e30; true: 0)
    mean = mean + jnp.matmul(w, X - mean, precision=jax.lax.Precision.HIGHEST) / total
    centred = X - mean
    cov = jnp.matmul((centred * w[:, None]).T, centred, precision=jax.lax.Precision.HIGHEST) / total
    return jnp.linalg.eigvalsh(cov)[-1]


@with_float64_scope
def restarts(
    key: jax.Array,
    X: Any,
    k: int,
    *,
    variant: Variant | None = None,
    temperature: Any = None,
    sigma2: Any = 0.0,
    n_init: int = 10,
    init: Literal["k-means++", "random"] | Callable[..., Params] | None = None,
    max_iter: int = 300,
    tol: float | None = None,
    weights: Any = None,
    block_size: int | None = None,
    algorithm: Algorithm = "auto",
) -> FitResult:
    """Several fits from independent initialisations, keeping the best.

    The headline form fits the isotropic model at ``sigma2`` (0: K-means). With ``variant``, any
    variant is fitted from its own ``init(key, X, k)`` (or ``init``, a callable of the same
    form), at ``temperature`` in the variant's own units when given (``beta`` for the tempered
    variants; None keeps the temperature ``init`` returns).

    The starts are drawn in one ``vmap`` over the keys. On the CPU the fits then run one after
    another (one compiled fit for all of them): restarts cost exactly their separate fits, and
    the result is the best of those fits bit for bit (the first of equals). On other platforms
    they run as one ``vmap``.

    Args:
        key: a ``jax.random`` key; restart i uses ``jax.random.split(key, n_init)[i]``.
        X: (N, D) data.
        k: number of components.
        variant: a :class:`~gmmlimit.Variant` with ``init`` (default: the isotropic model).
        temperature: the variant's temperature for every restart (with ``variant``).
        sigma2: shared variance of the isotropic model; 0 (default) runs K-means, > 0 runs EM.
        n_init: number of restarts.
        init: isotropic model: ``"k-means++"`` (default, greedy k-means++) or ``"random"``
            (random data points); any variant: an optional callable ``(key, X, k) -> params``.
        max_iter: maximum iterations per fit.
        tol: stopping tolerance; default 0 at the hard limit and 1e-8 otherwise.
        weights: optional (N,) sample weights.
        block_size: rows per streamed E-step block; None (default) takes the default device's
            (:func:`gmmlimit.scale.default_block_size`).
        algorithm: the isotropic model's hard fits (``sigma2=0``): as in :func:`kmeans`.

    Returns:
        The :class:`FitResult` with the highest objective (the objective is higher-is-better at
        every temperature: the lowest distortion for K-means).

    Raises:
        ValueError: on invalid data, key, k, options, a variant without ``init``, or an
            ``init`` that returns a number of components other than k (checked before any fit).
    """
    check_key(key)
    X = as_data(X)
    k = check_k(k, X.shape[0])
    n_init = check_positive_int(n_init, "n_init")
    max_iter = check_max_iter(max_iter)
    block_size = check_block_size(block_size, X.shape[0], k, X.shape[1], lanes=n_init)
    keys = jax.random.split(key, n_init)
    if variant is None:
        init = "k-means++" if init is None else init
        if init not in ("k-means++", "random"):
            raise ValueError(f"init must be 'k-means++' or 'random'; got {init!r}.")
        if temperature is not None:
            raise ValueError("the isotropic model's temperature is sigma2; pass sigma2=...")
        s2 = check_sigma2(sigma2, X.dtype)
        if s2.ndim != 0:
            raise ValueError(f"sigma2 must be a scalar; got shape {tuple(s2.shape)}.")
        hard = (not is_traced(sigma2)) and float(np.asarray(sigma2)) == 0.0
        # data past the scale window run as X / 2^e, and weights are relative, as in em
        # and rows far from the origin run translated (_offset)
        w, weight_exponent = relative_weights(weights, X.shape[0], X.dtype)
        if is_traced(X):  # the same map on the device (_rescale.traced_scale)
            scale = traced_scale(X, X[:0], weight_exponent)
            Xs, s2s = scale.data_of(X), scale.sigma2(s2)
        else:
            offset = offset_of(X)
            moved = translate(X, offset)
            scale = Scale(scale_exponent(moved), weight_exponent, offset_tuple(offset))
            Xs, s2s = exact_ldexp(moved, -scale.data), s2
            if scale.data:
                s2s = scale.sigma2(s2)
                check_scaled_sigma2(sigma2, s2s, scale)
        if init == "k-means++":
            means = jax.vmap(lambda kk: _init.kmeans_plusplus(kk, Xs, k, weights=w))(keys)
        else:
            means = jax.vmap(lambda kk: _init.random_points(kk, Xs, k))(keys)
        starts = IsotropicParams(means, jnp.broadcast_to(s2s, (n_init,)))
        hard_variant = _hard_variant(algorithm, X.shape[1], k)
        chosen = hard_variant if hard else isotropic

        def back(best: FitResult) -> FitResult:
            return scaled_back(best, scale, s2, s2s, lambda: jnp.sum(w), X.dtype)

    else:
        if algorithm != "auto":
            raise ValueError(
                f"algorithm={algorithm!r} applies to the isotropic model's K-means restarts "
                "(variant=None, sigma2=0); a variant runs its own engine."
            )
        chosen = check_variant(variant, needs=() if callable(init) else ("init",))
        if is_traced(sigma2) or np.any(np.asarray(sigma2) != 0):
            raise ValueError(
                "sigma2 is the isotropic model's variance (variant=None); a variant's fits take "
                f"temperature=... in its own units; got sigma2={sigma2!r} with a variant."
            )
        if init is not None and not callable(init):
            raise ValueError(f"init for a variant must be a callable (key, X, k); got {init!r}.")
        w = weights_or_ones(weights, X.shape[0], X.dtype)
        if chosen.check_data is not None and not is_traced(X):
            chosen.check_data(np.asarray(X))
        check_temperature(chosen, temperature, X.dtype)
        # data past the scale window: the starts are drawn from X / 2^e and fit there, at the
        # temperature given in the data's units mapped to X / 2^e (sigma2 / 4^e; beta as is)
        data_map = variant_fit_map(chosen, X)
        Xs = data_map.data(X)
        draw = init or chosen.init
        drawn = init_shapes(chosen, draw, keys[0], Xs, k)  # traced only: k checked, nothing run
        if temperature is not None and is_scaled(data_map.exponent):
            probe = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), drawn)
            temperature = scaled_temperature(chosen, probe, temperature, data_map.exponent, X.dtype)
        starts = _starts(chosen, draw, keys, Xs, k, temperature)
        hard = jnp.any(chosen.is_hard(jax.tree.map(lambda a: a[0], starts)))
        if not is_traced(hard):
            hard = bool(hard)

        def back(best: FitResult) -> FitResult:
            return variant_result(chosen, best, data_map, lambda: jnp.sum(w))

    if tol is None and is_traced(hard):  # a start's temperature known only on the device
        tol = jnp.where(hard, 0.0, 1e-8)
    else:
        tol = check_tol((0.0 if hard else 1e-8) if tol is None else tol)
    return back(_best_of(chosen, Xs, w, starts, tol, max_iter=max_iter, block_size=block_size))


def init_shapes(
    variant: Variant, init: Callable[..., Params], key: jax.Array, X: jax.Array, k: int
) -> Params:
    """The shapes of ``init(key, X, k)`` (``jax.eval_shape``: traced, nothing run or compiled).

    Traced once per variant, init, shapes and ``k`` (:func:`_init_shapes`): restarts of the same
    problem called again do not trace the init again.

    Raises:
        ValueError: if the parameters ``init`` returns are not ones the variant reads
            (:func:`init_means`), or hold a number of components other than ``k``
            (:func:`check_init_components`).
    """
    key_spec, x_spec = abstract(key), abstract(X)
    x64 = jax.config.jax_enable_x64  # an init's default-dtype arrays change with it
    try:
        hash(init)
    except TypeError:  # a callable object that cannot be a cache key: traced every call
        return _init_shapes.__wrapped__(variant, init, key_spec, x_spec, k, x64)
    return _init_shapes(variant, init, key_spec, x_spec, k, x64)


@functools.lru_cache(maxsize=64)
def _init_shapes(
    variant: Variant,
    init: Callable[..., Params],
    key: jax.ShapeDtypeStruct,
    X: jax.ShapeDtypeStruct,
    k: int,
    x64: bool,
) -> Params:
    """:func:`init_shapes` of abstract ``key`` and ``X`` under JAX's x64 flag ``x64`` (cached).

    Raises as :func:`init_shapes` does (a refusal is not cached). Up to 64 inits, and what they
    hold, are kept beyond ``jax.clear_caches()``.
    """

    def draw(kk: jax.Array, x: jax.Array) -> tuple[Params, jax.Array]:
        params = init(kk, x, k)
        return params, init_means(variant, init, params)

    shapes, means = jax.eval_shape(draw, key, X)
    check_init_components(variant, init, means.shape, k)
    return shapes


def _init_name(variant: Variant, init: Callable[..., Params] | None) -> str:
    """How messages name an init: ``init`` for the variant's own, else the callable's name."""
    return "init" if init is None or init is variant.init else getattr(init, "__name__", "init")


def init_means(variant: Variant, init: Callable[..., Params] | None, params: Params) -> Any:
    """``variant.means`` of parameters an init drew, refused where the variant cannot read them.

    An ``init`` that returns a plain tuple of the fields (or anything but the variant's
    parameters) made ``variant.means`` fail with "'tuple' object has no attribute 'means'".

    Raises:
        ValueError: naming the init, the type it returned and the error reading it.
    """
    try:
        return variant.means(params)
    except (AttributeError, TypeError, IndexError, KeyError) as err:
        raise ValueError(
            f"variant {variant.name!r}: {_init_name(variant, init)}(key, X, k) returned a "
            f"{type(params).__name__} whose means the variant cannot read ({err}); init must "
            "return the variant's parameters."
        ) from err


def check_init_components(
    variant: Variant, init: Callable[..., Params] | None, means_shape: tuple[int, ...], k: int
) -> None:
    """Refuse starting parameters whose ``variant.means`` do not have k rows (eager).

    A user's ``init(key, X, k)`` that returns k + 1 components was fit as it came: the result
    had k + 1 components where k were asked for.

    Args:
        variant: the model.
        init: the ``init`` that drew the parameters (None or ``variant.init``: the variant's own).
        means_shape: the shape of ``variant.means`` of the drawn parameters, (K, D).
        k: the number of components asked for.

    Raises:
        ValueError: naming the init, the number of components it returned and k.
    """
    got = means_shape[0] if len(means_shape) == 2 else None
    if got == k:
        return
    name = _init_name(variant, init)
    found = f"{got} components" if got is not None else "no (K, D) means"
    raise ValueError(
        f"variant {variant.name!r}: {name}(key, X, k) returned {found} for k={k}; init must "
        f"return exactly k components (variant.means of shape (k, D); got {tuple(means_shape)})."
    )


def scaled_temperature(
    variant: Variant, params: Params, temperature: Any, exponent: int | jax.Array, dtype: Any
) -> Any:
    """A temperature given in the data's units as the temperature of the problem X / 2^exponent.

    The variant's ``scaling`` maps the temperature field with the rest of the parameters
    (sigma2 / 4^e; a scale-free beta stays); it is applied to ``params`` (any parameters of
    the right structure, whose other fields are only read, never returned) at ``temperature``.

    Args:
        variant: a model with a ``temperature`` and a ``scaling``.
        params: parameters of the variant's structure (e.g. zeros of ``init``'s shapes).
        temperature: the value in the data's units, already checked as a temperature of dtype.
        exponent: the data's exponent e (0: the value as given; traced for traced data).
        dtype: the data's dtype.

    Returns:
        The temperature of X / 2^e, an array of ``dtype`` (``temperature`` itself when e = 0).

    Raises:
        ValueError: if a concrete finite temperature other than 0 overflows or falls below the
            smallest normal number once scaled: the dtype cannot hold it relative to the data.
    """
    if not is_scaled(exponent):
        return temperature
    value = jnp.asarray(temperature, dtype)
    probe = with_temperature(variant, params, value)
    scaled = variant.temperature.get(scaling_law(variant, "params", probe, exponent))
    scaled = jnp.asarray(scaled, dtype)
    if is_traced(value) or is_traced(scaled):
        return scaled
    given, moved = float(value), float(scaled)
    if not math.isfinite(given) or given == 0:
        return scaled  # a hard limit (0 or inf) is one at every scale
    if not math.isfinite(moved) or abs(moved) < float(jnp.finfo(dtype).tiny):
        name = variant.temperature.name
        problem = "falls below the smallest normal number"
        if not math.isfinite(moved):
            problem = "overflows"
        raise ValueError(
            f"{name}={given!r} cannot be held relative to the data's scale: the data are as "
            f"large as 2^{exponent} and are fit as X / 2^{exponent}, where {name} {problem} in "
            f"{jnp.dtype(dtype).name}; give {name} in proportion to the data (docs/design.md, "
            "'Data scale')."
        )
    return scaled


def _starts(
    variant: Variant,
    init: Callable[..., Params],
    keys: jax.Array,
    X: jax.Array,
    k: int,
    temperature: Any,
) -> Params:
    """Validated starting parameters of every restart, stacked on a leading axis."""
    batch = _init_batch(variant, init, keys, X, k, temperature is not None, temperature)
    if variant.validate is None:
        return batch
    checked = [
        checked_validate(variant, X, jax.tree.map(lambda a, i=i: a[i], batch))
        for i in range(len(keys))
    ]
    return jax.tree.map(lambda *a: jnp.stack(a), *checked)


def _best_of(
    variant: Variant,
    X: jax.Array,
    w: jax.Array,
    starts: Params,
    tol: float,
    *,
    max_iter: int,
    block_size: int,
) -> FitResult:
    """The fit with the highest objective among the batched starts (NaN objectives lose).

    On the CPU the fits run one after another, each the compiled program of one fit (compiled
    once for all starts); elsewhere they run as one ``vmap`` (:func:`fit_batch`). On the CPU a
    batch gains nothing to make up for what it costs: the kernels score hard lanes one after
    another anyway, and a vmapped loop runs every lane until the slowest has converged, selecting
    each lane's whole state, bounds included, on every iteration (docs/benchmarks.md, "Restarts
    one after another"). On the CPU each start's result is therefore bit for bit its own fit's;
    a vmapped batch can differ from separate fits in the last bits where the compiler batches
    a model's arithmetic differently. Ties go to the first start.
    """
    # scores known only on the device (data, weights or starts under jit or vmap): the best is
    # chosen there
    if not _fits_one_by_one(X):
        results = fit_batch(variant, X, w, starts, tol, max_iter=max_iter, block_size=block_size)
        score = jnp.where(jnp.isnan(results.objective), -jnp.inf, results.objective)
        best = jnp.argmax(score) if is_traced(score) else int(np.argmax(np.asarray(score)))
        return jax.tree.map(lambda a: a[best], results)
    n_starts = jax.tree.leaves(starts)[0].shape[0]
    best_fit, best_score = None, -np.inf
    for i in range(n_starts):
        start = jax.tree.map(lambda a, i=i: a[i], starts)
        fitted = fit_compiled(variant, X, w, start, tol, max_iter=max_iter, block_size=block_size)
        score = jnp.where(jnp.isnan(fitted.objective), -jnp.inf, fitted.objective)
        if best_fit is None:
            best_fit, best_score = fitted, score
        elif is_traced(score) or is_traced(best_score):  # a tie keeps the first
            better = score > best_score
            best_fit = jax.tree.map(partial(jnp.where, better), fitted, best_fit)
            best_score = jnp.where(better, score, best_score)
        elif float(score) > float(best_score):
            best_fit, best_score = fitted, score
    return best_fit


def _fits_one_by_one(X: jax.Array) -> bool:
    """Whether :func:`_best_of` runs its fits one after another: data on the CPU."""
    if is_traced(X):  # computed on the default device
        return jax.default_backend() == "cpu"
    return all(device.platform == "cpu" for device in X.devices())


@partial(jax.jit, static_argnames=("variant", "init", "k", "set_temperature"))
def _init_batch(
    variant: Variant,
    init: Callable[..., Params],
    keys: jax.Array,
    X: jax.Array,
    k: int,
    set_temperature: bool,
    temperature: Any,
) -> Params:
    """``init`` vmapped over the keys, at ``temperature`` when asked (one compiled program)."""
    batch = jax.vmap(lambda kk: init(kk, X, k))(keys)
    if set_temperature:
        batch = jax.vmap(lambda p: with_temperature(variant, p, temperature))(batch)
    return batch


def fit_batch(
    variant: Variant,
    X: jax.Array,
    w: jax.Array,
    starts: Params,
    tol: Any,
    *,
    max_iter: int,
    block_size: int,
) -> FitResult:
    """Fits from a batch of validated starts (a leading axis on every leaf), one ``vmap``.

    The batch may differ in anything traced: initial values, the temperature (a sweep that
    includes the hard limit), tolerances. Restarts are this with the best kept.

    Args:
        variant: the mixture variant.
        X: (N, D) validated data.
        w: (N,) weights.
        starts: the batched parameters (S on every leaf).
        tol: the tolerance (scalar, or (S,)).
        max_iter: maximum iterations.
        block_size: rows per block.

    Returns:
        The :class:`FitResult` with a leading axis S on every field.
    """
    result = _fit_batch_program(
        variant, X, w, starts, tol, max_iter,
        history=history_length(max_iter), block_size=block_size,
    )  # fmt: skip
    return trim_history(result, max_iter)


@partial(jax.jit, static_argnames=("variant", "history", "block_size"))
def _fit_batch_program(
    variant: Variant,
    X: jax.Array,
    w: jax.Array,
    starts: Params,
    tol: Any,
    max_iter: jax.Array,
    *,
    history: int,
    block_size: int,
) -> FitResult:
    """:func:`fit_batch`'s one compiled program (``max_iter`` traced, as in ``fit_program``)."""
    tol = jnp.broadcast_to(jnp.asarray(tol, X.dtype), jax.tree.leaves(starts)[0].shape[:1])
    return jax.vmap(
        lambda p, t: fit_program(
            variant, X, w, p, t, max_iter, history=history, block_size=block_size
        )
    )(starts, tol)
