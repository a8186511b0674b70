"""Diagnostics of the hard limit for every variant that declares a temperature.

For a variant whose ``log_odds_gap`` gives g_n (the score gap between the best component and the
runner-up, scaled by the inverse temperature), the analogue of bound 1 is

    |r_nk - onehot_nk| <= (K - 1) exp(-g_n),

for the tempered variants g_n = beta * gap_n, for the isotropic model Delta_n / (2 sigma2).
These functions measure, at parameters ``params`` (their temperature read from them):
the responsibility gap and its bound, the objective against the hard objective -J at the same
parameters, and the gap between one update at the temperature and one hard update from the same
parameters. :func:`limit_sweep` does all of it along a grid of temperatures (one compiled
program: the temperature is a traced leaf). They materialise (N, K) arrays: they are for
measuring, not for fitting.
"""

from __future__ import annotations

import warnings
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._block_size import default_block_size
from .._driver import FitResult, fit_compiled, fit_objective
from .._logdomain import distance_from_onehot
from .._validation import (
    as_data,
    check_max_iter,
    check_tol,
    is_traced,
    real_values,
    weights_or_ones,
    with_float64_scope,
)
from .._variant import (
    Params,
    Variant,
    check_temperature,
    check_variant,
    checked_validate,
    validated_at,
    with_temperature,
)
from .._variant_scale import (
    DataMap,
    is_scaled,
    variant_fit_map,
    variant_objective,
    variant_params,
    variant_result,
)

__all__ = [
    "LimitDiagnostics",
    "diagnose",
    "limit_sweep",
]


class LimitDiagnostics(NamedTuple):
    """How far a variant is from its hard limit at one set of parameters.

    Attributes:
        resp_gap: (N, K) |r_nk - onehot_nk| (the one-hot of the E-step's labels).
        bound: (N,) (K - 1) exp(-g_n), the bound on every entry of the row.
        objective: () the objective at the parameters (higher is better).
        hard_objective: () -J, the hard objective at the same parameters (their labels).
        update_gap: () max |locations after one update at the temperature - after one hard
            update| from the same parameters.
    """

    resp_gap: jax.Array
    bound: jax.Array
    objective: jax.Array
    hard_objective: jax.Array
    update_gap: jax.Array


def _prepare(
    variant: Any, X: Any, params: Params, weights: Any = None, *, for_fit: bool
) -> tuple[Variant, jax.Array, Params, jax.Array]:
    """The checked variant, data, parameters (in X's dtype) and (N,) weights.

    Args:
        variant: the variant as given.
        X: the data as given.
        params: the parameters as given.
        weights: None or (N,) sample weights.
        for_fit: whether the parameters start fits (then K <= N, the variant's own check);
            evaluating given parameters on fewer rows than components is well defined.
    """
    variant = check_variant(variant, needs=("temperature", "log_odds_gap"))
    X = as_data(X)
    if variant.check_data is not None and not is_traced(X):
        variant.check_data(np.asarray(X))
    if variant.validate is not None:
        params = checked_validate(variant, _rows_for(variant, X, params, for_fit=for_fit), params)
    return variant, X, params, weights_or_ones(weights, X.shape[0], X.dtype)


def _rows_for(variant: Variant, X: jax.Array, params: Params, *, for_fit: bool) -> Any:
    """What ``variant.validate`` checks the parameters against: X, or its shape with K rows.

    A variant's ``validate`` reads only ``X.shape`` and ``X.dtype`` (the contract of
    :class:`~gmmlimit.Variant`), and refuses K > N as a fit's check. To evaluate given
    parameters (``for_fit=False``) on fewer rows than components, it is shown a
    ``jax.ShapeDtypeStruct`` of K rows instead: every other check runs as on X.
    """
    if for_fit:
        return X
    try:
        k = int(np.shape(variant.means(params))[-2])
    except (AttributeError, IndexError, TypeError, ValueError):
        return X  # malformed parameters: validate reports them against the data
    if k <= X.shape[0]:
        return X
    return jax.ShapeDtypeStruct((k, X.shape[1]), X.dtype)


@with_float64_scope
def diagnose(variant: Variant, X: Any, params: Params, *, weights: Any = None) -> LimitDiagnostics:
    """Every limit diagnostic of ``variant`` at ``params`` (see :class:`LimitDiagnostics`).

    Args:
        variant: a variant with ``temperature`` and ``log_odds_gap``.
        X: (N, D) data.
        params: its parameters (any temperature, the hard limit included). They may have more
            components than X has rows (K > N): evaluating them is well defined, only a fit
            needs K <= N.
        weights: optional (N,) sample weights (for the objectives and updates).

    Returns:
        The :class:`LimitDiagnostics` in X's dtype.

    Raises:
        ValueError: on invalid data or parameters, or a variant without a temperature.
    """
    variant, X, params, w = _prepare(variant, X, params, weights, for_fit=False)
    return _diagnose_at_scale(variant, X, w, params, _data_map(variant, X, params))


