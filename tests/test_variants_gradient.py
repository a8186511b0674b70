"""The generic optax gradient M-step: against a closed form, and in the Student-t mixture."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy.optimize import brentq
from scipy.special import digamma, gammaln
from variant_cases import CASES, wine

import gmmlimit as gl
from gmmlimit import variants as gv
from gmmlimit._gradient import gradient_m_step

STOP_AFTER_TWO = 1e30  # a relative tol so large that the driver stops after its second iteration


def _spherical_problem():
    X = wine()
    means = X[[0, 60, 130]]
    sq = ((X[:, None, :] - means[None]) ** 2).sum(-1)
    logp = -0.5 * sq
    resp = np.exp(logp - logp.max(1, keepdims=True))
    resp /= resp.sum(1, keepdims=True)
    n_k, s1 = resp.sum(0), resp.T @ X
    s2 = resp.T @ (X * X).sum(1)
    n, d = X.shape

    def loss(theta):
        mu, log_v = theta
        within = s2 - 2 * jnp.sum(mu * s1, 1) + n_k * jnp.sum(mu * mu, 1)
        return (
            jnp.sum(0.5 * n_k * d * (jnp.log(2 * jnp.pi) + log_v) + within / (2 * jnp.exp(log_v)))
            / n
        )

    mu = s1 / n_k[:, None]
    v = (s2 - n_k * (mu * mu).sum(1)) / (d * n_k)
    return loss, (jnp.asarray(means), jnp.zeros(3)), (mu, v)


def test_gradient_m_step_matches_the_closed_form():
    loss, init, (mu, v) = _spherical_problem()
    (got_mu, got_log_v), value = jax.jit(lambda t: gradient_m_step(loss, t, steps=40))(init)
    np.testing.assert_allclose(np.asarray(got_mu), mu, rtol=0, atol=1e-7)
    np.testing.assert_allclose(np.exp(np.asarray(got_log_v)), v, rtol=1e-7)
    np.testing.assert_allclose(float(value), float(loss((jnp.asarray(mu), jnp.log(v)))), rtol=1e-12)


def test_gradient_m_step_never_returns_a_worse_point():
    loss, init, _ = _spherical_problem()
    start = float(loss(init))
    # a step size far too large diverges: the best iterate is then the start itself
    step = jax.jit(lambda t, lr: gradient_m_step(loss, t, optimizer=optax.sgd(lr), steps=5))
    bad = step(init, 1e6)
    assert float(bad[1]) == start
    np.testing.assert_array_equal(np.asarray(bad[0][0]), np.asarray(init[0]))
    small = step(init, 1e-3)
    assert float(small[1]) < start


def _t_reference_step(X, means, scales, dofs, weights):
    """One ECM iteration for the Student-t mixture, nu by a scalar root solver (brentq)."""
    n, d = X.shape
    diff = X[:, None, :] - means[None]
    delta = (diff**2).sum(-1)
    log_t = (
        gammaln((dofs + d) / 2)
        - gammaln(dofs / 2)
        - 0.5 * d * np.log(dofs * np.pi * scales)
        - 0.5 * (dofs + d) * np.log1p(delta / (dofs * scales))
    )
    logp = np.log(weights) + log_t
    resp = np.exp(logp - logp.max(1, keepdims=True))
    resp /= resp.sum(1, keepdims=True)
    u = (dofs + d) / (dofs + delta / scales)
    n_k = resp.sum(0)
    ru = resp * u
    new_means = ru.T @ X / ru.sum(0)[:, None]
    sq = ((X[:, None, :] - new_means[None]) ** 2).sum(-1)
    new_scales = (ru * sq).sum(0) / (d * n_k) + 1e-6
    t_k = (resp * (np.log(u) - u)).sum(0)
    new_dofs = np.empty(3)
    for k in range(3):
        c = digamma((dofs[k] + d) / 2) - np.log((dofs[k] + d) / 2)

        def f(nu, k=k, c=c):
            return np.log(nu / 2) + 1 - digamma(nu / 2) + t_k[k] / n_k[k] + c

        new_dofs[k] = brentq(f, 0.05, 1e4, xtol=1e-14)
    return new_means, new_scales, new_dofs, n_k / n


def test_student_t_ecm_step_matches_root_solved_reference():
    case = CASES["student_t"]
    ours = gl.fit(case.variant, case.X, case.params, max_iter=case.max_iter, tol=STOP_AFTER_TWO)
    assert int(ours.n_iter) == 2
    p = case.params
    state = (np.asarray(p.means), np.asarray(p.scales), np.asarray(p.dofs), np.asarray(p.weights))
    for _ in range(2):
        state = _t_reference_step(case.X, *state)
    means, scales, dofs, weights = state
    # an entry near zero carries the rounding of the sums at the means' own scale (about 8): on
    # an H200 an entry of -0.046 was off by 6.7e-11, so the absolute tolerance is 1e-9 of that scale
    scale = np.max(np.abs(means))
    np.testing.assert_allclose(np.asarray(ours.means), means, rtol=1e-9, atol=1e-9 * scale)
    np.testing.assert_allclose(np.asarray(ours.params.scales), scales, rtol=1e-9)
    np.testing.assert_allclose(np.asarray(ours.params.dofs), dofs, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(ours.params.weights), weights, atol=1e-12)


def test_student_t_learns_which_cluster_is_heavy_tailed():
    case = CASES["student_t"]
    fit = case.fit(1.0)
    dofs = np.asarray(fit.params.dofs)
    # the data's clusters have 2, 5 and 30 degrees of freedom, in the order of the start means
    assert dofs[0] < 3.0 and dofs[0] < dofs[1] < dofs[2]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_student_t_log_density_is_exact_at_large_degrees_of_freedom(dtype):
    # For even D, Gamma(a + D/2) / Gamma(a) = a (a + 1) ... (a + D/2 - 1) exactly, so the
    # reference needs no difference of two large ln Gamma values (scipy's multivariate_t forms
    # one: 1e-7 off in float64 at nu = 1e8). At nu = 1e8 ours was 17.7 off in float32.
    rng = np.random.default_rng(0)
    for d in (2, 4):
        X = rng.normal(size=(5, d))
        x = X.astype(dtype)
        sq = np.sum(np.asarray(x, np.float64) ** 2, axis=1)
        for nu in (1e3, 1e4, 1e6, 1e8):
            half = nu / 2
            log_ratio = np.sum(np.log(half + np.arange(d // 2)))
            ref = log_ratio - 0.5 * d * np.log(nu * np.pi) - 0.5 * (nu + d) * np.log1p(sq / nu)
            params = gv.StudentTParams(np.zeros((1, d)), np.ones(1), np.array([nu]), np.ones(1),
                                       1.0, 1e-6)  # fmt: skip
            with jax.enable_x64(dtype == np.float64):
                valid = gv.student_t.validate(jnp.asarray(x), params)
                ours = np.asarray(gv.student_t.e_step(valid, jnp.asarray(x)).log_lik, np.float64)
            # float64: JAX's betaln (scipy's series, 15-digit coefficients) is within 5e-14 of
            # the value 2, as was the difference of ln Gammas it replaces at nu = 1e3
            rtol = 64 * np.finfo(np.float32).eps if dtype == np.float32 else 1e-13
            np.testing.assert_allclose(ours, ref, rtol=0, atol=rtol * np.abs(ref).max())
