"""Experiment 4: EM fits follow Lloyd's iterates and reach Lloyd's partition as sigma2 -> 0.

For several k-means++ starts per data set (one resumable point each), full EM fits are run from
the same initial means as Lloyd's K-means, vmapped over a log-spaced sigma2 grid that ends at 0.
Recorded: the per-iteration Frobenius distance between the EM and Lloyd iterates (a fixed number
of update steps, one ``lax.scan`` of ``gl.em_step``), the adjusted Rand index between the final
partitions, iteration counts, and the largest grid sigma2 below which EM's final partition equals
Lloyd's exactly (same labels, since both start from the same means).

Where that sigma2* must lie from below is predicted from Lloyd's path alone
(:func:`onehot_path_sigma2`): at means m, bound 1 puts every responsibility within
b_n = (K - 1) exp(-Delta_n / (2 sigma2)) of the one-hot, and statement 3 puts EM's mean update
within sum_n b_n ||x_n - c_k|| / (N_k - sum_n b_n) of Lloyd's. Once
N (K - 1) exp(-Delta_min / (2 sigma2)) <= eps (Delta_min the smallest gap at m), sum_n b_n <= eps
and EM's update is Lloyd's to the rounding of the mean itself (eps max_n ||x_n - c_k||, the size
of the difference between two summation orders of the same mean); the next E-step then finds
every row's nearest mean where Lloyd's finds it, its gap being at least 2 sigma2 ln(N (K-1) / eps),
far above that rounding. By induction over Lloyd's iterates from the same start, EM's iterates
are Lloyd's (to rounding) and its final partition is Lloyd's at every

    sigma2 <= sigma2_onehot = Delta_path / (2 ln(N (K - 1) / eps)),

Delta_path the smallest gap at any of Lloyd's iterates from that start (the stopping rules agree
too: EM's relative log-likelihood gain is then Lloyd's relative distortion decrease, up to the
vanishing sigma2 ln sigma2 terms, as at sigma2 = 0, where ``zero_equal_n_iter`` checks it). So
every grid sigma2 at or below sigma2_onehot must give Lloyd's partition and sigma2* is at least
the largest of them. EM run at 10 times its sigma2 puts the measured sigma2* below it.
"""

from __future__ import annotations

import dataclasses
import functools
import math
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
    "onehot_path_sigma2",
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
        lloyd_path_delta_min: smallest gap Delta met on this start's Lloyd path.
        sigma2_onehot: predicted sigma2 at and below which EM's iterates are Lloyd's
            (:func:`onehot_path_sigma2` of ``lloyd_path_delta_min``).
        n_below_prediction: positive grid sigma2 at or below ``sigma2_onehot`` (0: the
            prediction lies below the grid and cannot be tested).
        equal_below_prediction: EM's partition is Lloyd's at each of them.
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
    lloyd_path_delta_min: float
    sigma2_onehot: float
    n_below_prediction: int
    equal_below_prediction: bool
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
    the leading (R,) axis (``ari`` is (R, S), ``sigma2_star`` and ``sigma2_onehot`` (R,),
    ``paths`` (R, S, T + 1, K, D), ...).
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
    lloyd_path_delta_min: np.ndarray
    sigma2_onehot: np.ndarray
    n_below_prediction: np.ndarray
    equal_below_prediction: np.ndarray
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


def onehot_path_sigma2(path_delta_min: float, n: int, k: int, dtype: Any) -> float:
    """The sigma2 at and below which EM's iterates are Lloyd's, from Lloyd's path alone.

    Delta_path / (2 ln(N (K - 1) / eps)): there N (K - 1) exp(-Delta_n / (2 sigma2)) <= eps for
    every row at every iterate of the path, so EM's mean update is Lloyd's to rounding at each
    (the module docstring derives it).

    Args:
        path_delta_min: the smallest gap Delta_n at any of Lloyd's iterates from the start.
        n: rows N.
        k: components K.
        dtype: the dtype the fits compute in (its eps).

    Returns:
        The predicted sigma2; 0.0 for K = 1 (no competitor) or a path that meets a tie
        (Delta = 0), where no positive sigma2 is predicted.
    """
    if k < 2 or not path_delta_min > 0:
        return 0.0
    exponent = math.log(n * (k - 1) / float(np.finfo(np.dtype(dtype)).eps))
    return float(path_delta_min) / (2.0 * exponent)


def grid_below_prediction(grid: np.ndarray, sigma2_onehot: np.ndarray) -> np.ndarray:
    """(R, S) bool: the positive grid sigma2 at or below each restart's predicted sigma2_onehot.

    Args:
        grid: (S,) the sigma2 grid.
        sigma2_onehot: (R,) the predictions.

    Returns:
        Where each restart's partition must be Lloyd's (sigma2 = 0, checked on its own, excluded).
    """
    grid = np.asarray(grid, dtype=np.float64)
    pred = np.asarray(sigma2_onehot, dtype=np.float64)[:, None]
    return (grid[None] > 0) & (grid[None] <= pred)


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
    starts, fits, start_path_mins = [], [], []
    for i in range(config.n_restarts):
        m0 = np.asarray(
            gl.init.kmeans_plusplus(jax.random.fold_in(jax.random.fold_in(base, 3), i), X, k)
        )
        lloyd = gl.kmeans(X, m0, max_iter=config.max_iter, tol=config.tol)
        m, start_min = m0, np.inf
        for _ in range(int(lloyd.n_iter) + 1):  # the start, every iterate, the fixed point
            start_min = min(start_min, float(np.min(np.asarray(gl.study.nearest_gap(X, m)))))
            # one iteration of the fit itself, empty-cluster relocation included (em_step at
            # sigma2 = 0 is the plain M-step: it would leave the path where Lloyd relocates)
            m = gl.kmeans(X, m, max_iter=1).means
        starts.append(m0)
        fits.append(lloyd)
        start_path_mins.append(start_min)
    path_min = min(start_path_mins)
    grid = sigma2_grid(config, X, ref_means, reach=path_min)
    return {
        "X": X,
        "info": info,
        "starts": starts,
        "lloyd": fits,
        "grid": grid,
        "path_delta_min": path_min,
        "start_path_delta_min": start_path_mins,
    }


