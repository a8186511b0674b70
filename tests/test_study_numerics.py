"""Numerics of the study tools at the edges of the dtype: overflow, far fixed points, K > N.

Each test reproduces a defect of an audit (the numbers it read before are in its comments).
"""

import math
from fractions import Fraction

import jax
import numpy as np
import pytest

import gmmlimit as gl
from gmmlimit import _rates, study
from gmmlimit import variants as gv

_rng = np.random.default_rng(5)
X32 = _rng.normal(size=(40, 2)).astype(np.float32)
X64 = X32.astype(np.float64)
KEY = jax.random.key(0)


def test_limit_sweep_reports_every_float_in_the_data_dtype():
    # before: objective_gap, update_gap, fit_label_agreement and the temperatures were float64
    # for float32 data, beside float32 resp_gap, bound and fit_means_gap
    start = gv.IsotropicParams(X32[:2], np.float32(0.5))
    out = study.limit_sweep(gv.isotropic, X32[:20], start, [1.0, 0.1], max_iter=5)
    floats = {k: v for k, v in out.items() if np.issubdtype(np.asarray(v).dtype, np.floating)}
    assert set(floats) >= {"objective_gap", "update_gap", "temperature", "sigma2", "resp_gap"}
    assert {k: np.asarray(v).dtype for k, v in floats.items()} == dict.fromkeys(
        floats, np.dtype(np.float32)
    )
    np.testing.assert_array_equal(out["sigma2"], np.float32([1.0, 0.1]))
    diag = study.diagnose(gv.isotropic, X32[:20], start._replace(sigma2=np.float32(0.1)))
    assert out["objective_gap"][1] == diag.objective - diag.hard_objective
    assert out["update_gap"][1] == diag.update_gap


def test_linearized_rate_is_inf_only_where_the_true_rate_passes_float64():
    # The middle row is tied exactly: J = (200 / 9) / sigma2 (DESIGN.md's Jacobian, by hand).
    X = np.array([[-10.0], [0.0], [10.0]])
    means = np.array([[-10.0], [10.0]])
    for sigma2 in (1e-300, 1e-306):
        assert study.linearized_rate(X, means, sigma2) == pytest.approx(200 / 9 / sigma2, 1e-13)
    tiny = float(np.finfo(np.float64).tiny)  # true rate 1.0e309: past the largest float64
    assert float(np.finfo(np.float64).max) * tiny < 200 / 9
    assert study.linearized_rate(X, means, tiny) == math.inf
    # float32 data never get there: the same tie at float32's smallest normal sigma2
    tiny32 = np.finfo(np.float32).tiny
    rate = study.linearized_rate(X.astype(np.float32), means.astype(np.float32), tiny32)
    assert rate == pytest.approx(200 / 9 / float(tiny32), rel=1e-6)


def _iterates(X, means, sigma2, n):
    path = [np.asarray(means, np.float64)]
    for _ in range(n):
        means = gl.em_step(X, means, sigma2)
        path.append(np.asarray(means, np.float64))
    return np.stack(path)


@pytest.mark.parametrize(
    ("data_exponent", "fixed"),
    [(0, 1e30), (30, 2.0**70), (-100, 1.0)],
    ids=["unit_data_far_fixed_point", "data_at_the_window_edge", "tiny_data_unit_fixed_point"],
)
def test_convergence_rate_takes_a_fixed_point_at_any_scale(data_exponent, fixed):
    # before: errors inf and rate NaN in all three (the fixed point was scaled with the data,
    # and squared, in float32)
    X = np.ldexp(X32, data_exponent)
    start, sigma2 = X[:3], np.ldexp(np.float32(0.5), 2 * data_exponent)
    point = np.full((3, 2), fixed, np.float32)
    opts = dict(n_steps=10, fixed_point_iter=50)  # test_study_edges' program
    result = study.convergence_rate(X, start, sigma2, fixed_point=point, **opts)
    path = _iterates(X, start, sigma2, 10)
    expected = np.sqrt(np.sum((path - point.astype(np.float64)) ** 2, axis=(1, 2)))
    np.testing.assert_allclose(result.errors, expected, rtol=1e-12)
    assert np.all(np.isfinite(result.ratios)) and result.rate == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_array_equal(result.fixed_point, point)


