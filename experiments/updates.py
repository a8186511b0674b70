"""Experiment 3: one EM mean update against one Lloyd update from the same means.

From several k-means++ starting means per data set, ||EM(m; sigma2) - Lloyd(m)||_F is measured on
a log-spaced sigma2 grid (sigma2 = 0 included, one vmapped call per start). It is checked against
an explicit form of statement 3: with b_n = (K - 1) exp(-Delta_n / (2 sigma2)) (bound 1), c_k the
Lloyd update and N_k the hard counts at m,

    ||EM_k - c_k|| <= sum_n b_n ||x_n - c_k|| / (N_k - sum_n b_n)   whenever N_k > sum_n b_n,

since EM_k - c_k = sum_n (r_nk - h_nk)(x_n - c_k) / sum_n r_nk. Past the one-hot threshold the
two updates average the same rows and agree to rounding (bit-for-bit when the vmapped and plain
matrix products sum in the same order, as on the quick data).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

import gmmlimit as gl

from ._common import SweepConfig, dataset_key, load_data, sigma2_grid
from ._config import ExperimentSpec
from ._runner import Progress, sweep
from ._store import PointStore

__all__ = ["EXPERIMENT", "UpdatesConfig", "UpdatesRecord", "explicit_bound", "run"]


@dataclasses.dataclass(frozen=True)
class UpdatesConfig(SweepConfig):
    """Config of the update experiment.

    Attributes:
        n_starts: k-means++ starting means per data set.
    """

    n_starts: int = 5

    def validate(self) -> None:
        """Refuse bad values before any work."""
        super().validate()
        if self.n_starts < 1:
            raise ValueError(f"n_starts must be >= 1; got {self.n_starts}.")


@dataclasses.dataclass(frozen=True)
class UpdatesRecord:
    """One data set's sweep (P starting means, S grid points).

    Attributes:
        sigma2: (S,) the grid, descending, ending at 0.
        gap: (P, S) ||EM update - Lloyd update||_F.
        bound: (P, S) the explicit bound (inf where vacuous).
        exponent: (P, S) min(Delta) / (2 sigma2) at each start (inf at 0).
        held: (P, S) bool, gap within the bound.
        exact_past_threshold: (P, S) bool, equal to rounding where every exponent is past the
            one-hot threshold (True elsewhere).
        round_tol: the rounding tolerance.
        bitwise_zero_past_threshold: points past the threshold where the gap is exactly 0.
        n_past_threshold: points past the threshold.
        n: rows N.
        d: features D.
        k: components K.
        onehot_threshold: the dtype's one-hot exponent.
    """

    sigma2: np.ndarray
    gap: np.ndarray
    bound: np.ndarray
    exponent: np.ndarray
    held: np.ndarray
    exact_past_threshold: np.ndarray
    round_tol: float
    bitwise_zero_past_threshold: int
    n_past_threshold: int
    n: int
    d: int
    k: int
    onehot_threshold: float


def explicit_bound(X: np.ndarray, means: np.ndarray, sigma2: np.ndarray) -> np.ndarray:
    """The bound on ||EM update - Lloyd update||_F above, per sigma2 (inf where vacuous)."""
    sq = np.sum((X[:, None, :].astype(np.float64) - means[None].astype(np.float64)) ** 2, axis=2)
    labels = np.argmin(sq, axis=1)  # the hard assignment (ties: lowest index)
    k = means.shape[0]
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    lloyd = np.asarray(gl.em_step(X, means, 0.0), dtype=np.float64)
    dist = np.linalg.norm(X[:, None, :].astype(np.float64) - lloyd[None], axis=2)  # (N, K)
    b = np.asarray(
        jax.vmap(lambda s: gl.study.responsibility_bound(X, means, s))(sigma2), np.float64
    )
    num = b @ dist  # (S, K)
    den = counts[None, :] - b.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_k = np.where((den > 0) & (counts[None, :] > 0), num / den, np.inf)
    return np.sqrt(np.sum(per_k**2, axis=1))


def _point(config: UpdatesConfig, name: str) -> UpdatesRecord:
    X, _, info = load_data(config, name)
    keys = jax.random.split(jax.random.fold_in(dataset_key(config.seed, name), 2), config.n_starts)
    starts = [np.asarray(gl.init.kmeans_plusplus(kk, X, info["k"])) for kk in keys]
    threshold = gl.study.onehot_threshold(X.dtype)
    # the grid's bottom passes the one-hot onset of every start, not only the first one
    reach = min(float(np.min(np.asarray(gl.study.nearest_gap(X, m)))) for m in starts)
    grid = sigma2_grid(config, X, starts[0], reach=reach)
    gaps, bounds, exponents = [], [], []
    for m0 in starts:
        gaps.append(np.asarray(jax.vmap(lambda s, m=m0: gl.study.update_gap(X, m, s))(grid)))
        bounds.append(explicit_bound(X, m0, grid))
        delta_min = float(np.min(np.asarray(gl.study.nearest_gap(X, m0))))
        with np.errstate(divide="ignore"):
            exponents.append(np.where(grid > 0, delta_min / (2 * grid), np.inf))
    gap, bound, x = np.stack(gaps), np.stack(bounds), np.stack(exponents)
    eps = float(np.finfo(X.dtype).eps)
    scale = float(np.max(np.abs(X)))
    # Past the one-hot threshold both updates average the same rows; only the summation order
    # of the (vmapped vs plain) matrix products may differ, by a few ulps per entry.
    round_tol = 16 * eps * scale * float(np.sqrt(starts[0].size))
    out: dict[str, Any] = {
        "sigma2": grid,
        "gap": gap,
        "bound": bound,
        "exponent": x,
        "held": gap <= bound * (1 + 1e-9) + 1e4 * eps * scale,
        "exact_past_threshold": np.where(x > 1.01 * threshold, gap <= round_tol, True),
        "round_tol": round_tol,
        "bitwise_zero_past_threshold": int(np.sum((x > 1.01 * threshold) & (gap == 0))),
        "n_past_threshold": int(np.sum(x > 1.01 * threshold)),
        "n": info["n"],
        "d": info["d"],
        "k": info["k"],
        "onehot_threshold": threshold,
    }
    return UpdatesRecord(**out)


def run(
    config: UpdatesConfig, progress: Progress, resume: PointStore | None = None
) -> dict[str, UpdatesRecord]:
    """Sweep every data set (one resumable point each); pure computation."""
    return sweep(
        resume,
        list(config.datasets),
        lambda n: _point(config, n),
        progress,
        "data sets",
        UpdatesRecord,
    )


def check(config: UpdatesConfig, records: dict[str, UpdatesRecord]) -> list[str]:
    """Verified: the explicit bound everywhere; exact equality past the one-hot threshold."""
    failures = []
    for name, r in records.items():
        if not r.held.all():
            failures.append(f"{name}: update bound violated at {int((~r.held).sum())} points")
        exact = r.exact_past_threshold
        if not exact.all():
            failures.append(f"{name}: updates differ past the one-hot threshold ({(~exact).sum()})")
        if not np.all(r.gap[:, -1] <= r.round_tol):
            failures.append(f"{name}: EM update at sigma2 = 0 is not Lloyd's update")
    return failures


def summarize(config: UpdatesConfig, records: dict[str, UpdatesRecord]) -> str:
    """One line: bound counts and the gap at the largest and smallest positive sigma2."""
    held = sum(int(np.sum(r.held)) for r in records.values())
    total = sum(np.size(r.held) for r in records.values())
    parts = []
    for n, r in records.items():
        gap = r.gap
        small = np.all(gap <= r.round_tol, axis=0)
        bad = np.nonzero(~small)[0]
        first = bad.max() + 1 if bad.size else 0
        zero = r.sigma2[min(first, gap.shape[1] - 1)]
        parts.append(f"{n} {np.max(gap[:, 0]):.2g} -> rounding from sigma2 {zero:.2g}")
    return (
        f"updates: explicit update bound held at {held}/{total} (start, sigma2) points; "
        f"max gap at the top of the grid -> {config.dtype} rounding: {', '.join(parts)}"
    )


EXPERIMENT = ExperimentSpec(
    name="updates",
    config_type=UpdatesConfig,
    record_type=UpdatesRecord,
    run=run,
    summarize=summarize,
    check=check,
    quick={"n_samples": 300, "digits_n": 400, "n_sigma2": 40, "n_starts": 3},
    description="distance between one EM mean update and one Lloyd update, against sigma2",
    order=30,
)
