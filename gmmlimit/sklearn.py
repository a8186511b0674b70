"""scikit-learn estimators: ``KMeans`` and ``IsotropicGaussianMixture``, on the compiled driver.

They pass ``sklearn.utils.estimator_checks`` and so drop into pipelines, grid searches (sigma2 is
an ordinary hyper-parameter: ``GridSearchCV(IsotropicGaussianMixture(k), {"sigma2": [...]})``
scores by held-out log-likelihood) and metrics.

Randomness: ``random_state`` (None, an int or a ``numpy.random.RandomState``) is turned, through
``sklearn.utils.check_random_state``, into one integer seed and then one explicit
``jax.random.key``; restart i uses ``jax.random.split(key, n_init)[i]``. None follows scikit-learn's
convention (numpy's global generator), so an int is needed for reproducible fits.

Compilation: JAX compiles once per array shape. To keep many small fits (cross-validation, the
estimator checks) from recompiling for every size, the rows are padded to the next power of two
(at least 256) with zero-weight copies of the first row and the columns to the next power of two
(at least 8) with zeros.
Neither changes any distance, statistic or label of the real rows; the padded rows carry no
weight and always share the first row's label.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from sklearn.base import BaseEstimator, ClusterMixin, DensityMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from . import init as _init
from ._driver import DEFAULT_BLOCK_SIZE, FitResult, fit_loop, make_blocks
from .variants.isotropic import IsotropicParams, isotropic

__all__ = ["IsotropicGaussianMixture", "KMeans"]

# Small inputs share one shape (and so one compiled program): at least 256 rows and 8 columns.
_MIN_ROWS = 256
_MIN_COLS = 8


def _bucket(n: int, minimum: int) -> int:
    return max(minimum, 1 << max(0, math.ceil(math.log2(max(n, 1)))))


def _pad(X: np.ndarray, w: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Rows to a power of two (zero-weight copies of row 0), columns to a power of two (zeros)."""
    n, d = X.shape
    n_pad, d_pad = _bucket(n, _MIN_ROWS), _bucket(d, _MIN_COLS)
    out = np.zeros((n_pad, d_pad), X.dtype)
    out[:n, :d] = X
    out[n:, :d] = X[0]
    weights = np.zeros((n_pad,), X.dtype)
    weights[:n] = 1.0 if w is None else w
    return out, weights


def _jax_key(random_state: Any) -> jax.Array:
    """An explicit jax.random key from scikit-learn's random_state."""
    seed = int(check_random_state(random_state).randint(0, 2**31 - 1))
    return jax.random.key(seed)


def _jax_dtype(dtype: np.dtype) -> np.dtype:
    """float64 needs JAX's x64 mode; without it the computation runs in float32."""
    if dtype == np.float64 and not jax.config.jax_enable_x64:
        return np.dtype(np.float32)
    return np.dtype(dtype)


def _fit_padded(
    X: jax.Array,
    w: jax.Array,
    means: jax.Array,
    sigma2: jax.Array,
    tol: jax.Array,
    shift_scale: jax.Array,
    *,
    max_iter: int,
    block_size: int,
) -> FitResult:
    blocks = make_blocks(X, w, block_size)
    params = IsotropicParams(means, sigma2)
    return fit_loop(isotropic, blocks, X.shape[0], params, tol, shift_scale, max_iter=max_iter)


_fit_large = jax.jit(_fit_padded, static_argnames=("max_iter", "block_size"))
# Small problems (cross-validation folds, the estimator checks) are dominated by compilation:
# LLVM's optimisation level 0 halves it (measured 3.8 s -> 1.9 s on 256 x 8) and changes no
# floating-point semantics (XLA's CPU backend does not enable fast-math either way).
_fit_small = jax.jit(
    _fit_padded,
    static_argnames=("max_iter", "block_size"),
    compiler_options={"xla_backend_optimization_level": 0},
)
_SMALL = 1 << 16
_kmeans_plusplus_small = jax.jit(
    _init._kmeans_plusplus.__wrapped__,
    static_argnames=("k", "trials"),
    compiler_options={"xla_backend_optimization_level": 0},
)


