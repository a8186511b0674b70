"""Shared pieces of the annealing experiments: the data config, schedules and group criticals."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import optax

import gmmlimit as gl

from ._data import DATASETS, N_DIGITS, dataset_shape

__all__ = ["AnnealDataConfig", "group_critical", "pca_basis", "two_phase_schedule"]


@dataclasses.dataclass(frozen=True)
class AnnealDataConfig:
    """Data settings shared by the annealing experiments (defaults: the full, paper setting).

    Attributes:
        seed: the root of every ``jax.random`` key of the run.
        datasets: data sets to run on (``separated, overlapping, anisotropic, digits``).
        n_samples: N of the synthetic data sets.
        dim: D of the synthetic data sets.
        k: K of the synthetic data sets.
        digits_n: rows of digits used (random subset below 1797).
        digits_k: K used for digits.
        dtype: ``"float64"`` or ``"float32"``.
    """

    seed: int = 0
    datasets: tuple[str, ...] = DATASETS
    n_samples: int = 1000
    dim: int = 2
    k: int = 3
    digits_n: int = N_DIGITS
    digits_k: int = 10
    dtype: str = "float64"

    def validate(self) -> None:
        """Refuse bad combinations before any work (ValueError naming the problem)."""
        if not self.datasets:
            raise ValueError("datasets is empty; name at least one data set.")
        for name in self.datasets:
            if name not in DATASETS:
                raise ValueError(f"unknown data set {name!r}; choose from {', '.join(DATASETS)}.")
        if len(set(self.datasets)) != len(self.datasets):
            raise ValueError(f"datasets has duplicates: {self.datasets}.")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64'; got {self.dtype!r}.")
        for name, low in (("n_samples", 2), ("dim", 2), ("k", 2), ("digits_n", 2), ("digits_k", 2)):
            if getattr(self, name) < low:
                raise ValueError(f"{name} must be >= {low}; got {getattr(self, name)}.")
        if self.digits_n > N_DIGITS:
            raise ValueError(f"digits_n={self.digits_n} exceeds the {N_DIGITS} digits available.")
        for name in self.datasets:
            n, _, k = dataset_shape(
                name, self.n_samples, self.dim, self.k, self.digits_n, self.digits_k
            )
            if k > n:
                raise ValueError(f"K={k} exceeds N={n} on data set {name!r}; need K <= N.")


def two_phase_schedule(
    lam: float, top: float, fine_bottom: float, n_fine: int, bottom: float, n_coarse: int
) -> optax.Schedule:
    """An optax schedule: fine geometric steps through the first transition, then coarse ones.

    Stages 0..n_fine-1 go geometrically from ``top * lam`` to ``fine_bottom * lam``; the next
    ``n_coarse`` stages continue geometrically down to ``bottom * lam``. Built with
    ``optax.join_schedules`` of two ``optax.exponential_decay`` pieces.
    """
    fine_rate = (fine_bottom / top) ** (1.0 / max(n_fine - 1, 1))
    coarse_rate = (bottom / fine_bottom) ** (1.0 / max(n_coarse, 1))
    return optax.join_schedules(
        [
            optax.exponential_decay(top * lam, 1, fine_rate),
            optax.exponential_decay(fine_bottom * lam * coarse_rate, 1, coarse_rate),
        ],
        [n_fine],
    )


def group_critical(X: np.ndarray, means: np.ndarray, sigma2: float, tol: float) -> float:
    """The critical variance of the next split: lambda_max of a group's weighted covariance.

    Means closer than ``tol`` (transitively) form a group. A group of m >= 2 coinciding means at
    centre c splits when sigma2 drops below lambda_max(C_g), C_g = sum_n r_ng (x_n - c)(x_n - c)^T
    / sum_n r_ng with r_ng the group's total responsibility for x_n at this sigma2: inside the
    group the EM map multiplies a zero-sum perturbation by C_g / sigma2, as the whole data's
    covariance does at the collapsed point.

    Returns:
        The largest lambda_max(C_g) over the groups with >= 2 members (NaN if there are none).
    """
    X = np.asarray(X, dtype=np.float64)
    means = np.asarray(means, dtype=np.float64)
    k = means.shape[0]
    dist = np.sqrt(np.sum((means[:, None] - means[None]) ** 2, axis=-1))
    reach = dist <= tol
    for _ in range(k):
        reach = reach | ((reach.astype(int) @ reach.astype(int)) > 0)
    first = np.argmax(reach, axis=1)
    r = np.asarray(gl.responsibilities(X, means, sigma2), dtype=np.float64)
    best = np.nan
    for g in np.unique(first):
        members = first == g
        if members.sum() < 2:
            continue
        w = r[:, members].sum(axis=1)
        centre = (w @ X) / w.sum()
        centred = X - centre
        cov = (centred * w[:, None]).T @ centred / w.sum()
        lam = float(np.linalg.eigvalsh(cov)[-1])
        best = lam if np.isnan(best) else max(best, lam)
    return best


def pca_basis(X: np.ndarray) -> np.ndarray:
    """(D, 2) the top two eigenvectors of the 1/N covariance (signs fixed: largest entry > 0)."""
    X = np.asarray(X, dtype=np.float64)
    cov = np.cov(X.T, bias=True)
    _, vecs = np.linalg.eigh(cov)
    basis = vecs[:, ::-1][:, :2]
    signs = np.sign(basis[np.argmax(np.abs(basis), axis=0), [0, 1]])
    return basis * signs


def anneal_key(seed: int, name: str, index: int) -> jax.Array:
    """The symmetric-breaking key of annealing run ``index`` on data set ``name``."""
    from ._common import dataset_key

    return jax.random.fold_in(jax.random.fold_in(dataset_key(seed, name), 7), index)
