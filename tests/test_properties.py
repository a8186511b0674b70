"""Property-based tests of the isotropic core at the edges (docs/design.md, section 6).

Hypothesis sweeps what a user can pass: D and K from 1, N below and above the block size,
sigma2 over the whole range of the dtype (0, the smallest normal numbers, values near the
largest), data scales over the dtype's range, float32 and float64, the compiled CPU kernel and
the JAX E-step, under jit and vmap. Shapes come from a short list, so each compiles once; the
values vary freely (sigma2 and the scales are traced or rescaled, never recompiled).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gmmlimit as gl
from gmmlimit._validation import scale_exponent
from gmmlimit.variants import _isotropic_engines as engines

BLOCK = 8
SHAPES = [(3, 1, 1), (11, 1, 3), (11, 2, 2), (5, 3, 3), (13, 4, 2)]
"""(N, D, K): D and K from 1, N below and above the block size."""

FIT_SHAPES = [(11, 2, 3), (5, 1, 2)]
"""Shapes of the fits (one compilation each per dtype): N above and below the block size."""

ITERS = 20

DTYPES = [np.float32, np.float64]
FAST = settings(max_examples=8, deadline=None, derandomize=True)


def _problem(seed: int, shape: tuple[int, int, int], dtype: type) -> tuple[np.ndarray, np.ndarray]:
    n, d, k = shape
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * 3.0
    means = X[rng.choice(n, size=k, replace=False)] + rng.normal(scale=0.3, size=(k, d))
    return X.astype(dtype), means.astype(dtype)


def _sigma2(dtype: type) -> st.SearchStrategy[float]:
    """0, the smallest normal number, values near the largest, or m * 2^e with e uniform over
    the dtype's normal range (log-uniform)."""
    info = np.finfo(dtype)
    positive = st.tuples(
        st.floats(1.0, 2.0, exclude_max=True), st.integers(info.minexp, info.maxexp - 1)
    ).map(lambda me: float(min(np.ldexp(me[0], me[1]), float(info.max))))
    near_max = st.floats(0.25, 1.0).map(lambda f: float(info.max) * f)
    return st.one_of(st.just(0.0), st.just(float(info.tiny)), near_max, positive)


def _scale(dtype: type) -> st.SearchStrategy[int]:
    """Binary exponents that keep data of magnitude ~10 finite and normal in ``dtype``."""
    info = np.finfo(dtype)
    return st.integers(info.minexp + 8, info.maxexp - 8)


def _onehot(labels: np.ndarray, k: int) -> np.ndarray:
    return np.eye(k)[labels]


