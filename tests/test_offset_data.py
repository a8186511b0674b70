"""Data far from the origin relative to their spread: fit as the same data translated.

Squared distances formed as |x|^2 - 2 m.x + |m|^2 cancel for such rows (float32 GPS coordinates
near (37.7, -122.4) spread over 0.1 degree): before the translation of ``gmmlimit._offset``,
``gl.kmeans`` ran to ``max_iter`` (300 iterations where scikit-learn took 4) with 95 % of the
labels those of the nearest of its own means, and ``kmeans_objective([[1e10]], ...)`` gave 9
where the answer is 1. Every path now computes such data translated by an exact offset, so a
fit of ``X + c`` is the fit of ``X`` (the same labels, iterations and objective, bit for bit,
where both compute the same translated rows), with means moved by ``c``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from fractions import Fraction
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from trace_count import traces
from user_variant import LOCATION_SOURCE, forget_module, write_module

import gmmlimit as gl
import gmmlimit.variants as gv
from gmmlimit import _offset
from gmmlimit._offset import data_offset, feature_range, offset_of, translate
from gmmlimit._variant import with_temperature
from gmmlimit.sklearn import KMeans, VariantMixture

N, K = 300, 3
OFFSET = np.array([1024.0, -2048.0])  # exact: the band's rows have at most 13 fraction bits here


def band(dtype: type) -> np.ndarray:
    """(N, 2) rows of three clusters, the first feature within [1, 2) and the second within
    (-2, -1]: each within a factor of two, so the rows are computed less the value nearest zero
    (as X + OFFSET are); each value a multiple of 2^-12, so that adding OFFSET (2^10, -2^11)
    is exact in float32."""
    rng = np.random.default_rng(7)
    labels = rng.integers(0, K, N)
    rows = 1.25 + labels[:, None] * np.array([0.2, 0.1]) + 0.02 * rng.standard_normal((N, 2))
    return (np.round(rows * 4096) / 4096 * np.array([1.0, -1.0])).astype(dtype)


def far(X: np.ndarray, offset: np.ndarray = OFFSET) -> np.ndarray:
    """X + offset, checked exact."""
    moved = X + offset.astype(X.dtype)
    assert np.array_equal(moved - offset.astype(X.dtype), X)
    return moved


def assert_translated(near: gl.FitResult, moved: gl.FitResult, dtype: type) -> None:
    """The fit of X + OFFSET is the fit of X: labels, iterations and objective exactly, means
    moved by OFFSET to within the rounding of a value near 2048."""
    np.testing.assert_array_equal(np.asarray(moved.labels), np.asarray(near.labels))
    assert int(moved.n_iter) == int(near.n_iter)
    assert bool(moved.converged) and bool(near.converged)
    assert float(moved.objective) == float(near.objective)
    ulp = float(np.spacing(np.asarray(2048.0, dtype)))
    np.testing.assert_allclose(
        np.asarray(moved.means, np.float64) - OFFSET, np.asarray(near.means), rtol=0, atol=ulp
    )


DTYPES = [np.float32, np.float64]  # tests/conftest.py turns JAX's x64 flag on


@pytest.mark.parametrize("dtype", DTYPES)
def test_kmeans_and_em_of_far_rows_are_those_of_the_rows_translated(dtype):
    X = band(dtype)
    m0 = X[[0, 1, 2]]
    # in blocks of 64 (the last padded), the programs of the out-of-core test's in-memory fits
    fit = {"block_size": 64}
    assert_translated(gl.kmeans(X, m0, **fit), gl.kmeans(far(X), far(m0), **fit), dtype)
    assert_translated(gl.em(X, m0, 1e-3, **fit), gl.em(far(X), far(m0), 1e-3, **fit), dtype)
    key = jax.random.key(3)
    assert_translated(
        gl.restarts(key, X, K, n_init=2, **fit), gl.restarts(key, far(X), K, n_init=2, **fit), dtype
    )
    step = gl.em_step(far(X), far(m0), 1e-3, **fit)
    np.testing.assert_allclose(
        np.asarray(step, np.float64) - OFFSET,
        np.asarray(gl.em_step(X, m0, 1e-3, **fit)),
        rtol=0,
        atol=float(np.spacing(np.asarray(2048.0, dtype))),
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_out_of_core_and_sharded_fits_of_far_rows_are_those_in_memory(dtype):
    """The streamed fit reads each feature's extremes in its first pass and translates every
    chunk, the last one padded (300 rows in blocks of 64), as the in-memory fit does."""
    X, moved = band(dtype), far(band(dtype))
    m0 = X[[0, 1, 2]]
    in_memory = gl.kmeans(moved, far(m0), block_size=64)
    assert_translated(gl.kmeans(X, m0, block_size=64), in_memory, dtype)
    streamed = gl.scale.kmeans_out_of_core(moved, far(m0), block_size=64, chunk_blocks=2)
    assert_translated(gl.kmeans(X, m0, block_size=64), streamed, dtype)
    soft = gl.scale.em_out_of_core(
        [moved[:100], moved[100:]], far(m0), 1e-3, block_size=64, chunk_blocks=2
    )
    assert_translated(gl.em(X, m0, 1e-3, block_size=64), soft, dtype)
    sharded = gl.scale.kmeans_sharded(moved, far(m0), block_size=64)
    assert_translated(gl.kmeans(X, m0, block_size=64), sharded, dtype)


def test_float32_coordinates_are_clustered_as_scikit_learn_clusters_them():
    """Latitude and longitude in float32 (before: 300 iterations and wrong labels)."""
    rng = np.random.default_rng(0)
    centres = np.array([[37.70, -122.40], [37.75, -122.45], [37.80, -122.42]])
    X = (centres[rng.integers(0, 3, 3000)] + 0.01 * rng.standard_normal((3000, 2))).astype(
        np.float32
    )
    m0 = X[:3].copy()
    ours = gl.kmeans(X, m0)
    from sklearn.cluster import KMeans as SKKMeans

    theirs = SKKMeans(3, init=m0, n_init=1, algorithm="lloyd").fit(X)
    np.testing.assert_array_equal(np.asarray(ours.labels), theirs.labels_)
    assert int(ours.n_iter) == theirs.n_iter_ < 10
    # every label is that of the nearest of the fitted means, measured in float64
    dist = ((X.astype(np.float64)[:, None] - np.asarray(ours.means, np.float64)) ** 2).sum(-1)
    np.testing.assert_array_equal(dist.argmin(axis=1), np.asarray(ours.labels))
    ours_est = KMeans(3, init=m0, n_init=1).fit(X)
    np.testing.assert_array_equal(ours_est.labels_, theirs.labels_)


def test_diagnostics_of_far_rows():
    """The audit's case (float64): one row at 1e10, means 1e10 - 1 and 1e10 + 3."""
    X = np.array([[1e10]])
    means = np.array([[1e10 - 1.0], [1e10 + 3.0]])
    assert float(gl.kmeans_objective(X, means)) == 1.0  # before: 9 (the wrong mean)
    resp = np.asarray(gl.responsibilities(X, means, 1.0))
    expected = np.exp([-0.5, -4.5]) / np.exp([-0.5, -4.5]).sum()  # [0.982, 0.018]
    np.testing.assert_allclose(resp[0], expected, rtol=1e-14)
    ll = float(gl.log_likelihood(X, means, 1.0))
    np.testing.assert_allclose(ll, float(gl.log_likelihood(X - 1e10, means - 1e10, 1.0)))
    gap = gl.study.responsibility_gap(X, means, 1.0)
    np.testing.assert_allclose(np.asarray(gap)[0], [expected[1], expected[1]], rtol=1e-13)


