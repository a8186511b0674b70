"""The scikit-learn mixtures on rows far from the origin: fit as the same rows translated.

``IsotropicGaussianMixture`` (seeding, E-step and prediction by expanded squares) and
``GaussianMixture`` (scikit-learn's initial covariances: averages of x^2 less squared means)
cancelled on rows far from the origin relative to their spread: at 2^40 (float64) the isotropic
fit ran 300 iterations where the translated rows take 4, and the tied fit collapsed (diag,
spherical and float32 tied raised "ill-defined empirical covariance"). Both now compute such
rows less the exact offset of ``gmmlimit._offset``, as every other path does.

The rows of :func:`band` lie in [1, 2) in each feature, so ``X`` itself is computed less its
smallest value, and ``X + c`` less that value plus ``c``: the same translated rows, bit for
bit. So a fit of ``X + c`` is the fit of ``X`` (labels, iterations, lower bound and covariances
exactly; means moved by ``c`` to within the rounding of a value near ``c``), and the model
of ``X + c`` predicts ``X + c`` exactly as the model of ``X`` given those means moved back by
``c`` predicts ``X``.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from gmmlimit.sklearn import GaussianMixture, IsotropicGaussianMixture

N, K = 600, 3
SHIFT = {np.float32: 1024.0, np.float64: 2.0**40}
"""c per dtype: 2^10 + [1, 2) in float32 and 2^40 + [1, 2) in float64 hold every multiple of
2^-12, so X + c is exact."""

CENTRES = np.array([[1.25, 1.3125], [1.5, 1.6875], [1.75, 1.375]])
"""The clusters' centres (multiples of 2^-12); array inits start at CENTRES + 1/16."""

DTYPES = [np.float32, np.float64]  # tests/conftest.py turns JAX's x64 flag on


def band(dtype: type) -> np.ndarray:
    """(N, 2) rows of three clusters, each value a multiple of 2^-12 within [1, 2)."""
    rng = np.random.default_rng(11)
    rows = CENTRES[rng.integers(0, K, N)] + 0.05 * rng.standard_normal((N, 2))
    rows = np.clip(np.round(rows * 4096) / 4096, 1.0, 2.0 - 2.0**-12)
    return rows.astype(dtype)


def shifted(X: np.ndarray) -> tuple[np.ndarray, float]:
    """``(X + c, c)``, checked exact."""
    c = SHIFT[X.dtype.type]
    moved = X + X.dtype.type(c)
    assert np.array_equal(moved - X.dtype.type(c), X)
    return moved, c


def moved_back(near: object, far: object, c: float) -> object:
    """The model fitted to X with the means of the model fitted to X + c, moved by -c (exact:
    they lie near c); every other parameter of the two fits is the same."""
    back = copy.deepcopy(near)
    back.means_ = far.means_ - far.means_.dtype.type(c)
    assert np.array_equal(back.means_ + far.means_.dtype.type(c), far.means_)
    return back


def assert_means_moved(far: np.ndarray, near: np.ndarray, c: float) -> None:
    """Means of the fit of X + c are those of X moved by c, to within the rounding near c."""
    ulp = float(np.spacing(np.asarray(c, far.dtype)))
    np.testing.assert_allclose(np.asarray(far, np.float64) - c, near, rtol=0, atol=ulp)


def assert_labels_moved(
    far_labels: np.ndarray, near_labels: np.ndarray, back: object, X: np.ndarray
) -> None:
    """Labels of the fit of X + c are those of X, but for rows the rounding of the means near c
    decides (near-ties): exactly those of the model moved back, and few differ from X's."""
    np.testing.assert_array_equal(far_labels, back.predict(X))
    assert np.count_nonzero(far_labels != near_labels) <= N // 200


