"""Measure how exactly gmmlimit.kmeans reproduces scikit-learn's Lloyd K-means.

From the same k-means++ initial centres, on scikit-learn's bundled data sets, compare iteration
counts, labels, centres and inertia in float64. Run: ``python benchmarks/sklearn_agreement.py``.
"""

import jax
import numpy as np
from sklearn.cluster import KMeans
from sklearn.datasets import load_digits, load_iris, load_wine

import gmmlimit as gl


def main() -> None:
    jax.config.update("jax_enable_x64", True)
    for name, loader in [("digits", load_digits), ("iris", load_iris), ("wine", load_wine)]:
        X = loader().data.astype(np.float64)
        for k in (3, 10):
            m0 = np.asarray(gl.init.kmeans_plusplus(jax.random.key(1), X, k))
            ours = gl.kmeans(X, m0)
            sk = KMeans(k, init=m0, n_init=1, algorithm="lloyd", tol=0.0, max_iter=300).fit(X)
            same = np.array_equal(np.asarray(ours.labels), sk.labels_)
            centre_diff = np.abs(np.asarray(ours.means) - sk.cluster_centers_).max()
            inertia_diff = abs(float(ours.distortion) - sk.inertia_) / sk.inertia_
            print(
                f"{name:6} k={k:2}: n_iter {int(ours.n_iter)} vs {sk.n_iter_}; labels equal "
                f"{same}; max|centre diff| {centre_diff:.1e}; inertia rel diff {inertia_diff:.1e}"
            )


if __name__ == "__main__":
    main()
