"""The scikit-learn estimators pass scikit-learn's estimator checks and agree with the library."""

import math
import os
import re
import subprocess
import sys
from fractions import Fraction
from pathlib import Path
from unittest import mock

import jax
import numpy as np
import pytest
import scipy.sparse as sp
import sklearn
from sklearn.cluster import KMeans as SkKMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SkGaussianMixture
from sklearn.model_selection import GridSearchCV
from sklearn.utils.estimator_checks import parametrize_with_checks

import gmmlimit as gl
import gmmlimit.variants as gv
from gmmlimit.sklearn import GaussianMixture, IsotropicGaussianMixture, KMeans

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
        GaussianMixture(n_components=2, max_iter=10, random_state=0),
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


# the same key twice: the same bits on XLA:CPU; on a GPU (atomic scatter-add sums) two runs of one
# program differed by 1e-15
@pytest.mark.cpu_bits
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


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_isotropic_predict_is_the_nearest_mean_and_the_most_responsible_one(dtype):
    # predict labels by the fit's hard E-step (one pass over blocks of rows) and predict_proba
    # takes its labels from the same pass: both name the nearest mean, ties to the lowest index
    # (rows exactly midway between the two means), over more rows than one block.
    rng = np.random.default_rng(4)
    X = np.concatenate([rng.normal(scale=2.0, size=(5000, 2)), [[0.5, 0.0], [0.5, 3.0]]])
    X = X.astype(dtype)
    gm = IsotropicGaussianMixture(2, sigma2=0.5, max_iter=2, random_state=0).fit(X)
    gm.means_ = np.array([[0.0, 0.0], [1.0, 0.0]], dtype)
    labels = gm.predict(X)
    far = ((X.astype(np.float64)[:, None, :] - gm.means_[None]) ** 2).sum(axis=2)
    nearest = np.argmin(far, axis=1)  # argmin takes the lowest index at a tie
    clear = np.abs(far[:, 0] - far[:, 1]) > 1e-4
    np.testing.assert_array_equal(labels[clear], nearest[clear])
    np.testing.assert_array_equal(labels[-2:], [0, 0])
    proba = gm.predict_proba(X)
    np.testing.assert_array_equal(np.argmax(proba, axis=1), labels)
    np.testing.assert_allclose(proba[-2:], 0.5, rtol=1e-6)


def test_estimator_errors():
    X = _blobs(2, n=20)
    with pytest.raises(ValueError, match="sigma2"):
        IsotropicGaussianMixture(2, sigma2=0.0).fit(X)
    for sigma2, dtype in ((1e-40, np.float32), (5e-324, np.float64), (1e39, np.float32)):
        with pytest.raises(ValueError, match=r"sigma2=.* (underflows|overflows)"):
            IsotropicGaussianMixture(2, sigma2=sigma2).fit(X.astype(dtype))  # NaN scores before
    with pytest.raises(ValueError, match="Negative values in data passed to `sample_weight`"):
        IsotropicGaussianMixture(2, sigma2=0.5).fit(X, sample_weight=-np.ones(len(X)))
    with pytest.raises(ValueError, match="n_samples=20"):
        KMeans(30).fit(X)
    with pytest.raises(ValueError, match="init"):
        KMeans(2, init="nope").fit(X)


# --------------------------------------------------------------------------- drop-in behaviour


def _x64_off():
    """Context: JAX's global x64 flag off (its default), restored afterwards."""
    import contextlib

    @contextlib.contextmanager
    def ctx():
        before = jax.config.jax_enable_x64
        jax.config.update("jax_enable_x64", False)
        try:
            yield
        finally:
            jax.config.update("jax_enable_x64", before)

    return ctx()


def test_kmeans_float64_with_x64_off_matches_sklearn_and_leaves_the_flag():
    X = _blobs(4) + 1e4  # far from the origin: float32 arithmetic would show
    with _x64_off():
        km = KMeans(2, random_state=0, max_iter=10).fit(X)
        assert jax.config.jax_enable_x64 is False
    sk = SkKMeans(2, init=km.cluster_centers_, n_init=1, max_iter=1).fit(X)
    assert km.cluster_centers_.dtype == np.float64
    np.testing.assert_allclose(km.cluster_centers_, sk.cluster_centers_, rtol=1e-13)
    np.testing.assert_allclose(km.inertia_, sk.inertia_, rtol=1e-12)


