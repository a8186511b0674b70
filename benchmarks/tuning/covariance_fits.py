"""Whole fits of the full- and tied-covariance variants through ``gl.fit``, best of a few.

Times what the variants' E-step and moments cost, without the scikit-learn estimator around
them: ``gl.fit(variant, X, start, max_iter, tol=0)`` on JAX data (clustered float32 rows, unit
starting covariances, equal weights), compilation left out. Run it on two checkouts one after the
other to compare them::

    PYTHONPATH=$PWD python benchmarks/tuning/covariance_fits.py --kinds full tied \\
        --sizes 300000,3,5 600000,2,16 100000,8,16 156250,64,16 [--iters 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

import gmmlimit as gl
from gmmlimit import variants as gv


def start_params(kind: str, X: np.ndarray, k: int, seed: int = 1) -> object:
    """k distinct rows as means, identity covariances, equal weights, beta 1, reg_covar 1e-6."""
    n, d = X.shape
    means = X[np.random.default_rng(seed).choice(n, k, replace=False)]
    weights = np.full(k, 1.0 / k, X.dtype)
    eye = np.eye(d, dtype=X.dtype)
    if kind == "full":
        return gv.FullParams(means, np.stack([eye] * k), weights, 1.0, 1e-6)
    return gv.TiedParams(means, eye, weights, 1.0, 1e-6)


def time_fit(kind: str, n: int, d: int, k: int, iters: int, repeats: int) -> dict:
    """Best seconds of one ``iters``-iteration fit at (n, d, k), and its iteration count."""
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=5.0, size=(k, d))
    X = (centres[rng.integers(k, size=n)] + rng.normal(size=(n, d))).astype(np.float32)
    params = start_params(kind, X, k)
    rows = jnp.asarray(X)

    def fit() -> gl.FitResult:
        result = gl.fit(getattr(gv, kind), rows, params, max_iter=iters, tol=0.0)
        return jax.block_until_ready(result)

    n_iter = int(fit().n_iter)  # compiles
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fit()
        best = min(best, time.perf_counter() - t0)
    return {"kind": kind, "shape": [n, d, k], "seconds": best, "n_iter": n_iter}


def main(argv: list[str] | None = None) -> list[dict]:
    """Time every kind at every size; print one line each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", nargs="+", default=["full", "tied"], choices=["full", "tied"])
    parser.add_argument("--sizes", nargs="+", default=["300000,3,5", "100000,8,16"])
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    rows = []
    for kind in args.kinds:
        for size in args.sizes:
            n, d, k = (int(v) for v in size.split(","))
            row = time_fit(kind, n, d, k, args.iters, args.repeats)
            print(
                f"{kind} ({n}, {d}, {k}): {row['seconds'] * 1e3:.1f} ms, {row['n_iter']} iterations"
            )
            rows.append(row)
    return rows


if __name__ == "__main__":
    main()
