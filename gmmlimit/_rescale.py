"""Exact power-of-two rescaling of an isotropic problem (docs/design.md, "Numerics at the edges").

Data whose largest magnitude lies outside the dtype's window (:data:`SCALE_WINDOW`) are computed
as ``X / 2^e``, means ``/ 2^e``, sigma2 ``/ 4^e`` and weights ``/ 2^w``: exact operations, so
labels and responsibilities are those of the original problem, and the results are mapped back
(means x 2^e, distortions x 4^e 2^w, log-likelihoods as :meth:`Scale.log_likelihood` says).
Every isotropic entry point (in memory, sharded, out of core, the diagnostics) goes through
here, so they all answer the same data the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._driver import FitResult
from ._validation import (
    SCALE_WINDOW,
    is_soft,
    is_traced,
    largest_magnitude,
    relative_weights,
    scale_exponent,
    window_exponent,
)
from ._variant import Params, Variant
from .variants._isotropic import IsotropicParams, validate_params

__all__ = [
    "NO_SCALE",
    "Scale",
    "check_scaled_sigma2",
    "fit_rescaled",
    "norm_rescaled",
    "prepare",
    "scaled_back",
    "variant_exponent",
    "variant_fit_exponent",
    "variant_params",
    "variant_result",
]


class Scale(NamedTuple):
    """The rescaling of one problem: data by 2^data, weights by 2^weight (0: none).

    The computation runs on ``X / 2^data``, means ``/ 2^data``, sigma2 ``/ 4^data`` and weights
    ``/ 2^weight``; labels and responsibilities are unchanged, means scale back by 2^data,
    distortions by 4^data 2^weight and log-likelihoods as :meth:`log_likelihood` says.
    """

    data: int
    weight: int

    def params(self, params: IsotropicParams) -> IsotropicParams:
        """Scaled parameters (means / 2^data, :meth:`sigma2`)."""
        return IsotropicParams(jnp.ldexp(params.means, -self.data), self.sigma2(params.sigma2))

    def sigma2(self, sigma2: jax.Array) -> jax.Array:
        """sigma2 / 4^data; a scaled value that overflows is capped (exact in effect)."""
        scaled = jnp.ldexp(sigma2, -2 * self.data)
        cap = jnp.asarray(jnp.finfo(scaled.dtype).max / 4, scaled.dtype)
        # sigma2 / 4^e overflows only when the data are tiny: every exponent -gap / (2 sigma2)
        # then rounds to 0 either way, and the log-likelihood is mapped back from the true sigma2.
        return jnp.minimum(scaled, cap)

    def log_likelihood(
        self,
        value: jax.Array,
        sigma2: jax.Array,
        scaled_sigma2: jax.Array,
        total: jax.Array,
        d: int,
    ) -> jax.Array:
        """The log-likelihood l of the original problem from l' of the scaled one.

        l' = -W' ln K - (W' D / 2) ln(2 pi sigma2') + core', with W' = W / 2^weight and core'
        invariant under the data scale, so l = 2^weight [l' - (W' D / 2)(ln sigma2 - ln
        sigma2')].
        """
        shift = 0.5 * total * d * (jnp.log(sigma2) - jnp.log(scaled_sigma2))
        return jnp.ldexp(value - shift, self.weight)

    def distortion(self, value: jax.Array) -> jax.Array:
        """J (or any weighted sum of squared distances) of the original problem from J'."""
        exponent = 2 * self.data + self.weight
        return jnp.ldexp(value, exponent) if exponent else value


NO_SCALE = Scale(0, 0)
"""The rescaling of data and weights within the window: none."""


def check_scaled_sigma2(sigma2: Any, scaled: jax.Array, scale: Scale) -> None:
    """Refuse a concrete sigma2 > 0 that is below the smallest normal number after scaling.

    Raises:
        ValueError: if ``sigma2 / 4^scale.data`` underflows while ``sigma2`` is positive.
    """
    if is_traced(sigma2) or scale.data == 0:
        return
    value = float(np.asarray(sigma2))
    if value > 0 and not bool(is_soft(scaled)):
        raise ValueError(
            f"sigma2={value!r} is below the smallest normal number relative to the data's scale "
            f"(the data are as large as 2^{scale.data}, and sigma2 / 4^{scale.data} underflows): "
            "at this sigma2 the model is the hard limit to the dtype's precision; pass 0."
        )


def prepare(
    X: jax.Array, params: IsotropicParams, weights: Any, *, for_fit: bool
) -> tuple[jax.Array, IsotropicParams, jax.Array, Scale]:
    """Validate, then rescale data, parameters and weights by exact powers of two if needed.

    Args:
        X: (N, D) validated data.
        params: the parameters as given (checked here against ``X``).
        weights: None or (N,) sample weights as given.
        for_fit: also require K <= N.

    Returns:
        ``(X', params', w', scale)``: the scaled data, parameters (in X's dtype) and (N,)
        weights (ones when None), and the :class:`Scale`.

    Raises:
        ValueError: on invalid parameters or weights, or a sigma2 > 0 that underflows after
            the scaling.
    """
    sigma2 = params.sigma2
    params = validate_params(X, params, for_fit=for_fit)
    w, weight_scale = relative_weights(weights, X.shape[0], X.dtype)
    scale = Scale(scale_exponent(X, params.means), weight_scale)
    if scale.data:
        X = jnp.ldexp(X, -scale.data)
        scaled = scale.params(params)
        check_scaled_sigma2(sigma2, scaled.sigma2, scale)
        params = IsotropicParams(scaled.means, scaled.sigma2)
    return X, params, w, scale


def scaled_back(
    result: FitResult,
    scale: Scale,
    sigma2: jax.Array | None,
    scaled_sigma2: jax.Array | None,
    total_weight: jax.Array | float,
    dtype: Any,
) -> FitResult:
    """An isotropic fit of the rescaled problem as the fit of the original one.

    Args:
        result: the fit on X / 2^scale.data (K, D means), weights / 2^scale.weight.
        scale: the rescaling.
        sigma2: () the original variance (unused when ``scale`` is none).
        scaled_sigma2: () the variance the fit ran at (unused when ``scale`` is none).
        total_weight: the sum of the (scaled) weights the fit ran with.
        dtype: the data's dtype.

    Returns:
        The :class:`FitResult` of the original problem.
    """
    if scale == NO_SCALE:
        return result
    soft = is_soft(scaled_sigma2)
    d = result.means.shape[-1]

    def back(value: jax.Array) -> jax.Array:
        if not is_traced(soft):  # one branch: also for the global arrays of several processes
            if not bool(soft):
                return scale.distortion(value).astype(dtype)
            total = jnp.asarray(total_weight, value.dtype)
            return scale.log_likelihood(value, sigma2, scaled_sigma2, total, d).astype(dtype)
        soft_value = scale.log_likelihood(
            value,
            jnp.where(soft, sigma2, 1.0),
            jnp.where(soft, scaled_sigma2, 1.0),
            jnp.asarray(total_weight, value.dtype),
            d,
        )
        return jnp.where(soft, soft_value, scale.distortion(value)).astype(dtype)

    return result._replace(
        means=jnp.ldexp(result.means, scale.data),
        objective=back(result.objective),
        history=back(result.history),
        distortion=scale.distortion(result.distortion).astype(dtype),
        params=IsotropicParams(jnp.ldexp(result.params.means, scale.data), sigma2),
    )


def fit_rescaled(
    run: Callable[[jax.Array, IsotropicParams, jax.Array], FitResult],
    X: jax.Array,
    params: IsotropicParams,
    weights: Any,
) -> FitResult:
    """``run(X', params', w')`` on the exactly rescaled problem, mapped back.

    Args:
        run: an isotropic fit of (N, D) data, parameters and (N,) weights.
        X: (N, D) validated data.
        params: the parameters as given.
        weights: None or (N,) sample weights as given.

    Returns:
        The fit of the original problem.
    """
    original = validate_params(X, params)
    Xs, scaled, w, scale = prepare(X, params, weights, for_fit=True)
    result = run(Xs, scaled, w)
    return scaled_back(result, scale, original.sigma2, scaled.sigma2, jnp.sum(w), X.dtype)


def norm_rescaled(a: jax.Array) -> jax.Array:
    """The Frobenius norm ||a||, finite wherever it is representable.

    Computed as 2^e ||a / 2^e|| when a's largest magnitude lies outside the window, so that
    squares near 1e20 (float32) do not overflow and those near 1e-30 do not vanish.
    """
    exponent = scale_exponent(a)
    if exponent:
        scaled = jnp.ldexp(a, -exponent)
        return jnp.ldexp(jnp.sqrt(jnp.sum(scaled * scaled)), exponent)
    return jnp.sqrt(jnp.sum(a * a))


def variant_exponent(variant: Variant, largest: float, dtype: Any) -> int:
    """The power of two e by which a variant's fit divides the data (0: computed as given).

    The smallest shift that brings the largest magnitude m to the edge of ``dtype``'s scale
    window (e = log2 m - W above it, log2 m + W below it): squared distances and second moments
    then neither overflow nor vanish, and the parameters move as little as they can, so floors
    such as ``reg_covar`` stay representable wherever the fit as given was computable.

    Args:
        variant: the model; one without a ``scaling`` is always computed as given.
        largest: the largest magnitude of the data and the starting locations.
        dtype: the data's dtype.

    Returns:
        The exponent e (0 while ``largest`` lies within the window).
    """
    if variant.scaling is None or not largest > 0:
        return 0
    exponent = window_exponent(largest, dtype)
    window = SCALE_WINDOW[jnp.dtype(dtype)]
    return exponent - window if exponent > 0 else exponent + window if exponent < 0 else 0


def variant_fit_exponent(variant: Variant, X: jax.Array, *locations: jax.Array) -> int:
    """:func:`variant_exponent` of in-memory data and starting locations.

    Traced data are computed as given (0); traced locations (a sweep under ``vmap``) are
    skipped, the exponent read from the data alone.
    """
    if variant.scaling is None or is_traced(X):
        return 0
    arrays = [a for a in (X, *locations) if not is_traced(a) and a.size]
    return variant_exponent(variant, max(largest_magnitude(a) for a in arrays), X.dtype)


def variant_params(variant: Variant, params: Params, exponent: int) -> Params:
    """The parameters of the problem X / 2^exponent, refusing any the dtype cannot hold.

    Args:
        variant: a model with a ``scaling``.
        params: its validated parameters for X.
        exponent: the data's exponent e (0: the parameters as they are).

    Returns:
        ``variant.scaling.params(params, exponent)``.

    Raises:
        ValueError: if a finite parameter overflows after the scaling, or an entry of a
            positive parameter (a variance, a floor such as ``reg_covar``) falls below the
            smallest normal number: at the data's scale the dtype cannot hold it.
    """
    if not exponent:
        return params
    scaled = variant.scaling.params(params, exponent)
    paths = jax.tree_util.tree_leaves_with_path(params)
    for (path, before), after in zip(paths, jax.tree_util.tree_leaves(scaled), strict=True):
        if is_traced(before) or is_traced(after):
            continue
        b, a = np.asarray(before), np.asarray(after)
        if not np.issubdtype(a.dtype, np.floating):
            continue
        name = jax.tree_util.keystr(path).lstrip(".")
        if np.any(np.isfinite(b) & ~np.isfinite(a)):
            problem = "overflows"
        elif b.size and np.all(b > 0) and np.any(np.abs(a) < np.finfo(a.dtype).tiny):
            problem = "falls below the smallest normal number"
        else:
            continue
        raise ValueError(
            f"{name} cannot be held relative to the data's scale: the data are as large as "
            f"2^{exponent} and are fit as X / 2^{exponent}, where {name} {problem} in "
            f"{a.dtype} (value {b.ravel()[0]!r}); give {name} in proportion to the data "
            "(docs/design.md, 'Data scale')."
        )
    return scaled


def variant_result(
    variant: Variant,
    result: FitResult,
    exponent: int,
    total_weight: jax.Array,
) -> FitResult:
    """A variant's fit of X / 2^exponent as the fit of X (exact for the parameters).

    Args:
        variant: the model (with a ``scaling`` when ``exponent`` is not 0).
        result: the fit of the scaled problem.
        exponent: the data's exponent e.
        total_weight: () the sum of the weights.

    Returns:
        The :class:`FitResult` of X: parameters ``scaling.params(., -e)``, objective, history
        and distortion as the scaling says.
    """
    if not exponent:
        return result
    scaling = variant.scaling
    params = scaling.params(result.params, -exponent)
    means = variant.means(params)
    d = means.shape[-1]

    def back(law: Callable[..., jax.Array], value: jax.Array) -> jax.Array:
        return law(value, params, total_weight, d, exponent).astype(value.dtype)

    return result._replace(
        means=means,
        params=params,
        objective=back(scaling.objective, result.objective),
        history=back(scaling.objective, result.history),
        distortion=back(scaling.distortion, result.distortion),
    )
