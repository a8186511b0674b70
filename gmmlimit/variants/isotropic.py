"""The isotropic, equal-prior Gaussian mixture: the model of record.

p(x) = sum_k (1/K) N(x; mu_k, sigma2 I), with sigma2 >= 0 fixed and shared. At sigma2 = 0 the
responsibilities are the one-hot of the nearest mean and the fit is Lloyd's K-means; the same
functions serve both.

Empty components:
    * soft fit (sigma2 > 0): a component whose total responsibility underflows to 0 keeps its
      previous mean;
    * hard fit (sigma2 = 0): an empty cluster is moved to the point farthest from its assigned
      centre (scikit-learn's rule): that point's weight leaves its old cluster's statistics and
      becomes the new cluster's. Several empty clusters take the farthest points in order of
      decreasing distance, the lowest-indexed empty cluster first.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from .. import _native
from .._logdomain import pairwise_sq_dists_partial, shifted_softmax
from .._reduce import tree_min_first_index, tree_sum
from .._validation import check_means, check_sigma2
from .._variant import EStepBlock, FarPoints, Variant

__all__ = ["IsotropicParams", "IsotropicStats", "isotropic"]


class IsotropicParams(NamedTuple):
    """Parameters of the isotropic mixture.

    Attributes:
        means: (K, D) component means.
        sigma2: scalar shared variance >= 0 (a traced leaf: sweeping it never recompiles).
    """

    means: jax.Array
    sigma2: jax.Array


class IsotropicStats(NamedTuple):
    """Weighted sufficient statistics of the isotropic mixture, summed over rows.

    Attributes:
        counts: (K,) sum_n w_n r_nk.
        sums: (K, D) sum_n w_n r_nk x_n.
        total_weight: () sum_n w_n.
        log_lik_core: () sum_n w_n [lse_n - d_n* / (2 sigma2)] (0 at sigma2 = 0).
        distortion: () sum_n w_n d_n*, the K-means objective J.
    """

    counts: jax.Array
    sums: jax.Array
    total_weight: jax.Array
    log_lik_core: jax.Array
    distortion: jax.Array


def assign(params: IsotropicParams, x: jax.Array) -> tuple[EStepBlock, jax.Array]:
    """The E-step on one block, also returning the per-row log-sum-exp.

    Args:
        params: the current parameters.
        x: (B, D) rows.

    Returns:
        ``(estep, lse)``: the :class:`EStepBlock` and lse (B,) in [0, ln K].
    """
    means, sigma2 = params
    means_sq = jnp.sum(means * means, axis=1)
    partial = pairwise_sq_dists_partial(x, means, means_sq)
    resp, labels, _, lse = shifted_softmax(partial, 2.0 * sigma2)
    # The assigned distance, computed directly (no cancellation), as scikit-learn's inertia.
    diff = x - means[labels]
    nearest = jnp.sum(diff * diff, axis=1)
    positive = sigma2 > 0
    safe = jnp.where(positive, sigma2, 1.0)
    log_lik = jnp.where(positive, lse - nearest / (2.0 * safe), 0.0)
    return EStepBlock(resp=resp, labels=labels, log_lik=log_lik, distortion=nearest), lse


def _e_step(params: IsotropicParams, x: jax.Array) -> EStepBlock:
    return assign(params, x)[0]


def _sufficient_stats(x: jax.Array, weight: jax.Array, estep: EStepBlock) -> IsotropicStats:
    weighted = estep.resp * weight[:, None]
    sums = lax.dot_general(weighted, x, (((0,), (0,)), ((), ())), precision=lax.Precision.HIGHEST)
    return IsotropicStats(
        counts=jnp.sum(weighted, axis=0),
        sums=sums,
        total_weight=jnp.sum(weight),
        log_lik_core=jnp.sum(weight * estep.log_lik),
        distortion=jnp.sum(weight * estep.distortion),
    )


def _fused_e_step(
    params: IsotropicParams, x: jax.Array, weight: jax.Array
) -> tuple[IsotropicStats, jax.Array, jax.Array]:
    """E-step and statistics of one block in one pass (the fit's hot path).

    See :func:`_fused_impl`; under ``vmap`` over the parameters only (a sigma2 sweep, restarts)
    :func:`_fused_wide` runs instead.
    """
    return _fused_block(params.means, params.sigma2, x, weight)


def _use_native(x: jax.Array, k: int, native: bool) -> bool:
    """Whether hard E-steps of this block may call the compiled CPU kernel (:mod:`.._native`)."""
    return native and _native.supports(x.dtype, k)


def _fused_jax(
    means: jax.Array, sigma2: jax.Array, x: jax.Array, weight: jax.Array
) -> tuple[IsotropicStats, jax.Array, jax.Array]:
    """:func:`_fused_impl` in JAX alone (every platform; the reference for the CPU kernel)."""
    k = means.shape[0]
    means_sq = jnp.sum(means * means, axis=1)
    cross = lax.dot_general(
        means, x, (((1,), (1,)), ((), ())), precision=lax.Precision.HIGHEST
    )  # (K, B)
    partial = means_sq[:, None] - 2.0 * cross
    best, labels = tree_min_first_index(partial, axis=0)
    diff = x - means[labels]
    nearest = jnp.sum(diff * diff, axis=1)
    distortion = jnp.sum(weight * nearest)
    total_weight = jnp.sum(weight)

    def hard(_: None) -> tuple[jax.Array, jax.Array, jax.Array]:
        sums = jax.ops.segment_sum(x * weight[:, None], labels, num_segments=k)
        counts = jax.ops.segment_sum(weight, labels, num_segments=k)
        return counts, sums, jnp.zeros((), x.dtype)

    def soft(_: None) -> tuple[jax.Array, jax.Array, jax.Array]:
        two_sigma2 = 2.0 * jnp.where(sigma2 > 0, sigma2, 1.0)
        # Formed from the product inside this branch, so the hard branch never materialises it.
        gap = jnp.maximum((means_sq[:, None] - 2.0 * cross) - best[None, :], 0.0)
        # A division, not a product with 1 / (2 sigma2): 0 / (2 sigma2) is exactly 0 even for a
        # denormal sigma2, where 1 / (2 sigma2) overflows to inf and 0 * inf would be NaN. It also
        # needs no elementwise select, which XLA:CPU does not vectorise (docs/scale.md).
        e = jnp.exp(-(gap / two_sigma2))
        total = tree_sum(e, axis=0)
        weighted = e * (weight / total)[None, :]
        sums = lax.dot_general(
            weighted, x, (((1,), (0,)), ((), ())), precision=lax.Precision.HIGHEST
        )
        log_lik = jnp.log(total) - nearest / two_sigma2
        return jnp.sum(weighted, axis=1), sums, jnp.sum(weight * log_lik)

    counts, sums, log_lik_core = lax.cond(sigma2 > 0, soft, hard, None)
    stats = IsotropicStats(
        counts=counts,
        sums=sums,
        total_weight=total_weight,
        log_lik_core=log_lik_core,
        distortion=distortion,
    )
    return stats, labels, nearest


def _block_total(w_blocks: jax.Array) -> jax.Array:
    """The total weight, summed block by block as the driver's scan sums it (same bits)."""
    zero = jnp.zeros((), w_blocks.dtype)
    return lax.scan(lambda acc, w: (acc + jnp.sum(w), None), zero, w_blocks)[0]


def _hard_native(
    means: jax.Array, x_blocks: jax.Array, w_blocks: jax.Array
) -> tuple[IsotropicStats, jax.Array, jax.Array]:
    """:func:`_fused_jax` at sigma2 = 0 on (n, B, D) blocks by the compiled CPU kernel.

    The kernel adds the blocks' statistics in block order, as a scan of per-block calls would, so
    the totals are the same bit for bit however the blocks are grouped into calls.

    Returns:
        The summed :class:`IsotropicStats`, (n, B) labels and (n, B) distances.
    """
    labels, nearest, counts, sums, distortion = _native.hard_assign(means, x_blocks, w_blocks)
    stats = IsotropicStats(
        counts=counts,
        sums=sums,
        total_weight=_block_total(w_blocks),
        log_lik_core=jnp.zeros((), x_blocks.dtype),
        distortion=distortion,
    )
    return stats, labels, nearest


def _soft_native(
    means: jax.Array, sigma2: jax.Array, x_blocks: jax.Array, w_blocks: jax.Array
) -> tuple[IsotropicStats, jax.Array, jax.Array]:
    """:func:`_fused_jax` for S parameter sets, all with sigma2 > 0, by the compiled CPU kernel.

    Args:
        means: (S, K, D) means.
        sigma2: (S,) variances, all > 0.
        x_blocks: (n, B, D) rows.
        w_blocks: (n, B) weights.

    Returns:
        The summed :class:`IsotropicStats` with a leading axis S on every leaf, (S, n, B) labels
        and (S, n, B) distances; each set's values are those of a call with that set alone.
    """
    labels, nearest, counts, sums, log_lik, distortion = _native.soft_assign(
        means, sigma2, x_blocks, w_blocks
    )
    stats = IsotropicStats(
        counts=counts,
        sums=sums,
        total_weight=jnp.broadcast_to(_block_total(w_blocks), sigma2.shape),
        log_lik_core=log_lik,
        distortion=distortion,
    )
    return stats, labels, nearest


def _first(tree: tuple) -> tuple:
    return jax.tree.map(lambda a: a[0], tree)


def _fused_impl(
    means: jax.Array, sigma2: jax.Array, x: jax.Array, weight: jax.Array, native: bool = True
) -> tuple[IsotropicStats, jax.Array, jax.Array]:
    """E-step and statistics of one block in one pass, for one parameter set.

    The same quantities as ``_sufficient_stats(x, weight, _e_step(params, x))`` (up to rounding),
    laid out for speed:

    * distances are formed as a (K, B) array, so every reduction over components (min, first
      index of the min, softmax sum) runs along the major axis, vectorised over rows; reductions
      along a short minor axis of length K were the E-step's largest cost (measured in
      ``docs/scale.md``);
    * the hard limit (sigma2 = 0) takes a branch of its own: no exponentials, and the weighted
      sums are a segment sum over labels (O(B D)) instead of a one-hot matrix product
      (O(B K D)). On the CPU that branch is the compiled kernel of :mod:`gmmlimit._native`
      (distances, argmin, exact distance and sums fused, no (K, B) array) where it is available;
    * the soft branch exponentiates once: ``e = exp(-gap / (2 sigma2))``, ``s = sum_k e``,
      ``r = e / s``, ``lse = log s``, with gap >= 0 shifted by the nearest distance first, so
      ``1 <= s <= K`` and nothing overflows at any sigma2.

    Args:
        means: (K, D) means.
        sigma2: scalar variance (0: the hard limit).
        x: (B, D) rows.
        weight: (B,) sample weights.
        native: allow the compiled CPU kernels (False: JAX only, as the derivative rules
            need).

    Returns:
        ``(stats, labels, distortion)``: the block's :class:`IsotropicStats`, (B,) int32 labels
        (ties: lowest index) and the (B,) squared distance to the assigned mean.
    """
    if not _use_native(x, means.shape[0], native):
        return _fused_jax(means, sigma2, x, weight)

    def kernels(
        means: jax.Array, sigma2: jax.Array, x: jax.Array, weight: jax.Array
    ) -> tuple[IsotropicStats, jax.Array, jax.Array]:
        # One block as a pass over one block: its total weight 0 + sum(w) is sum(w), same bits.
        x_blocks, w_blocks = x[None], weight[None]
        stats, labels, nearest = lax.cond(
            sigma2 > 0,
            lambda: _first(_soft_native(means[None], sigma2[None], x_blocks, w_blocks)),
            lambda: _hard_native(means, x_blocks, w_blocks),
        )
        return stats, labels[0], nearest[0]

    return lax.platform_dependent(means, sigma2, x, weight, cpu=kernels, default=_fused_jax)


WIDE_TILE_ELEMENTS = 1 << 18
"""Target size (S * K * rows) of one tile of the wide sweep block: about 1 MiB of float32, so the
(S K, b) distances and responsibilities of a tile stay in a core's L2 cache."""


def _wide_tile_rows(block_rows: int, lanes: int) -> int:
    """Rows per tile: ``WIDE_TILE_ELEMENTS // lanes`` rounded down to a multiple of 8, in [1, B]."""
    target = WIDE_TILE_ELEMENTS // lanes
    if target >= 8:
        target -= target % 8
    return min(block_rows, max(1, target))


def _fused_wide(
    means: jax.Array, sigma2: jax.Array, x: jax.Array, weight: jax.Array
) -> tuple[IsotropicStats, jax.Array, jax.Array]:
    """:func:`_fused_impl` for S parameter sets on one shared block, as wide matrix products.

    Under ``vmap`` with a batched sigma2 the ``lax.cond`` of :func:`_fused_impl` becomes a select
    that runs both branches and broadcasts the block to (S, B, D). Here the S * K means are
    stacked instead: one (S K, D) x (D, b) product gives every distance and one (S K, b) x (b, D)
    product every weighted sum; each lane's responsibilities are its softmax (sigma2 > 0) or the
    one-hot of its labels (sigma2 = 0), chosen elementwise, or for the whole block when all lanes
    are soft or all hard (``lax.switch``: a sweep then skips the one-hot, vmapped K-means restarts
    the exponentials). The block is cut into tiles of b rows (:func:`_wide_tile_rows`; the last
    tile padded with weight-0 rows) so that the (S K, b) intermediates stay in cache.

    Args:
        means: (S, K, D) means.
        sigma2: (S,) variances.
        x: (B, D) rows shared by all S parameter sets.
        weight: (B,) sample weights.

    Returns:
        ``(stats, labels, distortion)`` with a leading axis S on every leaf.
    """
    s, k, d = means.shape
    b = x.shape[0]
    tile = _wide_tile_rows(b, s * k)
    hi = lax.Precision.HIGHEST
    flat_means = means.reshape(s * k, d)
    means_sq = jnp.sum(means * means, axis=2)
    positive = sigma2 > 0
    two_sigma2 = 2.0 * jnp.where(positive, sigma2, 1.0)

    # Which lanes are soft is known for the whole block: a sweep of positive sigma2 values skips
    # the one-hot and the per-lane choice, and vmapped K-means restarts skip the exponentials.
    mode = jnp.where(jnp.all(positive), 0, jnp.where(jnp.any(positive), 2, 1))

    def one_tile(
        acc: tuple[jax.Array, ...], tile_data: tuple[jax.Array, jax.Array]
    ) -> tuple[tuple[jax.Array, ...], tuple[jax.Array, jax.Array]]:
        xt, wt = tile_data
        cross = lax.dot_general(flat_means, xt, (((1,), (1,)), ((), ())), precision=hi)
        partial = means_sq[:, :, None] - 2.0 * cross.reshape(s, k, tile)
        best, labels = tree_min_first_index(partial, axis=1)
        diff = xt[None, :, :] - jnp.take_along_axis(means, labels[:, :, None], axis=1)
        nearest = jnp.sum(diff * diff, axis=2)

        def soft() -> tuple[jax.Array, jax.Array]:
            gap = jnp.maximum(partial - best[:, None, :], 0.0)
            e = jnp.exp(-(gap / two_sigma2[:, None, None]))  # as in _fused_impl
            total = tree_sum(e, axis=1)
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
            weighted.reshape(s * k, tile), xt, (((1,), (0,)), ((), ())), precision=hi
        )
        counts_acc, sums_acc, log_lik_acc, distortion_acc = acc
        acc = (
            counts_acc + jnp.sum(weighted, axis=2),
            sums_acc + sums.reshape(s, k, d),
            log_lik_acc + jnp.sum(wt[None, :] * log_lik, axis=1),
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
    stats = IsotropicStats(
        counts=counts,
        sums=sums,
        total_weight=jnp.broadcast_to(jnp.sum(weight), (s,)),
        log_lik_core=jnp.where(positive, log_lik_core, 0.0),
        distortion=distortion,
    )
    labels = jnp.moveaxis(labels, 0, 1).reshape(s, n_tiles * tile)[:, :b]
    nearest = jnp.moveaxis(nearest, 0, 1).reshape(s, n_tiles * tile)[:, :b]
    return stats, labels, nearest


def _fused_native(
    means: jax.Array, sigma2: jax.Array, x: jax.Array, weight: jax.Array
) -> tuple[IsotropicStats, jax.Array, jax.Array]:
    return _fused_impl(means, sigma2, x, weight, native=True)


_fused_batched = jax.custom_batching.custom_vmap(_fused_native)


@jax.custom_jvp
def _fused_block(
    means: jax.Array, sigma2: jax.Array, x: jax.Array, weight: jax.Array
) -> tuple[IsotropicStats, jax.Array, jax.Array]:
    """:func:`_fused_impl` with the wide batching rule, still differentiable.

    Reverse-mode autodiff does not pass through a ``custom_vmap``; the derivative rule
    differentiates the plain implementation instead (same values), so ``jax.grad`` of a
    log-likelihood computed by the fit's hot path works.
    """
    return _fused_batched(means, sigma2, x, weight)


@_fused_block.defjvp
def _fused_block_jvp(
    primals: tuple[jax.Array, ...], tangents: tuple[jax.Array, ...]
) -> tuple[tuple[IsotropicStats, jax.Array, jax.Array], object]:
    return jax.jvp(functools.partial(_fused_impl, native=False), primals, tangents)


@_fused_batched.def_vmap
def _fused_block_vmap(
    axis_size: int,
    in_batched: tuple[bool, bool, bool, bool],
    means: jax.Array,
    sigma2: jax.Array,
    x: jax.Array,
    weight: jax.Array,
) -> tuple[tuple[IsotropicStats, jax.Array, jax.Array], object]:
    """Batching rule: parameters batched over shared data -> :func:`_fused_wide`."""
    means_b, sigma2_b, x_b, weight_b = in_batched
    if x_b or weight_b:
        axes = tuple(0 if flag else None for flag in in_batched)
        out = jax.vmap(_fused_native, in_axes=axes)(means, sigma2, x, weight)
    else:
        if not means_b:
            means = jnp.broadcast_to(means, (axis_size, *means.shape))
        if not sigma2_b:
            sigma2 = jnp.broadcast_to(sigma2, (axis_size,))
        out = _fused_wide(means, sigma2, x, weight)
    return out, jax.tree.map(lambda _: True, out)


def _scan_blocks(
    block_fn: Callable[[jax.Array, jax.Array], tuple[IsotropicStats, jax.Array, jax.Array]],
    x_blocks: jax.Array,
    w_blocks: jax.Array,
) -> tuple[IsotropicStats, jax.Array, jax.Array]:
    """Scan ``block_fn`` over (n, B, D) blocks, adding the statistics block by block.

    Returns:
        The totals (added in the driver's order) and the (n, B) labels and distortions.
    """
    shapes = jax.eval_shape(block_fn, x_blocks[0], w_blocks[0])
    zeros = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), shapes[0])

    def body(
        acc: IsotropicStats, block: tuple[jax.Array, jax.Array]
    ) -> tuple[IsotropicStats, tuple[jax.Array, jax.Array]]:
        stats, labels, nearest = block_fn(*block)
        return jax.tree.map(jnp.add, acc, stats), (labels, nearest)

    stats, (labels, nearest) = lax.scan(body, zeros, (x_blocks, w_blocks))
    return stats, labels, nearest


