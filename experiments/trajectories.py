"""Experiment 4: EM fits follow Lloyd's iterates and reach Lloyd's partition as sigma2 -> 0.

For several k-means++ starts per data set (one resumable point each), full EM fits are run from
the same initial means as Lloyd's K-means, vmapped over a log-spaced sigma2 grid that ends at 0.
Recorded: the per-iteration Frobenius distance between the EM and Lloyd iterates (a fixed number
of update steps, one ``lax.scan`` of ``gl.em_step``), the adjusted Rand index between the final
partitions, iteration counts, and the largest grid sigma2 below which EM's final partition equals
Lloyd's exactly (same labels, since both start from the same means).
"""

from __future__ import annotations

import dataclasses
import functools
from functools import partial
from typing import Any

import jax
import numpy as np
from sklearn.metrics import adjusted_rand_score

import gmmlimit as gl

from ._common import SweepConfig, dataset_key, load_data, reference_means, sigma2_grid
from ._config import ExperimentSpec
from ._runner import Progress, sweep
from ._store import PointStore

__all__ = [
    "EXPERIMENT",
    "TrajectoriesConfig",
    "TrajectoriesRecord",
    "TrajectoryPoint",
    "largest_equal_sigma2",
    "run",
]


@dataclasses.dataclass(frozen=True)
class TrajectoriesConfig(SweepConfig):
    """Config of the trajectories experiment.

    Attributes:
        n_restarts: k-means++ starts per data set.
        max_iter: iteration cap of every EM and Lloyd fit.
        tol: stopping tolerance of the fits (EM: relative log-likelihood gain; Lloyd: scaled
            centre shift, and it always stops when no label changes).
        n_path_steps: update steps recorded for the per-iteration distance.
    """

    n_restarts: int = 10
    max_iter: int = 300
    tol: float = 1e-10
    n_path_steps: int = 40

    def validate(self) -> None:
        """Refuse bad values before any work."""
        super().validate()
        for name in ("n_restarts", "max_iter", "n_path_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}.")
        if not (self.tol >= 0 and np.isfinite(self.tol)):
            raise ValueError(f"tol must be a finite number >= 0; got {self.tol}.")


@dataclasses.dataclass(frozen=True)
class TrajectoryPoint:
    """One restart on one data set (S grid points, T recorded steps, K, D).

    Attributes:
        sigma2: (S,) the grid, descending, ending at 0.
        ari: (S,) adjusted Rand index between EM's and Lloyd's final partitions.
        equal: (S,) bool, EM's partition equals Lloyd's.
        n_iter: (S,) EM iterations.
        lloyd_n_iter: Lloyd's iterations.
        path_dist: (S, T + 1) Frobenius distance between the EM and Lloyd iterates.
        sigma2_star: largest grid sigma2 below which every partition equals Lloyd's.
        fit_finite: every EM fit finite.
        zero_equal_labels: EM at sigma2 = 0 ends at Lloyd's labels.
        zero_equal_means: EM at sigma2 = 0 ends at Lloyd's means (to rounding).
        zero_equal_n_iter: EM at sigma2 = 0 takes Lloyd's iteration count.
        path_reaches_lloyd: the recorded Lloyd path ends at gl.kmeans' means.
        init: (K, D) the k-means++ start.
        path_delta_min: smallest gap Delta met on the data set's Lloyd paths.
        n: rows N.
        d: features D.
        k: components K.
        X: (N, D) the data (2-D data sets only).
        paths: (S, T + 1, K, D) EM iterates at every grid sigma2 (2-D data sets only).
    """

    sigma2: np.ndarray
    ari: np.ndarray
    equal: np.ndarray
    n_iter: np.ndarray
    lloyd_n_iter: int
    path_dist: np.ndarray
    sigma2_star: float
    fit_finite: bool
    zero_equal_labels: bool
    zero_equal_means: bool
    zero_equal_n_iter: bool
    path_reaches_lloyd: bool
    init: np.ndarray
    path_delta_min: float
    n: int
    d: int
    k: int
    X: np.ndarray | None = None
    paths: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class TrajectoriesRecord:
    """One data set: every restart's point stacked on a leading axis of R restarts.

    The fields are those of :class:`TrajectoryPoint`; ``sigma2``, ``X``, ``path_delta_min``,
    ``n``, ``d`` and ``k`` are shared by the restarts and kept once, every other field gains
    the leading (R,) axis (``ari`` is (R, S), ``sigma2_star`` (R,), ``paths``
    (R, S, T + 1, K, D), ...).
    """

    sigma2: np.ndarray
    ari: np.ndarray
    equal: np.ndarray
    n_iter: np.ndarray
    lloyd_n_iter: np.ndarray
    path_dist: np.ndarray
    sigma2_star: np.ndarray
    fit_finite: np.ndarray
    zero_equal_labels: np.ndarray
    zero_equal_means: np.ndarray
    zero_equal_n_iter: np.ndarray
    path_reaches_lloyd: np.ndarray
    init: np.ndarray
    path_delta_min: float
    n: int
    d: int
    k: int
    X: np.ndarray | None = None
    paths: np.ndarray | None = None


