"""Lloyd's K-means from given means must reproduce scikit-learn's KMeans(algorithm="lloyd")."""

import jax
import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.datasets import load_digits, load_iris, load_wine

import gmmlimit as gl


def _blobs(seed: int, n: int, d: int, k: int, spread: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=spread, size=(k, d))
    return centres[rng.integers(k, size=n)] + rng.normal(size=(n, d))


DATASETS = {
    "digits": lambda: load_digits().data.astype(np.float64),
    "iris": lambda: load_iris().data.astype(np.float64),
    "wine": lambda: load_wine().data.astype(np.float64),
    "blobs-overlap": lambda: _blobs(0, 700, 5, 6, 1.5),
    # iris's shape: with the same K, the two share compiled programs
    "blobs-separated": lambda: _blobs(1, 150, 4, 4, 10.0),
}


def _sklearn(X, init, tol=0.0, max_iter=300, weights=None):
    km = KMeans(
        n_clusters=init.shape[0],
        init=init,
        n_init=1,
        algorithm="lloyd",
        tol=tol,
        max_iter=max_iter,
    )
    return km.fit(X, sample_weight=weights)


@pytest.mark.parametrize(
    ("name", "k"),
    # every data set, K = 3 and K = 10 in turn (one compiled fit per shape)
    [("blobs-overlap", 10), ("blobs-separated", 3), ("digits", 10), ("iris", 3), ("wine", 10)],
)
def test_kmeans_matches_sklearn_lloyd(name, k):
    X = DATASETS[name]()
    init = np.asarray(gl.init.kmeans_plusplus(jax.random.key(k), X, k))
    ours = gl.kmeans(X, init)
    ref = _sklearn(X, init)
    assert int(ours.n_iter) == ref.n_iter_
    np.testing.assert_array_equal(np.asarray(ours.labels), ref.labels_)
    np.testing.assert_allclose(np.asarray(ours.means), ref.cluster_centers_, rtol=0, atol=1e-10)
    np.testing.assert_allclose(float(ours.distortion), ref.inertia_, rtol=1e-12)
    assert bool(ours.converged)


@pytest.mark.parametrize("tol", [1e-4, 1e-2])
def test_kmeans_tol_means_what_sklearn_means(tol):
    # K = 10 as blobs-overlap's case in test_kmeans_matches_sklearn_lloyd: one compiled fit (tol
    # is an argument of the program, not part of its shape)
    X = DATASETS["blobs-overlap"]()
    init = np.asarray(gl.init.random_points(jax.random.key(3), X, 10))
    ours = gl.kmeans(X, init, tol=tol)
    ref = _sklearn(X, init, tol=tol)
    assert int(ours.n_iter) == ref.n_iter_
    np.testing.assert_array_equal(np.asarray(ours.labels), ref.labels_)
    np.testing.assert_allclose(np.asarray(ours.means), ref.cluster_centers_, atol=1e-10)


def test_kmeans_max_iter_stops_like_sklearn():
    # Digits are integers, so distances from data-point means tie exactly. scikit-learn centres
    # the data first, which breaks exact ties by rounding; jitter keeps this comparison tie-free.
    X = DATASETS["digits"]() + np.random.default_rng(0).uniform(-0.01, 0.01, (1797, 64))
    init = np.asarray(gl.init.random_points(jax.random.key(0), X, 10))
    ours = gl.kmeans(X, init, max_iter=3)
    ref = _sklearn(X, init, max_iter=3)
    assert int(ours.n_iter) == ref.n_iter_ == 3
    assert not bool(ours.converged)
    np.testing.assert_allclose(np.asarray(ours.means), ref.cluster_centers_, atol=1e-10)
    np.testing.assert_array_equal(np.asarray(ours.labels), ref.labels_)


def test_kmeans_weighted_matches_sklearn():
    X = DATASETS["wine"]()
    rng = np.random.default_rng(5)
    weights = rng.uniform(0.1, 3.0, size=X.shape[0])
    # K = 10 as wine's case in test_kmeans_matches_sklearn_lloyd: the same compiled fit
    init = np.asarray(gl.init.kmeans_plusplus(jax.random.key(2), X, 10, weights=weights))
    ours = gl.kmeans(X, init, weights=weights)
    ref = _sklearn(X, init, weights=weights)
    assert int(ours.n_iter) == ref.n_iter_
    np.testing.assert_array_equal(np.asarray(ours.labels), ref.labels_)
    np.testing.assert_allclose(np.asarray(ours.means), ref.cluster_centers_, atol=1e-10)
    np.testing.assert_allclose(float(ours.distortion), ref.inertia_, rtol=1e-12)


def test_empty_cluster_relocated_like_sklearn():
    # (150, 4) rows and K = 3, as iris's case in test_kmeans_matches_sklearn_lloyd: one compiled fit
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(size=(75, 4)), rng.normal(size=(75, 4)) + 8.0])
    # The third mean is far from every point: it gets no point at the first E-step.
    init = np.array([[0.0] * 4, [8.0] * 4, [100.0, -100.0, 100.0, -100.0]])
    ours = gl.kmeans(X, init)
    ref = _sklearn(X, init)
    assert int(ours.n_iter) == ref.n_iter_
    np.testing.assert_array_equal(np.asarray(ours.labels), ref.labels_)
    np.testing.assert_allclose(np.asarray(ours.means), ref.cluster_centers_, atol=1e-10)
    # The relocated cluster is no longer empty.
    assert np.bincount(np.asarray(ours.labels), minlength=3).min() > 0


def test_float32_kmeans_close_to_sklearn():
    X = DATASETS["digits"]().astype(np.float32)
    init = np.asarray(gl.init.kmeans_plusplus(jax.random.key(1), X, 10))
    ours = gl.kmeans(X, init)
    ref = _sklearn(X, init)
    assert ours.means.dtype == np.float32 and ours.objective.dtype == np.float32
    agreement = np.mean(np.asarray(ours.labels) == ref.labels_)
    assert agreement > 0.99
    np.testing.assert_allclose(float(ours.distortion), ref.inertia_, rtol=1e-4)
