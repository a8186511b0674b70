"""Annealing against Lloyd from random starts: the K-means distortion each one reaches.

For each data set, Lloyd's algorithm runs from ``n_restarts`` random starts (K distinct data
points, the textbook rule) and from as many k-means++ starts (one compiled fit, looped);
deterministic annealing (:func:`gmmlimit.anneal`, sigma2 from 1.3 lambda_max down to
1e-3 lambda_max, then K-means) runs with ``n_anneal`` symmetric-breaking keys. The distribution of
the final distortion J of each method is stored; the summary says how often a random-start Lloyd
run ends above the annealing result, and whether annealing matches the best restart.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

import gmmlimit as gl

from ._anneal_common import AnnealDataConfig, anneal_key
from ._common import dataset_key, load_data
from ._config import ExperimentSpec
from ._runner import Progress, sweep
from ._store import PointStore

__all__ = ["EXPERIMENT", "AnnealVsLloydConfig", "AnnealVsLloydRecord", "run"]


@dataclasses.dataclass(frozen=True)
class AnnealVsLloydConfig(AnnealDataConfig):
    """Config of the annealing-vs-Lloyd experiment (defaults: the paper setting).

    Attributes:
        n_restarts: Lloyd runs per initialisation rule.
        n_anneal: annealing runs (different perturbation keys).
        n_stages: annealing stages (geometric from ``top`` to ``bottom`` times lambda_max).
        top: first sigma2, relative to lambda_max.
        bottom: last positive sigma2, relative to lambda_max.
        max_iter: EM iterations per annealing stage, and Lloyd's iteration cap.
        rel_tol: two distortions within this relative gap count as equal.
    """

    n_restarts: int = 500
    n_anneal: int = 10
    n_stages: int = 120
    top: float = 1.3
    bottom: float = 1e-3
    max_iter: int = 300
    rel_tol: float = 1e-6

    def validate(self) -> None:
        """Refuse bad values before any work."""
        super().validate()
        for name in ("n_restarts", "n_anneal", "n_stages", "max_iter"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}.")
        if not self.top > self.bottom > 0:
            raise ValueError(f"need top > bottom > 0; got top={self.top}, bottom={self.bottom}.")
        if not self.rel_tol >= 0:
            raise ValueError(f"rel_tol must be >= 0; got {self.rel_tol}.")


@dataclasses.dataclass(frozen=True)
class AnnealVsLloydRecord:
    """One data set (R Lloyd restarts per rule, A annealing runs).

    Attributes:
        lloyd_random: (R,) final distortion J of Lloyd from random data points.
        lloyd_pp: (R,) final J of Lloyd from k-means++.
        anneal: (A,) final J of deterministic annealing, one per perturbation key.
        best: the smallest J of all runs.
        anneal_median: the median annealing J.
        frac_random_worse: share of random-start runs above the annealing median.
        frac_random_better: share of random-start runs below it.
        frac_pp_worse: share of k-means++ runs above it.
        frac_pp_better: share of k-means++ runs below it.
        anneal_over_best: anneal_median / best.
        lambda_max: the critical sigma2 of the data.
        n: rows N.
        d: features D.
        k: components K.
    """

    lloyd_random: np.ndarray
    lloyd_pp: np.ndarray
    anneal: np.ndarray
    best: float
    anneal_median: float
    frac_random_worse: float
    frac_random_better: float
    frac_pp_worse: float
    frac_pp_better: float
    anneal_over_best: float
    lambda_max: float
    n: int
    d: int
    k: int


def _lloyd_all(X: np.ndarray, init: Any, keys: jax.Array, k: int, max_iter: int) -> np.ndarray:
    """The final distortion of Lloyd from ``init(key, X, k)`` for every key.

    A Python loop over one compiled fit rather than a vmap: for the few hundred restarts used
    here it is as fast, and it compiles in a third of the time of the batched program.
    """
    return np.array(
        [float(gl.kmeans(X, init(kk, X, k), max_iter=max_iter).distortion) for kk in keys]
    )


def _point(config: AnnealVsLloydConfig, name: str) -> AnnealVsLloydRecord:
    X, _, info = load_data(config, name)
    k = info["k"]
    lam = float(gl.critical_sigma2(X))
    keys = jax.random.split(jax.random.fold_in(dataset_key(config.seed, name), 3), 2)
    n = config.n_restarts
    lloyd_random = _lloyd_all(
        X, gl.init.random_points, jax.random.split(keys[0], n), k, config.max_iter
    )
    lloyd_pp = _lloyd_all(
        X, gl.init.kmeans_plusplus, jax.random.split(keys[1], n), k, config.max_iter
    )
    schedule = lam * np.geomspace(config.top, config.bottom, config.n_stages)
    anneal_j = np.array(
        [
            float(
                gl.anneal(
                    X, schedule, key=anneal_key(config.seed, name, i), k=k, max_iter=config.max_iter
                ).distortion[-1]
            )
            for i in range(config.n_anneal)
        ]
    )
    best = float(min(lloyd_random.min(), lloyd_pp.min(), anneal_j.min()))
    a = float(np.median(anneal_j))
    tol = config.rel_tol * best
    out: dict[str, Any] = {
        "lloyd_random": lloyd_random,
        "lloyd_pp": lloyd_pp,
        "anneal": anneal_j,
        "best": best,
        "anneal_median": a,
        "frac_random_worse": float(np.mean(lloyd_random > a + tol)),
        "frac_random_better": float(np.mean(lloyd_random < a - tol)),
        "frac_pp_worse": float(np.mean(lloyd_pp > a + tol)),
        "frac_pp_better": float(np.mean(lloyd_pp < a - tol)),
        "anneal_over_best": a / best,
        "lambda_max": lam,
        "n": info["n"],
        "d": info["d"],
        "k": k,
    }
    return AnnealVsLloydRecord(**out)


def run(
    config: AnnealVsLloydConfig, progress: Progress, resume: PointStore | None = None
) -> dict[str, AnnealVsLloydRecord]:
    """Every data set is one resumable point; pure computation."""
    return sweep(
        resume,
        list(config.datasets),
        lambda n: _point(config, n),
        progress,
        "data sets",
        AnnealVsLloydRecord,
    )


def check(config: AnnealVsLloydConfig, records: dict[str, AnnealVsLloydRecord]) -> list[str]:
    """Verified: annealing's distortion is never below the best found (a consistency check)."""
    failures = []
    for name, r in records.items():
        if not r.anneal_over_best >= 1.0:
            failures.append(f"{name}: annealing below the minimum over all runs (impossible)")
    return failures