def test_convergence_rate_ratios_stay_finite_where_errors_pass_float64():
    # float64 iterates near the largest number, a fixed point of the other sign: the errors are
    # past float64 (inf), their ratios are not (before: inf / inf = NaN, and the rate NaN). The
    # host half of convergence_rate, on iterates built here (no compiled trajectory to wait for)
    path = np.ldexp(np.stack([X64[:3] * (1 + 0.5**t) for t in range(5)]), 1020)
    point = np.full((3, 2), -1.7e308)
    mantissas, exponents = _rates._error_norms(path, point)
    floor = Fraction(1e300)
    rate, ratios, errors = _rates._rate_from_norms(mantissas, exponents, floor)
    assert np.all(np.isinf(errors))
    scaled = np.sqrt(np.sum((np.ldexp(path, -1024) - np.ldexp(point, -1024)) ** 2, axis=(1, 2)))
    np.testing.assert_allclose(ratios, scaled[1:] / scaled[:-1], rtol=1e-14)
    assert rate == np.median(ratios[2:])
    # the floor is compared exactly: an error equal to it is noise, one ulp above is not
    at = np.array([0.75, 0.75, 0.5]), np.array([1, 1, 1])
    assert np.isnan(_rates._rate_from_norms(*at, Fraction(1.5))[1]).all()
    above = _rates._rate_from_norms(*at, Fraction(np.nextafter(1.5, 0.0)))[1]
    np.testing.assert_array_equal(above, [1.0, 2 / 3])


def test_a_variants_gap_of_more_components_than_rows_answers_as_the_isotropic_spelling():
    # before: the variant spelling refused K = 3 > N = 2 ("k=3 exceeds the number of samples")
    means = X64[:3]
    params = gv.IsotropicParams(means, 0.5)
    for name in ("responsibility_gap", "responsibility_bound"):
        spelled = getattr(study, name)
        iso = spelled(X64[:2], means, 0.5)
        np.testing.assert_array_equal(spelled(X64[:2], params, variant=gv.isotropic), iso)
    counts = _rng.poisson(3.0, size=(2, 2)).astype(np.float64)
    poisson = gv.PoissonParams(counts[[0, 1, 0]] + 1.0, np.full(3, 1 / 3), 1.0, 1e-3)
    assert study.diagnose(gv.poisson, counts, poisson).resp_gap.shape == (2, 3)
    with pytest.raises(ValueError, match="exceeds the number of samples"):  # a fit still does
        study.limit_sweep(gv.isotropic, X64[:2], params, [1.0])


def test_scaled_log_likelihood_is_finite_wherever_its_value_is():
    J = float(gl.kmeans_objective(X64, X64[:1]))
    top32 = np.finfo(np.float32).max
    # K = 1 at the largest sigma2: L~ = J (before: NaN, 2 sigma2 overflowed and met lse = 0)
    for data in (X32, X64):
        at_top = study.scaled_log_likelihood(data, data[:1], np.finfo(data.dtype).max)
        assert at_top == study.scaled_log_likelihood(data, data[:1], 0.0)
        assert float(at_top) == pytest.approx(J, rel=1e-6)
    # one row, two means: L~ = -2 sigma2 ln(1 + e^-tiny) = -0.92 of the largest float64
    # (before: -inf)
    big = np.finfo(np.float64).max / 1.5
    value = float(study.scaled_log_likelihood(X64[:1], X64[:2], big))
    assert value == pytest.approx(-big * (2 * math.log(2)), rel=1e-12)
    # float32 data at 2^-60 with sigma2 = 1e30: -8.8e31 (before: -inf, the rescaled sigma2
    # was capped)
    tiny_data = np.ldexp(X32, -60)
    lse = np.log(3.0)  # every exponent rounds to 0 at this sigma2
    d = np.min(((tiny_data[:, None].astype(np.float64) - tiny_data[:3]) ** 2).sum(-1), axis=1)
    expected = np.sum(d - 2 * 1e30 * lse)
    value = study.scaled_log_likelihood(tiny_data, tiny_data[:3], np.float32(1e30))
    assert float(value) == pytest.approx(expected, rel=1e-6)
    # what the docstring states: -inf only once L~ < -(largest float32), about 4e36 here
    below = study.scaled_log_likelihood(X32, X32[:3], np.float32(3e36))
    assert np.isfinite(below) and float(below) > -float(top32)
    assert study.scaled_log_likelihood(X32, X32[:3], np.float32(1e37)) == -np.inf


