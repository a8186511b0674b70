"""Traced data (a ``vmap`` over data sets, a ``jit`` of a function of the data) are mapped as
concrete data are: translated by the offset of ``gmmlimit._offset`` and divided by 2^e past the
scale window, with the offset and the exponent computed on the device.

Before, traced data were computed as given: a ``vmap`` of ``gl.kmeans`` over float32 data sets
near 2^70 (squared norms past float32's largest number) or near 2^-70 (squared distances below
its smallest normal number) put every row in cluster 0 after 2 iterations, and float32 GPS
coordinates cancelled as described in tests/test_offset_data.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gmmlimit as gl
from gmmlimit._offset import offset_of, traced_offset
from gmmlimit._validation import scale_exponent, traced_exponent

N, K, SETS, ITERS = 120, 3, 2, 12


def _blobs(seed: int) -> np.ndarray:
    """(SETS, N, 2) float64 rows of three clusters near the origin, one data set per lane."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [3.0, 0.5], [1.0, 3.0]])
    labels = rng.integers(0, K, (SETS, N))
    return centres[labels] + 0.4 * rng.standard_normal((SETS, N, 2))


def _island(rows: np.ndarray) -> np.ndarray:
    """Rows near 1e6 with row 0 at the origin (a "null island"): rule 2 of the offset."""
    moved = 1e6 + rows
    moved[:, 0] = 0.0
    return moved


DATA = {
    "unit": lambda rows: rows,
    "huge": lambda rows: rows * 2.0**70,  # float32 squared norms past the largest number
    "tiny": lambda rows: rows * 2.0**-70,  # float32 squared distances below the smallest normal
    "gps": lambda rows: np.array([37.7, -122.4]) + 0.01 * rows,  # rule 1: cancellation
    "island": _island,
}


def _problem(name: str, dtype: type) -> tuple[np.ndarray, np.ndarray, float]:
    """(SETS, N, 2) data, (SETS, K, 2) starting means (rows 1..K) and a soft sigma2 near the
    data's squared scale, within [2^-100, 2^100] (float32 holds it; at 2^-70 the fit is then
    all but hard)."""
    rows = DATA[name](_blobs(3)).astype(dtype)
    spread = float(np.max(rows[0, 1:], axis=0)[0] - np.min(rows[0, 1:], axis=0)[0])
    return rows, rows[:, 1 : K + 1].copy(), float(np.clip(spread**2 / 400, 2.0**-100, 2.0**100))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(DATA))
def test_a_vmap_over_data_sets_fits_each_as_its_own_fit(name, dtype):
    X, m0, sigma2 = _problem(name, dtype)
    hard = jax.vmap(lambda x, m: gl.kmeans(x, m, max_iter=ITERS))(X, m0)
    soft = jax.vmap(lambda x, m: gl.em(x, m, sigma2, max_iter=ITERS, tol=0.0))(X, m0)
    for lane in range(SETS):
        one = gl.kmeans(X[lane], m0[lane], max_iter=ITERS)
        for field in ("labels", "n_iter", "means", "objective"):  # K-means: bit for bit
            np.testing.assert_array_equal(
                np.asarray(getattr(hard, field))[lane], np.asarray(getattr(one, field)), field
            )
        one = gl.em(X[lane], m0[lane], sigma2, max_iter=ITERS, tol=0.0)
        np.testing.assert_array_equal(np.asarray(soft.labels[lane]), np.asarray(one.labels))
        # EM to rounding: XLA evaluates ln(2 pi sigma2) of a batched sigma2 in other code
        rtol = 1e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(soft.means[lane], one.means, rtol=rtol, atol=0)
        np.testing.assert_allclose(soft.objective[lane], one.objective, rtol=rtol)
    assert len(np.unique(np.asarray(hard.labels[0]))) == K  # not collapsed into one cluster