def _gaps(X: np.ndarray, means: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels and Delta_n (second smallest minus smallest squared distance), in float64."""
    d = ((X[:, None, :].astype(np.float64) - means[None].astype(np.float64)) ** 2).sum(-1)
    order = np.sort(d, axis=1)
    delta = order[:, 1] - order[:, 0] if d.shape[1] > 1 else np.full(len(X), np.inf)
    return np.argmin(d, axis=1), delta


def _scaled_sigma2_refused(X: np.ndarray, means: np.ndarray, sigma2: float) -> bool:
    e = scale_exponent(jnp.asarray(X), jnp.asarray(means))
    tiny = float(np.finfo(X.dtype).tiny)
    return e != 0 and sigma2 > 0 and np.ldexp(np.float64(sigma2), -2 * e) < tiny


@pytest.mark.parametrize("dtype", DTYPES)
@FAST
@given(
    seed=st.integers(0, 2**16),
    shape=st.sampled_from(SHAPES),
    sigma2=st.data(),
    scale=st.data(),
)
def test_responsibilities_finite_rows_sum_to_one_and_bound_1(dtype, seed, shape, sigma2, scale):
    s2 = sigma2.draw(_sigma2(dtype))
    e = scale.draw(st.one_of(st.just(0), _scale(dtype)))
    X0, M0 = _problem(seed, shape, dtype)
    X, M = np.ldexp(X0, e).astype(dtype), np.ldexp(M0, e).astype(dtype)
    if _scaled_sigma2_refused(X, M, s2):
        with pytest.raises(ValueError, match="relative to the data's scale"):
            gl.responsibilities(X, M, s2)
        return
    R = np.asarray(gl.responsibilities(X, M, s2))
    assert R.dtype == dtype
    assert np.all(np.isfinite(R)) and np.all(R >= 0)
    k = shape[2]
    eps = float(np.finfo(dtype).eps)
    np.testing.assert_allclose(R.sum(1), 1.0, rtol=0, atol=4 * k * eps)
    labels, delta = _gaps(X0, M0)  # unscaled: Delta scales by 4^e exactly
    with np.errstate(over="ignore", divide="ignore"):
        if s2 == 0:
            bound = np.zeros_like(delta)
        else:
            log_ratio = np.log(delta) + 2 * e * math.log(2) - math.log(2 * s2)
            bound = (k - 1) * np.exp(-np.exp(log_ratio))
    bound = np.nan_to_num(bound, nan=0.0)
    # bound 1; the tolerance allows the rounding of the exponent at the dtype's precision.
    excess = np.abs(R - _onehot(labels, k)) - bound[:, None]
    tie_free = delta > 64 * eps * np.abs(X0).max() ** 2 * shape[1]
    assert np.all(excess[tie_free] <= 64 * eps * np.maximum(bound[tie_free, None], 1.0))


@pytest.mark.parametrize("dtype", DTYPES)
@FAST
@given(seed=st.integers(0, 2**16), shape=st.sampled_from(SHAPES), sigma2=st.data())
def test_log_likelihood_never_nan_and_bound_2(dtype, seed, shape, sigma2):
    s2 = sigma2.draw(_sigma2(dtype))
    if s2 == 0:
        return
    X, M = _problem(seed, shape, dtype)
    n, d, k = shape
    ll = float(gl.log_likelihood(X, M, s2))
    J = float(gl.kmeans_objective(X, M))
    assert not math.isnan(ll)
    if s2 >= J:  # every term moderate: the true value is representable
        assert math.isfinite(ll)
    if not math.isfinite(ll):
        return
    # bound 2 in units of 2 sigma2 (no overflow of the test's own arithmetic at sigma2 ~ max):
    # J / (2 sigma2) - n ln K <= -(l + n ln K + log_norm) <= J / (2 sigma2)
    log_norm = 0.5 * n * d * (math.log(2 * math.pi) + math.log(s2))
    middle = -(ll + n * math.log(k) + log_norm)
    eps = float(np.finfo(dtype).eps)
    upper = J / s2 / 2
    tol = 64 * n * eps * (abs(ll) + n * math.log(k) + abs(log_norm) + upper)
    assert upper - n * math.log(k) - tol <= middle <= upper + tol


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=5, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**16), shape=st.sampled_from(FIT_SHAPES), scale=st.data())
def test_kmeans_is_scale_invariant_and_em_at_zero_is_kmeans(dtype, seed, shape, scale):
    X, M = _problem(seed, shape, dtype)
    e = scale.draw(_scale(dtype))
    ref = gl.kmeans(X, M, max_iter=ITERS, block_size=BLOCK)
    scaled = gl.kmeans(np.ldexp(X, e), np.ldexp(M, e), max_iter=ITERS, block_size=BLOCK)
    np.testing.assert_array_equal(np.asarray(scaled.labels), np.asarray(ref.labels))
    assert int(scaled.n_iter) == int(ref.n_iter)
    np.testing.assert_array_equal(np.ldexp(np.asarray(scaled.means), -e), np.asarray(ref.means))
    assert np.all(np.isfinite(np.asarray(scaled.means)))
    # em at sigma2 = 0 is kmeans, also on the rescaled data
    em0 = gl.em(np.ldexp(X, e), np.ldexp(M, e), 0.0, max_iter=ITERS, tol=0.0, block_size=BLOCK)
    for field in ("labels", "n_iter", "converged", "means", "objective", "history"):
        np.testing.assert_array_equal(
            np.asarray(getattr(em0, field)), np.asarray(getattr(scaled, field)), err_msg=field
        )


@jax.jit
def _em_jit(X: jax.Array, M: jax.Array, s2: jax.Array) -> gl.FitResult:
    return gl.em(X, M, s2, max_iter=ITERS, tol=0.0, block_size=BLOCK)


_em_vmap = jax.jit(jax.vmap(_em_jit, in_axes=(None, None, 0)))


@pytest.mark.cpu_bits  # the vmapped fits' labels equal the single fits' (near ties too)
@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=4, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**16), sigmas=st.data())
def test_em_under_vmap_and_jit_over_the_whole_sigma2_range_is_never_nan(dtype, seed, sigmas):
    X, M = _problem(seed, FIT_SHAPES[0], dtype)
    s2 = np.asarray([0.0] + [sigmas.draw(_sigma2(dtype)) for _ in range(3)], dtype)
    batched = _em_vmap(X, M, jnp.asarray(s2))
    assert not np.any(np.isnan(np.asarray(batched.history)))
    assert not np.any(np.isnan(np.asarray(batched.objective)))
    assert np.all(np.isfinite(np.asarray(batched.means)))
    km = gl.kmeans(X, M, max_iter=ITERS, block_size=BLOCK)
    np.testing.assert_array_equal(np.asarray(batched.labels[0]), np.asarray(km.labels))
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(np.asarray(batched.means[0]), np.asarray(km.means), rtol=rtol)
    for i, s in enumerate(s2):
        one = _em_jit(X, M, jnp.asarray(s))
        np.testing.assert_array_equal(np.asarray(one.labels), np.asarray(batched.labels[i]))
        assert not np.isnan(float(one.objective))


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=6, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**16), shape=st.sampled_from(SHAPES), sigma2=st.data())
def test_kernel_and_jax_engines_agree_and_stay_finite(dtype, seed, shape, sigma2):
    s2 = jnp.asarray(sigma2.draw(_sigma2(dtype)), dtype)
    X, M = _problem(seed, shape, dtype)
    w = jnp.ones((shape[0],), dtype)
    args = (jnp.asarray(M), s2, jnp.asarray(X), w)
    kernel = jax.jit(engines.kernel_block)(*args)
    ref = jax.jit(engines.jax_block)(*args)
    np.testing.assert_array_equal(np.asarray(kernel[1]), np.asarray(ref[1]))
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    for name, a, b in zip(engines.Totals._fields, kernel[0], ref[0], strict=True):
        a, b = np.asarray(a), np.asarray(b)
        assert not np.any(np.isnan(a)) and not np.any(np.isnan(b)), name
        if name == "log_lik_core" and not np.isfinite(b):
            assert a == b == -np.inf  # -d/(2 sigma2) summed past the dtype's range
            continue
        assert np.all(np.isfinite(a)) and np.all(np.isfinite(b)), name
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * (1 + np.abs(b).max()))


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=4, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**16), power=st.data())
def test_weights_are_relative(dtype, seed, power):
    X, M = _problem(seed, FIT_SHAPES[0], dtype)
    info = np.finfo(dtype)
    # Weights 2^p w, w in [0.5, 2), are normal float64 numbers (the host arrays a user passes);
    # for float32 data the low ends are below float32's smallest normal number.
    low = info.minexp - 14 if dtype == np.float32 else info.minexp + 1
    ends = st.sampled_from([low, info.minexp + 3, info.maxexp - 8, info.maxexp - 5])
    p = power.draw(st.one_of(ends, st.integers(low, info.maxexp - 8)))
    w = np.random.default_rng(seed).uniform(0.5, 2.0, size=X.shape[0])
    ref = gl.em(X, M, 0.7, weights=w.astype(dtype), max_iter=ITERS, tol=0.0, block_size=BLOCK)
    res = gl.em(X, M, 0.7, weights=np.ldexp(w, p), max_iter=ITERS, tol=0.0, block_size=BLOCK)
    np.testing.assert_array_equal(np.asarray(res.labels), np.asarray(ref.labels))
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(np.asarray(res.means), np.asarray(ref.means), rtol=rtol)
    expected = np.ldexp(np.float64(ref.objective), p)
    if info.tiny <= abs(expected) <= info.max:  # else inf or 0 is the correctly rounded value
        np.testing.assert_allclose(float(res.objective), expected, rtol=rtol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_one_dimensional_rows_at_tiny_sigma2_are_one_hot(dtype):
    # The nearest exponent is 0 by its label: no row of inf or NaN at any tiny sigma2 (D = 1).
    rng = np.random.default_rng(5)
    info = np.finfo(dtype)
    X = rng.normal(size=(200, 1)).astype(dtype)
    M = rng.normal(size=(5, 1)).astype(dtype)
    labels = np.argmin((X - M.T) ** 2, axis=1)
    for s2 in np.geomspace(float(info.tiny), 1e-3 if dtype == np.float32 else 1e-50, 12):
        R = np.asarray(gl.responsibilities(X, M, float(s2)))
        assert np.all(np.isfinite(R))
        np.testing.assert_allclose(R.sum(1), 1.0, atol=8 * info.eps)
        np.testing.assert_array_equal(R.argmax(1), labels)


def test_largest_sigma2_gives_a_finite_log_likelihood_and_em():
    X, M = _problem(1, FIT_SHAPES[0], np.float64)
    for dtype in DTYPES:
        big = float(np.finfo(dtype).max) * 0.99
        ll = float(gl.log_likelihood(X.astype(dtype), M.astype(dtype), big))
        n, d = X.shape
        expected = -0.5 * n * d * (math.log(2 * math.pi) + math.log(big))  # d/(2 sigma2) ~ 0
        np.testing.assert_allclose(ll, expected, rtol=1e-5)
        fit = gl.em(X.astype(dtype), M.astype(dtype), big, max_iter=ITERS, block_size=BLOCK)
        assert np.all(np.isfinite(np.asarray(fit.history)))


def test_critical_sigma2_is_finite_wherever_the_answer_is():
    X, _ = _problem(2, (13, 4, 2), np.float64)
    ref = float(gl.critical_sigma2(X))
    for dtype, e in ((np.float32, 60), (np.float32, -50), (np.float64, 500), (np.float64, -480)):
        value = float(gl.critical_sigma2(np.ldexp(X, e).astype(dtype)))
        rtol = 1e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(value, np.ldexp(ref, 2 * e), rtol=rtol)


X64_OFF = textwrap.dedent(
    """
    import json, warnings
    import jax, numpy as np
    assert not jax.config.jax_enable_x64
    # Nothing may be truncated to float32 on the way (not even a value only checked).
    warnings.filterwarnings("error", message=".*truncated to dtype float32")
    import gmmlimit as gl
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 2)) * 1e150 + np.repeat([[0.0, 0.0], [5e150, 0.0]], 20, axis=0)
    M = X[[0, 39]]
    km = gl.kmeans(X, M)
    em = gl.em(X, M, 1e299)
    R = gl.responsibilities(X, M, 1e299)
    for name, value in (("kmeans", km.means), ("em", em.means), ("resp", R)):
        assert value.dtype == np.float64, (name, value.dtype)
        assert np.all(np.isfinite(np.asarray(value))), name
    # Out of core (an array, a list of chunks) and sharded: the same float64 fit.
    from gmmlimit import scale
    for name, fit in (
        ("kmeans_out_of_core", scale.kmeans_out_of_core(X, M)),
        ("kmeans_out_of_core list", scale.kmeans_out_of_core([X[:25], X[25:]], M)),
        ("kmeans_sharded", scale.kmeans_sharded(X, M)),
    ):
        assert fit.means.dtype == np.float64, (name, fit.means.dtype)
        np.testing.assert_array_equal(np.asarray(fit.labels), np.asarray(km.labels), err_msg=name)
        np.testing.assert_allclose(np.asarray(fit.means), np.asarray(km.means), rtol=1e-12)
    for name, fit in (
        ("em_out_of_core", scale.em_out_of_core(X, M, 1e299)),
        ("em_sharded", scale.em_sharded(X, M, 1e299)),
    ):
        assert fit.means.dtype == np.float64, (name, fit.means.dtype)
        np.testing.assert_allclose(np.asarray(fit.means), np.asarray(em.means), rtol=1e-12)
    assert float(gl.critical_sigma2(X)) > 1e300
    # Weights (checked on the host, never as a float64 device array), float32 data too, and a
    # sigma2 past the soft kernel (the kernel on the problem scaled by 1/4): no truncation.
    wts = rng.uniform(0.5, 2.0, 40)
    emw = gl.em(X, M, 1e299, weights=wts)
    X32, w32 = (X / 1e150).astype(np.float32), wts.astype(np.float32)
    far32 = gl.em(X32, X32[[0, 39]], 3e38, weights=w32, block_size=16)
    mean32 = (w32.astype(np.float64) @ X32) / w32.astype(np.float64).sum()
    assert emw.means.dtype == np.float64 and far32.means.dtype == np.float32
    assert np.all(np.isfinite(np.asarray(emw.means))) and np.isfinite(float(far32.objective))
    np.testing.assert_allclose(np.asarray(far32.means, np.float64), [mean32, mean32], rtol=1e-5)
    # Annealing (isotropic and any variant) and DP-means, here at D = 1: float64 too.
    Y = X[:, :1] / 1e150
    path = gl.anneal(Y, [4.0, 1.0, 0.1], k=2, key=jax.random.key(0), max_iter=20)
    vpath = gl.study.anneal_variant(
        gl.variants.isotropic, Y, [1.0, 0.1], init_params=gl.variants.IsotropicParams(Y[:2], 1.0)
    )
    dp = gl.variants.dpmeans(Y, 4.0, max_clusters=4, max_iter=20)
    dp_objective = gl.variants.dpmeans_objective(Y, dp.means[:2], 4.0)
    for name, value in (
        ("anneal", path.means), ("anneal_variant", vpath.means),
        ("dpmeans", dp.means), ("dpmeans_objective", dp_objective),
    ):
        assert value.dtype == np.float64, (name, value.dtype)
        assert np.all(np.isfinite(np.asarray(value))), name
    # Restarts, initialisations, diagnostics, rates and sweeps: every float they return, float64.
    key, M1 = jax.random.key(1), Y[[0, 39]]
    iso = gl.variants.isotropic, gl.variants.IsotropicParams(M1, 0.5)
    for name, value in (
        ("restarts", gl.restarts(key, Y, 2, n_init=2)),
        ("kmeans_plusplus", gl.init.kmeans_plusplus(key, Y, 2)),
        ("random_points", gl.init.random_points(key, Y, 2)),
        ("nearest_gap", gl.study.nearest_gap(Y, M1)),
        ("responsibility_gap", gl.study.responsibility_gap(Y, M1, 0.5)),
        ("responsibility_bound", gl.study.responsibility_bound(Y, M1, 0.5)),
        ("scaled_log_likelihood", gl.study.scaled_log_likelihood(Y, M1, 0.5)),
        ("update_gap", gl.study.update_gap(Y, M1, 0.5)),
        ("convergence_rate", gl.study.convergence_rate(Y, M1, 0.5)),
        ("collapsed_rate", gl.study.collapsed_rate(Y, 0.5)),
        ("gradient_fit", gl.study.gradient_fit(Y, M1, 0.5)),
        ("diagnose", gl.study.diagnose(*iso[:1], Y, iso[1])),
        ("limit_sweep", gl.study.limit_sweep(iso[0], Y, iso[1], [1.0, 0.1])),
    ):
        floats = [np.asarray(a) for a in jax.tree.leaves(value) if hasattr(a, "dtype")]
        floats = [a for a in floats if np.issubdtype(a.dtype, np.floating)]
        assert floats and all(a.dtype == np.float64 for a in floats), (name, floats)
    # A variant's temperature set on float64 parameters (docs/variants.md's gl.fit(v, X,
    # v.temperature.set(p, t))): float64, not 0.3 rounded to float32.
    cold = gl.variants.IsotropicParams(M1, np.float64(0.5))
    hot = gl.variants.isotropic.temperature.set(cold, 0.3)
    assert hot.sigma2.dtype == np.float64 and float(hot.sigma2) == 0.3, hot.sigma2
    print(json.dumps(np.asarray(km.means).tolist()))
    """
)


def test_float64_data_with_x64_off_are_computed_in_float64():
    env_code = "import jax; jax.config.update('jax_enable_x64', False)\n" + X64_OFF
    out = subprocess.run(
        [sys.executable, "-c", env_code], capture_output=True, text=True, timeout=300, check=False
    )
    assert out.returncode == 0, out.stderr[-3000:]
    km_means = np.asarray(json.loads(out.stdout.strip().splitlines()[-1]))
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 2)) * 1e150 + np.repeat([[0.0, 0.0], [5e150, 0.0]], 20, axis=0)
    np.testing.assert_allclose(km_means, np.asarray(gl.kmeans(X, X[[0, 39]]).means), rtol=1e-12)
