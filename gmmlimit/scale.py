"""Fits beyond one device's memory: out-of-core passes over chunks, and sharded fits on a mesh.

Also :func:`default_block_size`, the rows per E-step block every in-memory fit takes when its
``block_size`` is None (4096 on the CPU; few large blocks on a GPU, where a block is a launch).

Each fit here runs the same compiled iteration as :func:`gmmlimit.fit` and returns the same
:class:`gmmlimit.FitResult`; see the scale guide (``docs/scale.md``) for when to use which.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from gmmlimit import scale
    >>> X = jnp.array([[0.0, 0.0], [0.0, 1.0], [9.0, 9.0], [9.0, 10.0]])
    >>> chunks = [X[:2], X[2:]]  # any re-iterable of (rows, D) chunks, or a memmap
    >>> res = scale.kmeans_out_of_core(chunks, X[::2])
    >>> res.means.tolist()
    [[0.0, 0.5], [9.0, 9.5]]
"""

from ._block_size import default_block_size
from ._outofcore import em_out_of_core, fit_out_of_core, kmeans_out_of_core
from ._sharding import (
    default_mesh,
    em_sharded,
    fit_out_of_core_processes,
    fit_sharded,
    kmeans_sharded,
)

__all__ = [
    "default_block_size",
    "default_mesh",
    "em_out_of_core",
    "em_sharded",
    "fit_out_of_core",
    "fit_out_of_core_processes",
    "fit_sharded",
    "kmeans_out_of_core",
    "kmeans_sharded",
]
