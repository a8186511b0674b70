"""One K-means iteration against the fused kernel's pass alone, same process, interleaved.

Shows how much of an iteration at (1M, 64, 64) float32 is the kernel (the rest: the M-step, the
convergence test, the XLA loop). Cited in docs/benchmarks.md.

Usage: ``PYTHONPATH=$PWD python benchmarks/tuning/kernel_vs_iteration.py [R]`` (default 8).
"""

import importlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from gmmlimit import _native

drv = importlib.import_module("gmmlimit._driver")
iso = importlib.import_module("gmmlimit.variants._isotropic")
repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 8
n, d, k = 1 << 20, 64, 64
X = jnp.asarray(np.random.default_rng(0).standard_normal((n, d)).astype("float32"))
means = X[:k]
blocks = drv.make_blocks(X, jnp.ones((n,), X.dtype), drv.DEFAULT_BLOCK_SIZE)
params = iso.IsotropicParams(means, jnp.zeros((), X.dtype))
step = jax.jit(lambda b, p: drv.em_iteration(iso.isotropic, p, b)[0])
kernel = jax.jit(_native.hard_assign)
cases = {
    "iteration": lambda: step(blocks, params),
    "kernel pass": lambda: kernel(means, blocks.x, blocks.weight),
}
for f in cases.values():
    jax.block_until_ready(f())
best = dict.fromkeys(cases, float("inf"))
for _ in range(repeats):
    for name, f in cases.items():
        t = time.perf_counter()
        jax.block_until_ready(f())
        best[name] = min(best[name], time.perf_counter() - t)
print(_native.status())
for name, seconds in best.items():
    print(f"{name:12s} {seconds * 1e3:7.1f} ms  (best of {repeats})")