@pytest.mark.parametrize(("dtype", "centre"), [(np.float32, 1e6), (np.float64, 1e15)])
def test_critical_sigma2_of_far_rows_is_that_of_the_rows_translated(dtype, centre):
    """Before the translation, float32 rows near 1e6 (unit spread) gave a relative error of
    7.8e-5 and float64 rows near 1e15 one of 3.7e-3 (the mean rounded at the rows' magnitude)."""
    rows = (centre + np.random.default_rng(2).normal(0.0, 1.0, (60, 2))).astype(dtype)
    moved = rows - rows.min(axis=0)  # exact: every row within a factor of two of the smallest
    expected = float(gl.critical_sigma2(moved))
    assert float(gl.critical_sigma2(rows)) == expected
    # under jit, XLA fuses the whole computation its own way: the same bits for both inputs
    traced = jax.jit(gl.critical_sigma2)
    assert float(traced(rows)) == float(traced(moved))
    exact = np.linalg.eigvalsh(np.cov(moved.astype(np.float64).T, bias=True))[-1]
    np.testing.assert_allclose(expected, exact, rtol=1e-6 if dtype == np.float32 else 1e-14)


VARIANTS = ["diag", "full", "tied", "spherical", "isotropic"]


def start(name: str, X: np.ndarray):
    """The variant's start drawn from X (near the origin), in X's dtype."""
    return getattr(gv, name).init(jax.random.key(1), jnp.asarray(X), K)


