"""Convergence rates of EM near a fixed point: measured, and predicted by linearisation.

Near a fixed point mu* the EM map M is approximately linear, mu_{t+1} - mu* ~ J (mu_t - mu*) with
J = dM/dmu at mu*, so EM converges linearly with rate rho = the spectral radius of J. At the
collapsed point mu_k = mean(X) (for sigma2 > lambda_max(C)) the map multiplies a perturbation that
sums to zero over the components by C / sigma2 (DESIGN.md section 1, statement 5), so
rho = lambda_max(C) / sigma2. As sigma2 -> 0 the responsibilities freeze and rho -> 0: EM becomes
K-means, which stops after finitely many steps.
"""

from __future__ import annotations

import math
from fractions import Fraction
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._api import critical_sigma2
from ._driver import em_iteration, fit_compiled, make_blocks
from ._rescale import prepare
from ._validation import (
    as_data,
    check_block_size,
    check_means,
    check_positive_int,
    check_scalar,
    check_sigma2,
    is_soft,
    is_traced,
    with_float64_scope,
)
from .variants._isotropic import IsotropicParams, isotropic

__all__ = ["RateResult", "collapsed_rate", "convergence_rate", "linearized_rate"]


class RateResult(NamedTuple):
    """An empirical convergence-rate measurement.

    Attributes:
        rate: () the estimated linear rate: the median of the error ratios e_{t+1} / e_t over
            the second half of the steps whose error e_t is above the noise floor (0 when the
            error falls below the floor at once, as in K-means' finite convergence).
        ratios: (n_steps,) the ratios e_{t+1} / e_t (NaN where e_t is at or below the floor),
            finite wherever the true ratio is (formed from the errors' mantissas and
            exponents, also where an error is past the largest float64).
        errors: (n_steps + 1,) float64 e_t = ||mu_t - mu*|| (Frobenius norm over all means),
            measured in float64 on the host at a power of two that keeps every square finite;
            inf only where the true error exceeds the largest float64 (float64 data near it).
        fixed_point: (K, D) the fixed point mu* the errors are measured to, in X's dtype.
        floor: () the noise floor, ``floor_rel`` times the data scale sqrt(trace C), correctly
            rounded to float64 (the comparison with the errors is exact).
    """

    rate: float
    ratios: np.ndarray
    errors: np.ndarray
    fixed_point: np.ndarray
    floor: float


@with_float64_scope
def collapsed_rate(X: Any, sigma2: Any, *, weights: Any = None) -> jax.Array:
    """The linearised EM rate at the collapsed point: lambda_max(C) / sigma2.

    It is below 1 (the collapsed point attracts) exactly when sigma2 > sigma2_c = lambda_max(C).

    Args:
        X: (N, D) data.
        sigma2: shared variance > 0.
        weights: optional (N,) sample weights.

    Returns:
        Scalar rate in X's dtype.

    Raises:
        ValueError: on invalid data or a sigma2 that is not > 0.
    """
    X = as_data(X)
    s2 = check_sigma2(sigma2, X.dtype)
    if not is_traced(sigma2) and np.any(np.asarray(sigma2) <= 0):  # s2 is traced under jit
        raise ValueError(f"sigma2 must be > 0 for a rate at the collapsed point; got {sigma2!r}.")
    return critical_sigma2(X, weights=weights) / s2


