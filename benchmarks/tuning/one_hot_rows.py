"""How many rows of the grid's sigma2 sweep have exactly one-hot responsibilities, per shape.

A row is exactly one-hot at sigma2 once the gap between its two nearest means, over 2 sigma2,
passes -ln(smallest normal number) (87.34 in float32, 708.40 in float64: every other exponential
is then an exact 0). For each (D, K) of the grid: Gaussian-noise rows (the grid's data), K of them
drawn at random as the means (``benchmarks/tuning/compilers.py --sweep`` times the kernel from
such means), float64 gaps (``gmmlimit.study.nearest_gap``) against ``onehot_threshold``, and the
share of one-hot rows summed over the sweep's 8 sigma2 values (1e-3 to 4): the number of lanes'
worth of rows whose product a pass could skip. A sample of the grid's rows is enough for a
share. Cited in docs/benchmarks.md.

Usage::

    python benchmarks/tuning/one_hot_rows.py [--rows 20000]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/grid.py

from grid import GRID_D, GRID_K, GRID_LANES, sweep_sigma2s

from gmmlimit.study import nearest_gap, onehot_threshold


def one_hot_lanes(gap: np.ndarray, sigma2s: np.ndarray, exponent: float) -> float:
    """The share of one-hot rows summed over the lanes (lanes' worth of rows)."""
    return float(sum(np.mean(gap / (2 * s) > exponent) for s in sigma2s))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    args = parser.parse_args()
    sigma2s = sweep_sigma2s(GRID_LANES)
    print(
        f"lanes' worth of exactly one-hot rows, of {GRID_LANES} (sigma2 {sigma2s[0]:g} to "
        f"{sigma2s[-1]:g}), {args.rows} Gaussian-noise rows, K random rows as means"
    )
    print("| D | K | float32 | float64 |\n|---:|---:|---:|---:|")
    for d in GRID_D:
        for k in GRID_K:
            rng = np.random.default_rng(d * 1000 + k)
            x = rng.standard_normal((args.rows, d))
            gap = np.asarray(nearest_gap(x, x[rng.choice(args.rows, k, replace=False)]))
            shares = [
                one_hot_lanes(gap, sigma2s, onehot_threshold(t)) for t in ("float32", "float64")
            ]
            print(f"| {d} | {k} | {shares[0]:.2f} | {shares[1]:.2f} |")


if __name__ == "__main__":
    main()