def moved_params(params):
    """The same start for X + OFFSET: only the locations move."""
    return params._replace(means=far(np.asarray(params.means)))


def assert_paths_translated(variant: gl.Variant, X: np.ndarray, p0) -> None:
    """In memory, out of core (300 rows in blocks of 64, the last padded) and sharded, the fit
    of far(X) from p0 moved by OFFSET is the fit of X from p0."""
    near = gl.fit(variant, X, p0, block_size=64)
    assert_translated(near, gl.fit(variant, far(X), moved_params(p0), block_size=64), np.float32)
    streamed = gl.scale.fit_out_of_core(
        variant, far(X), moved_params(p0), block_size=64, chunk_blocks=2
    )
    assert_translated(near, streamed, np.float32)
    sharded = gl.scale.fit_sharded(variant, far(X), moved_params(p0), block_size=64)
    assert_translated(gl.scale.fit_sharded(variant, X, p0, block_size=64), sharded, np.float32)


@pytest.mark.parametrize("name", VARIANTS)
def test_a_location_variant_fits_far_rows_as_the_rows_translated(name):
    """In memory, from the same start moved by OFFSET (float32): each variant's declared location
    field. Out of core and sharded (their translation is the driver's, whatever the variant): diag
    here, a user's variant below, the isotropic fits above."""
    X = band(np.float32)
    variant, p0 = getattr(gv, name), start(name, X)
    if name == "diag":
        assert_paths_translated(variant, X, p0)
        return
    near = gl.fit(variant, X, p0, block_size=64)
    assert_translated(near, gl.fit(variant, far(X), moved_params(p0), block_size=64), np.float32)


@pytest.fixture(scope="module")
def user_location(tmp_path_factory):
    """The module of tests/user_variant.py's LOCATION_SOURCE, imported from a temporary folder."""
    folder = str(tmp_path_factory.mktemp("user_location"))
    name = write_module(Path(folder), name="my_location", source=LOCATION_SOURCE)
    sys.path.insert(0, folder)
    try:
        yield importlib.import_module(name)
    finally:
        sys.path.remove(folder)
        forget_module(name)


def test_a_user_location_variant_fits_far_rows_as_the_rows_translated(user_location):
    """A variant written outside the package whose divergence expands |x - m|^2, which cancels
    for these rows: declaring its location field, it fits them translated through every tool
    (in memory, out of core with the last block padded, sharded, restarts, a vmapped sweep over
    beta, the scikit-learn estimator), as the shipped Gaussian variants do."""
    variant, Params = user_location.shared_gaussian, user_location.SharedParams
    assert "gmmlimit" not in user_location.__file__
    X = band(np.float32)
    p0 = Params(X[[0, 1, 2]], np.full(3, 1 / 3, np.float32), np.float32(4e-4), np.float32(1.0))
    assert_paths_translated(variant, X, p0)
    key = jax.random.key(5)
    fit = {"variant": variant, "n_init": 2, "block_size": 64}  # the fits' program above
    assert_translated(gl.restarts(key, X, K, **fit), gl.restarts(key, far(X), K, **fit), np.float32)
    betas = jnp.asarray([1.0, 4.0], jnp.float32)

    def sweep(data, start):
        return jax.vmap(lambda b: gl.fit(variant, data, start._replace(beta=b)).labels)(betas)

    np.testing.assert_array_equal(
        np.asarray(sweep(far(X), moved_params(p0))), np.asarray(sweep(X, p0))
    )
    est = {"random_state": 0, "max_iter": 300, "block_size": 64}  # gl.fit's program above
    est_near = VariantMixture(variant, K, **est).fit(X)
    est_far = VariantMixture(variant, K, **est).fit(far(X))
    np.testing.assert_array_equal(est_far.predict(far(X)), est_near.predict(X))


