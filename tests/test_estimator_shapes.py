"""Small data share padded power-of-two shapes in the estimators; larger data keep their own.

Both ways give the same fit: the unpadded path is forced on small data (``PAD_MAX_VALUES`` set to
0) and compared with the padded one, and one fit of data past the threshold is compared with the
same data forced through the padding.
"""

import numpy as np
import pytest

from gmmlimit import _host
from gmmlimit.sklearn import GaussianMixture, IsotropicGaussianMixture, KMeans, _common


def _blobs(n, d, k=3, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=5.0, size=(k, d))
    return (centres[rng.integers(k, size=n)] + rng.normal(size=(n, d))).astype(dtype)


def test_small_data_are_padded_and_larger_data_kept_as_they_are():
    small = _blobs(300, 3)
    Xp, wp = _common._pad(small)
    assert Xp.shape == (512, 8) and wp.shape == (512,)
    np.testing.assert_array_equal(Xp[:300, :3], small)
    assert np.all(wp[300:] == 0) and np.all(Xp[:300, 3:] == 0)
    # (300000, 3) would pad to (524288, 8): past the threshold, kept with its own shape, no copy.
    large = np.zeros((300000, 3), np.float32)
    assert not _common.padded(*large.shape) and _common.padded(131072, 8)
    w = np.full(300000, 2.0, np.float32)
    Xl, wl = _common._pad(large, w)
    assert Xl is large and wl.shape == (300000,) and np.all(wl == 2.0)
    assert np.all(_common._pad(large)[1] == 1.0)


# 4100 rows: two blocks of 4096, the last one not full, when not padded; D = 3 padded to 8.
_N, _D = 4100, 3


def _fits(make, X, monkeypatch, sample_weight=None):
    """The same fit padded (the default for these data) and at the data's own shape."""
    assert _common.padded(*X.shape)
    fit = make()
    fit.fit(X, sample_weight=sample_weight) if sample_weight is not None else fit.fit(X)
    monkeypatch.setattr(_common, "PAD_MAX_VALUES", 0)
    assert not _common.padded(*X.shape)
    assert _common._pad(X)[0] is X
    own = make()
    own.fit(X, sample_weight=sample_weight) if sample_weight is not None else own.fit(X)
    return fit, own


@pytest.mark.parametrize("algorithm", ["lloyd", "elkan"])
def test_kmeans_at_its_own_shape_equals_the_padded_fit(monkeypatch, algorithm):
    X = _blobs(_N, _D)
    w = np.random.default_rng(1).uniform(0.5, 2.0, _N)
    start = X[[0, 1, 2, 3]]

    def make():
        return KMeans(4, init=start, n_init=1, tol=0.0, max_iter=30, algorithm=algorithm)

    padded, own = _fits(make, X, monkeypatch, sample_weight=w)
    np.testing.assert_array_equal(own.labels_, padded.labels_)
    assert own.n_iter_ == padded.n_iter_ > 1
    np.testing.assert_allclose(own.cluster_centers_, padded.cluster_centers_, rtol=1e-12)
    np.testing.assert_allclose(own.inertia_, padded.inertia_, rtol=1e-12)
    # The inertia is the weighted objective at the fitted centres, as score() and numpy say.
    d2 = ((X[:, None, :] - own.cluster_centers_[None]) ** 2).sum(-1)
    np.testing.assert_allclose(own.inertia_, np.dot(w, d2.min(1)), rtol=1e-12)
    np.testing.assert_allclose(own.score(X, sample_weight=w), -own.inertia_, rtol=1e-12)
    np.testing.assert_array_equal(own.predict(X), padded.predict(X))


def test_isotropic_mixture_at_its_own_shape_equals_the_padded_fit(monkeypatch):
    X = _blobs(_N, _D)

    def make():
        return IsotropicGaussianMixture(3, sigma2=0.5, max_iter=20, tol=0.0, random_state=0)

    padded, own = _fits(make, X, monkeypatch)
    assert own.n_iter_ == padded.n_iter_
    np.testing.assert_allclose(own.means_, padded.means_, rtol=1e-10)
    np.testing.assert_allclose(own.predict_proba(X), padded.predict_proba(X), atol=1e-10)
    np.testing.assert_allclose(own.score(X), padded.score(X), rtol=1e-10)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # tol = 0