def _pass_impl(
    means: jax.Array,
    sigma2: jax.Array,
    x_blocks: jax.Array,
    w_blocks: jax.Array,
    native: bool = True,
) -> tuple[IsotropicStats, jax.Array, jax.Array]:
    """One streamed E-step over all blocks, for one parameter set.

    Equal, bit for bit, to scanning :func:`_fused_impl` over the blocks. A pass on the CPU hands
    all blocks to the compiled kernel in one call: the blocks are not copied out one at a
    time (a scan slices each block into a buffer of its own before a custom call), and the
    kernel spreads them over the cores.
    """

    def scan(
        means: jax.Array, sigma2: jax.Array, x_blocks: jax.Array, w_blocks: jax.Array
    ) -> tuple[IsotropicStats, jax.Array, jax.Array]:
        return _scan_blocks(
            functools.partial(_fused_impl, means, sigma2, native=native), x_blocks, w_blocks
        )

    if not _use_native(x_blocks, means.shape[0], native):
        return scan(means, sigma2, x_blocks, w_blocks)

    def kernels(
        means: jax.Array, sigma2: jax.Array, x_blocks: jax.Array, w_blocks: jax.Array
    ) -> tuple[IsotropicStats, jax.Array, jax.Array]:
        return lax.cond(
            sigma2 > 0,
            lambda: _first(_soft_native(means[None], sigma2[None], x_blocks, w_blocks)),
            lambda: _hard_native(means, x_blocks, w_blocks),
        )

    return lax.platform_dependent(means, sigma2, x_blocks, w_blocks, cpu=kernels, default=scan)