def test_variant_tools_on_far_rows():
    """Restarts, the limit diagnostics, annealing and the scikit-learn estimator (diag)."""
    X = band(np.float32)
    key = jax.random.key(5)
    fit = {"variant": gv.diag, "n_init": 2, "block_size": 64}  # the program of gl.fit(diag) above
    near = gl.restarts(key, X, K, **fit)
    assert_translated(near, gl.restarts(key, far(X), K, **fit), np.float32)
    p0 = start("diag", X)  # its means are rows of X
    soft = with_temperature(gv.diag, p0, 2.0)
    a = gv.limits.diagnose(gv.diag, X, soft)
    b = gv.limits.diagnose(gv.diag, far(X), moved_params(soft))
    np.testing.assert_allclose(np.asarray(b.resp_gap), np.asarray(a.resp_gap), atol=1e-6)
    np.testing.assert_allclose(float(b.objective), float(a.objective), rtol=1e-6)
    path_near = gl.study.anneal_variant(gv.diag, X, [2.0, 4.0], init_params=p0)
    path_far = gl.study.anneal_variant(gv.diag, far(X), [2.0, 4.0], init_params=moved_params(p0))
    np.testing.assert_array_equal(np.asarray(path_far.n_distinct), np.asarray(path_near.n_distinct))
    np.testing.assert_array_equal(np.asarray(path_far.labels), np.asarray(path_near.labels))
    est = {"random_state": 0, "max_iter": 300, "block_size": 64}
    est_near = VariantMixture(gv.diag, K, **est).fit(X)
    est_far = VariantMixture(gv.diag, K, **est).fit(far(X))
    np.testing.assert_array_equal(est_far.predict(far(X)), est_near.predict(X))


def test_data_without_a_far_feature_are_computed_as_given():
    """Centred data, data spanning zero or more than a factor of two: no offset, no copy."""
    rng = np.random.default_rng(0)
    assert offset_of(rng.standard_normal((50, 3))) is None
    assert offset_of(np.array([[1.0, 5.0], [2.01, -1.0]])) is None  # 2.01 > 2 * 1
    assert offset_of(np.array([[0.0], [1.0]])) is None
    X = rng.standard_normal((40, 2)).astype(np.float32)
    assert translate(X, None) is X
    # Poisson and Gamma are no location families: their data are never translated
    counts = np.array([[1000.0, 1001.0], [1002.0, 1000.0], [1001.0, 1003.0]])
    fit_map = gl._variant_scale.variant_fit_map(gv.poisson, jnp.asarray(counts))
    assert fit_map.identity


def test_the_offset_rule():
    lo = np.array([1.0, -8.0, 3.0, -1.0, 0.5, 0.0])
    hi = np.array([2.0, -4.0, 6.5, 1.0, 0.5, 0.0])
    np.testing.assert_array_equal(data_offset(lo, hi), [1.0, -4.0, 0.0, 0.0, 0.5, 0.0])


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from([np.float32, np.float64]),
    hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=9),
        elements=st.floats(0.0, 1.0),
    ),
    st.lists(st.floats(1e-30, 1e30), min_size=9, max_size=9),
    st.lists(st.sampled_from([-1.0, 1.0]), min_size=9, max_size=9),
)
def test_translation_is_exact_and_the_extremes_are_numpys(dtype, fractions, bases, signs):
    """Each feature's values within [base, 2 base] (or its negative): every difference from the
    offset is exact (compared as rationals), and the extremes are numpy's min and max."""
    d = fractions.shape[1]
    scale = (np.asarray(signs[:d]) * np.asarray(bases[:d])).astype(dtype)
    X = (scale * (1.0 + fractions.astype(dtype))).astype(dtype)
    lo, hi = feature_range(X)
    np.testing.assert_array_equal(lo, X.min(axis=0))
    np.testing.assert_array_equal(hi, X.max(axis=0))
    offset = data_offset(lo, hi)
    assert offset is not None  # every feature lies within a factor of two
    moved = np.asarray(translate(X, offset))
    assert moved.dtype == X.dtype
    for value, got, c in zip(
        X.ravel(), moved.ravel(), np.broadcast_to(offset, X.shape).ravel(), strict=True
    ):
        assert Fraction(float(got)) == Fraction(float(value)) - Fraction(float(c))