def test_gaussian_mixture_at_its_own_shape_equals_the_padded_fit(monkeypatch):
    X = _blobs(_N, _D)

    def make():
        return GaussianMixture(3, max_iter=20, tol=0.0, random_state=0)

    padded, own = _fits(make, X, monkeypatch)
    assert own.n_iter_ == padded.n_iter_
    np.testing.assert_allclose(own.means_, padded.means_, rtol=1e-10)
    np.testing.assert_allclose(own.covariances_, padded.covariances_, rtol=1e-9)
    np.testing.assert_array_equal(own.predict(X), padded.predict(X))
    np.testing.assert_allclose(own.score_samples(X), padded.score_samples(X), rtol=1e-10)


# the two fits sum in different orders; on XLA:CPU within rtol 1e-6 (float32), on an H200 2.3e-6
@pytest.mark.cpu_bits
def test_kmeans_past_the_threshold_equals_the_fit_forced_through_padding(monkeypatch):
    # (262151, 4) float32 would pad to (524288, 8): kept as it is; the last block not full.
    X = _blobs(262151, 4, dtype=np.float32)
    assert not _common.padded(*X.shape)
    start = X[[0, 1, 2]]

    def make():
        return KMeans(3, init=start, n_init=1, tol=0.0, max_iter=12)

    own = make().fit(X)
    monkeypatch.setattr(_common, "PAD_MAX_VALUES", 1 << 30)
    padded = make().fit(X)
    np.testing.assert_array_equal(own.labels_, padded.labels_)
    assert own.n_iter_ == padded.n_iter_
    np.testing.assert_allclose(own.cluster_centers_, padded.cluster_centers_, rtol=1e-6)
    np.testing.assert_allclose(own.inertia_, padded.inertia_, rtol=1e-5)


def test_padding_rows_are_never_relocated_into_empty_clusters():
    # Row 0 is the farthest from its centre and the padding rows are its copies: two empty
    # clusters must take row 0 and the next farthest real row, as scikit-learn's do.
    from sklearn.cluster import KMeans as SkKMeans

    # (4100, 3) rows padded to (8192, 8), K = 4, tol = 0, max_iter = 1 (history bucket 32, as 30's):
    # the compiled fit of test_kmeans_at_its_own_shape_equals_the_padded_fit[lloyd], padded
    X = _blobs(_N, _D)
    X[0] = 60.0
    X[1] = -40.0
    start = np.array([X[2], X[3], [1e3, 1e3, 1e3], [-1e3, -1e3, -1e3]])
    assert _common._pad(X)[0].shape == (8192, 8)
    ours = KMeans(4, init=start, n_init=1, tol=0.0, max_iter=1).fit(X)
    theirs = SkKMeans(4, init=start, n_init=1, tol=0.0, max_iter=1, algorithm="lloyd").fit(X)
    np.testing.assert_allclose(ours.cluster_centers_, theirs.cluster_centers_, rtol=1e-12)
    assert {tuple(c) for c in ours.cluster_centers_[2:]} == {tuple(X[0]), tuple(X[1])}


