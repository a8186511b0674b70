"""Shared pieces of the sigma2 sweeps: the base config, data, reference means and the grid."""

from __future__ import annotations

import dataclasses
import os
import zlib
from typing import Any

import jax
import numpy as np

import gmmlimit as gl

from ._data import (
    DATASETS,
    N_DIGITS,
    check_usable,
    data_name,
    dataset,
    dataset_shape,
    load_file,
    translated,
)

# One iteration cap for every fit of the sweeps: it is a static argument of the compiled fit loop,
# so sharing it lets every experiment reuse one compilation per data shape.
FIT_MAX_ITER = 300

__all__ = [
    "FIT_MAX_ITER",
    "DataConfig",
    "SweepConfig",
    "dataset_key",
    "grid_top",
    "load_data",
    "reference_means",
    "sigma2_grid",
]


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """The data settings every experiment on the standard data sets shares (defaults: full).

    Attributes:
        seed: the root of every ``jax.random`` key of the run.
        datasets: data sets to run on (``separated, overlapping, anisotropic, digits``, and the
            name of the ``data`` file, its stem).
        n_samples: N of the synthetic data sets.
        dim: D of the synthetic data sets.
        k: K of the synthetic data sets.
        digits_n: rows of digits used (random subset below 1797).
        digits_k: K used for digits.
        dtype: ``"float64"`` or ``"float32"``.
        data: a user's data file (``.npy``, ``.npz`` or ``.csv``, N rows of D features), used
            as it is with K = ``k``; ``gmmlimit run NAME --data PATH`` (or ``--set data=PATH``)
            sets it and runs on it alone. It must be one of ``datasets``, and usable in the
            dtype: positive variance, at least K distinct rows, finite squared distances.
    """

    seed: int = 0
    datasets: tuple[str, ...] = DATASETS
    n_samples: int = 1000
    dim: int = 2
    k: int = 3
    digits_n: int = N_DIGITS
    digits_k: int = 10
    dtype: str = "float64"
    data: str | None = None

    def validate(self) -> None:
        """Refuse bad combinations before any work (ValueError naming the problem)."""
        if not self.datasets:
            raise ValueError("datasets is empty; name at least one data set.")
        own = None if self.data is None else data_name(self.data)
        known = (*DATASETS, own) if own else DATASETS
        for name in self.datasets:
            if name not in known:
                raise ValueError(f"unknown data set {name!r}; choose from {', '.join(known)}.")
        if own is not None and own not in self.datasets:
            raise ValueError(
                f"data file {self.data} (data set {own!r}) is not in datasets "
                f"({', '.join(self.datasets)}), so it would not be used; add {own!r} to "
                "datasets or leave data unset."
            )
        if len(set(self.datasets)) != len(self.datasets):
            raise ValueError(f"datasets has duplicates: {self.datasets}.")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64'; got {self.dtype!r}.")
        for name in ("n_samples", "dim", "k", "digits_n", "digits_k"):
            if getattr(self, name) < 2:
                raise ValueError(f"{name} must be >= 2; got {getattr(self, name)}.")
        if self.digits_n > N_DIGITS:
            raise ValueError(f"digits_n={self.digits_n} exceeds the {N_DIGITS} digits available.")
        if any(name in self.datasets for name in DATASETS if name != "digits"):
            # n_samples=10**12 aborted inside XLA (a C++ check failure, no Python error)
            check_memory("n_samples * dim", self.n_samples * self.dim)
        shape = (0, 0)
        if self.data is not None:
            X, _ = translated(load_file(self.data))  # as load_data reads it
            shape = X.shape
            if own in self.datasets and self.k <= shape[0]:
                # every dtype the run computes in (precision compares several: `dtypes`)
                dtypes = (self.dtype, *getattr(self, "dtypes", ()))
                ok = tuple(t for t in dtypes if t in ("float32", "float64"))
                check_usable(X, self.data, self.k, ok)
        for name in self.datasets:
            if name == own:
                n, k = shape[0], self.k
            else:
                n, _, k = dataset_shape(
                    name, self.n_samples, self.dim, self.k, self.digits_n, self.digits_k
                )
            if k > n:
                raise ValueError(f"K={k} exceeds N={n} on data set {name!r}; need K <= N.")


