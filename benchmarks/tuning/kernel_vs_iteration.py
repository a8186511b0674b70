"""One K-means iteration against the fused kernel's pass alone, same process, interleaved.

Shows how much of an iteration is the kernel (the rest: the M-step, the convergence test, the XLA
loop), at (1M, 64, 64) float32 by default, and what a whole ``gl.kmeans`` costs per iteration
with Lloyd's passes and with Hamerly's bounds (the difference of fits of 1 and 6 iterations,
tol = 0, on Gaussian noise, where the bounds skip few rows). Cited in docs/benchmarks.md.

Usage: ``PYTHONPATH=$PWD python benchmarks/tuning/kernel_vs_iteration.py [R] [N,D,K]`` (default
8 rounds, 1048576,64,64).
"""

import importlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import gmmlimit as gl
from gmmlimit import _native

drv = importlib.import_module("gmmlimit._driver")
iso = importlib.import_module("gmmlimit.variants._isotropic")
repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 8
n, d, k = map(int, sys.argv[2].split(",")) if len(sys.argv) > 2 else (1 << 20, 64, 64)
X = jnp.asarray(np.random.default_rng(0).standard_normal((n, d)).astype("float32"))
means = X[:k]
block_size = gl.scale.default_block_size(n, k, d)
blocks = drv.make_blocks(X, jnp.ones((n,), X.dtype), block_size)
params = iso.IsotropicParams(means, jnp.zeros((), X.dtype))
step = jax.jit(lambda b, p: drv.em_iteration(iso.isotropic, p, b)[0])
kernel = jax.jit(_native.hard_assign)


def fit(algorithm: str, iterations: int):
    return lambda: gl.kmeans(X, means, max_iter=iterations, tol=0.0, algorithm=algorithm).means


cases = {
    "iteration": lambda: step(blocks, params),
    "kernel pass": lambda: kernel(means, blocks.x, blocks.weight),
    **{f"{a} {i}": fit(a, i) for a in ("lloyd", "hamerly") for i in (1, 6)},
}
for f in cases.values():
    jax.block_until_ready(f())
best = dict.fromkeys(cases, float("inf"))
for _ in range(repeats):
    for name, f in cases.items():
        t = time.perf_counter()
        jax.block_until_ready(f())
        best[name] = min(best[name], time.perf_counter() - t)
print(_native.status(), f"(N, D, K) = ({n}, {d}, {k}), blocks of {block_size}")
for name, seconds in best.items():
    print(f"{name:12s} {seconds * 1e3:7.1f} ms  (best of {repeats})")
for a in ("lloyd", "hamerly"):
    print(f"gl.kmeans {a:8s} {(best[f'{a} 6'] - best[f'{a} 1']) / 5 * 1e3:7.2f} ms per iteration")