def _data_map(variant: Variant, X: jax.Array, params: Params) -> DataMap:
    """How a variant that declares its scaling computes X (identity: as given)."""
    return variant_fit_map(variant, X, variant.means(params))


def _diagnose_at_scale(
    variant: Variant, X: jax.Array, w: jax.Array, params: Params, data_map: DataMap
) -> LimitDiagnostics:
    """:func:`_diagnose` computed on (X - offset) / 2^e (the variant's scaling), mapped back.

    Responsibilities and bounds are free of scale and offset; the objectives map by the
    scaling's laws and the update gap, a difference of locations, by 2^e.
    """
    if data_map.identity:
        return _diagnose(variant, X, w, params)
    scaled = _diagnose(variant, data_map.data(X), w, variant_params(variant, params, data_map))
    exponent = data_map.exponent
    if not is_scaled(exponent):  # a translation alone changes no objective and no gap
        return scaled
    total = jnp.sum(w)

    def back(value: jax.Array, law: str = "objective") -> jax.Array:
        return variant_objective(variant, value, params, total, exponent, law=law)

    return scaled._replace(
        objective=back(scaled.objective),
        hard_objective=-back(-scaled.hard_objective, "distortion"),
        update_gap=jnp.ldexp(scaled.update_gap, exponent),
    )


def __getattr__(name: str) -> Any:
    # the variant spellings moved to gmmlimit.study, which has one function for every model
    if name not in ("responsibility_gap", "responsibility_bound"):
        raise AttributeError(f"module 'gmmlimit.variants.limits' has no attribute {name!r}")
    warnings.warn(
        f"gmmlimit.variants.limits.{name}(variant, X, params) moved to "
        f"gmmlimit.study.{name}(X, params, variant=variant).",
        DeprecationWarning,
        stacklevel=2,
    )
    from .. import study

    def moved(variant: Variant, X: Any, params: Params) -> jax.Array:
        return getattr(study, name)(X, params, variant=variant)

    return moved


@partial(jax.jit, static_argnames=("variant",))
def _diagnose(variant: Variant, X: jax.Array, w: jax.Array, params: Params) -> LimitDiagnostics:
    estep = variant.e_step(params, X)
    k = estep.resp.shape[1]
    g = variant.log_odds_gap(params, X)
    bound = jnp.where(g > 0, (k - 1) * jnp.exp(-g), k - 1.0).astype(X.dtype)
    stats = variant.sufficient_stats(X, w, estep)
    hard = with_temperature(variant, params, variant.temperature.hard)
    hard_estep = variant.e_step(hard, X)
    hard_stats = variant.sufficient_stats(X, w, hard_estep)
    soft_step = variant.means(variant.m_step(params, stats))
    hard_step = variant.means(variant.m_step(hard, hard_stats))
    return LimitDiagnostics(
        resp_gap=distance_from_onehot(estep.resp, estep.labels),
        bound=bound,
        objective=fit_objective(variant, params, stats).astype(X.dtype),
        hard_objective=(-stats.distortion).astype(X.dtype),
        update_gap=jnp.max(jnp.abs(soft_step - hard_step)),
    )


