"""Deterministic annealing: EM along a decreasing sigma2 schedule, K-means as the last stage.

Going from a large variance to sigma2 = 0 is a path. At a large sigma2 every mean sits at the
data mean (the collapsed fixed point); it stays stable down to the critical variance
sigma2_c = lambda_max(C) of the 1/N data covariance and splits below it (DESIGN.md section 1,
statement 5). :func:`anneal` follows the path with warm starts: each stage is one run of the core
fit driver (:func:`gmmlimit._driver.fit_program` with the isotropic variant) started from the
previous stage's means plus a tiny symmetric-breaking perturbation drawn from an explicit key, and
the whole path is one ``lax.scan`` compiled once per schedule length.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._api import check_init_components, init_means, scaled_temperature
from ._distance import within_distance
from ._driver import (
    e_pass,
    fit_compiled,
    fit_program,
    history_length,
    make_blocks,
)
from ._offset import offset_of, translate
from ._rescale import Scale, check_scaled_sigma2, offset_tuple, traced_scale
from ._validation import (
    as_data,
    check_block_size,
    check_k,
    check_key,
    check_max_iter,
    check_means,
    check_positive_int,
    check_scalar,
    check_sigma2,
    check_tol,
    exact_ldexp,
    is_soft,
    is_traced,
    real_values,
    relative_weights,
    scale_exponent,
    weights_or_ones,
    with_float64_scope,
)
from ._variant import (
    Params,
    Variant,
    check_temperature,
    check_variant,
    validated_at,
    with_temperature,
)
from ._variant_scale import variant_fit_map, variant_params, variant_result
from .variants._isotropic import IsotropicParams, isotropic, log_likelihood_from_stats

__all__ = [
    "AnnealPath",
    "AnnealResult",
    "anneal",
    "anneal_variant",
    "count_distinct",
    "schedule_values",
    "split_points",
]


class AnnealResult(NamedTuple):
    """The path of an annealing run: one entry per stage (S schedule stages, then K-means).

    Attributes:
        sigma2: (S + 1,) the variance of each stage; the last entry is 0 (the K-means stage).
        means: (S + 1, K, D) the means at the end of each stage.
        log_likelihood: (S + 1,) the log-likelihood at each stage's means and variance; at the
            K-means stage (sigma2 = 0) its limit, -inf (+inf if every point sits on a mean).
        distortion: (S + 1,) the K-means objective J at each stage's means.
        n_distinct: (S + 1,) int32 number of distinct centres (means closer than
            ``merge_tol * scale`` are one centre, transitively).
        n_iter: (S + 1,) int32 EM iterations run in each stage.
        labels: (N,) int32 labels of the final (K-means) stage.
        scale: () the data scale sqrt(trace C) = RMS distance of the points to their mean; the
            perturbation and the merge tolerance are relative to it.
    """

    sigma2: jax.Array
    means: jax.Array
    log_likelihood: jax.Array
    distortion: jax.Array
    n_distinct: jax.Array
    n_iter: jax.Array
    labels: jax.Array
    scale: jax.Array


Schedule = Callable[[int], Any] | Sequence[float] | np.ndarray | jax.Array


def _stage_values(schedule: Schedule, n_stages: int | None) -> np.ndarray:
    """A schedule's raw values: a callable on the stage indices 0 .. n_stages - 1, or an array.

    Raises:
        ValueError: if a callable comes without ``n_stages``, an array with an ``n_stages``
            other than its length (before, the variant path ignored it), ``n_stages`` is not a
            positive integer, or an array is not 1-D and non-empty.
    """
    if callable(schedule):
        if n_stages is None:
            raise ValueError("a callable schedule needs n_stages (the number of stages to run).")
        n_stages = check_positive_int(n_stages, "n_stages")
        return np.array([real_values(schedule(i)) for i in range(n_stages)])
    values = real_values(schedule)
    if values.ndim != 1 or values.size < 1:
        raise ValueError(f"an array schedule must be 1-D and non-empty; got shape {values.shape}.")
    if n_stages is not None and check_positive_int(n_stages, "n_stages") != values.size:
        raise ValueError(f"n_stages={n_stages} but the schedule has {values.size} values.")
    return values


def schedule_values(schedule: Schedule, n_stages: int | None = None) -> np.ndarray:
    """Evaluate a sigma2 schedule on the stage indices 0, 1, ..., n_stages - 1.

    Args:
        schedule: an optax schedule (``optax.exponential_decay``, ``optax.cosine_decay_schedule``,
            ``optax.join_schedules``, ``optax.piecewise_constant_schedule``, ...), any callable
            mapping a stage index (a Python int) to a variance, or a 1-D array of variances.
        n_stages: the number of stages; required for a callable, optional (must match) for an
            array.

    Returns:
        (S,) float64 NumPy array of the variances, validated: finite, >= 0, non-increasing.

    Raises:
        ValueError: if n_stages is missing or wrong, or a value is complex, boolean or not a
            number, negative, non-finite or larger than the one before it.
    """
    values = _stage_values(schedule, n_stages)
    if values.ndim != 1:
        raise ValueError(f"the schedule must give one scalar per stage; got shape {values.shape}.")
    if not np.all(np.isfinite(values)):
        raise ValueError("the schedule gives NaN or inf variances; every stage needs sigma2 >= 0.")
    if np.any(values < 0):
        bad = int(np.argmax(values < 0))
        raise ValueError(f"the schedule gives sigma2 = {values[bad]} < 0 at stage {bad}.")
    rises = np.nonzero(np.diff(values) > 0)[0]
    if rises.size:
        i = int(rises[0])
        raise ValueError(
            "annealing needs a non-increasing schedule; sigma2 rises from "
            f"{values[i]} at stage {i} to {values[i + 1]} at stage {i + 1}."
        )
    return values


def count_distinct(means: jax.Array, tol: jax.Array) -> jax.Array:
    """The number of distinct centres: groups of means linked by distances <= tol.

    Two means closer than ``tol`` belong to one centre, and the relation is closed transitively
    (connected components of the "closer than tol" graph), so the count does not depend on the
    order of the means. The relation is decided for every finite mean and tol without squaring
    them (:func:`~gmmlimit._distance.within_distance`): squared distances of means near 1e-160
    (float64) or 1e-20 (float32) underflowed to 0 and linked means tol apart, those near 1e200
    or 1e30 overflowed.

    Args:
        means: (K, D) finite means, float32 or float64.
        tol: () distance tolerance >= 0 (cast to the means' dtype).

    Returns:
        () int32 number of groups, between 1 and K.
    """
    k = means.shape[0]
    reach = within_distance(means, tol)
    for _ in range(max(1, math.ceil(math.log2(max(k, 2))))):
        reach = reach | (reach.astype(jnp.int32) @ reach.astype(jnp.int32) > 0)
    first = jnp.argmax(reach, axis=1)  # lowest index of each mean's group
    return jnp.sum(first == jnp.arange(k)).astype(jnp.int32)


@with_float64_scope
def anneal(
    X: Any,
    schedule: Schedule,
    *,
    key: jax.Array,
    k: int,
    n_stages: int | None = None,
    init_means: Any = None,
    max_iter: int = 100,
    tol: float | None = None,
    perturbation: float = 1e-4,
    merge_tol: float = 1e-2,
    weights: Any = None,
    block_size: int | None = None,
) -> AnnealResult:
    """Deterministic annealing: EM along a decreasing sigma2 schedule, then K-means.

    Stage s (s = 0..S-1) adds ``perturbation * scale * N(0, I)`` noise (from
    ``jax.random.fold_in(key, s)``) to the previous stage's means and runs EM at sigma2_s with the
    core driver; a final stage runs K-means (sigma2 = 0) from the last EM means, unperturbed.
    The noise breaks the symmetry of coinciding means, so a group of means splits as soon as
    the variance drops below the critical value of its cluster; it is tiny, so it changes nothing
    else. Changing the schedule's values (not its length) never recompiles.

    Data whose largest magnitude lies outside the dtype's scale window are computed as
    ``X / 2^e`` with the schedule ``/ 4^e`` (and weights past the window ``/ 2^w``), exact powers
    of two, as :func:`gmmlimit.em` and :func:`gmmlimit.kmeans` do; the path is mapped back
    (means and scale x 2^e, distortions x 4^e 2^w, log-likelihoods shifted), so labels, counts
    and means are those of the same data at unit scale.

    Args:
        X: (N, D) data, float32 or float64.
        schedule: the variances: an optax schedule or any callable of the stage index (then
            ``n_stages`` is required) or a 1-D array; non-increasing and >= 0.
        key: a ``jax.random`` key for the symmetric-breaking perturbations.
        k: the number of means.
        n_stages: the number of schedule stages (for a callable schedule).
        init_means: optional (k, D) starting means; default all k at the (weighted) data mean,
            the collapsed fixed point where annealing starts.
        max_iter: EM iterations per stage (the K-means stage stops earlier once no label changes).
        tol: per-stage stopping tolerance on the relative log-likelihood gain. The default None
            runs every EM stage for exactly ``max_iter`` iterations: near a bifurcation the gain
            from the growing perturbation is far below any tolerance (critical slowing down), and
            stopping early would freeze the means at the unstable collapsed point.
        perturbation: noise standard deviation relative to the data scale sqrt(trace C); a
            finite number >= 0 representable in X's dtype.
        merge_tol: distance, relative to the data scale, below which means count as one centre;
            a finite number >= 0 representable in X's dtype.
        weights: optional (N,) non-negative sample weights (relative: only their ratios matter).
        block_size: rows per streamed E-step block; None (default) takes the default device's
            (:func:`gmmlimit.scale.default_block_size`).

    Returns:
        An :class:`AnnealResult` (S + 1 stages) in X's dtype.

    Raises:
        ValueError: on invalid data, schedule, key, k, means or options; on a perturbation or
            merge_tol that X's dtype cannot hold; on a schedule value > 0 that underflows once
            divided by 4^e for data past the scale window (at the data's scale it is 0).
    """
    X = as_data(X)
    check_key(key)
    k = check_k(k, X.shape[0])
    values = schedule_values(schedule, n_stages)
    sigma2 = check_sigma2(values, X.dtype, name="schedule", scalar=False)
    w, weight_exponent = relative_weights(weights, X.shape[0], X.dtype)
    init = None
    if init_means is not None:
        init = check_means(init_means, X, name="init_means", for_fit=True)
        if init.shape[0] != k:
            raise ValueError(f"init_means has {init.shape[0]} rows but k={k}.")
    max_iter = check_max_iter(max_iter)
    block_size = check_block_size(block_size, X.shape[0], k, X.shape[1])
    # A negative tolerance never fires: EM's log-likelihood gain is never below -|l|.
    tol_value = -1.0 if tol is None else check_tol(tol)
    perturbation_value = jnp.asarray(
        check_scalar(perturbation, "perturbation", dtype=X.dtype), X.dtype
    )
    merge_tol_value = jnp.asarray(check_scalar(merge_tol, "merge_tol", dtype=X.dtype), X.dtype)
    # Data past the dtype's scale window are computed as X / 2^e, means / 2^e, sigma2 / 4^e and
    # weights / 2^w (exact powers of two: the same path, labels and counts) and mapped back.
    # Rows far from the origin are first translated by an exact offset (_offset). Traced data:
    # the same map on the device (a stage that underflows there runs as the hard limit).
    if is_traced(X):
        scale = traced_scale(X, X[:0] if init is None else init, weight_exponent)
        Xs, scaled = scale.data_of(X), scale.sigma2(sigma2)
        init = None if init is None else scale.data_of(init)
    else:
        offset = offset_of(X)
        moved = translate(X, offset)
        if init is not None:
            init = translate(init, offset)
        exponent = scale_exponent(moved) if init is None else scale_exponent(moved, init)
        scale = Scale(exponent, weight_exponent, offset_tuple(offset))
        Xs, scaled = exact_ldexp(moved, -scale.data), sigma2
        if scale.data:
            scaled = scale.sigma2(sigma2)
            _check_scaled_schedule(values, scaled, scale)
            if init is not None:
                init = exact_ldexp(init, -scale.data)
    if init is None:
        centre = jnp.matmul(w, Xs, precision=jax.lax.Precision.HIGHEST) / jnp.sum(w)
        init = jnp.broadcast_to(centre, (k, X.shape[1]))
    result = _anneal_compiled(
        Xs,
        w,
        scaled,
        init,
        key,
        jnp.asarray(tol_value, X.dtype),
        perturbation_value,
        merge_tol_value,
        max_iter,
        history=history_length(max_iter),
        block_size=block_size,
    )
    if scale.identity:
        return result
    if not scale.concrete:  # a static Scale is one of concrete data and weights
        return _path_scaled_back(result, sigma2, jnp.sum(w), scale)
    return _anneal_scaled_back(result, sigma2, jnp.sum(w), scale=scale)


def _check_scaled_schedule(values: np.ndarray, scaled: jax.Array, scale: Scale) -> None:
    """Refuse a schedule variance > 0 that underflows once divided by 4^scale.data.

    Raises:
        ValueError: naming the stage, as :func:`gmmlimit._rescale.check_scaled_sigma2`.
    """
    for stage, (value, s) in enumerate(zip(values, np.asarray(scaled), strict=True)):
        try:
            check_scaled_sigma2(value, s, scale)
        except ValueError as error:
            raise ValueError(f"schedule stage {stage}: {error}") from None


def _path_scaled_back(
    result: AnnealResult, sigma2: jax.Array, total_weight: jax.Array, scale: Scale
) -> AnnealResult:
    """The path of the rescaled problem as the path of the original one (one small program).

    Args:
        result: the path computed on X / 2^scale.data, sigma2 / 4^scale.data and the weights
            / 2^scale.weight.
        sigma2: (S,) the schedule as given (in X's dtype).
        total_weight: () the sum of the scaled weights.
        scale: the rescaling (static: data past the window are rare, and one problem's
            exponents do not change from call to call).

    Returns:
        The :class:`AnnealResult` of the original problem: the schedule as given, means and
        scale x 2^e, distortions x 4^e 2^w, log-likelihoods as :meth:`Scale.log_likelihood`.
    """
    dtype = result.means.dtype
    stages = jnp.concatenate([sigma2, jnp.zeros((1,), dtype)])
    positive = (stages > 0) & is_soft(result.sigma2)  # (a traced map's stage may underflow)
    soft = scale.log_likelihood(
        result.log_likelihood,
        jnp.where(positive, stages, 1.0),
        jnp.where(positive, result.sigma2, 1.0),
        jnp.asarray(total_weight, dtype),
        result.means.shape[-1],
    )
    return result._replace(
        sigma2=stages,
        means=scale.means_back(result.means),
        log_likelihood=jnp.where(positive, soft, result.log_likelihood).astype(dtype),
        distortion=scale.distortion(result.distortion).astype(dtype),
        scale=jnp.ldexp(result.scale, scale.data).astype(dtype),
    )


_anneal_scaled_back = jax.jit(_path_scaled_back, static_argnames=("scale",))
"""Compiled :func:`_path_scaled_back` of concrete data (the map static: one small program)."""


@partial(jax.jit, static_argnames=("history", "block_size"))
def _anneal_compiled(
    X: jax.Array,
    w: jax.Array,
    sigma2: jax.Array,
    init: jax.Array,
    key: jax.Array,
    tol: jax.Array,
    perturbation: jax.Array,
    merge_tol: jax.Array,
    max_iter: jax.Array,
    *,
    history: int,
    block_size: int,
) -> AnnealResult:
    """The annealing path as one compiled scan (inputs already validated).

    ``max_iter`` is traced and only the stages' history length is static
    (:func:`gmmlimit._driver.history_length`), so paths that differ only in ``max_iter`` within
    one length share a program, as fits do.
    """
    dtype = X.dtype
    total = jnp.sum(w)
    centred = X - jnp.matmul(w, X, precision=jax.lax.Precision.HIGHEST) / total
    scale = jnp.sqrt(jnp.sum(w[:, None] * centred * centred) / total)
    stages = jnp.concatenate([sigma2, jnp.zeros((1,), dtype)])
    blocks = make_blocks(X, w, block_size)

    def stage(
        carry: tuple[jax.Array, jax.Array], inputs: tuple[jax.Array, jax.Array]
    ) -> tuple[tuple[jax.Array, jax.Array], Any]:
        means, _ = carry
        s2, index = inputs
        noise = jax.random.normal(jax.random.fold_in(key, index), means.shape, dtype)
        means = means + jnp.where(s2 > 0, perturbation * scale, 0.0) * noise
        fit = fit_program(
            isotropic,
            X,
            w,
            IsotropicParams(means, s2),
            tol,
            max_iter,
            history=history,
            block_size=block_size,
        )
        params = fit.params
        stats, _, _ = e_pass(isotropic, params, blocks)
        positive = s2 > 0
        safe = IsotropicParams(params.means, jnp.where(positive, s2, 1.0))
        at_zero = jnp.where(stats.distortion > 0, -jnp.inf, jnp.inf)
        log_lik = jnp.where(positive, log_likelihood_from_stats(safe, stats), at_zero)
        out = (
            params.means,
            log_lik.astype(dtype),
            stats.distortion.astype(dtype),
            count_distinct(params.means, merge_tol * scale),
            fit.n_iter,
        )
        return (params.means, fit.labels), out

    indices = jnp.arange(stages.shape[0], dtype=jnp.int32)
    labels0 = jnp.zeros((X.shape[0],), jnp.int32)
    (_, labels), (means, log_lik, distortion, n_distinct, n_iter) = lax.scan(
        stage, (init.astype(dtype), labels0), (stages, indices)
    )
    return AnnealResult(
        sigma2=stages,
        means=means,
        log_likelihood=log_lik,
        distortion=distortion,
        n_distinct=n_distinct,
        n_iter=n_iter,
        labels=labels,
        scale=scale.astype(dtype),
    )


def split_points(result: AnnealResult) -> np.ndarray:
    """Where the number of distinct centres grows along an annealing path.

    Args:
        result: an :class:`AnnealResult`.

    Returns:
        (M, 4) float64 NumPy array, one row per increase of the distinct-centre count among the
        EM stages (the final K-means stage is left out): ``(sigma2_before, sigma2_after,
        count_before, count_after)``; the split happened between the two variances.
    """
    sigma2 = np.asarray(result.sigma2, dtype=np.float64)[:-1]
    count = np.asarray(result.n_distinct)[:-1]
    rows = [
        (sigma2[i], sigma2[i + 1], count[i], count[i + 1])
        for i in range(count.size - 1)
        if count[i + 1] > count[i]
    ]
    return np.asarray(rows, dtype=np.float64).reshape(-1, 4)


class AnnealPath(NamedTuple):
    """The annealing path of any variant: one entry per stage (S schedule stages, then hard).

    Attributes:
        temperature: (S + 1,) the temperature of each stage in the variant's units; the last is
            the hard limit (0 for a variance, inf for an inverse temperature).
        means: (S + 1, K, D) component locations at the end of each stage.
        objective: (S + 1,) the objective (higher is better) at each stage's end: the free
            energy at the stage's temperature, -J at the hard stage.
        distortion: (S + 1,) the hard objective J at each stage's end.
        n_distinct: (S + 1,) int32 number of distinct locations (closer than
            ``merge_tol * scale`` are one, transitively).
        n_iter: (S + 1,) int32 iterations run in each stage.
        converged: (S + 1,) bool, whether each stage's stopping rule fired.
        labels: (N,) int32 labels of the final (hard) stage.
        params: the parameters at the end of each stage, stacked (a leading axis S + 1 on every
            leaf); stage s started from stage s - 1's at its own temperature.
        scale: () the data scale sqrt(trace C).
    """

    temperature: jax.Array
    means: jax.Array
    objective: jax.Array
    distortion: jax.Array
    n_distinct: jax.Array
    n_iter: jax.Array
    converged: jax.Array
    labels: jax.Array
    params: Any
    scale: jax.Array


@with_float64_scope
def anneal_variant(
    variant: Variant,
    X: Any,
    schedule: Schedule,
    *,
    key: jax.Array | None = None,
    k: int | None = None,
    init_params: Params = None,
    n_stages: int | None = None,
    max_iter: int = 100,
    tol: float = 0.0,
    merge_tol: float = 1e-2,
    weights: Any = None,
    block_size: int | None = None,
) -> AnnealPath:
    """Annealing for any variant: fits along a temperature schedule, the hard limit last.

    Stage s runs the variant's fit at the schedule's s-th temperature, warm-started from the
    parameters stage s - 1 ended with (their temperature replaced); a last stage runs at the hard
    limit. The starting parameters come from ``init_params`` or the variant's
    ``init(key, X, k)``; no perturbation is added (the isotropic headline :func:`anneal` starts
    collapsed and perturbs instead), so a schedule that starts hot enough to merge the
    components keeps them together but for rounding (docs/annealing.md): start it near the
    temperature where they part. Each stage is a call
    of the one compiled fit, so no schedule (values or length) ever recompiles.

    Args:
        variant: a variant with ``temperature`` (and ``init`` unless ``init_params`` is given).
        X: (N, D) data.
        schedule: temperatures in the variant's own units moving toward its hard limit
            (non-decreasing betas, non-increasing variances), an array or a callable of the
            stage index with ``n_stages``; the hard limit itself is added as the last stage.
            Each value must be a temperature of X's dtype (a finite beta that overflows it is
            refused, not run as the hard limit).
        key: a ``jax.random`` key for ``variant.init`` (with ``k``); for data past the scale
            window ``init`` draws from X / 2^e, as :func:`gmmlimit.restarts` does.
        k: the number of components (with ``key``).
        init_params: starting parameters instead of ``init``.
        n_stages: the number of stages of a callable schedule (with an array: optional, and
            then its length).
        max_iter: iterations per stage.
        tol: per-stage stopping tolerance (:func:`gmmlimit.fit`'s).
        merge_tol: distance, relative to the data scale, below which locations count as one;
            a finite number >= 0 representable in X's dtype.
        weights: optional (N,) sample weights.
        block_size: rows per streamed E-step block; None (default) takes the default device's
            (:func:`gmmlimit.scale.default_block_size`).

    Returns:
        An :class:`AnnealPath` in X's dtype.

    Raises:
        ValueError: on invalid data, schedule (not moving toward the hard limit, or invalid for
            the variant), key, k, parameters or options (a merge_tol that X's dtype cannot
            hold included); on an ``init`` that returns a number of components other than k.
    """
    variant = check_variant(variant, needs=("temperature",))
    temp = variant.temperature
    X = as_data(X)
    if variant.check_data is not None and not is_traced(X):  # traced: the caller's to check
        variant.check_data(np.asarray(X))
    values = _variant_schedule(schedule, n_stages, variant, X.dtype)
    stages = np.append(values, temp.hard)
    if init_params is None:
        if key is None or k is None:
            raise ValueError("anneal_variant needs init_params, or key and k for variant.init.")
        check_key(key)
        k = check_k(k, X.shape[0])
        check_variant(variant, needs=("init",))
        # Data past the scale window (a variant that declares its scaling): the start is drawn
        # from X / 2^e, as gl.restarts draws its starts, and stays there (its parameters, a
        # variance of the whole data's spread, may not be held in the data's units); each
        # stage's temperature is given in the data's units and mapped to X / 2^e.
        data_map = variant_fit_map(variant, X)
        Xs = data_map.data(X)
        drawn = variant.init(key, Xs, k)
        check_init_components(variant, None, np.shape(init_means(variant, None, drawn)), k)
        # every stage's parameters are valid for the variant (eager, before any compiled code)
        temperatures = [
            scaled_temperature(variant, drawn, t, data_map.exponent, X.dtype) for t in stages
        ]
        checked = [validated_at(variant, Xs, drawn, t) for t in temperatures]
        scaled_start = checked[0]
    elif key is not None or k is not None:
        raise ValueError("pass either init_params or (key, k), not both.")
    else:
        checked = [validated_at(variant, X, init_params, t) for t in stages]
        # Data past the scale window: every stage is fit on X / 2^e, its temperature set in the
        # data's units, and mapped back (_variant_scale).
        data_map = variant_fit_map(variant, X, variant.means(checked[0]))
        Xs = data_map.data(X)
        scaled_start = None
    start = checked[0]
    w = weights_or_ones(weights, X.shape[0], X.dtype)
    max_iter = check_max_iter(max_iter)
    k_start = variant.means(start).shape[-2]
    block_size = check_block_size(block_size, X.shape[0], k_start, X.shape[1])
    tol = check_tol(tol)
    merge_tol = check_scalar(merge_tol, "merge_tol", dtype=X.dtype)
    # A loop of calls to the one compiled fit (the temperature is a traced leaf): no program of
    # its own to compile, whatever the schedule's length, and the same program gl.fit runs.
    fits, scaled_fits = [], []
    for stage, t in enumerate(stages):
        value = jnp.asarray(t, X.dtype)
        if stage == 0 and scaled_start is not None:
            scaled = scaled_start  # drawn from X / 2^e, at the first temperature mapped there
        elif stage == 0:
            scaled = variant_params(variant, with_temperature(variant, start, value), data_map)
        else:
            # warm start from the last fit as computed, on (X - offset) / 2^e (mapped back and
            # moved again, nearly coincident locations near a far offset would round to one),
            # at this stage's temperature mapped there
            last = scaled_fits[-1].params
            moved = scaled_temperature(variant, last, value, data_map.exponent, X.dtype)
            scaled = with_temperature(variant, last, moved)
        fit = fit_compiled(variant, Xs, w, scaled, tol, max_iter=max_iter, block_size=block_size)
        scaled_fits.append(fit._replace(labels=None))
        fits.append(variant_result(variant, fit, data_map, lambda: jnp.sum(w)))
    # the distinct-location counts and the data scale at (X - offset) / 2^e, where no square
    # overflows or cancels
    scaled_stack, n_distinct, scale = _path_summary(
        scaled_fits, Xs, w, jnp.asarray(merge_tol, X.dtype)
    )
    stacked = scaled_stack
    if not data_map.identity:
        stacked = jax.tree.map(lambda *a: jnp.stack(a), *[f._replace(labels=None) for f in fits])
        scale = jnp.ldexp(scale, data_map.exponent)
    return AnnealPath(
        temperature=jnp.asarray(stages, X.dtype),
        means=stacked.means,
        objective=stacked.objective,
        distortion=stacked.distortion,
        n_distinct=n_distinct,
        n_iter=stacked.n_iter,
        converged=stacked.converged,
        labels=fits[-1].labels,
        params=stacked.params,
        scale=scale,
    )


@jax.jit
def _path_summary(
    fits: list, X: jax.Array, w: jax.Array, merge_tol: jax.Array
) -> tuple[Any, jax.Array, jax.Array]:
    """The stages' results stacked, their distinct-location counts and the data scale."""
    total = jnp.sum(w)
    centred = X - jnp.matmul(w, X, precision=jax.lax.Precision.HIGHEST) / total
    scale = jnp.sqrt(jnp.sum(w[:, None] * centred * centred) / total).astype(X.dtype)
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *fits)
    n_distinct = jax.vmap(lambda m: count_distinct(m, merge_tol * scale))(stacked.means)
    return stacked, n_distinct, scale


def _variant_schedule(
    schedule: Schedule, n_stages: int | None, variant: Variant, dtype: Any
) -> np.ndarray:
    """The schedule's values as float64, checked to move toward the hard limit.

    Every value is checked as a temperature of ``dtype`` before anything casts it
    (:func:`gmmlimit._variant.check_temperature`): a finite beta past the dtype's range would
    otherwise become the hard limit silently.

    Raises:
        ValueError: if the schedule is not real numbers, not 1-D and non-empty, holds NaN,
            moves away from the hard limit, or holds a value that is not a temperature of the
            variant in ``dtype``.
    """
    temp = variant.temperature
    values = _stage_values(schedule, n_stages)
    if values.ndim != 1 or values.size < 1:
        raise ValueError(f"the schedule must be 1-D and non-empty; got shape {values.shape}.")
    if np.any(np.isnan(values)):
        raise ValueError(f"the schedule holds NaN {temp.name} values.")
    back = np.nonzero(temp.colder(values[1:], values[:-1]))[0]
    if back.size:
        i = int(back[0])
        raise ValueError(
            f"an annealing schedule moves toward the hard limit {temp.name}={temp.hard}; "
            f"{temp.name} goes from {values[i]} at stage {i} to {values[i + 1]} at stage {i + 1}."
        )
    for stage, value in enumerate(values):
        try:
            check_temperature(variant, float(value), dtype)
        except ValueError as error:
            raise ValueError(f"schedule stage {stage}: {error}") from None
    return values