@pytest.mark.parametrize("shape", [(4097, 1), (10, 5000), (8193, 3), (1, 1)])
def test_extremes_at_every_width(shape):
    X = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    X[-1] = 7.0  # the rows past the last whole group
    lo, hi = feature_range(X)
    np.testing.assert_array_equal(lo, X.min(axis=0))
    np.testing.assert_array_equal(hi, X.max(axis=0))


def test_kmeans_plusplus_of_far_rows():
    """k-means++ draws the rows it draws for the rows translated: exactly those rows, moved."""
    X = band(np.float32)
    key = jax.random.key(11)
    near = np.asarray(gl.init.kmeans_plusplus(key, X, K))
    moved = np.asarray(gl.init.kmeans_plusplus(key, far(X), K))
    np.testing.assert_array_equal(moved, far(near))
    # rows about the origin (no offset) take the program of the translated rows' shape (an
    # n_local_trials no other test uses: the program is this test's own)
    centred = X - np.array([1.5, -1.5], np.float32)
    assert offset_of(centred) is None and offset_of(X) is not None
    gl.init.kmeans_plusplus(key, X, K, n_local_trials=7)
    with traces() as traced:
        gl.init.kmeans_plusplus(key, centred, K, n_local_trials=7)
    assert "_kmeans_plusplus" not in traced


FAR_F64 = np.array([2.0**40, -(2.0**40)])  # float64 rows near 1e12: 2^-12 apart there


def test_study_tools_of_far_rows():
    """float64 rows at 2^40 (the audit's cases): what the study tools report of far rows is
    what they report of the rows near the origin, where they compare two computed results
    (before, each was rounded to 2^-12 in the data's units first)."""
    X = band(np.float64)
    moved = far(X, FAR_F64)
    m0 = X[[0, 1, 2]]
    # convergence_rate: the fixed point in the data's units (before: in the translated ones)
    near, remote = (
        gl.study.convergence_rate(X, m0, 0.02),
        gl.study.convergence_rate(moved, far(m0, FAR_F64), 0.02),
    )
    np.testing.assert_array_equal(remote.errors, near.errors)
    np.testing.assert_allclose(remote.fixed_point - FAR_F64, near.fixed_point, rtol=0, atol=2e-4)
    # ... and a fixed point given in the data's units is compared in them (before: errors of
    # 2.7e12 and rate 1)
    given = gl.study.convergence_rate(moved, far(m0, FAR_F64), 0.02, fixed_point=remote.fixed_point)
    np.testing.assert_allclose(given.errors[:3], near.errors[:3], rtol=0, atol=5e-4)
    # update_gap: both updates less the offset (before: 1.2e-4, the spacing near 2^40)
    for sigma2 in (2e-3, 1e-3):
        assert float(gl.study.update_gap(moved, far(m0, FAR_F64), sigma2)) == float(
            gl.study.update_gap(X, m0, sigma2)
        )
    # limit_sweep's gap of the fitted locations, from the locations as computed
    start = gv.IsotropicParams(jnp.asarray(m0), jnp.asarray(0.0))
    sweep = gv.limit_sweep(gv.isotropic, X, start, [0.05, 0.01, 0.005])
    sweep_far = gv.limit_sweep(
        gv.isotropic,
        moved,
        start._replace(means=jnp.asarray(far(m0, FAR_F64))),
        [0.05, 0.01, 0.005],
    )
    np.testing.assert_array_equal(sweep_far["fit_means_gap"], sweep["fit_means_gap"])
    # anneal_variant: each stage starts from the last as computed (before: the locations,
    # mapped back and moved again, coincided and never split: 1 distinct for 3)
    schedule = np.geomspace(0.05, 5e-4, 4)
    path = gl.study.anneal_variant(gv.isotropic, X, schedule, key=jax.random.key(2), k=K)
    path_far = gl.study.anneal_variant(gv.isotropic, moved, schedule, key=jax.random.key(2), k=K)
    assert int(np.max(np.asarray(path.n_distinct))) == K
    np.testing.assert_array_equal(np.asarray(path_far.n_distinct), np.asarray(path.n_distinct))
    np.testing.assert_array_equal(np.asarray(path_far.labels), np.asarray(path.labels))