@with_float64_scope
def limit_sweep(
    variant: Variant,
    X: Any,
    params: Params,
    temperatures: Any,
    *,
    max_iter: int = 100,
    tol: float = 0.0,
    weights: Any = None,
) -> dict[str, np.ndarray]:
    """How responsibilities, objectives, updates and fits approach the hard limit.

    Args:
        variant: a variant with ``temperature`` and ``log_odds_gap``.
        X: (N, D) data.
        params: parameters; their temperature is replaced by each grid value.
        temperatures: (G,) real temperatures in the variant's own units (beta for the
            tempered variants, sigma2 for the isotropic model), none of them the hard limit
            itself (the hard fit is the reference), each representable in X's dtype.
        max_iter: iterations of each full fit (and of the hard fit).
        tol: stopping tolerance of the fits.
        weights: optional (N,) sample weights.

    Returns:
        A dict of (G,) NumPy arrays: ``temperature`` (also under the temperature's own name,
        e.g. ``beta``), the grid cast to X's dtype, as the fits ran it; ``resp_gap`` max_nk
        |r - onehot|; ``bound`` max_n (K - 1) exp(-g_n); ``bound_holds`` (bool) every entry
        within its row's bound (to 4 ulps); ``objective_gap`` the objective minus -J at the
        starting parameters; ``update_gap`` max |locations after one update at the temperature -
        after one hard update|; ``fit_means_gap`` max |locations of the fit at the temperature -
        of the hard fit|; ``fit_label_agreement`` fraction of final labels equal to the hard
        fit's; ``n_iter`` (int). Also ``hard_objective`` (0-d), the hard fit's final objective
        -J. Every float array is in X's dtype, like :func:`diagnose`'s and
        :func:`gmmlimit.study.anneal_variant`'s results.

    Raises:
        ValueError: on invalid data or parameters; a grid that is not a non-empty 1-D array of
            real numbers (complex, boolean, strings); a grid value that is the hard limit,
            invalid for the variant, or not representable in X's dtype.
    """
    variant, X, params, w = _prepare(variant, X, params, weights, for_fit=True)
    temp = variant.temperature
    grid = real_values(temperatures, "temperatures")
    if grid.ndim != 1:
        raise ValueError(f"temperatures must be a 1-D grid (G,); got shape {grid.shape}.")
    if grid.size == 0:
        raise ValueError("temperatures must hold at least one value.")
    if np.any(grid == temp.hard):
        raise ValueError(
            f"the {temp.name} grid of a sweep must not hold the hard limit {temp.name}="
            f"{temp.hard} (the hard fit is its reference)."
        )
    # each value is checked as a temperature of X's dtype before the cast: a finite beta that
    # overflows it would otherwise run as the hard limit
    for i, t in enumerate(grid):
        try:
            check_temperature(variant, float(t), X.dtype)
        except ValueError as error:
            raise ValueError(f"temperatures[{i}]: {error}") from None
    points = [validated_at(variant, X, params, t) for t in grid]
    max_iter = check_max_iter(max_iter)
    tol = check_tol(tol)
    # A loop of calls to the compiled fit and diagnostics: the temperature is a traced leaf, so
    # they compile once (block_size as gl.fit picks it, so the fits share gl.fit's program).
    hard = with_temperature(variant, params, temp.hard)
    block_size = default_block_size(X.shape[0], variant.means(hard).shape[-2], X.shape[1])
    # data past the scale window: every fit and diagnostic on X / 2^e (the variant's scaling)
    data_map = _data_map(variant, X, params)
    Xs = data_map.data(X)

    def fit(p: Params) -> tuple[FitResult, np.ndarray]:
        """The fit from p, and its (K, D) locations as computed (on (X - offset) / 2^e)."""
        start = variant_params(variant, p, data_map)
        result = fit_compiled(variant, Xs, w, start, tol, max_iter=max_iter, block_size=block_size)
        computed = np.asarray(variant.means(result.params))
        return variant_result(variant, result, data_map, lambda: jnp.sum(w)), computed

    hard_fit, hard_means = fit(hard)
    hard_labels = np.asarray(hard_fit.labels)
    dtype = np.dtype(X.dtype)
    eps = np.finfo(dtype).eps
    rows = []
    for p in points:
        diag = jax.tree.map(np.asarray, _diagnose_at_scale(variant, X, w, p, data_map))
        fit_at, fit_means = fit(p)
        # the locations' gap as computed, times 2^e: exact, and never rounded to the spacing
        # of numbers near the data's offset (rows far from the origin)
        means_gap = np.ldexp(np.abs(fit_means - hard_means).max(), data_map.exponent)
        rows.append(
            (
                diag.resp_gap.max(),
                diag.bound.max(),
                bool(np.all(diag.resp_gap <= diag.bound[:, None] + 4 * eps)),
                diag.objective - diag.hard_objective,  # in X's dtype, as both objectives
                diag.update_gap,
                means_gap,
                np.mean(np.asarray(fit_at.labels) == hard_labels),
                int(fit_at.n_iter),
            )
        )
    names = ("resp_gap", "bound", "bound_holds", "objective_gap", "update_gap", "fit_means_gap")
    names += ("fit_label_agreement", "n_iter")
    result = {
        name: np.array(column) for name, column in zip(names, zip(*rows, strict=True), strict=True)
    }
    # every float in X's dtype, as the fits and diagnostics it reports (the agreement, a
    # fraction of labels, rounded to it once; the temperatures as the fits ran them)
    for name in ("resp_gap", "bound", "objective_gap", "update_gap", "fit_means_gap"):
        result[name] = result[name].astype(dtype, copy=False)
    result["fit_label_agreement"] = result["fit_label_agreement"].astype(dtype)
    temperatures = grid.astype(dtype)
    result["temperature"] = temperatures
    result[temp.name] = temperatures
    result["hard_objective"] = np.asarray(hard_fit.objective)
    return result