def memory_bytes() -> int | None:
    """This machine's physical memory in bytes (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_memory(what: str, n_values: int) -> None:
    """Refuse a setting whose float64 array of ``n_values`` would not fit in memory.

    Raises:
        ValueError: naming ``what``, the array's size and the machine's memory.
    """
    total = memory_bytes()
    if total is not None and 8 * n_values > total:
        raise ValueError(
            f"{what} = {n_values} values ({8 * n_values / 2**30:.3g} GiB in float64) would not "
            f"fit in this machine's memory ({total / 2**30:.3g} GiB)."
        )


@dataclasses.dataclass(frozen=True)
class SweepConfig(DataConfig):
    """Settings shared by every sigma2 sweep: the data, plus the grid (defaults: full).

    Attributes:
        n_sigma2: grid size, sigma2 = 0 included.
        sigma2_max: largest sigma2; None: twice the critical sigma2 lambda_max(C) of the data.
        sigma2_min: smallest positive sigma2; None: where the closest row's exponent
            Delta_min / (2 sigma2) is 1.5 times the float64 one-hot threshold (about 1060).
    """

    n_sigma2: int = 60
    sigma2_max: float | None = None
    sigma2_min: float | None = None

    def validate(self) -> None:
        """Refuse bad combinations before any work (ValueError naming the problem)."""
        super().validate()
        if self.n_sigma2 < 3:
            raise ValueError(f"n_sigma2 must be >= 3; got {self.n_sigma2}.")
        check_memory("n_sigma2", self.n_sigma2)  # 10**12 raised MemoryError after the start
        for name in ("sigma2_max", "sigma2_min"):
            value = getattr(self, name)
            if value is not None and not (value > 0 and np.isfinite(value)):
                raise ValueError(
                    f"{name} must be a positive finite variance (sigma2 = 0 is always on the "
                    f"grid); got {value}."
                )
            info = np.finfo(self.grid_dtype())
            if value is not None and not float(info.tiny) <= value <= float(info.max):
                # the grid is cast to its dtype: past its range it held inf or zeros
                raise ValueError(
                    f"{name}={value} is not a normal {self.grid_dtype()} number (from "
                    f"{float(info.tiny):.4g} to {float(info.max):.4g}), the dtype the sigma2 grid "
                    "is computed in."
                )
        if (
            self.sigma2_max is not None
            and self.sigma2_min is not None
            and not self.sigma2_min < self.sigma2_max
        ):
            raise ValueError(
                f"sigma2_min={self.sigma2_min} must be below sigma2_max={self.sigma2_max}."
            )
        if self.sigma2_min is not None and self.sigma2_max is None:
            self._check_sigma2_min_below_data_tops()

    def grid_dtype(self) -> str:
        """The dtype the sigma2 grid is computed in (the data's; precision's is float64)."""
        return self.dtype

    def _check_sigma2_min_below_data_tops(self) -> None:
        """Refuse a sigma2_min at or above a data set's automatic grid top, before any work.

        The top is twice the critical sigma2 of each data set (computed as the run computes it;
        generating the data is cheap next to the sweep). Skipped when the grid is float64 and
        JAX's x64 is off: the run itself refuses that config before any work.
        """
        if self.grid_dtype() == "float64" and not jax.config.jax_enable_x64:
            return
        for name in self.datasets:
            X, _, _ = load_data(self, name, dtype=self.grid_dtype())
            top = grid_top(self, X)
            if not self.sigma2_min < top:
                raise ValueError(
                    f"sigma2_min={self.sigma2_min!r} must lie below the grid's top sigma2 "
                    f"{top:.6g} on data set {name!r} (twice its critical sigma2; set "
                    "sigma2_max to choose the top yourself)."
                )


def dataset_key(seed: int, name: str) -> jax.Array:
    """The key of one data set: the seed's key folded with a stable hash of the name."""
    return jax.random.fold_in(jax.random.key(seed), zlib.crc32(name.encode()) & 0x7FFFFFFF)


