"""Fits with the rows sharded over several devices (a ``jax.sharding.Mesh``).

The fit is the one driver loop (``_driver.fit_loop``) with its streamed E-step replaced: every
device scans its own blocks of rows, and the sufficient statistics are summed across devices
with ``psum`` (the running top-K farthest rows, used to relocate empty clusters, are gathered and
merged). Parameters are replicated, so every device runs the same M-step on the same totals.
The result equals the one-device fit up to the order of floating-point summation (labels,
iteration counts and stopping decisions agree unless a sum lands within rounding of a tie).

One host with several GPUs: ``jax.devices()`` lists them and the default mesh uses them all.
Several hosts: call ``jax.distributed.initialize()`` on every host first (one process per host),
then build the mesh from ``jax.devices()`` (all hosts' devices); each process passes the same
global array, or builds it with ``jax.make_array_from_process_local_data``.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ._driver import DEFAULT_BLOCK_SIZE, Blocks, FitResult, _Farthest, e_pass, fit_loop
from ._validation import (
    as_data,
    check_positive_int,
    check_sigma2,
    check_tol,
    weights_or_ones,
)
from ._variant import Params, Variant, check_variant
from .variants.isotropic import IsotropicParams, isotropic

__all__ = ["default_mesh", "em_sharded", "fit_sharded", "kmeans_sharded"]


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
            stats = lax.psum(stats, axis)
            if not track_farthest:
                return stats, labels, None
            k = far.value.shape[0]
            index = lax.axis_index(axis).astype(jnp.int32) * local_rows + far.index
            # Device-major order keeps ties going to the lowest global row, as on one device.
            values = lax.all_gather(far.value, axis).reshape(-1)
            indices = lax.all_gather(index, axis).reshape(-1)
            top, pos = lax.top_k(values, k)
            return stats, labels, _Farthest(top, indices[pos])

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


@partial(jax.jit, static_argnames=("variant", "n", "max_iter", "mesh", "axis", "local_rows"))
def _fit_sharded_compiled(
    variant: Variant,
    blocks: Blocks,
    params: Params,
    tol: jax.Array,
    shift_scale: jax.Array,
    *,
    n: int,
    max_iter: int,
    mesh: Mesh,
    axis: str,
    local_rows: int,
) -> FitResult:
    return fit_loop(
        variant,
        blocks,
        n,
        params,
        tol,
        shift_scale,
        max_iter=max_iter,
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
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> FitResult:
    """Fit any variant with the rows sharded over the devices of a mesh axis.

    Args:
        variant: the mixture variant.
        X: (N, D) data.
        params: the variant's initial parameters (replicated on every device).
        mesh: a ``jax.sharding.Mesh``; default: all devices on one axis named ``"rows"``.
        axis_name: the mesh axis the rows are split over; default: the mesh's first axis.
        max_iter: maximum number of iterations.
        tol: stopping tolerance, as in :func:`~gmmlimit.fit`.
        weights: optional (N,) non-negative sample weights.
        block_size: rows per E-step block on each device (clipped to the rows per device).

    Returns:
        A :class:`~gmmlimit.FitResult`, replicated (labels sharded like the rows).

    Raises:
        ValueError: on invalid data, parameters, options, or an axis the mesh lacks.
    """
    check_variant(variant)
    X = as_data(X)
    if variant.check_data is not None:
        variant.check_data(np.asarray(X))
    mesh = default_mesh() if mesh is None else mesh
    if not isinstance(mesh, Mesh):
        raise ValueError(f"mesh must be a jax.sharding.Mesh; got {type(mesh)}.")
    axis = mesh.axis_names[0] if axis_name is None else axis_name
    if axis not in mesh.axis_names:
        raise ValueError(f"axis_name {axis!r} is not an axis of the mesh {mesh.axis_names}.")
    if variant.validate is not None:
        params = variant.validate(X, params)
    w = weights_or_ones(weights, X.shape[0], X.dtype)
    max_iter = check_positive_int(max_iter, "max_iter")
    block_size = check_positive_int(block_size, "block_size")
    tol = check_tol(tol)
    n_dev = int(mesh.shape[axis])
    blocks, local_rows = _shard_blocks(X, w, n_dev, block_size, NamedSharding(mesh, P(axis)))
    shift_scale = jnp.mean(jnp.var(X, axis=0))
    params = jax.device_put(params, NamedSharding(mesh, P()))
    result = _fit_sharded_compiled(
        variant,
        blocks,
        params,
        jnp.asarray(tol, X.dtype),
        shift_scale,
        n=X.shape[0],
        max_iter=max_iter,
        mesh=mesh,
        axis=axis,
        local_rows=local_rows,
    )
    return result


def kmeans_sharded(
    X: Any,
    init_means: Any,
    *,
    mesh: Mesh | None = None,
    max_iter: int = 300,
    tol: float = 0.0,
    weights: Any = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> FitResult:
    """Lloyd's K-means with the rows sharded over a mesh (see :func:`fit_sharded`).

    Args:
        X: (N, D) data.
        init_means: (K, D) initial means.
        mesh: the device mesh; default all devices.
        max_iter: maximum number of iterations.
        tol: centre-shift tolerance, as in :func:`~gmmlimit.kmeans`.
        weights: optional (N,) sample weights.
        block_size: rows per block on each device.

    Returns:
        The :class:`~gmmlimit.FitResult`.
    """
    X = as_data(X)
    params = IsotropicParams(init_means, jnp.zeros((), X.dtype))
    return fit_sharded(
        isotropic,
        X,
        params,
        mesh=mesh,
        max_iter=max_iter,
        tol=tol,
        weights=weights,
        block_size=block_size,
    )


def em_sharded(
    X: Any,
    init_means: Any,
    sigma2: Any,
    *,
    mesh: Mesh | None = None,
    max_iter: int = 300,
    tol: float = 1e-8,
    weights: Any = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> FitResult:
    """EM for the isotropic mixture with the rows sharded over a mesh (see :func:`fit_sharded`).

    Args:
        X: (N, D) data.
        init_means: (K, D) initial means.
        sigma2: shared variance >= 0 (0 runs K-means).
        mesh: the device mesh; default all devices.
        max_iter: maximum number of iterations.
        tol: relative log-likelihood gain tolerance.
        weights: optional (N,) sample weights.
        block_size: rows per block on each device.

    Returns:
        The :class:`~gmmlimit.FitResult`.
    """
    X = as_data(X)
    params = IsotropicParams(init_means, check_sigma2(sigma2, X.dtype))
    return fit_sharded(
        isotropic,
        X,
        params,
        mesh=mesh,
        max_iter=max_iter,
        tol=tol,
        weights=weights,
        block_size=block_size,
    )