def assert_predicts_as_moved_back(far: object, back: object, Xf: np.ndarray, X: np.ndarray):
    """The model fitted to X + c answers X + c as the model moved back answers X, exactly."""
    np.testing.assert_array_equal(far.predict(Xf), back.predict(X))
    np.testing.assert_array_equal(far.predict_proba(Xf), back.predict_proba(X))
    assert far.score(Xf) == back.score(X)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("sigma2", "init", "n_init", "weighted"),
    [
        (0.02, "k-means++", 2, False),  # the audit's case: 300 iterations where 4 were needed
        (1e-3, "random", 1, True),
        (5e-3, "array", 1, False),
    ],
)
def test_isotropic_mixture_fits_far_rows_as_the_rows_translated(
    dtype, sigma2, init, n_init, weighted
):
    X = band(dtype)
    Xf, c = shifted(X)
    weights = np.random.default_rng(5).integers(1, 9, N) / 4 if weighted else None
    kw = {"sigma2": sigma2, "n_init": n_init, "random_state": 3}
    if init == "array":
        start = (CENTRES + 0.0625).astype(dtype)
        near = IsotropicGaussianMixture(K, init=start, **kw).fit(X, sample_weight=weights)
        far = IsotropicGaussianMixture(K, init=shifted(start)[0], **kw)
    else:
        near = IsotropicGaussianMixture(K, init=init, **kw).fit(X, sample_weight=weights)
        far = IsotropicGaussianMixture(K, init=init, **kw)
    far.fit(Xf, sample_weight=weights)
    assert far.n_iter_ == near.n_iter_
    assert far.converged_ and near.converged_
    assert far.lower_bound_ == near.lower_bound_
    assert_means_moved(far.means_, near.means_, c)
    back = moved_back(near, far, c)
    assert_labels_moved(far.labels_, near.labels_, back, X)
    np.testing.assert_array_equal(far.predict(Xf), far.labels_)
    assert_predicts_as_moved_back(far, back, Xf, X)
    # the means' rounding near c moves the likelihood at second order only (a fixed point)
    assert math.isclose(far.score(Xf), near.score(X), rel_tol=1e-4, abs_tol=1e-4)
    np.testing.assert_allclose(far.predict_proba(Xf), near.predict_proba(X), atol=2e-3)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("covariance_type", "beta", "init"),
    [
        ("spherical", 1.0, "kmeans"),
        ("diag", 1.0, "kmeans"),
        ("tied", 1.0, "means_init"),
        ("full", 1.0, "kmeans"),
        ("diag", math.inf, "k-means++"),
        ("tied", math.inf, "kmeans"),
    ],
)
def test_gaussian_mixture_fits_far_rows_as_the_rows_translated(dtype, covariance_type, beta, init):
    X = band(dtype)
    Xf, c = shifted(X)
    kw = {"covariance_type": covariance_type, "beta": beta, "random_state": 0}
    if init == "means_init":
        start = (CENTRES + 0.0625).astype(dtype)
        near = GaussianMixture(K, means_init=start, **kw)
        far = GaussianMixture(K, means_init=shifted(start)[0], **kw)
    else:
        near = GaussianMixture(K, init_params=init, **kw)
        far = GaussianMixture(K, init_params=init, **kw)
    labels_near, labels_far = near.fit_predict(X), far.fit_predict(Xf)
    assert far.n_iter_ == near.n_iter_
    assert far.converged_ and near.converged_
    assert far.lower_bound_ == near.lower_bound_
    np.testing.assert_array_equal(far.covariances_, near.covariances_)
    np.testing.assert_array_equal(far.weights_, near.weights_)
    assert_means_moved(far.means_, near.means_, c)
    back = moved_back(near, far, c)
    assert_labels_moved(labels_far, labels_near, back, X)
    np.testing.assert_array_equal(far.predict(Xf), labels_far)
    assert_predicts_as_moved_back(far, back, Xf, X)
    assert math.isclose(far.score(Xf), near.score(X), rel_tol=1e-4, abs_tol=1e-4)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gaussian_mixture_warm_starts_far_rows_from_its_means(dtype):
    X = band(dtype)
    Xf, c = shifted(X)
    kw = {"covariance_type": "diag", "warm_start": True, "random_state": 0}
    near, far = GaussianMixture(K, **kw).fit(X), GaussianMixture(K, **kw).fit(Xf)
    near.fit(X)
    far.fit(Xf)  # from its means less the offset, the same up to their rounding near c
    assert far.n_iter_ == near.n_iter_
    assert far.converged_ and near.converged_
    # the first E-step reads the means rounded near c: second order in that rounding
    assert math.isclose(far.lower_bound_, near.lower_bound_, rel_tol=1e-4, abs_tol=1e-4)
    assert_means_moved(far.means_, near.means_, c)
    np.testing.assert_allclose(far.covariances_, near.covariances_, rtol=1e-3)
