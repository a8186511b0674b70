"""Experiment 2: the scaled log-likelihood L~ converges to the K-means distortion J (bound 2).

At the Lloyd fixed point of each data set, on a log-spaced sigma2 grid (sigma2 = 0 included,
one vmapped call): L~ = -2 sigma2 [l + N ln K + (N D / 2) ln(2 pi sigma2)] next to both sides
of bound 2, J - 2 N sigma2 ln K <= L~ <= J, and next to the exponential rate
J - L~ <= 2 sigma2 (K - 1) sum_n exp(-Delta_n / (2 sigma2)) (from ln(1 + u) <= u). The
uncorrected -2 sigma2 l is recorded beside it: it tends to J only like sigma2 ln sigma2.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import numpy as np

import gmmlimit as gl

from ._common import SweepConfig, dataset_key, load_data, reference_means, sigma2_grid
from ._framework import ExperimentSpec, PointStore, Progress, flatten_points, sweep

__all__ = ["EXPERIMENT", "LoglikConfig", "run"]


@dataclasses.dataclass(frozen=True)
class LoglikConfig(SweepConfig):
    """Config of the log-likelihood experiment (defaults: the paper setting)."""


def _point(config: LoglikConfig, name: str) -> dict[str, Any]:
    X, _, info = load_data(config, name)
    key = jax.random.fold_in(dataset_key(config.seed, name), 1)
    _, means = reference_means(X, info["k"], key)
    grid = sigma2_grid(config, X, means)
    n, d, k = info["n"], info["d"], info["k"]
    J = float(gl.kmeans_objective(X, means))
    ltilde = np.asarray(jax.vmap(lambda s: gl.scaled_log_likelihood(X, means, s))(grid))
    bound_rows = jax.vmap(lambda s: gl.responsibility_bound(X, means, s))(grid)  # (S, N)
    rate = 2.0 * grid * np.asarray(bound_rows).sum(axis=1)
    positive = grid > 0
    loglik = np.asarray(jax.vmap(lambda s: gl.log_likelihood(X, means, s))(grid[positive]))
    uncorrected = np.full_like(grid, np.nan)
    uncorrected[positive] = -2.0 * grid[positive] * loglik
    lower = J - 2.0 * n * grid * math.log(k)
    eps = float(np.finfo(X.dtype).eps)
    slack = 256 * eps * abs(J)
    return {
        "sigma2": grid,
        "ltilde": ltilde,
        "J": J,
        "lower": lower,
        "rate_bound": rate,
        "uncorrected": uncorrected,
        "held": (ltilde >= lower - slack) & (ltilde <= J + slack),
        "rate_held": J - ltilde <= rate * (1 + 64 * eps) + slack,
        "n": n,
        "d": d,
        "k": k,
    }


def run(config: LoglikConfig, progress: Progress, resume: PointStore | None = None) -> dict:
    """Sweep every data set (one resumable point each); pure computation."""
    points = sweep(
        resume, list(config.datasets), lambda n: _point(config, n), progress, "data sets"
    )
    return flatten_points(points, {"datasets": list(config.datasets)})


def check(data: dict) -> list[str]:
    """Verified: bound 2 and the exponential rate at every grid point; L~ = J at sigma2 = 0."""
    failures = []
    for name in data["datasets"]:
        for field, what in (("held", "bound 2"), ("rate_held", "the exponential rate bound")):
            ok = np.asarray(data[f"{name}__{field}"])
            if not ok.all():
                failures.append(f"{name}: {what} violated at {int((~ok).sum())} sigma2 values")
        J, last = data[f"{name}__J"], float(data[f"{name}__ltilde"][-1])
        if not abs(last - J) <= 1e-12 * abs(J):
            failures.append(f"{name}: L~ = {last!r} at sigma2 = 0, not J = {J!r}")
    return failures


def _at_relative_error(data: dict, name: str, field: str, level: float) -> float:
    """The largest grid sigma2 below which |J - value| / J stays <= level."""
    grid = np.asarray(data[f"{name}__sigma2"])
    err = np.abs(np.asarray(data[f"{name}__{field}"]) - data[f"{name}__J"]) / data[f"{name}__J"]
    bad = np.nonzero(~(err <= level) & (grid > 0))[0]
    first_ok = bad.max() + 1 if bad.size else 0
    return float(grid[first_ok]) if first_ok < grid.size else 0.0


def summarize(data: dict) -> str:
    """One line: bound counts and where L~ and the uncorrected -2 sigma2 l reach J to 1e-3."""
    names = data["datasets"]
    held = sum(int(np.sum(data[f"{n}__held"])) for n in names)
    rate = sum(int(np.sum(data[f"{n}__rate_held"])) for n in names)
    total = sum(len(data[f"{n}__held"]) for n in names)

    def fmt(value: float) -> str:
        return f"{value:.2g}" if value > 0 else "never above 0"

    reach = ", ".join(
        f"{n} {fmt(_at_relative_error(data, n, 'ltilde', 1e-3))} vs "
        f"{fmt(_at_relative_error(data, n, 'uncorrected', 1e-3))}"
        for n in names
    )
    return (
        f"loglik: bound 2 held at {held}/{total}, exponential rate at {rate}/{total} points; "
        f"sigma2 below which |J - L~|/J <= 1e-3, corrected vs uncorrected: {reach}"
    )


EXPERIMENT = ExperimentSpec(
    name="loglik",
    config_type=LoglikConfig,
    run=run,
    summarize=summarize,
    check=check,
    quick={"n_samples": 300, "digits_n": 400, "n_sigma2": 40},
    description="scaled log-likelihood L~ against J with both sides of bound 2, and -2 sigma2 l",
    order=20,
)