@with_float64_scope
def linearized_rate(
    X: Any,
    means: Any,
    sigma2: Any,
    *,
    weights: Any = None,
    block_size: int | None = None,
) -> float:
    """Spectral radius of the Jacobian of the EM map of the means, at ``means``.

    At a fixed point this is the linear convergence rate of EM (stable if < 1). The Jacobian
    (a (K D, K D) matrix) is written out analytically (see :func:`_em_jacobian`), so it is exact
    where the responsibilities are one-hot (rate 0 at any small sigma2 away from ties), and it
    is computed on the data rescaled by an exact power of two like :func:`gmmlimit.em` (the
    rate is dimensionless). It is materialised, and so are (block, K, K, D) products: use it for
    small K D. A component that holds no weight at ``means`` is kept in place by EM (as the
    fit's M-step does): its block of the Jacobian is the identity, and the rate is then at
    least 1.

    Args:
        X: (N, D) data.
        means: (K, D) the point to linearise at (usually a fixed point).
        sigma2: shared variance >= 0 (at 0 the map is locally constant: rate 0 away from ties).
        weights: optional (N,) sample weights.
        block_size: rows per streamed E-step block; None (default) takes the default device's
            (:func:`gmmlimit.scale.default_block_size`).

    Returns:
        The spectral radius, a Python float: rho' / sigma2, with rho' the spectral radius of
        sigma2 J (computed on the rescaled data in X's dtype, of the order of the squared data
        spread) divided by sigma2 in float64 on the host. It is inf exactly where that quotient
        exceeds the largest float64 (about 1.8e308): inf is then the correctly rounded rate,
        since J grows as 1 / sigma2 at a row that is not one-hot and the true rate is past every
        float64. That needs float64 data, a row whose gap Delta_n is below about 1416 sigma2
        (its responsibilities not one-hot) and sigma2 below about rho' / 1.8e308, e.g. X =
        [[-10], [0], [10]], means [[-10], [10]] (the middle row exactly tied, rate
        200 / (9 sigma2)) at sigma2 = 2.2e-308. Float32 data never reach it (there rho' <=
        3.4e38 and sigma2 >= 1.2e-38, so the quotient stays below 3e76); away from ties the
        responsibilities are one-hot and the rate is 0 however small sigma2 is.

    Raises:
        ValueError: on invalid inputs, or a sigma2 > 0 that underflows relative to the data's
            scale.
    """
    X = as_data(X)
    Xs, params, w, _ = prepare(X, IsotropicParams(means, sigma2), weights, for_fit=True)
    if not bool(is_soft(params.sigma2)):
        return 0.0  # the hard limit: the map is piecewise constant, its derivative 0
    k, d = params.means.shape
    # each block holds (B, K, K, D) products: K D lanes of max(K, D) elements a row bound it
    block_size = check_block_size(block_size, X.shape[0], k, d, lanes=k * d)
    scaled_jac, counts = _em_jacobian(Xs, w, params, block_size=block_size)
    occupied = np.asarray(counts) > 0
    jac = np.asarray(scaled_jac, dtype=np.float64)[occupied][:, :, occupied]
    size = int(np.count_nonzero(occupied)) * d
    radius = float(np.max(np.abs(np.linalg.eigvals(jac.reshape(size, size))))) if size else 0.0
    # J = (the scaled Jacobian) / sigma2, multiplied in float64 on the host; an empty component
    # is pinned by the M-step: an identity block, decoupled from the others (its r_nk are 0)
    rate = radius / float(np.asarray(params.sigma2, dtype=np.float64))
    return max(rate, 1.0) if not occupied.all() else rate


