"""Convergence rates (measured and linearised) and EM against optax gradient ascent."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gmmlimit as gl
from gmmlimit._ascent import _log_lik
from gmmlimit._driver import make_blocks

# Anisotropic data: lambda_max (about 4) is far from the mean variance, so lambda_max / sigma2
# and the mean-variance / sigma2 that a wrong linearisation would give are easy to tell apart.
_rng = np.random.default_rng(1)
X = _rng.normal(size=(300, 3)) * np.array([2.0, 0.8, 0.4]) + np.array([1.0, -2.0, 0.5])
LAMBDA = float(gl.critical_sigma2(X))
XBAR = X.mean(0)


@pytest.mark.parametrize("ratio", [1.25, 2.0])
def test_rate_at_collapsed_point_is_lambda_max_over_sigma2(ratio):
    sigma2 = ratio * LAMBDA
    collapsed = np.tile(XBAR, (3, 1))
    start = collapsed + 1e-3 * _rng.normal(size=collapsed.shape)
    measured = gl.study.convergence_rate(X, start, sigma2, n_steps=40)
    predicted = float(gl.study.collapsed_rate(X, sigma2))
    assert predicted == pytest.approx(1.0 / ratio, rel=1e-12)
    assert measured.rate == pytest.approx(predicted, rel=0.05)
    # the fixed point EM found is the collapsed point
    np.testing.assert_allclose(measured.fixed_point, collapsed, atol=1e-9)
    # the Jacobian of the EM map there has the same spectral radius (not the mean variance)
    assert gl.study.linearized_rate(X, collapsed, sigma2) == pytest.approx(predicted, rel=1e-8)
    assert np.var(X, axis=0).mean() / sigma2 < 0.8 * predicted


# The hard rate is exactly 0.0 where one K-means step lands on the very bits of the fixed point: a
# guarantee of XLA:CPU, whose programs sum in the same order; on a GPU it was 6e-12.
@pytest.mark.cpu_bits
def test_rate_below_critical_matches_jacobian_and_vanishes_at_zero():
    m0 = np.asarray(gl.init.random_points(jax.random.key(0), X, 3))
    sigma2 = 0.3 * LAMBDA
    # a rough fixed point (EM stopped by its tolerance), then a small kick from it: the rate
    # measurement locates the exact fixed point itself (5000 more iterations, no early stop)
    rough = np.asarray(gl.em(X, m0, sigma2, max_iter=2000, tol=1e-10).means)
    start = rough + 1e-4 * _rng.normal(size=rough.shape)
    measured = gl.study.convergence_rate(X, start, sigma2, n_steps=40)
    predicted = gl.study.linearized_rate(X, measured.fixed_point, sigma2)
    assert 0.05 < predicted < 1.0
    assert measured.rate == pytest.approx(predicted, rel=0.05)
    # K-means: near its fixed point one step lands exactly on it (labels do not change)
    lloyd = np.asarray(gl.kmeans(X, m0).means)
    hard = gl.study.convergence_rate(
        X, lloyd + 1e-4 * _rng.normal(size=lloyd.shape), 0.0, n_steps=40
    )
    assert hard.rate == 0.0 and np.all(hard.errors[1:] == 0.0) and hard.errors[0] > 0
    assert gl.study.linearized_rate(X, hard.fixed_point, 0.0) == 0.0


def test_log_likelihood_gradient_is_the_em_direction():
    # dl/dmu_k = sum_n r_nk (x_n - mu_k) / sigma2: the gradient the optimisers follow
    means = jnp.asarray(X[:3])
    sigma2 = 0.7
    blocks = make_blocks(jnp.asarray(X), jnp.ones(X.shape[0]), 128)
    grad = jax.grad(_log_lik)(means, jnp.asarray(sigma2), blocks)
    r = np.asarray(gl.responsibilities(X, means, sigma2))
    expect = (r.T @ X - r.sum(0)[:, None] * np.asarray(means)) / sigma2
    np.testing.assert_allclose(np.asarray(grad), expect, rtol=1e-10, atol=1e-10)


def test_lbfgs_on_float32_data_with_x64_on_stays_float32():
    # the experiments turn x64 on; L-BFGS's line search then handed float64 trial means to the
    # float32 E-step (before: "cond branches must have equal output types")
    x32 = X[:60].astype(np.float32)
    with jax.enable_x64(True):
        fit = gl.study.gradient_fit(x32, x32[:3], 0.5, optimizer="lbfgs", n_steps=10)
        em = gl.em(x32, x32[:3], 0.5, max_iter=1)
    assert fit.means.dtype == fit.log_likelihood.dtype == np.float32
    assert float(fit.log_likelihood) >= float(em.history[0])  # it climbed from the start


def test_em_adam_lbfgs_reach_the_same_log_likelihood():
    m0 = np.asarray(gl.init.random_points(jax.random.key(2), X, 3))
    sigma2 = 0.5
    costs = gl.study.compare_em_gradient(X, m0, sigma2, n_steps=150, rel_gap=1e-6, repeats=1)
    em_final = float(gl.em(X, m0, sigma2, max_iter=2000, tol=0.0).objective)
    assert set(costs) == {"em", "adam", "lbfgs"}
    for name, cost in costs.items():
        assert cost.history.shape == (151,)
        assert cost.history[0] == pytest.approx(costs["em"].history[0], rel=1e-12), name
        assert cost.final <= em_final + 1e-9 * abs(em_final)
    # EM and L-BFGS converge to the EM fixed point; EM's history is monotone
    assert costs["em"].iterations > 0 and costs["lbfgs"].iterations > 0
    assert np.all(np.diff(costs["em"].history) >= -1e-9)
    assert costs["lbfgs"].final == pytest.approx(em_final, rel=1e-9)
    for name in ("em", "adam"):  # one evaluation per iteration
        cost = costs[name]
        if cost.iterations >= 0:
            assert cost.seconds == pytest.approx(cost.iterations * cost.seconds_per_iter)
    lbfgs = costs["lbfgs"]
    assert 0 < lbfgs.seconds <= 150 * lbfgs.seconds_per_iter * (1 + 1e-12)
    # gradient_fit is the same computation as the comparison's run
    fit = gl.study.gradient_fit(X, m0, sigma2, optimizer="lbfgs", n_steps=150)
    np.testing.assert_allclose(np.asarray(fit.history), costs["lbfgs"].history, rtol=1e-12)
    assert fit.evaluations.shape == (150,) and int(np.min(fit.evaluations)) >= 1
    assert float(fit.log_likelihood) == pytest.approx(costs["lbfgs"].final, rel=1e-12)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: gl.study.gradient_fit(X, X[:2], 0.0), "sigma2 > 0"),
        (lambda: gl.study.gradient_fit(X, X[:2], 1.0, optimizer="sgd"), "optimizer"),
        (lambda: gl.study.gradient_fit(X, X[:2], 1.0, learning_rate=-1.0), "learning_rate"),
        (
            lambda: gl.study.compare_em_gradient(X, X[:2], 1.0, methods=("newton",)),
            "unknown method",
        ),
        (lambda: gl.study.convergence_rate(X, X[:2], -1.0), "sigma2"),
        (lambda: gl.study.convergence_rate(X, X[:2], 1.0, fixed_point=X[:3]), "fixed_point"),
        (lambda: gl.study.collapsed_rate(X, 0.0), "> 0"),
    ],
)
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()
