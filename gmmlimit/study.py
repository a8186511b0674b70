"""Tools for studying the limit: diagnostics, convergence rates, gradient ascent, annealing paths.

The fits live at the top level (:func:`gmmlimit.fit`, :func:`gmmlimit.em`, ...); this module
measures them against the statements of ``docs/design.md``:

* limit diagnostics: :func:`responsibility_gap` and :func:`responsibility_bound` (bound 1, for
  the isotropic model and every variant with a temperature), :func:`scaled_log_likelihood`
  (bound 2), :func:`update_gap` (statement 3), :func:`nearest_gap`, :func:`onehot_threshold`
  (statement 6), :func:`diagnose` and :func:`limit_sweep` (every diagnostic, along a grid);
* convergence rates: :func:`convergence_rate`, :func:`linearized_rate`, :func:`collapsed_rate`;
* EM against gradient ascent: :func:`gradient_fit`, :func:`compare_em_gradient`;
* annealing: :func:`anneal_variant` and the helpers of :func:`gmmlimit.anneal`'s results.

They materialise (N, K) arrays: they are for measuring, not for fitting at scale.

Example:
    >>> import jax.numpy as jnp
    >>> from gmmlimit import study
    >>> X = jnp.array([[0.0], [1.0], [4.0]])
    >>> means = jnp.array([[0.0], [4.0]])
    >>> study.nearest_gap(X, means).tolist()  # second-nearest minus nearest squared distance
    [16.0, 8.0, 16.0]
    >>> float(study.responsibility_gap(X, means, 0.0).max())  # exactly one-hot at sigma2 = 0
    0.0
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from . import _anneal, _diagnostics
from ._anneal import (
    AnnealPath,
    AnnealResult,
    anneal_variant,
    schedule_values,
    split_points,
)
from ._ascent import GradientResult, MethodCost, compare_em_gradient, gradient_fit
from ._diagnostics import (
    nearest_gap,
    onehot_threshold,
    scaled_log_likelihood,
    update_gap,
)
from ._rates import RateResult, collapsed_rate, convergence_rate, linearized_rate
from ._validation import (
    as_data,
    check_scalar,
    float64_scope,
    is_traced,
    with_float64_scope,
)
from ._variant import Variant
from .variants._isotropic import IsotropicParams
from .variants.limits import LimitDiagnostics, diagnose, limit_sweep

__all__ = [
    "AnnealPath",
    "AnnealResult",
    "GradientResult",
    "LimitDiagnostics",
    "MethodCost",
    "RateResult",
    "anneal_variant",
    "collapsed_rate",
    "compare_em_gradient",
    "convergence_rate",
    "count_distinct",
    "diagnose",
    "gradient_fit",
    "limit_sweep",
    "linearized_rate",
    "nearest_gap",
    "onehot_threshold",
    "responsibility_bound",
    "responsibility_gap",
    "scaled_log_likelihood",
    "schedule_values",
    "split_points",
    "update_gap",
]


def _isotropic_args(params: Any, sigma2: Any, variant: Variant | None, fn: str) -> tuple[Any, Any]:
    """(means, sigma2) of the isotropic spelling; ValueError on a mixed or incomplete call."""
    if variant is not None:
        if sigma2 is not None:
            raise ValueError(
                f"{fn}: pass sigma2 only with (K, D) means; with variant= the temperature is read "
                "from params."
            )
        return None, None
    if isinstance(params, IsotropicParams):
        if sigma2 is not None:
            raise ValueError(f"{fn}: sigma2 is given twice (in IsotropicParams and as sigma2).")
        return params.means, params.sigma2
    if sigma2 is None:
        raise ValueError(
            f"{fn}: sigma2 is required with (K, D) means; for another variant's parameters pass "
            "variant= (e.g. gmmlimit.variants.poisson)."
        )
    return params, sigma2


@with_float64_scope
def responsibility_gap(
    X: Any, params: Any, sigma2: Any = None, *, variant: Variant | None = None
) -> jax.Array:
    """|r_nk - onehot_nk|: how far the responsibilities are from the hard assignment.

    Two spellings, one quantity: ``responsibility_gap(X, means, sigma2)`` for the isotropic model
    (traceable in ``sigma2``, so ``jax.vmap`` over a grid compiles once), and
    ``responsibility_gap(X, params, variant=v)`` for any variant with a temperature (read from
    ``params``; the one-hot is that of the E-step's labels). ``responsibility_gap(X,
    IsotropicParams(means, sigma2))`` is the first spelling.

    Args:
        X: (N, D) data.
        params: (K, D) means of the isotropic model, or the parameters of ``variant``; in both
            spellings K may exceed N (evaluating given parameters needs no K <= N, a fit does).
        sigma2: the isotropic shared variance >= 0 (only with means).
        variant: a :class:`~gmmlimit.Variant` with ``temperature`` and ``log_odds_gap``.

    Returns:
        (N, K) absolute differences in X's dtype (all zero at the hard limit).

    Raises:
        ValueError: on invalid data or parameters, ``sigma2`` missing with means or given with
            ``variant``, or a variant without a temperature.

    Example:
        >>> import jax.numpy as jnp
        >>> from gmmlimit import study, variants
        >>> X = jnp.array([[0.0], [1.0], [4.0]])
        >>> means = jnp.array([[0.0], [4.0]])
        >>> gap = study.responsibility_gap(X, means, 1.0)
        >>> gap.shape, bool((gap <= study.responsibility_bound(X, means, 1.0)[:, None]).all())
        ((3, 2), True)
        >>> p = variants.IsotropicParams(means, jnp.asarray(1.0))
        >>> bool(jnp.allclose(study.responsibility_gap(X, p, variant=variants.isotropic), gap))
        True
    """
    means, s2 = _isotropic_args(params, sigma2, variant, "responsibility_gap")
    if variant is None:
        return _diagnostics.responsibility_gap(X, means, s2)
    return diagnose(variant, X, params).resp_gap


@with_float64_scope
def responsibility_bound(
    X: Any, params: Any, sigma2: Any = None, *, variant: Variant | None = None
) -> jax.Array:
    """Bound 1: (K - 1) exp(-g_n) >= |r_nk - onehot_nk| for every k of row n.

    For the isotropic model g_n = Delta_n / (2 sigma2) (:func:`nearest_gap`); for a variant, its
    ``log_odds_gap``. Spelled as :func:`responsibility_gap`.

    Args:
        X: (N, D) data.
        params: (K, D) means of the isotropic model, or the parameters of ``variant``.
        sigma2: the isotropic shared variance >= 0 (only with means).
        variant: a :class:`~gmmlimit.Variant` with ``temperature`` and ``log_odds_gap``.

    Returns:
        (N,) bound per row in X's dtype (0 at the hard limit away from ties; 0 when K = 1).

    Raises:
        ValueError: as :func:`responsibility_gap`.

    Example:
        >>> import jax.numpy as jnp
        >>> from gmmlimit import study
        >>> X = jnp.array([[0.0], [4.0]])
        >>> study.responsibility_bound(X, jnp.array([[0.0], [4.0]]), 0.0).tolist()
        [0.0, 0.0]
    """
    means, s2 = _isotropic_args(params, sigma2, variant, "responsibility_bound")
    if variant is None:
        return _diagnostics.responsibility_bound(X, means, s2)
    return diagnose(variant, X, params).bound


def count_distinct(means: Any, tol: Any) -> jax.Array:
    """The number of distinct centres: groups of means linked by distances <= tol.

    Two means closer than ``tol`` belong to one centre, and the relation is closed transitively
    (connected components of the "closer than tol" graph), so the count does not depend on the
    order of the means. The relation is decided on exact mantissas at one power of two, so it
    holds for means and tols at every scale, subnormal to the dtype's largest number: squared
    distances neither overflow nor vanish.

    Args:
        means: (K, D) means (float64 means are compared in float64 whatever JAX's x64 flag).
        tol: distance tolerance, a finite number >= 0 representable in the means' dtype.

    Returns:
        () int32 number of groups, between 1 and K.

    Raises:
        ValueError: if the means are not a 2-D real array of finite values with at least one
            row, or ``tol`` is not a finite real number >= 0 that the means' dtype holds.

    Example:
        >>> import jax.numpy as jnp
        >>> from gmmlimit import study
        >>> int(study.count_distinct(jnp.array([[0.0], [0.5], [1.0], [5.0]]), 0.6))
        2
    """
    with float64_scope(means):
        means = as_data(means, name="means")
        if is_traced(means) or is_traced(tol):
            return _anneal.count_distinct(means, tol)
        # a subnormal tol is taken: the comparison reads its exact mantissa and exponent
        value = check_scalar(tol, "tol", dtype=means.dtype, owner="the means'", subnormal_ok=True)
        return _count_distinct(means, jnp.asarray(value, means.dtype))


_count_distinct = jax.jit(_anneal.count_distinct)
"""The count compiled once per shape (op by op, its K x K x D bit arithmetic dispatched some
thirty primitives a call)."""