def test_kmeans_seeds_do_not_depend_on_dtype_or_sparsity():
    X = _blobs(5, d=3, k=2)
    X[X < 0] = 0.0
    fits = [
        KMeans(2, n_init=3, init=init, max_iter=10, random_state=7).fit(data)
        for init in ("k-means++", "random")
        for data in (X, X.astype(np.float32), sp.csr_matrix(X), sp.csc_matrix(X))
    ]
    for group in (fits[:4], fits[4:]):
        for other in group[1:]:
            np.testing.assert_array_equal(other.labels_, group[0].labels_)
            np.testing.assert_allclose(
                other.cluster_centers_, group[0].cluster_centers_, rtol=1e-5, atol=1e-5
            )
    assert fits[2].cluster_centers_.dtype == np.float64
    assert fits[1].cluster_centers_.dtype == np.float32


def test_kmeans_sparse_equals_dense_and_keeps_the_matrix_sparse():
    X = _blobs(6)
    X[X < 1] = 0.0
    w = np.random.default_rng(0).uniform(0.5, 2.0, len(X))
    start = X[[0, 1]]
    dense = KMeans(2, init=start, max_iter=10, tol=0.0).fit(X, sample_weight=w)
    Xs = sp.csr_matrix(X)

    densified = []  # the shapes of the sparse matrices made dense (rows, (K, D) sums: fine)
    toarray = sp.csr_matrix.toarray

    def recorded(matrix, *args, **kwargs):
        densified.append(matrix.shape)
        return toarray(matrix, *args, **kwargs)

    with mock.patch.object(sp.csr_matrix, "toarray", recorded):  # todense calls it too
        sparse = KMeans(2, init=start, max_iter=10, tol=0.0).fit(Xs, sample_weight=w)
        sparse_labels = sparse.predict(Xs)
    assert densified and max(rows for rows, _ in densified) <= 2, densified
    np.testing.assert_array_equal(sparse_labels, sparse.labels_)
    np.testing.assert_array_equal(sparse.labels_, dense.labels_)
    np.testing.assert_allclose(sparse.cluster_centers_, dense.cluster_centers_, atol=1e-12)
    np.testing.assert_allclose(sparse.inertia_, dense.inertia_, rtol=1e-12)
    assert sparse.n_iter_ == dense.n_iter_
    np.testing.assert_allclose(sparse.transform(Xs), dense.transform(X), rtol=1e-9, atol=1e-9)


def test_kmeans_duplicates_stop_like_sklearn_and_warn():
    X = np.array([[0, 0], [1, 1], [1, 1], [1, 0], [0, 1]], dtype=float)
    with pytest.warns(ConvergenceWarning, match=r"distinct clusters \(4\)"):
        km = KMeans(5, init=X, n_init=1).fit(X)
    assert km.n_iter_ == 1
    with pytest.warns(RuntimeWarning, match="performing only one init"):
        KMeans(5, init=X, n_init=3).fit(
            X[[0, 1, 3, 4, 2]] + [[0, 0], [0, 0], [0, 0], [0, 0], [2, 2]]
        )


def test_isotropic_mixture_warns_as_kmeans_and_gaussian_mixture_do():
    # it was silent: an unconverged fit and an array init with n_init > 1 (run once)
    import warnings

    X = np.random.default_rng(0).normal(size=(60, 2))
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        fit = IsotropicGaussianMixture(3, sigma2=0.5, max_iter=1, random_state=0).fit(X)
    assert not fit.converged_
    with pytest.warns(RuntimeWarning, match="performing only one init in IsotropicGaussian"):
        IsotropicGaussianMixture(3, sigma2=0.5, init=X[:3], n_init=3).fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a converged fit from one start warns nothing
        assert IsotropicGaussianMixture(3, sigma2=0.5, init=X[:3]).fit(X).converged_


def test_kmeans_feature_names_verbose_and_callable_init(capsys):
    X = _blobs(7)
    seen = []

    def first_rows(X, k, random_state):
        seen.append(np.array(X))
        return X[:k]

    km = KMeans(2, init=first_rows, verbose=1, max_iter=10).fit(X)
    # the callable sees the validated X itself (scikit-learn passes dense data centred)
    np.testing.assert_array_equal(seen[0], X)
    start = KMeans(2, init=X[:2], max_iter=10, n_init=1).fit(X)
    np.testing.assert_array_equal(km.cluster_centers_, start.cluster_centers_)
    out = capsys.readouterr().out
    assert "Initialization complete" in out and re.search(r"Iteration 0, inertia", out)
    assert "Converged at iteration" in out
    np.testing.assert_array_equal(km.get_feature_names_out(), ["kmeans0", "kmeans1"])
    assert km._n_init == 10


