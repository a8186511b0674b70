"""``KMeans``: a drop-in for ``sklearn.cluster.KMeans`` on gmmlimit's compiled Lloyd iteration."""

from __future__ import annotations

import warnings
from numbers import Integral, Real
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    ClusterMixin,
    TransformerMixin,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_array, check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from .._host import aligned_empty, to_jax
from .._offset import offset_of
from .._validation import scale_exponent, window_exponent
from ._common import _pad, hard_pass, in_x64, rows_by_scale
from ._lloyd import HOST_CHUNK, lloyd_dense, lloyd_sparse, sparse_labels, sq_dist_to_assigned
from ._seeding import kmeans_plusplus_rows, random_rows

__all__ = ["KMeans"]


def _is_arraylike_not_scalar(value: Any) -> bool:
    return not isinstance(value, str) and not callable(value) and np.ndim(value) > 0


def same_clustering(a: np.ndarray, b: np.ndarray, k: int) -> bool:
    """Whether two labelings are the same partition up to a renaming of the labels."""
    mapping = np.full(k, -1, np.int64)
    for la, lb in zip(a, b, strict=True):
        if mapping[la] == -1:
            mapping[la] = lb
        elif mapping[la] != lb:
            return False
    return True


def _weight_exponent(w: np.ndarray) -> int:
    """The power of two by which weights past the scale window are divided (0: none)."""
    largest = float(np.max(w)) if w.size else 0.0
    return window_exponent(largest, w.dtype) if largest > 0 else 0


def _relative(w: np.ndarray) -> np.ndarray:
    """Weights divided by :func:`_weight_exponent`'s power of two (weights are relative)."""
    exponent = _weight_exponent(w)
    return np.ldexp(w, -exponent).astype(w.dtype) if exponent else w


def _scaled_in_place(Xc: np.ndarray) -> int:
    """Divide dense data past the scale window by 2^e in place; return e (0: untouched)."""
    exponent = scale_exponent(Xc)
    if exponent:
        np.ldexp(Xc, -exponent, out=Xc)
    return exponent


class _FitFrame(NamedTuple):
    """The coordinates a fit runs in: ((X / 2^data) - mean) / 2^centred.

    Each power of two is exact, so results map back exactly (module ``gmmlimit._rescale``).
    Dense data past the scale window are divided by 2^data before they are centred: their mean
    and the centred copy would overflow as given (float32 rows near 1e35, float64 near 1e305:
    NaN centres). Centred dense data past the window are divided again by 2^centred; sparse
    data are not centred (``mean`` None), their stored values divided by 2^data.

    Attributes:
        data: the power of two X is divided by before centring (0: none).
        mean: (D,) the mean of X / 2^data, subtracted (dense); None for sparse data.
        centred: the power of two the centred rows are divided by (0: none).
    """

    data: int
    mean: np.ndarray | None
    centred: int

    def to_fit(self, points: np.ndarray) -> np.ndarray:
        """(K, D) points given in X's coordinates (initial centres), in the fit's."""
        moved = np.ldexp(points, -self.data).astype(points.dtype)
        if self.mean is not None:
            moved = moved - self.mean
        return np.ldexp(moved, -self.centred).astype(points.dtype)

    def back(self, means: np.ndarray) -> np.ndarray:
        """(K, D) means in the fit's coordinates, in X's (inf where X's dtype cannot hold them)."""
        moved = np.ldexp(means, self.centred).astype(means.dtype)
        if self.mean is not None:
            moved = moved + self.mean
        with np.errstate(over="ignore"):
            return np.ldexp(moved, self.data).astype(means.dtype)


def _centred_copy(X: np.ndarray) -> tuple[np.ndarray, _FitFrame]:
    """Dense X in the coordinates of its fit (:class:`_FitFrame`), in a new 64-byte aligned array.

    Centring (as scikit-learn does) keeps the expanded distances accurate in float32; the copy is
    aligned so that JAX reads it where it lies.
    """
    data_exponent = scale_exponent(X)
    Xc = aligned_empty(X.shape, X.dtype)
    if data_exponent:  # X / 2^e first: the mean and the centred rows of X as given overflow
        np.ldexp(X, -data_exponent, out=Xc)
        mean = Xc.mean(axis=0)
        Xc -= mean
    else:
        mean = X.mean(axis=0)
        np.subtract(X, mean, out=Xc)
    return Xc, _FitFrame(data_exponent, mean, _scaled_in_place(Xc))


