"""One compiled 8-lane sigma2 sweep (``fit_batch``) or one EM fit, run once, for a profiler.

The problem of ``sweep_iteration.py`` (Gaussian-noise rows, the first K rows as means, sigma2
from 1e-3 to 4 for the sweep and 1 for the fit), compiled ahead for ``ITERS`` iterations, run once
to warm up and once more, timed; so ``perf record`` of the process is mostly that second run.

Usage::

    PYTHONPATH=$PWD perf record -g python benchmarks/tuning/sweep_profile.py 156250,64,64 \\
        float64 sweep 40
"""

import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sweep_iteration.py

from sweep_iteration import sweep_problem


def main() -> None:
    n, d, k = map(int, sys.argv[1].split(","))
    dtype, which, iters = sys.argv[2], sys.argv[3], int(sys.argv[4])
    p = sweep_problem(n, d, k, dtype)
    from gmmlimit._api import fit_batch
    from gmmlimit._driver import fit_compiled
    from gmmlimit.variants._isotropic import isotropic

    if which == "sweep":
        params = p.starts

        def run(q):
            return fit_batch(isotropic, p.X, p.w, q, 0.0, max_iter=iters, block_size=4096)
    else:
        params = p.one
        zero = jnp.asarray(0.0, p.X.dtype)

        def run(q):
            return fit_compiled(isotropic, p.X, p.w, q, zero, max_iter=iters, block_size=4096)

    compiled = jax.jit(run).lower(params).compile()
    jax.block_until_ready(compiled(params))
    start = time.perf_counter()
    jax.block_until_ready(compiled(params))
    print(f"{which}: {(time.perf_counter() - start) / iters:.5f} s per iteration")


if __name__ == "__main__":
    main()