@partial(jax.jit, static_argnames=("block_size",))
def _em_jacobian(
    X: jax.Array, w: jax.Array, params: IsotropicParams, *, block_size: int
) -> tuple[jax.Array, jax.Array]:
    """sigma2 times the Jacobian of the EM map mu -> sum_n w_n r_nk x_n / sum_n w_n r_nk.

    Written out rather than differentiated: with s_nk = -||x_n - mu_k||^2 / (2 sigma2),
    dr_nk / dmu_j = r_nk (delta_kj - r_nj) (x_n - mu_j) / sigma2, so

        sigma2 dM_k / dmu_j = sum_n w_n a_nkj (x_n - M_k)(x_n - mu_j)^T / sum_n w_n r_nk,

    with a_nkk = r_nk sum_{l != k} r_nl and a_nkj = -r_nk r_nj (j != k). The responsibilities
    come from the scores shifted by the nearest distance (the nearest column's exponent is
    exactly 0), and a_nkk sums the other columns rather than forming 1 - r_nk: a one-hot row
    contributes exactly 0 however small sigma2 is (forward-mode autodiff of a softmax cancels
    at about eps / sigma2 there), and nothing scales with 1 / sigma2 on the device. The value
    is the textbook softmax map, smooth also where means coincide (the collapsed point).

    Returns:
        ``(jac, counts)``: (K, D, K, D) sigma2 dM_k,d / dmu_j,e (0 in the rows of an empty
        component) and (K,) the weight each component holds.
    """
    blocks = make_blocks(X, w, block_size)
    means = params.means
    k, d = means.shape
    inv = 0.5 / params.sigma2  # sigma2 is a normal number > 0 here
    others = 1.0 - jnp.eye(k, dtype=X.dtype)

    def resp(x: jax.Array) -> jax.Array:
        dist = jnp.sum((x[:, None, :] - means[None, :, :]) ** 2, axis=-1)
        e = jnp.exp(-(dist - jnp.min(dist, axis=1, keepdims=True)) * inv)
        return e / jnp.sum(e, axis=1, keepdims=True)

    def moments(
        acc: tuple[jax.Array, jax.Array], block: tuple[jax.Array, jax.Array]
    ) -> tuple[tuple[jax.Array, jax.Array], None]:
        x, wb = block
        r = resp(x) * wb[:, None]
        return (
            acc[0] + jnp.sum(r, axis=0),
            acc[1] + jnp.matmul(r.T, x, precision=lax.Precision.HIGHEST),
        ), None

    zeros = (jnp.zeros((k,), X.dtype), jnp.zeros((k, d), X.dtype))
    (counts, sums), _ = lax.scan(moments, zeros, (blocks.x, blocks.weight))
    occupied = counts > 0
    mapped = sums / jnp.where(occupied, counts, 1.0)[:, None]

    def products(acc: jax.Array, block: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, None]:
        x, wb = block
        r = resp(x)
        rest = jnp.matmul(r, others, precision=lax.Precision.HIGHEST)  # sum_{l != k} r_nl
        a = jnp.where(jnp.eye(k, dtype=bool), (r * rest)[:, :, None], -r[:, :, None] * r[:, None])
        a = a * wb[:, None, None]
        to_mapped = x[:, None, :] - mapped[None, :, :]
        to_means = x[:, None, :] - means[None, :, :]
        term = jnp.einsum(
            "nkj,nkd,nje->kdje", a, to_mapped, to_means, precision=lax.Precision.HIGHEST
        )
        return acc + term, None

    total, _ = lax.scan(products, jnp.zeros((k, d, k, d), X.dtype), (blocks.x, blocks.weight))
    per_count = jnp.where(occupied, 1.0 / jnp.where(occupied, counts, 1.0), 0.0)
    return total * per_count[:, None, None, None], counts


