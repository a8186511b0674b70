"""Fast E-step engines of the isotropic mixture (:mod:`.isotropic` holds the model itself).

An engine computes, block by block, what the model's ``e_step`` then ``sufficient_stats`` define
(up to rounding), with the same shifted-softmax rule (:mod:`gmmlimit._logdomain`), faster:

* :func:`jax_block`: one block in JAX alone, every platform. Distances are a (K, B) array, so
  every reduction over components runs along the major axis, vectorised over rows (``_reduce``);
  the hard limit (sigma2 = 0) is a branch of its own: no exponentials, a segment sum over labels
  (O(B D)) instead of a one-hot product (O(B K D)). It is the reference of the other engines and
  the one every derivative is taken through.
* :func:`jax_wide`: S parameter sets on one shared block (a vmapped sigma2 sweep or restarts):
  the S * K means are stacked into one wide product, cut into cache-sized tiles.
* the compiled CPU kernels of :mod:`gmmlimit._native` (hard and soft), used on the CPU when they
  are built; every block of a pass goes to one kernel call.

They are put together as small pieces, each wrapping the one below it:

    fast_e_step(stats_type)
      = with_reference_derivative(      jax.grad / jvp differentiate jax_block (same values)
          batched_over_parameters(      vmap over parameters only -> one wide call
            on_cpu_kernels(jax_block)   the kernels on the CPU, jax_block elsewhere
          , wide rule)
        , jax_block)

for one block and for a whole pass. Each engine function takes ``(means, sigma2, x, weight)``
arrays and returns ``(totals, labels, distortion)``, ``totals`` a :class:`Totals` with the
fields of the model's statistics; :func:`fast_e_step` wraps them into the model's
``(params, x, w)`` signature and statistics type.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from .. import _block_size, _native
from .._driver import as_blocks
from .._logdomain import shifted_exp
from .._reduce import tree_min_first_index
from .._validation import is_soft
from .._variant import Engine, Skipping

__all__ = [
    "WIDE_TILE_ELEMENTS",
    "Bounds",
    "Totals",
    "bounded_pass",
    "fast_e_step",
    "fused_block",
    "fused_pass",
    "jax_block",
    "jax_pass",
    "jax_wide",
    "kernel_block",
    "kernel_pass",
]


class Totals(NamedTuple):
    """The statistics of one or more blocks, field for field those of ``IsotropicStats``.

    Attributes:
        counts: (K,) sum_n w_n r_nk.
        sums: (K, D) sum_n w_n r_nk x_n.
        total_weight: () sum_n w_n.
        log_lik_core: () sum_n w_n [lse_n - d_n* / (2 sigma2)] (0 at sigma2 = 0).
        distortion: () sum_n w_n d_n*.
    """

    counts: jax.Array
    sums: jax.Array
    total_weight: jax.Array
    log_lik_core: jax.Array
    distortion: jax.Array


Out = tuple[Totals, jax.Array, jax.Array]
"""``(totals, labels, distortion)`` of an engine function."""

EngineFn = Callable[[jax.Array, jax.Array, jax.Array, jax.Array], Out]
"""``(means, sigma2, x, weight) -> Out``: one block (x (B, D)) or a pass (x (n, B, D))."""

_HI = lax.Precision.HIGHEST


# ------------------------------------------------------------------------------------------------
# JAX engines
# ------------------------------------------------------------------------------------------------


def _weighted_sum(weight: jax.Array, values: jax.Array, axis: int) -> jax.Array:
    """``sum(weight * values)`` where rows of weight 0 add nothing, even an infinite value.

    A row's log-likelihood term is -inf where ``nearest / (2 sigma2)`` overflows; a padding row
    (weight 0) must not turn that into 0 * inf = NaN.
    """
    return jnp.sum(jnp.where(weight > 0, weight * values, 0.0), axis=axis)


def jax_block(means: jax.Array, sigma2: jax.Array, x: jax.Array, weight: jax.Array) -> Out:
    """E-step and statistics of one block in JAX (every platform; the engines' reference).

    Args:
        means: (K, D) means.
        sigma2: scalar variance (0: the hard limit).
        x: (B, D) rows.
        weight: (B,) sample weights.

    Returns:
        ``(totals, labels, distortion)``: the block's :class:`Totals`, (B,) int32 labels (ties:
        lowest index) and the (B,) squared distance to the assigned mean.
    """
    k = means.shape[0]
    means_sq = jnp.sum(means * means, axis=1)
    cross = lax.dot_general(means, x, (((1,), (1,)), ((), ())), precision=_HI)  # (K, B)
    partial = means_sq[:, None] - 2.0 * cross
    best, labels = tree_min_first_index(partial, axis=0)
    diff = x - means[labels]
    nearest = jnp.sum(diff * diff, axis=1)

    def hard(_: None) -> tuple[jax.Array, jax.Array, jax.Array]:
        sums = jax.ops.segment_sum(x * weight[:, None], labels, num_segments=k)
        counts = jax.ops.segment_sum(weight, labels, num_segments=k)
        return counts, sums, jnp.zeros((), x.dtype)

    def soft(_: None) -> tuple[jax.Array, jax.Array, jax.Array]:
        two_sigma2 = 2.0 * jnp.where(is_soft(sigma2), sigma2, 1.0)
        # Formed from the product inside this branch, so the hard branch never materialises it.
        e, total = shifted_exp(means_sq[:, None] - 2.0 * cross, best, labels, two_sigma2, 0)
        weighted = e * (weight / total)[None, :]
        sums = lax.dot_general(weighted, x, (((1,), (0,)), ((), ())), precision=_HI)
        log_lik = jnp.log(total) - nearest / two_sigma2
        return jnp.sum(weighted, axis=1), sums, _weighted_sum(weight, log_lik, axis=0)

    counts, sums, log_lik_core = lax.cond(is_soft(sigma2), soft, hard, None)
    totals = Totals(counts, sums, jnp.sum(weight), log_lik_core, jnp.sum(weight * nearest))
    return totals, labels, nearest


WIDE_TILE_ELEMENTS = 1 << 18
"""Target size (S * K * rows) of one tile of the wide sweep block on the CPU: about 1 MiB of
float32, so the (S K, b) distances and responsibilities of a tile stay in a core's L2 cache.
Elsewhere a tile is a block's budget, :data:`~gmmlimit._block_size.DEVICE_BLOCK_ELEMENTS`: on an
H200 each tile cost 53 to 62 us whatever its size (an 8-lane float64 sweep took tiles x ~58 us at
five shapes and four block sizes, docs/benchmarks.md, "On a GPU again")."""


def _wide_tile_rows(block_rows: int, lanes: int) -> int:
    """Rows per tile: the platform's tile elements // lanes, down to a multiple of 8, in [1, B].

    The platform is that of JAX's default device when the fit is traced (CPU:
    :data:`WIDE_TILE_ELEMENTS`; else :data:`~gmmlimit._block_size.DEVICE_BLOCK_ELEMENTS`).
    """
    on_cpu = _block_size.default_platform() == "cpu"
    target = (WIDE_TILE_ELEMENTS if on_cpu else _block_size.DEVICE_BLOCK_ELEMENTS) // lanes
    if target >= 8:
        target -= target % 8
    return min(block_rows, max(1, target))


def jax_wide(means: jax.Array, sigma2: jax.Array, x: jax.Array, weight: jax.Array) -> Out:
    """:func:`jax_block` for S parameter sets on one shared block, as wide matrix products.

    Under ``vmap`` with a batched sigma2 the ``lax.cond`` of :func:`jax_block` would become a
    select that runs both branches on a block broadcast to (S, B, D). Here the S * K means are
    stacked instead: one (S K, D) x (D, b) product gives every distance and one (S K, b) x (b, D)
    product every weighted sum; each lane's responsibilities are its shifted softmax (sigma2 > 0)
    or the one-hot of its labels (sigma2 = 0), chosen elementwise, or for the whole block when
    all lanes are soft or all hard (``lax.switch``: a sweep skips the one-hot, vmapped K-means
    restarts the exponentials). The block is cut into tiles of b rows (:func:`_wide_tile_rows`;
    the last tile padded with weight-0 rows) so that the (S K, b) intermediates stay in cache.

    Args:
        means: (S, K, D) means.
        sigma2: (S,) variances.
        x: (B, D) rows shared by all S parameter sets.
        weight: (B,) sample weights.

    Returns:
        ``(totals, labels, distortion)`` with a leading axis S on every leaf.
    """
    s, k, d = means.shape
    b = x.shape[0]
    tile = _wide_tile_rows(b, s * k)
    flat_means = means.reshape(s * k, d)
    means_sq = jnp.sum(means * means, axis=2)
    positive = is_soft(sigma2)
    two_sigma2 = 2.0 * jnp.where(positive, sigma2, 1.0)
    mode = jnp.where(jnp.all(positive), 0, jnp.where(jnp.any(positive), 2, 1))

    def one_tile(
        acc: tuple[jax.Array, ...], tile_data: tuple[jax.Array, jax.Array]
    ) -> tuple[tuple[jax.Array, ...], tuple[jax.Array, jax.Array]]:
        xt, wt = tile_data
        cross = lax.dot_general(flat_means, xt, (((1,), (1,)), ((), ())), precision=_HI)
        partial = means_sq[:, :, None] - 2.0 * cross.reshape(s, k, tile)
        best, labels = tree_min_first_index(partial, axis=1)
        diff = xt[None, :, :] - jnp.take_along_axis(means, labels[:, :, None], axis=1)
        nearest = jnp.sum(diff * diff, axis=2)

        def soft() -> tuple[jax.Array, jax.Array]:
            e, total = shifted_exp(partial, best, labels, two_sigma2[:, None, None], 1)
            log_lik = jnp.log(total) - nearest / two_sigma2[:, None]
            return e * (wt[None, :] / total)[:, None, :], log_lik

        def hard() -> tuple[jax.Array, jax.Array]:
            component = lax.broadcasted_iota(jnp.int32, partial.shape, 1)
            one_hot = jnp.where(component == labels[:, None, :], wt[None, None, :], 0.0)
            return one_hot, jnp.zeros_like(nearest)

        def mixed() -> tuple[jax.Array, jax.Array]:
            soft_weighted, log_lik = soft()
            hard_weighted, _ = hard()
            return jnp.where(positive[:, None, None], soft_weighted, hard_weighted), log_lik

        weighted, log_lik = lax.switch(mode, (soft, hard, mixed))
        sums = lax.dot_general(
            weighted.reshape(s * k, tile), xt, (((1,), (0,)), ((), ())), precision=_HI
        )
        counts_acc, sums_acc, log_lik_acc, distortion_acc = acc
        acc = (
            counts_acc + jnp.sum(weighted, axis=2),
            sums_acc + sums.reshape(s, k, d),
            log_lik_acc + _weighted_sum(wt[None, :], log_lik, axis=1),
            distortion_acc + jnp.sum(wt[None, :] * nearest, axis=1),
        )
        return acc, (labels, nearest)

    zeros = (
        jnp.zeros((s, k), x.dtype),
        jnp.zeros((s, k, d), x.dtype),
        jnp.zeros((s,), x.dtype),
        jnp.zeros((s,), x.dtype),
    )
    n_tiles = -(-b // tile)
    pad = n_tiles * tile - b  # padding rows have weight 0: they add nothing to any statistic
    x_padded = jnp.pad(x, ((0, pad), (0, 0)))
    w_padded = jnp.pad(weight, (0, pad))
    tiles = (x_padded.reshape(n_tiles, tile, d), w_padded.reshape(n_tiles, tile))
    (counts, sums, log_lik_core, distortion), (labels, nearest) = lax.scan(one_tile, zeros, tiles)
    totals = Totals(
        counts=counts,
        sums=sums,
        total_weight=jnp.broadcast_to(jnp.sum(weight), (s,)),
        log_lik_core=jnp.where(positive, log_lik_core, 0.0),
        distortion=distortion,
    )
    labels = jnp.moveaxis(labels, 0, 1).reshape(s, n_tiles * tile)[:, :b]
    nearest = jnp.moveaxis(nearest, 0, 1).reshape(s, n_tiles * tile)[:, :b]
    return totals, labels, nearest


def scan_blocks(block_fn: EngineFn, means: jax.Array, sigma2: jax.Array) -> EngineFn:
    """A pass from a block engine: scan it over (n, B, D) blocks, adding totals in block order.

    Args:
        block_fn: a one-block engine function.
        means: the means it is called with.
        sigma2: the variance it is called with.

    Returns:
        ``(x_blocks, w_blocks) -> (totals, labels (n, B), distortion (n, B))``; ``x_blocks`` may
        also be the blocks' (M, D) first rows, padded here (:func:`~gmmlimit._driver.as_blocks`).
    """

    def run(x_blocks: jax.Array, w_blocks: jax.Array) -> Out:
        x_blocks = as_blocks(x_blocks, w_blocks)
        shapes = jax.eval_shape(block_fn, means, sigma2, x_blocks[0], w_blocks[0])
        zeros = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), shapes[0])

        def body(acc: Totals, block: tuple[jax.Array, jax.Array]) -> tuple[Totals, Any]:
            totals, labels, nearest = block_fn(means, sigma2, *block)
            return jax.tree.map(jnp.add, acc, totals), (labels, nearest)

        totals, (labels, nearest) = lax.scan(body, zeros, (x_blocks, w_blocks))
        return totals, labels, nearest

    return run


def jax_pass(means: jax.Array, sigma2: jax.Array, x_blocks: jax.Array, w_blocks: jax.Array) -> Out:
    """:func:`jax_block` scanned over (n, B, D) blocks (the reference of a pass)."""
    return scan_blocks(jax_block, means, sigma2)(x_blocks, w_blocks)


# ------------------------------------------------------------------------------------------------
# The compiled CPU kernels
# ------------------------------------------------------------------------------------------------


def _block_total(w_blocks: jax.Array) -> jax.Array:
    """The total weight, summed block by block as the driver's scan sums it (same bits).

    A scan over the blocks: callers compute it outside any conditional, where XLA hoists it out
    of a fit's loop (the weights do not change); inside a branch it ran on every iteration, a
    while loop of one step per block (44.8 us at 62 blocks; a K-means iteration at
    (250000, 2, 5) went from 1.045 to 0.923 ms when it left the loop; docs/benchmarks.md).
    """
    zero = jnp.zeros((), w_blocks.dtype)
    return lax.scan(lambda acc, w: (acc + jnp.sum(w), None), zero, w_blocks)[0]


def native_hard(
    means: jax.Array, x_blocks: jax.Array, w_blocks: jax.Array, total_weight: jax.Array
) -> Out:
    """:func:`jax_pass` at sigma2 = 0 by the compiled hard kernel (blocks added in order).

    Args:
        means: (K, D) means.
        x_blocks: (n, B, D) rows, or the blocks' (M, D) first rows (:func:`_native.kernel_rows`).
        w_blocks: (n, B) weights.
        total_weight: () their :func:`_block_total`.

    Returns:
        The summed :class:`Totals`, (n, B) labels and (n, B) distances.
    """
    labels, nearest, counts, sums, distortion = _native.hard_assign(means, x_blocks, w_blocks)
    zero = jnp.zeros((), x_blocks.dtype)
    return Totals(counts, sums, total_weight, zero, distortion), labels, nearest


def native_soft(
    means: jax.Array,
    sigma2: jax.Array,
    x_blocks: jax.Array,
    w_blocks: jax.Array,
    total_weight: jax.Array,
) -> Out:
    """:func:`jax_pass` for S parameter sets, all soft (``is_soft``), by the compiled soft kernel.

    Args:
        means: (S, K, D) means.
        sigma2: (S,) variances, all > 0.
        x_blocks: (n, B, D) rows, or the blocks' (M, D) first rows (:func:`_native.kernel_rows`).
        w_blocks: (n, B) weights.
        total_weight: () their :func:`_block_total`.

    Returns:
        The summed :class:`Totals` with a leading axis S on every leaf, (S, n, B) labels and
        (S, n, B) distances; each set's values are those of a call with that set alone.
    """
    labels, nearest, counts, sums, log_lik, distortion = _native.soft_assign(
        means, sigma2, x_blocks, w_blocks
    )
    total = jnp.broadcast_to(total_weight, sigma2.shape)
    return Totals(counts, sums, total, log_lik, distortion), labels, nearest


def _kernels_apply(x: jax.Array, k: int) -> bool:
    """Whether the compiled CPU kernels handle this dtype and K (and are built)."""
    return _native.supports(x.dtype, k)


def _first(tree: Out) -> Out:
    return jax.tree.map(lambda a: a[0], tree)


def _kernel_sigma2_ok(sigma2: jax.Array) -> jax.Array:
    """Whether the soft kernel takes this (soft) sigma2: 1 / (2 sigma2) must be a normal number.

    The kernel multiplies gaps by that reciprocal; above 1 / (2 tiny) (4.3e37 in float32, 2.2e307
    in float64) it would flush to 0 and turn the padded components' infinite gaps into NaN. Such
    variances run on the problem scaled by exact powers of two (:func:`native_soft_far`).
    """
    return sigma2 <= 0.5 / jnp.finfo(sigma2.dtype).tiny


FAR_SIGMA2_SHIFT = 2
"""A soft sigma2 past :func:`_kernel_sigma2_ok` is computed on the problem scaled by
2^-FAR_SIGMA2_SHIFT: sigma2 / 16 <= max / 16 < 0.5 / tiny in float32 and float64."""


def native_soft_far(
    means: jax.Array,
    sigma2: jax.Array,
    x_blocks: jax.Array,
    w_blocks: jax.Array,
    total_weight: jax.Array,
) -> Out:
    """:func:`native_soft` for one soft sigma2 past :func:`_kernel_sigma2_ok`, by the soft kernel.

    The kernel runs on the problem scaled by exact powers of two: rows and means / 4, sigma2 / 16.
    Every exponent -gap / (2 sigma2) is then the one of the problem as given (the scaled sigma2's
    1 / (2 sigma2) is a normal number), so are the labels, the responsibilities and the
    log-likelihood core; the sums map back x 4 and the distances x 16, exactly. Only a row value
    below 4 x tiny loses low bits in the scaling, a change far below the rounding of sums that
    hold rows of the data's largest magnitude (at least 2^-32 of float32, in the scale window).

    Args:
        means: (K, D) means.
        sigma2: () variance with 1 / (2 sigma2) below the dtype's smallest normal number.
        x_blocks: (n, B, D) rows, or the blocks' (M, D) first rows (:func:`_native.kernel_rows`).
        w_blocks: (n, B) weights.
        total_weight: () their :func:`_block_total`.

    Returns:
        The summed :class:`Totals`, (n, B) labels and (n, B) distances.
    """
    down = 2.0**-FAR_SIGMA2_SHIFT  # a power of two: products by it and its inverse are exact
    out = native_soft(
        (means * down)[None], (sigma2 * down**2)[None], x_blocks * down, w_blocks, total_weight
    )
    totals, labels, nearest = _first(out)
    up = 1.0 / down
    totals = totals._replace(sums=totals.sums * up, distortion=totals.distortion * up**2)
    return totals, labels, nearest * up**2


def _native_pass(
    means: jax.Array,
    sigma2: jax.Array,
    x_blocks: jax.Array,
    w_blocks: jax.Array,
    total_weight: jax.Array | None = None,
) -> Out:
    """One parameter set over all blocks by the kernels: soft or hard by ``is_soft(sigma2)``.

    ``total_weight``: the blocks' :func:`_block_total`, where the caller has it (computed here
    otherwise).
    """
    mode = jnp.where(is_soft(sigma2), jnp.where(_kernel_sigma2_ok(sigma2), 1, 2), 0)
    total = _block_total(w_blocks) if total_weight is None else total_weight
    return lax.switch(
        mode,
        (
            lambda: native_hard(means, x_blocks, w_blocks, total),
            lambda: _first(native_soft(means[None], sigma2[None], x_blocks, w_blocks, total)),
            lambda: native_soft_far(means, sigma2, x_blocks, w_blocks, total),
        ),
    )


def on_cpu_kernels(fallback: EngineFn, *, blocks: bool) -> EngineFn:
    """The compiled kernels on the CPU where they are built, ``fallback`` everywhere else.

    Args:
        fallback: the JAX engine function (one block, or a pass when ``blocks``).
        blocks: whether the function takes (n, B, D) blocks (a pass) or one (B, D) block.

    Returns:
        An engine function with ``fallback``'s signature and values (up to rounding).
    """

    def engine(means: jax.Array, sigma2: jax.Array, x: jax.Array, weight: jax.Array) -> Out:
        if not _kernels_apply(x, means.shape[0]):
            return fallback(means, sigma2, x, weight)
        if blocks:
            cpu = _native_pass
        else:
            # One block as a pass over one block: its total weight 0 + sum(w) is sum(w).
            def cpu(means: jax.Array, sigma2: jax.Array, x: jax.Array, w: jax.Array) -> Out:
                totals, labels, nearest = _native_pass(means, sigma2, x[None], w[None])
                return totals, labels[0], nearest[0]

        return lax.platform_dependent(means, sigma2, x, weight, cpu=cpu, default=fallback)

    return engine


# ------------------------------------------------------------------------------------------------
# Transformation rules
# ------------------------------------------------------------------------------------------------

WideFn = Callable[[jax.Array, jax.Array, jax.Array, jax.Array], Out]
"""``(means (S, K, D), sigma2 (S,), x, weight) -> Out`` with a leading axis S."""


def batched_over_parameters(engine: EngineFn, wide: WideFn) -> EngineFn:
    """``engine`` whose ``vmap`` over parameters alone (shared data) calls ``wide`` once.

    Batched data (or weights) fall back to the plain ``vmap`` of ``engine``.

    Args:
        engine: an engine function.
        wide: its form for S parameter sets at once, same values lane by lane.

    Returns:
        The engine function with that batching rule.
    """
    batched = jax.custom_batching.custom_vmap(engine)

    @batched.def_vmap
    def rule(
        axis_size: int,
        in_batched: tuple[bool, bool, bool, bool],
        means: jax.Array,
        sigma2: jax.Array,
        x: jax.Array,
        weight: jax.Array,
    ) -> tuple[Out, Any]:
        means_b, sigma2_b, x_b, w_b = in_batched
        if x_b or w_b:
            axes = tuple(0 if flag else None for flag in in_batched)
            out = jax.vmap(engine, in_axes=axes)(means, sigma2, x, weight)
        else:
            if not means_b:
                means = jnp.broadcast_to(means, (axis_size, *means.shape))
            if not sigma2_b:
                sigma2 = jnp.broadcast_to(sigma2, (axis_size,))
            out = wide(means, sigma2, x, weight)
        return out, jax.tree.map(lambda _: True, out)

    return batched


def with_reference_derivative(engine: EngineFn, reference: EngineFn) -> EngineFn:
    """``engine`` differentiated through ``reference`` (same values, JAX only).

    Reverse-mode autodiff passes through neither a ``custom_vmap`` nor a kernel call; the
    derivative rule differentiates the plain JAX form instead, so ``jax.grad`` of a
    log-likelihood computed by the fit's hot path works.
    """
    differentiable = jax.custom_jvp(engine)

    @differentiable.defjvp
    def jvp(primals: tuple[jax.Array, ...], tangents: tuple[jax.Array, ...]) -> tuple[Out, Any]:
        return jax.jvp(reference, primals, tangents)

    return differentiable


# ------------------------------------------------------------------------------------------------
# The engines, assembled
# ------------------------------------------------------------------------------------------------


def _wide_pass(
    means: jax.Array, sigma2: jax.Array, x_blocks: jax.Array, w_blocks: jax.Array
) -> Out:
    """A pass for S parameter sets over shared blocks.

    On the CPU with the kernels, all lanes soft (a sigma2 sweep, EM restarts): one call of the
    soft kernel, which runs every lane in one pass over the rows (lanes whose means and sums pass
    1 MB in a pass each, inside the call); otherwise (vmapped K-means restarts, a sweep with hard
    lanes or a sigma2 past the soft kernel): the kernels one lane after another
    (:func:`_native_pass`). Either way each lane gets, bit for bit, the result of its own fit.
    Other platforms: the scan of :data:`fused_block`, whose batching rule stacks the lanes into
    the wide products of :func:`jax_wide`.
    """

    def wide() -> Out:
        def one(means: jax.Array, sigma2: jax.Array) -> Out:
            return scan_blocks(fused_block, means, sigma2)(x_blocks, w_blocks)

        return jax.vmap(one)(means, sigma2)

    if not _kernels_apply(x_blocks, means.shape[1]):
        return wide()

    def cpu(means: jax.Array, sigma2: jax.Array, x_blocks: jax.Array, w_blocks: jax.Array) -> Out:
        kernel_soft = jnp.all(is_soft(sigma2) & _kernel_sigma2_ok(sigma2))
        rows = (means.shape[0], -1)
        total = _block_total(w_blocks)

        def lane_by_lane() -> Out:
            return lax.map(lambda ms: _native_pass(*ms, x_blocks, w_blocks, total), (means, sigma2))

        def flat(branch: Callable[[], Out]) -> Callable[[], Out]:
            # Each lane's labels and distances as one row of the (S, n B) output, as the kernels
            # write them (with (S, n, B) outputs merged with a scan's, XLA once chose the scan's
            # block-major layout and transposed the kernels' outputs into it on every pass).
            def run() -> Out:
                totals, labels, nearest = branch()
                return totals, labels.reshape(rows), nearest.reshape(rows)

            return run

        totals, labels, nearest = lax.cond(
            kernel_soft,
            flat(lambda: native_soft(means, sigma2, x_blocks, w_blocks, total)),
            flat(lane_by_lane),
        )
        shape = (means.shape[0], *w_blocks.shape)
        return totals, labels.reshape(shape), nearest.reshape(shape)

    return lax.platform_dependent(
        means, sigma2, x_blocks, w_blocks, cpu=cpu, default=lambda *_: wide()
    )


kernel_block: EngineFn = on_cpu_kernels(jax_block, blocks=False)
"""One block by the kernels on the CPU, :func:`jax_block` elsewhere (no transformation rules)."""

kernel_pass: EngineFn = on_cpu_kernels(jax_pass, blocks=True)
"""A pass by one kernel call on the CPU, :func:`jax_pass` elsewhere (no transformation rules)."""

fused_block: EngineFn = with_reference_derivative(
    batched_over_parameters(kernel_block, jax_wide), jax_block
)
"""One block: kernels on the CPU, :func:`jax_wide` under vmap over parameters, derivative of
:func:`jax_block`."""

fused_pass: EngineFn = with_reference_derivative(
    batched_over_parameters(kernel_pass, _wide_pass), jax_pass
)
"""A whole pass: one kernel call on the CPU, :func:`_wide_pass` under vmap over parameters,
derivative of :func:`jax_pass`."""


# ------------------------------------------------------------------------------------------------
# Hamerly's bounds: the hard pass without the scores of rows whose label cannot change
# ------------------------------------------------------------------------------------------------


class Bounds(NamedTuple):
    """The per-row state of :func:`bounded_pass` (Hamerly's lower bounds) and when to use it.

    The bounds stay valid lower bounds at any later means (each group's bound moves by that
    group's largest shift since ``means``), so plain passes may run between bounded ones and the
    next bounded pass starts from these bounds, only looser.

    Attributes:
        lower: (n, B, G) a lower bound on each row's distance to the means of each of G groups
            of consecutive means (:func:`bound_groups`) other than its label's in ``labels``
            (0: unknown, the row is scored against every mean).
        means: (K, D) the means the bounds refer to (those of the bounded pass that made them).
        labels: (n, B) int32 the labels of that pass.
        scored: () int32 rows that pass scored against every mean.
        plain: () int32 plain passes (every row scored, no bounds kept) still to run before the
            next bounded pass.
        backoff: () int32 plain passes to schedule after the next bounded pass that does not
            skip enough rows to pay for its bound test (:func:`next_schedule`).
    """

    lower: jax.Array
    means: jax.Array
    labels: jax.Array
    scored: jax.Array
    plain: jax.Array
    backoff: jax.Array


def bound_groups(k: int) -> int:
    """Groups of means with a bound of their own: one per 16 means, at most 16.

    More groups keep more rows skippable when a few means move far (a group's bound moves by
    its own largest shift only) and cost 2 G values of memory traffic per row and pass.
    """
    return min(16, max(1, -(-k // 16)))


PAYING_SKIP_FRACTION = 0.5
"""A bounded pass pays when it skips at least this fraction of the rows. A bounded pass that
scores every row costs up to about 1.5x a plain one (its bound test, the distance to each row's
old label, and new bounds per scored row; measured at (156,250, 64, 64), float32, Gaussian noise;
about 1.1x at (12,755, 784, 16), where most groups skip the bound test after groups it let
nothing through), so it loses to Lloyd unless it skips a good part of the rows."""

IMPROVING_SKIP_FRACTION = 0.1
"""A bounded pass that skips this much more of the rows than the bounded pass before it also
counts as paying: early in a fit on clustered data the skipped fraction climbs (0, 0.24, 0.71,
0.97 at (200,000, 64, 256)), and plain passes there would only delay the bounds."""

MAX_BACKOFF = 16
"""At most this many plain passes between two bounded ones: where the bounds never pay
(Gaussian noise, most of all in high dimension) a bounded pass costs at most 1 / 16 of a pass
more per pass."""


def next_schedule(
    scored: jax.Array, previous: jax.Array, rows: int, backoff: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """The plain passes to run after a bounded pass, and the backoff after them.

    A bounded pass that skips at least :data:`PAYING_SKIP_FRACTION` of the rows, or
    :data:`IMPROVING_SKIP_FRACTION` more than the bounded pass before it, is followed by another
    bounded pass (backoff reset to 0). One that does not is followed by ``backoff`` plain
    passes, and the backoff doubles (0, 1, 2, 4, ... up to :data:`MAX_BACKOFF`). The plain or
    bounded choice changes only the work, never a bit of the results.

    Args:
        scored: () int32 rows the bounded pass scored against every mean.
        previous: () int32 rows the bounded pass before it scored (all rows before the first).
        rows: the rows of the pass (n * B).
        backoff: () int32 the state's backoff before the pass.

    Returns:
        ``(plain, backoff)``: () int32 each.
    """
    skipped = 1 - scored.astype(jnp.float32) / rows
    skipped_before = 1 - previous.astype(jnp.float32) / rows
    pays = (skipped >= PAYING_SKIP_FRACTION) | (skipped - skipped_before >= IMPROVING_SKIP_FRACTION)
    plain = jnp.where(pays, 0, backoff)
    grown = jnp.minimum(jnp.maximum(2 * backoff, 1), MAX_BACKOFF)
    return plain.astype(jnp.int32), jnp.where(pays, 0, grown).astype(jnp.int32)


def no_bounds(means: jax.Array, x_blocks: jax.Array) -> Bounds:
    """Bounds with which a pass skips nothing (before the first pass, after one without kernel)."""
    n, b, _ = x_blocks.shape
    groups = bound_groups(means.shape[-2])
    zero = jnp.zeros((), jnp.int32)
    return Bounds(
        jnp.zeros((n, b, groups), x_blocks.dtype),
        means,
        jnp.full((n, b), -1, jnp.int32),
        jnp.asarray(n * b, jnp.int32),
        zero,
        zero,
    )


def _bounded_mode(sigma2: jax.Array, bounds: Bounds) -> jax.Array:
    """The kernel's mode for this pass (``_native.BOUNDED_MODES``).

    Bounded, or plain as the schedule says (keeping the bounds), hard or soft by ``is_soft``;
    nothing for a sigma2 past the soft kernel (:func:`native_soft_far` runs instead).
    """
    modes = _native.BOUNDED_MODES
    soft = is_soft(sigma2)
    bounded = jnp.where(soft, modes["soft"], modes["hard"])
    plain = jnp.where(soft, modes["soft_plain"], modes["hard_plain"])
    mode = jnp.where(bounds.plain > 0, plain, bounded)
    return jnp.where(_kernel_sigma2_ok(sigma2), mode, modes["nothing"]).astype(jnp.int32)


def _native_bounded(
    means: jax.Array,
    sigma2: jax.Array,
    x_blocks: jax.Array,
    w_blocks: jax.Array,
    bounds: Bounds,
) -> tuple[Out, Bounds]:
    """One call of the bounded kernel, in the mode :func:`_bounded_mode` picks.

    A bounded pass gives :func:`native_hard`'s values, or :func:`native_soft`'s for one set
    (rows with exactly one-hot responsibilities unscored), and new bounds; a scheduled plain pass
    gives them bit for bit and keeps the bounds; for a sigma2 past the soft kernel,
    :func:`native_soft_far` runs and the bounds are kept. The bounds go through the kernel every
    time, aliased in and out, and no conditional returns them: inside the fit's loop XLA then
    updates them in place instead of copying them out of a conditional and into the loop's carry on
    every iteration.
    """
    modes = _native.BOUNDED_MODES
    mode = _bounded_mode(sigma2, bounds)
    labels, nearest, counts, sums, log_lik, distortion, lower, bound_labels, scored = (
        _native.assign_bounded(
            mode, means, sigma2, bounds.means, bounds.labels, bounds.lower, x_blocks, w_blocks
        )
    )
    totals = Totals(counts, sums, _block_total(w_blocks), log_lik, distortion)
    out = lax.cond(
        mode == modes["nothing"],
        lambda: native_soft_far(means, sigma2, x_blocks, w_blocks, totals.total_weight),
        lambda: (totals, labels, nearest),
    )
    bounded = mode <= modes["soft"]
    plain, backoff = lax.cond(
        bounded,
        lambda: next_schedule(scored, bounds.scored, labels.size, bounds.backoff),
        lambda: (
            jnp.where(mode == modes["nothing"], bounds.plain, bounds.plain - 1),
            bounds.backoff,
        ),
    )
    return out, Bounds(
        lower,
        jnp.where(bounded, means, bounds.means),
        bound_labels,
        jnp.where(bounded, scored, bounds.scored),
        plain,
        backoff,
    )


def _bounded_one(
    means: jax.Array,
    sigma2: jax.Array,
    x_blocks: jax.Array,
    w_blocks: jax.Array,
    labels: jax.Array,
    bounds: Bounds,
) -> tuple[Out, Bounds]:
    """:func:`bounded_pass` for one parameter set.

    ``labels`` (those of the previous pass) are not needed: the bounds carry the labels they
    refer to.
    """
    del labels

    def plain(*_: Any) -> tuple[Out, Bounds]:
        bounds = no_bounds(means, as_blocks(x_blocks, w_blocks))  # only its shape is read
        return fused_pass(means, sigma2, x_blocks, w_blocks), bounds

    if not _kernels_apply(x_blocks, means.shape[0]):
        return plain()

    def cpu(*_: Any) -> tuple[Out, Bounds]:
        return _native_bounded(means, sigma2, x_blocks, w_blocks, bounds)

    return lax.platform_dependent(means, cpu=cpu, default=plain)


bounded_pass = jax.custom_batching.custom_vmap(_bounded_one)
"""``(means, sigma2, x_blocks, w_blocks, labels (n, B), bounds) -> ((totals, labels, nearest),
bounds)``: :data:`fused_pass`'s values given the labels and :class:`Bounds` of the previous pass
(at any parameters, soft or hard). On the CPU with the kernels, one call of
``_native.assign_bounded`` (:func:`_native_bounded`): at sigma2 = 0, rows whose label provably
cannot change are not scored against every mean (the same bits); at sigma2 > 0, rows whose
responsibilities are provably exactly one-hot are not scored (the same labels and
responsibilities, statistics summed in another order). Whether a pass uses the bounds or is a
plain pass that keeps them (the same bits as :data:`fused_pass`) is the schedule ``bounds``
carries (:func:`next_schedule`); for a sigma2 too large for the soft kernel it is
:func:`native_soft_far`, the bounds kept. On other platforms it is :data:`fused_pass` and returns
:func:`no_bounds`. Under ``vmap`` over parameters (restarts, a sigma2 sweep) the lanes run one
after another when all are hard, else :data:`fused_pass`'s wide rule runs them (:func:`_wide_pass`:
all soft lanes in one kernel call, any other batch lane by lane)."""


@bounded_pass.def_vmap
def _bounded_rule(
    axis_size: int,
    in_batched: tuple[Any, ...],
    means: jax.Array,
    sigma2: jax.Array,
    x_blocks: jax.Array,
    w_blocks: jax.Array,
    labels: jax.Array,
    bounds: Bounds,
) -> tuple[tuple[Out, Bounds], Any]:
    args = (means, sigma2, x_blocks, w_blocks, labels, bounds)
    if in_batched[2] or in_batched[3]:
        axes = jax.tree.map(lambda flag: 0 if flag else None, in_batched)
        out = jax.vmap(_bounded_one, in_axes=axes)(*args)
    else:
        lanes = [
            jax.tree.map(
                lambda a, flag: a if flag else jnp.broadcast_to(a, (axis_size, *a.shape)),
                arg,
                flags,
            )
            for arg, flags in zip(
                (means, sigma2, labels, bounds), (*in_batched[:2], *in_batched[4:]), strict=True
            )
        ]
        means, sigma2, labels, bounds = lanes

        def one_by_one() -> tuple[Out, Bounds]:
            return lax.map(
                lambda lane: _bounded_one(lane[0], lane[1], x_blocks, w_blocks, lane[2], lane[3]),
                (means, sigma2, labels, bounds),
            )

        def together() -> tuple[Out, Bounds]:
            out = jax.vmap(lambda m, s2: fused_pass(m, s2, x_blocks, w_blocks))(means, sigma2)
            blocks = as_blocks(x_blocks, w_blocks)  # only its shape is read
            return out, jax.vmap(lambda m: no_bounds(m, blocks))(means)

        out = lax.cond(jnp.all(~is_soft(sigma2)), one_by_one, together)
    return out, jax.tree.map(lambda _: True, out)


def fast_e_step(stats_type: Callable[..., Any], *, skipping: bool = False) -> Engine:
    """The isotropic model's fast E-step, as an :class:`~gmmlimit._variant.Engine`.

    Args:
        stats_type: the model's statistics type, built from the :class:`Totals` fields in order.
        skipping: also give the engine :func:`bounded_pass` as its
            :class:`~gmmlimit._variant.Skipping` pass (Hamerly's bounds for hard fits).

    Returns:
        The engine: ``block`` runs :data:`fused_block`, ``pass_`` :data:`fused_pass`, on
        ``params.means`` and ``params.sigma2``.
    """

    def wrap(
        fn: EngineFn,
    ) -> Callable[[Any, jax.Array, jax.Array], tuple[Any, jax.Array, jax.Array]]:
        @functools.wraps(fn)
        def run(params: Any, x: jax.Array, weight: jax.Array) -> tuple[Any, jax.Array, jax.Array]:
            totals, labels, nearest = fn(params.means, params.sigma2, x, weight)
            return stats_type(*totals), labels, nearest

        return run

    def skipping_pass(
        params: Any, x: jax.Array, weight: jax.Array, labels: jax.Array, bounds: Bounds
    ) -> tuple[Any, jax.Array, jax.Array, Bounds]:
        (totals, labels, nearest), bounds = bounded_pass(
            params.means, params.sigma2, x, weight, labels, bounds
        )
        return stats_type(*totals), labels, nearest, bounds

    skip = Skipping(init=lambda params, x: no_bounds(params.means, x), pass_=skipping_pass)
    return Engine(
        block=wrap(fused_block), pass_=wrap(fused_pass), skipping=skip if skipping else None
    )
