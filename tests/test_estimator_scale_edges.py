"""The scikit-learn estimators at the edges of their dtypes' range (an audit's findings).

Each test names what it failed on before its fix. The data are small (two blobs of 100 rows), so
that the few fits share the compiled programs of the padded (256, 8) shape.
"""

import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from trace_count import traces

import gmmlimit.sklearn._common as common
from gmmlimit.sklearn import GaussianMixture, IsotropicGaussianMixture, KMeans

DOCS = Path(__file__).resolve().parent.parent / "docs" / "sklearn.md"


def _two_blobs(dtype: type) -> np.ndarray:
    """(200, 2) rows: blobs of 100 around 0 and around 6."""
    rng = np.random.default_rng(0)
    return np.concatenate([rng.normal(0, 1, (100, 2)), rng.normal(6, 1, (100, 2))]).astype(dtype)


@pytest.mark.parametrize(("dtype", "exponent"), [(np.float32, 122), (np.float64, 1015)])
@pytest.mark.parametrize("given_init", [False, True])
def test_kmeans_fits_data_near_the_dtypes_largest_number_as_at_unit_scale(
    dtype, exponent, given_init
):
    # X * 2^e, its largest entry near float32's 4.8e37 (float64's 4.4e306): X.mean overflowed
    # before the data were rescaled (NaN cluster_centers_ and inertia_); the fit now runs on
    # X / 2^e, so labels are those at unit scale and the centres those at unit scale times 2^e
    X = _two_blobs(dtype)
    far = np.ldexp(X, exponent).astype(dtype)
    assert np.all(np.isfinite(far))
    unit_init = X[[0, -1]] if given_init else "k-means++"
    far_init = far[[0, -1]] if given_init else "k-means++"
    unit = KMeans(2, init=unit_init, n_init=1, random_state=0).fit(X)
    model = KMeans(2, init=far_init, n_init=1, random_state=0).fit(far)
    assert model.cluster_centers_.dtype == dtype
    assert np.all(np.isfinite(model.cluster_centers_))
    np.testing.assert_array_equal(model.labels_, unit.labels_)
    np.testing.assert_allclose(
        np.ldexp(model.cluster_centers_, -exponent), unit.cluster_centers_, rtol=1e-6
    )
    np.testing.assert_array_equal(model.predict(far), unit.labels_)
    # the inertia near 4^e times the unit one: 1e76 (a float64 number) from float32 data;
    # past float64's range (inf) from float64 data near 1e306
    with np.errstate(over="ignore"):
        expected = np.ldexp(np.float64(unit.inertia_), 2 * exponent)
    assert not np.isnan(model.inertia_)
    np.testing.assert_allclose(model.inertia_, expected, rtol=1e-5)


@pytest.mark.parametrize(("dtype", "far_value"), [(np.float32, 1e30), (np.float64, 1e200)])
@pytest.mark.parametrize("sparse", [False, True])
def test_kmeans_predicts_and_transforms_each_row_independently_of_the_batch(
    dtype, far_value, sparse
):
    # one far row set the scale of the whole batch: the row (-1e6, 3), divided with the centres by
    # 2^665 (float64), lost its distances (transform gave [0, 0]) and its label (0, not 1)
    X = _two_blobs(dtype)
    model = KMeans(2, random_state=0).fit(X)
    row = np.array([[-1e6, 3.0]], dtype)
    batch = np.vstack([row, [[far_value, far_value]]]).astype(dtype)
    as_input = sp.csr_matrix if sparse else np.asarray
    alone_labels = model.predict(as_input(row))
    alone_distances = model.transform(as_input(row))
    np.testing.assert_array_equal(model.predict(as_input(batch))[:1], alone_labels)
    np.testing.assert_array_equal(model.transform(as_input(batch))[:1], alone_distances)
    # and the answers alone are right: computed in float64 from the differences
    exact = np.sqrt(np.sum((row[:, None, :] - model.cluster_centers_[None]) ** 2, axis=-1))
    np.testing.assert_array_equal(alone_labels, np.argmin(exact, axis=1))
    np.testing.assert_allclose(alone_distances, exact, rtol=1e-5)
    far_distances = model.transform(as_input(batch))[1]
    assert np.all(np.isfinite(far_distances)) and np.all(far_distances > 0.5 * far_value)


