"""Whole K-means fits through the scikit-learn estimator, against scikit-learn and gl.kmeans.

What a scikit-learn user pays: ``gmmlimit.sklearn.KMeans(...).fit(X)`` on NumPy data (validation,
centring, the compiled Lloyd loop, the final labels and inertia), scikit-learn's
``KMeans(algorithm="lloyd")`` and ``gl.kmeans`` on the same NumPy array, all from the same initial
centres for the same number of iterations (``tol=0``, so each runs ``--iters`` iterations unless
no label changes), timed interleaved in rotated order, best of ``--repeats`` each. Compilation is
left out (one untimed fit of each first). Run::

    PYTHONPATH=$PWD python benchmarks/estimators.py [--sizes N,D,K ...] [--iters 20] \\
        [--repeats 5] [--dtype float32] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import jax
import numpy as np
from sklearn.cluster import KMeans as SkKMeans
from sklearn.exceptions import ConvergenceWarning

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/grid.py

from grid import settle, warm

import gmmlimit as gl
from gmmlimit.sklearn import KMeans

DEFAULT_SIZES = ("600000,2,16", "300000,3,5", "156250,64,16", "140000,784,16")


def blobs(n: int, d: int, k: int, dtype: str, seed: int = 0) -> np.ndarray:
    """(n, d) rows around k Gaussian centres (scale 5, unit noise)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=5.0, size=(k, d))
    return (centres[rng.integers(k, size=n)] + rng.normal(size=(n, d))).astype(dtype)


def time_shape(n: int, d: int, k: int, dtype: str, iters: int, repeats: int) -> dict:
    """Best seconds of each way to fit (n, d, k), and their iteration counts."""
    X = blobs(n, d, k, dtype)
    start = X[np.random.default_rng(1).choice(n, k, replace=False)].copy()
    common = {"init": start, "n_init": 1, "tol": 0.0, "max_iter": iters}
    fits = {
        "estimator": lambda: KMeans(k, **common).fit(X).n_iter_,
        "sklearn": lambda: SkKMeans(k, algorithm="lloyd", **common).fit(X).n_iter_,
        "gl.kmeans": lambda: int(
            jax.block_until_ready(gl.kmeans(X, start, max_iter=iters, tol=0.0)).n_iter
        ),
    }
    n_iter = {name: fit() for name, fit in fits.items()}  # compiles; counts the iterations
    best = dict.fromkeys(fits, float("inf"))
    names = list(fits)
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            warm(fits[name])
            t0 = time.perf_counter()
            fits[name]()
            best[name] = min(best[name], time.perf_counter() - t0)
            if name == "sklearn":
                settle()  # its OpenMP threads spin for a while after a fit
    return {
        "shape": [n, d, k],
        "dtype": dtype,
        "seconds": best,
        "n_iter": n_iter,
        "sklearn_over_estimator": best["sklearn"] / best["estimator"],
        "estimator_over_gl_kmeans": best["estimator"] / best["gl.kmeans"],
    }


def main(argv: list[str] | None = None) -> list[dict]:
    """Time every shape, print one line each, optionally write the rows as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=list(DEFAULT_SIZES), help="N,D,K ...")
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for size in args.sizes:
            n, d, k = (int(v) for v in size.split(","))
            row = time_shape(n, d, k, args.dtype, args.iters, args.repeats)
            s = row["seconds"]
            print(
                f"({n}, {d}, {k}) {args.dtype}: estimator {s['estimator'] * 1e3:.1f} ms, "
                f"scikit-learn {s['sklearn'] * 1e3:.1f} ms, gl.kmeans {s['gl.kmeans'] * 1e3:.1f} ms"
                f" (iterations {row['n_iter']}); scikit-learn / estimator "
                f"{row['sklearn_over_estimator']:.2f}x, estimator / gl.kmeans "
                f"{row['estimator_over_gl_kmeans']:.2f}x",
                flush=True,
            )
            rows.append(row)
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    main()