@with_float64_scope
def convergence_rate(
    X: Any,
    init_means: Any,
    sigma2: Any,
    *,
    n_steps: int = 50,
    fixed_point: Any = None,
    fixed_point_iter: int = 5000,
    floor_rel: float | None = None,
    weights: Any = None,
    block_size: int | None = None,
) -> RateResult:
    """Measure EM's linear convergence rate |mu_{t+1} - mu*| / |mu_t - mu*| empirically.

    Runs ``n_steps`` EM iterations from ``init_means`` and measures the distance of every iterate
    to the fixed point mu*. Unless given, mu* is found by continuing EM from the last iterate for
    ``fixed_point_iter`` more iterations with no early stop (K-means stops once no label
    changes), so it is the fixed point this trajectory converges to.

    Args:
        X: (N, D) data.
        init_means: (K, D) the start.
        sigma2: shared variance >= 0.
        n_steps: number of iterations whose errors are measured.
        fixed_point: optional known (K, D) fixed point (e.g. the collapsed point), any point
            X's dtype holds, at any distance from the data: it takes no part in the trajectory
            (computed like :func:`gmmlimit.em`, rescaled by the data's and the start's scale),
            only in the errors.
        fixed_point_iter: iterations used to locate mu* when it is not given.
        floor_rel: errors below ``floor_rel * sqrt(trace C)`` are rounding noise; default
            sqrt(machine epsilon) of X's dtype.
        weights: optional (N,) sample weights.
        block_size: rows per streamed E-step block; None (default) takes the default device's
            (:func:`gmmlimit.scale.default_block_size`).

    Returns:
        A :class:`RateResult` (errors, fixed point and floor in the data's units; data outside
        the dtype's scale window are computed as X / 2^e like :func:`gmmlimit.em`).

    Raises:
        ValueError: on invalid inputs.
    """
    X = as_data(X)
    Xs, params, w, scale = prepare(X, IsotropicParams(init_means, sigma2), weights, for_fit=True)
    n_steps = check_positive_int(n_steps, "n_steps")
    fixed_point_iter = check_positive_int(fixed_point_iter, "fixed_point_iter")
    block_size = check_block_size(block_size, X.shape[0], params.means.shape[0], X.shape[1])
    known = None if fixed_point is None else check_means(fixed_point, X, name="fixed_point")
    if known is not None and known.shape != params.means.shape:
        raise ValueError(
            f"fixed_point has shape {tuple(known.shape)} but the means have "
            f"{tuple(params.means.shape)}."
        )
    eps = float(jnp.finfo(X.dtype).eps)
    floor_rel = float(np.sqrt(eps)) if floor_rel is None else check_scalar(floor_rel, "floor_rel")
    # The trajectory runs on X / 2^e (prepare: e from the data and the start, the inputs of EM).
    # A given fixed point takes no part in it: it may lie at any scale of X's dtype (far from
    # the data), so the errors are measured on the host, in the data's units (below).
    path, located, data_scale = _trajectory(
        Xs,
        w,
        params,
        jnp.asarray(known is not None),
        n_steps=n_steps,
        fixed_point_iter=fixed_point_iter,
        block_size=block_size,
    )
    # Path and fixed point are compared less the data's exact offset, if any (rows far from the
    # origin: _offset), where no rounding of their size near the offset hides their difference.
    path = np.ldexp(np.asarray(path, dtype=np.float64), scale.data)
    offset = scale.offset_array(np.float64)
    if known is not None:
        fixed = known
        fixed_host = np.asarray(known, dtype=np.float64)
        if offset is not None:
            fixed_host = fixed_host - offset
    else:
        fixed_host = np.ldexp(np.asarray(located, dtype=np.float64), scale.data)
        fixed = scale.means_back(located)
    # the floor, floor_rel sqrt(trace C), exactly (the scale was computed on X / 2^e), and as
    # reported: correctly rounded (inf only past the largest float64)
    bar = Fraction(floor_rel) * _exact(float(data_scale), scale.data)
    try:
        floor = float(bar)
    except OverflowError:
        floor = math.inf
    mantissas, exponents = _error_norms(path, fixed_host)
    rate, ratios, errors = _rate_from_norms(mantissas, exponents, bar)
    return RateResult(rate, ratios, errors, np.asarray(fixed), floor)


