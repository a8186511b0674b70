"""Exact EM and K-means over data read in chunks: a numpy memmap, an array, or chunk iterators.

The fit driver's E-step is a scan over blocks of rows that adds each block's sufficient
statistics to a running total. Here the same scan runs one chunk at a time, and the running total
(with the running top-K of the farthest rows, for empty-cluster relocation) is carried from one
chunk to the next. Chunks hold a whole number of blocks, so the blocks are visited, and their
statistics added, in exactly the order of the in-memory fit: the results are the same, bit for
bit, as :func:`gmmlimit.fit` on the concatenated data (one exception: the centre-shift tolerance
of a hard fit is scaled by the data's mean per-feature variance, which is accumulated in chunks
here, so a nonzero ``tol`` is compared against a value that may differ in its last bits).

Only one chunk of rows is on the device at a time; the host keeps the (N,) int32 labels of the
previous pass for the hard stopping rule. Every chunk of every pass is checked before it reaches
the device (finite values, the variant's ``check_data``), so a source whose values change between
passes raises ValueError instead of fitting garbage. The last chunk is padded with zero-weight
copies of its first row: no variant function sees a value that is not data.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._driver import (
    DEFAULT_BLOCK_SIZE,
    FitResult,
    block_pass,
    centre_shift,
    fit_objective,
    host_spread_unit,
    relocate_if_empty,
    stop_rule,
)
from ._offset import candidate_windows, feature_range, translated_largest, window_counts
from ._rescale import (
    NO_SCALE,
    check_scaled_sigma2,
    scaled_back,
    streamed_scale,
)
from ._validation import (
    _float_dtype,
    check_integers_held,
    check_max_iter,
    check_positive_int,
    check_sigma2,
    check_tol,
    check_weights,
    dtype_scope,
    relative_weights,
)
from ._variant import (
    FarPoints,
    Params,
    Stats,
    Variant,
    abstract,
    check_variant,
    checked_is_hard,
    checked_m_step,
    checked_validate,
)
from ._variant_scale import NO_MAP, variant_params, variant_result, variant_stream_map
from .variants._isotropic import IsotropicParams, isotropic

__all__ = ["em_out_of_core", "fit_out_of_core", "kmeans_out_of_core"]

DEFAULT_CHUNK_BLOCKS = 64

Source = Any  # an (N, D) array or memmap, a re-iterable of arrays, or a callable returning one


class _Carry(NamedTuple):
    """What one pass carries from chunk to chunk."""

    stats: Stats
    far_value: jax.Array  # (K,) the K largest distortions so far, decreasing
    far_x: jax.Array  # (K, D) their rows
    far_weight: jax.Array  # (K,)
    far_label: jax.Array  # (K,) int32


def _chunk_source(source: Source) -> Callable[[], Iterator[np.ndarray]]:
    """A callable that starts a fresh pass over the data, yielding (n_i, D) arrays."""
    if callable(source):

        def fresh_pass() -> Iterator[np.ndarray]:
            pieces = source()
            try:
                return iter(pieces)
            except TypeError:
                raise ValueError(
                    "a callable X must return an iterable of (n_i, D) arrays, one pass over the "
                    f"data; it returned {type(pieces).__name__}."
                ) from None

        return fresh_pass
    if hasattr(source, "shape") and hasattr(source, "__getitem__"):
        if len(source.shape) != 2:
            raise ValueError(f"X must be a 2-D array of shape (N, D); got {tuple(source.shape)}.")
        return lambda: iter((source,))
    if isinstance(source, Iterator):
        raise ValueError(
            "an iterator can be read only once, but a fit reads the data once per iteration; "
            "pass a list of arrays, a memmap, or a function that returns a fresh iterator."
        )
    if isinstance(source, Iterable):
        return lambda: iter(source)
    raise ValueError(
        "X must be an (N, D) array or memmap, a re-iterable of (n_i, D) arrays, or a "
        f"function returning an iterator of them; got {type(source)}."
    )


def _rechunk(
    pieces: Iterator[Any],
    rows: int,
    d: int | None,
    dtype: np.dtype | None,
    where: str = "",
) -> Iterator[np.ndarray]:
    """Re-cut a stream of (n_i, D) arrays into chunks of exactly ``rows`` rows (the last shorter).

    Array-like pieces (including memmaps) are sliced lazily, so a memmap is read one chunk at a
    time. Big-endian pieces (``np.fromfile``, FITS) are read in the native byte order. Every
    piece must have the width ``d`` and the dtype ``dtype`` where given (a later pass passes
    those its source's first pass found), else those of the first piece: pieces of two dtypes
    would be joined into one chunk of the wider, and a later pass's rows cast to the checked
    dtype (float64 rows of 1e300 become inf in float32).

    Args:
        pieces: the (n_i, D) arrays of one pass.
        rows: the rows of a chunk.
        d: the width every piece must have; None takes the first piece's.
        dtype: the (native) dtype every piece must have; None takes the first piece's.
        where: words naming the pass in error messages (e.g. ``", on a later pass"``).

    Raises:
        ValueError: on a piece that is not 2-D, or has another width or dtype (naming its rows).
    """
    buf: list[np.ndarray] = []
    held = 0
    seen = 0  # rows of the pieces before this one
    for piece in pieces:
        if not hasattr(piece, "shape") or len(piece.shape) != 2:
            piece = np.asarray(piece)
            if piece.ndim != 2:
                raise ValueError(
                    f"every chunk must be a 2-D array (n_i, D); got shape {piece.shape}."
                )
        n = piece.shape[0]
        rows_named = f"(rows {seen}..{seen + n - 1}{where})"
        if d is None:
            d = piece.shape[1]
        elif piece.shape[1] != d:
            raise ValueError(
                f"chunks must all have D={d} columns; got one with {piece.shape[1]} {rows_named}."
            )
        native = np.dtype(piece.dtype).newbyteorder("=")
        if dtype is None:
            dtype = native
        elif native != dtype:
            raise ValueError(
                f"chunks must all have dtype {dtype}; got one of {native} {rows_named}."
            )
        start = 0
        while start < n:
            take = min(rows - held, n - start)
            buf.append(np.asarray(piece[start : start + take], native))
            held += take
            start += take
            if held == rows:
                yield buf[0] if len(buf) == 1 else np.concatenate(buf)
                buf, held = [], 0
        seen += n
    if held:
        yield buf[0] if len(buf) == 1 else np.concatenate(buf)


_LATER_PASS = ", on a later pass over the source"


def _check_first_dtype(found: np.dtype, first: np.dtype | None) -> None:
    """Refuse a scan whose first chunk has another dtype than a first look at the source found.

    Args:
        found: the (native) dtype of the scan's first chunk.
        first: the dtype of the first look (:func:`_first_dtype`, which chose the dtype scope
            the data are computed in), or None.

    Raises:
        ValueError: if they differ: float64 chunks in a scope chosen for float32 ones would be
            computed in float32 (1e300 becomes inf).
    """
    if first is not None and np.dtype(found) != np.dtype(first):
        raise ValueError(
            f"chunks must all have dtype {np.dtype(first)}; got one of {np.dtype(found)} (rows "
            f"from 0{_LATER_PASS})."
        )


def _check_chunk(chunk: np.ndarray, start: int, check_data: Callable | None) -> None:
    """Raise ValueError on a chunk (rows ``start``...) holding NaN/inf or data the model refuses."""
    if np.iscomplexobj(chunk):
        raise ValueError(f"X must be real; got complex dtype {chunk.dtype}.")
    if not np.all(np.isfinite(chunk)):
        raise ValueError(
            f"X contains NaN or inf values (in rows {start}..{start + len(chunk) - 1})."
        )
    if check_data is not None:
        check_data(chunk)


class _ScanInfo(NamedTuple):
    """What the first two passes over a source read (:func:`_scan_info`)."""

    n: int
    d: int
    dtype: np.dtype  # the dtype the data are computed in
    source_dtype: np.dtype  # the (native) dtype of the source's chunks, on every pass
    spread: float  # mean per-feature variance, in the unit of largest's host_spread_unit
    largest: float  # max |x|
    lo: np.ndarray  # (D,) each feature's smallest value, in dtype
    hi: np.ndarray  # (D,) each feature's largest value, in dtype
    counts: np.ndarray | None  # (2, D) _offset.window_counts of every row, or None (not asked)


def _scan_info(
    make_iter: Callable[[], Iterator[np.ndarray]],
    rows: int,
    check_data: Callable | None = None,
    source_dtype: np.dtype | None = None,
) -> _ScanInfo:
    """Two passes: N, D, dtype, spread, max |x|, each feature's extremes; checks chunks.

    The extremes, read in the first pass, set the windows whose rows the second counts
    (``_offset.candidate_windows``; no count where they need none).

    The variance is measured in the unit of :func:`~gmmlimit._driver.host_spread_unit` of the
    largest magnitude (float64 squares of data near 1e160 would overflow).

    Args:
        make_iter: starts a pass over the source.
        rows: the rows of a chunk.
        check_data: the variant's ``check_data``, or None.
        source_dtype: the dtype an earlier look at the source found (:func:`_first_dtype`,
            which chose the dtype scope), or None: every chunk must have it.

    Raises:
        ValueError: on a chunk that is not 2-D, has another width or dtype, holds NaN or inf, or
            on an empty source.
    """
    n = 0
    d = None
    dtype = None
    total = None
    src_dtype = None
    largest = 0.0
    lo = hi = None
    for chunk in _rechunk(make_iter(), rows, None, None):
        if d is None:
            d, src_dtype = chunk.shape[1], chunk.dtype
            _check_first_dtype(src_dtype, source_dtype)
            dtype = np.dtype(_float_dtype(src_dtype))
            total = np.zeros(d, np.float64)
            lo, hi = np.full(d, np.inf, np.float64), np.full(d, -np.inf, np.float64)
        elif chunk.shape[1] != d:
            raise ValueError(f"chunks must all have D={d} columns; got one with {chunk.shape[1]}.")
        elif chunk.dtype != src_dtype:
            raise ValueError(f"chunks must all have dtype {src_dtype}; got one of {chunk.dtype}.")
        _check_chunk(chunk, n, check_data)
        total += chunk.sum(axis=0, dtype=np.float64)
        top, bottom = chunk.max(), chunk.min()
        largest = max(largest, float(top), -float(bottom))
        if np.issubdtype(src_dtype, np.integer):
            check_integers_held(top, bottom, dtype)
        chunk_lo, chunk_hi = feature_range(chunk)
        lo, hi = np.minimum(lo, chunk_lo), np.maximum(hi, chunk_hi)  # exact in float64
        n += chunk.shape[0]
    if n == 0 or d is None or d == 0:
        raise ValueError("X must have at least one row and one column.")
    mean = total / n
    unit = host_spread_unit(largest, np.float64)
    sq = np.zeros(d, np.float64)
    lo, hi = lo.astype(dtype), hi.astype(dtype)
    windows = candidate_windows(lo, hi)  # the offset's row counts, where the extremes ask
    counts = None if windows is None else np.zeros((2, d), np.int64)
    for chunk in _rechunk(make_iter(), rows, d, src_dtype, _LATER_PASS):
        sq += (((chunk.astype(np.float64) - mean) / unit) ** 2).sum(axis=0)
        if windows is not None:
            counts += window_counts(chunk.astype(dtype, copy=False), windows)
    spread = float(np.mean(sq / n))
    return _ScanInfo(n, d, dtype, np.dtype(src_dtype), spread, largest, lo, hi, counts)


def streamed_chunk_rows(block_rows: int, chunk_blocks: int) -> int:
    """The rows of a chunk a streamed fit moves to the device: at least two blocks.

    A chunk of one block is a scan of one trip, which XLA inlines and then fuses the running
    sum into the block's own reduction: the sums differ from the in-memory fit's in the last
    bit (spherical variant, N = 178, block 64: means 3.3e-16 apart). Two blocks keep the loop.

    Args:
        block_rows: rows per block.
        chunk_blocks: the blocks per chunk asked for.

    Returns:
        ``block_rows * max(chunk_blocks, 2)``.
    """
    return block_rows * max(chunk_blocks, 2)


def streamed_spread(
    spread: float, measured: float, largest: float, exponent: int, dtype: Any
) -> tuple[jax.Array, jax.Array]:
    """A streamed fit's ``(shift_scale, unit)``, as ``data_spread`` gives an in-memory fit's.

    Args:
        spread: the data's mean per-feature variance in the unit of ``measured``
            (:func:`_scan_info`, float64 on the host).
        measured: the largest magnitude whose unit ``spread`` is measured in (the data's).
        largest: the largest magnitude of the data as the fit computes them, in the data's
            units (less their offset, if any).
        exponent: e: the data are computed as X / 2^e.
        dtype: the data's dtype.

    Returns:
        ``(shift_scale, unit)`` in ``dtype``: the unit of X / 2^e
        (:func:`~gmmlimit._driver.spread_unit`; 1 where that is not a normal number) and the
        spread in it.
    """
    exact = math.ldexp(host_spread_unit(measured, np.float64), -exponent)
    unit = host_spread_unit(math.ldexp(largest, -exponent), dtype)
    ratio = exact / unit  # 1 but where the unit fell back to 1
    return jnp.asarray(spread * ratio * ratio, dtype), jnp.asarray(unit, dtype)


@partial(jax.jit, static_argnames=("variant", "block_size", "track"))
def _chunk_pass(
    variant: Variant,
    params: Params,
    x: jax.Array,
    w: jax.Array,
    carry: _Carry,
    n_valid: jax.Array,
    *,
    block_size: int,
    track: bool,
) -> tuple[_Carry, jax.Array]:
    """Continue the streamed E-step over one chunk (a whole number of blocks) from ``carry``."""
    rows, d = x.shape
    b = block_size
    k = carry.far_value.shape[0]
    xb = x.reshape(rows // b, b, d)
    wb = w.reshape(rows // b, b)
    valid = (jnp.arange(rows) < n_valid).reshape(rows // b, b)

    def body(c: _Carry, block: tuple[jax.Array, jax.Array, jax.Array]) -> tuple[_Carry, jax.Array]:
        xs, ws, ok = block
        stats, labels, distortion = block_pass(variant, params, xs, ws)
        acc = jax.tree.map(jnp.add, c.stats, stats)
        if not track:
            return c._replace(stats=acc), labels
        value = jnp.where(ok, distortion, -jnp.inf)
        all_value = jnp.concatenate([c.far_value, value])
        top, pos = lax.top_k(all_value, k)
        return _Carry(
            stats=acc,
            far_value=top,
            far_x=jnp.concatenate([c.far_x, xs])[pos],
            far_weight=jnp.concatenate([c.far_weight, ws])[pos],
            far_label=jnp.concatenate([c.far_label, labels])[pos],
        ), labels

    carry, labels = lax.scan(body, carry, (xb, wb, valid))
    return carry, labels.reshape(-1)


@partial(jax.jit, static_argnames=("variant",))
def _update(
    variant: Variant,
    params: Params,
    carry: _Carry,
    prev_objective: jax.Array,
    n_iter: jax.Array,
    labels_same: jax.Array,
    tol: jax.Array,
    shift_scale: jax.Array,
    unit: jax.Array,
) -> tuple[Params, jax.Array, jax.Array]:
    """The M-step and stopping rule of one iteration, exactly as in ``fit_compiled``."""
    stats = carry.stats
    if variant.relocate is not None:
        stats = relocate_if_empty(
            variant,
            params,
            stats,
            lambda: FarPoints(
                x=carry.far_x,
                weight=carry.far_weight,
                label=carry.far_label,
                valid=jnp.isfinite(carry.far_value),
            ),
        )
    new_params = checked_m_step(variant, params, stats)
    objective = fit_objective(variant, params, carry.stats).astype(prev_objective.dtype)
    shift = centre_shift(variant, new_params, params, unit)
    done = stop_rule(
        hard=checked_is_hard(variant, params),
        labels_same=labels_same,
        shift=shift,
        shift_scale=shift_scale,
        objective=objective,
        previous=prev_objective,
        n_iter=n_iter,
        tol=tol,
    )
    return new_params, objective, done


@functools.lru_cache(maxsize=64)
def _stats_shapes(
    variant: Variant,
    treedef: Any,
    leaves: tuple[jax.ShapeDtypeStruct, ...],
    block_size: int,
    d: int,
    dtype: np.dtype,
    x64: bool,
) -> Stats:
    """The shapes of one block's statistics, traced once per variant and parameter shapes.

    Every pass starts its sum from zeros of these shapes; traced for each pass before, the
    E-step cost an out-of-core fit one trace per iteration. JAX's x64 flag is part of the key:
    a statistic of JAX's default dtype (an integer count) changes with it. The cache holds up to
    64 variants (and what their functions hold) beyond ``jax.clear_caches()``.

    Args:
        variant: the mixture variant.
        treedef: the parameters' tree structure.
        leaves: the parameters' leaves, abstract (:func:`~gmmlimit._variant.abstract`).
        block_size: rows per block.
        d: features.
        dtype: the rows' dtype.
        x64: ``jax.config.jax_enable_x64`` (a key only).

    Returns:
        The statistics as a tree of ``jax.ShapeDtypeStruct``.
    """
    shapes = jax.eval_shape(
        partial(block_pass, variant),
        jax.tree.unflatten(treedef, leaves),
        jax.ShapeDtypeStruct((block_size, d), dtype),
        jax.ShapeDtypeStruct((block_size,), dtype),
    )
    return shapes[0]


def _full_pass(
    variant: Variant,
    params: Params,
    make_iter: Callable[[], Iterator[np.ndarray]],
    weights: np.ndarray | None,
    n: int,
    d: int,
    dtype: np.dtype,
    chunk_rows: int,
    block_size: int,
    track: bool,
    labels_out: np.ndarray,
    exponent: int = 0,
    offset: np.ndarray | None = None,
    source_dtype: np.dtype | None = None,
) -> _Carry:
    """One E-step over all chunks; writes the labels into ``labels_out`` and returns the carry.

    Each chunk is computed as (x - offset) / 2^e (exact; ``_offset``, ``_rescale``). Every
    chunk must have the width ``d`` and the dtype ``source_dtype`` the validating scan found,
    and is checked again (finite, ``check_data``) before it is cast to ``dtype``: a source
    whose chunks change between passes raises ValueError, and no value is cast past its range.

    Raises:
        ValueError: on a chunk of another width or dtype than the scan's, holding NaN or inf or
            values the variant refuses, or a source whose length changed.
    """
    k = variant.means(params).shape[0]
    leaves, treedef = jax.tree.flatten(params)
    x64 = jax.config.jax_enable_x64
    specs = tuple(map(abstract, leaves))
    stats_shapes = _stats_shapes(variant, treedef, specs, block_size, d, np.dtype(dtype), x64)
    carry = _Carry(
        stats=jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), stats_shapes),
        far_value=jnp.full((k,), -jnp.inf, dtype),
        far_x=jnp.zeros((k, d), dtype),
        far_weight=jnp.zeros((k,), dtype),
        far_label=jnp.zeros((k,), jnp.int32),
    )
    start = 0
    for chunk in _rechunk(make_iter(), chunk_rows, d, source_dtype, _LATER_PASS):
        m = chunk.shape[0]
        if start + m > n:
            raise ValueError(f"the data source gave more than {n} rows on a later pass.")
        _check_chunk(chunk, start, variant.check_data)
        x = np.empty((chunk_rows, d), dtype)
        x[:m] = chunk
        if chunk.dtype != dtype:  # integers, or float16: the cast is checked as well
            _check_chunk(x[:m], start, None)
        x[m:] = chunk[0]
        if offset is not None:
            np.subtract(x, offset, out=x)
        if exponent:
            np.ldexp(x, -exponent, out=x)
        w = np.zeros((chunk_rows,), dtype)
        w[:m] = 1.0 if weights is None else weights[start : start + m]
        carry, labels = _chunk_pass(
            variant,
            params,
            jnp.asarray(x),
            jnp.asarray(w),
            carry,
            jnp.asarray(m, jnp.int32),
            block_size=block_size,
            track=track,
        )
        labels_out[start : start + m] = np.asarray(labels)[:m]
        start += m
    if start != n:
        raise ValueError(f"the data source gave {start} rows on one pass and {n} on another.")
    return carry


def fit_out_of_core(
    variant: Variant,
    X: Source,
    params: Params,
    *,
    max_iter: int = 300,
    tol: float = 1e-8,
    weights: Any = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
    chunk_blocks: int = DEFAULT_CHUNK_BLOCKS,
) -> FitResult:
    """Fit any variant over data read chunk by chunk, with the same result as :func:`~gmmlimit.fit`.

    Args:
        variant: the mixture variant.
        X: the data, read once per iteration: an (N, D) numpy array or ``np.memmap`` (sliced one
            chunk at a time), a re-iterable of (n_i, D) arrays (a list), or a zero-argument
            function returning a fresh iterator of them (e.g. one that reads files). One-shot
            iterators are refused, since a fit reads the data once per iteration.
        params: the variant's initial parameters.
        max_iter: maximum number of iterations.
        tol: stopping tolerance, as in :func:`~gmmlimit.fit`.
        weights: optional (N,) non-negative sample weights (held in memory).
        block_size: rows per E-step block; use the in-memory fit's block size to reproduce it.
        chunk_blocks: blocks per chunk moved to the device at once, at least 2 (memory:
            chunk_blocks * block_size * D values; 1 is read as 2, :func:`streamed_chunk_rows`).

    Returns:
        A :class:`~gmmlimit.FitResult`; ``labels`` is a host (N,) int32 numpy array.

    Raises:
        ValueError: on invalid data, parameters or options, before any fitting; on a chunk
            of a later pass that holds NaN/inf or values the variant refuses, or a source whose
            length changed.
    """
    return _fit_out_of_core(variant, X, params, max_iter, tol, weights, block_size, chunk_blocks)


def _first_dtype(make_iter: Callable[[], Iterator[np.ndarray]]) -> np.dtype | None:
    """The dtype of a source's first chunk (None for an empty source, refused later)."""
    for piece in make_iter():
        return np.asarray(piece[:0]).dtype.newbyteorder("=")  # big-endian data are read native
    return None


def _fit_out_of_core(
    variant: Variant,
    X: Source,
    params: Params,
    max_iter: int,
    tol: float,
    weights: Any,
    block_size: int,
    chunk_blocks: int,
    *,
    rescale: bool = False,
) -> FitResult:
    """:func:`fit_out_of_core`, with data past the scale window rescaled where asked.

    ``rescale`` (isotropic parameters only) runs such data as X / 2^e, as :func:`~gmmlimit.em`
    does, and maps the fit back (``_rescale``); otherwise a variant that declares its
    ``scaling`` runs them as the in-memory :func:`~gmmlimit.fit` does.
    """
    check_variant(variant)
    make_iter = _chunk_source(X)
    first = _first_dtype(make_iter)
    with dtype_scope(first):  # float64 data stay float64 (docs/design.md)
        max_iter = check_max_iter(max_iter)
        block_size = check_positive_int(block_size, "block_size")
        chunk_blocks = check_positive_int(chunk_blocks, "chunk_blocks")
        tol = check_tol(tol)
        rows = block_size * chunk_blocks
        # the scope's dtype is the scan's: float64 chunks of a scope chosen for float32 ones
        # would be computed, unchecked, in float32
        info = _scan_info(make_iter, rows, variant.check_data, first)
        n, d, dtype = info.n, info.d, info.dtype
        spec = jax.ShapeDtypeStruct((n, d), dtype)
        if variant.validate is not None:
            params = checked_validate(variant, spec, params)
        w, weight_exponent = None, 0
        if weights is not None and rescale:  # weights are relative (em's rule)
            w, weight_exponent = relative_weights(weights, n, dtype)
        elif weights is not None:
            w = check_weights(weights, n, dtype)
        w = None if w is None else np.asarray(w)
        scale, original, data_map = NO_SCALE, params, NO_MAP
        if rescale:  # as _rescale.prepare maps the data in memory
            scale = streamed_scale(
                info.lo, info.hi, info.largest, params.means, weight_exponent, dtype,
                info.counts, n,
            )  # fmt: skip
            exponent, offset = scale.data, scale.offset_array(dtype)
            data_largest = translated_largest(info.lo, info.hi, info.largest, offset)
            if scale.data or offset is not None:
                params = scale.params(original)
                check_scaled_sigma2(original.sigma2, params.sigma2, scale)
        else:  # a variant that declares its scaling, as _variant_scale maps it in memory
            data_map = variant_stream_map(
                variant, info.lo, info.hi, info.largest, variant.means(params), dtype,
                info.counts, n,
            )  # fmt: skip
            exponent, offset = data_map.exponent, data_map.offset
            data_largest = translated_largest(info.lo, info.hi, info.largest, offset)
            params = variant_params(variant, original, data_map)
        b = min(block_size, n)
        chunk_rows = streamed_chunk_rows(b, chunk_blocks)
        track = variant.relocate is not None
        tol_a = jnp.asarray(tol, dtype)
        spread = streamed_spread(info.spread, info.largest, data_largest, exponent, dtype)

        def run_pass(params: Params, labels_out: np.ndarray) -> _Carry:
            pass_args = (params, make_iter, w, n, d, dtype, chunk_rows, b, track, labels_out)
            return _full_pass(
                variant, *pass_args, exponent=exponent, offset=offset,
                source_dtype=info.source_dtype,
            )  # fmt: skip

        result = _pass_loop(variant, params, run_pass, n, dtype, max_iter, tol_a, spread)

        def total() -> jax.Array:  # the weights' sum, as em sums them
            return jnp.asarray(n, dtype) if w is None else jnp.sum(jnp.asarray(w))

        if not rescale:
            return variant_result(variant, result, data_map, total)
        if scale == NO_SCALE:
            return result
        return scaled_back(result, scale, original.sigma2, params.sigma2, total, dtype)


def _pass_loop(
    variant: Variant,
    params: Params,
    run_pass: Callable[[Params, np.ndarray], _Carry],
    n: int,
    dtype: np.dtype,
    max_iter: int,
    tol: jax.Array,
    spread: tuple[jax.Array, jax.Array],
    combine: Callable[[_Carry, bool], tuple[_Carry, bool]] | None = None,
) -> FitResult:
    """The host loop of a fit whose passes stream from a source: pass, stop rule, M-step.

    Args:
        variant: the mixture variant.
        params: validated initial parameters.
        run_pass: ``(params, labels_out (n,)) -> carry``, one whole pass over this process's
            rows, writing their labels into ``labels_out``.
        n: this process's number of rows.
        dtype: the data's dtype.
        max_iter: the maximum number of iterations.
        tol: the tolerance.
        spread: ``(shift_scale, unit)``: the data's mean per-feature variance in ``unit``
            (scales a hard fit's ``tol``), and that power of two (:func:`streamed_spread`).
        combine: optional ``(carry, same) -> (carry, same)`` joining the passes of several
            processes (statistics summed, label tests and-ed); None for one process.

    Returns:
        The :class:`FitResult` (labels of this process's rows).
    """
    history = np.zeros((max_iter,), dtype)
    labels = np.full((n,), -1, np.int32)
    new_labels = np.empty((n,), np.int32)
    objective = jnp.asarray(-np.inf, dtype)
    n_iter = 0
    done = False
    while not done and n_iter < max_iter:
        carry = run_pass(params, new_labels)
        same = bool(np.array_equal(new_labels, labels))
        if combine is not None:
            carry, same = combine(carry, same)
        params, objective, stop = _update(
            variant,
            params,
            carry,
            objective,
            jnp.asarray(n_iter, jnp.int32),
            jnp.asarray(same),
            tol,
            *spread,
        )
        history[n_iter] = np.asarray(objective, dtype)
        labels, new_labels = new_labels, labels
        n_iter += 1
        done = bool(stop)
    # track as in the loop: one compiled chunk program serves every pass.
    final = run_pass(params, new_labels)
    if combine is not None:
        final, _ = combine(final, True)
    final_objective = jnp.asarray(fit_objective(variant, params, final.stats), dtype)
    history[n_iter:] = np.asarray(final_objective)
    return FitResult(
        means=variant.means(params),
        labels=new_labels,
        n_iter=jnp.asarray(n_iter, jnp.int32),
        converged=jnp.asarray(done),
        objective=final_objective,
        history=jnp.asarray(history),
        params=params,
        distortion=jnp.asarray(final.stats.distortion, dtype),
    )


def kmeans_out_of_core(
    X: Source,
    init_means: Any,
    *,
    max_iter: int = 300,
    tol: float = 0.0,
    weights: Any = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
    chunk_blocks: int = DEFAULT_CHUNK_BLOCKS,
) -> FitResult:
    """Lloyd's K-means over chunked data; the same result as :func:`~gmmlimit.kmeans`.

    Args:
        X: the data source (see :func:`fit_out_of_core`).
        init_means: (K, D) initial means.
        max_iter: maximum number of iterations.
        tol: centre-shift tolerance, as in :func:`~gmmlimit.kmeans`.
        weights: optional (N,) sample weights.
        block_size: rows per E-step block.
        chunk_blocks: blocks per chunk.

    Returns:
        The :class:`~gmmlimit.FitResult` (labels on the host).
    """
    params = IsotropicParams(init_means, np.zeros((), np.float64))
    return _isotropic(X, params, max_iter, tol, weights, block_size, chunk_blocks)


def em_out_of_core(
    X: Source,
    init_means: Any,
    sigma2: Any,
    *,
    max_iter: int = 300,
    tol: float = 1e-8,
    weights: Any = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
    chunk_blocks: int = DEFAULT_CHUNK_BLOCKS,
) -> FitResult:
    """EM for the isotropic mixture over chunked data; the same result as :func:`~gmmlimit.em`.

    Args:
        X: the data source (see :func:`fit_out_of_core`).
        init_means: (K, D) initial means.
        sigma2: the shared variance, >= 0 (0 runs K-means).
        max_iter: maximum number of iterations.
        tol: relative log-likelihood gain tolerance.
        weights: optional (N,) sample weights.
        block_size: rows per E-step block.
        chunk_blocks: blocks per chunk.

    Returns:
        The :class:`~gmmlimit.FitResult` (labels on the host).
    """
    with dtype_scope(np.float64):  # checked at float64 before any chunk is read, not truncated
        check_sigma2(sigma2, np.float64)
    params = IsotropicParams(init_means, sigma2)
    return _isotropic(X, params, max_iter, tol, weights, block_size, chunk_blocks)


def _isotropic(
    X: Source,
    params: IsotropicParams,
    max_iter: int,
    tol: float,
    weights: Any,
    block_size: int,
    chunk_blocks: int,
) -> FitResult:
    return _fit_out_of_core(
        isotropic, X, params, max_iter, tol, weights, block_size, chunk_blocks, rescale=True
    )