@pytest.mark.parametrize("cov", ["spherical", "diag", "full", "tied"])
def test_gaussian_mixture_equals_sklearn_with_x64_off(cov):
    X = _blobs(8)
    with _x64_off():
        ours = GaussianMixture(2, covariance_type=cov, random_state=0, max_iter=10).fit(X)
        assert jax.config.jax_enable_x64 is False
        proba = ours.predict_proba(X)
        score = ours.score_samples(X)
    sk = SkGaussianMixture(2, covariance_type=cov, random_state=0, max_iter=10).fit(X)
    assert ours.n_iter_ == sk.n_iter_ and ours.converged_ == sk.converged_
    np.testing.assert_allclose(ours.means_, sk.means_, rtol=1e-10)
    np.testing.assert_allclose(ours.covariances_, sk.covariances_, rtol=1e-10)
    np.testing.assert_allclose(ours.precisions_, sk.precisions_, rtol=1e-9)
    np.testing.assert_allclose(ours.lower_bounds_, sk.lower_bounds_, rtol=1e-12)
    np.testing.assert_allclose(proba, sk.predict_proba(X), atol=1e-10)
    np.testing.assert_allclose(score, sk.score_samples(X), rtol=1e-12)
    np.testing.assert_allclose(ours.bic(X), sk.bic(X), rtol=1e-12)


@pytest.mark.parametrize(("cov", "verbose"), [("diag", 0), ("spherical", 0), ("diag", 1)])
def test_gaussian_mixture_whose_variance_reaches_zero_mid_fit_raises(cov, verbose):
    # reg_covar = 0 on 4 points repeated 5 times: a variance reaches exactly 0 in the third (diag)
    # or second (spherical) iteration and the bound turns NaN. The fit went on from there to a
    # "converged" fit with three equal components; scikit-learn raises where it factorises such
    # a covariance, and so does ours, in the compiled loop and in the verbose one
    X = np.repeat(np.random.RandomState(0).randn(4, 2), 5, axis=0)
    gm = GaussianMixture(3, covariance_type=cov, reg_covar=0, random_state=0, verbose=verbose)
    with pytest.raises(ValueError, match="ill-defined empirical covariance"):
        gm.fit(X)
    # the same data with scikit-learn's default floor fit as scikit-learn fits them
    ours = gm.set_params(reg_covar=1e-6, verbose=0).fit(X)
    sk = SkGaussianMixture(3, covariance_type=cov, reg_covar=1e-6, random_state=0).fit(X)
    assert ours.n_iter_ == sk.n_iter_  # bounds within rounding amplified by variances of 1e-6
    np.testing.assert_allclose(ours.lower_bounds_, sk.lower_bounds_, rtol=1e-8)


def test_gaussian_mixture_beta_inf_is_the_hard_limit():
    X = _blobs(9)
    gm = GaussianMixture(2, covariance_type="tied", beta=np.inf, random_state=0, max_iter=10)
    labels = gm.fit_predict(X)
    proba = gm.predict_proba(X)
    np.testing.assert_array_equal(proba, np.eye(2)[labels])
    # At beta = inf the lower bound is -mean_n min_k(-ln N_k(x_n)).
    sk = SkGaussianMixture(2, covariance_type="tied").fit(X)
    sk.means_, sk.covariances_, sk.weights_ = gm.means_, gm.covariances_, np.full(2, 0.5)
    sk.precisions_cholesky_ = gm.precisions_cholesky_
    per = sk._estimate_log_prob(X)
    np.testing.assert_allclose(gm.score_samples(X), per.max(axis=1), rtol=1e-12)
    with pytest.raises(ValueError, match="beta"):
        GaussianMixture(2, beta=0.0).fit(X)


# --------------------------------------------------------------------------- upstream tests

_UPSTREAM = Path(__file__).parent / "sklearn_upstream"
_SK = Path(sklearn.__file__).parent


