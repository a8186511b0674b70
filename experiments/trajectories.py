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
from ._framework import ExperimentSpec, PointStore, Progress, sweep

__all__ = ["EXPERIMENT", "TrajectoriesConfig", "largest_equal_sigma2", "run"]


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
            path_min = min(path_min, float(np.min(np.asarray(gl.nearest_gap(X, m)))))
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


def _point(config: TrajectoriesConfig, key_name: str) -> dict[str, Any]:
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
    return out


def run(config: TrajectoriesConfig, progress: Progress, resume: PointStore | None = None) -> dict:
    """Every (data set, restart) is one resumable point; pure computation."""
    keys = [f"{n}-r{i}" for n in config.datasets for i in range(config.n_restarts)]
    points = sweep(resume, keys, lambda key: _point(config, key), progress, "restarts")
    out: dict[str, Any] = {"datasets": list(config.datasets), "n_restarts": config.n_restarts}
    for name in config.datasets:
        rows = [points[f"{name}-r{i}"] for i in range(config.n_restarts)]
        for field in rows[0]:
            if field in ("X",):
                out[f"{name}__{field}"] = rows[0][field]
            elif field in ("sigma2", "n", "d", "k", "path_delta_min"):
                value = rows[0][field]
                out[f"{name}__{field}"] = value if np.ndim(value) else value.item()
            else:
                out[f"{name}__{field}"] = np.stack([r[field] for r in rows])
    return out


def check(data: dict) -> list[str]:
    """Verified: sigma2 = 0 reproduces Lloyd exactly; a positive sigma2* exists for every start."""
    failures = []
    for name in data["datasets"]:
        for field, what in (
            ("zero_equal_labels", "EM at sigma2 = 0 does not end at Lloyd's partition"),
            ("zero_equal_means", "EM at sigma2 = 0 does not end at Lloyd's means"),
            ("zero_equal_n_iter", "EM at sigma2 = 0 does not take Lloyd's iteration count"),
            ("path_reaches_lloyd", "the recorded Lloyd path does not end at gl.kmeans' means"),
            ("fit_finite", "an EM fit turned NaN or inf"),
        ):
            ok = np.asarray(data[f"{name}__{field}"])
            if not ok.all():
                failures.append(f"{name}: {what} ({int((~ok).sum())} restarts)")
        star = np.asarray(data[f"{name}__sigma2_star"])
        if not np.all(star > 0):
            failures.append(
                f"{name}: EM reproduces Lloyd's partition only at sigma2 = 0 or never, "
                f"for {int(np.sum(star <= 0))} restarts"
            )
    return failures


def summarize(data: dict) -> str:
    """One line: sigma2* range and ARI at the top of the grid, per data set."""
    parts = []
    for n in data["datasets"]:
        star = np.asarray(data[f"{n}__sigma2_star"])
        ari = np.asarray(data[f"{n}__ari"])
        parts.append(
            f"{n} sigma2* {star.min():.2g}-{star.max():.2g} (ARI {ari[:, 0].mean():.2f} at top)"
        )
    total = sum(int(np.sum(np.asarray(data[f"{n}__sigma2_star"]) > 0)) for n in data["datasets"])
    count = sum(np.size(data[f"{n}__sigma2_star"]) for n in data["datasets"])
    return (
        f"trajectories: EM reproduced Lloyd's partition below a positive sigma2* in "
        f"{total}/{count} restarts; {', '.join(parts)}"
    )


EXPERIMENT = ExperimentSpec(
    name="trajectories",
    config_type=TrajectoriesConfig,
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
