"""Shared pieces of the isotropic estimators: padding, seeding, the compiled driver calls.

They pass ``sklearn.utils.estimator_checks`` and so drop into pipelines, grid searches (sigma2 is
an ordinary hyper-parameter: ``GridSearchCV(IsotropicGaussianMixture(k), {"sigma2": [...]})``
scores by held-out log-likelihood) and metrics.

Randomness: ``random_state`` (None, an int or a ``numpy.random.RandomState``) is turned, through
``sklearn.utils.check_random_state``, into one integer seed and then one explicit
``jax.random.key``; restart i uses ``jax.random.split(key, n_init)[i]``. None follows scikit-learn's
convention (numpy's global generator), so an int is needed for reproducible fits.

Compilation: JAX compiles once per array shape. To keep many small fits (cross-validation, the
estimator checks) from recompiling for every size, small data (at most :data:`PAD_MAX_VALUES`
values once padded) have their rows padded to the next power of two (at least 256) with
zero-weight copies of the first row and their columns to the next power of two (at least 8) with
zeros. Neither changes any distance, statistic or label of the real rows; the padded rows carry
no weight and always share the first row's label (``KMeans`` also never relocates them into an
empty cluster). Larger data keep their own shape: padding them multiplied
the work of every iteration (up to 2x for the rows, 8x for one column) and copied the data
twice per fit.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from jax import lax
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from .. import init as _init
from .._block_size import default_block_size
from .._driver import (
    Blocks,
    FitResult,
    fit_loop,
    history_length,
    make_blocks,
    power_of_two_bucket,
    stats_compiled,
    trim_history,
)
from .._host import to_jax
from .._offset import offset_of
from .._rescale import Scale, check_scaled_sigma2
from .._validation import (
    check_max_iter,
    check_sigma2,
    check_tol,
    largest_magnitude,
    scale_exponent,
    window_exponent,
    window_exponents,
)
from ..variants._isotropic import IsotropicParams, isotropic

__all__ = [
    "PAD_MAX_VALUES",
    "_IsotropicBase",
    "_soft",
    "bucket_rows",
    "fit_blocks",
    "in_x64",
    "pad_blocks",
    "padded",
    "rows_by_scale",
    "x64",
]

# Small inputs share one shape (and so one compiled program): at least 256 rows and 8 columns.
_MIN_ROWS = 256
_MIN_COLS = 8
PAD_MAX_VALUES = 1 << 20
"""The most values (N_pad * D_pad) of data padded to power-of-two shapes: a pass over them costs
far less than the compilation the shared shape saves. Larger data keep their own shape (padded,
(140000, 784) float32 became (262144, 1024), and a K-means fit took 2.4x as long)."""


def padded(n: int, d: int) -> bool:
    """Whether (n, d) data are padded: their power-of-two shape has <= PAD_MAX_VALUES values."""
    return power_of_two_bucket(n, _MIN_ROWS) * power_of_two_bucket(d, _MIN_COLS) <= PAD_MAX_VALUES


def _pad(X: np.ndarray, w: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Small data padded to power-of-two shapes; larger data as they are (no copy).

    Small data (:func:`padded`): rows to a power of two (zero-weight copies of row 0), columns to
    a power of two (zeros). Larger data come back as they are, with their weights (ones if None).
    """
    n, d = X.shape
    if not padded(n, d):
        return X, (np.ones((n,), X.dtype) if w is None else np.asarray(w, X.dtype))
    n_pad, d_pad = power_of_two_bucket(n, _MIN_ROWS), power_of_two_bucket(d, _MIN_COLS)
    out = np.zeros((n_pad, d_pad), X.dtype)
    out[:n, :d] = X
    out[n:, :d] = X[0]
    weights = np.zeros((n_pad,), X.dtype)
    weights[:n] = 1.0 if w is None else w
    return out, weights


