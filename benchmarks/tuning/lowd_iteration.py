"""Low-dimensional K-means: one driver iteration, the kernel's pass alone and scikit-learn's Lloyd
iteration, on the same rows in one process, interleaved, best of R (wall and process CPU time).

The gap between "iteration" and "kernel pass" is what the driver adds around the kernel (the
M-step, the stopping rule, the empty-cluster bookkeeping, the XLA loop). Cited in
docs/benchmarks.md.

Usage: ``PYTHONPATH=$PWD python benchmarks/tuning/lowd_iteration.py [R] [N,D,K ...]``
(default 5 repeats at (1M, 2, 8), (500k, 3, 5), (1M, 8, 16)).
"""

import importlib
import sys
import time
import warnings
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.cluster import KMeans

from gmmlimit import _native

drv = importlib.import_module("gmmlimit._driver")
iso = importlib.import_module("gmmlimit.variants._isotropic")


def timed(f) -> np.ndarray:
    """(wall, CPU) seconds of one call of ``f``."""
    wall, cpu = time.perf_counter(), time.process_time()
    f()
    return np.array([time.perf_counter() - wall, time.process_time() - cpu])


def sklearn_fit(x, m0, iters) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        KMeans(len(m0), init=m0, n_init=1, max_iter=iters, tol=0.0, algorithm="lloyd").fit(x)


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    sizes = sys.argv[2:] or ["1000000,2,8", "500000,3,5", "1000000,8,16"]
    print(_native.status())
    for size in sizes:
        n, d, k = (int(v) for v in size.split(","))
        rng = np.random.default_rng(0)
        centres = rng.normal(scale=3.0, size=(k, d))
        x = (centres[rng.integers(k, size=n)] + rng.normal(size=(n, d))).astype(np.float32)
        m0 = x[rng.choice(n, k, replace=False)]
        X = jnp.asarray(x)
        means = jnp.asarray(m0)
        blocks = drv.make_blocks(X, jnp.ones((n,), X.dtype), drv.DEFAULT_BLOCK_SIZE)
        params = iso.IsotropicParams(means, jnp.zeros((), X.dtype))
        step = jax.jit(lambda b, p: drv.em_iteration(iso.isotropic, p, b)[0])
        kernel = jax.jit(_native.hard_assign)
        cases = {
            "iteration": partial(
                lambda s, b, p: jax.block_until_ready(s(b, p)), step, blocks, params
            ),
            "kernel pass": partial(
                lambda f, m, b: jax.block_until_ready(f(m, b.x, b.weight)), kernel, means, blocks
            ),
            "sklearn 1 iter": partial(sklearn_fit, x, m0, 1),
            "sklearn 5 iters": partial(sklearn_fit, x, m0, 5),
        }
        for f in cases.values():
            f()
        best = {name: np.full(2, np.inf) for name in cases}
        for _ in range(repeats):
            for name, f in cases.items():
                best[name] = np.minimum(best[name], timed(f))
        sk = (best["sklearn 5 iters"] - best["sklearn 1 iter"]) / 4
        print(f"\n({n}, {d}, {k}) float32, best of {repeats}: ms wall / ms CPU")
        for name in ("iteration", "kernel pass"):
            wall, cpu = best[name]
            print(
                f"  {name:12s} {wall * 1e3:7.2f} / {cpu * 1e3:7.2f}   sklearn lloyd iteration / "
                f"this: {sk[0] / wall:4.2f}x wall, {sk[1] / cpu:4.2f}x CPU"
            )
        print(f"  {'sklearn':12s} {sk[0] * 1e3:7.2f} / {sk[1] * 1e3:7.2f}")


if __name__ == "__main__":
    main()
