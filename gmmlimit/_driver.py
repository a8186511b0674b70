"""The one fit driver: E-step -> sufficient statistics -> M-step, for every variant.

Rows are streamed in blocks with ``lax.scan``; only O(block * K + K * D) floating memory is live
during an E-step (plus the (N,) int32 labels used by the hard stopping rule). The loop is a
``lax.while_loop`` with a fixed-size history buffer, so the whole fit is one compiled program that
``vmap`` batches over restarts, variances or data sets.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from . import _native
from ._block_size import DEFAULT_BLOCK_SIZE, default_platform
from ._variant import (
    FarPoints,
    Params,
    Stats,
    Variant,
    check_same_form,
    check_stats,
    checked_e_step,
    checked_is_hard,
    checked_m_step,
    checked_means,
    checked_scalar,
    checked_sufficient_stats,
)

__all__ = [
    "Blocks",
    "FitResult",
    "block_pass",
    "e_pass",
    "em_iteration",
    "fit_compiled",
    "fit_loop",
    "fit_objective",
    "make_blocks",
    "stop_rule",
]


class FitResult(NamedTuple):
    """The result of a fit.

    Attributes:
        means: (K, D) final component means.
        labels: (N,) int32 labels from a final E-step on the returned parameters.
        n_iter: () int32 number of E+M iterations run.
        converged: () bool, True if the stopping rule (:func:`stop_rule`) fired before
            max_iter.
        objective: () the objective at the returned parameters, higher is better at every
            temperature: the log-likelihood (or tempered free energy) of a soft fit, -J at the
            hard limit.
        history: (max_iter,) the objective before each iteration's M-step; entries from n_iter on
            repeat the final objective.
        params: the full parameter pytree of the variant (for the isotropic model
            ``IsotropicParams(means, sigma2)``).
        distortion: () the hard objective J (K-means inertia for the isotropic model: the summed
            weighted divergence of every row to its assigned component) at the returned
            parameters, at every temperature.
    """

    means: jax.Array
    labels: jax.Array
    n_iter: jax.Array
    converged: jax.Array
    objective: jax.Array
    history: jax.Array
    params: Any
    distortion: Any = None


class Blocks(NamedTuple):
    """Rows padded to a whole number of blocks.

    Attributes:
        x: (n_blocks, B, D) rows; padding rows are copies of the first row, so a variant never
            sees a value that is not data.
        weight: (n_blocks, B) sample weights (padding rows have weight 0).
        valid: (n_blocks, B) bool, False on padding rows.
        rows: (N, D) the rows without their padding (``x``'s first N rows), or None. A variant's
            engine reads these in place (:func:`engine_rows`), so that a compiled fit whose
            passes all go to the CPU kernels never builds ``x``: XLA leaves out the copy into
            padded blocks (at (156250, 64) float32, about 35 ms of fresh memory a fit).
    """

    x: jax.Array
    weight: jax.Array
    valid: jax.Array
    rows: jax.Array | None = None


def pad_rows(rows: jax.Array, n_blocks: int, block_size: int) -> jax.Array:
    """(N, D) rows as (n_blocks, B, D) blocks, padded with copies of the first row.

    Args:
        rows: (N, D) rows, 1 <= N <= n_blocks * block_size.
        n_blocks: the number of blocks.
        block_size: rows per block, B.

    Returns:
        (n_blocks, B, D) blocks whose first N rows are ``rows``.
    """
    n, d = rows.shape
    pad = n_blocks * block_size - n
    if pad:
        rows = jnp.concatenate([rows, jnp.broadcast_to(rows[:1], (pad, d))])
    return rows.reshape(n_blocks, block_size, d)


def as_blocks(x: jax.Array, w_blocks: jax.Array) -> jax.Array:
    """An engine's data as (n, B, D) blocks: ``x`` itself, or its (M, D) rows padded.

    Args:
        x: (n, B, D) blocks, or (M, D) the blocks' first rows (:func:`engine_rows`).
        w_blocks: (n, B) the blocks' weights.

    Returns:
        (n, B, D) blocks (a copy only where ``x`` is rows and M < n B).
    """
    return x if x.ndim == 3 else pad_rows(x, *w_blocks.shape)


def engine_rows(blocks: Blocks) -> jax.Array:
    """What a variant's engine reads: the rows in place where the CPU kernels will, else ``x``.

    An engine's ``pass_`` (and its skipping pass) takes either form (see
    :class:`~gmmlimit._variant.Engine`): the CPU kernels read the rows as they lie, treating the
    blocks' padding as weightless repeats of row 0 (:func:`gmmlimit._native.kernel_rows`), and
    the JAX passes pad them (:func:`as_blocks`) inside their own branch. Where no kernel runs
    (another platform, no compiler, a dtype the kernels do not take) the padded ``x`` is passed:
    XLA hoists its one copy out of the fit's loop, where the JAX passes' own padding was hoisted
    twice (the loop's and the final pass's).
    """
    if blocks.rows is None or default_platform() != "cpu":
        return blocks.x
    return blocks.rows if _native.supports(blocks.rows.dtype, 1) else blocks.x


def make_blocks(X: jax.Array, weights: jax.Array, block_size: int) -> Blocks:
    """Pad and reshape (N, D) rows into (n_blocks, B, D) blocks.

    Args:
        X: (N, D) data.
        weights: (N,) sample weights.
        block_size: rows per block; clipped to N.

    Returns:
        The :class:`Blocks`.
    """
    n = X.shape[0]
    b = min(block_size, n)
    n_blocks = -(-n // b)
    pad = n_blocks * b - n
    valid = jnp.ones((n,), dtype=bool)
    if pad:
        weights = jnp.concatenate([weights, jnp.zeros((pad,), weights.dtype)])
        valid = jnp.concatenate([valid, jnp.zeros((pad,), bool)])
    return Blocks(
        x=pad_rows(X, n_blocks, b),
        weight=weights.reshape(n_blocks, b),
        valid=valid.reshape(n_blocks, b),
        rows=X,
    )


def block_pass(
    variant: Variant, params: Params, x: jax.Array, w: jax.Array
) -> tuple[Stats, jax.Array, jax.Array]:
    """The E-step and sufficient statistics of one block of rows.

    Uses the variant's engine when it has one, else ``e_step`` then ``sufficient_stats``; the
    forms of what they return are checked while traced (``_variant.checked_e_step``,
    ``checked_sufficient_stats``).

    Args:
        variant: the mixture variant.
        params: current parameters.
        x: (B, D) rows.
        w: (B,) sample weights.

    Returns:
        ``(stats, labels, distortion)``: the block's statistics, (B,) int32 labels and (B,)
        per-row distortion.
    """
    if variant.engine is not None:
        stats, labels, distortion = variant.engine.block(params, x, w)
        k = checked_means(variant, params, x.shape[1], x.dtype).shape[0]
        check_stats(variant, stats, k, x.dtype)
        return stats, labels, distortion
    estep = checked_e_step(variant, params, x)
    stats = checked_sufficient_stats(variant, params, x, w, estep)
    return stats, estep.labels, estep.distortion


class _Farthest(NamedTuple):
    """Running top-K of the per-row distortion (for empty-cluster relocation)."""

    value: jax.Array  # (K,) largest distortions, decreasing; -inf for unfilled slots
    index: jax.Array  # (K,) int32 flat row indices


def e_pass(
    variant: Variant, params: Params, blocks: Blocks, *, track_farthest: bool = False
) -> tuple[Stats, jax.Array, _Farthest | None]:
    """One streamed E-step over all blocks.

    Args:
        variant: the mixture variant.
        params: current parameters.
        blocks: the padded data.
        track_farthest: also keep the K rows with the largest distortion (a top-K merged block
            by block, O(B log K) per block, negligible beside the O(B K D) distances).

    Returns:
        ``(stats, labels, farthest)``: statistics summed over all rows, (n_blocks * B,) int32
        labels, and the running top-K (None unless ``track_farthest``).
    """
    n_blocks, b, _ = blocks.x.shape
    if variant.engine is not None:
        return _whole_pass(variant, params, blocks, track_farthest)
    block_stats = partial(block_pass, variant, params)
    shapes = jax.eval_shape(block_stats, blocks.x[0], blocks.weight[0])
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes[0])
    k = shapes[0].counts.shape[0]
    far0 = _Farthest(jnp.full((k,), -jnp.inf, blocks.x.dtype), jnp.zeros((k,), jnp.int32))

    def body(
        carry: tuple[Stats, _Farthest], block: tuple[jax.Array, jax.Array, jax.Array, jax.Array]
    ) -> tuple[tuple[Stats, _Farthest], jax.Array]:
        acc, far = carry
        x, w, valid, offset = block
        stats, labels, distortion = block_stats(x, w)
        acc = jax.tree.map(jnp.add, acc, stats)
        if track_farthest:
            value = jnp.where(valid, distortion, -jnp.inf)
            index = offset + jnp.arange(b, dtype=jnp.int32)
            all_value = jnp.concatenate([far.value, value])
            all_index = jnp.concatenate([far.index, index])
            top, pos = lax.top_k(all_value, k)
            far = _Farthest(top, all_index[pos])
        return (acc, far), labels

    offsets = jnp.arange(n_blocks, dtype=jnp.int32) * b
    (stats, far), labels = lax.scan(
        body, (zeros, far0), (blocks.x, blocks.weight, blocks.valid, offsets)
    )
    return stats, labels.reshape(-1), (far if track_farthest else None)


def _whole_pass(
    variant: Variant, params: Params, blocks: Blocks, track_farthest: bool
) -> tuple[Stats, jax.Array, _Farthest | None]:
    """:func:`e_pass` through the variant's engine; the farthest rows in one top-K.

    One top-K over all rows picks the same rows as the block-by-block merge: both keep the K
    largest distortions, ties going to the lowest row index (unfilled slots hold -inf, index 0).
    The farthest rows are read only when a component is empty, so the top-K runs only then
    (a float64 top-K over a million rows costs as much as a K-means iteration on XLA:CPU); a
    component empty over all devices is empty on each, so a sharded pass computes it wherever it
    is needed.
    """
    stats, labels, distortion = variant.engine.pass_(params, engine_rows(blocks), blocks.weight)
    far = _farthest(variant, params, stats, distortion, blocks) if track_farthest else None
    return stats, labels.reshape(-1), far


def _top_rows(distortion: jax.Array, valid: jax.Array, k: int) -> _Farthest:
    """The K rows of largest distortion over (n_blocks, B) rows (padding rows excluded)."""
    value = jnp.where(valid, distortion, -jnp.inf).reshape(-1)
    all_value = jnp.concatenate([jnp.full((k,), -jnp.inf, value.dtype), value])
    all_index = jnp.concatenate(
        [jnp.zeros((k,), jnp.int32), jnp.arange(value.shape[0], dtype=jnp.int32)]
    )
    top, pos = lax.top_k(all_value, k)
    return _Farthest(top, all_index[pos])


def _no_rows(k: int, dtype: Any) -> _Farthest:
    return _Farthest(jnp.full((k,), -jnp.inf, dtype), jnp.zeros((k,), jnp.int32))


@jax.custom_batching.custom_vmap
def _farthest_if(
    needed: jax.Array, counts: jax.Array, distortion: jax.Array, valid: jax.Array
) -> _Farthest:
    """:func:`_top_rows` when ``needed``, else unfilled slots (K = ``counts``' length).

    Under ``vmap`` (restarts, a sigma2 sweep) the condition is taken over all lanes, so the
    top-K runs only when some lane needs it; a plain ``vmap`` would turn the ``cond`` into a
    ``select`` and sort every row of every lane in every iteration (in float64 that cost several
    fits per lane of a sweep).
    """
    k = counts.shape[0]
    return lax.cond(
        needed, lambda: _top_rows(distortion, valid, k), lambda: _no_rows(k, distortion.dtype)
    )


@_farthest_if.def_vmap
def _farthest_if_rule(
    axis_size: int,
    in_batched: tuple[bool, bool, bool, bool],
    needed: jax.Array,
    counts: jax.Array,
    distortion: jax.Array,
    valid: jax.Array,
) -> tuple[_Farthest, _Farthest]:
    k = counts.shape[-1]
    axes = (0 if in_batched[2] else None, 0 if in_batched[3] else None)

    def top() -> _Farthest:
        return jax.vmap(lambda d, v: _top_rows(d, v, k), in_axes=axes, axis_size=axis_size)(
            distortion, valid
        )

    def none() -> _Farthest:
        return jax.vmap(lambda _: _no_rows(k, distortion.dtype))(jnp.arange(axis_size))

    out = lax.cond(jnp.any(needed), top, none)
    return out, _Farthest(True, True)


def _farthest(
    variant: Variant, params: Params, stats: Stats, distortion: jax.Array, blocks: Blocks
) -> _Farthest:
    """The K rows of largest distortion, for a hard fit with an empty component only.

    They have no other use than :func:`_maybe_relocate`. One top-K over all rows picks the same
    rows as the block-by-block merge of :func:`e_pass`.
    """
    needed = checked_is_hard(variant, params) & jnp.any(stats.counts == 0)
    return _farthest_if(needed, stats.counts, distortion, blocks.valid)


def _skipping_pass(
    variant: Variant,
    params: Params,
    blocks: Blocks,
    labels: jax.Array,
    state: Any,
    *,
    track_farthest: bool,
) -> tuple[Stats, jax.Array, _Farthest | None, Any]:
    """:func:`e_pass` through the engine's :class:`~gmmlimit._variant.Skipping` pass.

    Args:
        variant: a variant whose engine has ``skipping``.
        params: current parameters.
        blocks: the padded data.
        labels: (n_blocks * B,) labels of the previous pass (-1 before the first).
        state: the skipping state the previous pass returned.
        track_farthest: also return the K rows of largest distortion.

    Returns:
        ``(stats, labels, farthest, state)``: as :func:`e_pass`, and the new state.
    """
    n_blocks, b = blocks.weight.shape
    stats, labels, distortion, state = variant.engine.skipping.pass_(
        params, engine_rows(blocks), blocks.weight, labels.reshape(n_blocks, b), state
    )
    far = _farthest(variant, params, stats, distortion, blocks) if track_farthest else None
    return stats, labels.reshape(-1), far, state


def relocate_if_empty(
    variant: Variant, params: Params, stats: Stats, points: Callable[[], FarPoints]
) -> Stats:
    """The variant's empty-component relocation, run only in a hard fit with an empty component.

    A conditional, not a select of the relocated and the plain statistics: relocation is a loop
    over the K components, which every iteration ran and then discarded (a K-means iteration at
    (100000, 2, 512) took 9.69 ms with it, 9.36 ms without; docs/benchmarks.md). Under ``vmap``
    the conditional becomes that select again.

    Args:
        variant: a variant with ``relocate``.
        params: the parameters of the E-step.
        stats: its summed statistics.
        points: builds the farthest rows (called only inside the conditional).

    Returns:
        The statistics, relocated where a component is empty.
    """
    need = checked_is_hard(variant, params) & jnp.any(stats.counts == 0)

    def relocated() -> Stats:
        moved = variant.relocate(params, stats, points())
        check_same_form(variant, "relocate", stats, moved, kind="statistics", root="stats")
        return moved

    return lax.cond(need, relocated, lambda: stats)


def _maybe_relocate(
    variant: Variant,
    params: Params,
    stats: Stats,
    labels: jax.Array,
    far: _Farthest | None,
    blocks: Blocks,
) -> Stats:
    """Apply the variant's empty-component relocation when the fit is hard and one is empty."""
    if variant.relocate is None or far is None:
        return stats

    def points() -> FarPoints:
        # The farthest rows are real rows (padding is never among them): read them in place.
        flat_x = blocks.x.reshape(-1, blocks.x.shape[-1]) if blocks.rows is None else blocks.rows
        return FarPoints(
            x=flat_x[far.index],
            weight=blocks.weight.reshape(-1)[far.index],
            label=labels[far.index],
            valid=jnp.isfinite(far.value),
        )

    return relocate_if_empty(variant, params, stats, points)


EPass = Callable[..., tuple[Stats, jax.Array, "_Farthest | None"]]
"""``(variant, params, blocks, *, track_farthest) -> (stats, labels, farthest)``, like
:func:`e_pass`; the sharded driver substitutes one that reduces across devices."""


def em_iteration(
    variant: Variant, params: Params, blocks: Blocks, pass_fn: EPass = e_pass
) -> tuple[Params, Stats, Any]:
    """One E+M iteration.

    Args:
        variant: the mixture variant.
        params: current parameters.
        blocks: the padded data.
        pass_fn: the streamed E-step (default :func:`e_pass`).

    Returns:
        ``(new_params, stats, labels)``: the statistics and labels are those of the E-step at
        ``params`` (before empty-component relocation).
    """
    track = variant.relocate is not None
    stats, labels, far = pass_fn(variant, params, blocks, track_farthest=track)
    moved = _maybe_relocate(variant, params, stats, labels, far, blocks)
    return checked_m_step(variant, params, moved), stats, labels


def _skipping_iteration(
    variant: Variant, params: Params, blocks: Blocks, labels: jax.Array, state: Any
) -> tuple[Params, Stats, jax.Array, Any]:
    """:func:`em_iteration` through the engine's skipping pass (same values, less work)."""
    track = variant.relocate is not None
    stats, labels, far, state = _skipping_pass(
        variant, params, blocks, labels, state, track_farthest=track
    )
    moved = _maybe_relocate(variant, params, stats, labels, far, blocks)
    return checked_m_step(variant, params, moved), stats, labels, state


class _LoopState(NamedTuple):
    params: Params
    labels: jax.Array
    objective: jax.Array
    n_iter: jax.Array
    done: jax.Array
    history: jax.Array
    skip: Any  # the engine's skipping state (None without one)
    finished: jax.Array  # () bool: the last E-step (after the last M-step) has run
    distortion: jax.Array  # () J at the last E-step's parameters


MIN_HISTORY = 32
"""The shortest history buffer a fit compiles with (see :func:`history_length`)."""


_WithHistory = TypeVar("_WithHistory", bound=NamedTuple)


def history_length(max_iter: int) -> int:
    """The length of the history buffer that a fit of up to ``max_iter`` iterations compiles with.

    The next power of two from ``max_iter``, and at least :data:`MIN_HISTORY`: ``max_iter`` is a
    traced argument of the compiled fit, and only this length is static, so fits that differ
    only in ``max_iter`` (1 to 32, 33 to 64, ...) run one compiled program. The returned
    history is cut back to ``max_iter`` entries (:func:`trim_history`).
    """
    return power_of_two_bucket(max_iter, MIN_HISTORY)


def power_of_two_bucket(n: int, minimum: int) -> int:
    """The smallest power of two that is >= ``n`` and >= ``minimum`` (a power of two)."""
    return max(minimum, 1 << max(0, n - 1).bit_length())


def trim_history(result: _WithHistory, max_iter: int) -> _WithHistory:
    """``result`` with its history cut to the first ``max_iter`` entries (of the last axis).

    Any result tuple with a ``history`` field: :class:`FitResult`, DP-means' result.
    """
    if result.history.shape[-1] == max_iter:
        return result
    return result._replace(history=result.history[..., :max_iter])


@partial(jax.jit, static_argnames=("variant", "history", "block_size"))
def fit_program(
    variant: Variant,
    X: jax.Array,
    weights: jax.Array,
    params: Params,
    tol: jax.Array,
    max_iter: jax.Array,
    *,
    history: int,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> FitResult:
    """The compiled fit loop (inputs already validated); :func:`fit_compiled` calls it.

    The stopping rule, checked after each iteration (E-step at theta_{t-1}, M-step to
    theta_t), is :func:`stop_rule`, shared with the out-of-core and sharded loops.

    Args:
        variant: the mixture variant (static).
        X: (N, D) data.
        weights: (N,) non-negative sample weights.
        params: initial parameters.
        tol: the tolerance (traced).
        max_iter: () int, the maximum number of iterations (traced), at most ``history``.
        history: the length of the history buffer (static; :func:`history_length`).
        block_size: rows per E-step block (static).

    Returns:
        The :class:`FitResult`, its history of length ``history``.
    """
    blocks = make_blocks(X, weights, block_size)
    unit, shift_scale = data_spread(X)
    return fit_loop(
        variant, blocks, X.shape[0], params, tol, shift_scale, unit=unit, max_iter=max_iter,
        history=history,
    )  # fmt: skip


def fit_compiled(
    variant: Variant,
    X: jax.Array,
    weights: jax.Array,
    params: Params,
    tol: jax.Array,
    *,
    max_iter: int,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> FitResult:
    """The compiled fit (inputs already validated): :func:`fit_program`, history of max_iter.

    One compiled program serves every ``max_iter`` of the same :func:`history_length` (and
    every tolerance, temperature and start of the same shapes).

    Args:
        variant: the mixture variant.
        X: (N, D) data.
        weights: (N,) non-negative sample weights.
        params: initial parameters.
        tol: the tolerance.
        max_iter: the maximum number of iterations (a Python int).
        block_size: rows per E-step block.

    Returns:
        The :class:`FitResult`.
    """
    # tol as an array of X's dtype, whether it came as a Python float or an array (the loop
    # casts it so anyway): one program for every caller (a weak-typed float would compile another)
    tol = jnp.asarray(tol, X.dtype)
    result = fit_program(
        variant, X, weights, params, tol, max_iter,
        history=history_length(max_iter), block_size=block_size,
    )  # fmt: skip
    return trim_history(result, max_iter)


def fit_objective(variant: Variant, params: Params, stats: Stats) -> jax.Array:
    """The recorded objective, higher is better: the variant's at a soft temperature, -J when hard.

    Args:
        variant: the mixture variant.
        params: the parameters of the E-step.
        stats: its summed statistics (with a ``distortion`` attribute, J).

    Returns:
        Scalar objective.
    """
    objective = checked_scalar(variant, "objective", variant.objective(params, stats))
    return jnp.where(checked_is_hard(variant, params), -stats.distortion, objective)


ROUNDING_ULPS = 256
"""A soft fit's objective may fall by this many ulps of its size and still count as converged."""


def spread_unit(largest: jax.Array) -> jax.Array:
    """The power of two 2^(e - 1) <= ``largest`` < 2^e in which a hard fit measures its shifts.

    The stopping rule compares the centres' squared shift with ``tol`` times the data's spread,
    two squares of the data's size: for data near 1e-25 (float32) both underflow to 0 and for
    data near 1e25 both overflow, so ``0 <= 0`` and ``inf <= inf`` stopped every hard fit of a
    variant without a declared scaling after one iteration. Measured in this unit (an exact
    power of two) both are unit-free, and every comparison within the range is the same.

    Args:
        largest: () the data's largest magnitude (as the fit computes them).

    Returns:
        () the unit, in ``largest``'s dtype; 1 where ``largest`` is 0, subnormal or not finite.
    """
    _, exponent = jnp.frexp(largest)
    normal = (largest >= jnp.finfo(largest.dtype).tiny) & jnp.isfinite(largest)
    return jnp.where(normal, jnp.ldexp(jnp.ones_like(largest), exponent - 1), 1.0)


def host_spread_unit(largest: float, dtype: Any) -> float:
    """:func:`spread_unit` on the host, for the streamed fits (``largest`` a Python float)."""
    if not (np.finfo(dtype).tiny <= largest < math.inf):
        return 1.0
    return math.ldexp(1.0, math.frexp(largest)[1] - 1)


def data_spread(X: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The unit of :func:`spread_unit` and the data's mean per-feature variance in that unit.

    Args:
        X: (N, D) data.

    Returns:
        ``(unit, spread)``: () and (), ``spread = mean_d var(X[:, d] / unit)``.
    """
    unit = spread_unit(jnp.max(jnp.abs(X)))
    return unit, jnp.mean(jnp.var(X / unit, axis=0))


def centre_shift(variant: Variant, new: Params, old: Params, unit: Any) -> jax.Array:
    """The total squared move of the component locations, in the unit of :func:`spread_unit`."""
    return jnp.sum(((variant.means(new) - variant.means(old)) / unit) ** 2)


def stop_rule(
    *,
    hard: jax.Array,
    labels_same: jax.Array,
    shift: jax.Array,
    shift_scale: jax.Array,
    objective: jax.Array,
    previous: jax.Array,
    n_iter: jax.Array,
    tol: jax.Array,
) -> jax.Array:
    """Whether a fit has converged after one iteration (shared by every fit loop).

    The rule, and what ``converged=True`` promises:

    * hard fits (the partition rule): no label changed in the last E-step (the partition is a
      fixed point of the iteration), or the total squared centre shift of the last M-step is
      <= ``tol * shift_scale`` (scikit-learn's scaling of tol);
    * soft fits, from the second iteration on: the last iteration changed the objective by at
      most ``tol`` relative, ``-max(tol, 256 eps) |f| <= f_t - f_{t-1} <= tol |f|``. A fall of
      the objective larger than rounding is not convergence (an M-step that is not an exact
      maximiser, e.g. under a variance floor, can lower it): the fit goes on;
    * soft fits whose objective is not finite (a log-likelihood of -inf where a row's density
      underflows in the dtype) cannot measure progress on it: they stop on the partition rule;
    * a NaN objective never converges: validated inputs give none, so it comes from parameters
      that could not be checked eagerly (an invalid temperature traced in a user's ``vmap``,
      e.g. beta = 0), and the fit runs to ``max_iter`` with ``converged=False``.

    Args:
        hard: () bool, whether the parameters of the iteration are at the hard limit.
        labels_same: () bool, no label changed since the previous E-step.
        shift: () total squared change of the component locations in the M-step, in the
            unit of :func:`spread_unit` (:func:`centre_shift`).
        shift_scale: () mean per-feature variance of the data in that unit (:func:`data_spread`).
        objective: () objective of this iteration (higher is better).
        previous: () objective of the previous iteration (-inf before the first).
        n_iter: () int32 iterations completed before this one.
        tol: () the tolerance.

    Returns:
        () bool.
    """
    dtype = objective.dtype
    eps = jnp.finfo(dtype).eps
    partition = labels_same | (shift <= tol * shift_scale)
    gain = objective - previous
    size = jnp.abs(objective)
    slack = jnp.maximum(tol, ROUNDING_ULPS * eps) * size
    finite = jnp.isfinite(objective) & jnp.isfinite(previous)
    by_objective = (n_iter >= 1) & (gain <= tol * size) & (gain >= -slack)
    soft = jnp.where(finite | (n_iter < 1), by_objective, partition)
    return jnp.where(hard, partition, soft) & ~jnp.isnan(objective)


def compare_labels(
    labels: jax.Array, previous: jax.Array, *, native: bool = True
) -> tuple[jax.Array, jax.Array]:
    """The labels to carry, and whether none differs from the previous ones (the partition rule).

    On the CPU, with the compiled kernels available, one parallel pass of
    :func:`gmmlimit._native.update_labels` compares the labels and writes them over the previous
    ones in place. XLA:CPU compares on one thread and then copies the labels into the loop's
    buffer on one thread: 0.2 ms of a K-means iteration of 1.2 ms at (250000, 8, 5)
    (``benchmarks/tuning/fit_overhead.py``).

    Args:
        labels: (n,) int32 labels of the last E-step.
        previous: (n,) int32 labels of the one before (a loop's carried labels).
        native: False where the labels are sharded over devices (a custom call would gather them).

    Returns:
        ``(labels, same)``: (n,) labels equal to ``labels``, and () bool, the same value either way.
    """

    def plain(new: jax.Array, old: jax.Array) -> tuple[jax.Array, jax.Array]:
        return new, jnp.all(new == old)

    if not native or labels.dtype != jnp.int32 or not _native.available():
        return plain(labels, previous)

    def kernel(new: jax.Array, old: jax.Array) -> tuple[jax.Array, jax.Array]:
        stored, changed = _native.update_labels(new, old)
        return stored, changed == 0

    return lax.platform_dependent(labels, previous, cpu=kernel, default=plain)


def fit_loop(
    variant: Variant,
    blocks: Blocks,
    n: int,
    params: Params,
    tol: jax.Array,
    shift_scale: jax.Array,
    *,
    unit: jax.Array | float = 1.0,
    max_iter: int | jax.Array,
    history: int,
    pass_fn: EPass = e_pass,
) -> FitResult:
    """The fit loop of :func:`fit_compiled` on blocked data (traceable; call it under jit).

    Args:
        variant: the mixture variant.
        blocks: the padded data.
        n: the number of real rows (labels beyond it are dropped).
        params: initial parameters.
        tol: the tolerance.
        shift_scale: mean per-feature variance of the data in ``unit`` (scales a hard fit's
            ``tol``; :func:`data_spread`).
        unit: the power of two shifts are measured in (:func:`spread_unit`).
        max_iter: the maximum number of iterations (may be traced), at most ``history``.
        history: the length of the history buffer (static; :func:`history_length`).
        pass_fn: the streamed E-step (default :func:`e_pass`).

    Returns:
        The :class:`FitResult`, its history of length ``history``.
    """
    dtype = blocks.x.dtype
    checked_means(variant, params, blocks.x.shape[-1], dtype)  # static: before any pass
    tol = jnp.asarray(tol, dtype)
    skipping = variant.engine.skipping if variant.engine is not None else None
    # Another pass is a sharded one (it reduces across devices): no per-row state there, and
    # the labels compared in XLA (a custom call would gather them).
    sharded = pass_fn is not e_pass
    if sharded:
        skipping = None

    track = variant.relocate is not None

    def e_step(state: _LoopState) -> tuple[Stats, jax.Array, _Farthest | None, Any]:
        """The streamed E-step at the state's parameters (with the engine's skipping state)."""
        if skipping is None:
            stats, labels, far = pass_fn(variant, state.params, blocks, track_farthest=track)
            return stats, labels, far, None
        return _skipping_pass(
            variant, state.params, blocks, state.labels, state.skip, track_farthest=track
        )

    def cond(state: _LoopState) -> jax.Array:
        return ~state.finished

    def body(state: _LoopState) -> _LoopState:
        stats, labels, far, skip = e_step(state)
        objective = fit_objective(variant, state.params, stats).astype(dtype)
        # The E-step after the last M-step gives the result's labels and objective: the loop
        # ends there, without an M-step (one E-step in the program, not a second after it).
        last = state.done | (state.n_iter >= max_iter)

        def iterate() -> tuple[Params, jax.Array, jax.Array, jax.Array]:
            moved = _maybe_relocate(variant, state.params, stats, labels, far, blocks)
            new_params = checked_m_step(variant, state.params, moved)
            shift = centre_shift(variant, new_params, state.params, unit)
            kept, same = compare_labels(labels, state.labels, native=not sharded)
            done = stop_rule(
                hard=checked_is_hard(variant, state.params),
                labels_same=same,
                shift=shift,
                shift_scale=shift_scale,
                objective=objective,
                previous=state.objective,
                n_iter=state.n_iter,
                tol=tol,
            )
            return new_params, kept, done, state.history.at[state.n_iter].set(objective)

        def finish() -> tuple[Params, jax.Array, jax.Array, jax.Array]:
            return state.params, labels, state.done, state.history

        new_params, kept, done, recorded = lax.cond(last, finish, iterate)
        return _LoopState(
            params=new_params,
            labels=kept,
            objective=objective,
            n_iter=state.n_iter + jnp.where(last, 0, 1).astype(jnp.int32),
            done=done,
            history=recorded,
            skip=skip,
            finished=last,
            distortion=stats.distortion.astype(dtype),
        )

    state = _LoopState(
        params=params,
        labels=jnp.full((blocks.x.shape[0] * blocks.x.shape[1],), -1, jnp.int32),
        objective=jnp.asarray(-jnp.inf, dtype),
        n_iter=jnp.zeros((), jnp.int32),
        done=jnp.zeros((), bool),
        history=jnp.zeros((history,), dtype),
        skip=None if skipping is None else skipping.init(params, blocks.x),
        finished=jnp.zeros((), bool),
        distortion=jnp.zeros((), dtype),
    )
    state = lax.while_loop(cond, body, state)
    steps = jnp.arange(history)
    filled = jnp.where(steps < state.n_iter, state.history, state.objective)
    return FitResult(
        means=variant.means(state.params),
        labels=state.labels[:n],
        n_iter=state.n_iter,
        converged=state.done,
        objective=state.objective,
        history=filled,
        params=state.params,
        distortion=state.distortion,
    )


@partial(jax.jit, static_argnames=("variant", "block_size"))
def step_compiled(
    variant: Variant,
    X: jax.Array,
    weights: jax.Array,
    params: Params,
    *,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> Params:
    """One compiled E+M iteration from ``params`` (inputs already validated): the plain M-step.

    Nothing is relocated: a component without weight keeps its parameters (moving an empty
    cluster to the farthest row is a fit's rule, :func:`relocate_if_empty`), so the step at
    sigma2 = 0 is the limit of the steps at sigma2 > 0, whose empty components stay put too.
    """
    blocks = make_blocks(X, weights, block_size)
    stats, _, _ = e_pass(variant, params, blocks)
    return checked_m_step(variant, params, stats)


@partial(jax.jit, static_argnames=("variant", "block_size"))
def stats_compiled(
    variant: Variant,
    X: jax.Array,
    weights: jax.Array,
    params: Params,
    *,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> tuple[Stats, jax.Array]:
    """Summed statistics and labels of one streamed E-step (inputs already validated)."""
    blocks = make_blocks(X, weights, block_size)
    stats, labels, _ = e_pass(variant, params, blocks)
    return stats, labels[: X.shape[0]]