def test_isotropic_mixture_scores_rows_past_float64_as_minus_inf_not_nan():
    # rows near 1e160: their squared distances overflow float64 too; the float64 fallback of
    # score subtracted -inf - (-inf) (NaN, where score_samples gave -inf)
    X = _two_blobs(np.float64)
    model = IsotropicGaussianMixture(2, random_state=0).fit(X)
    far = np.array([[1e160, 1e160]])
    with np.errstate(invalid="raise"):
        assert model.score(far) == -math.inf
        assert model.score(np.vstack([X[:3], far])) == -math.inf
    np.testing.assert_array_equal(model.score_samples(far), [-math.inf])


def test_isotropic_mixture_score_samples_are_finite_where_float32_holds_them():
    # a float32 row near 1e19 from every mean: log density near -1e38, a float32 number; its
    # scaled computation (sigma2 / 4^64, below float32's smallest normal number) gave -inf in
    # score_samples while score gave -1e38
    X = _two_blobs(np.float32)
    model = IsotropicGaussianMixture(2, random_state=0).fit(X)
    wide = IsotropicGaussianMixture(2, random_state=0).fit(X.astype(np.float64))
    query = np.array([[1e19, 1e19], [1e30, 1e30]], np.float32)
    values = model.score_samples(query)
    assert values.dtype == np.float32
    expected = wide.score_samples(query.astype(np.float64))  # near -1e38 and -1e60
    np.testing.assert_allclose(values[0], expected[0], rtol=1e-6)
    assert values[1] == -math.inf  # -1e60: past float32, as before
    assert model.score(query[:1]) == pytest.approx(float(values[0]), rel=1e-6)
    # the rows within the window keep their values, computed as given
    np.testing.assert_array_equal(
        model.score_samples(np.vstack([X[:3], query]))[:3], model.score_samples(X[:3])
    )


def test_isotropic_mixture_refuses_a_callable_init_by_name(monkeypatch):
    # KMeans takes a callable init; this estimator does not, and said so with float()'s
    # TypeError ("float() argument must be ... not 'function'")
    def compiled_fit(*args, **kwargs):
        raise AssertionError("the compiled fit ran")

    monkeypatch.setattr(common, "_fit_small", compiled_fit)
    monkeypatch.setattr(common, "_fit_large", compiled_fit)
    X = _two_blobs(np.float64)
    with pytest.raises(
        ValueError, match=r"init must be 'k-means\+\+', 'random' or a \(K, D\) array.*callable"
    ):
        IsotropicGaussianMixture(2, init=lambda X, k, random_state: X[:k]).fit(X)
    with pytest.raises(ValueError, match=r"init must be 'k-means\+\+', 'random' or a \(K, D\)"):
        IsotropicGaussianMixture(2, init=object()).fit(X)


def test_isotropic_mixture_accepts_numpy_scalar_tolerances():
    # tol=np.int64(0) was refused where tol=0 and KMeans(tol=np.int64(0)) were accepted
    X = _two_blobs(np.float64)
    plain = IsotropicGaussianMixture(2, tol=0, random_state=0).fit(X)
    for tol in (np.int64(0), np.float32(0.0)):
        model = IsotropicGaussianMixture(2, tol=tol, random_state=0).fit(X)
        np.testing.assert_array_equal(model.means_, plain.means_)
    KMeans(2, tol=np.int64(0), random_state=0).fit(X)
    for tol in (np.int64(-1), np.float64(np.nan), True):
        with pytest.raises(ValueError, match="tol must be a"):
            IsotropicGaussianMixture(2, tol=tol).fit(X)


def test_docs_say_the_tempered_score_is_not_comparable_across_beta():
    # GaussianMixture(beta=b).score is the tempered objective, which grows with beta: a grid
    # search over beta picks the largest, and the docs now say so
    X = _two_blobs(np.float64)
    means = X[[0, -1]]
    scores = [
        GaussianMixture(2, beta=beta, means_init=means, covariance_type="spherical").fit(X).score(X)
        for beta in (0.5, 1.0, 4.0)
    ]
    assert scores == sorted(scores)
    text = " ".join(DOCS.read_text().split())
    assert "not comparable across `beta` values" in text
    assert "`GridSearchCV` over `beta`" in text


