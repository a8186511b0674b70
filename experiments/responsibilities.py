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
from ._framework import ExperimentSpec, PointStore, Progress, flatten_points, sweep

__all__ = ["EXPERIMENT", "ResponsibilitiesConfig", "fit_regime", "run"]


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


def _point(config: ResponsibilitiesConfig, name: str) -> dict[str, Any]:
    X, _, info = load_data(config, name)
    key = jax.random.fold_in(dataset_key(config.seed, name), 1)
    _, means = reference_means(X, info["k"], key)
    grid = sigma2_grid(config, X, means)
    gap = np.asarray(jax.vmap(lambda s: gl.responsibility_gap(X, means, s))(grid))  # (S, N, K)
    bound = np.asarray(jax.vmap(lambda s: gl.responsibility_bound(X, means, s))(grid))  # (S, N)
    eps = float(np.finfo(X.dtype).eps)
    held = np.all(gap <= bound[:, :, None] * (1 + 64 * eps) + 4 * eps, axis=(1, 2))
    delta = np.asarray(gl.nearest_gap(X, means))
    delta_min = float(delta.min())
    max_gap = gap.max(axis=(1, 2))
    threshold = gl.onehot_threshold(X.dtype)
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
    }
    if info["d"] == 2:
        snaps = np.asarray(config.snapshot_sigma2, X.dtype) * out["critical_sigma2"]
        out["X"] = X
        out["means"] = means
        out["snap_sigma2"] = snaps
        out["snap_resp"] = np.asarray(
            jax.vmap(lambda s: gl.responsibilities(X, means, s))(snaps.astype(X.dtype))
        )
    return out


def run(
    config: ResponsibilitiesConfig, progress: Progress, resume: PointStore | None = None
) -> dict[str, Any]:
    """Sweep every data set (one resumable point each); pure computation."""
    points = sweep(
        resume, list(config.datasets), lambda n: _point(config, n), progress, "data sets"
    )
    return flatten_points(points, {"datasets": list(config.datasets)})


def check(data: dict) -> list[str]:
    """Verified statements: bound 1 at every grid point; the slope within 5%; 0 at sigma2 = 0."""
    failures = []
    for name in data["datasets"]:
        held = np.asarray(data[f"{name}__held"])
        if not held.all():
            failures.append(f"{name}: bound 1 violated at {int((~held).sum())} sigma2 values")
        if data[f"{name}__max_gap"][-1] != 0:
            failures.append(f"{name}: responsibilities not exactly one-hot at sigma2 = 0")
        n_fit = int(np.sum(data[f"{name}__fit_mask"]))
        ratio = data[f"{name}__slope"] / data[f"{name}__slope_predicted"]
        if n_fit < 3:
            failures.append(f"{name}: only {n_fit} grid points in the slope-fit regime (need 3)")
        elif not abs(ratio - 1) <= 0.05:
            failures.append(f"{name}: fitted slope / predicted = {ratio:.4f}, not within 5%")
    return failures


def summarize(data: dict) -> str:
    """One line: bound held count and fitted vs predicted slopes."""
    names = data["datasets"]
    held = sum(int(np.sum(data[f"{n}__held"])) for n in names)
    total = sum(len(data[f"{n}__held"]) for n in names)
    slopes = ", ".join(
        f"{n} {data[f'{n}__slope']:.4g} vs {data[f'{n}__slope_predicted']:.4g} "
        f"(ratio {data[f'{n}__slope'] / data[f'{n}__slope_predicted']:.5f})"
        for n in names
    )
    return (
        f"responsibilities: bound 1 held at {held}/{total} (data set, sigma2) points; "
        f"slope of log max gap vs 1/sigma2, fitted vs -min(Delta)/2: {slopes}"
    )


EXPERIMENT = ExperimentSpec(
    name="responsibilities",
    config_type=ResponsibilitiesConfig,
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
