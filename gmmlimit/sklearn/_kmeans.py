"""Lloyd's K-means as a scikit-learn estimator."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import ClusterMixin, TransformerMixin
from sklearn.utils.validation import _check_sample_weight

from ._common import _assign, _IsotropicBase

__all__ = ["KMeans"]


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
