"""Whole K-means fits on NumPy data: the scikit-learn ``KMeans`` and ``gl.kmeans``, best and median.

What a fit on a NumPy array pays, copies into JAX included: ``--iters`` iterations from the same
k distinct rows, ``tol=0``, on clustered float32 rows (NumPy's own allocation, as a user's would
be); one untimed fit of each first (compilation), then ``--repeats`` timed fits each, reported as
best and median. Run it on two checkouts one after the other, alternating, to compare them::

    PYTHONPATH=$PWD python benchmarks/tuning/numpy_fits.py --sizes 156250,64,16 140000,784,16 \\
        [--iters 20] [--repeats 5]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import jax
import numpy as np

import gmmlimit as gl
from gmmlimit.sklearn import KMeans


def timings(fit: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(best, median) seconds of ``repeats`` calls of ``fit``, after one untimed call."""
    fit()
    seconds = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fit()
        seconds.append(time.perf_counter() - t0)
    return min(seconds), float(np.median(seconds))


def time_shape(n: int, d: int, k: int, iters: int, repeats: int) -> dict:
    """Best and median seconds of the estimator's and the library's fit at (n, d, k)."""
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=5.0, size=(k, d))
    X = (centres[rng.integers(k, size=n)] + rng.normal(size=(n, d))).astype(np.float32)
    start = X[rng.choice(n, k, replace=False)].copy()
    fits = {
        "estimator": lambda: KMeans(k, init=start, n_init=1, max_iter=iters, tol=0.0).fit(X),
        "library": lambda: jax.block_until_ready(
            gl.kmeans(X, start, max_iter=iters, tol=0.0).means
        ),
    }
    return {"shape": [n, d, k], **{name: timings(fit, repeats) for name, fit in fits.items()}}


def main(argv: list[str] | None = None) -> list[dict]:
    """Time every shape; print one line each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["156250,64,16"], help="N,D,K ...")
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    rows = []
    for size in args.sizes:
        n, d, k = (int(v) for v in size.split(","))
        row = time_shape(n, d, k, args.iters, args.repeats)
        parts = [
            f"{name} best {row[name][0] * 1e3:.1f} median {row[name][1] * 1e3:.1f} ms"
            for name in ("estimator", "library")
        ]
        print(f"({n}, {d}, {k}): " + "; ".join(parts), flush=True)
        rows.append(row)
    return rows


if __name__ == "__main__":
    main()
