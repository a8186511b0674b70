"""Data sets for the experiments: three synthetic mixtures (explicit key) and sklearn's digits.

Every data set is returned centred and scaled so that the mean per-feature variance is one
(digits: each pixel standardised, constant pixels left at zero), so that one sigma2 scale reads
the same across data sets.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

__all__ = ["DATASETS", "N_DIGITS", "dataset", "dataset_shape"]

DATASETS = ("separated", "overlapping", "anisotropic", "digits")
N_DIGITS = 1797  # rows of sklearn's bundled digits
_SPREAD = {"separated": 8.0, "overlapping": 1.6, "anisotropic": 7.0}


def dataset_shape(name: str, n_samples: int, dim: int, k: int, digits_n: int, digits_k: int):
    """(N, D, K) of a data set under a config, without generating it (for validation)."""
    if name == "digits":
        return digits_n, 64, digits_k
    if name in _SPREAD:
        return n_samples, dim, k
    raise ValueError(f"unknown data set {name!r}; choose from {', '.join(DATASETS)}.")


def _standardise(X: np.ndarray) -> np.ndarray:
    X = X - X.mean(axis=0)
    return X / np.sqrt(np.mean(X.var(axis=0)))


def dataset(
    name: str,
    key: jax.Array,
    *,
    n_samples: int = 1000,
    dim: int = 2,
    k: int = 3,
    digits_n: int = N_DIGITS,
    digits_k: int = 10,
    dtype: str = "float64",
) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
    """Generate or load a data set.

    Args:
        name: ``"separated"``, ``"overlapping"``, ``"anisotropic"`` or ``"digits"``.
        key: a ``jax.random`` key (synthetic draws; the digits subsample when digits_n < 1797).
        n_samples: N for the synthetic sets.
        dim: D for the synthetic sets (anisotropic needs D >= 2).
        k: number of mixture components of the synthetic sets.
        digits_n: rows of digits to keep (a random subset when below 1797).
        digits_k: K used for digits (its true number of classes is 10).
        dtype: ``"float32"`` or ``"float64"``.

    Returns:
        ``(X, labels, info)``: X (N, D) standardised, the true labels (N,) int, and info with
        ``name, n, d, k, description``.
    """
    n, d, kk = dataset_shape(name, n_samples, dim, k, digits_n, digits_k)
    if kk > n:
        raise ValueError(f"data set {name!r}: K={kk} exceeds N={n}.")
    if name == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        X = digits.data.astype(np.float64)
        y = digits.target.astype(np.int64)
        if n < X.shape[0]:
            idx = np.sort(np.asarray(jax.random.choice(key, X.shape[0], (n,), replace=False)))
            X, y = X[idx], y[idx]
        std = X.std(axis=0)
        X = (X - X.mean(axis=0)) / np.where(std > 0, std, 1.0)
        desc = f"sklearn digits, {n} rows of 8x8 pixels, each pixel standardised"
        return X.astype(dtype), y, {"name": name, "n": n, "d": d, "k": kk, "description": desc}
    k_centre, k_label, k_noise, k_map = jax.random.split(key, 4)
    centres = np.asarray(jax.random.normal(k_centre, (kk, d), dtype=np.float64)) * _SPREAD[name]
    if name == "separated":
        # push centres apart on a regular polygon in the first two axes, so they never collide
        angle = 2 * np.pi * np.arange(kk) / kk
        ring = np.zeros((kk, d))
        ring[:, 0], ring[:, 1 % d] = np.cos(angle), np.sin(angle)
        centres = 0.25 * centres + _SPREAD[name] * ring
    y = np.asarray(jax.random.randint(k_label, (n,), 0, kk))
    noise = np.asarray(jax.random.normal(k_noise, (n, d), dtype=np.float64))
    X = centres[y] + noise
    if name == "anisotropic":
        # sklearn's anisotropic-blobs example: a shared linear stretch of every cluster
        A = np.eye(d)
        A[:2, :2] = [[0.6, -0.64], [-0.4, 0.85]] if d >= 2 else [[1.0]]
        A = A + 0.1 * np.asarray(jax.random.normal(k_map, (d, d), dtype=np.float64))
        X = X @ A
    desc = {
        "separated": f"{kk} well-separated unit Gaussians in {d}-D",
        "overlapping": f"{kk} overlapping unit Gaussians in {d}-D",
        "anisotropic": f"{kk} Gaussians sheared by one linear map in {d}-D",
    }[name]
    X = _standardise(X)
    return X.astype(dtype), y, {"name": name, "n": n, "d": d, "k": kk, "description": desc}
