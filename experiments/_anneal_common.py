"""Shared pieces of the annealing experiments: the data config, schedules and group criticals."""

from __future__ import annotations

import jax
import numpy as np
import optax

import gmmlimit as gl

from ._common import DataConfig

__all__ = ["AnnealDataConfig", "group_critical", "pca_basis", "two_phase_schedule"]


# The annealing experiments run on the same data sets with the same data settings.
AnnealDataConfig = DataConfig


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
    """(D, 2) the top two eigenvectors of the 1/N covariance (signs fixed: largest entry > 0).

    For D = 1 the principal direction is the one feature, ``[[1]]``, and there is no second
    axis: its column is 0, so every centre's second coordinate is 0.

    Args:
        X: (N, D) data, D >= 1.

    Returns:
        (D, 2) the first and second principal axes as columns.
    """
    X = np.asarray(X, dtype=np.float64)
    cov = np.atleast_2d(np.cov(X.T, bias=True))  # np.cov of one column is 0-d
    _, vecs = np.linalg.eigh(cov)
    basis = np.zeros((X.shape[1], 2))
    top = vecs[:, ::-1][:, :2]
    basis[:, : top.shape[1]] = top
    signs = np.sign(basis[np.argmax(np.abs(basis), axis=0), [0, 1]])
    return basis * np.where(signs == 0, 1.0, signs)


def anneal_key(seed: int, name: str, index: int) -> jax.Array:
    """The symmetric-breaking key of annealing run ``index`` on data set ``name``."""
    from ._common import dataset_key

    return jax.random.fold_in(jax.random.fold_in(dataset_key(seed, name), 7), index)
