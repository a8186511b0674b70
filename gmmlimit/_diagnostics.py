"""Diagnostics of the small-variance limit (DESIGN.md section 1, statements 1-3 and 6).

Plain functions beside the model, used by tests, experiments and figures alike. They materialise
(N, K) arrays: they are for measuring, not for fitting at scale. Like the fits, they compute data
past the dtype's scale window rescaled by an exact power of two (``_rescale``) and map the answer
back, so they are finite wherever the answer is representable.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._driver import e_pass, make_blocks
from ._logdomain import distance_from_onehot, pairwise_sq_dists_partial, shifted_softmax
from ._rescale import Scale, norm_rescaled, prepare
from ._validation import as_data, check_block_size, with_float64_scope
from .variants._isotropic import IsotropicParams, assign, isotropic

__all__ = [
    "nearest_gap",
    "onehot_threshold",
    "responsibility_bound",
    "responsibility_gap",
    "scaled_log_likelihood",
    "update_gap",
]


@with_float64_scope
def nearest_gap(X: Any, means: Any) -> jax.Array:
    """Delta_n: the second smallest squared distance minus the smallest, per row.

    Args:
        X: (N, D) data.
        means: (K, D) means.

    Returns:
        (N,) gaps >= 0 in X's dtype; +inf when K = 1 (no competitor) and where the gap is
        larger than the dtype's largest number.
    """
    Xs, params, _, scale = _scaled(X, means, 0.0)
    return scale.distortion(_nearest_gap(Xs, params.means))


def _scaled(
    X: Any, means: Any, sigma2: Any, weights: Any = None
) -> tuple[jax.Array, IsotropicParams, jax.Array, Scale]:
    """Validated data, parameters and weights, rescaled by powers of two past the window."""
    return prepare(as_data(X), IsotropicParams(means, sigma2), weights, for_fit=False)


@jax.jit
def _nearest_gap(X: jax.Array, means: jax.Array) -> jax.Array:
    partial = pairwise_sq_dists_partial(X, means, jnp.sum(means * means, axis=1))
    _, labels, gap, _ = shifted_softmax(partial, jnp.zeros((), X.dtype))
    k = means.shape[0]
    others = jnp.where(jax.nn.one_hot(labels, k, dtype=bool), jnp.inf, gap)
    return jnp.min(others, axis=1)


@with_float64_scope
def responsibility_gap(X: Any, means: Any, sigma2: Any) -> jax.Array:
    """|r_nk - onehot_nk|: how far the responsibilities are from the hard assignment.

    Args:
        X: (N, D) data.
        means: (K, D) means.
        sigma2: shared variance >= 0.

    Returns:
        (N, K) absolute differences in X's dtype (all zero at sigma2 = 0).
    """
    Xs, params, _, _ = _scaled(X, means, sigma2)
    return _responsibility_gap(Xs, params)


@jax.jit
def _responsibility_gap(X: jax.Array, params: IsotropicParams) -> jax.Array:
    estep = assign(params, X)[0]
    return distance_from_onehot(estep.resp, estep.labels)


@with_float64_scope
def responsibility_bound(X: Any, means: Any, sigma2: Any) -> jax.Array:
    """Bound 1: (K - 1) exp(-Delta_n / (2 sigma2)) >= |r_nk - onehot_nk| for every k.

    The bound of the exact responsibilities, computed in the dtype: Delta_n and the
    exponential are rounded, so where the bound is tight (K = 2 and a large gap) the computed
    value can lie a few ulps of its exponent, Delta_n / (2 sigma2) times eps, below the exact
    gap (float64 at sigma2 = 1e-3: 1.1e-13 relative; float32: 8e-6). The experiments compare
    it with the gap to within (1 + 64 eps) and 4 eps.

    Args:
        X: (N, D) data.
        means: (K, D) means.
        sigma2: shared variance >= 0.

    Returns:
        (N,) bound per row in X's dtype (0 at sigma2 = 0; 0 when K = 1).
    """
    Xs, params, _, _ = _scaled(X, means, sigma2)
    return _responsibility_bound(Xs, params.means, params.sigma2)


@jax.jit
def _responsibility_bound(X: jax.Array, means: jax.Array, sigma2: jax.Array) -> jax.Array:
    delta = _nearest_gap(X, means)
    k = means.shape[0]
    positive = sigma2 > 0
    inv = jnp.where(positive, 0.5 / jnp.where(positive, sigma2, 1.0), jnp.inf)
    exponent = jnp.where(delta > 0, -delta * inv, 0.0)
    return (k - 1) * jnp.exp(exponent)


@with_float64_scope
def scaled_log_likelihood(X: Any, means: Any, sigma2: Any, *, weights: Any = None) -> jax.Array:
    """Bound 2's L~ = -2 sigma2 [l + N ln K + (N D / 2) ln(2 pi sigma2)].

    Evaluated stably as sum_n w_n [d_n* - 2 sigma2 lse_n], with lse_n = ln sum_k
    exp(-(d_nk - d_n*) / (2 sigma2)) in [0, ln K] (no exponential of a large number), so that
    J - 2 W sigma2 ln K <= L~ <= J (W the total weight, N unweighted) and L~ = J at sigma2 = 0
    and for K = 1 (every lse_n is then 0): as mathematics; computed, each side is a rounded sum,
    and L~ and ``kmeans_objective``'s J, summed in other orders, may differ in their last bits
    (measured: 2.1998077389888753e-17 for 2.199807738988875e-17). The terms are formed and
    summed at a common power of two and the sum scaled back once, so nothing overflows and
    the result is never NaN: it is the textbook sum rounded to X's dtype wherever that is
    finite, -inf only where L~ lies (to within that rounding) below minus the dtype's largest
    number, and 0 where |L~| is below its smallest normal number (subnormals are flushed).
    By the bounds, -inf needs sigma2 near that largest number / (2 W ln K): from about 4e36
    for 40 float32 rows at K = 3. Data past the dtype's scale window are computed as X / 2^e
    and the terms with sigma2 as given.

    Args:
        X: (N, D) data.
        means: (K, D) means.
        sigma2: shared variance >= 0 (traceable: a ``jax.vmap`` over a grid compiles once).
        weights: optional (N,) sample weights.

    Returns:
        Scalar L~ in X's dtype.
    """
    X = as_data(X)
    Xs, params, w, scale = prepare(X, IsotropicParams(means, sigma2), weights, for_fit=False)
    # the scaled sigma2 is capped where sigma2 / 4^e overflows (tiny data): the sums below do
    # not depend on it there, and the recombination takes sigma2 as given (validated)
    return _scaled_log_likelihood(
        Xs,
        params,
        w,
        jnp.asarray(sigma2, X.dtype),
        jnp.asarray(2 * scale.data, jnp.int32),
        jnp.asarray(scale.weight, jnp.int32),
    )


@jax.jit
def _scaled_log_likelihood(
    X: jax.Array,
    params: IsotropicParams,
    w: jax.Array,
    sigma2: jax.Array,
    distance_exponent: jax.Array,
    weight_exponent: jax.Array,
) -> jax.Array:
    """L~ = 2^(G + w) sum_n w'_n [d'_n 2^(2e - G) - (sigma2 2^-G) 2 lse_n] on X / 2^e.

    Each row's term is the textbook d_n* - 2 sigma2 lse_n times 2^-G, a power of two chosen
    so that both parts are at most 1 (G covers the largest distance 4^e d'_n and the largest
    sigma2 2 lse_n; a part that is 0 in every row does not count): nothing overflows, a part
    flushed to 0 is below 2^-120 of the largest one, the terms are those of sigma2 as given
    (the rescaled sigma2 may be capped), and wherever no part is subnormal the terms, and so
    the sum, are the textbook ones scaled exactly. The sum is scaled by 2^(G + w) once, so
    the result overflows only if L~ itself does; at sigma2 = 0 or K = 1 the lse part is an exact 0
    (formed as 2 sigma2 first, it was inf * 0 = NaN at sigma2 near the largest number).
    """
    estep, lse = assign(params, X)
    spread = 2.0 * lse  # in [0, 2 ln K]
    largest = jnp.max(estep.distortion)
    widest = jnp.max(spread)
    first = jnp.frexp(largest)[1] + distance_exponent
    second = jnp.frexp(sigma2)[1] + jnp.frexp(widest)[1]
    # a part that is 0 in every row (all distances 0; sigma2 = 0, K = 1 or one-hot rows)
    # takes no part in G: it would flush the other part's rows to 0 for nothing
    no_lse = (sigma2 == 0) | (widest == 0)
    top = jnp.where(largest == 0, second, jnp.where(no_lse, first, jnp.maximum(first, second)))
    terms = jnp.ldexp(estep.distortion, distance_exponent - top) - jnp.ldexp(sigma2, -top) * spread
    return jnp.ldexp(jnp.sum(w * terms), top + weight_exponent)


@with_float64_scope
def update_gap(X: Any, means: Any, sigma2: Any, *, weights: Any = None) -> jax.Array:
    """Statement 3: Frobenius distance between one EM mean update and one Lloyd update.

    Both updates start from the given means and are the plain M-steps of one E-step: a
    component with no weight keeps its mean, in the Lloyd update (sigma2 = 0) a cluster no row
    is nearest to, in the EM update one whose total responsibility underflows to 0. Nothing is
    relocated (moving an empty cluster to the farthest row is a fit's rule, as in
    ``gl.kmeans``), so the two updates agree as sigma2 -> 0 (statement 3), as
    :func:`gmmlimit.variants.limits.diagnose`'s ``update_gap`` does. K may exceed N
    (evaluating given means needs no K <= N, a fit does): the Lloyd update then keeps at least
    K - N means where they are.

    Args:
        X: (N, D) data.
        means: (K, D) the common starting means, any K >= 1.
        sigma2: shared variance >= 0 (traceable: ``jax.vmap`` over a grid compiles once).
        weights: optional (N,) sample weights.

    Returns:
        Scalar ||EM(means; sigma2) - Lloyd(means)||_F in X's dtype.

    Raises:
        ValueError: on invalid data, means (a shape other than (K, D), non-finite values),
            sigma2 or weights.

    Example:
        >>> import jax.numpy as jnp
        >>> from gmmlimit import study
        >>> # K = 2 > N = 1: EM moves the second mean to the row, Lloyd keeps it at 4
        >>> float(study.update_gap(jnp.array([[0.0]]), jnp.array([[0.0], [4.0]]), 1.0))
        4.0
    """
    # rows far from the origin (_offset) are computed less their exact offset, where the two
    # updates' difference is not rounded to the spacing of numbers near the offset; data past
    # the scale window as X / 2^e, the difference of locations mapped back by 2^e
    Xs, params, w, scale = _scaled(X, means, sigma2, weights)
    n, d = Xs.shape
    block_size = check_block_size(None, n, params.means.shape[0], d)
    gap = norm_rescaled(_update_difference(Xs, w, params, block_size=block_size))
    return jnp.ldexp(gap, scale.data) if scale.traced or scale.data else gap


@partial(jax.jit, static_argnames=("block_size",))
def _update_difference(
    X: jax.Array, w: jax.Array, params: IsotropicParams, *, block_size: int
) -> jax.Array:
    """(K, D) EM update at params.sigma2 less the Lloyd update, both without relocation."""
    blocks = make_blocks(X, w, block_size)
    hard = IsotropicParams(params.means, jnp.zeros_like(params.sigma2))
    soft_stats = e_pass(isotropic, params, blocks)[0]
    hard_stats = e_pass(isotropic, hard, blocks)[0]
    soft_step = isotropic.m_step(params, soft_stats).means
    return soft_step - isotropic.m_step(hard, hard_stats).means


def onehot_threshold(dtype: Any) -> float:
    """The exponent Delta/(2 sigma2) beyond which exp(-x) flushes to 0 in ``dtype``.

    Returns -ln(smallest normal number): about 87.3 in float32 and 708.4 in float64. Past it a
    log-domain softmax is exactly one-hot (statement 6; subnormals are flushed on most XLA
    backends).

    Args:
        dtype: a floating dtype: the data's. float16 and bfloat16 data are computed in float32
            (``as_data``), so theirs is float32's threshold.

    Returns:
        The threshold as a Python float.

    Raises:
        ValueError: for a dtype that is not floating, or wider than float64 (nothing here
            computes in it).
    """
    dtype = jnp.dtype(dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"dtype must be floating; got {dtype}.")
    if dtype.itemsize > 8:
        raise ValueError(f"dtype {dtype} is wider than float64, which nothing here computes in.")
    computed = jnp.dtype(jnp.float32) if dtype.itemsize < 4 else dtype
    return float(-np.log(np.finfo(computed).tiny))