def _pass_native(
    means: jax.Array, sigma2: jax.Array, x_blocks: jax.Array, w_blocks: jax.Array
) -> tuple[IsotropicStats, jax.Array, jax.Array]:
    return _pass_impl(means, sigma2, x_blocks, w_blocks, native=True)


_pass_batched = jax.custom_batching.custom_vmap(_pass_native)


@jax.custom_jvp
def _fused_pass_fn(
    means: jax.Array, sigma2: jax.Array, x_blocks: jax.Array, w_blocks: jax.Array
) -> tuple[IsotropicStats, jax.Array, jax.Array]:
    """:func:`_pass_impl` with its batching rule, still differentiable (as :func:`_fused_block`)."""
    return _pass_batched(means, sigma2, x_blocks, w_blocks)


@_fused_pass_fn.defjvp
def _fused_pass_jvp(
    primals: tuple[jax.Array, ...], tangents: tuple[jax.Array, ...]
) -> tuple[tuple[IsotropicStats, jax.Array, jax.Array], object]:
    return jax.jvp(functools.partial(_pass_impl, native=False), primals, tangents)


@_pass_batched.def_vmap
def _pass_vmap(
    axis_size: int,
    in_batched: tuple[bool, bool, bool, bool],
    means: jax.Array,
    sigma2: jax.Array,
    x_blocks: jax.Array,
    w_blocks: jax.Array,
) -> tuple[tuple[IsotropicStats, jax.Array, jax.Array], object]:
    """Batching rule: parameter sets over shared data.

    On the CPU, all lanes hard (vmapped K-means restarts): the hard kernel, one lane after
    another; all lanes soft (a sigma2 sweep, EM restarts): the soft kernel on every lane in one
    pass over the rows. Either way each lane gets, bit for bit, the result of its own fit. Mixed
    lanes, and other platforms: the scan of :func:`_fused_block`, whose batching rule stacks the
    lanes into wide matrix products.
    """
    means_b, sigma2_b, x_b, w_b = in_batched
    if x_b or w_b:
        axes = tuple(0 if flag else None for flag in in_batched)
        out = jax.vmap(_pass_native, in_axes=axes)(means, sigma2, x_blocks, w_blocks)
        return out, jax.tree.map(lambda _: True, out)
    if not means_b:
        means = jnp.broadcast_to(means, (axis_size, *means.shape))
    if not sigma2_b:
        sigma2 = jnp.broadcast_to(sigma2, (axis_size,))

    def wide() -> tuple[IsotropicStats, jax.Array, jax.Array]:
        def one(means: jax.Array, sigma2: jax.Array) -> tuple[IsotropicStats, jax.Array, jax.Array]:
            return _scan_blocks(functools.partial(_fused_block, means, sigma2), x_blocks, w_blocks)

        return jax.vmap(one)(means, sigma2)

    if not _use_native(x_blocks, means.shape[1], True):
        out = wide()
    else:

        def kernels(
            means: jax.Array, sigma2: jax.Array, x_blocks: jax.Array, w_blocks: jax.Array
        ) -> tuple[IsotropicStats, jax.Array, jax.Array]:
            mode = jnp.where(jnp.all(sigma2 == 0), 0, jnp.where(jnp.all(sigma2 > 0), 1, 2))
            return lax.switch(
                mode,
                (
                    lambda: lax.map(lambda m: _hard_native(m, x_blocks, w_blocks), means),
                    lambda: _soft_native(means, sigma2, x_blocks, w_blocks),
                    wide,
                ),
            )

        out = lax.platform_dependent(
            means, sigma2, x_blocks, w_blocks, cpu=kernels, default=lambda *_: wide()
        )
    return out, jax.tree.map(lambda _: True, out)