def test_scalar_options_share_one_check_that_names_them():
    # before: anneal_variant cast merge_tol = 1e39 to float32 inf and ran (every location one
    # centre); gl.em ran tol=True as tol = 1.0
    with pytest.raises(ValueError, match=r"merge_tol=1e\+39 overflows in float32"):
        study.anneal_variant(gv.isotropic, X32, [1.0], key=KEY, k=2, merge_tol=1e39)
    with pytest.raises(ValueError, match="tol must be a real number >= 0; got True"):
        gl.em(X32, X32[:2], 0.5, tol=True)
    for call, message in [
        (lambda: gl.checks.check_positive_scalar(1e-40, np.float32, "floor"), "floor=1e-40 un"),
        (lambda: gl.checks.check_positive_scalar(0.0, np.float32, "floor"), "finite number > 0"),
        (lambda: gl.anneal(X32, [1.0], key=KEY, k=2, perturbation=1e-40), "not representable"),
        (lambda: study.convergence_rate(X32, X32[:2], 0.5, floor_rel="0.1"), "floor_rel must"),
        (lambda: study.count_distinct(X32[:2], 1e39), "tol=1e\\+39 overflows in float32"),
    ]:
        with pytest.raises(ValueError, match=message):
            call()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_responsibility_gap_satisfies_bound_one_on_its_own_output(dtype):
    # before: the label's entry was |1 - r|, which cancels: at sigma2 = 0.0136175 (float64)
    # 2.2e-16 against the bound 1.13e-16 (true e / (1 + e) = 1.13e-16); 599 of 4001 sigma2 broke
    # bound 1 in float64, 920 in float32. Now the other columns' sum, as accurate as they are.
    X = np.array([[0.0], [0.25]], dtype)
    means = np.array([[0.0], [1.0], [3.0]], dtype)
    grid = np.geomspace(0.01, 0.05, 801).astype(dtype)  # exp(-g) from 1e-22 to 0.007
    gaps = np.asarray(jax.vmap(lambda s: study.responsibility_gap(X, means, s))(grid))
    bounds = np.asarray(jax.vmap(lambda s: study.responsibility_bound(X, means, s))(grid))
    assert (gaps <= bounds[:, :, None]).all()
    # each row's deviation at its label is the sum of its other responsibilities, near exact
    for s2, gap in zip(grid[::8], gaps[::8], strict=True):
        for n in range(2):
            d = [Fraction(float(x)) ** 2 for x in (means[:, 0] - X[n, 0])]
            e = [math.exp(-float(dk - d[0]) / (2 * float(s2))) for dk in d]  # label 0
            exact = sum(e[1:]) / sum(e)
            assert gap[n, 0] == pytest.approx(exact, rel=64 * float(np.finfo(dtype).eps), abs=0)
    # the variant spelling, through limits.diagnose, measures the same
    params = gv.IsotropicParams(means, dtype(0.0136175))
    diag = study.diagnose(gv.isotropic, X, params)
    assert (np.asarray(diag.resp_gap) <= np.asarray(diag.bound)[:, None]).all()
    np.testing.assert_array_equal(diag.resp_gap, study.responsibility_gap(X, params))


def test_the_onehot_threshold_is_that_of_the_dtype_data_are_computed_in():
    import jax.numpy as jnp

    # before: bfloat16 was refused as "must be floating", float16 gave its own 9.70 although
    # such data are computed in float32, and longdouble gave 11355
    f32 = study.onehot_threshold(np.float32)
    assert study.onehot_threshold(jnp.bfloat16) == study.onehot_threshold(np.float16) == f32
    assert f32 == pytest.approx(87.3365, abs=1e-4)
    with pytest.raises(ValueError, match="wider than float64"):
        study.onehot_threshold(np.longdouble)
    with pytest.raises(ValueError, match="must be floating"):
        study.onehot_threshold(np.int32)