@pytest.mark.parametrize("name", ["huge", "tiny", "gps", "island"])
def test_diagnostics_of_traced_data_are_those_of_concrete_data(name):
    X, m0, sigma2 = _problem(name, np.float32)
    X, means = X[0], m0[0]

    @jax.jit
    def traced(x: jax.Array) -> tuple[jax.Array, ...]:
        return (
            gl.responsibilities(x, means, sigma2),
            gl.log_likelihood(x, means, sigma2),
            gl.kmeans_objective(x, means),
            gl.em_step(x, means, 0.0),
            gl.study.nearest_gap(x, means),
            gl.study.collapsed_rate(x, sigma2),  # sigma2 a Python float inside jit: refused before
        )

    concrete = (
        gl.responsibilities(X, means, sigma2),
        gl.log_likelihood(X, means, sigma2),
        gl.kmeans_objective(X, means),
        gl.em_step(X, means, 0.0),
        gl.study.nearest_gap(X, means),
        gl.study.collapsed_rate(X, sigma2),
    )
    for got, want in zip(traced(jnp.asarray(X)), concrete, strict=True):
        assert not np.any(np.isnan(np.asarray(got)))  # inf where the value is (J near 2^140)
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    scale=st.integers(-80, 80),
    centre=st.sampled_from([0.0, 1.0, -3.0, 1e6, -2.5e8]),
    outliers=st.integers(0, 2),
    seed=st.integers(0, 2**16),
)
def test_the_traced_map_is_the_concrete_map(dtype, scale, centre, outliers, seed):
    rng = np.random.default_rng(seed)
    rows = centre + rng.standard_normal((64, 3)) * np.array([1.0, 1e-3, 10.0])
    rows[:outliers] = 0.0  # rows at the origin: rule 2, or no offset
    X = np.ldexp(rows, scale).astype(dtype)
    offset = offset_of(X)
    want = np.zeros(3, dtype) if offset is None else offset
    got = jax.jit(traced_offset)(jnp.asarray(X))
    np.testing.assert_array_equal(np.asarray(got), want)
    moved = X - want
    exponent = jax.jit(traced_exponent)(jnp.asarray(moved))
    assert int(exponent) == scale_exponent(jnp.asarray(moved))


@pytest.mark.parametrize("name", ["huge", "gps"])
def test_an_annealing_path_of_traced_data_is_that_of_concrete_data(name):
    X, _, sigma2 = _problem(name, np.float32)
    schedule = sigma2 * np.array([400.0, 4.0, 1.0])
    key = jax.random.key(5)

    def path(x: jax.Array) -> gl.study.AnnealResult:
        return gl.anneal(x, schedule, key=key, k=K, max_iter=ITERS)

    paths = jax.vmap(path)(jnp.asarray(X))
    for lane in range(SETS):
        one = path(X[lane])
        np.testing.assert_array_equal(paths.n_distinct[lane], one.n_distinct)
        np.testing.assert_array_equal(paths.labels[lane], one.labels)
        for field in ("means", "log_likelihood", "distortion", "scale"):
            np.testing.assert_allclose(
                np.asarray(getattr(paths, field))[lane], getattr(one, field), rtol=1e-5
            )
    assert int(paths.n_distinct[0, -1]) == K


@pytest.mark.parametrize("name", ["huge", "gps"])
def test_restarts_of_traced_data_keep_the_best_of_the_same_fits(name):
    X, _, _ = _problem(name, np.float32)
    key = jax.random.key(2)
    batched = jax.vmap(lambda x: gl.restarts(key, x, K, n_init=3, max_iter=ITERS))(X)
    for lane in range(SETS):
        one = gl.restarts(key, X[lane], K, n_init=3, max_iter=ITERS)
        for field in ("labels", "n_iter", "means"):
            np.testing.assert_array_equal(
                np.asarray(getattr(batched, field))[lane], np.asarray(getattr(one, field)), field
            )


