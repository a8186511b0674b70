"""EM's linear convergence rate against sigma2: measured, and predicted by linearisation.

For each data set and each sigma2 on a log grid around the critical sigma2_c = lambda_max(C):

* above sigma2_c the fixed point is the collapsed one (all means at the data mean); EM is started
  there plus a small kick and the measured rate |mu_{t+1} - mu*| / |mu_t - mu*| is compared with
  lambda_max / sigma2 (DESIGN.md statement 5);
* below sigma2_c the fixed point is the one EM reaches from a k-means++ start; EM is started
  there plus the same kick and the measured rate is compared with the spectral radius of the
  Jacobian of the EM map at that point (:func:`gmmlimit.study.linearized_rate`). The rate falls
  to 0 as the overlap vanishes: EM becomes K-means, which lands exactly on its fixed point.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

import gmmlimit as gl

from ._anneal_common import AnnealDataConfig
from ._common import dataset_key, load_data
from ._config import ExperimentSpec
from ._runner import Progress, sweep
from ._store import PointStore

__all__ = ["EXPERIMENT", "ConvergenceRateConfig", "ConvergenceRateRecord", "run"]


@dataclasses.dataclass(frozen=True)
class ConvergenceRateConfig(AnnealDataConfig):
    """Config of the convergence-rate experiment (defaults: the paper setting).

    Attributes:
        n_sigma2: grid size (log-spaced from ``top`` to ``bottom`` times lambda_max).
        top: largest sigma2, relative to lambda_max.
        bottom: smallest sigma2, relative to lambda_max.
        kick: size of the start's offset from the fixed point, relative to the data scale.
        n_steps: EM iterations measured.
        fixed_point_iter: iterations used to locate the fixed point.
        rate_tol: the verified statement: above sigma2_c the measured rate is within rate_tol
            (relative) of lambda_max / sigma2.
    """

    n_sigma2: int = 40
    top: float = 4.0
    bottom: float = 0.01
    kick: float = 1e-3
    n_steps: int = 60
    fixed_point_iter: int = 5000
    rate_tol: float = 0.05

    def validate(self) -> None:
        """Refuse bad values before any work."""
        super().validate()
        if self.n_sigma2 < 2:
            raise ValueError(f"n_sigma2 must be >= 2; got {self.n_sigma2}.")
        if not self.top > 1.0 > self.bottom > 0:
            raise ValueError(f"need top > 1 > bottom > 0; got {self.top}, {self.bottom}.")
        for name in ("kick", "rate_tol"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0; got {getattr(self, name)}.")
        for name in ("n_steps", "fixed_point_iter"):
            if getattr(self, name) < 2:
                raise ValueError(f"{name} must be >= 2; got {getattr(self, name)}.")


@dataclasses.dataclass(frozen=True)
class ConvergenceRateRecord:
    """One data set (S grid sigma2 values).

    Attributes:
        sigma2: (S,) the grid, descending (squared data units).
        measured: (S,) EM's measured linear rate.
        linearized: (S,) spectral radius of the EM map's Jacobian at the fixed point.
        collapsed_prediction: (S,) lambda_max / sigma2.
        predicted: (S,) lambda_max / sigma2 above sigma2_c, the Jacobian's radius below.
        above: (S,) bool, sigma2 above lambda_max.
        rel_error_above: (S,) measured / (lambda_max / sigma2) - 1 above sigma2_c (NaN below).
        floor_ratio: (S,) noise floor over the first error.
        kmeans_rate: the measured rate of K-means (sigma2 = 0).
        kmeans_steps_to_exact: steps until K-means lands exactly on its fixed point (-1: never).
        max_rel_error_above: largest |rel_error_above| (NaN when no grid point is above).
        lambda_max: the critical sigma2 of the data.
        n: rows N.
        d: features D.
        k: components K.
    """

    sigma2: np.ndarray
    measured: np.ndarray
    linearized: np.ndarray
    collapsed_prediction: np.ndarray
    predicted: np.ndarray
    above: np.ndarray
    rel_error_above: np.ndarray
    floor_ratio: np.ndarray
    kmeans_rate: float
    kmeans_steps_to_exact: int
    max_rel_error_above: float
    lambda_max: float
    n: int
    d: int
    k: int


def _point(config: ConvergenceRateConfig, name: str) -> ConvergenceRateRecord:
    X, _, info = load_data(config, name)
    k = info["k"]
    lam = float(gl.critical_sigma2(X))
    key = dataset_key(config.seed, name)
    start = np.asarray(gl.init.kmeans_plusplus(jax.random.fold_in(key, 1), X, k))
    kick_key = jax.random.fold_in(key, 5)
    centred = X - X.mean(0)
    scale = float(np.sqrt(np.mean(np.sum(centred * centred, axis=1))))
    kick = config.kick * scale * np.asarray(jax.random.normal(kick_key, start.shape, np.float64))
    collapsed = np.broadcast_to(X.mean(0), start.shape).astype(X.dtype)
    opts = {"n_steps": config.n_steps, "fixed_point_iter": config.fixed_point_iter}

    def fixed_point(s2: float) -> np.ndarray:
        # EM's fixed point from the k-means++ start: the same compiled measurement, whose
        # fixed-point search runs n_steps + fixed_point_iter iterations with no early stop
        return gl.study.convergence_rate(X, start, s2, **opts).fixed_point

    grid = lam * np.geomspace(config.top, config.bottom, config.n_sigma2)
    measured = np.empty(grid.size)
    linearised = np.empty(grid.size)
    floor_ratio = np.empty(grid.size)
    above = grid > lam
    for i, s2 in enumerate(grid):
        if above[i]:
            # known fixed point: near sigma2_c EM approaches it too slowly to locate it by iterating
            mu_star = collapsed
            result = gl.study.convergence_rate(
                X, collapsed + kick, s2, fixed_point=collapsed, **opts
            )
        else:
            result = gl.study.convergence_rate(X, fixed_point(s2) + kick, s2, **opts)
            mu_star = result.fixed_point
        measured[i] = result.rate
        linearised[i] = gl.study.linearized_rate(X, mu_star, s2)
        floor_ratio[i] = result.floor / result.errors[0]
    lloyd_rate = gl.study.convergence_rate(X, fixed_point(0.0) + kick, 0.0, **opts)
    pred = np.where(above, lam / grid, linearised)
    rel = np.where(above, measured / (lam / grid) - 1.0, np.nan)
    out: dict[str, Any] = {
        "sigma2": grid,
        "measured": measured,
        "linearized": linearised,
        "collapsed_prediction": lam / grid,
        "predicted": pred,
        "above": above,
        "rel_error_above": rel,
        "floor_ratio": floor_ratio,  # noise floor over the first error (conservative)
        "kmeans_rate": float(lloyd_rate.rate),
        "kmeans_steps_to_exact": int(np.argmax(lloyd_rate.errors == 0))
        if np.any(lloyd_rate.errors == 0)
        else -1,
        "max_rel_error_above": float(np.nanmax(np.abs(rel))) if above.any() else np.nan,
        "lambda_max": lam,
        "n": info["n"],
        "d": info["d"],
        "k": k,
    }
    return ConvergenceRateRecord(**out)


def run(
    config: ConvergenceRateConfig, progress: Progress, resume: PointStore | None = None
) -> dict[str, ConvergenceRateRecord]:
    """Every data set is one resumable point; pure computation."""
    return sweep(
        resume,
        list(config.datasets),
        lambda n: _point(config, n),
        progress,
        "data sets",
        ConvergenceRateRecord,
    )


def check(config: ConvergenceRateConfig, records: dict[str, ConvergenceRateRecord]) -> list[str]:
    """Verified: above sigma2_c the rate is lambda_max / sigma2 (within rate_tol); K-means exact."""
    failures = []
    for name, r in records.items():
        err = r.max_rel_error_above
        if not err <= config.rate_tol:
            failures.append(
                f"{name}: measured rate off lambda_max / sigma2 by {err:.2%} above sigma2_c"
            )
        if r.kmeans_steps_to_exact < 0:
            failures.append(f"{name}: K-means did not land exactly on its fixed point")
    return failures


def summarize(config: ConvergenceRateConfig, records: dict[str, ConvergenceRateRecord]) -> str:
    """One line: the worst relative error above sigma2_c and the smallest measured rate."""
    parts = []
    for name, r in records.items():
        parts.append(
            f"{name} max |rate/(lambda/sigma2) - 1| above sigma2_c "
            f"{r.max_rel_error_above:.2e}, rate at smallest sigma2 "
            f"{r.measured[-1]:.2e}, K-means exact after "
            f"{r.kmeans_steps_to_exact} step(s)"
        )
    return "convergence_rate: " + "; ".join(parts)


EXPERIMENT = ExperimentSpec(
    name="convergence_rate",
    config_type=ConvergenceRateConfig,
    record_type=ConvergenceRateRecord,
    run=run,
    summarize=summarize,
    check=check,
    quick={
        "datasets": ("anisotropic",),
        "n_samples": 300,
        "n_sigma2": 10,
        "fixed_point_iter": 2000,
    },
    description=(
        "EM's linear rate against sigma2, measured and linearised; lambda_max / sigma2 above "
        "the critical sigma2"
    ),
    order=62,
)
