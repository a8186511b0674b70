"""Fits with the rows sharded over several devices (a ``jax.sharding.Mesh``).

The fit is the one driver loop (``_driver.fit_loop``) with its streamed E-step replaced: every
device scans its own blocks of rows, and the sufficient statistics are summed across devices
with ``psum`` (the running top-K farthest rows, used to relocate empty clusters, are gathered and
merged). Parameters are replicated, so every device runs the same M-step on the same totals.
The result equals the one-device fit up to the order of floating-point summation (labels,
iteration counts and stopping decisions agree unless a sum lands within rounding of a tie).

One host with several GPUs: ``jax.devices()`` lists them and the default mesh uses them all.
Several processes (hosts, or local processes started by ``python -m gmmlimit.launch``): every
process joins the cluster first (:func:`gmmlimit.launch.initialize`), builds the mesh from
``jax.devices()`` (all processes' devices) and passes either the same host array, or a global
array of which it holds only its own rows (``jax.make_array_from_process_local_data``). A global
array is never gathered: each process validates its own rows, the processes agree on the
outcome before anything is fitted, and each device pads and blocks its rows where they lie. A
host array on a mesh of several processes is validated whole by every process, and the
processes agree on that outcome and on a digest of the array before anything is fitted.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ._driver import (
    DEFAULT_BLOCK_SIZE,
    Blocks,
    FitResult,
    _Farthest,
    data_spread,
    e_pass,
    fit_loop,
    history_length,
    host_spread_unit,
    pad_rows,
    trim_history,
)
from ._offset import candidate_windows, feature_range, translated_largest, window_counts
from ._outofcore import (
    _LATER_PASS,
    DEFAULT_CHUNK_BLOCKS,
    _Carry,
    _check_first_dtype,
    _chunk_source,
    _first_dtype,
    _full_pass,
    _pass_loop,
    _rechunk,
    streamed_chunk_rows,
    streamed_spread,
)
from ._rescale import (
    NO_SCALE,
    check_scaled_sigma2,
    fit_rescaled,
    scaled_back,
    streamed_scale,
)
from ._validation import (
    _check_weights_scale,
    as_data,
    check_block_size,
    check_fit_inputs,
    check_k,
    check_max_iter,
    check_positive_int,
    check_sigma2,
    check_tol,
    check_weights,
    dtype_scope,
    float64_scope,
    largest_magnitude,
    with_float64_scope,
)
from ._variant import Params, Variant, check_variant, checked_validate
from ._variant_scale import (
    NO_MAP,
    variant_fit_map,
    variant_params,
    variant_result,
    variant_stream_map,
)
from .variants._isotropic import IsotropicParams, isotropic, validate_params

__all__ = [
    "default_mesh",
    "em_sharded",
    "fit_out_of_core_processes",
    "fit_sharded",
    "kmeans_sharded",
]


def default_mesh(axis_name: str = "rows") -> Mesh:
    """A one-axis mesh over all devices (of every process, after ``jax.distributed``)."""
    return Mesh(np.asarray(jax.devices()), (axis_name,))


def _sharded_pass(mesh: Mesh, axis: str, local_rows: int) -> Any:
    """An ``e_pass`` replacement: per-device streamed E-steps, statistics summed across devices."""

    def pass_fn(
        variant: Variant, params: Params, blocks: Blocks, *, track_farthest: bool = False
    ) -> tuple[Any, jax.Array, _Farthest | None]:
        def local(params: Params, x: jax.Array, w: jax.Array, valid: jax.Array) -> Any:
            stats, labels, far = e_pass(
                variant, params, Blocks(x, w, valid), track_farthest=track_farthest
            )
            # Padding rows get label -1 always, so the "no label changed" rule and the result
            # depend only on real rows, however the rows were padded on each device.
            labels = jnp.where(valid.reshape(-1), labels, -1)
            stats = lax.psum(stats, axis)
            if not track_farthest:
                return stats, labels, None
            k = far.value.shape[0]

            def merged() -> _Farthest:
                index = lax.axis_index(axis).astype(jnp.int32) * local_rows + far.index
                # Device-major order keeps ties going to the lowest global row, as on one device.
                values = lax.all_gather(far.value, axis).reshape(-1)
                indices = lax.all_gather(index, axis).reshape(-1)
                top, pos = lax.top_k(values, k)
                return _Farthest(top, indices[pos])

            def unused() -> _Farthest:
                return _Farthest(jnp.full((k,), -jnp.inf, far.value.dtype), far.index)

            # The farthest rows are read only when a component is empty (the totals are the same
            # on every device, so all take the same branch): no all-gather otherwise.
            return stats, labels, lax.cond(jnp.any(stats.counts == 0), merged, unused)

        out_far = P() if track_farthest else None
        return jax.shard_map(
            local,
            mesh=mesh,
            in_specs=(P(), P(axis), P(axis), P(axis)),
            out_specs=(P(), P(axis), out_far),
            check_vma=False,
        )(params, blocks.x, blocks.weight, blocks.valid)

    return pass_fn


def _shard_blocks(
    X: jax.Array, w: jax.Array, n_dev: int, block_size: int, sharding: NamedSharding
) -> tuple[Blocks, int]:
    """Pad the rows to n_dev * blocks_per_device * B and shard the blocks over the devices."""
    n, d = X.shape
    b = max(1, min(block_size, -(-n // n_dev)))
    per_dev = -(-n // (n_dev * b))
    total = n_dev * per_dev * b
    pad = total - n
    valid = np.arange(total) < n
    # zero-weight copies of the first row: no variant function sees a value that is not data
    Xp = jnp.concatenate([X, jnp.broadcast_to(X[:1], (pad, d))]) if pad else X
    wp = jnp.concatenate([w, jnp.zeros((pad,), w.dtype)]) if pad else w
    blocks = Blocks(
        x=jax.device_put(Xp.reshape(n_dev * per_dev, b, d), sharding),
        weight=jax.device_put(wp.reshape(n_dev * per_dev, b), sharding),
        valid=jax.device_put(jnp.asarray(valid).reshape(n_dev * per_dev, b), sharding),
    )
    return blocks, per_dev * b


@partial(jax.jit, static_argnames=("variant", "n", "history", "mesh", "axis", "local_rows"))
def _fit_sharded_compiled(
    variant: Variant,
    blocks: Blocks,
    params: Params,
    tol: jax.Array,
    spread: tuple[jax.Array, jax.Array],
    max_iter: jax.Array,
    *,
    n: int,
    history: int,
    mesh: Mesh,
    axis: str,
    local_rows: int,
) -> FitResult:
    """The sharded fit loop; ``max_iter`` is traced, the history's length static (as in-memory).

    ``spread`` is ``(unit, shift_scale)`` of :func:`~gmmlimit._driver.data_spread`.
    """
    unit, shift_scale = spread
    return fit_loop(
        variant,
        blocks,
        n,
        params,
        tol,
        shift_scale,
        unit=unit,
        max_iter=max_iter,
        history=history,
        pass_fn=_sharded_pass(mesh, axis, local_rows),
    )


def fit_sharded(
    variant: Variant,
    X: Any,
    params: Params,
    *,
    mesh: Mesh | None = None,
    axis_name: str | None = None,
    max_iter: int = 300,
    tol: float = 1e-8,
    weights: Any = None,
    block_size: int | None = None,
) -> FitResult:
    """Fit any variant with the rows sharded over the devices of a mesh axis.

    Args:
        variant: the mixture variant.
        X: (N, D) data: a host array (on a mesh of several processes, every process passes
            the same one), or a ``jax.Array`` spread over several processes, each holding only
            its own rows (made with ``jax.make_array_from_process_local_data``; N must then
            split evenly over the mesh axis). Such an array is validated by each process on its
            own rows.
        params: the variant's initial parameters (replicated on every device; every process
            passes the same).
        mesh: a ``jax.sharding.Mesh``; default: all devices on one axis named ``"rows"``.
        axis_name: the mesh axis the rows are split over; default: the mesh's first axis.
        max_iter: maximum number of iterations.
        tol: stopping tolerance, as in :func:`~gmmlimit.fit`.
        weights: optional (N,) non-negative sample weights; with a global ``X``, a host array
            (the same on every process) or a global array sharded like ``X``'s rows.
        block_size: rows per E-step block on each device (clipped to the rows per device);
            None (default) takes the devices' (:func:`gmmlimit.scale.default_block_size` of
            the rows per device).

    Returns:
        A :class:`~gmmlimit.FitResult`, replicated (labels sharded like the rows). When ``X``
        is a global array of several processes, ``labels`` is one too, (N,) in X's row order:
        ``jax.experimental.multihost_utils.process_allgather(res.labels, tiled=True)`` gathers
        them, ``res.labels.addressable_shards`` holds this process's own.

    Raises:
        ValueError: on invalid data, parameters, options, or an axis the mesh lacks; for a
            global array of several processes, on every process when any one finds its rows
            invalid (the message names that process), or when the processes pass different
            parameters or options (the variant, ``max_iter``, ``tol``, ``block_size``, the
            mesh and axis, the weights' kind; the message names each that differs), before
            any fitting: every process runs one compiled loop, collectives included. For a
            host array on a mesh of several processes, likewise on every process when any one
            finds the array, weights, parameters or options invalid (naming that process), or
            when the processes pass different parameters, options or host arrays (``X`` and
            host weights must be identical on every process: their digests are compared).
    """
    check_variant(variant)
    mesh, axis = _mesh_axis(mesh, axis_name)
    if _spans_processes(X):
        return _fit_global(variant, X, params, mesh, axis, max_iter, tol, weights, block_size)
    return _fit_host(
        variant, X, params, mesh, axis, max_iter, tol, weights, block_size, agree="fit_sharded"
    )


def _fit_host(
    variant: Variant,
    X: Any,
    params: Params,
    mesh: Mesh,
    axis: str,
    max_iter: Any,
    tol: Any,
    weights: Any,
    block_size: Any,
    *,
    agree: str | None,
    mapped: bool = False,
) -> FitResult:
    """:func:`fit_sharded` of a host array, the same on every process of the mesh.

    Args:
        variant: the mixture variant.
        X: (N, D) host data, as given.
        params: the initial parameters, as given.
        mesh: the mesh (Auto axes, from :func:`_mesh_axis`).
        axis: its rows' axis.
        max_iter: maximum number of iterations, as given.
        tol: stopping tolerance, as given.
        weights: None or (N,) host weights, as given.
        block_size: rows per block on each device, or None, as given.
        agree: the public function's name, which the processes of a mesh spanning several
            agree on with everything else (:func:`_agree_host`) before any fit work; None
            where the caller agreed already (on the inputs this fit derives from).
        mapped: the caller translated and rescaled the data (``_rescale.fit_rescaled``):
            they are fit as given, never translated a second time (the offset rule is not
            idempotent on translated data), as ``_api._fit(mapped=True)``.

    Returns:
        The :class:`~gmmlimit.FitResult`.
    """
    with float64_scope(X):  # float64 data stay float64 (docs/design.md)
        n_dev = int(mesh.shape[axis])

        def checks() -> tuple[jax.Array, Params, jax.Array, int, int, float]:
            data = as_data(X)
            return data, *check_fit_inputs(
                variant, data, params, weights, max_iter, block_size, tol,
                rows=-(-data.shape[0] // n_dev), backend=_platform(mesh),
            )  # fmt: skip

        if agree is None:
            checked = checks()
        else:
            checked = _agree_host(
                checks, agree, variant, X, params, weights, mesh, axis, max_iter, tol, block_size
            )
        X, params, w, max_iter, block_size, tol = checked
        data_map = NO_MAP if mapped else variant_fit_map(variant, X, variant.means(params))
        if not data_map.identity:  # a variant that declares its scaling, as in fit
            X, params = data_map.data(X), variant_params(variant, params, data_map)
        blocks, local_rows = _shard_blocks(X, w, n_dev, block_size, NamedSharding(mesh, P(axis)))
        spread = data_spread(X)
        params = jax.device_put(params, NamedSharding(mesh, P()))
        result = _fit_sharded_compiled(
            variant,
            blocks,
            params,
            jnp.asarray(tol, X.dtype),
            spread,
            max_iter,
            n=X.shape[0],
            history=history_length(max_iter),
            mesh=mesh,
            axis=axis,
            local_rows=local_rows,
        )
        return variant_result(variant, trim_history(result, max_iter), data_map, lambda: jnp.sum(w))


@with_float64_scope
def kmeans_sharded(
    X: Any,
    init_means: Any,
    *,
    mesh: Mesh | None = None,
    max_iter: int = 300,
    tol: float = 0.0,
    weights: Any = None,
    block_size: int | None = None,
) -> FitResult:
    """Lloyd's K-means with the rows sharded over a mesh (see :func:`fit_sharded`).

    Args:
        X: (N, D) data, a host array or a global array of several processes.
        init_means: (K, D) initial means.
        mesh: the device mesh; default all devices.
        max_iter: maximum number of iterations.
        tol: centre-shift tolerance, as in :func:`~gmmlimit.kmeans`.
        weights: optional (N,) sample weights (host, or global like ``X``).
        block_size: rows per block on each device; None (default) as in :func:`fit_sharded`.

    Returns:
        The :class:`~gmmlimit.FitResult`.
    """
    return _isotropic_sharded(X, init_means, None, mesh, max_iter, tol, weights, block_size)


@with_float64_scope
def em_sharded(
    X: Any,
    init_means: Any,
    sigma2: Any,
    *,
    mesh: Mesh | None = None,
    max_iter: int = 300,
    tol: float = 1e-8,
    weights: Any = None,
    block_size: int | None = None,
) -> FitResult:
    """EM for the isotropic mixture with the rows sharded over a mesh (see :func:`fit_sharded`).

    Args:
        X: (N, D) data, a host array or a global array of several processes.
        init_means: (K, D) initial means.
        sigma2: shared variance >= 0 (0 runs K-means).
        mesh: the device mesh; default all devices.
        max_iter: maximum number of iterations.
        tol: relative log-likelihood gain tolerance.
        weights: optional (N,) sample weights (host, or global like ``X``).
        block_size: rows per block on each device; None (default) as in :func:`fit_sharded`.

    Returns:
        The :class:`~gmmlimit.FitResult`.
    """
    return _isotropic_sharded(X, init_means, sigma2, mesh, max_iter, tol, weights, block_size)


def _isotropic_params(X: Any, init_means: Any, sigma2: Any) -> IsotropicParams:
    """The isotropic parameters as given: sigma2 checked in X's dtype, 0 where it is None."""
    dtype = _data_dtype(X)
    scale = jnp.zeros((), dtype) if sigma2 is None else check_sigma2(sigma2, dtype)
    return IsotropicParams(init_means, scale)


def _isotropic_sharded(
    X: Any,
    init_means: Any,
    sigma2: Any,
    mesh: Mesh | None,
    max_iter: Any,
    tol: Any,
    weights: Any,
    block_size: Any,
) -> FitResult:
    """The isotropic sharded fit; host data past the scale window run rescaled, as in em.

    ``sigma2`` None is K-means (``kmeans_sharded``).
    """
    if _spans_processes(X):  # rescaled where the processes' rows are known
        params = _isotropic_params(X, init_means, sigma2)
        mesh, axis = _mesh_axis(mesh, None)
        return _fit_global(
            isotropic, X, params, mesh, axis, max_iter, tol, weights, block_size, rescale=True
        )
    mesh, axis = _mesh_axis(mesh, None)

    def run(Xs: jax.Array, scaled: IsotropicParams, w: jax.Array) -> FitResult:
        # on a mesh of several processes, they agreed below on what Xs, scaled and w derive from
        return _fit_host(
            isotropic, Xs, scaled, mesh, axis, max_iter, tol, w, block_size, agree=None,
            mapped=True,
        )  # fmt: skip

    if not _mesh_spans_processes(mesh):  # one process: nothing to agree on, no collective
        params = _isotropic_params(X, init_means, sigma2)
        return fit_rescaled(run, as_data(X), params, weights)

    def checks() -> tuple[jax.Array, IsotropicParams]:
        params = _isotropic_params(X, init_means, sigma2)
        data = as_data(X)
        validate_params(data, params)
        check_weights(weights, data.shape[0], data.dtype, check_scale=False)
        return data, params

    function = "kmeans_sharded" if sigma2 is None else "em_sharded"
    data, params = _agree_host(
        checks, function, isotropic, X, (init_means, sigma2), weights, mesh, axis, max_iter,
        tol, block_size,
    )  # fmt: skip
    return fit_rescaled(run, data, params, weights)


def _mesh_axis(mesh: Mesh | None, axis_name: str | None) -> tuple[Mesh, str]:
    """The mesh a sharded fit runs on (default: all devices) and its rows' axis (default first).

    Raises:
        ValueError: if ``mesh`` is not a Mesh or lacks ``axis_name``.
    """
    mesh = default_mesh() if mesh is None else mesh
    if not isinstance(mesh, Mesh):
        raise ValueError(f"mesh must be a jax.sharding.Mesh; got {type(mesh)}.")
    axis = mesh.axis_names[0] if axis_name is None else axis_name
    if axis not in mesh.axis_names:
        raise ValueError(f"axis_name {axis!r} is not an axis of the mesh {mesh.axis_names}.")
    # jax.make_mesh gives Explicit axes, under which the driver's gathers would need an output
    # sharding spelled out; the fit runs on the same devices with Auto axes instead.
    axis_types = (AxisType.Auto,) * len(mesh.axis_names)
    return Mesh(mesh.devices, mesh.axis_names, axis_types=axis_types), axis


# ----------------------------------------------------------------------------------------------
# Global arrays whose rows live in several processes.


def _spans_processes(X: Any) -> bool:
    """Whether ``X`` is a ``jax.Array`` with rows on devices of other processes."""
    return isinstance(X, jax.Array) and not X.is_fully_addressable


def _data_dtype(X: Any) -> jnp.dtype:
    """The dtype a fit of ``X`` computes in, from its dtype alone.

    ``fit_sharded`` validates X itself; a global array's values are not read here, and no array
    is converted twice.
    """
    dtype = X.dtype if hasattr(X, "dtype") else np.asarray(X).dtype
    return as_data(np.zeros((1, 1), dtype)).dtype


def _process_rows(X: jax.Array) -> np.ndarray:
    """This process's rows of a row-sharded array, in global row order, each row once."""
    shards = [s for s in X.addressable_shards if s.replica_id == 0]
    shards.sort(key=lambda s: s.index[0].start or 0)
    if not shards:
        return np.zeros((0, *X.shape[1:]), X.dtype)
    return np.concatenate([np.asarray(s.data) for s in shards])


_MESSAGE_BYTES = 400
_ERROR_BYTES = 1 + _MESSAGE_BYTES
_OPTIONS_BYTES = 1000


def _error_message(err: Exception) -> str:
    """The words another process reads for this process's failure."""
    return str(err) if isinstance(err, ValueError) else f"{type(err).__name__}: {err}"


def _error_record(error: str | None) -> np.ndarray:
    """(_ERROR_BYTES,) uint8: 1 where this process failed, then its message (UTF-8, cut)."""
    text = (error or "").encode("utf-8")[:_MESSAGE_BYTES]
    record = np.zeros(_ERROR_BYTES, np.uint8)
    record[0] = error is not None
    record[1 : 1 + len(text)] = np.frombuffer(text, np.uint8)
    return record


def _raise_reported(records: np.ndarray, cause: BaseException | None = None) -> None:
    """Raise the first failure the processes reported, the same ValueError on every process.

    Args:
        records: (P, _ERROR_BYTES) uint8, every process's :func:`_error_record` in process
            order.
        cause: this process's own exception, if it failed (chained for its traceback).

    Raises:
        ValueError: ``process i: <its message>`` for the first process i that failed.
    """
    for index, row in enumerate(np.asarray(records)):
        if row[0]:
            message = bytes(row[1:]).rstrip(b"\0").decode("utf-8", "replace")
            raise ValueError(f"process {index}: {message}") from cause


def _option_values(**options: Any) -> dict[str, str]:
    """The options every process of a fit must pass alike, each written as its ``repr``."""
    return {name: repr(value) for name, value in options.items()}


def _variant_name(variant: Variant) -> str:
    """A variant's name, and whether an engine computes its E-step (the same on every process)."""
    name = str(getattr(variant, "name", type(variant).__name__))
    return name if getattr(variant, "engine", None) is None else f"{name} with an engine"


def _options_record(options: Mapping[str, str] | None) -> np.ndarray:
    """16 bytes of digest of the options, then their JSON text (cut at ``_OPTIONS_BYTES``)."""
    text = json.dumps(dict(options or {}), sort_keys=True).encode("utf-8")
    record = np.zeros(16 + _OPTIONS_BYTES, np.uint8)
    record[:16] = np.frombuffer(hashlib.blake2b(text, digest_size=16).digest(), np.uint8)
    cut = text[:_OPTIONS_BYTES]
    record[16 : 16 + len(cut)] = np.frombuffer(cut, np.uint8)
    return record


def _check_options(records: np.ndarray) -> None:
    """Raise ValueError when the processes' option records (:func:`_options_record`) differ.

    Args:
        records: (P, 16 + _OPTIONS_BYTES) uint8, every process's record in process order.

    Raises:
        ValueError: naming each option that differs and its value on every process.
    """
    digests = [bytes(row[:16]) for row in records]
    if all(each == digests[0] for each in digests):
        return
    try:
        each = [json.loads(bytes(row[16:]).rstrip(b"\0").decode("utf-8")) for row in records]
    except ValueError:  # options too long to send whole: named by their digest only
        each = None
    differ = []
    if each is not None:
        for name in sorted(set().union(*each)):
            values = [one.get(name, "(not given)") for one in each]
            if any(value != values[0] for value in values):
                per = ", ".join(f"{value} on process {i}" for i, value in enumerate(values))
                differ.append(f"{name} is {per}")
    detail = "; ".join(differ) if differ else "their digests differ"
    # a host X, or host weights, whose bytes differ between the processes
    host = "; a host X and host weights must be identical on every process"
    raise ValueError(
        f"the processes passed different options ({detail}); every process must pass the same "
        f"parameters and options{host if _HOST_ARRAY in detail else ''}."
    )


def _agree(
    error: str | None,
    positive: int,
    fingerprint: bytes,
    largest: float = 0.0,
    layout: tuple[int, ...] = (),
    options: Mapping[str, str] | None = None,
) -> float:
    """Exchange each process's validation outcome; raise the same ValueError on every process.

    One collective, called by every process before any fit work: a process that went on with
    other options than another (``max_iter``, ``tol``, ``block_size``, ...) would wait in a
    collective the other never reaches.

    Args:
        error: this process's validation message, or None.
        positive: how many of this process's rows have positive weight.
        fingerprint: 16 bytes identifying the parameters this process passed.
        largest: the largest magnitude of this process's rows.
        layout: (D, dtype code) of this process's rows, where each process reads its own, and
            for a global array the global row count it sees (``(D, dtype code, N)``: JAX
            infers a global shape from each process's own rows, so uneven rows give each
            process another N); () where every process holds the same array.
        options: the options that must agree, name to ``repr`` of the value
            (:func:`_option_values`); None for none.

    Returns:
        The largest magnitude of every process's rows.

    Raises:
        ValueError: naming the first process that found a problem, when the processes' rows
            differ in width, dtype or global row count, when they passed different options
            (naming each and its value on every process) or different parameters (checked
            after the layout: parameters validated against other dtypes differ), or when no row
            of any process has positive weight.
    """
    head = _ERROR_BYTES  # the error record, then the fields
    tail = head + 8 + 16 + 8 + 8 * _LAYOUT_FIELDS
    record = np.zeros(tail + 16 + _OPTIONS_BYTES, np.uint8)
    record[:head] = _error_record(error)
    record[head : head + 8] = np.frombuffer(np.int64(positive).tobytes(), np.uint8)
    record[head + 8 : head + 24] = np.frombuffer(fingerprint, np.uint8)
    record[head + 24 : head + 32] = np.frombuffer(np.float64(largest).tobytes(), np.uint8)
    fields = np.zeros(_LAYOUT_FIELDS, np.int64)
    fields[: len(layout)] = layout
    record[head + 32 : tail] = np.frombuffer(fields.tobytes(), np.uint8)
    record[tail:] = _options_record(options)
    records = np.asarray(multihost_utils.process_allgather(record))
    _raise_reported(records[:, :head])
    layouts = [np.frombuffer(bytes(row[head + 32 : tail]), np.int64).tolist() for row in records]
    if any(each[:2] != layouts[0][:2] for each in layouts):
        raise ValueError(
            f"the processes' data differ in width or dtype (D, dtype code per process: "
            f"{[each[:2] for each in layouts]}: "
            f"{', '.join(_layout_text(each) for each in layouts)}); every process must hold "
            "rows of the same D and dtype."
        )
    if any(each != layouts[0] for each in layouts):
        raise ValueError(
            "the processes see global arrays of different row counts (N per process: "
            f"{[each[2] for each in layouts]}): jax.make_array_from_process_local_data infers "
            "the global shape from each process's own rows, so every process must hold as many "
            "rows, or pass the same global_shape on every process."
        )
    _check_options(records[:, tail:])
    fingerprints = [bytes(row[head + 8 : head + 24]) for row in records]
    if any(each != fingerprints[0] for each in fingerprints):
        raise ValueError(
            "the processes passed different initial parameters; every process must pass the same."
        )
    positives = [np.frombuffer(bytes(row[head : head + 8]), np.int64)[0] for row in records]
    if sum(int(each) for each in positives) == 0:
        raise ValueError("weights are all zero; at least one sample needs positive weight.")
    largests = [np.frombuffer(bytes(row[head + 24 : head + 32]), np.float64)[0] for row in records]
    return max(float(each) for each in largests)


_LAYOUT_FIELDS = 3
"""The int64 fields of :func:`_agree`'s layout: D, the dtype code and the global N."""


def _layout_text(layout: list[int]) -> str:
    """``D=4 float32`` from a layout's (D, dtype code) (the code is NumPy's ``dtype.num``)."""
    names = {np.dtype(t).num: np.dtype(t).name for t in set(np.sctypeDict.values())}
    return f"D={layout[0]} {names.get(layout[1], f'dtype code {layout[1]}')}"


def _fingerprint(params: Params) -> bytes:
    """A digest of the parameters' values, to check that every process passed the same."""
    digest = hashlib.blake2b(digest_size=16)
    for leaf in jax.tree.leaves(params):
        host = np.ascontiguousarray(np.asarray(leaf))
        digest.update(str((host.dtype, host.shape)).encode())
        digest.update(host.tobytes())
    return digest.digest()


def _check_global_weights(local_largest: float, dtype: Any) -> None:
    """Refuse weights whose largest, over every process, lies outside the dtype's scale window.

    Called on every process after :func:`_agree`, always (one collective each), as
    ``check_weights`` refuses such host weights: weighted sums would overflow, or the weights
    flush to zero in ``dtype``. Every process reads the same largest, so the same verdict.

    Args:
        local_largest: this process's largest weight, read before any cast (1 for unit weights,
            0 when it holds no rows).
        dtype: the data's dtype.

    Raises:
        ValueError: on every process, naming the largest weight.
    """
    largest = float(_gather_host(np.asarray(local_largest, np.float64)).max())
    _check_weights_scale(np.asarray([largest]), np.dtype(dtype))


def _validate_process_rows(
    variant: Variant,
    X: jax.Array,
    w: jax.Array | None,
    params: Params,
    options: Mapping[str, str] | None = None,
) -> tuple[Params, float, np.ndarray, np.ndarray, np.ndarray | None]:
    """Validate each process's own rows and the parameters, and agree on the outcome.

    Returns the checked parameters, the largest magnitude of every process's rows, the (D,)
    smallest and largest value of each feature over every process's rows (float64), and the
    (2, D) window counts of every process's rows where those extremes ask for them
    (:func:`_global_counts`; else None).
    ``options`` (:func:`_option_values`) must be the same on every process (:func:`_agree`).

    The data are checked by :func:`as_data` and the weights by :func:`check_weights` on this
    process's rows only; the variant's own checks (``validate``) run on them too. Only the
    bound K <= N is global: a process holding fewer than K rows passes the variant its rows
    repeated up to K (the same values, so the same verdict on them), and K is then checked
    against the global N.
    """
    error = None
    positive = 0
    largest = 0.0
    checked = params
    d = int(X.shape[1]) if X.ndim == 2 else 0
    lo, hi = np.full(d, np.inf), np.full(d, -np.inf)
    layout: tuple[int, ...] = ()
    try:
        # each process's view of the global array: uneven rows (another global N), or rows of
        # another dtype on one process, named before the parameters' fingerprints (validated in
        # that dtype) are compared
        layout = (d, np.dtype(X.dtype).num, int(X.shape[0]))
        local = _process_rows(X)
        if local.shape[0]:
            local_x = as_data(local)
        else:  # this process holds no rows: nothing of the data to check here
            local_x = as_data(np.zeros((1, X.shape[1]), X.dtype))[:0]
        positive = local_x.shape[0]
        if local_x.shape[0]:
            largest = largest_magnitude(local_x)
            lo, hi = (np.asarray(e, np.float64) for e in feature_range(local_x))
        if w is not None and local_x.shape[0]:
            # check_weights's other checks, but "all zero" only holds over every process.
            local_w = np.asarray(_process_rows(w), np.float64)
            if not np.all(np.isfinite(local_w)):
                raise ValueError("weights contain NaN or inf values.")
            if np.any(local_w < 0):
                raise ValueError(
                    f"weights must be non-negative; found {int(np.sum(local_w < 0))} < 0."
                )
            positive = int(np.count_nonzero(local_w > 0))
        if variant.check_data is not None and local_x.shape[0]:
            variant.check_data(np.asarray(local_x))
        if variant.validate is not None:
            k = int(np.shape(variant.means(params))[0])
            rows = local_x if local_x.shape[0] >= k else _repeat_rows(local_x, k)
            checked = checked_validate(variant, rows, params)
            check_k(k, int(X.shape[0]))
        fingerprint = _fingerprint(params)
    except Exception as err:  # any failure must reach the other processes, or they would hang
        error = _error_message(err)
        fingerprint = bytes(16)
    largest = _agree(error, positive, fingerprint, largest, layout, options=options)
    local_w = np.asarray(_process_rows(w), np.float64) if w is not None else np.ones(1)
    _check_global_weights(float(local_w.max()) if local_w.size else 0.0, _data_dtype(X))
    lo, hi = _global_range(lo, hi)
    counts = _global_counts(local_x, lo, hi, _data_dtype(X))
    return checked, largest, lo, hi, counts


def _global_range(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each feature's (D,) extremes over every process (a collective: every process calls it).

    Args:
        lo: (D,) this process's smallest value per feature (+inf where it holds no rows).
        hi: (D,) its largest (-inf where it holds no rows).

    Returns:
        ``(lo, hi)`` over every process, float64 (exact for the data's values).
    """
    both = _gather_host(np.stack([np.asarray(lo, np.float64), np.asarray(hi, np.float64)]))
    return both[:, 0].min(axis=0), both[:, 1].max(axis=0)


def _global_counts(local: Any, lo: np.ndarray, hi: np.ndarray, dtype: Any) -> np.ndarray | None:
    """The offset's window counts over every process's rows, where the extremes ask for them.

    Every process reads the same global extremes, so every process or none takes part in the
    exchange (a collective). The counts are integers: their sum is that of the rows together.

    Args:
        local: (N_p, D) this process's rows (N_p may be 0; copied to the host only where
            counted).
        lo: (D,) each feature's smallest value over every process (:func:`_global_range`).
        hi: (D,) its largest.
        dtype: the dtype the data are computed in.

    Returns:
        (2, D) int64 :func:`~gmmlimit._offset.window_counts` of every process's rows, or None
        where :func:`~gmmlimit._offset.candidate_windows` needs none (no exchange then).
    """
    windows = candidate_windows(np.asarray(lo).astype(dtype), np.asarray(hi).astype(dtype))
    if windows is None:
        return None
    local = np.asarray(local).astype(dtype, copy=False)
    return _gather_host(window_counts(local, windows)).sum(axis=0)


def _repeat_rows(x: jax.Array, k: int) -> jax.Array:
    """``x``'s rows repeated cyclically up to k rows (a zero row when x has none)."""
    if x.shape[0] == 0:
        return jnp.zeros((k, x.shape[1]), x.dtype)
    return jnp.resize(x, (k, x.shape[1]))


def _platform(mesh: Mesh) -> str:
    """The platform of a mesh's devices ("cpu", "gpu", ...), which sets its default block."""
    return mesh.devices.flat[0].platform


def _fit_global(
    variant: Variant,
    X: jax.Array,
    params: Params,
    mesh: Mesh,
    axis: str,
    max_iter: Any,
    tol: Any,
    weights: Any,
    block_size: Any,
    rescale: bool = False,
) -> FitResult:
    """:func:`fit_sharded` for a global array whose rows live in several processes.

    ``rescale`` (isotropic parameters only) runs data past the scale window as X / 2^e, e read
    from every process's rows, as :func:`~gmmlimit.em` does (``_rescale``); otherwise a variant
    that declares its ``scaling`` runs them as :func:`~gmmlimit.fit` does.
    """
    max_iter = check_max_iter(max_iter)
    if block_size is not None:
        block_size = check_positive_int(block_size, "block_size")
    tol = check_tol(tol)
    # every process runs one compiled loop, its collectives included: these must agree
    options = _option_values(
        function="kmeans_sharded or em_sharded" if rescale else "fit_sharded",
        variant=_variant_name(variant),
        max_iter=max_iter,
        tol=tol,
        block_size=block_size,
        mesh=dict(mesh.shape),
        axis_name=axis,
        weights=_weights_kind(weights),
    )
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-D array of shape (N, D); got shape {tuple(X.shape)}.")
    n = int(X.shape[0])
    n_dev = int(mesh.shape[axis])
    if n % n_dev:
        raise ValueError(
            f"a global X must split evenly over the {n_dev} devices of mesh axis {axis!r}; it "
            f"has N={n} rows. Give every process the same number of rows per device."
        )
    rows = NamedSharding(mesh, P(axis))
    X = _on_rows(X, rows)
    if weights is not None and not _spans_processes(weights):
        host_w = check_weights(weights, n, _data_dtype(X))
        host_w = np.asarray(host_w)
        weights = jax.make_array_from_callback((n,), rows, lambda index: host_w[index])
    elif weights is not None:
        if tuple(weights.shape) != (n,):
            raise ValueError(f"weights must have shape (N,) = ({n},); got {tuple(weights.shape)}.")
        weights = _on_rows(weights, rows)
    params, largest, lo, hi, counts = _validate_process_rows(variant, X, weights, params, options)
    dtype = _data_dtype(X)
    if X.dtype != dtype:
        X = X.astype(dtype)
    scale, original = NO_SCALE, params
    lo, hi = lo.astype(dtype), hi.astype(dtype)
    # every process reads the same extremes, so the same map (_offset, _variant_scale)
    if rescale:  # as _rescale.prepare maps the data in memory
        scale = streamed_scale(lo, hi, largest, params.means, 0, dtype, counts, n)
        exponent, offset = scale.data, scale.offset_array(dtype)
        if scale != NO_SCALE:
            params = scale.params(original)
            check_scaled_sigma2(original.sigma2, params.sigma2, scale)
    else:  # a variant that declares its scaling
        data_map = variant_stream_map(
            variant, lo, hi, largest, variant.means(params), dtype, counts, n
        )
        exponent, offset = data_map.exponent, data_map.offset
        params = variant_params(variant, original, data_map)
    if exponent or offset is not None:
        shift = np.zeros(lo.shape, dtype) if offset is None else offset

        def move(v: jax.Array) -> jax.Array:
            return jnp.ldexp(v - jnp.asarray(shift, dtype), -exponent)

        X = jax.jit(move, out_shardings=rows)(X)
    if weights is None:  # unit weights made where they lie; one compiled fit serves both cases
        weights = jax.make_array_from_callback(
            (n,), rows, lambda index: np.ones((len(range(n)[index[0]]),), dtype)
        )
    elif weights.dtype != dtype:
        weights = weights.astype(dtype)
    local_n = n // n_dev
    k, d = variant.means(params).shape[-2:]
    block_size = check_block_size(block_size, local_n, k, d, backend=_platform(mesh))
    b = max(1, min(block_size, local_n))
    per_dev = -(-local_n // b)
    params = jax.device_put(params, NamedSharding(mesh, P()))
    result = _fit_global_compiled(
        variant,
        X,
        weights,
        params,
        jnp.asarray(tol, dtype),
        max_iter,
        history=history_length(max_iter),
        mesh=mesh,
        axis=axis,
        block_rows=b,
        blocks_per_device=per_dev,
    )
    result = trim_history(result, max_iter)
    if not rescale:
        return variant_result(variant, result, data_map, lambda: jnp.sum(weights))
    if scale == NO_SCALE:
        return result
    return scaled_back(
        result, scale, original.sigma2, params.sigma2, lambda: jnp.sum(weights), dtype
    )


def _weights_kind(weights: Any) -> str:
    """How a fit's weights were given: none, a global array, or a host array (digest).

    Host weights must be the same on every process; their digest tells.
    """
    if weights is None:
        return "None"
    if _spans_processes(weights):
        return "a global array"
    return _host_kind(weights)


_HOST_ARRAY = "a host array"


def _host_kind(a: Any) -> str:
    """A host array's dtype, shape and a digest of its bytes, as every process must pass alike.

    Args:
        a: an array-like (a NumPy array, a list, a fully addressable ``jax.Array``).

    Returns:
        E.g. ``"a host array float32[64, 2] (digest 0123456789abcdef)"``; the type's name when
        it is no array (refused by the checks, on the process that passed it).
    """
    try:
        host = np.asarray(a)
        # the bytes in place (no copy of a contiguous array): a few seconds for 10 GB
        digest = hashlib.blake2b(np.ascontiguousarray(host).data, digest_size=8).hexdigest()
    except Exception:  # refused by the checks, on the process that passed it
        return f"a host {type(a).__name__}"
    return f"{_HOST_ARRAY} {host.dtype}{list(host.shape)} (digest {digest})"


def _mesh_spans_processes(mesh: Mesh) -> bool:
    """Whether some device of ``mesh`` belongs to another process (no collective: local)."""
    me = jax.process_index()
    return any(device.process_index != me for device in mesh.devices.flat)


_Checked = TypeVar("_Checked")


def _agree_host(
    checks: Callable[[], _Checked],
    function: str,
    variant: Variant,
    X: Any,
    params: Any,
    weights: Any,
    mesh: Mesh,
    axis: str,
    max_iter: Any,
    tol: Any,
    block_size: Any,
) -> _Checked:
    """Run a host array's checks; on a mesh of several processes, agree on them first.

    On a mesh of this process's devices only, just ``checks()`` (no collective). Otherwise
    every process runs the checks, writes down its options, a digest of ``X`` and of host
    weights and a fingerprint of the parameters, and calls :func:`_agree` (one all-gather)
    before any fit work: every process then raises the same ValueError, or every process
    goes on with the same host array, weights, parameters and options, so every process runs
    the same compiled loop (whose collectives would otherwise wait for ever for a process
    that raised alone or runs other iterations).

    Args:
        checks: validates the inputs (any exception is sent to the other processes) and
            returns what the fit goes on with.
        function: the public function's name (``fit_sharded``, ``kmeans_sharded``, ...).
        variant: the mixture variant.
        X: the (N, D) host data, as given.
        params: the parameters as given (any pytree of arrays; its fingerprint must agree).
        weights: None or the (N,) host weights, as given.
        mesh: the mesh.
        axis: its rows' axis.
        max_iter: the maximum number of iterations, as given.
        tol: the stopping tolerance, as given.
        block_size: rows per block on each device, or None, as given.

    Returns:
        What ``checks`` returned.

    Raises:
        ValueError: on this process as raised by the checks when the mesh is this process's;
            otherwise on every process, naming the first process whose checks failed, or
            the options that differ (including ``X`` and host ``weights``, by the digest of
            their bytes), or different parameters.
    """
    if not _mesh_spans_processes(mesh):
        return checks()
    error = None
    options = None
    fingerprint = bytes(16)
    checked = None
    try:
        checked = checks()  # first, so that the first error is the one a single process finds
        # every process runs one compiled loop, its collectives included: these must agree
        options = _option_values(
            function=function,
            variant=_variant_name(variant),
            max_iter=check_max_iter(max_iter),
            tol=check_tol(tol),
            block_size=None if block_size is None else check_positive_int(block_size, "block_size"),
            mesh=dict(mesh.shape),
            axis_name=axis,
            dtype=str(np.dtype(_data_dtype(X))),  # JAX's x64 flag too
            X=_host_kind(X),
            weights=_weights_kind(weights),
        )
        fingerprint = _fingerprint(params)
    except Exception as err:  # any failure must reach the other processes, or they would hang
        error = _error_message(err)
    # positive: zero total weight was refused by the checks, on every process alike
    _agree(error, 1, fingerprint, options=options)
    return checked


def _on_rows(a: jax.Array, rows: NamedSharding) -> jax.Array:
    """``a`` with its first axis sharded as ``rows`` (moved between processes if it was not)."""
    if a.sharding.is_equivalent_to(rows, a.ndim):
        return a
    return jax.jit(lambda v: v, out_shardings=rows)(a)


@partial(
    jax.jit,
    static_argnames=("variant", "history", "mesh", "axis", "block_rows", "blocks_per_device"),
)
def _fit_global_compiled(
    variant: Variant,
    X: jax.Array,
    weights: jax.Array,
    params: Params,
    tol: jax.Array,
    max_iter: jax.Array,
    *,
    history: int,
    mesh: Mesh,
    axis: str,
    block_rows: int,
    blocks_per_device: int,
) -> FitResult:
    """The sharded fit of a row-sharded global array; each device pads its own rows."""
    b, per_dev = block_rows, blocks_per_device
    local_rows = per_dev * b
    n_dev = int(mesh.shape[axis])

    def pad_local(x: jax.Array, w: jax.Array) -> Blocks:
        # padding rows are zero-weight copies of a real row: no variant sees a value that is not
        # data (zeros are -inf in a Gamma's log)
        r = x.shape[0]
        w = jnp.concatenate([w, jnp.zeros((local_rows - r,), w.dtype)])
        valid = jnp.arange(local_rows) < r
        return Blocks(pad_rows(x, per_dev, b), w.reshape(per_dev, b), valid.reshape(per_dev, b))

    blocks = jax.shard_map(
        pad_local, mesh=mesh, in_specs=(P(axis), P(axis)), out_specs=P(axis), check_vma=False
    )(X, weights)
    unit, shift_scale = data_spread(X)
    result = fit_loop(
        variant,
        blocks,
        n_dev * local_rows,
        params,
        tol,
        shift_scale,
        unit=unit,
        max_iter=max_iter,
        history=history,
        pass_fn=_sharded_pass(mesh, axis, local_rows),
    )
    real = X.shape[0] // n_dev
    labels = jax.shard_map(
        lambda lab: lab[:real], mesh=mesh, in_specs=P(axis), out_specs=P(axis), check_vma=False
    )(result.labels)
    return result._replace(labels=labels)


# ----------------------------------------------------------------------------------------------
# Out of core, each process reading only its own rows.


def _gather(tree: Any) -> Any:
    """Every process's value of a small pytree, stacked in process order (a leading axis)."""
    return jax.tree.map(np.asarray, multihost_utils.process_allgather(tree))


def _gather_host(a: np.ndarray) -> np.ndarray:
    """:func:`_gather` of one host array, sent as bytes so int64 and float64 stay exact."""
    a = np.ascontiguousarray(a)
    raw = _gather(a.reshape(-1).view(np.uint8))
    return raw.view(a.dtype).reshape(-1, *a.shape)


def _scan_process_source(
    variant: Variant,
    make_iter: Any,
    rows: int,
    weights: Any,
    params: Params,
    source_dtype: np.dtype | None = None,
) -> tuple[int, int, np.dtype, np.ndarray, np.ndarray | None, Params, float, np.ndarray, np.dtype]:
    """One pass over this process's source: checks every chunk, and sums and sizes it.

    Returns N_p, D, dtype, the column sums, the weights, the checked parameters, the rows'
    largest magnitude, (2, D) each feature's smallest and largest value (float64) and the
    source's own (native) dtype, which every later pass's chunks must have.

    Args:
        variant: the mixture variant.
        make_iter: starts a pass over this process's source.
        rows: the rows of a chunk.
        weights: this process's (N_p,) weights, or None.
        params: the initial parameters.
        source_dtype: the dtype a first look at the source found (which chose the dtype
            scope), or None: every chunk must have it.

    Raises:
        ValueError: (locally) on a bad chunk, bad weights or parameters that fail the variant's
            checks on these rows.
    """
    n = 0
    d = None
    dtype = None
    total = None
    checked = params
    largest = 0.0
    k = int(np.shape(variant.means(params))[0])
    for chunk in _rechunk(make_iter(), rows, None, None):
        if d is None:
            _check_first_dtype(chunk.dtype, source_dtype)
            source_dtype = np.dtype(chunk.dtype)
        x = as_data(chunk)
        if d is None:
            d, dtype = x.shape[1], np.dtype(x.dtype)
            total = np.zeros(d, np.float64)
            extremes = np.stack([np.full(d, np.inf), np.full(d, -np.inf)])
        elif x.shape[1] != d or np.dtype(x.dtype) != dtype:
            raise ValueError(
                f"chunks must all have D={d} columns and dtype {dtype}; got one of shape "
                f"{tuple(x.shape)} and dtype {x.dtype}."
            )
        if variant.check_data is not None:
            variant.check_data(np.asarray(x))
        if variant.validate is not None:
            rows_k = x if x.shape[0] >= k else _repeat_rows(x, k)  # K rows at least
            checked = checked_validate(variant, rows_k, params)
        total += np.asarray(chunk, np.float64).sum(axis=0)
        largest = max(largest, largest_magnitude(chunk))
        lo, hi = feature_range(x)
        extremes[0] = np.minimum(extremes[0], lo)
        extremes[1] = np.maximum(extremes[1], hi)
        n += x.shape[0]
    if d is None:
        raise ValueError("this process's data source gave no rows.")
    w = None
    if weights is not None:
        w = np.asarray(weights, np.float64)
        if w.shape != (n,):
            raise ValueError(f"weights must have shape (N_p,) = ({n},); got {tuple(w.shape)}.")
        if not np.all(np.isfinite(w)):
            raise ValueError("weights contain NaN or inf values.")
        if np.any(w < 0):
            raise ValueError(f"weights must be non-negative; found {int(np.sum(w < 0))} < 0.")
        w = w.astype(dtype)
    return n, d, dtype, total, w, checked, largest, extremes, source_dtype


def _combine(carry: _Carry, same: bool, failure: Exception | None = None) -> tuple[_Carry, bool]:
    """Sum the processes' statistics, merge their farthest rows, and AND their label tests.

    The farthest rows are merged in process order, so ties go to the lowest global row, as
    in one process. Each process's pass outcome travels in the same collective: where a
    process's pass failed, every process raises.

    Args:
        carry: this process's pass (that of no rows where its pass failed).
        same: whether this process's labels did not change.
        failure: the exception this process's pass raised, or None.

    Raises:
        ValueError: on every process, naming the first process whose pass failed.
    """
    error = None if failure is None else _error_message(failure)
    gathered, all_same, reports = _gather((carry, jnp.asarray(same), _error_record(error)))
    _raise_reported(reports, failure)
    stats = jax.tree.map(lambda a: jnp.asarray(a.sum(axis=0)), gathered.stats)
    k = carry.far_value.shape[0]
    top, pos = lax.top_k(jnp.asarray(gathered.far_value.reshape(-1)), k)
    pos = np.asarray(pos)

    def pick(a: np.ndarray) -> jax.Array:
        return jnp.asarray(a.reshape(-1, *a.shape[2:])[pos])

    merged = _Carry(
        stats=stats,
        far_value=top,
        far_x=pick(gathered.far_x),
        far_weight=pick(gathered.far_weight),
        far_label=pick(gathered.far_label),
    )
    return merged, bool(np.all(all_same))


def fit_out_of_core_processes(
    variant: Variant,
    X: Any,
    params: Params,
    *,
    max_iter: int = 300,
    tol: float = 1e-8,
    weights: Any = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
    chunk_blocks: int = DEFAULT_CHUNK_BLOCKS,
) -> FitResult:
    """Fit over data read chunk by chunk, each process reading only its own rows.

    Every process of the cluster calls this with its own data source, the same parameters and
    options. The global rows are process 0's, then process 1's, and so on. Each iteration,
    every process runs the streamed E-step of :func:`~gmmlimit.fit_out_of_core` over its own
    chunks on its own device; the statistics (O(K D)), the K farthest rows and the
    label-change test are then exchanged between the processes, and every process takes the
    same M-step. K-means labels and iteration counts equal those of the one-process fit on the
    concatenated rows, and so do the parameters, up to the order of summation across
    processes: in float32 the means can differ in the last bit, and so the label of a row at a
    tie between two means (docs/scale.md); a soft fit's relative stopping rule reads sums in
    that order too, so in float32 its iteration count can differ, as between two block sizes of
    one in-memory fit (float64 fits matched in every case tried). Every process needs at least
    one row.

    Args:
        variant: the mixture variant.
        X: this process's data, any source :func:`~gmmlimit.fit_out_of_core` takes (an
            (N_p, D) array or memmap, a list of arrays, or a function returning an iterator).
        params: the initial parameters (the same on every process).
        max_iter: maximum number of iterations.
        tol: stopping tolerance, as in :func:`~gmmlimit.fit`.
        weights: optional (N_p,) non-negative weights of this process's rows.
        block_size: rows per E-step block (the one-process fit's, to reproduce it).
        chunk_blocks: blocks per chunk moved to the device at once.

    Returns:
        A :class:`~gmmlimit.FitResult`, the same on every process except ``labels``: this
        process's (N_p,) int32 labels, on the host.

    Raises:
        ValueError: on every process, naming the process, when any process's rows, weights or
            source are invalid; when the processes' data differ in width or dtype, or their
            parameters or options (the variant, ``max_iter``, ``tol``, ``block_size``,
            ``chunk_blocks``) differ; before any fitting. On a later pass whose chunks differ
            in width or dtype from the checked ones, or hold NaN/inf or values the variant
            refuses: on every process, naming the process that read them, at the end of that
            pass (the outcome travels with the pass's statistics).
    """
    try:  # float64 data stay float64 with JAX's x64 flag off (docs/design.md)
        dtype = _first_dtype(_chunk_source(X))
    except Exception:  # a bad source is refused below, on every process
        dtype = None
    with dtype_scope(dtype):
        return _fit_out_of_core_processes(
            variant, X, params, max_iter, tol, weights, block_size, chunk_blocks, dtype
        )


def _fit_out_of_core_processes(
    variant: Variant,
    X: Any,
    params: Params,
    max_iter: Any,
    tol: Any,
    weights: Any,
    block_size: Any,
    chunk_blocks: Any,
    first_dtype: np.dtype | None = None,
) -> FitResult:
    """:func:`fit_out_of_core_processes` within the data's dtype scope.

    ``first_dtype`` is the dtype a first look at the source found (it chose the scope): the
    scan's chunks must have it.
    """
    error = None
    options = None
    source_dtype = None
    positive = 0
    local = (0, 1, "float64", np.zeros(1))
    fingerprint = bytes(16)
    largest, largest_weight = 0.0, 1.0
    extremes = np.zeros((2, 1))
    try:
        check_variant(variant)
        make_iter = _chunk_source(X)
        max_iter = check_max_iter(max_iter)
        block_size = check_positive_int(block_size, "block_size")
        chunk_blocks = check_positive_int(chunk_blocks, "chunk_blocks")
        tol = check_tol(tol)
        # every process runs the same iterations, each with collectives: these must agree
        options = _option_values(
            variant=_variant_name(variant),
            max_iter=max_iter,
            tol=tol,
            block_size=block_size,
            chunk_blocks=chunk_blocks,
        )
        scanned = _scan_process_source(
            variant, make_iter, block_size * chunk_blocks, weights, params, first_dtype
        )
        n_p, d, dtype, total, w, params, largest, extremes, source_dtype = scanned
        positive = n_p if w is None else int(np.count_nonzero(w > 0))
        local = (n_p, d, dtype.name, total)
        if weights is not None:  # read as given, before the cast to the data's dtype
            largest_weight = float(np.max(np.asarray(weights, np.float64), initial=0.0))
        fingerprint = _fingerprint(params)
    except Exception as err:  # any failure must reach the other processes, or they would hang
        error = _error_message(err)
    layout = (local[1], np.dtype(local[2]).num)
    largest = _agree(error, positive, fingerprint, largest, layout, options)
    _check_global_weights(largest_weight, local[2])
    counts = _gather_host(np.asarray(local[0], np.int64))
    n = int(counts.sum())
    k = int(np.shape(variant.means(params))[0])
    check_k(k, n)
    mean = _gather_host(local[3]).sum(axis=0) / n
    unit = host_spread_unit(largest, np.float64)  # the rows' largest magnitude, every process's
    # a variant that declares its scaling: every process reads the same extremes (and counts),
    # so the same map, the one fit_out_of_core takes in one process
    lo, hi = (e.astype(dtype) for e in _global_range(*extremes))
    windows = candidate_windows(lo, hi)  # the offset's row counts, where the extremes ask
    counts = None if windows is None else np.zeros((2, d), np.int64)
    sq = np.zeros(d, np.float64)
    failure = None
    try:
        for chunk in _rechunk(make_iter(), block_size * chunk_blocks, d, source_dtype, _LATER_PASS):
            sq += (((np.asarray(chunk, np.float64) - mean) / unit) ** 2).sum(axis=0)
            if counts is not None:
                counts += window_counts(np.asarray(chunk).astype(dtype, copy=False), windows)
    except Exception as err:  # the others would wait for this process in the next collective
        failure = err
    reports = _gather(_error_record(None if failure is None else _error_message(failure)))
    _raise_reported(reports, failure)
    shift_scale = float(np.mean(_gather_host(sq).sum(axis=0) / n))
    if counts is not None:  # every process or none: the same extremes
        counts = _gather_host(counts).sum(axis=0)
    data_map = variant_stream_map(variant, lo, hi, largest, variant.means(params), dtype, counts, n)
    exponent, offset = data_map.exponent, data_map.offset
    fit_largest = translated_largest(lo, hi, largest, offset)
    params = variant_params(variant, params, data_map)
    # every process takes part in the sum (a process without weights has unit weights)
    local_total = float(n_p) if w is None else float(np.sum(w, dtype=np.float64))
    total_weight = float(_gather_host(np.asarray(local_total, np.float64)).sum())

    b = min(block_size, n)  # the one-process fit's blocks, so its sums are reproduced
    chunk_rows = streamed_chunk_rows(b, chunk_blocks)
    track = variant.relocate is not None
    tol_a = jnp.asarray(tol, dtype)
    spread = streamed_spread(shift_scale, largest, fit_largest, exponent, dtype)

    failures: list[Exception] = []  # this process's failed pass, until the others hear of it

    def run_pass(params: Params, labels_out: np.ndarray) -> _Carry:
        try:
            return _full_pass(
                variant, params, make_iter, w, n_p, d, dtype, chunk_rows, b, track, labels_out,
                exponent=exponent, offset=offset, source_dtype=source_dtype,
            )  # fmt: skip
        except Exception as err:  # a source that changed since the scan, on this process only
            failures.append(err)
            # the carry of a pass over no rows (zero sums), so the collective's shapes match
            return _full_pass(
                variant, params, lambda: iter(()), None, 0, d, dtype, chunk_rows, b, track,
                labels_out[:0],
            )  # fmt: skip

    def combine(carry: _Carry, same: bool) -> tuple[_Carry, bool]:
        return _combine(carry, same, failures.pop() if failures else None)

    result = _pass_loop(variant, params, run_pass, n_p, dtype, max_iter, tol_a, spread, combine)
    return variant_result(variant, result, data_map, lambda: jnp.asarray(total_weight, dtype))