def _run_upstream(target, path, extra=()):
    """Run scikit-learn's own test file against our class; JAX defaults (x64 off), the session's
    compilation cache."""
    keep = ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS")
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_") or k in keep}
    root = Path(__file__).parent.parent
    env["PYTHONPATH"] = os.pathsep.join([str(root), str(_UPSTREAM)])
    cmd = [sys.executable, "-m", "pytest", "-c", str(_UPSTREAM / "pytest.ini")]
    cmd += ["--rootdir", str(_UPSTREAM), "--confcutdir", str(_SK), "-p", "upstream_plugin"]
    cmd += ["--upstream-target", target, "-q", str(path), *extra]
    out = subprocess.run(cmd, env=env, cwd=_UPSTREAM, capture_output=True, text=True, timeout=900)
    counts = dict.fromkeys(("passed", "failed", "skipped", "error"), 0)
    lines = out.stdout.strip().splitlines()
    summary = lines[-1] if lines else ""
    for n, word in re.findall(r"(\d+) (passed|failed|skipped|error)", summary):
        counts[word] = int(n)
    return counts, out.stdout[-3000:] + out.stderr[-3000:]


@pytest.mark.slow
def test_sklearn_test_k_means_passes_against_our_kmeans():
    counts, log = _run_upstream("kmeans", _SK / "cluster" / "tests" / "test_k_means.py")
    kept = counts["passed"] + counts["failed"] + counts["error"]
    assert kept >= 150, log
    assert counts["passed"] >= 0.95 * kept, log


@pytest.mark.slow
def test_sklearn_test_gaussian_mixture_passes_against_ours():
    # A fast subset in the suite (the whole file takes minutes of compilation, see docs).
    pick = (
        "test_check_means or test_score_samples or test_max_iter_zero or "
        "test_gaussian_mixture_predict_predict_proba or "
        "test_gaussian_mixture_fit_convergence_warning or test_fitted_precision_covariance"
    )
    path = _SK / "mixture" / "tests" / "test_gaussian_mixture.py"
    counts, log = _run_upstream("gmm", path, ("-k", pick))
    assert counts["passed"] >= 9 and counts["failed"] == counts["error"] == 0, log


def test_tied_variant_reproduces_sklearn_iterates_from_a_poor_start():
    X = _blobs(10)
    w0, m0, c0 = np.array([0.3, 0.7]), X[[0, 1]] + 1.0, np.eye(3) * 2.0
    for n_iter in (1, 3):
        with pytest.warns(ConvergenceWarning):
            sk = SkGaussianMixture(
                2,
                covariance_type="tied",
                max_iter=n_iter,
                tol=0.0,
                weights_init=w0,
                means_init=m0,
                precisions_init=np.linalg.inv(c0),
            ).fit(X)
        res = gl.fit(gv.tied, X, gv.TiedParams(m0, c0, w0, 1.0, 1e-6), max_iter=n_iter, tol=0.0)
        np.testing.assert_allclose(res.params.means, sk.means_, rtol=1e-12)
        np.testing.assert_allclose(res.params.covariance, sk.covariances_, rtol=1e-12)
        np.testing.assert_allclose(res.params.weights, sk.weights_, rtol=1e-12)


@pytest.mark.parametrize("d", [1, 3, 9])  # the fit pads the columns to 8 or 16
def test_isotropic_lower_bound_is_the_training_mean_log_likelihood(d):
    # the fit runs on zero-padded columns; its normaliser counted them (before: lower_bound_
    # read -12.72 where score gave -3.91 at D = 2)
    rng = np.random.RandomState(0)
    X = np.r_[rng.randn(20, d), rng.randn(20, d) + 5]
    model = IsotropicGaussianMixture(2, sigma2=3.0, tol=0.0, max_iter=500, random_state=0).fit(X)
    assert model.converged_
    assert model.lower_bound_ == pytest.approx(model.score(X), rel=1e-12)
    x32 = IsotropicGaussianMixture(2, random_state=0).fit(X.astype(np.float32))
    assert x32.covariances_.dtype == x32.weights_.dtype == x32.means_.dtype == np.float32


