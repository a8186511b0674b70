"""Where a K-means iteration's time goes at (N, D, K) = (1M, 64, 64), float32.

Times (1) the blocked distance product in a ``lax.scan`` against one unblocked product, and
(2) a K-means iteration through the driver with and without the farthest-row tracking used for
empty-cluster relocation. Per-iteration time is (T(5 iterations) - T(1 iteration)) / 4.
Run: ``python benchmarks/kmeans_breakdown.py``.
"""

import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import gmmlimit as gl


def _seconds(fn, *args) -> float:
    jax.block_until_ready(fn(*args))
    start = time.perf_counter()
    for _ in range(3):
        jax.block_until_ready(fn(*args))
    return (time.perf_counter() - start) / 3


def _per_iteration(variant: gl.Variant, X: jax.Array, means: jax.Array) -> float:
    params = gl.variants.IsotropicParams(means, jnp.zeros((), X.dtype))
    times = {}
    for n_iter in (1, 5):
        times[n_iter] = _seconds(
            lambda p, n=n_iter: gl.fit(variant, X, p, max_iter=n, tol=0.0).means, params
        )
    return (times[5] - times[1]) / 4


def main() -> None:
    X = np.random.default_rng(0).normal(size=(1_000_000, 64)).astype(np.float32)
    means = jnp.asarray(X[:64])
    for block in (4096, 16384, 65536):
        blocks = jnp.asarray(X[: (len(X) // block) * block].reshape(-1, block, 64))

        @jax.jit
        def scanned(blocks: jax.Array, means: jax.Array) -> jax.Array:
            def body(acc: jax.Array, x: jax.Array) -> tuple[jax.Array, None]:
                return acc + jnp.sum(jnp.min(means @ x.T, axis=0)), None

            return lax.scan(body, jnp.zeros((), jnp.float32), blocks)[0]

        print(
            f"distance product + min, blocks of {block}: {_seconds(scanned, blocks, means):.4f} s"
        )
    whole = jax.jit(lambda X, m: jnp.sum(X @ m.T))
    print(f"one unblocked distance product: {_seconds(whole, jnp.asarray(X), means):.4f} s")
    Xj = jnp.asarray(X)
    iso = gl.variants.isotropic
    print(f"K-means iteration: {_per_iteration(iso, Xj, means):.4f} s")
    untracked = iso._replace(relocate=None)
    seconds = _per_iteration(untracked, Xj, means)
    print(f"K-means iteration without relocation tracking: {seconds:.4f} s")


if __name__ == "__main__":
    main()