def bucket_rows(rows: np.ndarray, d: int) -> np.ndarray:
    """Row indices padded as :func:`_pad` pads rows: to their power-of-two bucket, if small.

    A group of rows that :func:`rows_by_scale` gives has a data-dependent count; computed at that
    count, each new count compiled its programs again (0.95 to 2.0 s a call of
    ``IsotropicGaussianMixture.predict_proba`` on rows off the scale window, 4 to 8 ms once
    padded). Padded with copies of the group's first row, groups share the programs of their
    bucket; the caller weighs the copies 0 (where weights count) and keeps the first
    ``rows.size`` answers.

    Args:
        rows: (M,) row indices, M >= 1.
        d: the number of columns of the rows.

    Returns:
        (M',) indices: ``rows``, then M' - M copies of ``rows[0]`` (M' = M for large groups).
    """
    m = rows.size
    if not padded(m, d):
        return rows
    extra = np.full(power_of_two_bucket(m, _MIN_ROWS) - m, rows[0], rows.dtype)
    return np.concatenate([rows, extra])


def rows_by_scale(X: Any, centres: Any) -> list[tuple[int, np.ndarray]] | None:
    """The rows of X grouped by the power of two each is divided by; None where none needs one.

    Each row is computed at its own scale, so that its answers (labels, distances, densities)
    depend on no other row of the batch: a row whose largest magnitude, or the centres', lies
    outside the scale window runs, with the centres, as x / 2^e (exact; e is
    :func:`gmmlimit._validation.window_exponent`'s rule read from the larger of the two).

    Args:
        X: (N, D) rows: a NumPy or JAX array, or a sparse matrix (its stored values).
        centres: (K, D) centres (means) in X's coordinates.

    Returns:
        None when every row is computed as given (the centres' magnitude lies within the window
        and no row passes its top: checked without a per-row pass); otherwise
        ``[(e, rows), ...]``, one entry per distinct exponent e (0 for the rows computed as
        given), ``rows`` the (M,) indices of its rows in increasing order.
    """
    data = X.data if sp.issparse(X) else X
    largest_centre = largest_magnitude(centres) if np.size(centres) else 0.0
    centres_within = largest_centre > 0 and not window_exponent(largest_centre, data.dtype)
    if centres_within and not scale_exponent(data, centres):  # no row passes the window's top
        return None
    if sp.issparse(X):
        row_largest = np.asarray(abs(X).max(axis=1).toarray(), np.float64).ravel()
    else:
        host = np.asarray(X)
        row_largest = np.maximum(host.max(axis=1), -host.min(axis=1)).astype(np.float64)
    exponents = window_exponents(np.maximum(row_largest, largest_centre), data.dtype)
    return [(e, np.flatnonzero(exponents == e)) for e in np.unique(exponents).tolist()]


def _jax_key(random_state: Any) -> jax.Array:
    """An explicit jax.random key from scikit-learn's random_state."""
    seed = int(check_random_state(random_state).randint(0, 2**31 - 1))
    return jax.random.key(seed)


def x64() -> contextlib.AbstractContextManager:
    """A local context in which JAX keeps float64 (``jax.enable_x64(True)``).

    The estimators run every JAX computation inside it, so float64 input is computed in float64
    whatever the global ``jax_enable_x64`` flag says; the flag itself is left unchanged.
    """
    return jax.enable_x64(True)


def in_x64(method: Callable[..., Any]) -> Callable[..., Any]:
    """Run a method inside :func:`x64` (its JAX work keeps the input's float64)."""

    @functools.wraps(method)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        with x64():
            return method(*args, **kwargs)

    return wrapped


def _jax_dtype(dtype: np.dtype) -> np.dtype:
    """The computation dtype: the input's own (the estimators run inside :func:`x64`)."""
    return np.dtype(dtype)


def pad_blocks(X: np.ndarray, w: np.ndarray, k: int, *, pad_columns: bool = True) -> Blocks:
    """Padded rows as driver blocks, the padding rows marked invalid (never relocated).

    Args:
        X: (N, D) data.
        w: (N,) sample weights.
        k: the components the blocks are scored against (for the platform's block size).
        pad_columns: also pad the columns with zeros (right for K-means, not for a model with a
            covariance, where a constant column would change the likelihood).

    Returns:
        :class:`~gmmlimit._driver.Blocks` of the (N_pad, D_pad) rows of :func:`_pad` (larger
        data: their own rows, the last block filled by :func:`~gmmlimit._driver.make_blocks`).
    """
    Xp, wp = _pad(X, w)
    if not pad_columns:
        Xp = Xp[:, : X.shape[1]]
    return fit_blocks(to_jax(Xp), to_jax(wp), X.shape[0], k)


