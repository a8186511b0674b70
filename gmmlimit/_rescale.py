"""Exact translation and power-of-two rescaling of an isotropic problem (docs/design.md).

Features far from the origin are translated by an offset c (:mod:`gmmlimit._offset`: exact for
every row within a factor of two of c, which is all of them or a strict majority; a row
outside, one rounding of ``x - c``), and data whose largest magnitude then lies outside the
dtype's window (:data:`SCALE_WINDOW`) are computed as ``(X - c) / 2^e``, means ``(m - c) /
2^e``, sigma2 ``/ 4^e`` and weights ``/ 2^w``: exact operations on the translated data, so
labels and responsibilities are those of the original problem, and the results are mapped
back (means x 2^e + c, distortions x 4^e 2^w, log-likelihoods as :meth:`Scale.log_likelihood`
says). Every isotropic entry point (in memory, sharded, out of core, the diagnostics) goes
through here, so they all answer the same data the same way. Traced data (a ``vmap`` over data
sets, a ``jit`` of a function of the data) are mapped by the same rules on the device: the
offset and the exponent are then traced values (:func:`traced_scale`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._driver import FitResult
from ._offset import data_offset, offset_of, traced_offset, translate, translated_largest
from ._validation import (
    exact_ldexp,
    is_soft,
    is_traced,
    largest_magnitude,
    problem_exponent,
    relative_weights,
    scale_exponent,
    traced_exponent,
)
from .variants._isotropic import IsotropicParams, validate_params

__all__ = [
    "NO_SCALE",
    "Scale",
    "check_scaled_sigma2",
    "fit_rescaled",
    "norm_rescaled",
    "offset_tuple",
    "prepare",
    "scaled_back",
    "streamed_scale",
    "traced_scale",
]


class Scale(NamedTuple):
    """The map of one problem: data less ``offset``, by 2^data; weights by 2^weight (0: none).

    The computation runs on ``(X - offset) / 2^data``, means ``(m - offset) / 2^data``, sigma2
    ``/ 4^data`` and weights ``/ 2^weight``; labels and responsibilities are unchanged, means
    map back as :meth:`means_back`, distortions by 4^data 2^weight and log-likelihoods as
    :meth:`log_likelihood` says (a translation changes neither).

    Attributes:
        data: the data's binary exponent e (a traced () int32 for traced data).
        weight: the weights' binary exponent (a traced () int32 for traced weights).
        offset: None, or the (D,) offset of :func:`gmmlimit._offset.data_offset`, as a
            tuple of Python floats (exact for the data's dtype); for traced data the traced
            (D,) offset of :func:`gmmlimit._offset.traced_offset`.
    """

    data: int | jax.Array
    weight: int | jax.Array
    offset: tuple[float, ...] | jax.Array | None = None

    @property
    def traced(self) -> bool:
        """Whether the map is of traced data (its exponent and offset are known on the device).

        Under ``jax.grad`` alone the integer exponent can come out concrete while the offset,
        read from the data, is traced: either marks the map.
        """
        return is_traced(self.data) or is_traced(self.offset)

    @property
    def concrete(self) -> bool:
        """Whether every part of the map is known here (traced weights' exponent is not)."""
        return not self.traced and not is_traced(self.weight)

    @property
    def identity(self) -> bool:
        """Whether the map changes nothing (concrete data within the window, no offset)."""
        return self.concrete and self == NO_SCALE

    def offset_array(self, dtype: Any) -> Any:
        """The (D,) offset in ``dtype`` (None: no translation)."""
        if self.offset is None or self.traced:
            return self.offset
        return np.asarray(self.offset, dtype)

    def data_of(self, X: Any) -> Any:
        """(N, D) data of the original problem as the computation takes them (``_offset``)."""
        return exact_ldexp(translate(X, self.offset_array(X.dtype)), -self.data)

    def params(self, params: IsotropicParams) -> IsotropicParams:
        """Mapped parameters ((means - offset) / 2^data, :meth:`sigma2`)."""
        return IsotropicParams(self.data_of(params.means), self.sigma2(params.sigma2))

    def means_back(self, means: jax.Array) -> jax.Array:
        """(..., K, D) means of the computed problem in the data's units (x 2^data + offset)."""
        means = exact_ldexp(means, self.data)
        if self.offset is not None:
            # translate: on the host for a concrete offset (a subnormal sum is not flushed)
            means = translate(means, -self.offset_array(means.dtype))
        return means

    def sigma2(self, sigma2: jax.Array) -> jax.Array:
        """sigma2 / 4^data; a scaled value that overflows is capped (exact in effect)."""
        scaled = jnp.ldexp(sigma2, -2 * self.data)
        cap = jnp.asarray(jnp.finfo(scaled.dtype).max / 4, scaled.dtype)
        # sigma2 / 4^e overflows only when the data are tiny (e < 0): every exponent -gap / (2
        # sigma2) then rounds to 0 either way, and the log-likelihood is mapped back from the
        # true sigma2. At e >= 0 (a traced e of 0 too) sigma2 is as scaled, never capped.
        return jnp.where(self.data < 0, jnp.minimum(scaled, cap), scaled)

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
        return jnp.ldexp(value, exponent) if is_traced(exponent) or exponent else value


NO_SCALE = Scale(0, 0)
"""The rescaling of data and weights within the window: none."""


def check_scaled_sigma2(sigma2: Any, scaled: jax.Array, scale: Scale) -> None:
    """Refuse a concrete sigma2 > 0 that is below the smallest normal number after scaling.

    Raises:
        ValueError: if ``sigma2 / 4^scale.data`` underflows while ``sigma2`` is positive.
    """
    if is_traced(sigma2) or scale.traced or scale.data == 0:
        return
    value = float(np.asarray(sigma2))
    if value > 0 and not bool(is_soft(scaled)):
        raise ValueError(
            f"sigma2={value!r} is below the smallest normal number relative to the data's scale "
            f"(the data and means are computed divided by 2^{scale.data}, and sigma2 / "
            f"4^{scale.data} underflows): "
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
    if is_traced(X):
        scale = traced_scale(X, params.means, weight_scale)
        X, scaled = scale.data_of(X), scale.params(params)
        return X, scaled, w, scale
    offset = offset_of(X)
    if offset is not None:
        X = translate(X, offset)
        params = IsotropicParams(translate(params.means, offset), params.sigma2)
    scale = Scale(scale_exponent(X, params.means), weight_scale, offset_tuple(offset))
    if scale.data:
        X = exact_ldexp(X, -scale.data)
        scaled = scale._replace(offset=None).params(params)
        check_scaled_sigma2(sigma2, scaled.sigma2, scale)
        params = IsotropicParams(scaled.means, scaled.sigma2)
    return X, params, w, scale


def traced_scale(X: jax.Array, means: Any, weight: int) -> Scale:
    """The :class:`Scale` of traced (N, D) data: :func:`prepare`'s map, computed on the device.

    The offset of :func:`gmmlimit._offset.traced_offset` and the exponent of the translated
    data and means (:func:`gmmlimit._validation.traced_exponent`). A sigma2 > 0 that underflows
    once divided by 4^e cannot be refused here (its value is known only on the device): the
    E-step takes it as the hard limit, which it is to the dtype's precision.

    Args:
        X: (N, D) traced data.
        means: (K, D) means.
        weight: the weights' exponent.
    """
    offset = traced_offset(X)
    exponent = traced_exponent(translate(X, offset), translate(means, offset))
    return Scale(exponent, weight, offset)


def streamed_scale(
    lo: np.ndarray,
    hi: np.ndarray,
    largest: float,
    means: Any,
    weight: int,
    dtype: Any,
    counts: np.ndarray | None = None,
    n: int = 0,
) -> Scale:
    """The :class:`Scale` of data known by their extremes (out of core, several processes).

    Args:
        lo: (D,) each feature's smallest value, in ``dtype``.
        hi: (D,) each feature's largest value.
        largest: the data's largest magnitude.
        means: (K, D) the starting means.
        weight: the weights' exponent.
        dtype: the data's dtype.
        counts: None, or the (2, D) :func:`gmmlimit._offset.window_counts` of every row for
            the windows of :func:`gmmlimit._offset.candidate_windows` (which asked for them).
        n: N, the number of rows counted.

    Returns:
        The map :func:`prepare` gives the same data in memory.
    """
    offset = data_offset(lo, hi, counts, n)
    rows = translated_largest(lo, hi, largest, offset)
    means_largest = largest_magnitude(translate(means, offset))
    exponent = problem_exponent(rows, means_largest, np.shape(means)[-1], dtype)
    return Scale(exponent, weight, offset_tuple(offset))


def offset_tuple(offset: np.ndarray | None) -> tuple[float, ...] | None:
    """A (D,) offset as :attr:`Scale.offset` holds it (None stays None)."""
    return None if offset is None else tuple(float(c) for c in offset)


def scaled_back(
    result: FitResult,
    scale: Scale,
    sigma2: jax.Array | None,
    scaled_sigma2: jax.Array | None,
    total_weight: Callable[[], jax.Array],
    dtype: Any,
) -> FitResult:
    """An isotropic fit of the rescaled problem as the fit of the original one.

    Args:
        result: the fit on X / 2^scale.data (K, D means), weights / 2^scale.weight.
        scale: the rescaling.
        sigma2: () the original variance (unused when ``scale`` is none).
        scaled_sigma2: () the variance the fit ran at (unused when ``scale`` is none).
        total_weight: gives the sum of the (scaled) weights the fit ran with; called only when
            ``scale`` is not none (a sum run eagerly on every fit compiles a program per N).
        dtype: the data's dtype.

    Returns:
        The :class:`FitResult` of the original problem.
    """
    if scale.identity:
        return result
    if scale.concrete and not scale.data and not scale.weight:  # a translation alone
        return result._replace(
            means=scale.means_back(result.means),
            params=result.params._replace(means=scale.means_back(result.params.means)),
        )
    soft = is_soft(scaled_sigma2)
    d = result.means.shape[-1]
    total_weights = total_weight()

    def back(value: jax.Array) -> jax.Array:
        if not is_traced(soft):  # one branch: also for the global arrays of several processes
            if not bool(soft):
                return scale.distortion(value).astype(dtype)
            total = jnp.asarray(total_weights, value.dtype)
            return scale.log_likelihood(value, sigma2, scaled_sigma2, total, d).astype(dtype)
        soft_value = scale.log_likelihood(
            value,
            jnp.where(soft, sigma2, 1.0),
            jnp.where(soft, scaled_sigma2, 1.0),
            jnp.asarray(total_weights, value.dtype),
            d,
        )
        return jnp.where(soft, soft_value, scale.distortion(value)).astype(dtype)

    return result._replace(
        means=scale.means_back(result.means),
        objective=back(result.objective),
        history=back(result.history),
        distortion=scale.distortion(result.distortion).astype(dtype),
        params=IsotropicParams(scale.means_back(result.params.means), sigma2),
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
    return scaled_back(result, scale, original.sigma2, scaled.sigma2, lambda: jnp.sum(w), X.dtype)


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