def test_experiments_study_a_far_data_file_translated(tmp_path):
    """A user's file of rows at 2^40 is swept as the rows less their offset, also in float32
    (before: refused, "zero variance in float32"), and says so."""
    from gmmlimit.experiments import make_config, registry
    from gmmlimit.experiments._common import load_data
    from gmmlimit.experiments._data import data_name

    X = band(np.float64)
    path = tmp_path / "far.npy"
    np.save(path, far(X, FAR_F64))
    settings = {"data": str(path), "datasets": "far", "k": K}
    config = make_config(registry()["precision"], settings)
    loaded, _, info = load_data(config, data_name(str(path)), dtype="float32")
    lo = np.where(X[:, 0].min() > 0, X[:, 0].min(), 0.0), X[:, 1].max()
    np.testing.assert_array_equal(loaded, (X - np.array(lo)).astype(np.float32))
    assert "translated by the exact offset" in info["description"]


# ----------------------------------------------------------------------------------------------
# One outlier: the bulk of a feature within |c| / 16 of one extreme c, one row far from it.


def null_island() -> tuple[np.ndarray, np.ndarray]:
    """benchmarks/tuning/far_outlier.py's data: 2000 float32 rows at 1e6 + N(0, 1), row 0 at
    (0, 0), and K = 8 starting means drawn from the rows (row 0 among them)."""
    rng = np.random.default_rng(6)
    X = (1e6 + rng.normal(size=(2000, 2))).astype(np.float32)
    X[0] = 0.0
    return X, X[[0, *rng.choice(np.arange(1, 2000), 7, replace=False)]]


def outlier_on_top() -> tuple[np.ndarray, np.ndarray]:
    """The bulk at 1e6 + N(0, 1), row 0 at 1e9: translated by each feature's smallest value
    (the ``lo`` candidate); the outlier's difference is rounded (to a multiple of 64)."""
    rng = np.random.default_rng(8)
    X = (1e6 + rng.normal(size=(2000, 2))).astype(np.float32)
    X[0] = 1e9
    return X, X[[0, *rng.choice(np.arange(1, 2000), 7, replace=False)]]


def gps_null_island() -> tuple[np.ndarray, np.ndarray]:
    """float32 latitude 37.7 and longitude -122.4 spread over 0.05 degree, row 0 at (0, 0):
    latitude translated by its largest value, longitude (negative) by its smallest."""
    rng = np.random.default_rng(9)
    X = (np.array([37.7, -122.4]) + 0.05 * rng.standard_normal((2000, 2))).astype(np.float32)
    X[0] = 0.0
    return X, X[[0, *rng.choice(np.arange(1, 2000), 7, replace=False)]]


OUTLIERS = {"null_island": null_island, "on_top": outlier_on_top, "gps": gps_null_island}


def _far_outlier_script():
    """benchmarks/tuning/far_outlier.py, whose float64 NumPy Lloyd the outlier tests compare."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "tuning" / "far_outlier.py"
    spec = importlib.util.spec_from_file_location("far_outlier", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


numpy_lloyd = _far_outlier_script().numpy_lloyd
"""float64 NumPy Lloyd's iterations: means, labels and the mean updates before no label changed."""


@pytest.mark.parametrize("case", OUTLIERS)
def test_one_outlier_leaves_the_bulk_translated(case):
    """One E-step labels every row by its nearest mean (float64 reference), and gl.kmeans takes
    the float64 Lloyd's steps: its labels, and its iterations (gl.kmeans counts the E-step that
    finds no change, one more than the updates). Before: 1723 of 2000 labels of the null
    island's E-step were wrong, and gl.kmeans ran 300 iterations to J = 4347 (float64: 26
    updates to J = 871)."""
    X, m0 = OUTLIERS[case]()
    exact = ((X[:, None, :].astype(np.float64) - m0[None].astype(np.float64)) ** 2).sum(-1)
    labels = np.asarray(gl.responsibilities(X, m0, 0.0)).argmax(1)
    np.testing.assert_array_equal(labels, exact.argmin(1))
    fit = gl.kmeans(X, m0, block_size=64)  # the paths test's program (2000 rows, K = 8)
    means, ref_labels, updates = numpy_lloyd(X, m0)
    np.testing.assert_array_equal(np.asarray(fit.labels), ref_labels)
    assert bool(fit.converged) and int(fit.n_iter) == updates + 1
    np.testing.assert_allclose(np.asarray(fit.means, np.float64), means, rtol=1e-7)
    J = float(((X.astype(np.float64) - means[ref_labels]) ** 2).sum())
    np.testing.assert_allclose(float(fit.distortion), J, rtol=1e-5)