@pytest.mark.parametrize("name", ["gps", "island", "huge", "tiny"])
def test_a_vmap_of_a_variants_fit_translates_each_data_set_as_its_own_fit(name):
    # before: a variant's generic fit computed traced data as given, and gl.fit(gv.isotropic)
    # of float32 GPS data sets under vmap gave each set's own fit's labels for 29 % and 49 % of
    # the rows (a sigma2 > 0: 16 % and 33 %)
    X, m0, sigma2 = _problem(name, np.float32)

    def one(x: jax.Array, m: jax.Array, s2: jax.Array) -> gl.FitResult:
        return gl.fit(gl.variants.isotropic, x, gl.variants.IsotropicParams(m, s2), max_iter=ITERS)

    for s2 in (np.float32(0.0), np.float32(sigma2)):  # a traced leaf: one program for both
        batched = jax.vmap(one, in_axes=(0, 0, None))(jnp.asarray(X), jnp.asarray(m0), s2)
        for lane in range(SETS):
            own = one(X[lane], m0[lane], s2)
            for field in ("labels", "n_iter", "means", "objective"):
                np.testing.assert_array_equal(
                    np.asarray(getattr(batched, field))[lane], np.asarray(getattr(own, field))
                )
    # the variant tools take the same map (before: means and J off by up to 0.04 here)
    iso = gl.variants.isotropic

    def tools(x: jax.Array, m: jax.Array) -> tuple[jax.Array, jax.Array]:
        soft = gl.variants.IsotropicParams(m, jnp.asarray(sigma2, x.dtype))
        path = gl.study.anneal_variant(iso, x, [sigma2, 0.0], init_params=soft, max_iter=ITERS)
        return path.means, gl.study.diagnose(iso, x, soft).hard_objective

    batched = jax.vmap(tools)(jnp.asarray(X), jnp.asarray(m0))
    for lane in range(SETS):
        for got, want in zip(batched, tools(X[lane], m0[lane]), strict=True):
            np.testing.assert_array_equal(np.asarray(got)[lane], np.asarray(want))


@pytest.mark.parametrize("name", ["gps", "island", "far"])
def test_a_vmap_of_dpmeans_maps_each_data_set_as_its_own_fit(name):
    # before: dpmeans computed traced data as given, and each case here put 88 to 95 of the 120
    # rows of a lane in another cluster than its own fit (at 2^62 a lane's rows in one cluster:
    # float32 squared norms past 2^128, where lambda = 2 spread^2 is still held)
    spread = {"gps": 0.01, "island": 1.0, "far": 2.0**62}[name]
    far = {"far": lambda rows: rows * 2.0**62}
    X = {**DATA, **far}[name](_blobs(3)).astype(np.float32)
    lam = np.float32(2.0 * spread**2)

    def one(x: jax.Array) -> gl.variants.DPMeansResult:
        return gl.variants.dpmeans(x, lam, max_clusters=8, max_iter=ITERS)

    batched = jax.vmap(one)(jnp.asarray(X))
    for lane in range(SETS):
        own = one(X[lane])
        for field in ("labels", "n_clusters", "n_iter", "means", "objective"):
            np.testing.assert_array_equal(
                np.asarray(getattr(batched, field))[lane], np.asarray(getattr(own, field)), field
            )
    assert 1 < int(own.n_clusters) < 8


@pytest.mark.parametrize("name", ["gps", "island"])
def test_kmeans_plusplus_of_traced_rows_draws_the_rows_of_concrete_rows(name):
    # before: traced rows were not translated, and their expanded squares cancelled: under jit
    # the GPS-like rows of one set drew rows [15, 101, 29] where the concrete call draws [15,
    # 60, 16] (those of the rows translated by hand)
    X, _, _ = _problem(name, np.float32)
    keys = jax.random.split(jax.random.key(7), SETS)
    drawn = jax.jit(jax.vmap(lambda key, x: gl.init.kmeans_plusplus(key, x, K)))(keys, X)
    for lane in range(SETS):
        own = gl.init.kmeans_plusplus(keys[lane], X[lane], K)
        np.testing.assert_array_equal(np.asarray(drawn[lane]), np.asarray(own))


def test_an_annealing_path_of_a_variant_that_checks_its_data_runs_under_vmap():
    # gv.gamma declares check_data (positive rows); anneal_variant called it on traced rows
    # (TracerArrayConversionError) where gl.fit and diagnose skip it for traced data
    X = np.random.default_rng(0).gamma(2.0, 1.0, (SETS, N, 2)).astype(np.float32)

    def path(x: jax.Array) -> jax.Array:
        key = jax.random.key(1)
        return gl.study.anneal_variant(gl.variants.gamma, x, [1.0], key=key, k=K, max_iter=5)

    # traced, not run (the other annealing tests compare traced paths with concrete ones)
    shapes = jax.eval_shape(jax.vmap(path), jnp.asarray(X))
    assert shapes.means.shape == (SETS, 2, K, 2)


