"""The scikit-learn estimators pass scikit-learn's estimator checks and agree with the library."""

import numpy as np
import pytest
from sklearn.cluster import KMeans as SkKMeans
from sklearn.model_selection import GridSearchCV
from sklearn.utils.estimator_checks import parametrize_with_checks

import gmmlimit as gl
from gmmlimit.sklearn import IsotropicGaussianMixture, KMeans

# Random initialisation draws rows: with rows repeated instead of weighted the same seed draws
# other rows, so the fits differ (scikit-learn's KMeans and GaussianMixture declare the same).
_WEIGHT_EQUIVALENCE = {
    "check_sample_weight_equivalence_on_dense_data": "random init draws rows, not weights",
    "check_sample_weight_equivalence_on_sparse_data": "random init draws rows, not weights",
}


@parametrize_with_checks(
    [
        KMeans(n_clusters=2, max_iter=10, random_state=0),
        IsotropicGaussianMixture(n_components=2, max_iter=10, random_state=0),
    ],
    expected_failed_checks=lambda est: _WEIGHT_EQUIVALENCE,
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


# Shapes, K and max_iter as in the checks above, so their compiled programs are reused.
def _blobs(seed=0, n=240, d=3, k=2):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(k, d))
    return centres[rng.integers(k, size=n)] + rng.normal(size=(n, d))


def test_kmeans_estimator_equals_sklearn_lloyd_from_the_same_start():
    X = _blobs()
    start = X[[0, 1]]
    km = KMeans(n_clusters=2, init=start, tol=0.0, max_iter=10).fit(X)
    sk = SkKMeans(2, init=start, n_init=1, tol=0.0, max_iter=10, algorithm="lloyd").fit(X)
    np.testing.assert_allclose(km.cluster_centers_, sk.cluster_centers_, rtol=0, atol=1e-10)
    np.testing.assert_array_equal(km.labels_, sk.labels_)
    assert km.n_iter_ == sk.n_iter_
    np.testing.assert_allclose(km.inertia_, sk.inertia_, rtol=1e-12)
    np.testing.assert_allclose(km.score(X), -sk.inertia_, rtol=1e-12)
    np.testing.assert_allclose(km.transform(X), sk.transform(X), rtol=1e-9, atol=1e-9)


def test_random_state_is_an_explicit_jax_key():
    X = _blobs(3)
    a = KMeans(2, n_init=2, max_iter=10, random_state=5).fit(X)
    b = KMeans(2, n_init=2, max_iter=10, random_state=np.random.RandomState(5)).fit(X)
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)
    c = KMeans(2, n_init=2, max_iter=10, random_state=6).fit(X)
    assert not np.array_equal(a.cluster_centers_, c.cluster_centers_) or a.inertia_ == c.inertia_


def test_gmm_estimator_in_a_grid_search_over_sigma2():
    X = _blobs(1)
    gm = IsotropicGaussianMixture(2, sigma2=1.0, max_iter=10, random_state=0).fit(X)
    ref = gl.log_likelihood(X, gm.means_, 1.0)
    np.testing.assert_allclose(gm.score(X) * len(X), float(ref), rtol=1e-10)
    np.testing.assert_allclose(
        gm.predict_proba(X), np.asarray(gl.responsibilities(X, gm.means_, 1.0)), atol=1e-12
    )
    search = GridSearchCV(
        IsotropicGaussianMixture(2, random_state=0, max_iter=10),
        {"sigma2": [0.05, 1.0, 30.0]},
        cv=3,
    ).fit(X)
    # The data have unit noise: held-out likelihood prefers sigma2 = 1.
    assert search.best_params_["sigma2"] == 1.0


def test_estimator_errors():
    X = _blobs(2, n=20)
    with pytest.raises(ValueError, match="sigma2"):
        IsotropicGaussianMixture(2, sigma2=0.0).fit(X)
    with pytest.raises(ValueError, match="n_samples=20"):
        KMeans(30).fit(X)
    with pytest.raises(ValueError, match="init"):
        KMeans(2, init="nope").fit(X)
