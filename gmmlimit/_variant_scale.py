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
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._driver import FitResult
from ._validation import SCALE_WINDOW, is_traced, largest_magnitude, window_exponent
from ._variant import Params, Variant

__all__ = ["variant_exponent", "variant_fit_exponent", "variant_params", "variant_result"]


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
    total_weight: Callable[[], jax.Array],
) -> FitResult:
    """A variant's fit of X / 2^exponent as the fit of X (exact for the parameters).

    Args:
        variant: the model (with a ``scaling`` when ``exponent`` is not 0).
        result: the fit of the scaled problem.
        exponent: the data's exponent e.
        total_weight: gives () the sum of the weights; called only when ``exponent`` is not 0
            (a sum run eagerly on every fit would compile a program for each new N).

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
    total = total_weight()

    def back(law: Callable[..., jax.Array], value: jax.Array) -> jax.Array:
        return law(value, params, total, d, exponent).astype(value.dtype)

    return result._replace(
        means=means,
        params=params,
        objective=back(scaling.objective, result.objective),
        history=back(scaling.objective, result.history),
        distortion=back(scaling.distortion, result.distortion),
    )
