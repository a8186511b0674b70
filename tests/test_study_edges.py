"""Edges of the study tools: zero spread, far scales, small sigma2, option validation."""

import jax
import numpy as np
import pytest

import gmmlimit as gl
from gmmlimit import _ascent, study

_rng = np.random.default_rng(3)
X32 = _rng.normal(size=(40, 2)).astype(np.float32)
# two clusters 10 apart: at small sigma2 every responsibility is one-hot
Y = np.r_[_rng.normal(size=(20, 2)), _rng.normal(size=(20, 2)) + 10.0]
N_STEPS = 3


def test_zero_spread_data_get_a_learning_rate_only_where_one_is_used(monkeypatch):
    # the shapes of the other tests' fits (the compiled programs are shared)
    Z, start = np.ones_like(X32), np.zeros_like(X32[:3])
    fit = study.gradient_fit(Z, start, 0.5, n_steps=N_STEPS)  # Adam: a default step is derived
    assert np.all(np.isfinite(fit.history))
    assert float(fit.log_likelihood) > float(fit.history[0])  # the means moved up
    costs = study.compare_em_gradient(Z, start, 0.5, methods=("em",), n_steps=N_STEPS, repeats=1)
    assert np.all(np.isfinite(costs["em"].history))
    # L-BFGS takes no step size: it reaches its program (stubbed here: it compiles slowly)
    calls = []
    monkeypatch.setattr(_ascent, "_gradient_compiled", lambda *a, **k: calls.append(a) or fit)
    study.gradient_fit(Z[:1], start[:1], 0.5, optimizer="lbfgs", n_steps=N_STEPS)  # N = 1
    assert len(calls) == 1 and float(calls[0][-1]) == 1.0  # the factor L-BFGS's steps take


def test_a_learning_rate_the_data_dtype_cannot_hold_is_refused():
    with pytest.raises(ValueError, match=r"learning_rate.*float32"):
        study.gradient_fit(X32, X32[:3], 0.5, learning_rate=1e39, n_steps=N_STEPS)
    with pytest.raises(ValueError, match=r"learning_rate.*float32"):
        study.compare_em_gradient(X32, X32[:3], 0.5, learning_rate=[0.1, 1e39], repeats=1)


def test_far_scale_float32_rates_and_gradient_answer_as_the_unit_scale():
    # float32 data at 2^64: squared distances overflow unless computed as X / 2^64
    e = 64
    far, start, s2 = np.ldexp(X32, e), np.ldexp(X32[:3], e), np.ldexp(np.float32(0.5), 2 * e)
    opts = dict(n_steps=10, fixed_point_iter=50)
    unit = study.convergence_rate(X32, X32[:3], 0.5, **opts)
    scaled = study.convergence_rate(far, start, s2, **opts)
    assert 0 < unit.rate < 1 and np.isfinite(scaled.floor)
    assert scaled.rate == pytest.approx(unit.rate, rel=1e-5)
    np.testing.assert_allclose(scaled.fixed_point, np.ldexp(unit.fixed_point, e), rtol=1e-5)

    lin_unit = study.linearized_rate(X32, unit.fixed_point, 0.5)
    lin_far = study.linearized_rate(far, scaled.fixed_point, s2)
    assert 0 < lin_unit < 1
    assert lin_far == pytest.approx(lin_unit, rel=1e-4)

    fit_far = study.gradient_fit(far, start, s2, n_steps=N_STEPS)
    assert np.all(np.isfinite(fit_far.history)) and np.all(np.isfinite(fit_far.means))
    assert float(fit_far.log_likelihood) > float(fit_far.history[0])
    expected = gl.log_likelihood(far, fit_far.means, s2)
    assert float(fit_far.log_likelihood) == pytest.approx(float(expected), rel=1e-5)
    # data at 2^-40 are the same problem once rescaled: the same fit, scaled by 2^-104
    tiny = study.gradient_fit(
        np.ldexp(X32, -40),
        np.ldexp(X32[:3], -40),
        np.ldexp(np.float32(0.5), -80),
        n_steps=N_STEPS,
    )
    np.testing.assert_array_equal(np.ldexp(tiny.means, 104), fit_far.means)


@pytest.mark.parametrize(("dtype", "sigma2"), [(np.float64, 1e-18), (np.float32, 1e-8)])
def test_linearized_rate_is_zero_where_responsibilities_are_one_hot(dtype, sigma2):
    # EM's fixed point there is the two clusters' means (convergence_rate measures 0); the
    # forward-mode derivative of a softmax read 0.18 (float64, 1e-18) and 2.1 (float32, 1e-8)
    data = Y.astype(dtype)
    fixed = np.stack([data[:20].mean(0), data[20:].mean(0)])
    assert study.linearized_rate(data, fixed, sigma2) == 0.0


def test_count_distinct_validates_its_inputs_and_keeps_float64():
    assert int(study.count_distinct([[0.0], [0.5]], 0.1)) == 2
    for means, tol, name in [
        (np.array([0.0, 0.5]), 0.1, "means"),
        (np.array([[0.0], [np.nan]]), 0.1, "means"),
        (np.array([[0.0], [0.5]]), -1.0, "tol"),
        (np.array([[0.0], [0.5]]), np.nan, "tol"),
        (np.array([[0.0], [0.5]]), 1j, "tol"),
        (np.array([[0.0], [0.5]], np.float32), 1e39, "tol"),
    ]:
        with pytest.raises(ValueError, match=name):
            study.count_distinct(means, tol)
    # float64 means 1e-30 apart are two centres at tol 1e-31, also with JAX's x64 flag off
    with jax.enable_x64(False):
        assert int(study.count_distinct(np.array([[0.0], [1e-30]]), 1e-31)) == 2
    # far float32 means: distances overflow their squares unless compared rescaled
    far = np.array([[1e20], [3e20]], np.float32)
    assert int(study.count_distinct(far, 1.5e20)) == 2
    assert int(study.count_distinct(far, 2.5e20)) == 1


def test_scalar_options_of_the_wrong_kind_are_value_errors():
    with pytest.raises(ValueError, match="learning_rate"):
        study.compare_em_gradient(X32, X32[:3], 0.5, learning_rate=np.array(-0.1), repeats=1)
    with pytest.raises(ValueError, match="floor_rel"):
        study.convergence_rate(X32, X32[:3], 0.5, floor_rel=1j)
    with pytest.raises(ValueError, match="rel_gap"):
        study.compare_em_gradient(X32, X32[:3], 0.5, rel_gap="tight", repeats=1)
    costs = study.compare_em_gradient(
        X32,
        X32[:3],
        0.5,
        methods=("adam",),
        learning_rate=np.array(0.1),
        n_steps=N_STEPS,
        repeats=1,
    )
    assert costs["adam"].learning_rate == pytest.approx(0.1)
