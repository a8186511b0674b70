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

__all__ = [
    "EXPERIMENT",
    "AnnealVsLloydConfig",
    "AnnealVsLloydRecord",
    "distortion_from_means",
    "recompute_tol",
    "run",
]


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
        anneal_recomputed: (A,) J recomputed in float64 from the final means of each annealing
            run (each row to its nearest mean), independently of the annealing code.
        best: the smallest J of all runs.
        anneal_median: the median annealing J.
        frac_random_worse: share of random-start runs above the annealing median.
        frac_random_better: share of random-start runs below it.
        frac_pp_worse: share of k-means++ runs above it.
        frac_pp_better: share of k-means++ runs below it.
        anneal_over_best: anneal_median / best (at least 1 by definition: a measurement).
        anneal_over_median_random: anneal_median / the median J of random-start Lloyd.
        anneal_over_median_pp: anneal_median / the median J of k-means++ Lloyd.
        lambda_max: the critical sigma2 of the data.
        n: rows N.
        d: features D.
        k: components K.
    """

    lloyd_random: np.ndarray
    lloyd_pp: np.ndarray
    anneal: np.ndarray
    anneal_recomputed: np.ndarray
    best: float
    anneal_median: float
    frac_random_worse: float
    frac_random_better: float
    frac_pp_worse: float
    frac_pp_better: float
    anneal_over_best: float
    anneal_over_median_random: float
    anneal_over_median_pp: float
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


def distortion_from_means(X: np.ndarray, means: np.ndarray) -> float:
    """The K-means objective J of ``means`` on X in float64: each row to its nearest mean."""
    X64, means64 = np.asarray(X, np.float64), np.asarray(means, np.float64)
    sq = np.sum((X64[:, None, :] - means64[None]) ** 2, axis=2)  # (N, K)
    return float(np.sum(np.min(sq, axis=1)))


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
    anneal_j, anneal_recomputed = [], []
    for i in range(config.n_anneal):
        path = gl.anneal(
            X, schedule, key=anneal_key(config.seed, name, i), k=k, max_iter=config.max_iter
        )
        anneal_j.append(float(path.distortion[-1]))
        anneal_recomputed.append(distortion_from_means(X, np.asarray(path.means[-1])))
    anneal = np.array(anneal_j)
    best = float(min(lloyd_random.min(), lloyd_pp.min(), anneal.min()))
    a = float(np.median(anneal))
    tol = config.rel_tol * best
    out: dict[str, Any] = {
        "lloyd_random": lloyd_random,
        "lloyd_pp": lloyd_pp,
        "anneal": anneal,
        "anneal_recomputed": np.array(anneal_recomputed),
        "best": best,
        "anneal_median": a,
        "frac_random_worse": float(np.mean(lloyd_random > a + tol)),
        "frac_random_better": float(np.mean(lloyd_random < a - tol)),
        "frac_pp_worse": float(np.mean(lloyd_pp > a + tol)),
        "frac_pp_better": float(np.mean(lloyd_pp < a - tol)),
        "anneal_over_best": a / best,
        "anneal_over_median_random": a / float(np.median(lloyd_random)),
        "anneal_over_median_pp": a / float(np.median(lloyd_pp)),
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


def recompute_tol(config: AnnealVsLloydConfig) -> float:
    """The relative gap allowed between a recorded and a recomputed distortion.

    ``rel_tol``, or 64 ulps of the config's dtype where that is larger (float32: the sums of N
    squared distances round at a few ulps of J).
    """
    return max(config.rel_tol, 64 * float(np.finfo(config.dtype).eps))


def check(config: AnnealVsLloydConfig, records: dict[str, AnnealVsLloydRecord]) -> list[str]:
    """Verified: annealing's median J <= each Lloyd rule's median J; each J matches its final means.

    Annealing's median distortion is at most the median distortion of Lloyd from random starts
    and of Lloyd from k-means++ starts (to ``rel_tol``), and each annealing distortion is the
    K-means objective of that run's final means, recomputed independently (to
    :func:`recompute_tol`). The medians are taken here from every run's recorded distortion,
    not from the record's summary fields.

    Returns:
        The statements that failed (empty when all hold).
    """
    failures = []
    recompute = recompute_tol(config)
    for name, r in records.items():
        anneal = np.asarray(r.anneal, dtype=np.float64)
        a = float(np.median(anneal))
        for rule, field in (("random-start", "lloyd_random"), ("k-means++", "lloyd_pp")):
            lloyd = float(np.median(getattr(r, field)))
            if not a <= lloyd * (1 + config.rel_tol):
                failures.append(
                    f"{name}: the median annealing distortion {a:.8g} is above the median "
                    f"{rule} Lloyd distortion {lloyd:.8g} (ratio {a / lloyd:.6g}, rel_tol "
                    f"{config.rel_tol:g})"
                )
        recomputed = np.asarray(r.anneal_recomputed, dtype=np.float64)
        off = ~(np.abs(anneal - recomputed) <= recompute * np.abs(recomputed))
        if off.any():
            i = int(np.argmax(off))
            failures.append(
                f"{name}: {int(off.sum())} of {off.size} annealing distortions differ from J "
                f"recomputed from their final means (run {i}: {anneal[i]:.8g} vs "
                f"{recomputed[i]:.8g}, relative tolerance {recompute:g})"
            )
    return failures


def summarize(config: AnnealVsLloydConfig, records: dict[str, AnnealVsLloydRecord]) -> str:
    """One line per data set: annealing against the median restarts and the best run."""
    parts = []
    for name, r in records.items():
        parts.append(
            f"{name} J_anneal/J_best {r.anneal_over_best:.4f}, J_anneal/median J "
            f"random-start {r.anneal_over_median_random:.4f} / k-means++ "
            f"{r.anneal_over_median_pp:.4f}, random-start Lloyd worse "
            f"{r.frac_random_worse:.0%} / better {r.frac_random_better:.0%}, k-means++ worse "
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