def _error_norms(path: np.ndarray, fixed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """e_t = ||path_t - fixed|| as m_t 2^x_t, exact wherever float64 holds the terms.

    The differences are formed at 2^-E, E the binary exponent of the largest magnitude of
    ``path`` and ``fixed`` (every scaled entry below 1, so no difference overflows, even for
    float64 data near the largest number with a fixed point of the other sign), and each row's
    norm at its own power of two 2^-F_t (its largest entry in [0.5, 1): no square overflows or
    vanishes), as a hypot does.

    Args:
        path: (T + 1, K, D) float64 iterates in the data's units.
        fixed: (K, D) float64 fixed point in the data's units.

    Returns:
        ``(m, x)``: (T + 1,) float64 m_t in [0.5, sqrt(K D)) (0 where e_t = 0) and int64 x_t,
        with e_t = m_t 2^x_t.
    """
    largest = max(float(np.max(np.abs(path))), float(np.max(np.abs(fixed))))
    common = math.frexp(largest)[1] if largest > 0 else 0
    diff = np.ldexp(path, -common) - np.ldexp(fixed, -common)[None]
    diff = diff.reshape(diff.shape[0], -1)
    row_max = np.max(np.abs(diff), axis=1)
    own = np.where(row_max > 0, np.frexp(row_max)[1], 0).astype(np.int64)
    scaled = np.ldexp(diff, -own[:, None])
    return np.sqrt(np.sum(scaled * scaled, axis=1)), own + common


def _rate_from_norms(
    mantissas: np.ndarray, exponents: np.ndarray, floor: Fraction
) -> tuple[float, np.ndarray, np.ndarray]:
    """The linear rate, the ratios and the errors from e_t = m_t 2^x_t (see :class:`RateResult`).

    A ratio e_{t+1} / e_t is formed from the mantissas and the exponents, so it is finite
    wherever the true ratio is, even where an error itself is past the largest float64 (inf in
    ``errors``); the comparison e_t > floor is exact (rational arithmetic).

    Args:
        mantissas: (T + 1,) m_t.
        exponents: (T + 1,) x_t.
        floor: the noise floor, exactly.

    Returns:
        ``(rate, ratios, errors)``: the rate, (T,) ratios (NaN where e_t <= floor) and (T + 1,)
        float64 errors.
    """
    with np.errstate(over="ignore"):
        errors = np.ldexp(mantissas, exponents)
    pairs = zip(mantissas[:-1], exponents[:-1], strict=True)
    above = np.array([m > 0 and _exact(m, int(x)) > floor for m, x in pairs], dtype=bool)
    ratios = np.full(mantissas.size - 1, np.nan)
    quotient = mantissas[1:][above] / mantissas[:-1][above]
    ratios[above] = np.ldexp(quotient, exponents[1:][above] - exponents[:-1][above])
    valid = ratios[above]
    if valid.size == 0:
        return 0.0, ratios, errors
    return float(np.median(valid[valid.size // 2 :])), ratios, errors


def _exact(mantissa: float, exponent: int) -> Fraction:
    """The exact rational number m 2^x (``mantissa`` m, ``exponent`` x)."""
    value = Fraction(mantissa)
    return value * 2**exponent if exponent >= 0 else value / 2 ** (-exponent)


@partial(jax.jit, static_argnames=("n_steps", "fixed_point_iter", "block_size"))
def _trajectory(
    X: jax.Array,
    w: jax.Array,
    params: IsotropicParams,
    have_fixed: jax.Array,
    *,
    n_steps: int,
    fixed_point_iter: int,
    block_size: int,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The (n_steps + 1, K, D) iterates, the located fixed point and the data scale."""
    blocks = make_blocks(X, w, block_size)

    def step(means: jax.Array, _: None) -> tuple[jax.Array, jax.Array]:
        new, _, _ = em_iteration(isotropic, IsotropicParams(means, params.sigma2), blocks)
        return new.means, means

    last, path = lax.scan(step, params.means, None, length=n_steps)
    path = jnp.concatenate([path, last[None]])

    def locate(start: jax.Array) -> jax.Array:
        # tol = -1 never fires for soft fits: exactly fixed_point_iter iterations.
        return fit_compiled(
            isotropic,
            X,
            w,
            IsotropicParams(start, params.sigma2),
            jnp.asarray(-1.0, X.dtype),
            max_iter=fixed_point_iter,
            block_size=block_size,
        ).means

    # one program whether or not the fixed point is given (a traced flag, not a static one);
    # a given one is not located (the last iterate stands in)
    fixed = lax.cond(have_fixed, lambda: last, lambda: locate(last))
    total = jnp.sum(w)
    centred = X - jnp.matmul(w, X, precision=jax.lax.Precision.HIGHEST) / total
    scale = jnp.sqrt(jnp.sum(w[:, None] * centred * centred) / total)
    return path, fixed, scale