def _exact_mean(values: np.ndarray, weights: np.ndarray) -> float:
    """The weighted mean of finite values in rational arithmetic, rounded once."""
    pairs = zip(values, weights, strict=True)
    total = sum(Fraction(float(v)) * Fraction(float(c)) for v, c in pairs)
    return float(total / sum(Fraction(float(c)) for c in weights))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_isotropic_lower_bound_and_score_at_the_smallest_normal_sigma2_are_finite(dtype):
    # unit rows at sigma2 = the dtype's smallest normal number: each row's log density is
    # finite (about -1e38 in float32, -1e308 in float64) but their sum is not. Before:
    # lower_bound_ was -inf (the fit's float32 objective), and score -inf in float64 (np.mean's
    # sum overflowed)
    rng = np.random.RandomState(2)
    X = (0.5 * np.r_[rng.randn(30, 2), rng.randn(30, 2) + 4]).astype(dtype)
    tiny = float(np.finfo(dtype).tiny)
    for weights in (np.ones(len(X)), np.linspace(0.5, 2.0, len(X))):
        model = IsotropicGaussianMixture(2, sigma2=tiny, random_state=0)
        model.fit(X, sample_weight=weights)
        rows = model.score_samples(X).astype(np.float64)
        assert np.all(np.isfinite(rows)) and rows.min() < -1e37
        assert model.lower_bound_ == pytest.approx(_exact_mean(rows, weights), rel=1e-12)
        assert model.score(X) == pytest.approx(_exact_mean(rows, np.ones(len(X))), rel=1e-12)


@pytest.mark.parametrize(
    ("model", "change"),
    [
        (IsotropicGaussianMixture(2, sigma2=1.0, random_state=0), {"sigma2": 100.0}),
        (GaussianMixture(2, random_state=0), {"beta": np.inf}),
        (gl.sklearn.VariantMixture(gv.spherical, 2, random_state=0), {"variant": gv.diag}),
    ],
    ids=["isotropic-sigma2", "gaussian-beta", "variant"],
)
def test_inference_reads_what_was_fitted_not_a_later_set_params(model, change):
    # scikit-learn's rule: predictions depend on fitted attributes only (before: the new sigma2
    # or beta was read, and a new variant raised an IndexError)
    rng = np.random.RandomState(1)
    X = np.r_[rng.randn(30, 2), rng.randn(30, 2) + 3]
    model.fit(X)
    proba, score = model.predict_proba(X), model.score(X)
    model.set_params(**change)
    np.testing.assert_array_equal(model.predict_proba(X), proba)
    assert model.score(X) == score


@pytest.mark.parametrize("variant", ["spherical", "isotropic", "poisson"])
def test_a_fitted_variant_mixture_pickles(variant):
    # the variants' functions are closures: a module-level variant pickles by reference, and
    # float64 parameters stay float64 with JAX's x64 flag off (before: AttributeError)
    import pickle

    rng = np.random.RandomState(2)
    X = np.abs(np.r_[rng.randn(30, 2), rng.randn(30, 2) + 3])
    fitted = gl.sklearn.VariantMixture(getattr(gv, variant), 2, random_state=0).fit(X)
    with _x64_off():
        again = pickle.loads(pickle.dumps(fitted))
        assert again.variant is again.variant_ is getattr(gv, variant)
        np.testing.assert_array_equal(again.predict_proba(X), fitted.predict_proba(X))
        assert again.score(X) == fitted.score(X)


@pytest.mark.parametrize(
    ("dtype", "exponent"), [(np.float32, 66), (np.float32, -66), (np.float64, -560)]
)
def test_kmeans_estimator_runs_data_past_the_scale_window_rescaled(dtype, exponent):
    # two blobs near 1e20 or 1e-20 (float32), 1e-169 (float64): squared distances overflow or
    # vanish; the fit runs on X / 2^e as gl.kmeans does (before: one cluster, inf transform,
    # where scikit-learn itself splits the blobs at 1e-20)
    rng = np.random.RandomState(0)
    X = np.r_[rng.randn(15, 2), rng.randn(15, 2) + 6].astype(dtype)
    unit = KMeans(2, random_state=0, n_init=3).fit(X)
    Xe = np.ldexp(X, exponent).astype(dtype)
    far = KMeans(2, random_state=0, n_init=3).fit(Xe)
    np.testing.assert_array_equal(far.labels_, unit.labels_)
    assert far.n_iter_ == unit.n_iter_
    np.testing.assert_allclose(np.ldexp(far.cluster_centers_, -exponent), unit.cluster_centers_,
                               rtol=1e-6)  # fmt: skip
    np.testing.assert_array_equal(far.predict(Xe), unit.labels_)
    distances = far.transform(Xe)
    assert np.all(np.isfinite(distances))
    np.testing.assert_allclose(np.ldexp(distances, -exponent), unit.transform(X), rtol=1e-5)
    if exponent > -500:  # float64's inertia near 1e-337 is below its smallest number: 0
        assert math.ldexp(far.inertia_, -2 * exponent) == pytest.approx(unit.inertia_, rel=1e-5)