def load_data(
    config: SweepConfig, name: str, dtype: str | None = None
) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
    """The data set ``name`` under ``config`` (same key, hence same data, for every experiment).

    Returns:
        ``(X, labels, info)``: X (N, D) in ``dtype`` (default: the config's), the true labels
        (None for a user's file) and info with ``name, n, d, k, description``.
    """
    dtype = dtype or config.dtype
    if config.data is not None and name == data_name(config.data):
        X, offset = translated(load_file(config.data))  # rows far from the origin: moved
        X = X.astype(dtype)
        n, d = X.shape
        desc = f"{config.data}: {n} rows, {d} features, as given"
        if offset is not None:
            desc = (
                f"{config.data}: {n} rows, {d} features, translated by the exact offset "
                f"{offset.tolist()} (features within a factor of two of one another)"
            )
        return X, None, {"name": name, "n": n, "d": d, "k": config.k, "description": desc}
    return dataset(
        name,
        jax.random.fold_in(dataset_key(config.seed, name), 0),
        n_samples=config.n_samples,
        dim=config.dim,
        k=config.k,
        digits_n=config.digits_n,
        digits_k=config.digits_k,
        dtype=dtype,
    )


def reference_means(X: np.ndarray, k: int, key: jax.Array) -> tuple[np.ndarray, np.ndarray]:
    """k-means++ initial means and the Lloyd fixed point reached from them.

    Returns:
        ``(init, lloyd)``, both (K, D) in X's dtype.
    """
    init = gl.init.kmeans_plusplus(key, X, k)
    lloyd = gl.kmeans(X, init, max_iter=FIT_MAX_ITER).means
    return np.asarray(init), np.asarray(lloyd)


def grid_top(config: SweepConfig, X: np.ndarray) -> float:
    """The top of the sigma2 grid: ``sigma2_max``, or twice the critical sigma2 of ``X``."""
    if config.sigma2_max is not None:
        return config.sigma2_max
    return 2.0 * float(gl.critical_sigma2(X))


def sigma2_grid(
    config: SweepConfig,
    X: np.ndarray,
    means: np.ndarray,
    n: int | None = None,
    reach: float | None = None,
) -> np.ndarray:
    """Descending log-spaced sigma2 grid of ``n`` values ending with the limit point 0.

    The automatic ends are data-driven: from twice the critical sigma2 (fully soft) down to the
    point where even the row with the smallest gap Delta_min is far past the float64 one-hot
    threshold, so every regime (soft, exponential approach, exactly one-hot) is on the grid.
    ``reach``, when given, is a squared distance whose exponent reach / (2 sigma2) must also pass
    1.5 times that threshold at the bottom of an automatic grid.
    """
    n = config.n_sigma2 if n is None else n
    top = grid_top(config, X)
    bottom = config.sigma2_min
    if bottom is None:
        delta_min = float(np.min(np.asarray(gl.study.nearest_gap(X, means))))
        delta_min = max(delta_min, 1e-12 * top)
        if reach is not None:
            delta_min = min(delta_min, reach)
        bottom = delta_min / (2.0 * 1.5 * gl.study.onehot_threshold(np.float64))
        bottom = min(bottom, top / 10.0)  # at least a decade
    elif not bottom < top:  # a given end is used as given, never replaced
        raise ValueError(
            f"sigma2_min={bottom!r} must lie below the grid's top sigma2 {top!r} (sigma2_max, "
            "or twice the data's critical sigma2 when sigma2_max is not set)."
        )
    grid = np.geomspace(top, bottom, n - 1)
    return np.concatenate([grid, [0.0]]).astype(X.dtype)
