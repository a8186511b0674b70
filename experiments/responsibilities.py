"""Experiment 1: responsibilities approach the one-hot assignment, within bound 1.

For each data set, at the Lloyd fixed point reached from a k-means++ start, the responsibility
gap |r_nk - onehot_nk| is measured on a log-spaced sigma2 grid (sigma2 = 0 included; one vmapped
compiled call per data set) next to bound 1, (K - 1) exp(-Delta_n / (2 sigma2)). The log of the
largest gap is fitted against 1/sigma2 in the regime where the asymptotic law holds (see
docs/experiments.md) and compared with the predicted slope -min(Delta)/2.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

import gmmlimit as gl

from ._common import SweepConfig, dataset_key, load_data, reference_means, sigma2_grid
from ._config import ExperimentSpec
from ._runner import Progress, sweep
from ._store import PointStore

__all__ = ["EXPERIMENT", "ResponsibilitiesConfig", "ResponsibilitiesRecord", "fit_regime", "run"]


@dataclasses.dataclass(frozen=True)
class ResponsibilitiesConfig(SweepConfig):
    """Config of the responsibilities experiment (defaults: the paper setting).

    Attributes:
        fit_min_exponent: smallest Delta_min / (2 sigma2) used by the slope fit.
        fit_max_fraction: largest exponent used, as a fraction of the dtype's one-hot threshold.
        snapshot_sigma2: sigma2 values, relative to the critical sigma2, at which the full
            responsibilities of the 2-D data sets are kept (figure of hardening); 0 allowed.
    """

    fit_min_exponent: float = 5.0
    fit_max_fraction: float = 0.9
    snapshot_sigma2: tuple[float, ...] = (1.0, 0.3, 0.1, 0.03, 0.01, 0.0)

    def validate(self) -> None:
        """Refuse bad values before any work."""
        super().validate()
        if not self.fit_min_exponent > 0:
            raise ValueError(f"fit_min_exponent must be > 0; got {self.fit_min_exponent}.")
        if not 0 < self.fit_max_fraction <= 1:
            raise ValueError(f"fit_max_fraction must be in (0, 1]; got {self.fit_max_fraction}.")
        if any(not (s >= 0 and np.isfinite(s)) for s in self.snapshot_sigma2):
            raise ValueError(
                f"snapshot_sigma2 values must be finite and >= 0; got {self.snapshot_sigma2}."
            )


@dataclasses.dataclass(frozen=True)
class ResponsibilitiesRecord:
    """One data set's sweep (S grid points, N rows, K components, D features, P snapshots).

    Attributes:
        sigma2: (S,) the grid, descending, ending at 0.
        max_gap: (S,) largest |r_nk - onehot_nk|.
        mean_gap: (S,) mean |r_nk - onehot_nk|.
        max_bound: (S,) largest bound 1, (K - 1) exp(-Delta_n / (2 sigma2)).
        mean_bound: (S,) mean bound 1 times 2 / K (the bound on the mean gap).
        held: (S,) bool, bound 1 held at every (row, component).
        fit_mask: (S,) bool, grid points used by the slope fit.
        delta: (N,) the gap Delta_n of every row at the means.
        delta_min: min(Delta).
        slope: fitted slope of log(max gap) against 1/sigma2 (NaN: too few points).
        slope_predicted: -min(Delta) / 2.
        critical_sigma2: lambda_max of the data covariance.
        n: rows N.
        d: features D.
        k: components K.
        onehot_threshold: the dtype's one-hot exponent, -ln(smallest normal).
        means: (K, D) the Lloyd fixed point the sweep is taken at.
        X: (N, D) the data (2-D data sets only).
        snap_sigma2: (P,) snapshot sigma2 values (2-D data sets only).
        snap_resp: (P, N, K) responsibilities at the snapshots (2-D data sets only).
    """

    sigma2: np.ndarray
    max_gap: np.ndarray
    mean_gap: np.ndarray
    max_bound: np.ndarray
    mean_bound: np.ndarray
    held: np.ndarray
    fit_mask: np.ndarray
    delta: np.ndarray
    delta_min: float
    slope: float
    slope_predicted: float
    critical_sigma2: float
    n: int
    d: int
    k: int
    onehot_threshold: float
    means: np.ndarray
    X: np.ndarray | None = None
    snap_sigma2: np.ndarray | None = None
    snap_resp: np.ndarray | None = None


def fit_regime(
    sigma2: np.ndarray, max_gap: np.ndarray, delta_min: float, low: float, high: float
) -> np.ndarray:
    """Grid points where log(max gap) is linear in 1/sigma2 with slope -Delta_min/2.

    The exponent x = Delta_min / (2 sigma2) must be at least ``low`` (the closest row dominates
    and the softmax denominator is 1 + O(exp(-x))) and at most ``high`` (exp(-x) is still a
    normal number, so the gap has not flushed to zero); the gap itself must be positive.
    """
    positive = sigma2 > 0
    x = np.where(positive, delta_min / (2.0 * np.where(positive, sigma2, 1.0)), np.inf)
    return positive & (x >= low) & (x <= high) & (max_gap > 0)


def _point(config: ResponsibilitiesConfig, name: str) -> ResponsibilitiesRecord:
    X, _, info = load_data(config, name)
    key = jax.random.fold_in(dataset_key(config.seed, name), 1)
    _, means = reference_means(X, info["k"], key)
    grid = sigma2_grid(config, X, means)
    gap = np.asarray(
        jax.vmap(lambda s: gl.study.responsibility_gap(X, means, s))(grid)
    )  # (S, N, K)
    bound = np.asarray(
        jax.vmap(lambda s: gl.study.responsibility_bound(X, means, s))(grid)
    )  # (S, N)
    eps = float(np.finfo(X.dtype).eps)
    held = np.all(gap <= bound[:, :, None] * (1 + 64 * eps) + 4 * eps, axis=(1, 2))
    delta = np.asarray(gl.study.nearest_gap(X, means))
    delta_min = float(delta.min())
    max_gap = gap.max(axis=(1, 2))
    threshold = gl.study.onehot_threshold(X.dtype)
    mask = fit_regime(
        grid, max_gap, delta_min, config.fit_min_exponent, config.fit_max_fraction * threshold
    )
    if mask.sum() >= 2:
        slope = float(np.polyfit(1.0 / grid[mask], np.log(max_gap[mask]), 1)[0])
    else:
        slope = float("nan")
    out: dict[str, Any] = {
        "sigma2": grid,
        "max_gap": max_gap,
        "mean_gap": gap.mean(axis=(1, 2)),
        "max_bound": bound.max(axis=1),
        "mean_bound": bound.mean(axis=1) * (2.0 / info["k"]),
        "held": held,
        "fit_mask": mask,
        "delta": delta,
        "delta_min": delta_min,
        "slope": slope,
        "slope_predicted": -delta_min / 2.0,
        "critical_sigma2": float(gl.critical_sigma2(X)),
        "n": info["n"],
        "d": info["d"],
        "k": info["k"],
        "onehot_threshold": threshold,
        "means": means,
    }
    if info["d"] == 2:
        snaps = np.asarray(config.snapshot_sigma2, X.dtype) * out["critical_sigma2"]
        out["X"] = X
        out["snap_sigma2"] = snaps
        out["snap_resp"] = np.asarray(
            jax.vmap(lambda s: gl.responsibilities(X, means, s))(snaps.astype(X.dtype))
        )
    return ResponsibilitiesRecord(**out)


def run(
    config: ResponsibilitiesConfig, progress: Progress, resume: PointStore | None = None
) -> dict[str, ResponsibilitiesRecord]:
    """Sweep every data set (one resumable point each); pure computation."""
    return sweep(
        resume,
        list(config.datasets),
        lambda n: _point(config, n),
        progress,
        "data sets",
        ResponsibilitiesRecord,
    )


def check(config: ResponsibilitiesConfig, records: dict[str, ResponsibilitiesRecord]) -> list[str]:
    """Verified statements: bound 1 at every grid point; the slope within 5%; 0 at sigma2 = 0."""
    failures = []
    for name, r in records.items():
        if not r.held.all():
            failures.append(f"{name}: bound 1 violated at {int((~r.held).sum())} sigma2 values")
        if r.max_gap[-1] != 0:
            failures.append(f"{name}: responsibilities not exactly one-hot at sigma2 = 0")
        n_fit = int(np.sum(r.fit_mask))
        ratio = r.slope / r.slope_predicted
        if n_fit < 3:
            failures.append(f"{name}: only {n_fit} grid points in the slope-fit regime (need 3)")
        elif not abs(ratio - 1) <= 0.05:
            failures.append(f"{name}: fitted slope / predicted = {ratio:.4f}, not within 5%")
    return failures


def summarize(config: ResponsibilitiesConfig, records: dict[str, ResponsibilitiesRecord]) -> str:
    """One line: bound held count and fitted vs predicted slopes."""
    held = sum(int(np.sum(r.held)) for r in records.values())
    total = sum(len(r.held) for r in records.values())
    slopes = ", ".join(
        f"{n} {r.slope:.4g} vs {r.slope_predicted:.4g} (ratio {r.slope / r.slope_predicted:.5f})"
        for n, r in records.items()
    )
    return (
        f"responsibilities: bound 1 held at {held}/{total} (data set, sigma2) points; "
        f"slope of log max gap vs 1/sigma2, fitted vs -min(Delta)/2: {slopes}"
    )


EXPERIMENT = ExperimentSpec(
    name="responsibilities",
    config_type=ResponsibilitiesConfig,
    record_type=ResponsibilitiesRecord,
    run=run,
    summarize=summarize,
    check=check,
    quick={"n_samples": 300, "digits_n": 400, "n_sigma2": 40},
    description=(
        "max and mean |r - onehot| against sigma2 with bound 1, and the fitted exponential rate "
        "against -min(Delta)/2"
    ),
    order=10,
)