def test_kmeans_estimator_reads_weights_as_relative():
    # uniform weights near 1e37 in float32: the fit of uniform weights, inertia times 1e37
    # (before: a NaN inertia and one cluster)
    rng = np.random.RandomState(0)
    X = np.r_[rng.randn(15, 2), rng.randn(15, 2) + 6].astype(np.float32)
    unit = KMeans(2, random_state=0, n_init=3).fit(X)
    heavy = KMeans(2, random_state=0, n_init=3).fit(X, sample_weight=np.full(30, 1e37))
    np.testing.assert_array_equal(heavy.labels_, unit.labels_)
    assert heavy.inertia_ == pytest.approx(1e37 * unit.inertia_, rel=1e-5)


@pytest.mark.parametrize(
    ("dtype", "exponent"), [(np.float32, 62), (np.float32, -50), (np.float64, 500)]
)
def test_isotropic_estimator_runs_data_past_the_scale_window_rescaled(dtype, exponent):
    # data and sigma2 scaled by 2^e and 4^e: the same fit, lower_bound_ shifted by -D e ln 2
    # (before: one cluster, a -inf lower bound and NaN responsibilities)
    rng = np.random.RandomState(0)
    X = np.r_[rng.randn(20, 2), rng.randn(20, 2) + 5].astype(dtype)
    unit = IsotropicGaussianMixture(2, sigma2=3.0, random_state=0).fit(X)
    Xe = np.ldexp(X, exponent).astype(dtype)
    sigma2 = float(np.ldexp(3.0, 2 * exponent))
    far = IsotropicGaussianMixture(2, sigma2=sigma2, random_state=0).fit(Xe)
    np.testing.assert_array_equal(far.labels_, unit.labels_)
    assert far.n_iter_ == unit.n_iter_
    np.testing.assert_allclose(np.ldexp(far.means_, -exponent), unit.means_, rtol=1e-6)
    shift = -2 * exponent * math.log(2.0)  # -(D / 2) ln 4^e with D = 2
    assert far.lower_bound_ == pytest.approx(unit.lower_bound_ + shift, rel=1e-6)
    np.testing.assert_allclose(far.score_samples(Xe), unit.score_samples(X) + shift, rtol=1e-5)
    np.testing.assert_allclose(far.predict_proba(Xe), unit.predict_proba(X), atol=1e-6)


def test_isotropic_estimator_scores_a_far_row_without_nan():
    # a query row near 1e20 (float32): its squared norm overflows; it is computed at its own
    # scale and does not change the other rows' answers (before: NaN responsibilities)
    rng = np.random.RandomState(0)
    X = np.r_[rng.randn(20, 2), rng.randn(20, 2) + 5].astype(np.float32)
    model = IsotropicGaussianMixture(2, random_state=0).fit(X)
    query = np.r_[X[:3], [[1e20, 1e20]]].astype(np.float32)
    proba = model.predict_proba(query)
    assert np.all(np.isfinite(proba)) and np.allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(proba[:3], model.predict_proba(X[:3]))
    np.testing.assert_array_equal(model.score_samples(query)[:3], model.score_samples(X[:3]))
    # rows near 1e30 from every mean: their float32 log densities are -inf in score_samples;
    # score, a Python float, counts them in float64 (before: -inf, where KMeans.score stays
    # finite), as the float64 model scores the same rows
    far = X * np.float32(1e30)
    assert np.all(np.isneginf(model.score_samples(far)))
    wide = IsotropicGaussianMixture(2, random_state=0).fit(X.astype(np.float64))
    np.testing.assert_allclose(model.score(far), wide.score(far.astype(np.float64)), rtol=1e-6)
    assert np.isfinite(model.score(far))
    with jax.enable_x64(False):  # float64 rows are scored in float64, as score_samples are
        Xw = X.astype(np.float64) + 1 / 3
        assert wide.score(Xw) == float(np.mean(wide.score_samples(Xw)))


