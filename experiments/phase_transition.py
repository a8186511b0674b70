"""Phase transitions of deterministic annealing: the splits of the means as sigma2 decreases.

For each data set, :func:`gmmlimit.anneal` follows EM from sigma2 = 1.3 lambda_max down to
1e-3 lambda_max (fine steps of about 0.8% through the first transition, coarse ones after, one
``optax.join_schedules`` schedule), then K-means. The first split (the distinct-centre count
leaving 1) is compared with sigma2_c = lambda_max(C) = ``gl.critical_sigma2(X)`` (DESIGN.md
statement 5); every later split with lambda_max of the splitting group's
responsibility-weighted covariance at the last stage before it (:func:`group_critical`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

import gmmlimit as gl

from ._anneal_common import (
    AnnealDataConfig,
    anneal_key,
    group_critical,
    pca_basis,
    two_phase_schedule,
)
from ._common import load_data
from ._config import ExperimentSpec
from ._runner import Progress, sweep
from ._store import PointStore

__all__ = ["EXPERIMENT", "PhaseTransitionConfig", "PhaseTransitionRecord", "run"]


@dataclasses.dataclass(frozen=True)
class PhaseTransitionConfig(AnnealDataConfig):
    """Config of the phase-transition experiment (defaults: the paper setting).

    Attributes:
        top: first sigma2 of the schedule, relative to lambda_max.
        fine_bottom: end of the fine part of the schedule, relative to lambda_max.
        n_fine: stages of the fine part.
        bottom: last sigma2 before the K-means stage, relative to lambda_max.
        n_coarse: stages of the coarse part.
        max_iter: EM iterations per stage.
        perturbation: symmetric-breaking noise, relative to the data scale.
        merge_tol: distance below which means count as one centre, relative to the data scale.
        split_tol: the verified statement: |first split / lambda_max - 1| <= split_tol on every
            data set.
    """

    top: float = 1.3
    fine_bottom: float = 0.7
    n_fine: int = 81
    bottom: float = 1e-3
    n_coarse: int = 60
    max_iter: int = 300
    perturbation: float = 1e-3
    merge_tol: float = 1e-2
    split_tol: float = 0.02

    def validate(self) -> None:
        """Refuse bad values before any work."""
        super().validate()
        if not (
            self.top > 1.0 and 0 < self.fine_bottom < 1.0 and 0 < self.bottom < self.fine_bottom
        ):
            raise ValueError(
                "need top > 1 > fine_bottom > bottom > 0 (relative to lambda_max); got "
                f"top={self.top}, fine_bottom={self.fine_bottom}, bottom={self.bottom}."
            )
        for name in ("n_fine", "n_coarse", "max_iter"):
            if getattr(self, name) < 2:
                raise ValueError(f"{name} must be >= 2; got {getattr(self, name)}.")
        for name in ("perturbation", "merge_tol", "split_tol"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0; got {getattr(self, name)}.")
        if self.perturbation >= self.merge_tol:
            raise ValueError(
                f"perturbation={self.perturbation} must be below merge_tol={self.merge_tol}, or "
                "the noise alone would count as a split."
            )


@dataclasses.dataclass(frozen=True)
class PhaseTransitionRecord:
    """One data set's annealing path (S EM stages plus the K-means stage, M splits).

    Attributes:
        sigma2: (S + 1,) sigma2 of every stage (the last, 0, is K-means).
        n_distinct: (S + 1,) distinct centres at the end of each stage.
        distortion: (S + 1,) K-means distortion J of the means.
        log_likelihood: (S + 1,) log-likelihood at each stage's sigma2.
        projected: (S + 1, K, 2) centre coordinates on the top two principal axes.
        splits: (M, 4) sigma2 before, sigma2 after, count before, count after, per split.
        split_measured: (M,) split sigma2 (geometric midpoint of its two stages).
        split_predicted: (M,) predicted split sigma2 (the splitting group's lambda_max).
        split_rel_error: (M,) measured / predicted - 1.
        lambda_max: the critical sigma2 of the data.
        mean_variance: mean per-feature variance of the data.
        first_split_rel_error: first split / lambda_max - 1 (NaN: no split).
        first_split_after: sigma2 of the first stage after the first split.
        first_split_before: sigma2 of the last stage before it.
        kmeans_distortion: J at the end.
        n: rows N.
        d: features D.
        k: components K.
    """

    sigma2: np.ndarray
    n_distinct: np.ndarray
    distortion: np.ndarray
    log_likelihood: np.ndarray
    projected: np.ndarray
    splits: np.ndarray
    split_measured: np.ndarray
    split_predicted: np.ndarray
    split_rel_error: np.ndarray
    lambda_max: float
    mean_variance: float
    first_split_rel_error: float
    first_split_after: float
    first_split_before: float
    kmeans_distortion: float
    n: int
    d: int
    k: int


def _point(config: PhaseTransitionConfig, name: str) -> PhaseTransitionRecord:
    X, _, info = load_data(config, name)
    k = info["k"]
    lam = float(gl.critical_sigma2(X))
    schedule = two_phase_schedule(
        lam, config.top, config.fine_bottom, config.n_fine, config.bottom, config.n_coarse
    )
    n_stages = config.n_fine + config.n_coarse
    path = gl.anneal(
        X,
        schedule,
        n_stages=n_stages,
        key=anneal_key(config.seed, name, 0),
        k=k,
        max_iter=config.max_iter,
        perturbation=config.perturbation,
        merge_tol=config.merge_tol,
    )
    sigma2 = np.asarray(path.sigma2, dtype=np.float64)
    means = np.asarray(path.means, dtype=np.float64)
    scale = float(path.scale)
    splits = gl.study.split_points(path)  # (M, 4): before, after, count before, count after
    # sigma2 of a split: the geometric midpoint of the two stages that bracket it
    measured = np.sqrt(splits[:, 0] * splits[:, 1]) if len(splits) else np.zeros(0)
    predicted = np.empty(len(splits))
    for i, (before, _, _, _) in enumerate(splits):
        stage = int(np.nonzero(sigma2 == before)[0][0])
        predicted[i] = group_critical(X, means[stage], before, config.merge_tol * scale)
    basis = pca_basis(X)
    out: dict[str, Any] = {
        "sigma2": sigma2,
        "n_distinct": np.asarray(path.n_distinct),
        "distortion": np.asarray(path.distortion, dtype=np.float64),
        "log_likelihood": np.asarray(path.log_likelihood, dtype=np.float64),
        "projected": means @ basis,  # (S + 1, K, 2) centre coordinates on the top two PCs
        "splits": splits,
        "split_measured": measured,
        "split_predicted": predicted,
        "split_rel_error": measured / predicted - 1.0 if len(splits) else np.zeros(0),
        "lambda_max": lam,
        "mean_variance": float(np.mean(np.var(X, axis=0))),
        "first_split_rel_error": float(measured[0] / lam - 1.0) if len(splits) else np.nan,
        "first_split_after": float(splits[0, 1]) if len(splits) else np.nan,
        "first_split_before": float(splits[0, 0]) if len(splits) else np.nan,
        "kmeans_distortion": float(path.distortion[-1]),
        "n": info["n"],
        "d": info["d"],
        "k": k,
    }
    return PhaseTransitionRecord(**out)


def run(
    config: PhaseTransitionConfig, progress: Progress, resume: PointStore | None = None
) -> dict[str, PhaseTransitionRecord]:
    """Anneal every data set (one resumable point each); pure computation."""
    return sweep(
        resume,
        list(config.datasets),
        lambda n: _point(config, n),
        progress,
        "data sets",
        PhaseTransitionRecord,
    )


def check(config: PhaseTransitionConfig, records: dict[str, PhaseTransitionRecord]) -> list[str]:
    """Verified: the first split lies within split_tol of lambda_max on every data set."""
    failures = []
    for name, r in records.items():
        err = r.first_split_rel_error
        if not abs(err) <= config.split_tol:
            failures.append(
                f"{name}: first split at {1 + err:.4f} lambda_max, not within "
                f"split_tol {config.split_tol:.3g} ({100 * config.split_tol:.3g}%) of it"
            )
    return failures


def summarize(config: PhaseTransitionConfig, records: dict[str, PhaseTransitionRecord]) -> str:
    """One line: first-split relative errors and the later-split errors per data set."""
    parts = []
    for name, r in records.items():
        later = r.split_rel_error[1:]
        later_txt = ", ".join(f"{e:+.3f}" for e in later) if later.size else "none"
        lam = r.lambda_max
        parts.append(
            f"{name} first {r.first_split_rel_error:+.4f} (between stages "
            f"{r.first_split_before / lam:.4f} and "
            f"{r.first_split_after / lam:.4f} lambda_max) "
            f"(lambda_max {lam:.3g} vs mean variance "
            f"{r.mean_variance:.3g}), later [{later_txt}]"
        )
    return "phase_transition: split sigma2 / predicted - 1: " + "; ".join(parts)


EXPERIMENT = ExperimentSpec(
    name="phase_transition",
    config_type=PhaseTransitionConfig,
    record_type=PhaseTransitionRecord,
    run=run,
    summarize=summarize,
    check=check,
    quick={
        "datasets": ("separated", "overlapping", "anisotropic"),
        "n_samples": 300,
        "n_fine": 61,
        "fine_bottom": 0.8,
        "n_coarse": 30,
        "max_iter": 200,
    },
    description=(
        "annealing path of the means; first split against lambda_max(C), later splits against "
        "the splitting group's weighted covariance"
    ),
    order=60,
)