_SHARED = ("sigma2", "X", "path_delta_min", "n", "d", "k")


def _stack(points: list[TrajectoryPoint]) -> TrajectoriesRecord:
    """Stack the restarts of one data set."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(TrajectoryPoint):
        first = getattr(points[0], f.name)
        if f.name in _SHARED or first is None:
            values[f.name] = first
        else:
            values[f.name] = np.stack([np.asarray(getattr(p, f.name)) for p in points])
    return TrajectoriesRecord(**values)


def largest_equal_sigma2(grid: np.ndarray, equal: np.ndarray) -> float:
    """The largest grid sigma2 such that the partitions are equal at it and at every smaller one.

    Args:
        grid: (S,) sigma2 values in decreasing order, ending at 0.
        equal: (S,) bool, partition equal to Lloyd's at each grid value.

    Returns:
        That sigma2 (0.0 when only the limit point agrees; -1.0 when not even it does).
    """
    if not equal[-1]:
        return -1.0
    bad = np.nonzero(~equal)[0]
    first = bad.max() + 1 if bad.size else 0
    return float(grid[first])


@partial(jax.jit, static_argnames=("steps",))
def _paths_compiled(X: jax.Array, m0: jax.Array, grid: jax.Array, steps: int) -> jax.Array:
    def one(s: jax.Array) -> jax.Array:
        def step(m: jax.Array, _: None) -> tuple[jax.Array, jax.Array]:
            new = gl.em_step(X, m, s)
            return new, new

        return jax.lax.scan(step, m0, None, length=steps)[1]

    return jax.vmap(one)(grid)


def _paths(X: np.ndarray, m0: np.ndarray, grid: np.ndarray, steps: int) -> np.ndarray:
    """(S, steps + 1, K, D) iterates of EM from m0 at every grid sigma2 (sigma2 = 0: Lloyd)."""
    ms = np.asarray(_paths_compiled(X, m0, grid, steps))
    first = np.broadcast_to(m0, (grid.shape[0], 1, *m0.shape))
    return np.concatenate([first, ms], axis=1)


def _close(a: np.ndarray, b: np.ndarray, X: np.ndarray) -> bool:
    """Equal up to the rounding of a differently ordered sum (vmapped vs plain products)."""
    tol = 16 * float(np.finfo(X.dtype).eps) * float(np.max(np.abs(X)))
    return bool(np.max(np.abs(a - b)) <= tol)


@functools.lru_cache(maxsize=8)
def _setup(config: TrajectoriesConfig, name: str) -> dict[str, Any]:
    """Data, every restart's start and Lloyd fit, and the data set's sigma2 grid (cached).

    The grid reaches below the smallest gap Delta met anywhere on the Lloyd paths of all
    restarts (not only at one fixed point): EM can follow Lloyd step by step only once every
    row on the path is past the one-hot threshold, and a near-tie on the way (digits has gaps
    of 1e-4 on some paths) would otherwise be decided softly.
    """
    X, _, info = load_data(config, name)
    k = info["k"]
    base = dataset_key(config.seed, name)
    _, ref_means = reference_means(X, k, jax.random.fold_in(base, 1))
    starts, fits, path_min = [], [], np.inf
    for i in range(config.n_restarts):
        m0 = np.asarray(
            gl.init.kmeans_plusplus(jax.random.fold_in(jax.random.fold_in(base, 3), i), X, k)
        )
        lloyd = gl.kmeans(X, m0, max_iter=config.max_iter, tol=config.tol)
        m = m0
        for _ in range(int(lloyd.n_iter) + 1):
            path_min = min(path_min, float(np.min(np.asarray(gl.study.nearest_gap(X, m)))))
            m = gl.em_step(X, m, 0.0)
        starts.append(m0)
        fits.append(lloyd)
    grid = sigma2_grid(config, X, ref_means, reach=path_min)
    return {
        "X": X,
        "info": info,
        "starts": starts,
        "lloyd": fits,
        "grid": grid,
        "path_delta_min": path_min,
    }


def _point(config: TrajectoriesConfig, key_name: str) -> TrajectoryPoint:
    name, restart = key_name.rsplit("-r", 1)
    setup = _setup(config, name)
    X, info, grid = setup["X"], setup["info"], setup["grid"]
    k = info["k"]
    m0, lloyd = setup["starts"][int(restart)], setup["lloyd"][int(restart)]
    fits = jax.vmap(lambda s: gl.em(X, m0, s, max_iter=config.max_iter, tol=config.tol))(grid)
    labels = np.asarray(fits.labels)
    lloyd_labels = np.asarray(lloyd.labels)
    equal = np.all(labels == lloyd_labels[None], axis=1)
    ari = np.array([adjusted_rand_score(lloyd_labels, lab) for lab in labels])
    paths = _paths(X, m0, grid, config.n_path_steps)
    dist = np.sqrt(np.sum((paths - paths[-1][None]) ** 2, axis=(2, 3)))  # (S, steps + 1)
    steps_cover = int(lloyd.n_iter) <= config.n_path_steps
    out: dict[str, Any] = {
        "sigma2": grid,
        "ari": ari,
        "equal": equal,
        "n_iter": np.asarray(fits.n_iter),
        "lloyd_n_iter": int(lloyd.n_iter),
        "path_dist": dist,
        "sigma2_star": largest_equal_sigma2(grid, equal),
        "fit_finite": bool(
            np.all(np.isfinite(np.asarray(fits.means))) and np.all(np.isfinite(fits.objective))
        ),
        "zero_equal_labels": bool(np.array_equal(labels[-1], lloyd_labels)),
        "zero_equal_means": bool(_close(np.asarray(fits.means)[-1], np.asarray(lloyd.means), X)),
        "zero_equal_n_iter": int(fits.n_iter[-1]) == int(lloyd.n_iter),
        "path_reaches_lloyd": (
            bool(_close(paths[-1, -1], np.asarray(lloyd.means), X)) if steps_cover else True
        ),
        "init": m0,
        "path_delta_min": setup["path_delta_min"],
        "n": info["n"],
        "d": info["d"],
        "k": k,
    }
    if info["d"] == 2:
        out["X"] = X
        out["paths"] = paths
    return TrajectoryPoint(**out)


def run(
    config: TrajectoriesConfig, progress: Progress, resume: PointStore | None = None
) -> dict[str, TrajectoriesRecord]:
    """Every (data set, restart) is one resumable point; pure computation."""
    keys = [f"{n}-r{i}" for n in config.datasets for i in range(config.n_restarts)]
    points = sweep(
        resume, keys, lambda key: _point(config, key), progress, "restarts", TrajectoryPoint
    )
    return {
        name: _stack([points[f"{name}-r{i}"] for i in range(config.n_restarts)])
        for name in config.datasets
    }


def check(config: TrajectoriesConfig, records: dict[str, TrajectoriesRecord]) -> list[str]:
    """Verified: sigma2 = 0 reproduces Lloyd exactly; a positive sigma2* exists for every start."""
    failures = []
    for name, r in records.items():
        for field, what in (
            ("zero_equal_labels", "EM at sigma2 = 0 does not end at Lloyd's partition"),
            ("zero_equal_means", "EM at sigma2 = 0 does not end at Lloyd's means"),
            ("zero_equal_n_iter", "EM at sigma2 = 0 does not take Lloyd's iteration count"),
            ("path_reaches_lloyd", "the recorded Lloyd path does not end at gl.kmeans' means"),
            ("fit_finite", "an EM fit turned NaN or inf"),
        ):
            ok = np.asarray(getattr(r, field))
            if not ok.all():
                failures.append(f"{name}: {what} ({int((~ok).sum())} restarts)")
        star = r.sigma2_star
        if not np.all(star > 0):
            failures.append(
                f"{name}: EM reproduces Lloyd's partition only at sigma2 = 0 or never, "
                f"for {int(np.sum(star <= 0))} restarts"
            )
    return failures


def summarize(config: TrajectoriesConfig, records: dict[str, TrajectoriesRecord]) -> str:
    """One line: sigma2* range and ARI at the top of the grid, per data set."""
    parts = []
    for n, r in records.items():
        star = r.sigma2_star
        parts.append(
            f"{n} sigma2* {star.min():.2g}-{star.max():.2g} (ARI {r.ari[:, 0].mean():.2f} at top)"
        )
    total = sum(int(np.sum(r.sigma2_star > 0)) for r in records.values())
    count = sum(np.size(r.sigma2_star) for r in records.values())
    return (
        f"trajectories: EM reproduced Lloyd's partition below a positive sigma2* in "
        f"{total}/{count} restarts; {', '.join(parts)}"
    )


EXPERIMENT = ExperimentSpec(
    name="trajectories",
    config_type=TrajectoriesConfig,
    record_type=TrajectoriesRecord,
    run=run,
    summarize=summarize,
    check=check,
    quick={
        "n_samples": 300,
        "digits_n": 400,
        "n_sigma2": 25,
        "n_restarts": 3,
        "n_path_steps": 25,
    },
    description="EM fits against Lloyd from the same starts: iterates, ARI, iteration counts",
    order=40,
)