def _divided(X: Any, exponent: int) -> Any:
    """X / 2^exponent (exact), dense or sparse (a copy: the stored values scaled; X when 0)."""
    if not exponent:
        return X
    if not sp.issparse(X):
        return np.ldexp(X, -exponent).astype(X.dtype)
    scaled = X.copy()
    scaled.data = np.ldexp(X.data, -exponent).astype(X.dtype)
    return scaled


def _distances(X: Any, C: np.ndarray) -> np.ndarray:
    """(N, K) Euclidean distances of X's rows (dense: by differences) to the centres C."""
    C = C.astype(X.dtype, copy=False)
    out = np.empty((X.shape[0], C.shape[0]), X.dtype)
    if sp.issparse(X):
        c_sq = np.einsum("kd,kd->k", C, C)
        x_sq = np.asarray(X.multiply(X).sum(axis=1)).ravel()
    chunk = max(1, min(HOST_CHUNK, (1 << 22) // max(1, C.size)))
    for start in range(0, X.shape[0], chunk):
        stop = min(start + chunk, X.shape[0])
        if sp.issparse(X):
            cross = np.asarray(X[start:stop] @ C.T)
            sq = x_sq[start:stop, None] - 2.0 * cross + c_sq[None, :]
        else:
            diff = X[start:stop, None, :] - C[None, :, :]
            sq = np.einsum("nkd,nkd->nk", diff, diff)
        out[start:stop] = np.sqrt(np.maximum(sq, 0.0))
    return out


def _nearest(X: Any, weights: np.ndarray | None, C: np.ndarray) -> tuple[np.ndarray, np.float64]:
    """Nearest centres of rows computed as given and their weighted squared distances.

    Args:
        X: (N, D) dense array or CSR matrix, within the scale window (with C).
        weights: (N,) weights in X's dtype; None for ones.
        C: (K, D) centres in X's dtype.

    Returns:
        ``(labels, distortion)``: (N,) int64 labels (ties: the lowest index) and the float64
        sum_n w_n ||x_n - C[labels_n]||^2 (dense: the fit's own E-step, whose distortion is the
        objective; the padding rows weigh nothing).
    """
    if sp.issparse(X):
        labels = sparse_labels(X, C)
        w = np.ones(X.shape[0], X.dtype) if weights is None else weights
        return labels, np.float64(np.dot(w.astype(X.dtype), sq_dist_to_assigned(X, C, labels)))
    Xp, wp = _pad(X, weights)
    means = np.zeros((C.shape[0], Xp.shape[1]), X.dtype)
    means[:, : X.shape[1]] = C
    stats, labels = hard_pass(to_jax(Xp), to_jax(wp), jnp.asarray(means))
    return np.asarray(labels)[: X.shape[0]].astype(np.int64), np.float64(stats.distortion)


def _tolerance(X: Any, tol: float) -> float:
    """scikit-learn's absolute tolerance: tol times the mean per-feature variance (unweighted)."""
    if tol == 0:
        return 0.0
    # data past the scale window overflow here: the fit computes its own, rescaled
    with np.errstate(over="ignore", invalid="ignore"):
        if sp.issparse(X):
            mean = np.asarray(X.mean(axis=0), np.float64).ravel()
            sq = np.asarray(X.multiply(X).mean(axis=0), np.float64).ravel()
            return float(np.mean(sq - mean * mean) * tol)
        return float(np.mean(np.var(X, axis=0)) * tol)


class KMeans(ClassNamePrefixFeaturesOutMixin, TransformerMixin, ClusterMixin, BaseEstimator):
    """Lloyd's K-means (the isotropic mixture at sigma2 = 0), a drop-in for scikit-learn's KMeans.

    Same parameters, defaults, attributes, methods, warnings and errors as
    ``sklearn.cluster.KMeans`` (see ``docs/sklearn.md`` for the few differences). Dense input runs
    gmmlimit's compiled driver in the input's dtype (float64 stays float64 whatever JAX's global
    x64 flag says); sparse CSR/CSC input runs the same iterations with scipy on the host.

    Args:
        n_clusters: number of clusters K.
        init: ``"k-means++"`` (greedy, 2 + ln K trials), ``"random"`` (K distinct rows drawn by
            weight), a (K, D) array, or a callable ``init(X, n_clusters, random_state)`` returning
            one (it receives the validated X and a ``numpy.random.RandomState``).
        n_init: restarts, or ``"auto"``: 1 for k-means++ or an array, 10 for random or a callable.
        max_iter: maximum iterations per run.
        tol: centre-shift tolerance, relative to the mean per-feature variance of X.
        verbose: print the per-iteration inertia and the stopping reason.
        random_state: None, an int or a RandomState; one integer seed is drawn from it and turned
            into one ``jax.random.key`` (restart i uses ``jax.random.split(key, n_init)[i]``).
        copy_x: accepted for compatibility; X is never modified either way (the centred copy the
            fit works on is a new array).
        algorithm: ``"lloyd"`` or ``"elkan"``. Both run the exact Lloyd iterations and return
            the same iterates, bit for bit: ``"elkan"`` (dense data, CPU kernel) skips, with
            triangle-inequality bounds (Hamerly's, per group of centres), the rows whose label
            cannot change, as :func:`gmmlimit.kmeans` does with ``algorithm="hamerly"``.

    Attributes:
        cluster_centers_: (K, D) centres, in X's dtype. labels_: (N,) labels. inertia_: the sum of
        weighted squared distances to the closest centre. n_iter_: iterations of the best run.
        n_features_in_, feature_names_in_: as in scikit-learn. _n_init: restarts actually run.
    """

    _parameter_constraints: dict = {  # noqa: RUF012  (scikit-learn's convention)
        "n_clusters": [Interval(Integral, 1, None, closed="left")],
        "init": [StrOptions({"k-means++", "random"}), callable, "array-like"],
        "n_init": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "random_state": ["random_state"],
        "copy_x": ["boolean"],
        "algorithm": [StrOptions({"lloyd", "elkan"})],
    }

    def __init__(
        self,
        n_clusters: int = 8,
        *,
        init: Any = "k-means++",
        n_init: Any = "auto",
        max_iter: int = 300,
        tol: float = 1e-4,
        verbose: int = 0,
        random_state: Any = None,
        copy_x: bool = True,
        algorithm: str = "lloyd",
    ) -> None:
        self.n_clusters = n_clusters
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.verbose = verbose
        self.random_state = random_state
        self.copy_x = copy_x
        self.algorithm = algorithm

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    # ----------------------------------------------------------------------------- validation

    def _check_params_vs_input(self, X: Any) -> None:
        if X.shape[0] < self.n_clusters:
            raise ValueError(f"n_samples={X.shape[0]} should be >= n_clusters={self.n_clusters}.")
        self._tol = _tolerance(X, self.tol)
        if self.n_init == "auto":
            self._n_init = 1 if _is_arraylike_not_scalar(self.init) else 10
            if isinstance(self.init, str) and self.init == "k-means++":
                self._n_init = 1
        else:
            self._n_init = int(self.n_init)
        if _is_arraylike_not_scalar(self.init) and self._n_init != 1:
            warnings.warn(
                "Explicit initial center position passed: performing only one init in "
                f"{type(self).__name__} instead of n_init={self._n_init}.",
                RuntimeWarning,
                stacklevel=3,
            )
            self._n_init = 1
        self._algorithm = self.algorithm
        if self.algorithm == "elkan" and self.n_clusters == 1:
            warnings.warn(
                "algorithm='elkan' doesn't make sense for a single cluster. Using 'lloyd' instead.",
                RuntimeWarning,
                stacklevel=3,
            )
            self._algorithm = "lloyd"

    def _validate_center_shape(self, X: Any, centers: np.ndarray) -> None:
        if centers.shape[0] != self.n_clusters:
            raise ValueError(
                f"The shape of the initial centers {centers.shape} does not match the number of "
                f"clusters {self.n_clusters}."
            )
        if centers.shape[1] != X.shape[1]:
            raise ValueError(
                f"The shape of the initial centers {centers.shape} does not match the number of "
                f"features of the data {X.shape[1]}."
            )

    def _check_test_data(self, X: Any) -> Any:
        return validate_data(
            self,
            X,
            accept_sparse="csr",
            reset=False,
            dtype=[np.float64, np.float32],
            order="C",
            accept_large_sparse=False,
        )

    # ----------------------------------------------------------------------------- fitting

    def _initial_centres(
        self, X: Any, Xc: Any, w: np.ndarray, key: jax.Array, rng: np.random.RandomState
    ) -> np.ndarray:
        """(K, D) initial centres: seeded, in Xc's coordinates; given, in X's."""
        k = self.n_clusters
        if isinstance(self.init, str):
            if self.init == "k-means++":
                idx = kmeans_plusplus_rows(key, Xc, w, k)
            else:
                idx = random_rows(key, w, k)
            rows = Xc[idx]
            return np.asarray(rows.toarray() if sp.issparse(rows) else rows, dtype=X.dtype)
        if callable(self.init):
            centres = self.init(X, k, random_state=rng)
            if sp.issparse(centres):
                centres = centres.toarray()
            centres = check_array(centres, dtype=X.dtype, copy=True, order="C")
            self._validate_center_shape(X, centres)
        else:
            centres = self._init_array.copy()
        return centres

    @in_x64
    def fit(self, X: Any, y: Any = None, sample_weight: Any = None) -> KMeans:
        """Compute the K-means clustering.

        Args:
            X: (N, D) array-like or sparse matrix (CSR; other formats are converted).
            y: ignored.
            sample_weight: optional (N,) weights; not used by an array or callable init.

        Returns:
            self.

        Raises:
            ValueError: on invalid parameters, data, weights or initial centres.
        """
        self._validate_params()
        X = validate_data(
            self,
            X,
            accept_sparse="csr",
            dtype=[np.float64, np.float32],
            order="C",
            accept_large_sparse=False,
        )
        self._check_params_vs_input(X)
        rng = check_random_state(self.random_state)
        w = _check_sample_weight(sample_weight, X, dtype=X.dtype, ensure_non_negative=True)
        if _is_arraylike_not_scalar(self.init):
            self._init_array = check_array(self.init, dtype=X.dtype, copy=True, order="C")
            self._validate_center_shape(X, self._init_array)
        # Data past the scale window run as X / 2^e (dense: centred, _FitFrame), weights past
        # it as w / 2^f (exact; gmmlimit._rescale), so that squared distances neither overflow
        # nor vanish. Sparse rows past it: their stored values / 2^e, as the dense rows (before,
        # float32 rows near 1e19 overflowed the expanded distances: NaN inertia).
        dense = not sp.issparse(X)
        w_fit = _relative(w)
        if dense:
            Xc, frame = _centred_copy(X)
            xp, wp = _pad(Xc, w_fit)
            rows = (to_jax(xp), to_jax(wp))
        else:
            frame = _FitFrame(scale_exponent(X.data), None, 0)
            Xc = _divided(X, frame.data)
        if frame.data or frame.centred:  # X's own overflows or vanishes: that of the rows fit
            self._tol = _tolerance(Xc, self.tol)
        d = X.shape[1]
        keys = jax.random.split(jax.random.key(int(rng.randint(0, 2**31 - 1))), self._n_init)
        best = None
        for key in keys:
            centres = self._initial_centres(X, Xc, w_fit, key, rng)
            if not isinstance(self.init, str):  # given in X's own coordinates
                centres = frame.to_fit(centres)
            if self.verbose:
                print("Initialization complete")
            if dense:
                start = np.zeros((self.n_clusters, xp.shape[1]), X.dtype)
                start[:, :d] = centres
                means, labels, inertia, n_iter = lloyd_dense(
                    *rows,
                    X.shape[0],
                    start,
                    self._tol,
                    self.max_iter,
                    bool(self.verbose),
                    bounded=self._algorithm == "elkan",
                )
                means = means[:, :d]
            else:
                means, labels, inertia, n_iter = lloyd_sparse(
                    Xc, w_fit, centres, self._tol, self.max_iter, bool(self.verbose)
                )
            if best is None or (
                inertia < best[2] and not same_clustering(labels, best[1], self.n_clusters)
            ):
                best = (means, labels, inertia, n_iter)
        means, labels, _, n_iter = best
        means = frame.back(np.asarray(means, X.dtype))
        self.__dict__.pop("_init_array", None)
        self.cluster_centers_ = np.ascontiguousarray(means, dtype=X.dtype)
        self._n_features_out = self.cluster_centers_.shape[0]
        # Inference translates dense rows by the training rows' offset (gmmlimit._offset), not by
        # that of the batch it is given, so that a row's label depends on no other row. A sparse
        # fit records none: dense rows given to it are translated by their batch's, as before.
        if dense:
            self._fitted_offset = offset_of(X)
        else:
            self.__dict__.pop("_fitted_offset", None)
        # Final labels by predict's own arithmetic, so that fit(X).labels_ == predict(X).
        self.labels_, self.inertia_ = self._assigned(X, w)
        self.n_iter_ = int(n_iter)
        distinct = int(np.count_nonzero(np.bincount(self.labels_, minlength=self.n_clusters)))
        if distinct < self.n_clusters:
            warnings.warn(
                f"Number of distinct clusters ({distinct}) found smaller than n_clusters "
                f"({self.n_clusters}). Possibly due to duplicate points in X.",
                ConvergenceWarning,
                stacklevel=2,
            )
        return self

    # ----------------------------------------------------------------------------- inference

    def _assigned(self, X: Any, w: np.ndarray | None = None) -> tuple[np.ndarray, float]:
        """Nearest centres of validated X and the K-means objective under the fitted centres.

        Each row is computed at its own scale (:func:`~gmmlimit.sklearn._common.rows_by_scale`,
        as ``IsotropicGaussianMixture`` computes it), so that its label depends on no other row
        of the batch (before, one row near 1e200 set the scale of all: a row at (-1e6, 3) lost
        its label). Dense rows and the centres are computed less the training rows' offset
        (:meth:`_inference_offset`), not that of the batch: before, a batch of float32 rows near
        (37.7, -122.4) and as many at (0, 0) got none, and the expanded squares cancelled (70 %
        of them got a wrong label).

        Args:
            X: (N, D) validated array or CSR matrix.
            w: (N,) sample weights in X's dtype; None for ones.

        Returns:
            ``(labels, inertia)``: (N,) int64 labels (ties: the lowest index) and
            sum_n w_n ||x_n - c_{labels_n}||^2, each distance from the difference (exactly 0 for
            a row on its centre); inf past float64's range.
        """
        offset = self._inference_offset(X)
        w_exponent = 0 if w is None else _weight_exponent(w)
        weights = None if w is None else np.ldexp(w, -w_exponent).astype(w.dtype)
        if offset is None:
            C = self.cluster_centers_.astype(X.dtype, copy=False)
            return self._assigned_as_given(X, weights, w_exponent, C)
        # rows far from the origin, as the fit's: translated (gmmlimit._offset), exactly those
        # within a factor of two of the offset (the training rows), others with one rounding;
        # the centres less the same offset (X's dtype), rounded once from their own precision
        with np.errstate(over="ignore"):
            moved = X - offset
        C = (self.cluster_centers_.astype(np.float64) - offset.astype(np.float64)).astype(X.dtype)
        # a row whose translation overflows (float32 rows near 3e38 less an offset near -1e38),
        # with the centres as given: far from both, it gains nothing from the translation
        overflowed = ~np.all(np.isfinite(moved), axis=1)
        if not overflowed.any():
            return self._assigned_as_given(moved, weights, w_exponent, C)
        labels = np.empty(X.shape[0], np.int64)
        inertia = 0.0
        as_given = self.cluster_centers_.astype(X.dtype, copy=False)
        for rows, data, centres in (
            (np.flatnonzero(~overflowed), moved, C),
            (np.flatnonzero(overflowed), X, as_given),
        ):
            if rows.size:
                part = None if weights is None else weights[rows]
                labels[rows], value = self._assigned_as_given(data[rows], part, w_exponent, centres)
                inertia += value
        return labels, inertia

    def _inference_offset(self, X: Any) -> np.ndarray | None:
        """The (D,) offset validated X is computed less (X's dtype), or None (as given).

        That of the training rows (``_fitted_offset``, recorded by a dense fit), so that a row's
        answers depend on no other row of the batch; sparse rows, none. A model without one (a
        sparse fit) translates dense rows by their batch's own :func:`offset_of`, as before.
        """
        if sp.issparse(X):
            return None
        if "_fitted_offset" not in self.__dict__:
            return offset_of(X)
        offset = self._fitted_offset
        return None if offset is None else np.asarray(offset).astype(X.dtype)

    @staticmethod
    def _assigned_as_given(
        X: Any, weights: np.ndarray | None, w_exponent: int, C: np.ndarray
    ) -> tuple[np.ndarray, float]:
        """:meth:`_assigned` of rows and centres C computed as given, each row at its own scale.

        Args:
            X: (N, D) validated array or CSR matrix.
            weights: (N,) weights divided by 2^w_exponent; None for ones.
            w_exponent: the power of two the weights were divided by.
            C: (K, D) centres in X's dtype.
        """
        groups = rows_by_scale(X, C)
        if groups is None:
            labels, distortion = _nearest(X, weights, C)
            with np.errstate(over="ignore"):  # an inertia past float64's range is inf
                return labels, float(np.ldexp(distortion, w_exponent))
        labels = np.empty(X.shape[0], np.int64)
        inertia = 0.0
        for exponent, rows in groups:  # exact powers of two, as in fit
            labels[rows], distortion = _nearest(
                _divided(X[rows], exponent),
                None if weights is None else weights[rows],
                np.ldexp(C, -exponent).astype(X.dtype),
            )
            with np.errstate(over="ignore"):
                inertia += float(np.ldexp(distortion, 2 * exponent + w_exponent))
        return labels, inertia

    def _labels(self, X: Any) -> np.ndarray:
        """(N,) nearest-centre labels of validated X (ties: the lowest index)."""
        return self._assigned(X)[0]

    @in_x64
    def predict(self, X: Any) -> np.ndarray:
        """Index of the closest centre for each row.

        Args:
            X: (N, D) array-like or sparse matrix.

        Returns:
            (N,) int labels.
        """
        check_is_fitted(self)
        return self._labels(self._check_test_data(X))

    def fit_predict(self, X: Any, y: Any = None, sample_weight: Any = None) -> np.ndarray:
        """Fit, then return the training labels.

        Args:
            X: (N, D) array-like or sparse matrix.
            y: ignored.
            sample_weight: optional (N,) weights.

        Returns:
            (N,) labels.
        """
        return self.fit(X, sample_weight=sample_weight).labels_

    def _transform(self, X: Any) -> np.ndarray:
        """(N, K) distances of validated X to the centres, each row at its own scale."""
        C = self.cluster_centers_.astype(X.dtype, copy=False)
        groups = rows_by_scale(X, C)
        if groups is None:
            return _distances(X, C)
        # rows past the scale window: distances of x / 2^e, times 2^e (exact)
        out = np.empty((X.shape[0], C.shape[0]), X.dtype)
        for exponent, rows in groups:
            scaled = _distances(_divided(X[rows], exponent), np.ldexp(C, -exponent))
            with np.errstate(over="ignore"):  # a distance past the dtype's range is inf
                out[rows] = np.ldexp(scaled, exponent)
        return out

    def transform(self, X: Any) -> np.ndarray:
        """Euclidean distances to the centres.

        Dense rows use differences (a row equal to a centre is at distance exactly 0); sparse rows
        the expanded form with a sparse-dense product.

        Args:
            X: (N, D) array-like or sparse matrix.

        Returns:
            (N, K) distances in X's dtype.
        """
        check_is_fitted(self)
        return self._transform(self._check_test_data(X))

    def fit_transform(self, X: Any, y: Any = None, sample_weight: Any = None) -> np.ndarray:
        """Fit, then return the distances of X to the centres.

        Args:
            X: (N, D) array-like or sparse matrix.
            y: ignored.
            sample_weight: optional (N,) weights.

        Returns:
            (N, K) distances.
        """
        return self.fit(X, sample_weight=sample_weight)._transform(self._check_test_data(X))

    @in_x64
    def score(self, X: Any, y: Any = None, sample_weight: Any = None) -> float:
        """Minus the K-means objective of X under the fitted centres (higher is better).

        Args:
            X: (N, D) array-like or sparse matrix.
            y: ignored.
            sample_weight: optional (N,) weights.

        Returns:
            -sum_n w_n min_k ||x_n - c_k||^2.
        """
        check_is_fitted(self)
        X = self._check_test_data(X)
        w = _check_sample_weight(sample_weight, X, dtype=X.dtype, ensure_non_negative=True)
        return -self._assigned(X, w)[1]
