"""Every bad input of DESIGN.md section 3 raises a ValueError that names the problem, eagerly."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gmmlimit as gl
import gmmlimit.variants as gv
from gmmlimit.sklearn import GaussianMixture, IsotropicGaussianMixture, VariantMixture

RNG = np.random.default_rng(0)
X = RNG.normal(size=(20, 3))
M = X[:3].copy()


def _with(value, index, array):
    bad = np.array(array, dtype=float)
    bad[index] = value
    return bad


BAD_X = [
    (_with(np.nan, (4, 1), X), "NaN or inf"),
    (_with(np.inf, (0, 0), X), "NaN or inf"),
    (X[0], "2-D"),
    (np.zeros((0, 3)), "at least one row"),
    (X.astype(complex), "real"),
]


@pytest.mark.parametrize(("bad", "message"), BAD_X)
@pytest.mark.parametrize(
    "call",
    [
        lambda x: gl.kmeans(x, M),
        lambda x: gl.em(x, M, 1.0),
        lambda x: gl.responsibilities(x, M, 1.0),
        lambda x: gl.log_likelihood(x, M, 1.0),
        lambda x: gl.kmeans_objective(x, M),
        lambda x: gl.critical_sigma2(x),
        lambda x: gl.em_step(x, M, 1.0),
        lambda x: gl.init.kmeans_plusplus(jax.random.key(0), x, 3),
        lambda x: gl.init.random_points(jax.random.key(0), x, 3),
    ],
    ids=[
        "kmeans",
        "em",
        "resp",
        "loglik",
        "objective",
        "critical",
        "em_step",
        "kmeans++",
        "random_points",
    ],
)
def test_bad_data_raises(call, bad, message):
    with pytest.raises(ValueError, match=message):
        call(bad)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: gl.init.kmeans_plusplus(jax.random.key(0), X, 21), "exceeds the number"),
        (lambda: gl.init.random_points(jax.random.key(0), X, 0), "at least 1"),
        (lambda: gl.init.kmeans_plusplus(jax.random.key(0), X, 2.0), "integer"),
        (lambda: gl.restarts(jax.random.key(0), X, 21), "exceeds the number"),
        (lambda: gl.restarts(jax.random.key(0), X, -1), "at least 1"),
        (lambda: gl.kmeans(X[:2], X[:3]), "exceeds the number"),
        (lambda: gl.em(X[:2], X[:3], 1.0), "exceeds the number"),
        (lambda: gl.kmeans(X, np.zeros((0, 3))), "at least one mean"),
    ],
    ids=["kpp>N", "random<1", "k-float", "restarts>N", "restarts<1", "kmeans>N", "em>N", "K=0"],
)
def test_bad_k_raises(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_every_variants_init_names_a_bad_k_before_it_computes():
    # before: jax.random.choice's "Cannot take a larger sample (size 5) than population (size
    # 3) when 'replace=False'" (k > N), and an init of no component (k = 0)
    variants = [n for n in gv.__all__ if isinstance(getattr(gv, n), gl.Variant)]
    assert len(variants) >= 11
    rows = np.full((3, 2), 0.5)
    for name in variants:
        for k, message in ((5, "k=5 exceeds the number of samples N=3"), (0, "at least 1")):
            with pytest.raises(ValueError, match=message):
                getattr(gv, name).init(jax.random.key(0), rows, k)


@pytest.mark.parametrize(
    ("sigma2", "message"),
    [(-1.0, ">= 0"), (np.nan, "NaN"), (np.inf, "infinite"), ("big", "real number")],
)
@pytest.mark.parametrize(
    "call",
    [
        lambda s: gl.em(X, M, s),
        lambda s: gl.responsibilities(X, M, s),
        lambda s: gl.log_likelihood(X, M, s),
        lambda s: gl.em_step(X, M, s),
        lambda s: gl.restarts(jax.random.key(0), X, 3, sigma2=s),
    ],
    ids=["em", "resp", "loglik", "em_step", "restarts"],
)
def test_bad_sigma2_raises(call, sigma2, message):
    with pytest.raises(ValueError, match=message):
        call(sigma2)


def test_sigma2_that_underflows_in_float32_raises():
    with pytest.raises(ValueError, match="underflows"):
        gl.em(X.astype(np.float32), M.astype(np.float32), 1e-60)


def test_log_likelihood_at_zero_sigma2_raises():
    with pytest.raises(ValueError, match="not finite at sigma2 = 0"):
        gl.log_likelihood(X, M, 0.0)


@pytest.mark.parametrize(
    ("means", "message"),
    [
        (M[:, :2], "columns but X has 3"),
        (M[0], "2-D"),
        (_with(np.nan, (1, 1), M), "NaN or inf"),
    ],
    ids=["columns", "1-D", "nan"],
)
@pytest.mark.parametrize(
    "call",
    [
        lambda m: gl.kmeans(X, m),
        lambda m: gl.em(X, m, 0.5),
        lambda m: gl.responsibilities(X, m, 0.5),
        lambda m: gl.log_likelihood(X, m, 0.5),
        lambda m: gl.kmeans_objective(X, m),
        lambda m: gl.em_step(X, m, 0.5),
    ],
    ids=["kmeans", "em", "resp", "loglik", "objective", "em_step"],
)
def test_mismatched_means_raise(call, means, message):
    with pytest.raises(ValueError, match=message):
        call(means)


@pytest.mark.parametrize(
    "call",
    [
        lambda x, m: gl.kmeans(x, m),
        lambda x, m: gl.em(x, m, 0.5),
        lambda x, m: gl.responsibilities(x, m, 0.5),
        lambda x, m: gl.log_likelihood(x, m, 0.5),
        lambda x, m: gl.kmeans_objective(x, m),
        lambda x, m: gl.em_step(x, m, 0.5),
    ],
    ids=["kmeans", "em", "resp", "loglik", "objective", "em_step"],
)
def test_finite_means_that_overflow_the_data_dtype_raise(call):
    far = np.array(M, np.float64)
    far[1, 0] = 1e39  # finite in float64, inf in float32 (responsibilities 0.5 / 0.5 before)
    with pytest.raises(ValueError, match="beyond the largest float32 number"):
        call(np.asarray(X, np.float32), far)


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        (-np.ones(20), "non-negative"),
        (_with(-0.5, 3, np.ones(20)), "non-negative"),
        (np.ones(19), "shape"),
        (np.zeros(20), "all zero"),
        (_with(np.nan, 0, np.ones(20)), "NaN or inf"),
    ],
    ids=["negative", "one-negative", "shape", "zeros", "nan"],
)
@pytest.mark.parametrize(
    "call",
    [
        lambda w: gl.kmeans(X, M, weights=w),
        lambda w: gl.em(X, M, 0.5, weights=w),
        lambda w: gl.log_likelihood(X, M, 0.5, weights=w),
        lambda w: gl.kmeans_objective(X, M, weights=w),
        lambda w: gl.critical_sigma2(X, weights=w),
        lambda w: gl.init.kmeans_plusplus(jax.random.key(0), X, 3, weights=w),
        lambda w: gl.restarts(jax.random.key(0), X, 3, weights=w),
    ],
    ids=["kmeans", "em", "loglik", "objective", "critical", "kmeans++", "restarts"],
)
def test_bad_weights_raise(call, weights, message):
    with pytest.raises(ValueError, match=message):
        call(weights)


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (0, "jax.random key"),
        (np.array([0, 1]), "jax.random key"),
        (jax.random.split(jax.random.key(0), 3), "single key"),
        (jnp.zeros((3,), jnp.uint32), "single jax.random key"),
    ],
    ids=["int", "numpy", "batch", "raw-shape"],
)
@pytest.mark.parametrize(
    "call",
    [
        lambda key: gl.init.kmeans_plusplus(key, X, 3),
        lambda key: gl.init.random_points(key, X, 3),
        lambda key: gl.restarts(key, X, 3),
    ],
    ids=["kmeans++", "random_points", "restarts"],
)
def test_bad_key_raises(call, key, message):
    with pytest.raises(ValueError, match=message):
        call(key)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_iter": 0}, "max_iter must be >= 1"),
        ({"max_iter": 2.5}, "max_iter must be an integer"),
        ({"tol": -1.0}, "tol must be"),
        ({"tol": float("nan")}, "tol must be"),
        ({"block_size": 0}, "block_size must be >= 1"),
    ],
    ids=["max_iter0", "max_iter-float", "tol-neg", "tol-nan", "block0"],
)
def test_bad_options_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        gl.kmeans(X, M, **kwargs)
    with pytest.raises(ValueError, match=message):
        gl.em(X, M, 0.5, **kwargs)


def test_restarts_of_a_variant_refuse_sigma2():
    with pytest.raises(ValueError, match="a variant's fits take temperature="):  # was ignored
        gl.restarts(jax.random.key(0), X, 2, variant=gv.spherical, sigma2=5.0)


def test_restarts_rejects_unknown_init_and_bad_n_init():
    with pytest.raises(ValueError, match="init must be"):
        gl.restarts(jax.random.key(0), X, 3, init="kmeans||")
    with pytest.raises(ValueError, match="n_init must be >= 1"):
        gl.restarts(jax.random.key(0), X, 3, n_init=0)


@pytest.mark.parametrize("largest", [1e37, 1e-46])  # 1e37: NaN or inf sums before; 1e-46: 0
@pytest.mark.parametrize(
    "call",
    [
        lambda x, m, w: gl.fit(gv.isotropic, x, gv.IsotropicParams(m, 0.5), weights=w),
        lambda x, m, w: gl.init.kmeans_plusplus(jax.random.key(0), x, 2, weights=w),
        lambda x, m, w: gl.restarts(jax.random.key(0), x, 2, variant=gv.spherical, weights=w),
    ],
    # anneal: relative since s50; dpmeans since s57 (tests/test_offset_dpmeans.py)
    ids=["fit", "kmeans_plusplus", "restarts_variant"],
)
def test_weights_past_the_scale_window_are_refused_where_not_rescaled(call, largest):
    x32, m32 = np.asarray(X, np.float32), np.asarray(M[:2], np.float32)
    w = np.full(len(x32), largest)
    with pytest.raises(ValueError, match=r"weights are relative: divide them by their largest"):
        call(x32, m32, w)
    rescaled = gl.em(x32, m32, 0.5, weights=w)  # em scales them by a power of two itself
    by_hand = gl.em(x32, m32, 0.5, weights=np.ldexp(w, -math.frexp(largest)[1]))
    np.testing.assert_array_equal(rescaled.means, by_hand.means)


@pytest.mark.parametrize("largest", [1e37, 1e-46])
@pytest.mark.parametrize("sigma2", [0.0, 0.5])
def test_isotropic_restarts_read_weights_as_relative(sigma2, largest):
    # as em does: weights past the window are divided by a power of two before the float32 cast
    # (before: refused; the sharded and out-of-core fits: test_core_em.py)
    x32 = np.asarray(X, np.float32)
    w = np.linspace(0.5, 1.0, len(x32)) * largest
    key = jax.random.key(0)
    given = gl.restarts(key, x32, 2, sigma2=sigma2, n_init=2, weights=w)
    e = math.frexp(largest)[1]
    by_hand = gl.restarts(key, x32, 2, sigma2=sigma2, n_init=2, weights=np.ldexp(w, -e))
    np.testing.assert_array_equal(given.means, by_hand.means)
    np.testing.assert_array_equal(given.labels, by_hand.labels)
    with np.errstate(over="ignore"):  # the weighted J near 1e37 is past float32's range
        expected = np.ldexp(by_hand.distortion, e)
    if abs(expected) < np.finfo(np.float32).tiny:  # near 1e-46 it is subnormal: XLA flushes it
        expected = np.float32(0.0)
    np.testing.assert_array_equal(given.distortion, expected)


@pytest.mark.parametrize(
    ("variant", "temperature", "message"),
    [
        ("spherical", 0.0, r"beta must be in \(0, inf\]"),
        ("spherical", 1e39, "it becomes inf"),  # was the hard limit, silently
        ("spherical", 1e-45, "below the smallest normal number"),
        ("poisson", -1.0, r"beta must be in \(0, inf\]"),
    ],
)
def test_restarts_refuse_a_temperature_before_compiling(monkeypatch, variant, temperature, message):
    import gmmlimit._api as api

    def fail(*args, **kwargs):
        raise AssertionError("compiled code reached with invalid input")

    monkeypatch.setattr(api, "_init_batch", fail)
    X32 = np.abs(np.asarray(X, np.float32))  # Poisson data are non-negative
    with pytest.raises(ValueError, match=message):
        gl.restarts(
            jax.random.key(0), X32, 2, variant=getattr(gv, variant), temperature=temperature
        )


def test_validation_happens_before_any_compilation(monkeypatch):
    """A bad input must be refused before the compiled driver is ever called."""
    import gmmlimit._api as api

    def fail(*args, **kwargs):
        raise AssertionError("compiled code reached with invalid input")

    monkeypatch.setattr(api, "fit_compiled", fail)
    monkeypatch.setattr(api, "stats_compiled", fail)
    monkeypatch.setattr(api, "step_compiled", fail)
    with pytest.raises(ValueError):
        gl.em(_with(np.nan, (0, 0), X), M, 1.0)
    with pytest.raises(ValueError):
        gl.kmeans(X, M, weights=-np.ones(20))
    with pytest.raises(ValueError):
        gl.log_likelihood(X, M, -1.0)
    with pytest.raises(ValueError):
        gl.em_step(X, M[:, :2], 1.0)


def test_traced_inputs_pass_through_under_jit():
    """Under jit only static facts are checked; a valid traced sigma2 still works."""
    fitted = jax.jit(lambda s: gl.em(X, M, s, max_iter=5).means)(0.5)
    assert fitted.shape == M.shape
    assert np.all(np.isfinite(np.asarray(fitted)))
    with pytest.raises(ValueError, match="columns but X has 3"):
        jax.jit(lambda m: gl.kmeans(X, m).means)(M[:, :2])


@pytest.mark.parametrize(
    ("dtype", "value"), [(np.float64, 1e-310), (np.float32, 1e-39), (np.float64, 5e-324)]
)
def test_subnormal_sigma2_is_refused_everywhere(dtype, value):
    Xd, Md = X.astype(dtype), M.astype(dtype)
    calls = [
        lambda: gl.em(Xd, Md, value),
        lambda: gl.em_step(Xd, Md, value),
        lambda: gl.responsibilities(Xd, Md, value),
        lambda: gl.log_likelihood(Xd, Md, value),
        lambda: gl.study.responsibility_bound(Xd, Md, value),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="smallest normal"):
            call()


def test_sigma2_too_small_for_the_data_scale_is_refused():
    with pytest.raises(ValueError, match="relative to the data's scale"):
        gl.em(X * 2.0**400, M * 2.0**400, 1e-300)


@pytest.mark.parametrize("sigma2", [np.ones(1), np.ones((2,)), [0.5]])
def test_array_sigma2_is_refused_everywhere(sigma2):
    calls = [
        lambda: gl.em(X, M, sigma2),
        lambda: gl.em_step(X, M, sigma2),
        lambda: gl.responsibilities(X, M, sigma2),
        lambda: gl.log_likelihood(X, M, sigma2),
        lambda: gl.study.responsibility_bound(X, M, sigma2),
        lambda: gl.study.responsibility_gap(X, M, sigma2),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="sigma2 must be a scalar"):
            call()


@pytest.mark.parametrize("means", [np.array([["a", "b", "c"]] * 3), [[None, 1, 2]] * 3])
def test_non_numeric_means_are_refused(means):
    for call in (lambda: gl.kmeans(X, means), lambda: gl.responsibilities(X, means, 1.0)):
        with pytest.raises(ValueError, match="means"):
            call()


def test_complex_weights_are_refused():
    w = np.ones(X.shape[0]) + 1j
    for call in (lambda: gl.kmeans(X, M, weights=w), lambda: gl.em(X, M, 1.0, weights=w)):
        with pytest.raises(ValueError, match="weights must be real"):
            call()


@pytest.mark.parametrize("call", [gl.kmeans, lambda x, m, **kw: gl.em(x, m, 1.0, **kw)])
def test_zero_block_size_is_refused(call):
    with pytest.raises(ValueError, match="block_size must be >= 1"):
        call(X, M, block_size=0)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("index", [(0, 0), (13, 1), (-1, -1)], ids=["first", "inside", "last"])
def test_a_single_nan_or_inf_anywhere_is_counted_before_any_fit(bad, index):
    # The check reads the largest and the smallest value (NaN propagates through both), so one
    # bad value of either sign, anywhere, must still be found and counted.
    with pytest.raises(ValueError, match="X contains 1 NaN or inf"):
        gl.kmeans(_with(bad, index, X), M)


@pytest.mark.parametrize("exponent", [-90, 0, 40, 70])
@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["positive", "negative"])
@pytest.mark.parametrize("kind", ["numpy", "jax"])
def test_the_data_scale_is_read_from_the_largest_magnitude_of_either_sign(exponent, sign, kind):
    # The largest magnitude is one value, positive or negative; the rescaling exponent must be
    # that of max |x| (as frexp gives it) outside the float32 window and 0 inside it.
    from gmmlimit._validation import SCALE_WINDOW, scale_exponent

    data = np.random.default_rng(5).uniform(-0.5, 0.5, size=(40, 3)) * 2.0**exponent
    data[17, 2] = sign * 0.75 * 2.0**exponent
    data = data.astype(np.float32)
    expected = int(np.frexp(np.abs(data).max())[1])
    if abs(expected) <= SCALE_WINDOW[jnp.dtype(jnp.float32)]:
        expected = 0
    array = jnp.asarray(data) if kind == "jax" else data
    assert scale_exponent(array) == expected


@pytest.mark.parametrize("aligned", [True, False])
def test_numpy_data_are_copied_once_and_never_shared(aligned):
    # as_data copies NumPy rows into JAX through an aligned buffer of its own (fast), so a fit's
    # rows never alias the caller's array, whatever its alignment: writing to it later changes
    # nothing already handed over.
    from gmmlimit import _host
    from gmmlimit._validation import as_data

    values = np.arange(3000, dtype=np.float32).reshape(1000, 3)
    X = _host.aligned_empty(values.shape, values.dtype) if aligned else values.copy()
    X[...] = values
    assert _host.is_aligned(X) == aligned or not aligned  # NumPy's own may be aligned by chance
    rows = as_data(X)
    X[...] = -1.0
    assert rows.dtype == np.float32 and rows.shape == (1000, 3)
    np.testing.assert_array_equal(np.asarray(rows), values)
    # a strided view is read correctly too
    np.testing.assert_array_equal(np.asarray(as_data(values[::2, ::2])), values[::2, ::2])


_XW = np.array([[0.0, 0.0], [0.0, 2.0], [8.0, 0.0], [8.0, 2.0]])
_LIST_WEIGHT_CALLS = {
    "em": lambda w: gl.em(_XW, _XW[::2], 1.0, weights=w),
    "kmeans": lambda w: gl.kmeans(_XW.astype(np.float32), _XW[::2], weights=w),
    "em_step": lambda w: gl.em_step(_XW, _XW[::2], 1.0, weights=w),
    "log_likelihood": lambda w: gl.log_likelihood(_XW, _XW[::2], 1.0, weights=w),
    "kmeans_objective": lambda w: gl.kmeans_objective(_XW, _XW[::2], weights=w),
    "critical_sigma2": lambda w: gl.critical_sigma2(_XW, weights=w),
    "restarts": lambda w: gl.restarts(jax.random.key(0), _XW, 2, weights=w),
    "anneal": lambda w: gl.anneal(_XW, [1.0, 0.1], key=jax.random.key(0), k=2, weights=w),
    "em_out_of_core": lambda w: gl.scale.em_out_of_core(_XW, _XW[::2], 1.0, weights=w),
    "kmeans_sharded": lambda w: gl.scale.kmeans_sharded(_XW, _XW[::2], weights=w),
    "update_gap": lambda w: gl.study.update_gap(_XW, _XW[::2], 1.0, weights=w),
    "scaled_log_likelihood": lambda w: gl.study.scaled_log_likelihood(
        _XW, _XW[::2], 1.0, weights=w
    ),
}


@pytest.mark.parametrize("name", sorted(_LIST_WEIGHT_CALLS))
def test_weights_given_as_a_list_are_the_array(name):
    # the host check of the weights read .shape before converting: a list raised AttributeError
    call = _LIST_WEIGHT_CALLS[name]
    as_list, as_array = call([1, 1, 1, 2]), call(np.array([1.0, 1.0, 1.0, 2.0]))
    for got, want in zip(jax.tree.leaves(as_list), jax.tree.leaves(as_array), strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


@pytest.mark.parametrize(("value", "dtype", "n"), [(1e30, np.float32, 7), (1e20, np.float32, 37),
                                                   (1e200, np.float64, 10)])  # fmt: skip
def test_critical_sigma2_of_constant_data_is_zero_at_any_scale(value, dtype, n):
    # the one-pass weighted mean was an ulp off the rows; squared and scaled back by 4^e it was
    # the answer: inf for 1e30 float32 and 1e200 float64, 7e26 for 37 rows of 1e20
    assert float(gl.critical_sigma2(np.full((n, 1), value, dtype))) == 0.0


def test_big_endian_data_are_read_as_native():
    # np.fromfile and FITS readers give '>f4': JAX refused the dtype with a TypeError
    X = np.array([[0.0, 0.0], [0.0, 1.0], [9.0, 9.0], [9.0, 10.0]])
    native = gl.kmeans(X.astype(np.float32), X[::2].astype(np.float32))
    swapped = gl.kmeans(X.astype(">f4"), X[::2].astype(np.float32))
    np.testing.assert_array_equal(np.asarray(swapped.means), np.asarray(native.means))
    assert swapped.means.dtype == np.float32


def test_an_iteration_count_past_int32_is_refused_by_name():
    # max_iter=2**31 failed in jit's argument parsing with an OverflowError
    X = np.array([[0.0], [1.0], [5.0]])
    with pytest.raises(ValueError, match=r"max_iter must be at most 2\^31 - 1"):
        gl.em(X, X[:2], 1.0, max_iter=2**31)


def test_integer_data_the_float_dtype_cannot_hold_are_refused():
    """Integer data are computed in the default float dtype: past 2^p they would be rounded."""
    from gmmlimit.scale import kmeans_out_of_core, kmeans_sharded

    counts = np.array([[0], [1], [2**53 + 1], [7]], np.int64)  # x64 on: float64, 2^53 + 1 rounds
    for call in [
        lambda x: gl.kmeans(x, x[:2]),
        lambda x: gl.em(x, x[:2], 1.0),
        lambda x: gl.critical_sigma2(x),
        lambda x: kmeans_out_of_core([x[:2], x[2:]], x[:2].astype(np.float64)),
        lambda x: kmeans_sharded(x, x[:2].astype(np.float64)),
    ]:
        with pytest.raises(ValueError, match=r"integers up to 9007199254740993, past 2\^53"):
            call(counts)
    # 2^53 itself, and negative counts, are held exactly: the fit equals the float64 data's
    held = np.array([[0], [-1], [-(2**53)], [7]], np.int64)
    assert np.array_equal(gl.kmeans(held, held[:2]).means, gl.kmeans(held * 1.0, held[:2]).means)
    with jax.enable_x64(False):  # integers are computed in float32: exact up to 2^24
        small = np.array([[0], [3], [2**24], [5]], np.int32)
        fit = gl.kmeans(small, small[:2])
        assert fit.means.dtype == jnp.float32
        assert np.array_equal(fit.means, gl.kmeans(small.astype(np.float32), small[:2]).means)
        with pytest.raises(ValueError, match=r"past 2\^24 = 16777216: float32"):
            gl.kmeans(small + 1, small[:2])
        with pytest.raises(ValueError, match=r"past 2\^24"):
            kmeans_out_of_core([small[:2] + 1, small[2:] + 1], small[:2].astype(np.float32))
        # as float64 data they are computed in float64, exactly
        wide = gl.kmeans((small + 1).astype(np.float64), small[:2].astype(np.float64))
        assert wide.means.dtype == np.float64


@pytest.mark.parametrize(
    "call",
    [
        lambda n: gl.kmeans(X, M, max_iter=n),
        lambda n: gl.em(X, M, 0.5, max_iter=n),
        lambda n: gl.fit(gv.spherical, X, gv.spherical.init(jax.random.key(0), X, 3), max_iter=n),
        lambda n: gl.restarts(jax.random.key(0), X, 3, max_iter=n),
        lambda n: gl.anneal(X, [1.0, 0.1], k=3, key=jax.random.key(0), max_iter=n),
        lambda n: gl.scale.kmeans_out_of_core(X, M, max_iter=n),
        lambda n: gl.scale.kmeans_sharded(X, M, max_iter=n),
        lambda n: gv.dpmeans(X, 4.0, max_iter=n),
        lambda n: IsotropicGaussianMixture(3, sigma2=1.0, max_iter=n).fit(X),
        lambda n: GaussianMixture(3, max_iter=n).fit(X),
    ],
    ids=[
        "kmeans",
        "em",
        "fit",
        "restarts",
        "anneal",
        "out_of_core",
        "sharded",
        "dpmeans",
        "IsotropicGaussianMixture",
        "GaussianMixture",
    ],
)
def test_a_max_iter_whose_history_cannot_be_allocated_is_refused(call):
    # each fit records its objective at every iteration: max_iter = 2^30 allocated a history
    # of 2^30 float64 values (8 GiB) before it ran
    with pytest.raises(
        ValueError, match=r"max_iter must be at most 2\^24 = 16777216; got 1073741824"
    ):
        call(2**30)


@pytest.mark.parametrize("low", [jnp.bfloat16, jnp.float16], ids=["bfloat16", "float16"])
def test_half_precision_inputs_are_computed_in_float32(low):
    # before: bfloat16 data were widened, but bfloat16 means, sigma2, weights or a variant's
    # parameters (its init's, on bfloat16 data) were refused as "must hold real numbers"
    def held(a):  # the values bfloat16 holds: float16 holds them too (8 of its 11 bits)
        return np.asarray(jnp.asarray(a, jnp.bfloat16), np.float32)

    x32, w32 = held(X), held(np.linspace(0.5, 2.0, len(X)))
    m32 = x32[:3]
    x, m, w = (jnp.asarray(a, low) for a in (x32, m32, w32))
    soft, ref = gl.em(x, m, low(0.5), weights=w), gl.em(x32, m32, 0.5, weights=w32)
    assert soft.means.dtype == np.float32
    np.testing.assert_array_equal(np.asarray(soft.means), np.asarray(ref.means))
    p_low = gv.diag.init(jax.random.key(0), x, 3)
    assert {leaf.dtype for leaf in jax.tree.leaves(p_low)} == {jnp.dtype(low)}
    fit = gl.fit(gv.diag, x, p_low)
    widened = jax.tree.map(lambda a: np.asarray(a, np.float32), p_low)
    np.testing.assert_array_equal(
        np.asarray(fit.params.means), np.asarray(gl.fit(gv.diag, x32, widened).params.means)
    )
    assert fit.params.variances.dtype == np.float32
    # the scikit-learn wrapper: fit and score the float32 values (before: bfloat16 rows were
    # "arrays of bytes/strings" to scikit-learn's validation)
    est = VariantMixture(gv.diag, 2, random_state=0).fit(np.asarray(x))
    ref = VariantMixture(gv.diag, 2, random_state=0).fit(x32)
    assert est.means_.dtype == np.float32
    np.testing.assert_array_equal(est.means_, ref.means_)
    np.testing.assert_array_equal(est.score_samples(np.asarray(x)), ref.score_samples(x32))
