"""One lane of a vmapped sigma2 sweep against one EM fit, per iteration (the sweep-cost check).

Usage::

    PYTHONPATH=$PWD python benchmarks/tuning/sweep_lane.py 31250,64,5 float64

Eight sigma2 values (1e-3 to 4, geometric) as one ``fit_batch`` over shared Gaussian-noise data,
against ``fit_compiled`` at sigma2 = 1; each timed as the difference of a 1- and a 6-iteration
run after a compiling run. Prints the iteration counts and the per-lane cost over one fit's.
"""

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

from gmmlimit._api import fit_batch  # noqa: E402
from gmmlimit._driver import fit_compiled  # noqa: E402
from gmmlimit.variants._isotropic import IsotropicParams, isotropic  # noqa: E402

LANES = 8


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
        jax.block_until_ready(fn(iters))
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn(iters))
        return time.perf_counter() - t0, out

    (b1, _), (b6, rb) = timed(batch, 1), timed(batch, 6)
    (o1, _), (o6, ro) = timed(single, 1), timed(single, 6)
    lane = (b6 - b1) / 5 / LANES
    fit = (o6 - o1) / 5
    counts = np.asarray(rb.n_iter).tolist()
    print(f"({n}, {d}, {k}) {dtype}: iterations {counts} / {int(ro.n_iter)}")
    print(f"per lane per iteration {lane:.5f} s, one fit {fit:.5f} s, ratio {lane / fit:.2f}")


if __name__ == "__main__":
    main()
