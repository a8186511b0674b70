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
from ._validation import (
    as_data,
    check_block_size,
    check_means,
    check_positive_int,
    check_sigma2,
    is_traced,
    weights_or_ones,
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
    (a (K D, K D) matrix, by forward-mode autodiff through the EM map of the means) is
    materialised, and so are (block, K, D) differences: use it for small K D.

    Args:
        X: (N, D) data.
        means: (K, D) the point to linearise at (usually a fixed point).
        sigma2: shared variance >= 0 (at 0 the map is locally constant: rate 0 away from ties).
        weights: optional (N,) sample weights.
        block_size: rows per streamed E-step block; None (default) takes the default device's
            (:func:`gmmlimit.scale.default_block_size`).

    Returns:
        The spectral radius, a Python float.
    """
    X = as_data(X)
    params = isotropic.validate(X, IsotropicParams(means, sigma2))
    w = weights_or_ones(weights, X.shape[0], X.dtype)
    k, d = params.means.shape
    # the Jacobian pushes K D tangents through the step side by side (jacfwd's vmap), each
    # with its block's (B, K, D) differences: K D * D lanes of max(K, D) elements a row bound it
    block_size = check_block_size(block_size, X.shape[0], k, d, lanes=k * d * d)
    jac = np.asarray(_em_jacobian(X, w, params, block_size=block_size), dtype=np.float64)
    return float(np.max(np.abs(np.linalg.eigvals(jac))))


@partial(jax.jit, static_argnames=("block_size",))
def _em_jacobian(
    X: jax.Array, w: jax.Array, params: IsotropicParams, *, block_size: int
) -> jax.Array:
    """Jacobian of the smooth EM map mu -> sum_n w_n r_nk x_n / sum_n w_n r_nk (sigma2 > 0).

    The driver's E-step treats exact ties specially (the nearest column is pinned to an exponent
    of exactly 0), which is right for values but gives a zero derivative at a point where means
    coincide, such as the collapsed point. The Jacobian is therefore taken through the textbook
    softmax of -d_nk / (2 sigma2), streamed over the same blocks; its value is the same map.
    """
    blocks = make_blocks(X, w, block_size)
    shape = params.means.shape
    positive = params.sigma2 > 0
    inv = jnp.where(positive, 0.5 / jnp.where(positive, params.sigma2, 1.0), 0.0)

    def update(flat: jax.Array) -> jax.Array:
        means = flat.reshape(shape)

        def body(
            acc: tuple[jax.Array, jax.Array], block: tuple[jax.Array, jax.Array]
        ) -> tuple[tuple[jax.Array, jax.Array], None]:
            x, wb = block
            d = jnp.sum((x[:, None, :] - means[None, :, :]) ** 2, axis=-1)
            r = jax.nn.softmax(-d * inv, axis=1) * wb[:, None]
            return (
                acc[0] + jnp.sum(r, axis=0),
                acc[1] + jnp.matmul(r.T, x, precision=jax.lax.Precision.HIGHEST),
            ), None

        zeros = (jnp.zeros((shape[0],), X.dtype), jnp.zeros(shape, X.dtype))
        (counts, sums), _ = lax.scan(body, zeros, (blocks.x, blocks.weight))
        return (sums / counts[:, None]).reshape(-1)

    jac = jax.jacfwd(update)(params.means.reshape(-1))
    # At sigma2 = 0 the map is piecewise constant: its derivative is 0 away from ties.
    return jnp.where(positive, jac, 0.0)


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
        A :class:`RateResult`.

    Raises:
        ValueError: on invalid inputs.
    """
    X = as_data(X)
    params = isotropic.validate(X, IsotropicParams(init_means, sigma2))
    w = weights_or_ones(weights, X.shape[0], X.dtype)
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
    floor_rel = float(np.sqrt(eps)) if floor_rel is None else float(floor_rel)
    if not (np.isfinite(floor_rel) and floor_rel >= 0):
        raise ValueError(f"floor_rel must be a finite number >= 0; got {floor_rel!r}.")
    errors, mu_star, scale = _trajectory_errors(
        X,
        w,
        params,
        known if known is not None else params.means,
        jnp.asarray(known is not None),
        n_steps=n_steps,
        fixed_point_iter=fixed_point_iter,
        block_size=block_size,
    )
    errors = np.asarray(errors, dtype=np.float64)
    floor = floor_rel * float(scale)
    rate, ratios = rate_from_errors(errors, floor)
    return RateResult(rate, ratios, errors, np.asarray(mu_star), floor)


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
