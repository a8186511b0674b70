"""Whole fits through the scikit-learn estimators, against scikit-learn and the library call.

What a scikit-learn user pays: ``fit(X)`` on NumPy data (validation, the compiled loop, the final
labels), from the same initial means for the same number of iterations (``tol=0``, so each runs
``--iters`` iterations unless it converges exactly), timed interleaved in rotated order, best of
``--repeats`` each; compilation left out (one untimed fit of each first). ``--model``:

- ``kmeans``: ``gmmlimit.sklearn.KMeans`` against scikit-learn's ``KMeans(algorithm="lloyd")``
  and ``gl.kmeans``;
- ``isotropic``: ``IsotropicGaussianMixture`` (sigma2 = 1) against scikit-learn's spherical
  ``GaussianMixture`` (the grid's EM anchor) and ``gl.em``;
- ``gaussian``: ``gmmlimit.sklearn.GaussianMixture`` against scikit-learn's, both with
  ``--covariance-type`` (full by default; no library call to compare).

Run::

    PYTHONPATH=$PWD python benchmarks/estimators.py [--model kmeans] [--sizes N,D,K ...] \\
        [--covariance-type full] [--iters 20] [--repeats 5] [--dtype float32] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import warnings
from pathlib import Path

import jax
import numpy as np
from sklearn.cluster import KMeans as SkKMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SkGaussianMixture

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/grid.py

from grid import no_pauses, pauses, settle, warm

import gmmlimit as gl
from gmmlimit.sklearn import GaussianMixture, IsotropicGaussianMixture, KMeans

DEFAULT_SIZES = ("600000,2,16", "300000,3,5", "156250,64,16", "140000,784,16")


def blobs(n: int, d: int, k: int, dtype: str, seed: int = 0) -> np.ndarray:
    """(n, d) rows around k Gaussian centres (scale 5, unit noise)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=5.0, size=(k, d))
    return (centres[rng.integers(k, size=n)] + rng.normal(size=(n, d))).astype(dtype)


def fits_of(
    model: str, X: np.ndarray, start: np.ndarray, iters: int, covariance_type: str = "full"
) -> dict:
    """name -> a call that fits X from the (K, D) means ``start`` and returns its iterations.

    ``covariance_type`` is used by the ``gaussian`` model only.
    """
    k = start.shape[0]
    if model == "kmeans":
        common = {"init": start, "n_init": 1, "tol": 0.0, "max_iter": iters}
        return {
            "estimator": lambda: KMeans(k, **common).fit(X).n_iter_,
            "sklearn": lambda: SkKMeans(k, algorithm="lloyd", **common).fit(X).n_iter_,
            "library": lambda: int(
                jax.block_until_ready(gl.kmeans(X, start, max_iter=iters, tol=0.0)).n_iter
            ),
        }
    if model == "isotropic":
        ours = {"init": start, "sigma2": 1.0, "tol": 0.0, "max_iter": iters}
        theirs = {"means_init": start, "covariance_type": "spherical", "tol": 0.0}
        return {
            "estimator": lambda: IsotropicGaussianMixture(k, **ours).fit(X).n_iter_,
            "sklearn": lambda: SkGaussianMixture(k, max_iter=iters, **theirs).fit(X).n_iter_,
            "library": lambda: int(
                jax.block_until_ready(gl.em(X, start, 1.0, max_iter=iters, tol=0.0)).n_iter
            ),
        }
    common = {
        "means_init": start,
        "covariance_type": covariance_type,
        "tol": 0.0,
        "max_iter": iters,
    }
    return {
        "estimator": lambda: GaussianMixture(k, **common).fit(X).n_iter_,
        "sklearn": lambda: SkGaussianMixture(k, **common).fit(X).n_iter_,
    }


def time_shape(
    model: str,
    n: int,
    d: int,
    k: int,
    dtype: str,
    iters: int,
    repeats: int,
    covariance_type: str = "full",
) -> dict:
    """Best seconds of each way to fit (n, d, k), and their iteration counts."""
    X = blobs(n, d, k, dtype)
    start = X[np.random.default_rng(1).choice(n, k, replace=False)].copy()
    fits = fits_of(model, X, start, iters, covariance_type)
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
        "model": model,
        "covariance_type": covariance_type if model == "gaussian" else None,
        "shape": [n, d, k],
        "dtype": dtype,
        "seconds": best,
        "n_iter": n_iter,
        "sklearn_over_estimator": best["sklearn"] / best["estimator"],
        "pauses": pauses(),
        "estimator_over_library": best["estimator"] / best["library"]
        if "library" in best
        else None,
    }


def main(argv: list[str] | None = None) -> list[dict]:
    """Time every shape, print one line each, optionally write the rows as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="kmeans", choices=["kmeans", "isotropic", "gaussian"])
    parser.add_argument("--sizes", nargs="+", default=list(DEFAULT_SIZES), help="N,D,K ...")
    parser.add_argument(
        "--covariance-type", default="full", choices=["full", "tied", "diag", "spherical"]
    )
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--no-pauses", action="store_true", help="no settle pauses or warm-up runs (for the tests)"
    )
    args = parser.parse_args(argv)
    rows = []
    with warnings.catch_warnings(), no_pauses() if args.no_pauses else contextlib.nullcontext():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for size in args.sizes:
            n, d, k = (int(v) for v in size.split(","))
            row = time_shape(
                args.model, n, d, k, args.dtype, args.iters, args.repeats, args.covariance_type
            )
            times = ", ".join(f"{name} {sec * 1e3:.1f} ms" for name, sec in row["seconds"].items())
            library = row["estimator_over_library"]
            print(
                f"{args.model} ({n}, {d}, {k}) {args.dtype}: {times} (iterations {row['n_iter']});"
                f" scikit-learn / estimator {row['sklearn_over_estimator']:.2f}x"
                + ("" if library is None else f", estimator / library {library:.2f}x"),
                flush=True,
            )
            rows.append(row)
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    main()
