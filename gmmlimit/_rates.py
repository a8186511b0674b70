"""Convergence rates of EM near a fixed point: measured, and predicted by linearisation.

Near a fixed point mu* the EM map M is approximately linear, mu_{t+1} - mu* ~ J (mu_t - mu*) with
J = dM/dmu at mu*, so EM converges linearly with rate rho = the spectral radius of J. At the
collapsed point mu_k = mean(X) (for sigma2 > lambda_max(C)) the map multiplies a perturbation that
sums to zero over the components by C / sigma2 (DESIGN.md section 1, statement 5), so
rho = lambda_max(C) / sigma2. As sigma2 -> 0 the responsibilities freeze and rho -> 0: EM becomes
K-means, which stops after finitely many steps.
"""

from __future__ import annotations

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
    check_sigma2,
    is_soft,
    is_traced,
    with_float64_scope,
)
from .variants._isotropic import IsotropicParams, isotropic

__all__ = ["RateResult", "collapsed_rate", "convergence_rate", "linearized_rate", "real_scalar"]


def real_scalar(value: Any, name: str, *, positive: bool = False) -> float:
    """A finite real scalar option (a Python number or a 0-d array) as a Python float.

    Args:
        value: the option as given.
        name: its name, used in error messages.
        positive: require > 0 (otherwise >= 0).

    Returns:
        ``float(value)``.

    Raises:
        ValueError: naming ``name`` when ``value`` is not a real scalar (complex, a string, an
            array of several values), is NaN or infinite, or is negative (or 0 with
            ``positive``).
    """
    bound = "> 0" if positive else ">= 0"
    try:
        host = np.asarray(value)
    except (TypeError, ValueError):
        host = np.asarray(None)
    if host.shape != () or not (
        np.issubdtype(host.dtype, np.floating) or np.issubdtype(host.dtype, np.integer)
    ):
        raise ValueError(f"{name} must be a real number {bound}; got {value!r}.")
    number = float(host)
    if not (np.isfinite(number) and (number > 0 if positive else number >= 0)):
        raise ValueError(f"{name} must be a finite number {bound}; got {value!r}.")
    return number


class RateResult(NamedTuple):
    """An empirical convergence-rate measurement.

    Attributes:
        rate: () the estimated linear rate: the median of the error ratios e_{t+1} / e_t over
            the second half of the steps whose error e_t is above the noise floor (0 when the
            error falls below the floor at once, as in K-means' finite convergence).
        ratios: (n_steps,) the ratios e_{t+1} / e_t (NaN where e_t is below the floor).
        errors: (n_steps + 1,) e_t = ||mu_t - mu*|| (Frobenius norm over all means).
        fixed_point: (K, D) the fixed point mu* the errors are measured to.
        floor: () the noise floor, ``floor_rel`` times the data scale sqrt(trace C).
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
    if not is_traced(sigma2) and np.any(np.asarray(s2) <= 0):
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
        The spectral radius, a Python float (inf only where it exceeds the largest float64,
        at an exact tie with sigma2 near the smallest normal float64 relative to the data).

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
        fixed_point: optional known (K, D) fixed point (e.g. the collapsed point).
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
    floor_rel = float(np.sqrt(eps)) if floor_rel is None else real_scalar(floor_rel, "floor_rel")
    # computed on X / 2^e (prepare): errors, the fixed point and the scale map back by 2^e
    errors, mu_star, data_scale = _trajectory_errors(
        Xs,
        w,
        params,
        jnp.ldexp(known, -scale.data) if known is not None else params.means,
        jnp.asarray(known is not None),
        n_steps=n_steps,
        fixed_point_iter=fixed_point_iter,
        block_size=block_size,
    )
    errors = np.ldexp(np.asarray(errors, dtype=np.float64), scale.data)
    floor = floor_rel * float(np.ldexp(float(data_scale), scale.data))
    rate, ratios = rate_from_errors(errors, floor)
    fixed = jnp.ldexp(mu_star, scale.data) if scale.data else mu_star
    return RateResult(rate, ratios, errors, np.asarray(fixed), floor)


def rate_from_errors(errors: np.ndarray, floor: float) -> tuple[float, np.ndarray]:
    """The linear rate from a sequence of errors e_t (see :class:`RateResult`).

    Args:
        errors: (T + 1,) errors to the fixed point.
        floor: errors at or below it are noise.

    Returns:
        ``(rate, ratios)`` with ratios (T,) = e_{t+1} / e_t, NaN where e_t <= floor.
    """
    errors = np.asarray(errors, dtype=np.float64)
    above = errors[:-1] > floor
    ratios = np.full(errors.size - 1, np.nan)
    ratios[above] = errors[1:][above] / errors[:-1][above]
    valid = ratios[above]
    if valid.size == 0:
        return 0.0, ratios
    return float(np.median(valid[valid.size // 2 :])), ratios


@partial(jax.jit, static_argnames=("n_steps", "fixed_point_iter", "block_size"))
def _trajectory_errors(
    X: jax.Array,
    w: jax.Array,
    params: IsotropicParams,
    fixed: jax.Array,
    have_fixed: jax.Array,
    *,
    n_steps: int,
    fixed_point_iter: int,
    block_size: int,
) -> tuple[jax.Array, jax.Array, jax.Array]:
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

    # one program whether or not the fixed point is given (a traced flag, not a static one)
    fixed = lax.cond(have_fixed, lambda: fixed, lambda: locate(last))
    errors = jnp.sqrt(jnp.sum((path - fixed) ** 2, axis=(1, 2)))
    total = jnp.sum(w)
    centred = X - jnp.matmul(w, X, precision=jax.lax.Precision.HIGHEST) / total
    scale = jnp.sqrt(jnp.sum(w[:, None] * centred * centred) / total)
    return errors, fixed, scale