@jax.jit
def _assign(X: jax.Array, means: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Labels and squared distances (K, N) with the fit's own formula and tie rule."""
    means_sq = jnp.sum(means * means, axis=1)
    cross = lax.dot_general(means, X, (((1,), (1,)), ((), ())), precision=lax.Precision.HIGHEST)
    partial_d = means_sq[:, None] - 2.0 * cross
    best = jnp.min(partial_d, axis=0)
    iota = lax.broadcasted_iota(jnp.int32, partial_d.shape, 0)
    labels = jnp.min(jnp.where(partial_d == best[None, :], iota, means.shape[0]), axis=0)
    labels = jnp.minimum(labels, means.shape[0] - 1)
    sq = jnp.maximum(partial_d + jnp.sum(X * X, axis=1)[None, :], 0.0)
    return labels, sq


@jax.jit
def _soft(X: jax.Array, means: jax.Array, sigma2: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(N, K) responsibilities and (N,) log-sum-exp_k(-d_nk / (2 sigma2)) (no normalisers)."""
    labels, sq = _assign(X, means)
    diff = X - means[labels]
    nearest = jnp.sum(diff * diff, axis=1)
    gap = jnp.maximum(sq - sq[labels, jnp.arange(X.shape[0])][None, :], 0.0)
    e = jnp.exp(-gap / (2.0 * sigma2))
    total = jnp.sum(e, axis=0)
    return (e / total[None, :]).T, jnp.log(total) - nearest / (2.0 * sigma2)


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
        if not isinstance(self.tol, (int, float, np.floating)) or not (0 <= self.tol < math.inf):
            raise ValueError(f"tol must be a finite number >= 0; got {self.tol!r}.")
        if isinstance(self.init, str) and self.init not in ("k-means++", "random"):
            raise ValueError(f"init must be 'k-means++', 'random' or an array; got {self.init!r}.")

    def _fit(self, X: Any, sample_weight: Any) -> tuple[np.ndarray, FitResult, float]:
        self._validate_common()
        X = validate_data(self, X, dtype=[np.float64, np.float32])
        k = int(self._n_components())
        n, d = X.shape
        if k > n:
            raise ValueError(f"n_samples={n} should be >= the number of components {k}.")
        dtype = _jax_dtype(X.dtype)
        sw = _check_sample_weight(sample_weight, X, dtype=X.dtype)
        sigma2 = float(self._sigma2())
        if sigma2 > 0 and np.asarray(sigma2, dtype) == 0:
            raise ValueError(f"sigma2={sigma2!r} underflows to 0 in {dtype}; use a larger value.")
        Xp, wp = _pad(X.astype(dtype, copy=False), sw.astype(dtype))
        Xj, wj = jnp.asarray(Xp), jnp.asarray(wp)
        shift_scale = jnp.asarray(np.mean(np.var(X, axis=0)), dtype)
        keys = jax.random.split(_jax_key(self.random_state), self.n_init)
        best = None
        if not isinstance(self.init, str):
            given = np.asarray(self.init, dtype=dtype)
            if given.shape != (k, d) or not np.all(np.isfinite(given)):
                raise ValueError(f"an array init must be finite with shape ({k}, {d}).")
            start_given = np.zeros((k, Xp.shape[1]), dtype)
            start_given[:, :d] = given
            keys = keys[:1]
        for key in keys:
            if not isinstance(self.init, str):
                start = jnp.asarray(start_given)
            elif self.init == "k-means++" and Xp.size <= _SMALL:
                start = _kmeans_plusplus_small(key, Xj, wj, k, 2 + int(math.log(k)))
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
                max_iter=int(self.max_iter),
                block_size=DEFAULT_BLOCK_SIZE,
            )
            score = float(res.objective) * (1.0 if sigma2 > 0 else -1.0)
            if best is None or score > best[0]:
                best = (score, res)
        res = best[1]
        means = np.asarray(res.means)[:, :d].astype(X.dtype)
        return means, res, float(np.sum(sw))

    def _padded(self, X: Any) -> tuple[np.ndarray, jax.Array, jax.Array, int]:
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        dtype = _jax_dtype(X.dtype)
        Xp, _ = _pad(X.astype(dtype, copy=False))
        means = np.zeros((self._means().shape[0], Xp.shape[1]), dtype)
        means[:, : X.shape[1]] = self._means()
        return X, jnp.asarray(Xp), jnp.asarray(means), X.shape[0]

    def _means(self) -> np.ndarray:
        raise NotImplementedError

    def predict(self, X: Any) -> np.ndarray:
        """Index of the nearest mean (the most responsible component), ties to the lowest.

        Args:
            X: (N, D) data.

        Returns:
            (N,) int labels.
        """
        _, Xp, means, n = self._padded(X)
        return np.asarray(_assign(Xp, means)[0])[:n].astype(np.int64)


class KMeans(ClusterMixin, TransformerMixin, _IsotropicBase):
    """Lloyd's K-means (gmmlimit's isotropic mixture at sigma2 = 0), scikit-learn style.

    Args:
        n_clusters: number of clusters K.
        init: ``"k-means++"`` (greedy k-means++), ``"random"`` (random distinct rows) or a
            (K, D) array of initial centres (then one run, whatever ``n_init``).
        n_init: number of restarts; the lowest inertia wins.
        max_iter: maximum Lloyd iterations per restart.
        tol: centre-shift tolerance relative to the mean feature variance (scikit-learn's).
        random_state: None, an int or a RandomState; turned into one ``jax.random.key``.

    Attributes:
        cluster_centers_: (K, D) centres. labels_: (N,) labels. inertia_: the distortion J.
        n_iter_: iterations of the best restart. n_features_in_: D.
    """

    def __init__(
        self,
        n_clusters: int = 8,
        *,
        init: Any = "k-means++",
        n_init: int = 1,
        max_iter: int = 300,
        tol: float = 1e-4,
        random_state: Any = None,
    ) -> None:
        self.n_clusters = n_clusters
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state

    def _n_components(self) -> int:
        return self.n_clusters

    def _sigma2(self) -> float:
        return 0.0

    def _means(self) -> np.ndarray:
        return self.cluster_centers_

    def fit(self, X: Any, y: Any = None, sample_weight: Any = None) -> KMeans:
        """Fit the centres.

        Args:
            X: (N, D) data.
            y: ignored.
            sample_weight: optional (N,) non-negative weights.

        Returns:
            self.
        """
        means, res, _ = self._fit(X, sample_weight)
        self.cluster_centers_ = means
        self.n_iter_ = int(res.n_iter)
        self.inertia_ = float(res.objective)
        self.labels_ = self.predict(X)
        return self

    def transform(self, X: Any) -> np.ndarray:
        """Euclidean distances to the centres.

        Args:
            X: (N, D) data.

        Returns:
            (N, K) distances.
        """
        _, Xp, means, n = self._padded(X)
        sq = np.asarray(_assign(Xp, means)[1])[:, :n].T
        return np.sqrt(sq)

    def score(self, X: Any, y: Any = None, sample_weight: Any = None) -> float:
        """Minus the inertia of X under the fitted centres (higher is better).

        Args:
            X: (N, D) data.
            y: ignored.
            sample_weight: optional (N,) weights.

        Returns:
            -sum_n w_n min_k ||x_n - mu_k||^2.
        """
        X, Xp, means, n = self._padded(X)
        labels = np.asarray(_assign(Xp, means)[0])[:n]
        sw = _check_sample_weight(sample_weight, X, dtype=X.dtype)
        diff = X - self.cluster_centers_[labels]
        return -float(np.sum(sw * np.sum(diff * diff, axis=1)))


class IsotropicGaussianMixture(ClusterMixin, DensityMixin, _IsotropicBase):
    """EM for the equal-prior Gaussian mixture with one fixed shared variance sigma2 * I.

    ``sigma2`` is a hyper-parameter (not estimated): sweeping it toward 0 turns the fit into
    K-means, the point of gmmlimit; ``GridSearchCV`` can choose it by held-out log-likelihood.

    Args:
        n_components: number of components K.
        sigma2: the shared variance, > 0.
        init: ``"k-means++"``, ``"random"`` or a (K, D) array of initial means.
        n_init: number of restarts; the highest log-likelihood wins.
        max_iter: maximum EM iterations per restart.
        tol: stop once the relative log-likelihood gain is <= tol.
        random_state: None, an int or a RandomState; turned into one ``jax.random.key``.

    Attributes:
        means_: (K, D).
        weights_: (K,) all 1/K.
        covariances_: (K,) all sigma2 (spherical, as in scikit-learn's GaussianMixture).
        labels_: (N,).
        n_iter_: iterations of the best restart.
        converged_: whether the best restart converged.
        lower_bound_: the mean log-likelihood per sample of the training data.
        n_features_in_: D.
    """

    def __init__(
        self,
        n_components: int = 1,
        *,
        sigma2: float = 1.0,
        init: Any = "k-means++",
        n_init: int = 1,
        max_iter: int = 300,
        tol: float = 1e-8,
        random_state: Any = None,
    ) -> None:
        self.n_components = n_components
        self.sigma2 = sigma2
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state

    def _n_components(self) -> int:
        return self.n_components

    def _sigma2(self) -> float:
        s = self.sigma2
        if isinstance(s, bool) or not isinstance(s, (int, float, np.floating, np.integer)):
            raise ValueError(f"sigma2 must be a positive number; got {s!r}.")
        if not (0 < s < math.inf):
            raise ValueError(
                f"sigma2 must be a finite number > 0 (use KMeans for the limit 0); got {s!r}."
            )
        return float(s)

    def _means(self) -> np.ndarray:
        return self.means_

    def fit(self, X: Any, y: Any = None, sample_weight: Any = None) -> IsotropicGaussianMixture:
        """Run EM for the means at the fixed sigma2.

        Args:
            X: (N, D) data.
            y: ignored.
            sample_weight: optional (N,) non-negative weights.

        Returns:
            self.
        """
        means, res, total_weight = self._fit(X, sample_weight)
        k = means.shape[0]
        self.means_ = means
        self.weights_ = np.full(k, 1.0 / k)
        self.covariances_ = np.full(k, float(self.sigma2))
        self.n_iter_ = int(res.n_iter)
        self.converged_ = bool(res.converged)
        self.lower_bound_ = float(res.objective) / total_weight
        self.labels_ = self.predict(X)
        return self

    def _soft(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        _, Xp, means, n = self._padded(X)
        resp, lse = _soft(Xp, means, jnp.asarray(self.sigma2, Xp.dtype))
        k, d = self.means_.shape
        norm = math.log(k) + 0.5 * d * math.log(2.0 * math.pi * float(self.sigma2))
        return np.asarray(resp)[:n], np.asarray(lse)[:n] - norm

    def predict_proba(self, X: Any) -> np.ndarray:
        """Responsibilities r_nk (shifted log-domain softmax; never NaN).

        Args:
            X: (N, D) data.

        Returns:
            (N, K) rows summing to one.
        """
        return self._soft(X)[0]

    def score_samples(self, X: Any) -> np.ndarray:
        """Per-sample log-likelihood log p(x_n).

        Args:
            X: (N, D) data.

        Returns:
            (N,) log densities.
        """
        return self._soft(X)[1]

    def score(self, X: Any, y: Any = None) -> float:
        """Mean per-sample log-likelihood of X.

        Args:
            X: (N, D) data.
            y: ignored.

        Returns:
            The mean of :meth:`score_samples`.
        """
        return float(np.mean(self.score_samples(X)))