def test_variant_mixture_computes_integer_counts_in_float64():
    # scikit-learn's rule for its estimators (before: float32 with JAX's x64 flag off)
    rng = np.random.RandomState(0)
    counts = rng.poisson(3, (40, 3))
    with _x64_off():
        ints = gl.sklearn.VariantMixture(gv.poisson, 2, random_state=0).fit(counts)
        floats = gl.sklearn.VariantMixture(gv.poisson, 2, random_state=0).fit(counts * 1.0)
        proba = ints.predict_proba(counts)
        assert ints.means_.dtype == proba.dtype == np.float64
        np.testing.assert_array_equal(ints.means_, floats.means_)
        np.testing.assert_array_equal(proba, floats.predict_proba(counts * 1.0))


@pytest.mark.parametrize("cov", ["spherical", "diag", "full", "tied"])
def test_gaussian_mixture_float32_data_near_1e18_initialise_in_range(cov):
    # scikit-learn's float32 initialisation sums squares in float32 and overflowed (the fit then
    # refused "variances must be finite"); the variances, near 1e36, are float32 numbers
    rng = np.random.RandomState(0)
    X = np.r_[rng.randn(30, 2), rng.randn(30, 2) + 5]
    unit = GaussianMixture(2, covariance_type=cov, random_state=0).fit(X.astype(np.float32))
    far = GaussianMixture(2, covariance_type=cov, random_state=0).fit((X * 1e18).astype(np.float32))
    assert far.covariances_.dtype == np.float32 and np.all(np.isfinite(far.covariances_))
    np.testing.assert_array_equal(far.predict((X * 1e18).astype(np.float32)), unit.predict(X))
    with pytest.raises(ValueError, match="past float32's largest number"):  # 1e40: not a float32
        GaussianMixture(2, covariance_type=cov, random_state=0).fit((X * 1e20).astype(np.float32))
    # float64 data whose squares pass float64: refused by name (before, "variances must be
    # finite and > 0." or scipy's "array must not contain infs or NaNs", naming no cause)
    with pytest.raises(ValueError, match="sums of N = 60 of their squares"):
        GaussianMixture(2, covariance_type=cov, random_state=0).fit(X * 1e160)


def _three_blobs(scale: float, dtype) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    label = rng.integers(0, 3, 120)
    X = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])[label] + rng.normal(size=(120, 2))
    return (X * scale).astype(dtype), label


@pytest.mark.parametrize(("scale", "sigma2", "dtype"), [(1e20, 1e38, np.float32),
                                                        (1e160, 1e300, np.float64)])  # fmt: skip
def test_isotropic_mixture_labels_data_past_the_window_as_it_scores_them(scale, sigma2, dtype):
    # labels_ and predict ran the nearest-mean pass as given, where the squared distances
    # overflow: 46 % of float32 labels were right at 1e20, and every float64 label was 0 at 1e160
    X, _ = _three_blobs(scale, dtype)
    g = IsotropicGaussianMixture(3, sigma2=sigma2, random_state=0).fit(X)
    wide = np.asarray(X, np.longdouble) / np.longdouble(scale)
    means = np.asarray(g.means_, np.longdouble) / np.longdouble(scale)
    nearest = np.argmin(((wide[:, None] - means[None]) ** 2).sum(-1), axis=1)
    np.testing.assert_array_equal(g.labels_, nearest)
    np.testing.assert_array_equal(g.predict(X), nearest)
    np.testing.assert_array_equal(np.argmax(g.predict_proba(X), axis=1), nearest)
    assert len(np.unique(nearest)) == 3


def test_isotropic_mixture_lower_bound_of_tiny_float64_data_is_finite():
    # sigma2 / 4^e near 4.5e307 for data near 1e-160: ln(2 pi sigma2') overflowed to inf
    X = np.random.default_rng(0).normal(size=(100, 2)) * 1e-160
    g = IsotropicGaussianMixture(3, sigma2=1.0, random_state=0).fit(X)
    assert np.isfinite(g.lower_bound_)
    np.testing.assert_allclose(g.lower_bound_, g.score(X), rtol=1e-12)


