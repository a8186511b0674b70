"""A variant's fit of data past the dtype's scale window, through its declared scaling.

A variant that declares its :class:`~gmmlimit._variant.Scaling` is fit on X / 2^e with its
parameters mapped by exact powers of two, and the fit is mapped back: the generic paths (``fit``,
``fit_sharded``, the out-of-core fits, a variant's restarts, its limit diagnostics and sweeps,
its annealing path) all do it through here. The isotropic entry points (``em``, ``kmeans``)
use :mod:`gmmlimit._rescale`, the same law with relative weights. Nothing here imports the
variants, so they and their tools can import it.
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
    SCALE_WINDOW,
    exact_ldexp,
    is_traced,
    largest_magnitude,
    rows_kept_exponent,
    traced_magnitudes,
    window_exponent,
    window_exponents,
)
from ._variant import Params, Variant

__all__ = [
    "NO_MAP",
    "DataMap",
    "is_scaled",
    "scaling_law",
    "traced_variant_exponent",
    "variant_exponent",
    "variant_fit_map",
    "variant_objective",
    "variant_params",
    "variant_result",
    "variant_stream_map",
]


class DataMap(NamedTuple):
    """How a variant's fit computes the data it is given: as (X - offset) / 2^exponent.

    Both operations are exact on the data (``_offset``, ``_validation.exact_ldexp``) but for
    rows outside their feature's Sterbenz window (a minority, translated with one rounding of
    ``x - offset``, ``_offset``): the same model, labels and responsibilities. The parameters
    move by the variant's ``scaling`` (:func:`variant_params`) and the results move back
    (:func:`variant_result`).

    Attributes:
        exponent: e, the power of two the data are divided by (0: none); for traced data a
            traced () int32, known only on the device (:func:`variant_fit_map`).
        offset: None, or the (D,) offset the data are translated by, in their dtype (only
            for a variant whose ``scaling`` declares ``translate``); traced for traced data.
    """

    exponent: int | jax.Array = 0
    offset: np.ndarray | jax.Array | None = None

    @property
    def identity(self) -> bool:
        """Whether the data are computed as given (never so for traced data)."""
        return not is_scaled(self.exponent) and self.offset is None

    def data(self, X: Any) -> Any:
        """(N, D) data (or (K, D) locations) as the fit computes them."""
        return exact_ldexp(translate(X, self.offset), -self.exponent)


NO_MAP = DataMap()
"""Data computed as given."""


def variant_fit_map(variant: Variant, X: jax.Array, *locations: jax.Array) -> DataMap:
    """The :class:`DataMap` of in-memory data and starting locations for ``variant``.

    A variant whose ``scaling`` declares ``translate`` is translated by the data's exact
    offset (:func:`gmmlimit._offset.offset_of`); the exponent is then that of
    :func:`variant_exponent` for the largest magnitude of the translated data and locations.
    Traced data (a ``vmap`` over data sets, a ``jit`` of a function of the data) get the same
    map computed on the device: the offset of :func:`gmmlimit._offset.traced_offset` (the same
    bits) and a traced exponent (:func:`traced_variant_exponent`, of the translated data and
    every location), which the scaling's laws then take in place of a Python integer. Traced
    locations of concrete data (a sweep under ``vmap``) are skipped, the exponent read from the
    data alone.
    """
    if variant.scaling is None:
        return NO_MAP
    translates = variant.scaling.translate is not None
    if is_traced(X):
        offset = traced_offset(X) if translates else None
        moved = [translate(a, offset) for a in (X, *locations)]
        return DataMap(traced_variant_exponent(moved, X.dtype), offset)
    offset = offset_of(X) if translates else None
    arrays = [translate(a, offset) for a in locations if not is_traced(a) and a.size]
    rows = largest_magnitude(translate(X, offset))
    others = max((largest_magnitude(a) for a in arrays), default=0.0)
    return DataMap(variant_exponent(variant, rows, others, X.shape[-1], X.dtype), offset)


def variant_stream_map(
    variant: Variant,
    lo: np.ndarray,
    hi: np.ndarray,
    largest: float,
    locations: Any,
    dtype: Any,
    counts: np.ndarray | None = None,
    n: int = 0,
) -> DataMap:
    """The :class:`DataMap` of streamed data known by their extremes (out of core, processes).

    Args:
        variant: the model.
        lo: (D,) each feature's smallest value (over every chunk and process), in ``dtype``.
        hi: (D,) each feature's largest value.
        largest: the data's largest magnitude.
        locations: (K, D) the starting locations.
        dtype: the data's dtype.
        counts: None, or the (2, D) :func:`gmmlimit._offset.window_counts` of every row (over
            every chunk and process) for the windows of
            :func:`gmmlimit._offset.candidate_windows` (which asked for them).
        n: N, the number of rows counted.

    Returns:
        The map :func:`variant_fit_map` gives the same data in memory.
    """
    if variant.scaling is None:
        return NO_MAP
    offset = None
    if variant.scaling.translate is not None:
        offset = data_offset(np.asarray(lo, dtype), np.asarray(hi, dtype), counts, n)
    rows = translated_largest(lo, hi, largest, offset)
    others = largest_magnitude(translate(locations, offset))
    return DataMap(variant_exponent(variant, rows, others, np.shape(locations)[-1], dtype), offset)


def variant_exponent(variant: Variant, rows: float, locations: float, d: int, dtype: Any) -> int:
    """The power of two e by which a variant's fit divides the data (0: computed as given).

    The smallest shift that brings the largest magnitude m of the rows and locations to the
    edge of ``dtype``'s scale window (e = log2 m - W above it, log2 m + W below it): squared
    distances and second moments then neither overflow nor vanish, and the parameters move as
    little as they can, so floors such as ``reg_covar`` stay representable wherever the fit as
    given was computable. Locations more than 2^(2W) times farther from the origin than every
    row would push the rows below the window: e then keeps the rows inside it
    (:func:`gmmlimit._validation.rows_kept_exponent`).

    Args:
        variant: the model; one without a ``scaling`` is always computed as given.
        rows: the rows' largest magnitude.
        locations: the starting locations' largest magnitude (0: none).
        d: D, the number of features.
        dtype: the data's dtype.

    Returns:
        The exponent e (0 while the largest magnitude lies within the window).

    """
    largest = max(rows, locations)
    if variant.scaling is None or not largest > 0:
        return 0
    exponent = _to_window_edge(window_exponent(largest, dtype), dtype, np)
    return int(rows_kept_exponent(exponent, rows, largest, d, dtype))


def traced_variant_exponent(arrays: list[jax.Array], dtype: Any) -> jax.Array:
    """:func:`variant_exponent` of traced arrays (inside ``jit`` or ``vmap``), on the device.

    Args:
        arrays: (N, D) translated data and (K, D) locations, traced or not, of ``dtype``.
        dtype: the data's dtype.

    Returns:
        () int32 exponent e, the value :func:`variant_exponent` gives the same arrays
        concretely (for a largest magnitude in the dtype's normal range).
    """
    rows, largest = traced_magnitudes([jnp.asarray(a, dtype) for a in arrays], dtype)
    exponent = _to_window_edge(window_exponents(largest, dtype, jnp), dtype, jnp)
    d = arrays[0].shape[-1] if jnp.ndim(arrays[0]) else 1
    return rows_kept_exponent(exponent, rows, largest, d, dtype, jnp).astype(jnp.int32)


def _to_window_edge(exponent: Any, dtype: Any, xp: Any) -> Any:
    """The shift that brings a magnitude to the window's nearer edge (e - W, e + W, or 0).

    ``exponent``: the magnitude's binary exponent past the window, or 0 within it.
    """
    return exponent - xp.sign(exponent) * SCALE_WINDOW[jnp.dtype(dtype)]


def is_scaled(exponent: int | jax.Array) -> bool:
    """Whether a map's exponent may divide the data (a traced one always may)."""
    return is_traced(exponent) or exponent != 0


def variant_params(variant: Variant, params: Params, data_map: DataMap) -> Params:
    """The parameters of the problem (X - offset) / 2^e, refusing any the dtype cannot hold.

    Args:
        variant: a model with a ``scaling`` (or any model, with :data:`NO_MAP`).
        params: its validated parameters for X.
        data_map: the data's :class:`DataMap` (identity: the parameters as they are).

    Returns:
        ``variant.scaling.params(variant.scaling.translate(params, offset), e)``.

    Raises:
        ValueError: if a finite parameter overflows after the scaling, or an entry of a
            positive parameter (a variance, a floor such as ``reg_covar``) falls below the
            smallest normal number: at the data's scale the dtype cannot hold it.
    """
    if data_map.offset is not None:
        params = variant.scaling.translate(params, data_map.offset)
    exponent = data_map.exponent
    if not is_scaled(exponent):
        return params
    scaled = scaling_law(variant, "params", params, exponent)
    _check_held(params, scaled, exponent, "given")
    return scaled


def _check_held(
    before: Params, after: Params, exponent: int, kind: str, locations: Any = None
) -> None:
    """Refuse parameters the dtype cannot hold once moved by 2^-exponent.

    Moved to X / 2^e (``kind="given"``), a finite entry must stay finite and a positive
    parameter (a variance, a floor) normal: the fit computes with it. Moved back to the data's
    units, a finite entry must stay finite, and no nonzero entry within the dtype's precision of
    its parameter's largest (at least eps times it) may vanish, nor, in a positive parameter
    other than the locations, fall from the normal range below the smallest normal number (a
    subnormal variance has lost its precision; the mapping is exact, ``exact_ldexp``, so such
    entries are no longer flushed to 0): a variance of 0 is no model. Subnormal locations are
    kept (a location of subnormal data has the data's own precision), and so is the loss of an
    entry below its parameter's rounding (an off-diagonal covariance far below the diagonal).

    Args:
        before: the parameters in the units they were computed in.
        after: the same parameters divided by 2^exponent (their scaling).
        exponent: the power of two between them.
        kind: "given" (the user's parameters moved to X / 2^e) or "fitted" (moved back from
            X / 2^e to the data's units); it words the message.
        locations: the leaf of ``before`` that holds the locations (``Variant.means``), if
            any: positive locations may come back subnormal (those of subnormal data).
    """
    paths = jax.tree_util.tree_leaves_with_path(before)
    for (path, b), a in zip(paths, jax.tree_util.tree_leaves(after), strict=True):
        if is_traced(b) or is_traced(a):
            continue
        location = b is locations
        b, a = np.asarray(b), np.asarray(a)
        if not jnp.issubdtype(a.dtype, jnp.floating):
            continue
        name = jax.tree_util.keystr(path).lstrip(".")
        tiny = np.finfo(a.dtype).tiny
        # fitted: a normal entry within the dtype's precision of its parameter's largest
        large = np.abs(b) >= np.max(np.abs(b), initial=0) * np.finfo(b.dtype).eps
        below = True if kind == "given" else (np.abs(b) >= tiny) & large & (not location)
        if np.any(np.isfinite(b) & ~np.isfinite(a)):
            problem = "overflows"
        elif b.size and np.all(b > 0) and np.any(below & (np.abs(a) < tiny)):
            # a positive parameter (a variance, a floor): given, every entry must be normal at
            # X / 2^e; fitted, a normal entry must stay normal in the data's units
            problem = "falls below the smallest normal number"
        elif kind != "given" and np.any(
            (a == 0)
            & (np.abs(b) >= np.max(np.abs(b), initial=0) * np.finfo(b.dtype).eps)
            & (b != 0)
        ):
            problem = "vanishes (underflows to 0)"
        else:
            continue
        if kind == "given":
            raise ValueError(
                f"{name} cannot be held relative to the data's scale: the data are fit as "
                f"X / 2^{exponent}, where {name} {problem} in "
                f"{a.dtype} (value {b.ravel()[0]!r}); give {name} in proportion to the data "
                "(docs/design.md, 'Data scale')."
            )
        raise ValueError(
            f"the {kind} {name} cannot be held in {a.dtype} in the data's units: the data are "
            f"fit as X / 2^{-exponent}, where {name} reach {float(np.max(np.abs(b))):.3g}, and "
            f"an entry {problem} once mapped back by its power of 2^{-exponent}. {name} carry a "
            "power of the data's scale: pass data of a wider dtype (float64 with JAX's x64 "
            "flag, for float32 data), or rescale the data (docs/design.md, 'Data scale')."
        )


def variant_objective(
    variant: Variant,
    value: jax.Array,
    params: Params,
    total_weight: jax.Array,
    exponent: int,
    *,
    law: str = "objective",
) -> jax.Array:
    """A variant's objective (or, with ``law="distortion"``, its J) of X from that of X / 2^e.

    Args:
        variant: the model (with a ``scaling``).
        value: the value computed on X / 2^exponent, any shape.
        params: the parameters of X (the original problem's, as the scaling's laws take them).
        total_weight: the sum of the weights.
        exponent: the data's exponent e (not 0).
        law: ``"objective"`` (the objective, or -J at the hard limit) or ``"distortion"`` (J).

    Returns:
        The value of the original problem, in ``value``'s dtype.
    """
    d = variant.means(params).shape[-1]
    return scaling_law(variant, law, value, params, total_weight, d, exponent).astype(value.dtype)


def scaling_law(variant: Variant, law: str, *args: Any) -> Any:
    """``variant.scaling.<law>(*args)``, naming a law that cannot take a traced exponent.

    Raises:
        ValueError: if the law fails on a traced exponent (a ``math`` function of it, a Python
            ``if`` on it): data under ``jit`` or ``vmap`` are mapped on the device.
    """
    traced = is_traced(args[-1])
    try:
        mapped = getattr(variant.scaling, law)(*args)
    except (
        jax.errors.ConcretizationTypeError,
        jax.errors.TracerIntegerConversionError,
        jax.errors.TracerArrayConversionError,
        TypeError,
    ) as error:
        if not traced:
            raise
        raise ValueError(
            f"{variant.name}'s scaling.{law} cannot take a traced exponent: data under jit or "
            "vmap are rescaled on the device, so the laws get e as a traced int32 (write them "
            f"with jax.numpy, e.g. jnp.ldexp, as density_scaling does): "
            f"{str(error).splitlines()[0]}"
        ) from None
    if law == "params" and traced:
        mapped = _in_dtypes_of(mapped, args[0])
    return mapped


def _in_dtypes_of(mapped: Params, given: Params) -> Params:
    """``mapped`` with each floating leaf in the dtype of ``given``'s leaf.

    A law written as ``p.means * 2.0 ** -e`` keeps the dtype for a Python int e but promotes
    float32 to float64 for a traced int32 e (JAX's x64 flag on); the powers of two are exact,
    so the cast back changes no value.
    """
    if jax.tree.structure(mapped) != jax.tree.structure(given):
        return mapped  # named by the checks of the parameters' form

    def cast(new: Any, old: Any) -> Any:
        weak = getattr(getattr(old, "aval", None), "weak_type", False)
        if not hasattr(old, "dtype") or weak or not jnp.issubdtype(old.dtype, jnp.floating):
            return new  # a Python number or a weakly typed leaf: as the law gives it
        if jnp.issubdtype(jnp.result_type(new), jnp.floating):
            return jnp.asarray(new).astype(old.dtype)
        return new

    return jax.tree.map(cast, mapped, given)


def variant_result(
    variant: Variant,
    result: FitResult,
    data_map: DataMap,
    total_weight: Callable[[], jax.Array],
) -> FitResult:
    """A variant's fit of (X - offset) / 2^e as the fit of X.

    Args:
        variant: the model (with a ``scaling`` unless ``data_map`` is the identity).
        result: the fit of the mapped problem.
        data_map: the data's :class:`DataMap`.
        total_weight: gives () the sum of the weights; called only when the exponent is not 0
            (a sum run eagerly on every fit would compile a program for each new N).

    Returns:
        The :class:`FitResult` of X: parameters ``scaling.params(., -e)`` (exact) translated
        back by the offset (one rounding), objective, history and distortion as the scaling
        says (a translation changes none of them).

    Raises:
        ValueError: if a fitted parameter overflows or vanishes in the data's units (float32
            data near 1e30 have variances near 1e60): the fit cannot be returned in X's dtype.
    """
    if data_map.identity:
        return result
    exponent = data_map.exponent
    if not is_scaled(exponent):
        params = variant.scaling.translate(result.params, -data_map.offset)
        return result._replace(means=variant.means(params), params=params)
    params = scaling_law(variant, "params", result.params, -exponent)
    _check_held(result.params, params, -exponent, "fitted", variant.means(result.params))
    if data_map.offset is not None:
        params = variant.scaling.translate(params, -data_map.offset)
    total = total_weight()

    def back(value: jax.Array, law: str = "objective") -> jax.Array:
        return variant_objective(variant, value, params, total, exponent, law=law)

    return result._replace(
        means=variant.means(params),
        params=params,
        objective=back(result.objective),
        history=back(result.history),
        distortion=back(result.distortion, "distortion"),
    )