def test_the_offsets_of_one_outlier():
    """Which extreme each feature is translated by, and the rows each window holds."""
    from gmmlimit._offset import candidate_windows, translated_largest, window_counts

    X, _ = null_island()  # both features: the largest value (0 is no candidate)
    np.testing.assert_array_equal(offset_of(X), X.max(axis=0))
    X, _ = outlier_on_top()  # the smallest value; the outlier rounded once, to 64
    offset = offset_of(X)
    np.testing.assert_array_equal(offset, X.min(axis=0))
    lo, hi = feature_range(X)
    moved = np.asarray(translate(X, offset))
    assert np.all(np.abs(moved[1:]) < 8) and np.all(moved[0] % 64 == 0)
    np.testing.assert_array_equal(moved[0], np.float32(1e9) - offset)  # one rounding
    assert translated_largest(lo, hi, 1e9, offset) == float(np.abs(moved).max())
    for row in range(1, len(X)):  # every other row exactly
        assert all(Fraction(float(m)) == Fraction(float(x)) - Fraction(float(c))
                   for m, x, c in zip(moved[row], X[row], offset, strict=True))  # fmt: skip
    np.testing.assert_array_equal(window_counts(X, candidate_windows(lo, hi)), [[1999] * 2, [1, 1]])
    X, _ = gps_null_island()  # latitude less its largest value, longitude less its smallest
    np.testing.assert_array_equal(offset_of(X), [X[:, 0].max(), X[:, 1].min()])


def test_one_far_row_among_rows_near_zero_translates_nothing():
    """Rows near 0 with one row at (1e6, 1e6): no window holds a majority, so the rows are
    computed as given, as before (and data near the origin never are: uniform on [0, 1) puts 6 %
    of the rows within 1/16 of 1)."""
    from gmmlimit._offset import candidate_windows, window_counts

    rng = np.random.default_rng(10)
    X = rng.standard_normal((2000, 2)).astype(np.float32)
    X[0] = 1e6
    lo, hi = feature_range(X)
    np.testing.assert_array_equal(window_counts(X, candidate_windows(lo, hi))[1], [1, 1])
    assert offset_of(X) is None
    assert offset_of(rng.random((2000, 3))) is None
    m0 = X[:8]  # K = 8: the programs of the outlier tests' fits (2000 rows, blocks of 64)
    near = gl.kmeans(X, m0, block_size=64)
    streamed = gl.scale.kmeans_out_of_core(X, m0, block_size=64, chunk_blocks=2)
    for got in (streamed, gl.scale.kmeans_sharded(X, m0, block_size=64)):
        np.testing.assert_array_equal(np.asarray(got.labels), np.asarray(near.labels))
        np.testing.assert_array_equal(np.asarray(got.means), np.asarray(near.means))


def test_the_offset_rule_with_counts():
    """A strict majority of the N rows; both: the larger count, lo on a tie; rule 1 first."""
    lo = np.array([1.0, -8.0, 0.0, -100.0, 10.0, 10.0, 10.0, 10.0])
    hi = np.array([2.0, -4.0, 100.0, 0.0, 100.0, 100.0, 100.0, 100.0])
    counts = np.array([[9, 9, 0, 6, 6, 5, 4, 3], [9, 9, 6, 0, 5, 5, 6, 5]])
    np.testing.assert_array_equal(
        data_offset(lo, hi, counts, 10), [1.0, -4.0, 100.0, -100.0, 10.0, 0.0, 100.0, 0.0]
    )
    np.testing.assert_array_equal(
        data_offset(lo, hi, np.array([[6] * 8, [6] * 8]), 10), [1, -4, 100, -100, 10, 10, 10, 10]
    )
    assert data_offset(lo[2:], hi[2:], np.zeros((2, 6), np.int64), 10) is None
    assert data_offset(lo[2:], hi[2:], np.full((2, 6), 5), 10) is None  # 5 of 10: no majority


