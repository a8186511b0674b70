"""One iteration of a vmapped 8-lane sigma2 sweep (``fit_batch``) and of one EM fit, same process.

Each is timed as the difference of the best 11- and 1-iteration runs over 4 rounds, every run
right after 0.15 s of 1-iteration runs of the same fit (this VM runs slow after a pause:
``clock_ramp.py``). Used to compare two versions of the code by running it on each in turn.

Usage: ``PYTHONPATH=$PWD python benchmarks/tuning/sweep_iteration.py N,D,K float32|float64``.
"""

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

LANES = 8
WARM_S = 0.15


def main() -> None:
    n, d, k = map(int, sys.argv[1].split(","))
    dtype = sys.argv[2] if len(sys.argv) > 2 else "float32"
    jax.config.update("jax_enable_x64", dtype == "float64")
    from gmmlimit._api import fit_batch
    from gmmlimit._driver import fit_compiled
    from gmmlimit.variants._isotropic import IsotropicParams, isotropic

    X = jnp.asarray(np.random.default_rng(0).standard_normal((n, d)).astype(dtype))
    w = jnp.ones((n,), X.dtype)
    m0 = X[:k]
    sigma2s = jnp.asarray(np.geomspace(1e-3, 4.0, LANES).astype(dtype))
    starts = IsotropicParams(jnp.broadcast_to(m0, (LANES, k, d)), sigma2s)
    one = IsotropicParams(m0, jnp.asarray(1.0, X.dtype))
    zero = jnp.asarray(0.0, X.dtype)

    def compiled(fit, params, iters: int):
        return jax.jit(lambda p: fit(p, iters)).lower(params).compile()

    def batch(p, iters: int):
        return fit_batch(isotropic, X, w, p, 0.0, max_iter=iters, block_size=4096)

    def single(p, iters: int):
        return fit_compiled(isotropic, X, w, p, zero, max_iter=iters, block_size=4096)

    runs = {
        "sweep": (starts, {m: compiled(batch, starts, m) for m in (1, 11)}),
        "one fit": (one, {m: compiled(single, one, m) for m in (1, 11)}),
    }
    best = {}
    for _ in range(4):
        for name, (params, by_iters) in runs.items():
            for m, run in by_iters.items():
                start = time.perf_counter()
                while time.perf_counter() - start < WARM_S:
                    jax.block_until_ready(by_iters[1](params))
                start = time.perf_counter()
                jax.block_until_ready(run(params))
                best[name, m] = min(best.get((name, m), np.inf), time.perf_counter() - start)
    sweep = (best["sweep", 11] - best["sweep", 1]) / 10
    fit = (best["one fit", 11] - best["one fit", 1]) / 10
    print(
        f"({n}, {d}, {k}) {dtype}: sweep {1e3 * sweep:.2f} ms per iteration "
        f"({1e3 * sweep / LANES:.3f} per lane), one fit {1e3 * fit:.3f} ms per iteration, "
        f"lane / fit {sweep / LANES / fit:.2f}"
    )


if __name__ == "__main__":
    main()