def summarize(config: AnnealVsLloydConfig, records: dict[str, AnnealVsLloydRecord]) -> str:
    """One line per data set: how often Lloyd ends above/below annealing."""
    parts = []
    for name, r in records.items():
        parts.append(
            f"{name} J_anneal/J_best {r.anneal_over_best:.4f}, random-start "
            f"Lloyd worse {r.frac_random_worse:.0%} / better "
            f"{r.frac_random_better:.0%}, k-means++ worse "
            f"{r.frac_pp_worse:.0%} / better {r.frac_pp_better:.0%}"
        )
    return "anneal_vs_lloyd: " + "; ".join(parts)


EXPERIMENT = ExperimentSpec(
    name="anneal_vs_lloyd",
    config_type=AnnealVsLloydConfig,
    record_type=AnnealVsLloydRecord,
    run=run,
    summarize=summarize,
    check=check,
    quick={
        # the 2-D sets, with the annealing program of phase_transition's quick setting (91
        # stages, 200 iterations: compiled once per process); digits is in the full setting
        "datasets": ("separated", "anisotropic"),
        "n_samples": 300,
        "n_restarts": 40,
        "n_anneal": 2,
        "n_stages": 91,
        "max_iter": 200,
    },
    description=(
        "distribution of the K-means distortion from random and k-means++ Lloyd restarts "
        "against deterministic annealing"
    ),
    order=61,
)
