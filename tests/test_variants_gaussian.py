"""Gaussian variants with learned covariances: scikit-learn agreement and the K-means limit."""

import warnings

import jax
import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture
from variant_cases import MAX_ITER, REG, W3, correlated, wine

import gmmlimit as gl
from gmmlimit import variants as gv
from gmmlimit.variants._gaussian import PER_COMPONENT_MIN_FEATURES

X = wine()
N, D = X.shape
# From this start scikit-learn's EM (and ours) runs all MAX_ITER iterations without converging.
M0 = X[np.random.default_rng(1).choice(N, 3, replace=False)]
STOP_AFTER_TWO = 1e30  # a relative tol so large that the driver stops after its second iteration


def _start(kind):
    if kind == "spherical":
        return gv.SphericalParams(M0, np.ones(3), W3, 1.0, REG), np.ones(3)
    if kind == "diag":
        return gv.DiagParams(M0, np.ones((3, D)), W3, 1.0, REG), np.ones((3, D))
    eye = np.stack([np.eye(D)] * 3)
    return gv.FullParams(M0, eye, W3, 1.0, REG), eye


def _sklearn_em(kind, data, means, precisions, n_iter):
    """scikit-learn's GaussianMixture run for exactly n_iter iterations from the given start."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return GaussianMixture(
            3,
            covariance_type=kind,
            means_init=means,
            weights_init=W3,
            precisions_init=precisions,
            reg_covar=REG,
            tol=1e-300,
            max_iter=n_iter,
            init_params="random",
            random_state=0,
        ).fit(data)


def _ours_and_sklearn(kind, n_iter, dtype=np.float64):
    params, precisions = _start(kind)
    Xd = X.astype(dtype)
    tol = 0.0 if n_iter == MAX_ITER else STOP_AFTER_TWO
    ours = gl.fit(getattr(gv, kind), Xd, params, max_iter=MAX_ITER, tol=tol)
    return ours, _sklearn_em(kind, Xd, M0, precisions, n_iter)


def _covariances(kind, params):
    return np.asarray(params.covariances if kind == "full" else params.variances)


@pytest.mark.parametrize("kind", ["spherical", "diag", "full"])
@pytest.mark.parametrize("n_iter", [2, MAX_ITER])
def test_gaussian_variants_reproduce_sklearn_iterates(kind, n_iter):
    ours, ref = _ours_and_sklearn(kind, n_iter)
    assert int(ours.n_iter) == ref.n_iter_ == n_iter
    np.testing.assert_allclose(np.asarray(ours.means), ref.means_, rtol=0, atol=1e-11)
    np.testing.assert_allclose(_covariances(kind, ours.params), ref.covariances_, atol=1e-11)
    np.testing.assert_allclose(np.asarray(ours.params.weights), ref.weights_, rtol=0, atol=1e-12)
    # the whole log-likelihood trajectory (scikit-learn records the mean per sample)
    np.testing.assert_allclose(
        np.asarray(ours.history)[:n_iter] / N, np.asarray(ref.lower_bounds_), rtol=1e-12
    )
    # the final log-likelihood, at the returned parameters
    np.testing.assert_allclose(float(ours.objective) / N, ref.score(X), rtol=1e-12)
    np.testing.assert_array_equal(np.asarray(ours.labels), ref.predict(X))


@pytest.mark.parametrize("kind", ["spherical", "full"])
def test_gaussian_variants_float32_close_to_sklearn(kind):
    ours, ref = _ours_and_sklearn(kind, 2, dtype=np.float32)
    assert int(ours.n_iter) == 2
    assert all(leaf.dtype == np.float32 for leaf in jax.tree.leaves(ours.params))
    np.testing.assert_allclose(np.asarray(ours.means), ref.means_, atol=1e-5)
    np.testing.assert_allclose(_covariances(kind, ours.params), ref.covariances_, atol=1e-5)
    np.testing.assert_allclose(
        float(ours.objective) / N, ref.score(X.astype(np.float32)), rtol=1e-5
    )


def _numpy_shared_em(X, means, sigma2, weights, n_iter):
    """Reference EM for the tied isotropic mixture, written directly from the formulas."""
    n, d = X.shape
    for _ in range(n_iter):
        sq = ((X[:, None, :] - means[None]) ** 2).sum(-1)
        logp = np.log(weights) - 0.5 * d * np.log(2 * np.pi * sigma2) - sq / (2 * sigma2)
        top = logp.max(1, keepdims=True)
        resp = np.exp(logp - top)
        resp /= resp.sum(1, keepdims=True)
        nk = resp.sum(0)
        means = resp.T @ X / nk[:, None]
        sq = ((X[:, None, :] - means[None]) ** 2).sum(-1)
        sigma2 = (resp * sq).sum() / (n * d) + REG
        weights = nk / n
    return means, sigma2, weights


def test_shared_spherical_matches_reference_em():
    ours = gl.fit(
        gv.shared_spherical,
        X,
        gv.SharedSphericalParams(M0, 0.7, W3, 1.0, REG),
        max_iter=MAX_ITER,
        tol=0.0,
    )
    ref_means, ref_sigma2, ref_weights = _numpy_shared_em(X, M0, 0.7, W3, int(ours.n_iter))
    np.testing.assert_allclose(np.asarray(ours.means), ref_means, atol=1e-11)
    np.testing.assert_allclose(float(ours.params.sigma2), ref_sigma2, rtol=1e-11)
    np.testing.assert_allclose(np.asarray(ours.params.weights), ref_weights, atol=1e-12)


def test_shared_spherical_hard_limit_is_kmeans_with_estimated_variance():
    km = KMeans(3, init=M0, n_init=1, algorithm="lloyd", tol=0.0, max_iter=MAX_ITER).fit(X)
    hard = gl.fit(
        gv.shared_spherical,
        X,
        gv.SharedSphericalParams(M0, 1.0, W3, np.inf, REG),
        max_iter=MAX_ITER,
        tol=0.0,
    )
    assert bool(hard.converged) and int(hard.n_iter) == km.n_iter_
    np.testing.assert_array_equal(np.asarray(hard.labels), km.labels_)
    np.testing.assert_allclose(np.asarray(hard.means), km.cluster_centers_, rtol=0, atol=1e-12)
    # sigma2 of the final M-step: the K-means inertia per coordinate, plus the floor
    j = km.inertia_
    sigma2 = j / X.size + REG
    np.testing.assert_allclose(float(hard.params.sigma2), sigma2, rtol=1e-10)
    # the hard objective: sum_n -ln N(x_n; mu_label, sigma2 I) at the returned parameters
    expected = 0.5 * X.size * np.log(2 * np.pi * sigma2) + j / (2 * sigma2)
    np.testing.assert_allclose(float(hard.distortion), expected, rtol=1e-10)
    assert float(hard.objective) == -float(hard.distortion)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda m: gv.SphericalParams(m, [1.0, -1.0, 1.0], [1, 1, 1], 1.0, REG), "variances"),
        (lambda m: gv.SphericalParams(m, [1.0, 1.0, 1.0], [1, 1, 1], 0.0, REG), "beta"),
        (lambda m: gv.SphericalParams(m, [1.0, 1.0, 1.0], [1, 1, 1], np.nan, REG), "beta"),
        (lambda m: gv.SphericalParams(m, [1.0, 1.0, 1.0], [1, -1, 1], 1.0, REG), "weights"),
        (lambda m: gv.SphericalParams(m, [1.0, 1.0, 1.0], [1, 1], 1.0, REG), "weights"),
        (lambda m: gv.SphericalParams(m, [1.0, 1.0, 1.0], [1, 1, 1], 1.0, 0.0), "reg_covar"),
        (lambda m: gv.FullParams(m, -np.stack([np.eye(D)] * 3), [1, 1, 1], 1.0, REG), "definite"),
        (lambda m: gv.DiagParams(m, np.ones((3, 2)), [1, 1, 1], 1.0, REG), "variances"),
        (lambda m: gv.IsotropicParams(m, 1.0), "SphericalParams"),
    ],
)
def test_gaussian_variants_reject_bad_parameters(make, message):
    variant = {"FullParams": gv.full, "DiagParams": gv.diag}.get(
        type(make(X[:3])).__name__, gv.spherical
    )
    with pytest.raises(ValueError, match=message):
        gl.fit(variant, X, make(X[:3]))


@pytest.mark.parametrize("kind", ["full", "tied"])
@pytest.mark.parametrize("d", [PER_COMPONENT_MIN_FEATURES - 1, PER_COMPONENT_MIN_FEATURES])
def test_full_and_tied_reproduce_sklearn_batched_and_per_component(kind, d):
    # Below PER_COMPONENT_MIN_FEATURES the E-step and moments batch the components, from it on
    # they loop over them (lax.map); both are scikit-learn's iterates, step for step.
    Xw = correlated(seed=3, d=d)
    m0 = Xw[np.random.default_rng(4).choice(Xw.shape[0], 3, replace=False)]
    eye = np.eye(d)
    n_iter = 6
    ref = _sklearn_em(kind, Xw, m0, np.stack([eye] * 3) if kind == "full" else eye, n_iter)
    params = (
        gv.FullParams(m0, np.stack([eye] * 3), W3, 1.0, REG)
        if kind == "full"
        else gv.TiedParams(m0, eye, W3, 1.0, REG)
    )
    ours = gl.fit(getattr(gv, kind), Xw, params, max_iter=n_iter, tol=0.0)
    cov = ours.params.covariances if kind == "full" else ours.params.covariance
    assert int(ours.n_iter) == ref.n_iter_ == n_iter
    np.testing.assert_allclose(np.asarray(ours.means), ref.means_, rtol=0, atol=1e-11)
    np.testing.assert_allclose(np.asarray(cov), ref.covariances_, rtol=0, atol=1e-11)
    np.testing.assert_allclose(np.asarray(ours.params.weights), ref.weights_, rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        np.asarray(ours.history) / Xw.shape[0], ref.lower_bounds_, rtol=1e-12
    )
    np.testing.assert_allclose(float(ours.objective) / Xw.shape[0], ref.score(Xw), rtol=1e-12)
    np.testing.assert_array_equal(np.asarray(ours.labels), ref.predict(Xw))
    # the responsibilities are not all one-hot: the components overlap
    assert float(np.min(np.max(ref.predict_proba(Xw), axis=1))) < 1 - 1e-6