def _point(config: TrajectoriesConfig, key_name: str) -> TrajectoryPoint:
    name, restart = key_name.rsplit("-r", 1)
    setup = _setup(config, name)
    X, info, grid = setup["X"], setup["info"], setup["grid"]
    k = info["k"]
    m0, lloyd = setup["starts"][int(restart)], setup["lloyd"][int(restart)]
    start_path_min = setup["start_path_delta_min"][int(restart)]
    fits = jax.vmap(lambda s: gl.em(X, m0, s, max_iter=config.max_iter, tol=config.tol))(grid)
    labels = np.asarray(fits.labels)
    lloyd_labels = np.asarray(lloyd.labels)
    equal = np.all(labels == lloyd_labels[None], axis=1)
    ari = np.array([adjusted_rand_score(lloyd_labels, lab) for lab in labels])
    paths = _paths(X, m0, grid, config.n_path_steps)
    dist = np.sqrt(np.sum((paths - paths[-1][None]) ** 2, axis=(2, 3)))  # (S, steps + 1)
    steps_cover = int(lloyd.n_iter) <= config.n_path_steps
    sigma2_onehot = onehot_path_sigma2(start_path_min, info["n"], k, X.dtype)
    below = grid_below_prediction(grid, np.array([sigma2_onehot]))[0]
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
        "lloyd_path_delta_min": start_path_min,
        "sigma2_onehot": sigma2_onehot,
        "n_below_prediction": int(below.sum()),
        "equal_below_prediction": bool(equal[below].all()),
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
    """Verified: sigma2 = 0 reproduces Lloyd exactly; sigma2* is at least the predicted bound.

    For every start, EM reproduces Lloyd's partition at every grid sigma2 at or below
    sigma2_onehot = Delta_path / (2 ln(N (K - 1) / eps)) (:func:`onehot_path_sigma2`, recomputed
    here from the recorded Delta_path and checked against the recorded prediction), so the
    measured sigma2* is at least the largest such grid point, and it is positive. A start whose
    prediction lies below the whole positive grid (a ``sigma2_min`` given above it) can only
    meet the positive-sigma2* statement; the summary counts such starts.

    Returns:
        The statements that failed (empty when all hold).
    """
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
        star = np.asarray(r.sigma2_star)
        if not np.all(star > 0):
            failures.append(
                f"{name}: EM reproduces Lloyd's partition only at sigma2 = 0 or never, "
                f"for {int(np.sum(star <= 0))} restarts"
            )
        predicted = np.array(
            [onehot_path_sigma2(d, r.n, r.k, config.dtype) for d in r.lloyd_path_delta_min]
        )
        recorded = np.asarray(r.sigma2_onehot, dtype=np.float64)
        if not np.allclose(recorded, predicted, rtol=1e-12, atol=0.0):
            failures.append(f"{name}: the recorded sigma2_onehot is not that of Lloyd's path")
        below = grid_below_prediction(r.sigma2, predicted)  # (R, S)
        missed = below & ~np.asarray(r.equal, dtype=bool)
        counted = np.array_equal(r.n_below_prediction, below.sum(axis=1)) and np.array_equal(
            r.equal_below_prediction, ~missed.any(axis=1)
        )
        if not counted:
            failures.append(f"{name}: the recorded counts below the prediction are not its own")
        if missed.any():
            i = int(np.argmax(missed.any(axis=1)))
            failures.append(
                f"{name}: EM misses Lloyd's partition at {int(missed.sum())} grid sigma2 at or "
                f"below the predicted one-hot bound, in {int(missed.any(axis=1).sum())} "
                f"restarts (restart {i}: sigma2* {star[i]:.3g} < predicted "
                f"{predicted[i]:.3g})"
            )
    return failures


def summarize(config: TrajectoriesConfig, records: dict[str, TrajectoriesRecord]) -> str:
    """One line: sigma2* against the predicted one-hot bound, and ARI at the top, per data set."""
    parts = []
    for n, r in records.items():
        star, pred = np.asarray(r.sigma2_star), np.asarray(r.sigma2_onehot)
        ratio = star / pred
        parts.append(
            f"{n} sigma2* {star.min():.2g}-{star.max():.2g}, {ratio.min():.2g}-{ratio.max():.2g}x "
            f"the prediction (ARI {r.ari[:, 0].mean():.2f} at top)"
        )
    total = sum(int(np.sum(r.sigma2_star > 0)) for r in records.values())
    count = sum(np.size(r.sigma2_star) for r in records.values())
    testable = sum(int(np.sum(r.n_below_prediction > 0)) for r in records.values())
    reached = sum(
        int(np.sum((r.n_below_prediction > 0) & r.equal_below_prediction)) for r in records.values()
    )
    return (
        f"trajectories: EM reproduced Lloyd's partition below a positive sigma2* in "
        f"{total}/{count} restarts, and at every grid sigma2 up to the predicted one-hot bound "
        f"Delta_path / (2 ln(N (K-1) / eps)) in {reached}/{testable} restarts where the grid "
        f"reaches below it; {', '.join(parts)}"
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