def fit_blocks(x: jax.Array, w: jax.Array, n: int | jax.Array, k: int) -> Blocks:
    """Driver blocks of rows from :func:`_pad`, the rows from ``n`` on marked invalid.

    Called inside a compiled fit, the blocks keep the rows for the CPU kernels to read in place
    (:func:`~gmmlimit._driver.make_blocks`), so XLA builds no padded copy where none is read.

    Args:
        x: (M, D) rows, the first ``n`` real (M = N when :func:`_pad` left them as they are).
        w: (M,) weights (zero on padding rows).
        n: the number of real rows (traced or not: one program serves every n of a shape).
        k: the components the blocks are scored against (for the platform's block size).

    Returns:
        :class:`~gmmlimit._driver.Blocks` of blocks of the platform's default size
        (:func:`~gmmlimit._block_size.default_block_size`: min(M, 4096) rows on the CPU).
    """
    blocks = make_blocks(x, w, default_block_size(x.shape[0], k, x.shape[1]))
    n_blocks, size = blocks.valid.shape
    index = jnp.arange(n_blocks * size, dtype=jnp.int32).reshape(n_blocks, size)
    return blocks._replace(valid=blocks.valid & (index < n))


def _fit_padded(
    X: jax.Array,
    w: jax.Array,
    means: jax.Array,
    sigma2: jax.Array,
    tol: jax.Array,
    shift_scale: jax.Array,
    max_iter: jax.Array,
    *,
    history: int,
    block_size: int,
) -> FitResult:
    blocks = make_blocks(X, w, block_size)
    params = IsotropicParams(means, sigma2)
    return fit_loop(
        isotropic, blocks, X.shape[0], params, tol, shift_scale, max_iter=max_iter, history=history
    )


_fit_large = jax.jit(_fit_padded, static_argnames=("history", "block_size"))
# Small problems (cross-validation folds, the estimator checks) are dominated by compilation:
# LLVM's optimisation level 0 halves it (measured 3.8 s -> 1.9 s on 256 x 8) and changes no
# floating-point semantics (XLA's CPU backend does not enable fast-math either way).
_fit_small = jax.jit(
    _fit_padded,
    static_argnames=("history", "block_size"),
    compiler_options={"xla_backend_optimization_level": 0},
)
_SMALL = 1 << 16
_kmeans_plusplus_small = jax.jit(
    _init._kmeans_plusplus.__wrapped__,
    static_argnames=("k", "trials"),
    compiler_options={"xla_backend_optimization_level": 0},
)


@jax.jit
def _partial_distances(X: jax.Array, means: jax.Array) -> jax.Array:
    """(K, N) |m_k|^2 - 2 m_k . x_n: squared distances less |x_n|^2, which every gap cancels.

    Leaving |x_n|^2 out keeps the gaps of a row far beyond the means' spread (a model fitted at
    unit scale, rows near 1e20): added back, it rounds every distance of the row to one value.
    """
    means_sq = jnp.sum(means * means, axis=1)
    cross = lax.dot_general(means, X, (((1,), (1,)), ((), ())), precision=lax.Precision.HIGHEST)
    return means_sq[:, None] - 2.0 * cross


def hard_pass(X: jax.Array, weights: jax.Array, means: jax.Array) -> tuple[Any, jax.Array]:
    """The fit's own hard E-step at ``means`` (the compiled kernel on the CPU), one pass.

    One streamed pass over blocks of rows, as a K-means iteration labels them: no (K, N)
    intermediates (the products and minimum of :func:`_assign` took 58 ms at (600000, 2, 16),
    most of an estimator's cost beyond its fit).

    Args:
        X: (N, D) rows (padded rows must weigh 0).
        weights: (N,) sample weights.
        means: (K, D) means in X's dtype.

    Returns:
        ``(stats, labels)``: the summed statistics (``stats.distortion`` is the weighted K-means
        objective) and (N,) int32 nearest-mean labels, ties to the lowest index.
    """
    params = IsotropicParams(means, jnp.zeros((), X.dtype))
    block_size = default_block_size(X.shape[0], means.shape[0], X.shape[1])
    return stats_compiled(isotropic, X, weights, params, block_size=block_size)