@pytest.mark.parametrize(
    ("dtype", "origin", "spread"),
    [(np.float32, (37.7, -122.4), 0.01), (np.float64, (1e9, -1e9), 1.0)],
)
def test_kmeans_predicts_and_scores_far_rows_less_the_fits_offset(dtype, origin, spread):
    # predict and score translated each batch by its own offset (gmmlimit._offset): a batch of
    # the training rows (float32 GPS coordinates near (37.7, -122.4), float64 rows near 1e9)
    # and as many rows at (0, 0) got none, the expanded squares cancelled, 70 % (float32) and
    # 72 % (float64) of those training rows changed label and their score was 6x too low; they
    # are now computed less the fit's offset, as IsotropicGaussianMixture computes them
    rng = np.random.default_rng(0)
    X = (np.asarray(origin) + rng.uniform(0, spread, (200, 2))).astype(dtype)
    model = KMeans(4, n_init=1, random_state=0).fit(X)
    centres = model.cluster_centers_.astype(np.float64)
    sq = np.sum((X.astype(np.float64)[:, None, :] - centres[None]) ** 2, axis=-1)
    np.testing.assert_array_equal(model.labels_, np.argmin(sq, axis=1))
    # half the batch at the origin: no feature has a majority near an extreme, no batch offset
    batch = np.vstack([X[:100], np.zeros((100, 2), dtype)])
    labels = model.predict(batch)
    np.testing.assert_array_equal(labels[:100], model.labels_[:100])
    np.testing.assert_array_equal(model.predict(batch[-1:]), labels[-1:])
    for i in (0, 57, 199):  # a row alone, as in the training batch
        np.testing.assert_array_equal(model.predict(X[i : i + 1]), model.labels_[i : i + 1])
    weights = np.r_[np.ones(100), np.zeros(100)]
    assert model.score(batch, sample_weight=weights) == model.score(X[:100])
    assert model.score(X) == -model.inertia_
    np.testing.assert_allclose(model.inertia_, np.sum(np.min(sq, axis=1)), rtol=1e-4)
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(restored.predict(batch), model.predict(batch))
    assert not hasattr(clone(model), "_fitted_offset")


def test_kmeans_predicts_rows_whose_translation_overflows_as_given():
    # float32 rows near -1e38 fit less an offset near -1e38: a row near 3e38 less it overflows
    # (4e38), so it is computed as given (each row at its own scale), not as inf
    rng = np.random.default_rng(0)
    X = (-1e38 * (1 + rng.uniform(0, 0.01, (200, 2)))).astype(np.float32)
    model = KMeans(2, n_init=1, random_state=0).fit(X)
    query = np.vstack([[[3e38, 3e38]], X[:2]]).astype(np.float32)
    labels = model.predict(query)
    np.testing.assert_array_equal(labels[1:], model.labels_[:2])
    np.testing.assert_array_equal(model.predict(query[:1]), labels[:1])
    centres = model.cluster_centers_.astype(np.float64)
    expected = np.min(np.sum((query[0].astype(np.float64) - centres) ** 2, axis=-1))
    np.testing.assert_allclose(-model.score(query[:1]), expected, rtol=1e-5)


def test_isotropic_mixture_rows_past_the_window_compile_once_per_bucket():
    # the rows of each scale were computed at their own count: every batch holding a new number
    # of rows off the window compiled its programs again (1.1 to 1.8 s a call); each group is now
    # padded to its power-of-two bucket, and a row's answers are those it has alone
    X = _two_blobs(np.float64)
    model = IsotropicGaussianMixture(2, random_state=0).fit(X)
    far = np.array([[1e200, 1e200], [-1e200, 3e199], [2e200, -1e200]])
    first = model.predict_proba(np.vstack([X[:3], far[:2]]))
    with traces() as traced:
        batch = np.vstack([X[:5], far])
        proba, labels = model.predict_proba(batch), model.predict(batch)
        scores = model.score_samples(batch)
    assert traced == []
    np.testing.assert_array_equal(proba[:3], first[:3])
    np.testing.assert_array_equal(proba[5:7], first[3:])
    for row in range(batch.shape[0]):
        alone = batch[row : row + 1]
        np.testing.assert_array_equal(proba[row], model.predict_proba(alone)[0])
        np.testing.assert_array_equal(scores[row], model.score_samples(alone)[0])
    np.testing.assert_array_equal(labels, np.argmax(proba, axis=1))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