def test_traced_weights_are_rescaled_as_concrete_weights():
    # weights are relative: past the window they are divided by a power of two, on the device
    # too (before, traced weights were used as given: at 2^120 the traced kmeans's labels were
    # 28 of 120 apart from the concrete call's)
    X, m0, sigma2 = _problem("unit", np.float32)
    X, m0 = X[0], m0[0]

    def fits(x: jax.Array, w: jax.Array) -> tuple[gl.FitResult, gl.FitResult]:
        hard = gl.kmeans(x, m0, max_iter=ITERS, weights=w)
        return hard, gl.em(x, m0, sigma2, max_iter=ITERS, tol=0.0, weights=w)

    traced = jax.jit(fits)
    for exponent in (120, -124):
        w = np.ldexp(np.linspace(0.5, 2.0, N), exponent).astype(np.float32)
        for got, want in zip(traced(X, w), fits(X, w), strict=True):
            for field in ("labels", "n_iter", "means", "objective"):
                np.testing.assert_array_equal(
                    np.asarray(getattr(got, field)), np.asarray(getattr(want, field)), field
                )
    # restarts whose weights alone are traced (a vmap over bootstrap weights) choose the best
    # start on the device, as for traced data (before: ConcretizationTypeError while tracing)
    W = np.random.default_rng(0).poisson(1.0, (SETS, N)).astype(np.float32)
    key = jax.random.key(0)
    best = jax.eval_shape(
        jax.vmap(lambda w: gl.restarts(key, X, K, n_init=2, weights=w, max_iter=ITERS)), W
    )
    assert best.means.shape == (SETS, K, 2)


def test_a_variants_restarts_run_inside_jit():
    # the variant's temperature (hard or soft, so the default tolerance) is known on the device
    X, _, _ = _problem("unit", np.float32)
    key = jax.random.key(2)

    def best(x: jax.Array) -> gl.FitResult:
        return gl.restarts(key, x, K, variant=gl.variants.diag, n_init=3, max_iter=ITERS)

    inside, outside = jax.jit(best)(jnp.asarray(X[0])), best(X[0])
    for field in ("labels", "n_iter", "means", "objective"):
        np.testing.assert_array_equal(
            np.asarray(getattr(inside, field)), np.asarray(getattr(outside, field)), field
        )


def test_restarts_batched_off_the_cpu_pick_the_best_on_the_device(monkeypatch):
    # off the CPU the starts run as one vmap and the best is chosen by its objective
    monkeypatch.setattr(gl._api, "_fits_one_by_one", lambda X: False)
    X = np.random.default_rng(4).uniform(size=(N, 2)).astype(np.float32)  # many local optima
    key = jax.random.key(4)

    def best(x: jax.Array) -> gl.FitResult:
        return gl.restarts(key, x, 6, n_init=4, init="random", max_iter=ITERS)

    inside, outside = jax.jit(best)(jnp.asarray(X)), best(X)
    for field in ("labels", "n_iter", "means", "objective"):
        np.testing.assert_array_equal(
            np.asarray(getattr(inside, field)), np.asarray(getattr(outside, field)), field
        )


@pytest.mark.parametrize("name", ["unit", "gps"])
def test_the_gradient_with_respect_to_the_data_is_the_closed_form(name):
    # d l / d x_n = sum_k r_nk (m_k - x_n) / sigma2: under jax.grad alone the exponent comes
    # out concrete while the offset is traced (a TracerArrayConversionError at 9bff743)
    X, m0, sigma2 = _problem(name, np.float64)
    X, means = X[0], m0[0] + 1e-3 * np.sqrt(sigma2)
    grad = np.asarray(jax.grad(lambda x: gl.log_likelihood(x, means, sigma2))(jnp.asarray(X)))
    resp = np.asarray(gl.responsibilities(X, means, sigma2))
    closed = (resp @ means - X) / sigma2
    np.testing.assert_allclose(grad, closed, rtol=0, atol=1e-9 * np.max(np.abs(closed)))