@pytest.mark.parametrize(
    ("shape", "dtype"), [((1000, 3), np.float32), ((7, 5), np.float64), ((0, 4), np.float32)]
)
def test_aligned_host_arrays_reach_jax_without_a_copy(shape, dtype):
    # The estimators' centred copies are 64-byte aligned so that jax.device_put aliases them
    # (jnp.asarray would copy every fit's rows once more).
    a = _host.aligned_empty(shape, dtype)
    assert a.shape == shape and a.dtype == dtype and a.flags.c_contiguous
    assert a.ctypes.data % 64 == 0 or a.size == 0  # an empty array has no address to align
    a[...] = np.arange(a.size, dtype=dtype).reshape(shape)
    j = _host.to_jax(a)
    assert j.dtype == dtype and j.shape == shape
    np.testing.assert_array_equal(np.asarray(j), a)
    if a.size and j.devices().pop().platform == "cpu":
        assert j.unsafe_buffer_pointer() == a.ctypes.data
    # an array JAX cannot alias (NumPy's 16-byte alignment, offset by one row) is copied intact
    b = np.arange(4 * 8 + 2, dtype=np.float32)[2:].reshape(4, 8)
    np.testing.assert_array_equal(np.asarray(_host.to_jax(b)), b)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_every_estimator_predicts_and_scores_fewer_rows_than_components(covariance_type):
    # K <= N is a condition of fitting, not of inference: GaussianMixture checked its parameters
    # against the rows to predict ("k=3 exceeds the number of samples N=1"), where scikit-learn's
    # predicts one row
    from sklearn.mixture import GaussianMixture as SKGaussianMixture

    import gmmlimit.variants as gv
    from gmmlimit.sklearn import VariantMixture

    X = _blobs(40, 3)
    ours = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X)
    theirs = SKGaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X)
    np.testing.assert_array_equal(ours.predict(X[:1]), theirs.predict(X[:1]))
    np.testing.assert_allclose(ours.score_samples(X[:2]), theirs.score_samples(X[:2]), rtol=1e-9)
    np.testing.assert_allclose(ours.bic(X[:1]), theirs.bic(X[:1]), rtol=1e-9)
    others = [
        KMeans(3, n_init=1, random_state=0),
        IsotropicGaussianMixture(3, sigma2=1.0, n_init=1, random_state=0),
        VariantMixture(gv.spherical, 3, random_state=0),
    ]
    for model in [ours, *others] if covariance_type == "full" else [ours]:
        model.fit(X)
        np.testing.assert_array_equal(model.predict(X[:1]), model.predict(X)[:1])
        assert np.isfinite(model.score(X[:1]))
        if hasattr(model, "predict_proba"):
            np.testing.assert_allclose(
                model.predict_proba(X[:2]), model.predict_proba(X)[:2], rtol=1e-12, atol=1e-300
            )


# The scikit-learn estimator checks VariantMixture failed (its input validation), run one by one
# (the whole check_estimator takes about 35 s on one core); each fits at most a few small shapes.
_VARIANT_CHECKS = [
    "check_n_features_in_after_fitting",
    "check_complex_data",
    "check_dtype_object",
    "check_estimators_empty_data_messages",
    "check_estimator_sparse_tag",
    "check_estimator_sparse_array",
    "check_estimator_sparse_matrix",
    "check_fit2d_predict1d",
]


@pytest.mark.parametrize("name", ["diag"])  # the checks read the estimator, not the model
def test_variant_mixture_passes_the_sklearn_checks_it_failed(name):
    import scipy.sparse as sp
    from sklearn.utils import estimator_checks

    import gmmlimit.variants as gv
    from gmmlimit.sklearn import VariantMixture

    estimator = VariantMixture(getattr(gv, name), n_components=2, max_iter=10, random_state=0)
    failed = {}
    for check in _VARIANT_CHECKS:
        try:
            getattr(estimator_checks, check)("VariantMixture", estimator)
        except Exception as error:  # every failure, reported together
            failed[check] = f"{type(error).__name__}: {error}"[:200]
    assert not failed, "\n".join(f"{check}: {why}" for check, why in failed.items())
    # the one check declared as an expected failure, the scikit-learn way (>= 1.6): for
    # check_estimator's and parametrize_with_checks's expected_failed_checks
    from gmmlimit._variant_estimator import EXPECTED_FAILED_CHECKS

    assert set(EXPECTED_FAILED_CHECKS) == {"check_sample_weight_equivalence_on_dense_data"}
    # the project's own behaviours stay: dtypes kept, integers as float64, its own messages
    X = _blobs(40, 3, dtype=np.float32)
    fitted = VariantMixture(getattr(gv, name), 2, max_iter=10, random_state=0).fit(X)
    assert fitted.predict_proba(X).dtype == np.float32 and fitted.n_features_in_ == 3
    assert fitted.predict_proba(X.astype(np.int64)).dtype == np.float64
    bad = X.astype(np.float64)
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="1 NaN or inf value"):
        VariantMixture(getattr(gv, name), 2).fit(bad)
    with pytest.raises(ValueError, match="1 NaN or inf value"):
        fitted.predict(bad)
    with pytest.raises(TypeError, match="dense data is required"):
        fitted.predict(sp.csr_array(X))
    with pytest.raises(ValueError, match="expecting 3 features"):
        fitted.score(X[:, :2])