def _fused_pass(
    params: IsotropicParams, x_blocks: jax.Array, w_blocks: jax.Array
) -> tuple[IsotropicStats, jax.Array, jax.Array]:
    """The variant's ``fused_pass``: :func:`_pass_impl` over the driver's blocks."""
    return _fused_pass_fn(params.means, params.sigma2, x_blocks, w_blocks)


def _m_step(params: IsotropicParams, stats: IsotropicStats) -> IsotropicParams:
    occupied = stats.counts > 0
    safe = jnp.where(occupied, stats.counts, 1.0)
    new_means = stats.sums / safe[:, None]
    ok = occupied[:, None] & jnp.isfinite(new_means)
    return IsotropicParams(means=jnp.where(ok, new_means, params.means), sigma2=params.sigma2)


def log_likelihood_from_stats(params: IsotropicParams, stats: IsotropicStats) -> jax.Array:
    """The log-likelihood l from the summed statistics (DESIGN.md section 1).

    Args:
        params: parameters (K is read from the means).
        stats: statistics summed over all rows.

    Returns:
        Scalar ``-W ln K - (W D / 2) ln(2 pi sigma2) + sum_n w_n [lse_n - d_n*/(2 sigma2)]`` with
        W the total weight. Not finite at sigma2 = 0 (there the hard objective is used).
    """
    k, d = params.means.shape
    w = stats.total_weight
    return (
        -w * math.log(k) - 0.5 * w * d * jnp.log(2.0 * jnp.pi * params.sigma2) + stats.log_lik_core
    )


