"""What reading each feature's extremes (the exact offset of ``gmmlimit._offset``) costs a fit.

For each shape, float32 Gaussian rows near the origin (no offset: the fit runs as before) and
the same rows plus 1000 (every feature within a factor of two: translated):

* ``max/min``: the finiteness check ``as_data`` runs on every call (``X.max()``, ``X.min()``);
* ``range``: ``feature_range`` (each feature's extremes, rows of about 4096 values);
* ``axis0``: NumPy's ``X.min(axis=0)`` and ``X.max(axis=0)``, for comparison;
* ``translate``: the translated copy, where an offset is found;
* ``kmeans``: ``gl.kmeans`` to convergence (tol 1e-4) from the first K rows, whole call.

Best of R rounds each, milliseconds. Cited in the closing note of 2026-12-06.

Usage: ``PYTHONPATH=$PWD python benchmarks/tuning/offset_scan.py [R] [N,D,K ...]`` (default 5
rounds at (1000000, 2, 8), (1000000, 8, 16) and (200000, 64, 64)).
"""

import sys
import time

import numpy as np

import gmmlimit as gl
from gmmlimit._offset import data_offset, feature_range, translate


def best_of(call, rounds: int) -> float:
    """The best wall time of ``rounds`` calls, in milliseconds."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    shapes = [tuple(int(v) for v in s.split(",")) for s in sys.argv[2:]] or [
        (1_000_000, 2, 8),
        (1_000_000, 8, 16),
        (200_000, 64, 64),
    ]
    print("| (N, D, K) | data | max/min ms | range ms | axis0 ms | translate ms | kmeans ms |")
    print("|---|---|---|---|---|---|---|")
    for n, d, k in shapes:
        rng = np.random.default_rng(0)
        centres = rng.standard_normal((k, d)) * 3
        near = (centres[rng.integers(0, k, n)] + rng.standard_normal((n, d))).astype(np.float32)
        for label, X in (("near 0", near), ("near 1000", near + np.float32(1000.0))):
            offset = data_offset(*feature_range(X))
            m0 = X[:k].copy()
            gl.kmeans(X, m0, tol=1e-4).means.block_until_ready()  # compile
            cells = [
                best_of(lambda X=X: (X.max(), X.min()), rounds),
                best_of(lambda X=X: feature_range(X), rounds),
                best_of(lambda X=X: (X.min(axis=0), X.max(axis=0)), rounds),
                best_of(lambda X=X, o=offset: translate(X, o), rounds) if offset is not None else 0,
                best_of(lambda X=X, m=m0: gl.kmeans(X, m, tol=1e-4).means.block_until_ready(), 3),
            ]
            print(f"| ({n}, {d}, {k}) | {label} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")


if __name__ == "__main__":
    main()