def test_kmeans_refuses_negative_sample_weights():
    # before: the fit ran, with a negative inertia_ and centres off their rows' means
    X = np.array([[0.0], [0.1], [10.0], [10.1], [20.0], [20.2]])
    w = np.array([1.0, 1.0, 1.0, -2.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="Negative values in data passed to `sample_weight`"):
        KMeans(3, random_state=0).fit(X, sample_weight=w)
    fitted = KMeans(3, random_state=0).fit(X)
    with pytest.raises(ValueError, match="Negative values in data passed to `sample_weight`"):
        fitted.score(X, sample_weight=w)


def test_gaussian_mixture_takes_numpy_scalars_for_beta():
    # np.arange grids give np.int64: refused by the [float, int] constraint before
    X, _ = _three_blobs(1.0, np.float64)
    want = GaussianMixture(3, beta=2.0, random_state=0).fit(X).lower_bound_
    for beta in (np.int64(2), np.float32(2.0)):
        got = GaussianMixture(3, beta=beta, random_state=0).fit(X).lower_bound_
        assert got == want
    with pytest.raises(ValueError, match="beta"):
        GaussianMixture(3, beta=np.float64(-1.0)).fit(X)


@pytest.mark.parametrize(("scale", "dtype"), [(2.0**66, np.float32), (2.0**-70, np.float32),
                                              (2.0**500, np.float64)])  # fmt: skip
def test_kmeans_fits_sparse_data_past_the_window_as_dense(scale, dtype):
    # sparse rows ran their expanded distances as given: float32 near 1e19 overflowed (NaN
    # inertia_, two clusters of three), and a dense fit scored sparse rows as NaN
    unit, _ = _three_blobs(1.0, dtype)
    far = (unit * dtype(scale)).astype(dtype)
    at_unit = KMeans(3, random_state=0, n_init=1).fit(sp.csr_matrix(unit))
    km = KMeans(3, random_state=0, n_init=1).fit(sp.csr_matrix(far))
    np.testing.assert_array_equal(km.labels_, at_unit.labels_)
    np.testing.assert_allclose(km.cluster_centers_ / scale, at_unit.cluster_centers_, rtol=1e-5)
    np.testing.assert_allclose(km.inertia_ / scale / scale, at_unit.inertia_, rtol=1e-5)
    dense = KMeans(3, random_state=0, n_init=1).fit(far)
    for model in (km, dense):
        np.testing.assert_array_equal(model.predict(sp.csr_matrix(far)), model.predict(far))
        np.testing.assert_allclose(model.score(sp.csr_matrix(far)), model.score(far), rtol=1e-4)
        distances = model.transform(sp.csr_matrix(far))
        assert np.all(np.isfinite(distances))
        np.testing.assert_allclose(distances, model.transform(far), rtol=1e-3, atol=1e-3 * scale)


def test_isotropic_mixture_labels_rows_far_beyond_a_unit_scale_fit_exactly():
    # rows 2^66 times farther than the means' spread: the gaps between components, computed with
    # |x|^2 added back, rounded to 0 (uniform predict_proba); they now leave it out
    unit, _ = _three_blobs(1.0, np.float32)
    g = IsotropicGaussianMixture(3, sigma2=1.0, random_state=0).fit(unit)
    far = np.ldexp(unit, 66)
    means = g.means_.astype(np.float32)

    def exact_nearest(x):
        squares = [sum((Fraction(float(a)) - Fraction(float(b))) ** 2 for a, b in zip(x, m,
                   strict=True)) for m in means]  # fmt: skip
        return int(np.argmin(squares))

    nearest = np.array([exact_nearest(x) for x in far])
    np.testing.assert_array_equal(g.predict(far), nearest)
    proba = g.predict_proba(far)
    np.testing.assert_array_equal(np.argmax(proba, axis=1), nearest)
    assert np.all(proba.max(axis=1) == 1.0)  # gaps near 2^132 / (2 sigma2): one-hot


def test_isotropic_mixture_scores_rows_with_subnormal_entries_exactly():
    # rows near float32's smallest normal number run at their own scale; jnp.ldexp flushed
    # their subnormal entries to 0 first (a row of 0.58 tiny went to the mean at 0; at sigma2 = 1
    # the responsibilities of such rows are uniform to rounding, so the labels are the test)
    tiny = float(np.finfo(np.float32).tiny)
    g = IsotropicGaussianMixture(2, sigma2=1.0, random_state=0).fit(
        _three_blobs(1.0, np.float32)[0]
    )
    g.means_ = np.array([[0.0, 0.0], [tiny, 0.0]], np.float32)
    Y = np.array([[0.58 * tiny, 0.0], [tiny, 0.0]], np.float32)
    np.testing.assert_array_equal(g.predict(Y), [1, 1])  # the nearest mean, exactly
