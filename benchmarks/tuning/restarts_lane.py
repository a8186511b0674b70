"""One lane of vmapped K-means restarts against one fit, per iteration, Hamerly's bounds and Lloyd.

Four restarts from distinct random rows of clustered data run as one ``fit_batch`` (what
``gl.restarts`` runs), against one fit from the first of those starts (``fit_compiled``), each
with the bounds (``isotropic_bounded``) and without (``isotropic``). Every run is timed as the
difference of the best 25- and 5-iteration runs over 3 rounds, each run right after
``grid.warm``. Cited in docs/benchmarks.md ("Vmapped restarts with the bounds").

Usage: ``PYTHONPATH=$PWD python benchmarks/tuning/restarts_lane.py [N,D,K]`` (default
100000,64,256; float32).
"""

import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/grid.py

from grid import warm

LANES = 4
SHORT, LONG = 5, 25


def main() -> None:
    from gmmlimit._api import fit_batch
    from gmmlimit._driver import fit_compiled
    from gmmlimit.variants._isotropic import IsotropicParams, isotropic, isotropic_bounded

    size = sys.argv[1] if len(sys.argv) > 1 else "100000,64,256"
    n, d, k = (int(v) for v in size.split(","))
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=3.0, size=(k, d))
    X = jnp.asarray((centres[rng.integers(k, size=n)] + rng.normal(size=(n, d))).astype("float32"))
    w = jnp.ones((n,), X.dtype)
    means = jnp.stack([X[rng.choice(n, k, replace=False)] for _ in range(LANES)])
    starts = IsotropicParams(means, jnp.zeros((LANES,), X.dtype))
    one = IsotropicParams(means[0], jnp.zeros((), X.dtype))
    tol = jnp.asarray(-jnp.inf, X.dtype)

    def compiled(variant, batch: bool, iters: int):
        if batch:
            fn = lambda q: fit_batch(variant, X, w, q, tol, max_iter=iters, block_size=4096)  # noqa: E731
            return jax.jit(fn).lower(starts).compile(), starts
        fn = lambda q: fit_compiled(variant, X, w, q, tol, max_iter=iters, block_size=4096)  # noqa: E731
        return jax.jit(fn).lower(one).compile(), one

    variants = {"hamerly": isotropic_bounded, "lloyd": isotropic}
    runs = {
        (name, batch, iters): compiled(variant, batch, iters)
        for name, variant in variants.items()
        for batch in (True, False)
        for iters in (SHORT, LONG)
    }
    best: dict = {}
    for _ in range(3):
        for key, (run, params) in runs.items():
            warm(lambda run=run, params=params: jax.block_until_ready(run(params)))
            start = time.perf_counter()
            jax.block_until_ready(run(params))
            best[key] = min(best.get(key, np.inf), time.perf_counter() - start)
    print(f"({n}, {d}, {k}) float32, {LANES} restarts")
    for name in variants:
        lane = (best[name, True, LONG] - best[name, True, SHORT]) / (LONG - SHORT) / LANES
        fit = (best[name, False, LONG] - best[name, False, SHORT]) / (LONG - SHORT)
        print(
            f"  {name:8s} per lane {1e3 * lane:7.2f} ms per iteration, one fit "
            f"{1e3 * fit:7.2f} ms, lane / fit {lane / fit:.2f}"
        )


if __name__ == "__main__":
    main()
