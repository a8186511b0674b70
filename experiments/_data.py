"""Data sets for the experiments: three synthetic mixtures, sklearn's digits, a user's file.

The synthetic mixtures are drawn from an explicit ``jax.random`` key. Every built-in data set
is returned centred and scaled so that the mean per-feature variance is one (digits: each pixel
standardised, constant pixels left at zero), so that one sigma2 scale reads the same across
data sets. A user's file (``.npy``, ``.npz`` or ``.csv``, one row per sample) is used as it
is, in its own units.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import jax
import numpy as np

from gmmlimit._offset import offset_of
from gmmlimit._validation import check_integers_held

__all__ = [
    "DATASETS",
    "DATA_SUFFIXES",
    "N_DIGITS",
    "check_usable",
    "data_name",
    "dataset",
    "dataset_shape",
    "file_info",
    "load_file",
]

DATA_SUFFIXES = (".npy", ".npz", ".csv")

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


def data_name(path: str | Path) -> str:
    """The data set name of a user's file: its stem, made safe for file names.

    A stem that is also a built-in data set's name gets the prefix ``file-`` so that the two
    are never confused.
    """
    stem = re.sub(r"[^A-Za-z0-9_.=+-]", "_", Path(path).stem) or "data"
    return f"file-{stem}" if stem in DATASETS else stem


class _DataFileError(ValueError):
    """A refusal of :func:`_read_array` whose message already names the file."""


def _read_array(path: Path) -> np.ndarray:
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return np.load(path, allow_pickle=False)
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.files)
            if len(names) == 1:
                return archive[names[0]]
            if "X" in names:
                return archive["X"]
            raise _DataFileError(
                f"data file {path} holds {len(names)} arrays ({', '.join(names)}); keep one, or "
                "name the data array 'X'."
            )
    if suffix == ".csv":
        # utf-8-sig: a byte-order mark (Excel's "CSV UTF-8") is dropped, not read into the first
        # field, where it would make the first data row look like a header and lose it
        with path.open(encoding="utf-8-sig") as fh:
            first = fh.readline()
        try:
            [float(v) for v in first.strip().split(",")]
            skip = 0
        except ValueError:
            skip = 1  # a header row
        return np.loadtxt(
            path, delimiter=",", skiprows=skip, ndmin=2, dtype=np.float64, encoding="utf-8-sig"
        )
    raise _DataFileError(
        f"data file {path} must end in {', '.join(DATA_SUFFIXES)}; got {suffix or 'no suffix'}."
    )


def translated(X: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """A user's rows less their exact offset (``gmmlimit._offset``), and the offset.

    Rows far from the origin (every value of a feature within a factor of two of one another)
    are what gmmlimit computes translated; the sweeps study them so too, so that also the
    experiments' own compiled steps (jitted or vmapped over X, where gmmlimit cannot translate)
    and their naive contrasts see no cancellation, and a float32 copy keeps the rows' spread.
    Integer files are translated in float64.

    Returns:
        ``(X', offset)``: X' = X - offset (exact), or X itself and None where no feature has
        an offset.
    """
    if X.dtype.kind in "iu":
        X = X.astype(np.float64)
    offset = offset_of(X)
    return (X, None) if offset is None else (X - offset, offset)


def load_file(path: str | Path) -> np.ndarray:
    """Read and check a user's data file: a finite, real (N, D) array with N >= 2.

    Args:
        path: a ``.npy`` file, an ``.npz`` file with one array (or one named ``X``), or a
            comma-separated ``.csv`` file with an optional header row.

    Returns:
        The (N, D) array as stored (integers and floats of any width; cast later by the
        config's ``dtype``).

    Raises:
        ValueError: naming the file and the problem (missing, unreadable, wrong shape,
            non-numeric, NaN or inf, integers float64 cannot hold: nanosecond timestamps near
            2^62 rounded to equal rows).
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"data file {path} is a folder, not a file.")
    if not path.is_file():
        raise ValueError(f"data file {path} does not exist.")
    try:
        X = _read_array(path)
    except _DataFileError:
        raise
    except Exception as err:  # numpy's own ValueErrors (ragged rows, object arrays) included
        raise ValueError(f"data file {path} could not be read: {err}") from None
    if X.dtype.kind not in "iuf":
        raise ValueError(f"data file {path} must hold real numbers; its dtype is {X.dtype}.")
    if X.ndim != 2 or X.shape[0] < 2 or X.shape[1] < 1:
        raise ValueError(
            f"data file {path} must hold an (N, D) array with N >= 2 rows; its shape is {X.shape}."
        )
    if not np.all(np.isfinite(X)):
        bad = int(np.sum(~np.all(np.isfinite(X), axis=1)))
        raise ValueError(f"data file {path} has {bad} row(s) with NaN or inf.")
    if X.dtype.kind in "iu":  # read as float64 (translated): past 2^53 they would round
        check_integers_held(X.max(), X.min(), np.float64, name=f"data file {path}")
    return X


def check_usable(X: np.ndarray, path: str | Path, k: int, dtypes: tuple[str, ...]) -> None:
    """Refuse data that a sweep cannot use, before any work (ValueError naming the file).

    Cast to each dtype the run computes in, the data must have (1) a positive variance, (2) at
    least ``k`` distinct rows (else some of the K means coincide and their clusters are empty),
    and (3) squared distances that are finite and normal numbers: N * 4 D max|x - mean|^2
    (an upper bound of any squared distance between two rows, times N: of the distortion J, a
    sum of N of them) below the dtype's largest number, and the largest per-feature variance
    above its smallest normal number. Otherwise the sigma2 grid, J or the fitted slopes become
    inf, NaN or zero after the run has started.
    """
    n, d = X.shape
    for dtype in dict.fromkeys(dtypes):
        info = np.finfo(dtype)
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported below
            Xt = X.astype(dtype).astype(np.float64)  # what the run sees, measured in float64
            centred = Xt - Xt.mean(axis=0)
            variance = float(np.max(np.mean(centred**2, axis=0)))
            spread = np.max(np.abs(centred))
            largest = np.max(np.abs(X.astype(np.float64)))
            reach = float(n * 4.0 * d * spread**2)
        scaled = reach < float(info.max) and (variance == 0.0 or variance > float(info.tiny))
        if not scaled:
            hint = " or set dtype=float64" if dtype == "float32" else ""
            raise ValueError(
                f"data file {path}: its squared distances are not finite normal numbers in "
                f"{dtype} (largest |x| = {largest:.3g}, |x - mean| = {spread:.3g}, variance = "
                f"{variance:.3g}; need N * 4 D max|x - mean|^2 < {float(info.max):.3g} and a "
                f"variance > {float(info.tiny):.3g}); rescale the data (for example divide it "
                f"by its standard deviation){hint}."
            )
        if variance == 0.0:
            raise ValueError(
                f"data file {path} has zero variance in {dtype} (all {n} rows are equal); "
                "the sweeps need rows that differ."
            )
        distinct = np.unique(Xt, axis=0).shape[0]
        if distinct < k:
            raise ValueError(
                f"data file {path} has {distinct} distinct row(s) in {dtype}, fewer than K={k}; "
                "use a smaller k or data with more distinct rows."
            )


def file_info(path: str | Path) -> dict[str, Any]:
    """Provenance of a user's data file: resolved path, sha256 of its bytes, shape and dtype."""
    path = Path(path).resolve()
    X = load_file(path)
    return {
        "path": str(path),
        "name": data_name(path),
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "shape": list(X.shape),
        "dtype": str(X.dtype),
    }
