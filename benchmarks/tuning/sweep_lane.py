"""One lane of a vmapped sigma2 sweep against one EM fit, per iteration (the sweep-cost check).

Usage::

    PYTHONPATH=$PWD python benchmarks/tuning/sweep_lane.py 31250,64,5 float64

Eight sigma2 values (1e-3 to 4, geometric) as one ``fit_batch`` over shared Gaussian-noise data,
against ``fit_compiled`` at sigma2 = 1; each timed as the difference of a 1- and a 6-iteration
run (best of 3, each after 0.15 s of the same run). Prints the iteration counts and the
per-lane cost over one fit's.
Where the compiled kernels are built, also the soft kernel's pass alone, for the eight sets in
one call and for one set (10 passes in a compiled loop, best of 3): what a lane costs in the
kernel, so the rest of a lane's cost is the loop around it.
"""

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

from gmmlimit import _native  # noqa: E402
from gmmlimit._api import fit_batch  # noqa: E402
from gmmlimit._driver import fit_compiled, make_blocks  # noqa: E402
from gmmlimit.variants._isotropic import IsotropicParams, isotropic  # noqa: E402

LANES = 8
WARM_S = 0.15


def main() -> None:
    n, d, k = map(int, sys.argv[1].split(","))
    dtype = sys.argv[2] if len(sys.argv) > 2 else "float32"
    rng = np.random.default_rng(0)
    X = jnp.asarray(rng.normal(size=(n, d)).astype(dtype))
    w = jnp.ones((n,), X.dtype)
    m0 = X[:k]
    s2 = jnp.asarray(np.geomspace(1e-3, 4.0, LANES).astype(dtype))
    starts = IsotropicParams(jnp.broadcast_to(m0, (LANES, k, d)), s2)
    one = IsotropicParams(m0, jnp.asarray(1.0, X.dtype))
    zero = jnp.asarray(0.0, X.dtype)

    def batch(iters: int):
        return fit_batch(isotropic, X, w, starts, 0.0, max_iter=iters, block_size=4096)

    def single(iters: int):
        return fit_compiled(isotropic, X, w, one, zero, max_iter=iters, block_size=4096)

    def timed(fn, iters: int) -> tuple[float, object]:
        # Best of 3, each after WARM_S of the same call (this VM runs slow for a while after
        # a pause: benchmarks/tuning/clock_ramp.py).
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < WARM_S:
                jax.block_until_ready(fn(iters))
            t0 = time.perf_counter()
            out = jax.block_until_ready(fn(iters))
            best = min(best, time.perf_counter() - t0)
        return best, out

    (b1, _), (b6, rb) = timed(batch, 1), timed(batch, 6)
    (o1, _), (o6, ro) = timed(single, 1), timed(single, 6)
    lane = (b6 - b1) / 5 / LANES
    fit = (o6 - o1) / 5
    counts = np.asarray(rb.n_iter).tolist()
    print(f"({n}, {d}, {k}) {dtype}: iterations {counts} / {int(ro.n_iter)}")
    print(f"per lane per iteration {lane:.5f} s, one fit {fit:.5f} s, ratio {lane / fit:.2f}")
    if _native.available():
        blocks = make_blocks(X, w, 4096)
        wide = kernel_pass_seconds(starts.means, s2, blocks)
        single = kernel_pass_seconds(m0[None], jnp.ones((1,), X.dtype), blocks)
        print(
            f"soft kernel pass alone: {wide / LANES:.5f} s per set with {LANES} sets in one call, "
            f"{single:.5f} s for one set; the loop around the kernel adds "
            f"{lane - wide / LANES:.5f} s per lane and {fit - single:.5f} s per fit"
        )


def kernel_pass_seconds(means: jax.Array, sigma2: jax.Array, blocks) -> float:
    """Seconds of one soft kernel pass for the sets (S, K, D), best of 3 runs of 10 passes."""

    def passes(means: jax.Array) -> jax.Array:
        def body(_, m: jax.Array) -> jax.Array:
            counts = _native.soft_assign(m, sigma2, blocks.x, blocks.weight)[2]
            return m + 0 * counts[..., :1, None].astype(m.dtype)  # each pass waits for the last

        return jax.lax.fori_loop(0, 10, body, means)

    run = jax.jit(passes)
    jax.block_until_ready(run(means))
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < WARM_S:
            jax.block_until_ready(run(means))
        t0 = time.perf_counter()
        jax.block_until_ready(run(means))
        best = min(best, (time.perf_counter() - t0) / 10)
    return best


if __name__ == "__main__":
    main()