@jax.jit
def _soft(
    X: jax.Array, means: jax.Array, sigma2: jax.Array, labels: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """(N, K) responsibilities and (N,) log-sum-exp_k(-d_nk / (2 sigma2)) (no normalisers).

    ``labels`` are :func:`hard_pass`'s, so that the most responsible component is the label
    ``predict`` gives (a gap that rounding makes negative at a near tie counts as 0).
    """
    partial = _partial_distances(X, means)
    diff = X - means[labels]
    nearest = jnp.sum(diff * diff, axis=1)
    gap = jnp.maximum(partial - partial[labels, jnp.arange(X.shape[0])][None, :], 0.0)
    # a gap of 0 (the nearest mean, exact ties) weighs 1 and a row on its mean scores 0, also
    # where sigma2 flushed to 0 after rescaling (IsotropicGaussianMixture's far rows)
    e = jnp.where(gap > 0, jnp.exp(-gap / (2.0 * sigma2)), 1.0)
    total = jnp.sum(e, axis=0)
    nearest_term = jnp.where(nearest > 0, nearest / (2.0 * sigma2), 0.0)
    return (e / total[None, :]).T, jnp.log(total) - nearest_term


class _IsotropicBase(BaseEstimator):
    """Shared fitting code: validation, padding, restarts, the compiled driver."""

    def _n_components(self) -> int:
        raise NotImplementedError

    def _sigma2(self) -> float:
        raise NotImplementedError

    def _validate_common(self) -> None:
        k = self._n_components()
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"the number of components must be an integer >= 1; got {k!r}.")
        for name in ("n_init", "max_iter"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1; got {v!r}.")
        check_max_iter(self.max_iter)  # a history max_iter long: 2^30 allocated 8 GiB
        check_tol(self.tol)  # the package's check: Python or NumPy integers and floats alike
        accepted = "init must be 'k-means++', 'random' or a (K, D) array of initial means"
        if isinstance(self.init, str):
            if self.init not in ("k-means++", "random"):
                raise ValueError(f"{accepted}; got {self.init!r}.")
        elif callable(self.init):  # KMeans takes one; this estimator does not
            raise ValueError(f"{accepted} (a callable is not accepted); got {self.init!r}.")
        else:
            try:
                np.asarray(self.init, dtype=np.float64)
            except (TypeError, ValueError):
                raise ValueError(f"{accepted}; got {self.init!r}.") from None

    @in_x64
    def _fit(self, X: Any, sample_weight: Any) -> tuple[np.ndarray, FitResult, float, float]:
        """Restarts of the compiled fit, the best kept.

        Returns:
            ``(means, fit, total_weight, sigma2')``: the (K, D) means, the best fit, the total
            (relative) weight and the variance the fit ran at (data past the scale window run
            as X / 2^e at sigma2 / 4^e).
        """
        self._validate_common()
        X = validate_data(self, X, dtype=[np.float64, np.float32])
        k = int(self._n_components())
        n, d = X.shape
        if k > n:
            raise ValueError(f"n_samples={n} should be >= the number of components {k}.")
        dtype = _jax_dtype(X.dtype)
        sw = _check_sample_weight(sample_weight, X, dtype=X.dtype, ensure_non_negative=True)
        sigma2 = float(self._sigma2())
        check_sigma2(sigma2, dtype)  # the core's rule: a normal number of the data's dtype
        # rows far from the origin relative to their spread are fit less an exact offset (the
        # seeding's and the E-step's expanded squares would cancel: gmmlimit._offset), before
        # the rescaling below as everywhere else; the means are moved back once, at the end
        offset = offset_of(X)
        if offset is not None:
            X = X - offset
        # data past the scale window as X / 2^e, weights as w / 2^f (gmmlimit._rescale)
        scale = Scale(scale_exponent(X), window_exponent(float(np.max(sw)), dtype))
        if scale.data:
            X = np.ldexp(X, -scale.data).astype(X.dtype)
            s2 = scale.sigma2(jnp.asarray(sigma2, dtype))
            check_scaled_sigma2(sigma2, s2, scale)
            sigma2 = float(s2)
        if scale.weight:
            sw = np.ldexp(sw, -scale.weight).astype(sw.dtype)
        Xp, wp = _pad(X.astype(dtype, copy=False), sw.astype(dtype))
        Xj, wj = to_jax(Xp), to_jax(wp)
        shift_scale = jnp.asarray(np.mean(np.var(X, axis=0)), dtype)
        keys = jax.random.split(_jax_key(self.random_state), self.n_init)
        best = None
        if not isinstance(self.init, str):
            given = np.asarray(self.init, dtype=dtype)
            if given.shape != (k, d) or not np.all(np.isfinite(given)):
                raise ValueError(f"an array init must be finite with shape ({k}, {d}).")
            if offset is not None:  # the given means, on the rows as the fit computes them
                given = given - offset
            given = np.ldexp(given, -scale.data).astype(dtype)
            start_given = np.zeros((k, Xp.shape[1]), dtype)
            start_given[:, :d] = given
            keys = keys[:1]
        for key in keys:
            if not isinstance(self.init, str):
                start = jnp.asarray(start_given)
            elif self.init == "k-means++" and Xp.size <= _SMALL:
                start = _kmeans_plusplus_small(key, Xj, wj, k, 2 + int(math.log(k)), Xj)
            elif self.init == "k-means++":
                start = _init.kmeans_plusplus(key, Xj, k, weights=wj)
            else:
                pick = jax.random.choice(key, n, shape=(k,), replace=False, p=sw / sw.sum())
                start = Xj[pick]
            fit = _fit_small if Xp.size <= _SMALL else _fit_large
            res = fit(
                Xj,
                wj,
                start,
                jnp.asarray(sigma2, dtype),
                jnp.asarray(self.tol, dtype),
                shift_scale,
                int(self.max_iter),
                history=history_length(int(self.max_iter)),
                block_size=default_block_size(Xp.shape[0], k, Xp.shape[1]),
            )
            res = trim_history(res, int(self.max_iter))
            score = float(res.objective)  # higher is better: log-likelihood, or -J at sigma2 = 0
            if best is None or score > best[0]:
                best = (score, res)
        res = best[1]
        means = np.ldexp(np.asarray(res.means)[:, :d], scale.data).astype(X.dtype)
        if offset is not None:
            means = means + offset
        # inference translates by the fit's offset, not by that of the rows it is given: a
        # row's answers then depend on no other row of the batch (bit for bit), and the
        # training rows are computed as the fit computed them
        self._fitted_offset = offset
        return means, res, float(np.sum(sw)), sigma2

    def _padded(self, X: Any) -> tuple[jax.Array, jax.Array, jax.Array, int]:
        """Validated X padded as the fit pads, its weights, the means padded alike, the row count.

        Where the training rows were fit less an offset (far from the origin relative to their
        spread: :func:`gmmlimit._offset.offset_of`), X and the means come back less the same
        offset: distances, labels and likelihoods are translation-invariant, and the expanded
        squares of the E-step would cancel on rows near the means as given. The translation is
        exact for rows within a factor of two of the offset, the training rows among them.

        Returns:
            ``(Xp, wp, means, n)``: (N', D') rows, (N',) weights (0 on padding rows), (K, D')
            means and N.
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        dtype = _jax_dtype(X.dtype)
        centres = self._means()
        offset = getattr(self, "_fitted_offset", None)
        if offset is not None:
            offset = offset.astype(dtype)
            # the means' own precision (float64 means of float32 rows), one rounding to X's
            X, centres = X - offset, (centres - offset).astype(dtype)
        Xp, wp = _pad(X.astype(dtype, copy=False))
        means = np.zeros((centres.shape[0], Xp.shape[1]), dtype)
        means[:, : X.shape[1]] = centres
        return to_jax(Xp), to_jax(wp), jnp.asarray(means), X.shape[0]

    def _means(self) -> np.ndarray:
        raise NotImplementedError
