"""One lane of a vmapped sigma2 sweep against one EM fit, per iteration, and the kernel's share.

Usage::

    PYTHONPATH=$PWD python benchmarks/tuning/sweep_lane.py 31250,64,5 float64

The sweep of ``sweep_iteration.py`` (eight sigma2 values from 1e-3 to 4 as one ``fit_batch`` over
shared Gaussian-noise data, against one fit at sigma2 = 1, timed the same way) and, where the
compiled kernels are built, the soft kernel's pass alone, for the eight sets in one call and for
one set (10 passes in a compiled loop, best of 3, each after ``grid.warm``): what a lane costs in
the kernel, so the rest of a lane's cost is the loop around it.
"""

import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sweep_iteration.py, compilers.py

from compilers import passes
from sweep_iteration import LANES, sweep_and_fit_seconds, sweep_problem, warm


def main() -> None:
    n, d, k = map(int, sys.argv[1].split(","))
    dtype = sys.argv[2] if len(sys.argv) > 2 else "float32"
    p = sweep_problem(n, d, k, dtype)
    from gmmlimit import _native
    from gmmlimit._driver import make_blocks

    sweep, fit = sweep_and_fit_seconds(p)
    lane = sweep / LANES
    print(f"({n}, {d}, {k}) {dtype}")
    print(f"per lane per iteration {lane:.5f} s, one fit {fit:.5f} s, ratio {lane / fit:.2f}")
    if _native.available():
        blocks = make_blocks(p.X, p.w, 4096)
        wide = kernel_pass_seconds(p.starts.means, p.sigma2s, blocks)
        single = kernel_pass_seconds(p.m0[None], jnp.ones((1,), p.X.dtype), blocks)
        print(
            f"soft kernel pass alone: {wide / LANES:.5f} s per set with {LANES} sets in one call, "
            f"{single:.5f} s for one set; the loop around the kernel adds "
            f"{lane - wide / LANES:.5f} s per lane and {fit - single:.5f} s per fit"
        )


def kernel_pass_seconds(means: jax.Array, sigma2: jax.Array, blocks) -> float:
    """Seconds of one soft kernel pass for the sets (S, K, D), best of 3 runs of 10 passes."""
    from gmmlimit import _native

    run = passes(lambda m: _native.soft_assign(m, sigma2, blocks.x, blocks.weight), means, 10)
    best = float("inf")
    for _ in range(3):
        warm(lambda: jax.block_until_ready(run()))
        start = time.perf_counter()
        jax.block_until_ready(run())
        best = min(best, (time.perf_counter() - start) / 10)
    return best


if __name__ == "__main__":
    main()
