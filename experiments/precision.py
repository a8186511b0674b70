"""Experiment 5: float32 against float64 down to sigma2 = 0, with a naive E-step as contrast.

For each data set and precision (one resumable point each), at the float64 Lloyd fixed point cast
to that precision, responsibilities are computed on a fine log-spaced sigma2 grid ending at 0:

* the stable, shifted log-domain E-step (``gl.responsibilities``): which rows are exactly one-hot,
  against the exponent x_n = Delta_n / (2 sigma2) and the dtype's threshold
  ``gl.study.onehot_threshold`` (about 87.3 in float32, 708.4 in float64); NaN/inf counts (must
  be 0);
  float32 EM fits (``gl.em``) down to sigma2 = 0 and L~ must stay finite too (their float64
  counterparts are checked by ``trajectories`` and ``loglik``);
* a naive E-step, exp(-d_nk / (2 sigma2)) normalised by its row sum, which turns a row into 0/0
  = NaN once d_n* / (2 sigma2) passes the same threshold: the contrast that fails.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import gmmlimit as gl

from ._common import SweepConfig, dataset_key, load_data, reference_means, sigma2_grid
from ._config import ExperimentSpec
from ._runner import Progress, sweep
from ._store import PointStore

__all__ = [
    "EXPERIMENT",
    "PrecisionConfig",
    "PrecisionPoint",
    "PrecisionRecord",
    "naive_responsibilities",
    "run",
]


@dataclasses.dataclass(frozen=True)
class PrecisionConfig(SweepConfig):
    """Config of the precision experiment.

    Attributes:
        dtypes: the precisions compared.
        max_iter: iteration cap of the EM fits checked for finiteness.
        n_fits: how many grid values (evenly spread, sigma2 = 0 included) get a full float32
            EM fit (float64 fits over the whole grid are part of ``trajectories``).
    """

    dtypes: tuple[str, ...] = ("float32", "float64")
    n_sigma2: int = 400
    max_iter: int = 300
    n_fits: int = 20

    def grid_dtype(self) -> str:
        """float64: the grid is computed on the float64 data for every precision."""
        return "float64"

    def validate(self) -> None:
        """Refuse bad values before any work."""
        super().validate()
        if not self.dtypes or any(d not in ("float32", "float64") for d in self.dtypes):
            raise ValueError(f"dtypes must be float32 and/or float64; got {self.dtypes}.")
        if self.n_fits < 2:
            raise ValueError(f"n_fits must be >= 2; got {self.n_fits}.")
        if self.max_iter < 1:
            raise ValueError(f"max_iter must be >= 1; got {self.max_iter}.")


@dataclasses.dataclass(frozen=True)
class PrecisionPoint:
    """One data set in one precision (S grid points, F EM fits, N rows).

    Attributes:
        sigma2: (S,) the grid in float64, descending, ending at 0.
        frac_onehot: (S,) share of rows exactly one-hot (stable E-step).
        stable_nonfinite_rows: (S,) rows with NaN or inf (stable E-step; must be 0).
        row_sum_err: (S,) largest |sum_k r_nk - 1|.
        naive_nan_rows: (S,) rows with NaN or inf (naive E-step).
        fit_sigma2: (F,) sigma2 of the full EM fits (float32 only; empty for float64).
        fit_finite: (F,) bool, those fits stayed finite.
        ltilde_finite: (S,) bool, L~ finite (float32 only; empty for float64).
        x_soft_max: largest exponent Delta_n / (2 sigma2) of a row not yet one-hot.
        x_hard_min: smallest exponent of a one-hot row.
        threshold: the dtype's one-hot exponent, -ln(smallest normal).
        onehot_onset: largest grid sigma2 where every row is one-hot (-1: never).
        onehot_onset_predicted: min(Delta) / (2 threshold).
        naive_nan_onset: largest grid sigma2 where the naive E-step has a NaN row (-1: never).
        naive_nan_onset_predicted: max_n d_n* / (2 threshold).
        naive_nan_next_above: the grid sigma2 just above the naive NaN onset.
        eps: the dtype's machine epsilon.
        delta: (N,) the gaps Delta_n in the working precision.
        d_star: (N,) squared distance of every row to its nearest mean (float64).
    """

    sigma2: np.ndarray
    frac_onehot: np.ndarray
    stable_nonfinite_rows: np.ndarray
    row_sum_err: np.ndarray
    naive_nan_rows: np.ndarray
    fit_sigma2: np.ndarray
    fit_finite: np.ndarray
    ltilde_finite: np.ndarray
    x_soft_max: float
    x_hard_min: float
    threshold: float
    onehot_onset: float
    onehot_onset_predicted: float
    naive_nan_onset: float
    naive_nan_onset_predicted: float
    naive_nan_next_above: float
    eps: float
    delta: np.ndarray
    d_star: np.ndarray


@dataclasses.dataclass(frozen=True)
class PrecisionRecord:
    """One data set: a :class:`PrecisionPoint` per precision, keyed by dtype name."""

    by_dtype: dict[str, PrecisionPoint]


@jax.jit
def naive_responsibilities(X: jax.Array, means: jax.Array, sigma2: jax.Array) -> jax.Array:
    """The textbook E-step exp(-d_nk / (2 sigma2)) / sum_j exp(-d_nj / (2 sigma2)), unshifted.

    Deliberately unstable: once every exponent of a row underflows, the row is 0/0 = NaN.
    """
    d = jnp.maximum(
        jnp.sum(X * X, axis=1)[:, None] - 2.0 * X @ means.T + jnp.sum(means * means, axis=1),
        0.0,
    )
    e = jnp.exp(-d / (2.0 * sigma2))
    return e / jnp.sum(e, axis=1, keepdims=True)


@jax.jit
def _row_stats(resp: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    onehot = jnp.all((resp == 0) | (resp == 1), axis=-1)
    bad = ~jnp.all(jnp.isfinite(resp), axis=-1)
    row_sum_err = jnp.max(jnp.abs(jnp.sum(resp, axis=-1) - 1), axis=-1)
    return onehot, bad, row_sum_err


def _point(config: PrecisionConfig, key_name: str) -> PrecisionPoint:
    name, dtype = key_name.rsplit("-", 1)
    X64, _, info = load_data(config, name, dtype="float64")
    key = jax.random.fold_in(dataset_key(config.seed, name), 1)
    init64, means64 = reference_means(X64, info["k"], key)
    X, means, init = X64.astype(dtype), means64.astype(dtype), init64.astype(dtype)
    d_star = np.asarray(
        jnp.min(jnp.sum((X64[:, None] - means64[None]) ** 2, axis=2), axis=1), np.float64
    )
    # the grid must also take the naive E-step past its NaN onset, max_n d_n* / (2 threshold)
    grid = sigma2_grid(config, X64, means64, reach=float(d_star.max())).astype(dtype)
    threshold = gl.study.onehot_threshold(dtype)

    resp = jax.vmap(lambda s: gl.responsibilities(X, means, s))(grid)  # (S, N, K)
    onehot, bad, row_err = (np.asarray(a) for a in _row_stats(resp))
    naive = jax.vmap(lambda s: naive_responsibilities(X, means, s))(grid)
    _, naive_bad, _ = (np.asarray(a) for a in _row_stats(naive))

    delta = np.asarray(gl.study.nearest_gap(X, means), np.float64)  # in the working precision
    grid64 = grid.astype(np.float64)
    with np.errstate(divide="ignore"):
        x = np.where(grid64[:, None] > 0, delta[None] / (2 * grid64[:, None]), np.inf)  # (S, N)
    positive = grid64[:, None] > 0
    x_soft_max = float(np.max(x[positive & ~onehot], initial=0.0))
    x_hard_min = float(np.min(x[positive & onehot], initial=np.inf))

    all_onehot = np.all(onehot, axis=1)
    any_nan = np.any(naive_bad, axis=1)
    if dtype == "float32":
        # full EM fits on every few grid points (the last is sigma2 = 0), and L~ everywhere;
        # their float64 counterparts are checked by the trajectories and loglik experiments
        pick = np.unique(np.linspace(0, grid.size - 1, config.n_fits).round().astype(int))
        fit_grid = grid[pick]
        fits = jax.vmap(lambda s: gl.em(X, init, s, max_iter=config.max_iter))(fit_grid)
        fit_finite = np.all(np.isfinite(np.asarray(fits.means)), axis=(1, 2)) & np.isfinite(
            np.asarray(fits.objective)
        )
        ltilde = np.asarray(jax.vmap(lambda s: gl.study.scaled_log_likelihood(X, means, s))(grid))
    else:
        fit_grid, fit_finite, ltilde = np.zeros(0, dtype), np.zeros(0, bool), np.zeros(0, dtype)
    out: dict[str, Any] = {
        "sigma2": grid64,
        "frac_onehot": onehot.mean(axis=1),
        "stable_nonfinite_rows": bad.sum(axis=1),
        "row_sum_err": row_err.astype(np.float64),
        "naive_nan_rows": naive_bad.sum(axis=1),
        "fit_sigma2": fit_grid.astype(np.float64),
        "fit_finite": fit_finite,
        "ltilde_finite": np.isfinite(ltilde),
        "x_soft_max": x_soft_max,
        "x_hard_min": x_hard_min,
        "threshold": threshold,
        "onehot_onset": float(grid64[np.argmax(all_onehot)]) if all_onehot.any() else -1.0,
        "onehot_onset_predicted": float(delta.min() / (2 * threshold)),
        "naive_nan_onset": float(grid64[np.argmax(any_nan)]) if any_nan.any() else -1.0,
        "naive_nan_onset_predicted": float(d_star.max() / (2 * threshold)),
        "naive_nan_next_above": (
            float(grid64[np.argmax(any_nan) - 1]) if any_nan.any() and any_nan.argmax() else np.inf
        ),
        "eps": float(np.finfo(dtype).eps),
        "delta": delta,
        "d_star": d_star,
    }
    return PrecisionPoint(**out)


def run(
    config: PrecisionConfig, progress: Progress, resume: PointStore | None = None
) -> dict[str, PrecisionRecord]:
    """Every (data set, precision) is one resumable point; pure computation."""
    keys = [f"{n}-{d}" for n in config.datasets for d in config.dtypes]
    points = sweep(
        resume,
        keys,
        lambda key: _point(config, key),
        progress,
        "data sets x dtypes",
        PrecisionPoint,
    )
    return {
        n: PrecisionRecord(by_dtype={d: points[f"{n}-{d}"] for d in config.dtypes})
        for n in config.datasets
    }


def check(config: PrecisionConfig, records: dict[str, PrecisionRecord]) -> list[str]:
    """Verified statements of precision (DESIGN.md statement 6), per data set and dtype."""
    failures = []
    for name, record in records.items():
        for dtype, r in record.by_dtype.items():
            p = f"{name} {dtype}"
            if np.any(r.stable_nonfinite_rows > 0):
                failures.append(f"{p}: the stable E-step produced NaN or inf")
            if np.any(r.row_sum_err > 8 * r.eps):
                failures.append(f"{p}: responsibilities do not sum to one")
            if not np.all(r.fit_finite) or not np.all(r.ltilde_finite):
                failures.append(f"{p}: an EM fit or L~ turned non-finite")
            if r.frac_onehot[-1] != 1.0:
                failures.append(f"{p}: not exactly one-hot at sigma2 = 0")
            lo, hi, t = r.x_soft_max, r.x_hard_min, r.threshold
            if not (lo <= t * 1.001 and t <= hi * 1.001 and hi <= t * 1.02):
                failures.append(
                    f"{p}: one-hot onset exponent bracket [{lo:.4g}, {hi:.4g}] does not match "
                    f"the threshold {t:.4g}"
                )
            onset, pred = r.naive_nan_onset, r.naive_nan_onset_predicted
            if onset <= 0:
                failures.append(f"{p}: the naive E-step never produced NaN (no contrast)")
            elif not (onset <= pred * 1.001 and pred <= r.naive_nan_next_above * 1.001):
                failures.append(f"{p}: naive NaN onset at sigma2 {onset:.3g}, predicted {pred:.3g}")
    return failures


def summarize(config: PrecisionConfig, records: dict[str, PrecisionRecord]) -> str:
    """One line: measured one-hot exponent and naive NaN onset per dtype, over the data sets."""
    parts = []
    for dtype in config.dtypes:
        points = [r.by_dtype[dtype] for r in records.values()]
        lo = max(p.x_soft_max for p in points)
        hi = min(p.x_hard_min for p in points)
        bad = sum(int(np.sum(p.stable_nonfinite_rows)) for p in points)
        naive = sum(int(p.naive_nan_onset > 0) for p in points)
        parts.append(
            f"{dtype}: one-hot once Delta/(2 sigma2) in ({lo:.4g}, {hi:.4g}] "
            f"(threshold {points[0].threshold:.4g}), "
            f"stable NaN/inf rows {bad}, naive NaN on {naive}/{len(points)} data sets"
        )
    return "precision: " + "; ".join(parts)


EXPERIMENT = ExperimentSpec(
    name="precision",
    config_type=PrecisionConfig,
    record_type=PrecisionRecord,
    run=run,
    summarize=summarize,
    check=check,
    quick={"n_samples": 300, "digits_n": 400, "n_sigma2": 150, "n_fits": 8},
    description="float32 vs float64 down to sigma2 = 0: one-hot onset, no NaN; naive E-step NaNs",
    order=50,
)
