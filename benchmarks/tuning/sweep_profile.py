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

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sweep_iteration.py

from sweep_iteration import compiled_fit, sweep_problem


def main() -> None:
    n, d, k = map(int, sys.argv[1].split(","))
    dtype, which, iters = sys.argv[2], sys.argv[3], int(sys.argv[4])
    p = sweep_problem(n, d, k, dtype)
    compiled = compiled_fit(p, "sweep" if which == "sweep" else "one fit", iters)
    params = p.starts if which == "sweep" else p.one
    jax.block_until_ready(compiled(params))
    start = time.perf_counter()
    jax.block_until_ready(compiled(params))
    print(f"{which}: {(time.perf_counter() - start) / iters:.5f} s per iteration")


if __name__ == "__main__":
    main()
