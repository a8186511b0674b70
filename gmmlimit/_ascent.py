"""Gradient ascent on the log-likelihood of the means (optax), to set against EM.

EM for the isotropic model is itself a gradient method: its update is
mu_k <- mu_k + (sigma2 / N_k) dl/dmu_k, a preconditioned gradient step whose step size adapts to
each component's mass. This module maximises the same log-likelihood l(mu) (the one EM reports,
computed by the same streamed statistics and differentiated by JAX) with generic optax optimisers
(Adam, L-BFGS, or any ``optax.GradientTransformation``), and :func:`compare_em_gradient` measures
iterations and wall time of each method to a common log-likelihood from the same start.

The ascent always runs in unit-free coordinates: on X / 2^t, means / 2^t, sigma2 / 4^t with 2^t
the data's spread rounded to a power of two (:func:`_unit_exponent`), exact operations, so the
iterates of data given as X * 2^e are those of X times 2^e, bit for bit (optax's L-BFGS line
search, its first trial step and its tolerances, and Adam's epsilon are not unit-free).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Sequence
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from ._driver import e_pass, fit_compiled, make_blocks
from ._rescale import Scale, check_scaled_sigma2, prepare
from ._validation import (
    SCALE_WINDOW,
    as_data,
    check_block_size,
    check_positive_int,
    check_scalar,
    largest_magnitude,
    rows_kept_exponent,
    with_float64_scope,
)
from .variants._isotropic import (
    IsotropicParams,
    isotropic,
    log_likelihood_from_stats,
    validate_params,
)

__all__ = ["GradientResult", "MethodCost", "compare_em_gradient", "gradient_fit"]

OPTIMIZERS = ("adam", "lbfgs")


class GradientResult(NamedTuple):
    """The result of gradient ascent on the log-likelihood.

    Attributes:
        means: (K, D) the final means.
        history: (n_steps + 1,) log-likelihood at the start and after every step.
        log_likelihood: () the log-likelihood at the final means.
        evaluations: (n_steps,) int32 value-and-gradient evaluations of each step (1 for a plain
            transformation; the line-search steps for L-BFGS, at least 1).
    """

    means: jax.Array
    history: jax.Array
    log_likelihood: jax.Array
    evaluations: jax.Array


class MethodCost(NamedTuple):
    """One method's cost to reach the common target in :func:`compare_em_gradient`.

    Attributes:
        history: (n_steps + 1,) log-likelihood after 0, 1, ..., n_steps iterations.
        iterations: iterations to reach the target, or -1 if never reached.
        seconds_per_iter: compiled wall time of the whole run divided by its iterations (best of
            the repeats).
        seconds: wall time to the target: the whole run's time times the share of its
            value-and-gradient evaluations spent before the target (NaN if never reached). For EM
            and Adam every iteration costs one evaluation, so this is ``iterations *
            seconds_per_iter``; L-BFGS's line search costs a varying number per iteration (and
            many once converged, when no step decreases the loss any more).
        final: the log-likelihood after n_steps iterations.
        learning_rate: the Adam step size used (the best of those tried); NaN for EM and L-BFGS.
    """

    history: np.ndarray
    iterations: int
    seconds_per_iter: float
    seconds: float
    final: float
    learning_rate: float = math.nan


@functools.cache
def _named_optimizer(name: str) -> optax.GradientTransformationExtraArgs:
    """One cached transformation per name, so that repeated fits reuse the compiled program."""
    if name == "adam":
        # Adam without its learning rate: the rate is applied as a traced factor instead.
        return optax.with_extra_args_support(optax.scale_by_adam())
    return optax.lbfgs()


def _optimizer(
    optimizer: Any, learning_rate: float
) -> tuple[optax.GradientTransformationExtraArgs, float]:
    """The transformation and the factor its updates are multiplied by."""
    if isinstance(optimizer, str):
        if optimizer in OPTIMIZERS:
            factor = -learning_rate if optimizer == "adam" else 1.0
            return _named_optimizer(optimizer), factor
        raise ValueError(
            f"optimizer must be one of {OPTIMIZERS} or an optax.GradientTransformation; "
            f"got {optimizer!r}."
        )
    if isinstance(optimizer, optax.GradientTransformation):
        return optax.with_extra_args_support(optimizer), 1.0
    raise ValueError(
        f"optimizer must be one of {OPTIMIZERS} or an optax.GradientTransformation; "
        f"got {type(optimizer)}."
    )


def _data_scale(X: jax.Array, w: jax.Array) -> float:
    total = float(jnp.sum(w))
    centred = X - jnp.matmul(w, X, precision=jax.lax.Precision.HIGHEST) / total
    return float(jnp.sqrt(jnp.sum(w[:, None] * centred * centred) / total))


class _Problem(NamedTuple):
    """A gradient-ascent problem in unit-free coordinates (:func:`_unit_exponent`)."""

    X: jax.Array  # (N, D) data / 2^scale.data
    w: jax.Array  # (N,) weights / 2^scale.weight
    params: IsotropicParams  # means / 2^scale.data, sigma2 / 4^scale.data
    scale: Scale
    sigma2: jax.Array  # () the variance as given, in X's dtype

    def host_log_likelihood(self, values: np.ndarray) -> np.ndarray:
        """Log-likelihoods of the scaled problem as those of the problem as given.

        ``Scale.log_likelihood`` of float64 host values, computed in float64 on the host, with
        ln(sigma2 / sigma2') = 2 t ln 2 exactly unless the scaled variance was capped.
        """
        if self.scale.data == 0 and self.scale.weight == 0:  # none, or a translation alone
            return values
        sigma2 = float(np.asarray(self.sigma2, np.float64))
        scaled = float(np.asarray(self.params.sigma2, np.float64))
        if scaled == math.ldexp(sigma2, -2 * self.scale.data):
            log_ratio = 2 * self.scale.data * math.log(2.0)
        else:
            log_ratio = math.log(sigma2) - math.log(scaled)
        total = float(np.sum(np.asarray(self.w, np.float64)))
        shift = 0.5 * total * self.X.shape[1] * log_ratio
        return np.ldexp(values - shift, self.scale.weight)

    def learning_rate(self, learning_rate: Any, name: str = "learning_rate") -> float:
        """A step size in the data's units (None: the default), as a step on the scaled data.

        The default is 0.01 times the data scale sqrt(trace C), or 0.01 sqrt(sigma2) for data
        without spread (all rows equal).

        Raises:
            ValueError: naming ``name`` when it is not a finite number > 0, or when it (after
                the scaling) is not a normal number of the data's dtype.
        """
        if learning_rate is None:
            spread = _data_scale(self.X, self.w)
            if not spread > 0:
                spread = math.sqrt(float(self.params.sigma2))
            return 0.01 * spread
        value = check_scalar(learning_rate, name, positive=True)
        scaled = math.ldexp(value, -self.scale.data)
        info = np.finfo(np.dtype(self.X.dtype))
        if not (float(info.tiny) <= scaled <= float(info.max)):
            raise ValueError(
                f"{name}={learning_rate!r} is not representable in the data's dtype "
                f"{np.dtype(self.X.dtype)} (relative to the data's scale it "
                f"{'overflows' if scaled > float(info.max) else 'underflows'}); give a step "
                "size in proportion to the data."
            )
        return scaled


def _learning_rates(problem: _Problem, learning_rate: Any, *, derive: bool) -> tuple[float, ...]:
    """:func:`compare_em_gradient`'s step sizes on the scaled data (the default only if used)."""
    if learning_rate is None:
        return (problem.learning_rate(None),) if derive else ()
    if np.ndim(learning_rate) == 0 and not isinstance(learning_rate, (list, tuple)):
        return (problem.learning_rate(learning_rate),)
    try:
        values = list(learning_rate)
    except TypeError:
        raise ValueError(
            f"learning_rate must be a number > 0 or a sequence of them; got {learning_rate!r}."
        ) from None
    if not values:
        raise ValueError("learning_rate must hold at least one step size; got an empty sequence.")
    return tuple(problem.learning_rate(value) for value in values)


def _nearest_exponent(value: float) -> int:
    """round(log2(value)) of a finite value > 0: value / 2^that lies in [2^-0.5, 2^0.5)."""
    mantissa, exponent = math.frexp(value)
    return exponent if mantissa >= math.sqrt(0.5) else exponent - 1


def _unit_exponent(
    Xs: jax.Array, w: jax.Array, scale: Scale, largest: tuple[float, float], sigma2: float
) -> int:
    """The exponent t of the unit 2^t the ascent measures the data in (data / 2^t).

    2^t is the data's weighted spread per coordinate, sqrt(trace C / D), rounded to the nearest
    power of two (t = 0 for standardised data, which are computed as given), or the largest
    magnitude of data and means so rounded for data without spread (t = 0 when all are 0). It
    is then moved as little as needed to keep sigma2 / 4^t a normal number, and then to keep
    the largest magnitude inside the dtype's scale window (as ``_rescale.prepare`` does). Every
    step reads binary exponents only, and the spread is computed in float64 on data inside the
    window, where it is exact under power-of-two scaling: data given as X * 2^e get t + e.

    Args:
        Xs: (N, D) the data as ``_rescale.prepare`` scaled them (X / 2^scale.data).
        w: (N,) the (relative) weights.
        scale: that scaling.
        largest: the largest magnitude of the rows, and of the rows and means together, as
            given (less any offset).
        sigma2: the variance as given (> 0).
    """
    rows, largest = largest
    host = np.asarray(Xs, np.float64)
    weights = np.asarray(w, np.float64)
    total = float(np.sum(weights))
    centred = host - (weights @ host) / total
    spread = math.sqrt(float(np.sum(weights @ (centred * centred))) / (total * host.shape[1]))
    if spread > 0:
        exponent = _nearest_exponent(spread) + scale.data
    elif largest > 0:
        exponent = _nearest_exponent(largest)
    else:
        exponent = 0
    dtype = np.dtype(Xs.dtype)
    # sigma2 / 4^t >= the smallest normal number (mantissas in [0.5, 1): compare exponents)
    lowest = math.frexp(float(np.finfo(dtype).tiny))[1]
    exponent = min(exponent, (math.frexp(sigma2)[1] - lowest) // 2)
    if largest > 0:  # inside the window, the rows first (_validation.rows_kept_exponent)
        window = SCALE_WINDOW.get(dtype, 256)
        top = math.frexp(largest)[1]
        exponent = min(max(exponent, top - window), top + window)
        exponent = int(rows_kept_exponent(exponent, rows, largest, Xs.shape[1], dtype))
    return exponent


def _prepare(X: Any, init_means: Any, sigma2: Any, weights: Any) -> _Problem:
    X = as_data(X)
    given = IsotropicParams(init_means, sigma2)
    Xs, params, w, scale = prepare(X, given, weights, for_fit=True)
    if not bool(params.sigma2 > 0):
        raise ValueError(
            "gradient ascent needs sigma2 > 0: the log-likelihood is not finite at sigma2 = 0."
        )
    # unit-free coordinates always (not only outside the window): optax's L-BFGS line search
    # (its first trial step, its tolerances) and Adam's epsilon read the raw scale
    original = validate_params(X, given)
    moved = scale._replace(data=0)  # rows far from the origin: translated first (_offset)
    rows = largest_magnitude(moved.data_of(X))
    largest = max(rows, largest_magnitude(moved.params(original).means))
    exponent = _unit_exponent(Xs, w, scale, (rows, largest), float(original.sigma2))
    if exponent != scale.data:
        scale = scale._replace(data=exponent)
        Xs = scale.data_of(X)
        params = scale.params(original)
        check_scaled_sigma2(sigma2, params.sigma2, scale)
    return _Problem(Xs, w, params, scale, jnp.asarray(sigma2, X.dtype))


@with_float64_scope
def gradient_fit(
    X: Any,
    init_means: Any,
    sigma2: Any,
    *,
    optimizer: Any = "adam",
    n_steps: int = 200,
    learning_rate: float | None = None,
    weights: Any = None,
    block_size: int | None = None,
) -> GradientResult:
    """Maximise the isotropic log-likelihood over the means with an optax optimiser.

    The loss minimised is -l(mu) / W (W the total weight), so Adam's step and L-BFGS's line
    search see an O(1) objective whatever N is. Exactly ``n_steps`` steps are run (one compiled
    ``lax.scan``). The steps are taken in unit-free coordinates: on X / 2^t, means / 2^t and
    sigma2 / 4^t, with 2^t the data's spread per coordinate sqrt(trace C / D) rounded to a power
    of two (moved, where needed, to keep sigma2 / 4^t normal and the data inside the dtype's
    scale window; t = 0 for standardised data). Scaling by a power of two is exact, so the same
    problem given as X * 2^e, means * 2^e, sigma2 * 4^e takes the same steps, its means those
    of X times 2^e bit for bit (optax's L-BFGS line search and Adam's epsilon are not
    unit-free: before, L-BFGS stalled on float64 data at 2^30 and ended below its start at
    2^-30).

    Args:
        X: (N, D) data.
        init_means: (K, D) the start.
        sigma2: shared variance > 0.
        optimizer: ``"adam"``, ``"lbfgs"`` (optax's L-BFGS with its zoom line search) or any
            ``optax.GradientTransformation`` (a given transformation steps on the means in
            the unit-free coordinates, means / 2^t: its step sizes are in units of 2^t;
            Adam's step is mapped).
        n_steps: number of optimiser steps.
        learning_rate: Adam's step size; default 0.01 times the data scale sqrt(trace C), or
            0.01 sqrt(sigma2) for data without spread (unused by L-BFGS and by a given
            transformation; a given value is checked all the same).
        weights: optional (N,) sample weights.
        block_size: rows per streamed E-step block; None (default) takes the default device's
            (:func:`gmmlimit.scale.default_block_size`).

    Returns:
        A :class:`GradientResult` in X's dtype: means and log-likelihoods are those of the
        data as given (the log-likelihoods shifted by (W D / 2) ln 4^t in float64).

    Raises:
        ValueError: on invalid inputs, sigma2 = 0, an unknown optimiser, a learning rate that
            is not a finite number > 0 representable in X's dtype, or a run whose means, or whose
            log-likelihood from a finite start, left the finite numbers (e.g. ``optax.sgd(inf)``:
            "the optimizer's updates left the finite numbers; check its learning rate").
    """
    problem = _prepare(X, init_means, sigma2, weights)
    X, w, params = problem.X, problem.w, problem.params
    n_steps = check_positive_int(n_steps, "n_steps")
    block_size = check_block_size(block_size, X.shape[0], params.means.shape[0], X.shape[1])
    # the step size is Adam's alone: derived and checked only where it is used
    adam = isinstance(optimizer, str) and optimizer == "adam"
    given = learning_rate is not None
    lr = problem.learning_rate(learning_rate) if adam or given else math.nan
    opt, factor = _optimizer(optimizer, lr)
    result = _gradient_compiled(
        opt, X, w, params, jnp.asarray(factor, X.dtype), n_steps=n_steps, block_size=block_size
    )
    if problem.scale != Scale(0, 0):
        # the log-likelihoods shifted in float64 on the host, rounded once to X's dtype
        history = problem.host_log_likelihood(np.asarray(result.history, np.float64))
        final = problem.host_log_likelihood(np.asarray(result.log_likelihood, np.float64))
        result = result._replace(
            means=problem.scale.means_back(result.means),
            history=jnp.asarray(history, X.dtype),
            log_likelihood=jnp.asarray(final, X.dtype),
        )
    _check_finite(result, optimizer)
    return result


def _check_finite(result: GradientResult, optimizer: Any) -> None:
    """Refuse a run whose means, or whose log-likelihood from a finite start, are not finite.

    Raises:
        ValueError: naming the optimizer (e.g. ``optax.sgd(inf)``: NaN means).
    """
    final = float(result.log_likelihood)
    start = float(result.history[0])
    finite_means = bool(np.all(np.isfinite(np.asarray(result.means))))
    if finite_means and (math.isfinite(final) or not math.isfinite(start)):
        return
    name = repr(optimizer) if isinstance(optimizer, str) else "the given optax transformation"
    raise ValueError(
        f"gradient ascent with {name}: the optimizer's updates left the finite numbers "
        f"(means finite: {finite_means}, final log-likelihood {final} from {start}); check its "
        "learning rate."
    )


def _log_lik(means: jax.Array, sigma2: jax.Array, blocks: Any) -> jax.Array:
    params = IsotropicParams(means, sigma2)
    stats, _, _ = e_pass(isotropic, params, blocks)
    return log_likelihood_from_stats(params, stats)


@partial(jax.jit, static_argnames=("opt", "n_steps", "block_size"))
def _gradient_compiled(
    opt: optax.GradientTransformationExtraArgs,
    X: jax.Array,
    w: jax.Array,
    params: IsotropicParams,
    factor: jax.Array,
    *,
    n_steps: int,
    block_size: int,
) -> GradientResult:
    blocks = make_blocks(X, w, block_size)
    total = jnp.sum(w)

    def loss(means: jax.Array) -> jax.Array:
        # L-BFGS's line search may hand float64 trial points for float32 data (x64 on)
        return -_log_lik(means.astype(X.dtype), params.sigma2, blocks) / total

    # L-BFGS keeps the value and gradient its line search computed at the accepted point in
    # its state; reuse them rather than evaluating again. Other transformations have none.
    if optax.tree_utils.tree_get(opt.init(params.means), "value") is not None:
        value_and_grad = optax.value_and_grad_from_state(loss)
    else:
        plain = jax.value_and_grad(loss)

        def value_and_grad(means: jax.Array, state: Any) -> tuple[jax.Array, jax.Array]:
            del state
            return plain(means)

    def step(carry: tuple[jax.Array, Any], _: None) -> tuple[tuple[jax.Array, Any], jax.Array]:
        means, state = carry
        value, grad = value_and_grad(means, state=state)
        updates, state = opt.update(grad, state, means, value=value, grad=grad, value_fn=loss)
        updates = jax.tree.map(lambda u: factor * u, updates)
        count = optax.tree_utils.tree_get(state, "num_linesearch_steps")
        evals = jnp.ones((), jnp.int32) if count is None else jnp.maximum(count, 1)
        return (optax.apply_updates(means, updates), state), (-value * total, evals)

    state = opt.init(params.means)
    (means, _), (history, evals) = lax.scan(step, (params.means, state), None, length=n_steps)
    final = _log_lik(means, params.sigma2, blocks)
    history = jnp.concatenate([history, final[None]]).astype(X.dtype)
    return GradientResult(
        means=means,
        history=history,
        log_likelihood=final.astype(X.dtype),
        evaluations=evals.astype(jnp.int32),
    )


@partial(jax.jit, static_argnames=("n_steps", "block_size"))
def _em_history(
    X: jax.Array, w: jax.Array, params: IsotropicParams, *, n_steps: int, block_size: int
) -> jax.Array:
    # tol = -1 never fires for soft fits: exactly n_steps iterations.
    fit = fit_compiled(
        isotropic, X, w, params, jnp.asarray(-1.0, X.dtype), max_iter=n_steps, block_size=block_size
    )
    return jnp.concatenate([fit.history, fit.objective[None]])


def iterations_to(history: np.ndarray, target: float) -> int:
    """The first iteration whose log-likelihood reaches ``target`` (-1 if none does)."""
    hit = np.nonzero(np.asarray(history) >= target)[0]
    return int(hit[0]) if hit.size else -1


@with_float64_scope
def compare_em_gradient(
    X: Any,
    init_means: Any,
    sigma2: Any,
    *,
    methods: Sequence[str] = ("em", "adam", "lbfgs"),
    n_steps: int = 200,
    rel_gap: float = 1e-6,
    learning_rate: float | Sequence[float] | None = None,
    repeats: int = 3,
    weights: Any = None,
    block_size: int | None = None,
) -> dict[str, MethodCost]:
    """Iterations and wall time of EM, Adam and L-BFGS to the same log-likelihood.

    Every method runs ``n_steps`` iterations from ``init_means``. The target is
    ``l_best - rel_gap * (l_best - l_0)``: all but a fraction ``rel_gap`` of the best improvement
    over the common start's log-likelihood l_0 that any method reached (a relative gap on l itself
    would depend on the constant -(N D / 2) ln(2 pi sigma2)), but at least 4 eps |l_best| below
    l_best (eps of X's dtype, l in the unit-free coordinates the methods run in, see
    :func:`gradient_fit`): a smaller gap is rounding. A method that converges to a worse
    fixed point never reaches it (iterations = -1). Wall time per
    iteration is measured on the compiled program (compiled before timing, best of ``repeats``),
    so compilation is not counted.

    Args:
        X: (N, D) data.
        init_means: (K, D) the common start.
        sigma2: shared variance > 0.
        methods: a subset of ``("em", "adam", "lbfgs")``.
        n_steps: iterations per method.
        rel_gap: the fraction of the best improvement that may remain at the target.
        learning_rate: Adam's step size (default: see :func:`gradient_fit`), or several: Adam
            then runs with each and the one reaching the target in the fewest iterations (the
            highest final log-likelihood if none does) is reported.
        repeats: timed runs per method.
        weights: optional (N,) sample weights.
        block_size: rows per streamed E-step block; None (default) takes the default device's
            (:func:`gmmlimit.scale.default_block_size`).

    Returns:
        ``{method: MethodCost}`` (log-likelihoods and step sizes in the units of the data as
        given; every method runs in the unit-free coordinates of :func:`gradient_fit`, and the
        target and iterations are read there).

    Raises:
        ValueError: on invalid inputs, an unknown method, or a learning rate that is not a
            finite number > 0 representable in X's dtype.
    """
    problem = _prepare(X, init_means, sigma2, weights)
    X, w, params = problem.X, problem.w, problem.params
    n_steps = check_positive_int(n_steps, "n_steps")
    repeats = check_positive_int(repeats, "repeats")
    block_size = check_block_size(block_size, X.shape[0], params.means.shape[0], X.shape[1])
    methods = tuple(methods)
    for m in methods:
        if m not in ("em", *OPTIMIZERS):
            raise ValueError(f"unknown method {m!r}; choose from ('em', 'adam', 'lbfgs').")
    if not methods:
        raise ValueError("methods must name at least one method.")
    gap = check_scalar(rel_gap, "rel_gap")
    rates = _learning_rates(problem, learning_rate, derive="adam" in methods)

    # the target and the iterations are read on the unit-free histories (the map to the data's
    # units is increasing and affine: the same target, but no rounding of its shift)
    runs: dict[str, list[tuple[np.ndarray, np.ndarray, float, float]]] = {}
    for m in methods:
        for lr in rates if m == "adam" else (math.nan,):
            history, evals, best, _ = _timed(
                m, lr, X, w, params, n_steps=n_steps, block_size=block_size, repeats=repeats
            )
            # step sizes in the units of the data as given
            given_lr = math.ldexp(lr, problem.scale.data) if math.isfinite(lr) else lr
            runs.setdefault(m, []).append((history, evals, best, given_lr))

    l_best = max(float(np.max(h)) for tries in runs.values() for h, _, _, _ in tries)
    l_start = float(next(iter(runs.values()))[0][0][0])
    # never closer to l_best than the log-likelihood's rounding (4 eps |l_best|): rounding noise
    # is no progress (from a start at EM's fixed point computed in other units, say)
    resolution = 4 * float(np.finfo(X.dtype).eps) * abs(l_best)
    target = l_best - max(gap * (l_best - l_start), resolution)
    result = {}
    for m, tries in runs.items():
        costs = []
        for history, evals, total_seconds, lr in tries:
            it = iterations_to(history, target)
            share = float(np.sum(evals[:it]) / np.sum(evals)) if it >= 0 else math.nan
            given = problem.host_log_likelihood(history)  # in the units of the data as given
            cost = MethodCost(
                history=given,
                iterations=it,
                seconds_per_iter=total_seconds / n_steps,
                seconds=total_seconds * share,
                final=float(given[-1]),
                learning_rate=lr,
            )
            costs.append((cost, float(history[-1])))
        reached = [c for c, _ in costs if c.iterations >= 0]
        if reached:
            result[m] = min(reached, key=lambda c: c.iterations)
        else:
            result[m] = max(costs, key=lambda c: c[1])[0]
    return result


def _timed(
    method: str,
    lr: float,
    X: jax.Array,
    w: jax.Array,
    params: IsotropicParams,
    *,
    n_steps: int,
    block_size: int,
    repeats: int,
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """History, evaluations per step, compiled wall time of the run (best of ``repeats``), lr."""
    if method == "em":
        run = partial(_em_history, X, w, params, n_steps=n_steps, block_size=block_size)
    else:
        opt, factor = _optimizer(method, lr)
        run = partial(
            _gradient_compiled,
            opt,
            X,
            w,
            params,
            jnp.asarray(factor, X.dtype),
            n_steps=n_steps,
            block_size=block_size,
        )
    out = jax.block_until_ready(run())  # compile and warm up
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(run())
        best = min(best, time.perf_counter() - start)
    if method == "em":
        history, evals = np.asarray(out, dtype=np.float64), np.ones(n_steps)
    else:
        history = np.asarray(out.history, dtype=np.float64)
        evals = np.asarray(out.evaluations, dtype=np.float64)
    return history, evals, best, lr