def _objective(params: IsotropicParams, stats: IsotropicStats) -> jax.Array:
    positive = params.sigma2 > 0
    safe = IsotropicParams(params.means, jnp.where(positive, params.sigma2, 1.0))
    return jnp.where(positive, log_likelihood_from_stats(safe, stats), stats.distortion)


def _is_hard(params: IsotropicParams) -> jax.Array:
    return params.sigma2 == 0


def _means(params: IsotropicParams) -> jax.Array:
    return params.means


def _relocate(params: IsotropicParams, stats: IsotropicStats, far: FarPoints) -> IsotropicStats:
    """Move empty clusters to the farthest points (scikit-learn's rule), on the statistics."""
    del params
    k = stats.counts.shape[0]
    empty = stats.counts == 0
    (empty_ids,) = jnp.nonzero(empty, size=k, fill_value=k)

    def move(i: jax.Array, carry: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        counts, sums = carry
        target = empty_ids[i]
        ok = (target < k) & far.valid[i]
        target = jnp.minimum(target, k - 1)
        source = far.label[i]
        w = jnp.where(ok, far.weight[i], 0.0)
        wx = w * far.x[i]
        sums = sums.at[source].add(-wx)
        counts = counts.at[source].add(-w)
        sums = sums.at[target].set(jnp.where(ok, wx, sums[target]))
        counts = counts.at[target].set(jnp.where(ok, w, counts[target]))
        return counts, sums

    counts, sums = lax.fori_loop(0, k, move, (stats.counts, stats.sums))
    return stats._replace(counts=counts, sums=sums)


def validate_params(
    X: jax.Array, params: IsotropicParams, *, for_fit: bool = True
) -> IsotropicParams:
    """Check means and sigma2 against the data and cast them to its dtype (eager).

    Args:
        X: validated (N, D) data.
        params: the parameters to check.
        for_fit: also require K <= N.

    Returns:
        The parameters in X's dtype.

    Raises:
        ValueError: on a wrong type or shape, non-finite means, or a bad sigma2.
    """
    if not isinstance(params, IsotropicParams):
        raise ValueError(
            f"the isotropic variant takes IsotropicParams(means, sigma2); got {type(params)}."
        )
    means = check_means(params.means, X, name="means", for_fit=for_fit)
    sigma2 = check_sigma2(params.sigma2, X.dtype)
    if sigma2.ndim != 0:
        raise ValueError(f"sigma2 must be a scalar; got shape {tuple(sigma2.shape)}.")
    return IsotropicParams(means=means, sigma2=sigma2)


isotropic = Variant(
    name="isotropic",
    e_step=_e_step,
    sufficient_stats=_sufficient_stats,
    m_step=_m_step,
    objective=_objective,
    is_hard=_is_hard,
    means=_means,
    relocate=_relocate,
    validate=validate_params,
    maximize=True,
    fused_e_step=_fused_e_step,
    fused_pass=_fused_pass,
)
"""The isotropic equal-prior Gaussian mixture with fixed shared variance (sigma2 = 0: K-means)."""
