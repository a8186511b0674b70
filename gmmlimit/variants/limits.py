"""Diagnostics of the hard limit beta -> inf for every tempered variant, and a sweep over beta.

For a variant built by :func:`~gmmlimit.variants._tempered.tempered_variant` (spherical, diag,
full, shared_spherical, poisson, bernoulli, vmf) the analogue of bound 1 is

    |r_nk - onehot_nk| <= (K - 1) exp(-beta * gap_n),

gap_n the score gap between the best and the runner-up component. :func:`limit_sweep` measures,
over a grid of beta values (one compiled program, beta a traced leaf): the largest responsibility
gap and its bound, whether the bound holds at every point, the gap between one tempered update
and one hard update from the same parameters, and how far full fits at each beta end from the
hard fit. These functions materialise (N, K) arrays: they are for measuring, not for fitting.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._driver import DEFAULT_BLOCK_SIZE, fit_compiled
from .._validation import as_data, check_positive_int, check_tol, weights_or_ones
from .._variant import Params, Variant
from ._tempered import check_beta

__all__ = ["limit_sweep", "responsibility_bound", "responsibility_gap"]


def _prepare(variant: Variant, X: Any, params: Params) -> tuple[jax.Array, Params]:
    X = as_data(X)
    if variant.validate is not None:
        params = variant.validate(X, params)
    if not hasattr(params, "beta"):
        raise ValueError(f"variant {variant.name!r} has no inverse temperature beta.")
    return X, params


def responsibility_gap(variant: Variant, X: Any, params: Params) -> jax.Array:
    """|r_nk - onehot_nk| at the variant's parameters (beta read from them).

    Args:
        variant: a tempered variant.
        X: (N, D) data.
        params: its parameters.

    Returns:
        (N, K) absolute differences in X's dtype (all 0 at beta = inf).
    """
    X, params = _prepare(variant, X, params)
    return _gap_and_bound(variant, X, params)[0]


def responsibility_bound(variant: Variant, X: Any, params: Params) -> jax.Array:
    """(K - 1) exp(-beta gap_n) per row: the bound on every entry of :func:`responsibility_gap`.

    Returns:
        (N,) bounds in X's dtype (0 at beta = inf when the row has no tie; 0 when K = 1).
    """
    X, params = _prepare(variant, X, params)
    return _gap_and_bound(variant, X, params)[1]


def _gap_and_bound(variant: Variant, X: jax.Array, params: Params) -> tuple[jax.Array, jax.Array]:
    gap, bound, _ = _diagnose(variant, X, jnp.ones((X.shape[0],), X.dtype), params)
    return gap, bound


@partial(jax.jit, static_argnames=("variant",))
def _diagnose(
    variant: Variant, X: jax.Array, w: jax.Array, params: Params
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Responsibility gap (N, K), its bound (N,), and the means after one update (K, D)."""
    estep = variant.e_step(params, X)
    k = estep.resp.shape[1]
    onehot = jax.nn.one_hot(estep.labels, k, dtype=X.dtype)
    exponent = jnp.where(estep.gap > 0, -params.beta * estep.gap, 0.0)
    new = variant.m_step(params, variant.sufficient_stats(X, w, estep))
    return jnp.abs(estep.resp - onehot), (k - 1) * jnp.exp(exponent), variant.means(new)


def limit_sweep(
    variant: Variant,
    X: Any,
    params: Params,
    betas: Any,
    *,
    max_iter: int = 100,
    tol: float = 0.0,
    weights: Any = None,
) -> dict[str, np.ndarray]:
    """How responsibilities, updates and fits approach the hard limit as beta grows.

    Args:
        variant: a tempered variant.
        X: (N, D) data.
        params: parameters; their beta is replaced by each grid value.
        betas: (G,) finite inverse temperatures > 0.
        max_iter: iterations of each full fit (and of the hard fit).
        tol: stopping tolerance of the fits.
        weights: optional (N,) sample weights.

    Returns:
        A dict of (G,) NumPy arrays: ``beta``; ``resp_gap`` max_nk |r - onehot|;
        ``bound`` max_n (K - 1) exp(-beta gap_n); ``bound_holds`` every entry within its row's
        bound (to 4 ulps); ``update_gap`` max |means after one tempered update - after one hard
        update|; ``fit_means_gap`` max |means of the fit at beta - of the hard fit|;
        ``fit_label_agreement`` fraction of final labels equal to the hard fit's; ``n_iter``.
        Also ``hard_objective`` (scalar), the hard fit's final distortion.

    Raises:
        ValueError: on invalid data or parameters, or a beta that is not finite and > 0.
    """
    X, params = _prepare(variant, X, params)
    grid = np.asarray(betas, dtype=np.float64).reshape(-1)
    for b in grid:
        check_beta(b, X.dtype)
    if not np.all(np.isfinite(grid)):
        raise ValueError("betas of a sweep must be finite (the hard limit is its reference).")
    max_iter = check_positive_int(max_iter, "max_iter")
    tol = check_tol(tol)
    w = weights_or_ones(weights, X.shape[0], X.dtype)
    # A loop of calls to the compiled fit and diagnostics: beta is a traced leaf, so they compile
    # once (block_size is passed as gl.fit passes it, so the fits share gl.fit's compilation).
    hard = params._replace(beta=jnp.asarray(np.inf, X.dtype))
    hard_step = np.asarray(_diagnose(variant, X, w, hard)[2])
    hard_fit = fit_compiled(
        variant, X, w, hard, tol, max_iter=max_iter, block_size=DEFAULT_BLOCK_SIZE
    )
    hard_labels, hard_means = np.asarray(hard_fit.labels), np.asarray(hard_fit.means)
    eps = np.finfo(np.dtype(X.dtype)).eps
    rows = []
    for beta in grid:
        p = params._replace(beta=jnp.asarray(beta, X.dtype))
        gap, bound, step = (np.asarray(a) for a in _diagnose(variant, X, w, p))
        fit = fit_compiled(variant, X, w, p, tol, max_iter=max_iter, block_size=DEFAULT_BLOCK_SIZE)
        rows.append(
            (
                gap.max(),
                bound.max(),
                bool(np.all(gap <= bound[:, None] + 4 * eps)),
                np.abs(step - hard_step).max(),
                np.abs(np.asarray(fit.means) - hard_means).max(),
                np.mean(np.asarray(fit.labels) == hard_labels),
                int(fit.n_iter),
            )
        )
    names = ("resp_gap", "bound", "bound_holds", "update_gap", "fit_means_gap")
    names += ("fit_label_agreement", "n_iter")
    result = {
        name: np.array(column) for name, column in zip(names, zip(*rows, strict=True), strict=True)
    }
    result["beta"] = grid
    result["hard_objective"] = np.asarray(hard_fit.objective)
    return result