@pytest.mark.parametrize("shape", [(4097, 1), (10, 5000), (8193, 3), (2, 1), (70000, 2)])
def test_window_counts_at_every_width(shape):
    from gmmlimit._offset import candidate_windows, window_counts

    X = (100 + np.random.default_rng(1).standard_normal(shape)).astype(np.float32)
    X[-1] = 0.0  # an outlier in the rows past the last whole group
    lo, hi = feature_range(X)
    windows = candidate_windows(lo, hi)
    expected = [np.logical_and(w[0] <= X, np.less_equal(X, w[1])).sum(axis=0) for w in windows]
    np.testing.assert_array_equal(window_counts(X, windows), expected)
    halves = [window_counts(part, windows) for part in np.array_split(X, 3)]
    np.testing.assert_array_equal(sum(halves), expected)
    # the device's count (an accelerator's arrays), run here on the CPU device
    counts = _offset._device_counts(jnp.asarray(X), windows[0, 1], windows[1, 0])
    np.testing.assert_array_equal(counts, expected)


def assert_same_fit(a: gl.FitResult, b: gl.FitResult, objective_rtol: float = 0.0) -> None:
    """Labels, iterations and means bit for bit; the objective too unless ``objective_rtol``."""
    np.testing.assert_array_equal(np.asarray(a.labels), np.asarray(b.labels))
    assert int(a.n_iter) == int(b.n_iter) and bool(a.converged) == bool(b.converged)
    np.testing.assert_allclose(float(a.objective), float(b.objective), rtol=objective_rtol)
    np.testing.assert_array_equal(np.asarray(a.means), np.asarray(b.means))


def test_the_paths_translate_one_outlier_as_in_memory():
    """Out of core (2000 rows in blocks of 64, the last padded; chunks of uneven sizes), the
    isotropic fits and a location variant's equal the in-memory fit bit for bit: the window
    counts are exact sums over the chunks, so every path takes the same offset (sharded host
    arrays take the in-memory offset_of; global arrays and out-of-core sources of several
    processes sum their counts: tests/test_multiprocess.py's ``kmeans_outlier_f32``).
    (One data set: the merging of counts does not depend on which candidate wins; the three
    cases in memory are test_one_outlier_leaves_the_bulk_translated's.)"""
    X, m0 = null_island()
    parts = [X[:700], X[700:1313], X[1313:]]
    near = gl.kmeans(X, m0, block_size=64)
    np.testing.assert_array_equal(np.asarray(near.labels), numpy_lloyd(X, m0)[1])  # translated
    assert_same_fit(near, gl.scale.kmeans_out_of_core(parts, m0, block_size=64, chunk_blocks=2))
    k = len(m0)
    params = gv.DiagParams(
        jnp.asarray(m0), jnp.ones(m0.shape, jnp.float32), jnp.full(k, 1 / k, jnp.float32),
        jnp.float32(1.0), jnp.float32(1e-6),
    )  # fmt: skip
    fit = gl.fit(gv.diag, X, params, block_size=64)
    streamed = gl.scale.fit_out_of_core(gv.diag, parts, params, block_size=64, chunk_blocks=2)
    assert_same_fit(fit, streamed)


@pytest.mark.cpu_bits
def test_data_translated_by_the_factor_of_two_rule_are_not_translated_again():
    # A feature within a factor of two (rule 1: translated by lo) whose majority lies next to
    # its largest value: the translated feature, [0, 901], has 80 % of its rows in its top
    # sixteenth, where the majority rule would translate it again. em in memory (its own
    # translation, then its variant's) did, and left the out-of-core fit's bits (1 ulp).
    rng = np.random.default_rng(0)
    n = 600
    x = np.where(rng.random(n) < 0.8, 1900.0 + rng.random(n), 1000.0 + 900 * rng.random(n))
    X = np.stack([x, 5000.0 + rng.normal(size=n)], 1).astype(np.float32)
    m0 = X[[0, 1, 2]]
    for sigma2 in (0.5, 0.0):
        memory = gl.em(X, m0, sigma2, max_iter=50, block_size=64)
        streamed = gl.scale.em_out_of_core(X, m0, sigma2, max_iter=50, block_size=64)
        assert int(memory.n_iter) == int(streamed.n_iter)
        np.testing.assert_array_equal(np.asarray(memory.labels), np.asarray(streamed.labels))
        np.testing.assert_array_equal(np.asarray(memory.means), np.asarray(streamed.means))
