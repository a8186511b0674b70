"""Whole restarts to convergence on the CPU: fits one after another against one batch.

Usage::

    PYTHONPATH=$PWD python benchmarks/restarts.py                      # the cases below
    PYTHONPATH=$PWD python benchmarks/restarts.py --cases em-f64 --n-init 8

On clustered data (K unit-variance Gaussian blobs, centres uniform in [-3, 3]^D), each case
times ``gl.restarts(key, X, k, n_init=..., init=...)`` fitting to convergence (tol 0 at sigma2
= 0, 1e-8 otherwise, at most 300 iterations), best of ``--repeats`` after one untimed run, two
ways:

* ``one by one``: as a user calls it; on the CPU its fits run one after another, each the
  compiled program of one fit;
* ``batch``: the same call made to run its starts as one ``vmap`` (the program it runs off the
  CPU), every lane running until the slowest has converged.

Both include the same vmapped initialisation. Printed per case: the two times, batch / one by
one, and each start's iteration count, from separate ``gl.kmeans`` / ``gl.em`` fits from each
start (untimed), whose best must equal both restarts bit for bit. Cited in docs/benchmarks.md
("Restarts one after another").
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from unittest import mock

import jax
import numpy as np

CASES = {
    "hamerly": ((100_000, 64, 256), "float32", 0.0, "hamerly", "random"),
    "lloyd": ((100_000, 64, 256), "float32", 0.0, "lloyd", "random"),
    "kmeans-kpp": ((100_000, 64, 256), "float32", 0.0, "auto", "k-means++"),
    "em-f32": ((200_000, 3, 5), "float32", 0.5, "auto", "random"),
    "em-f64": ((200_000, 3, 5), "float64", 0.5, "auto", "random"),
    "em-kpp": ((100_000, 32, 16), "float64", 2.0, "auto", "k-means++"),
}
"""name -> ((N, D, K), dtype, sigma2, algorithm, init)."""


def _blobs(n: int, d: int, k: int, dtype: str) -> np.ndarray:
    rng = np.random.default_rng(0)
    centres = rng.uniform(-3.0, 3.0, (k, d))
    return (centres[rng.integers(0, k, n)] + rng.standard_normal((n, d))).astype(dtype)


def _best_time(call: Callable[[], object], repeats: int) -> tuple[float, object]:
    out = jax.block_until_ready(call())  # compiles
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        out = jax.block_until_ready(call())
        best = min(best, time.perf_counter() - start)
    return best, out


def run_case(name: str, n_init: int, repeats: int) -> None:
    import gmmlimit as gl
    import gmmlimit._api as api

    (n, d, k), dtype, sigma2, algorithm, init = CASES[name]
    X = jax.numpy.asarray(_blobs(n, d, k, dtype))
    key = jax.random.key(0)
    tol = 0.0 if sigma2 == 0 else 1e-8

    def one_by_one() -> gl.FitResult:
        return gl.restarts(
            key, X, k, sigma2=sigma2, n_init=n_init, init=init, tol=tol, algorithm=algorithm
        )

    def batch() -> gl.FitResult:
        with mock.patch.object(api, "_fits_one_by_one", lambda X: False):
            return one_by_one()

    initialise = gl.init.kmeans_plusplus if init == "k-means++" else gl.init.random_points
    separate = []
    for kk in jax.random.split(key, n_init):
        start = initialise(kk, X, k)
        if sigma2 == 0:
            separate.append(gl.kmeans(X, start, tol=tol, algorithm=algorithm))
        else:
            separate.append(gl.em(X, start, sigma2, tol=tol, algorithm=algorithm))
    best_separate = separate[int(np.argmax([float(f.objective) for f in separate]))]
    t_one, best_one = _best_time(one_by_one, repeats)
    t_batch, best_batch = _best_time(batch, repeats)
    same = all(
        np.array_equal(np.asarray(getattr(best, f)), np.asarray(getattr(best_separate, f)))
        for best in (best_one, best_batch)
        for f in ("means", "labels", "n_iter", "objective")
    )
    print(
        f"{name}: ({n}, {d}, {k}) {dtype} sigma2={sigma2} {init} x {n_init}, iterations "
        f"{[int(f.n_iter) for f in separate]}\n"
        f"  one by one {t_one:.3f} s, batch {t_batch:.3f} s, batch / one by one "
        f"{t_batch / t_one:.2f}; best fit the same bits as the separate fits': {same}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated case names")
    parser.add_argument("--n-init", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", True)
    for name in args.cases.split(","):
        run_case(name, args.n_init, args.repeats)


if __name__ == "__main__":
    main()
