"""The E-step's default block size: rows per block, chosen for the backend that runs the fit.

A fit walks its rows in blocks (a ``lax.scan`` over (B, D) blocks, or the CPU kernel's calls):
every block scores B rows against K components. On the CPU a block of 4096 rows keeps a block's
(B, K) scores in cache and the fused kernel was tuned at that size (docs/scale.md). On a GPU each
block is at least one kernel launch: an H200 paid about 40 us a block, so at 4096 rows a pass
over 250,000 rows was 2 to 15 times slower than one block of all rows (docs/benchmarks.md, "On a
GPU": K-means float32 at (250000, 2, 5) 2.11 ms an iteration in blocks of 4096, 0.36 ms in one
block). There the default is the largest block whose (B, K) scores stay within a fixed budget
of elements per lane, split evenly so that padding stays under one row per block.
"""

from __future__ import annotations

import jax
import numpy as np

DEFAULT_BLOCK_SIZE = 4096
"""Rows per block on the CPU (and the smallest default block anywhere)."""

DEVICE_BLOCK_ELEMENTS = 1 << 26
"""On other backends, the most B * max(K, D) elements a default block holds per lane (2^26:
512 MiB of float64 scores, 256 MiB of float32)."""


def default_block_size(n: int, k: int, d: int, lanes: int = 1, backend: str | None = None) -> int:
    """The default rows per E-step block for N rows, K components and D features.

    Args:
        n: rows one device holds (N, or a shard's rows).
        k: components.
        d: features.
        lanes: fits run side by side in one program (a ``vmap`` over restarts or a batch); each
            holds its own (B, K) scores.
        backend: ``"cpu"``, ``"gpu"``, ``"tpu"``...; default the platform of JAX's default
            device (``jax.default_device``'s where one is set, else the default backend's).

    Returns:
        :data:`DEFAULT_BLOCK_SIZE` on the CPU. Elsewhere the size of the fewest blocks of equal
        size, ``ceil(N / blocks)``, that hold N rows with at most ``max(DEFAULT_BLOCK_SIZE,
        DEVICE_BLOCK_ELEMENTS // (max(K, D) * lanes))`` rows a block.

    Example:
        >>> from gmmlimit.scale import default_block_size
        >>> default_block_size(250_000, 5, 2, backend="cpu")
        4096
        >>> default_block_size(250_000, 5, 2, backend="gpu")  # one block of all the rows
        250000
        >>> default_block_size(156_250, 512, 64, backend="gpu")  # 2 blocks within 2^26 scores
        78125

    Raises:
        ValueError: if n is not an integer >= 0, or k, d or lanes not an integer >= 1.
    """
    from ._validation import check_positive_int  # (_validation imports this module)

    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be an integer >= 0; got {n!r}.")  # (any count of rows)
    k, d, lanes = (
        check_positive_int(v, name) for v, name in ((k, "k"), (d, "d"), (lanes, "lanes"))
    )
    backend = default_platform() if backend is None else backend
    if backend == "cpu":
        return DEFAULT_BLOCK_SIZE
    n = max(int(n), 1)
    most = max(DEFAULT_BLOCK_SIZE, DEVICE_BLOCK_ELEMENTS // (max(k, d) * lanes))
    n_blocks = -(-n // most)
    return -(-n // n_blocks)


def default_platform() -> str:
    """The platform that runs a computation on uncommitted data: the default device's."""
    device = jax.config.jax_default_device
    if device is None:
        return jax.default_backend()
    return device if isinstance(device, str) else device.platform


__all__ = ["DEFAULT_BLOCK_SIZE", "DEVICE_BLOCK_ELEMENTS", "default_block_size", "default_platform"]
