"""The fixed-shape Gamma mixture against NumPy references of IS hard clustering and of EM."""

import jax
import numpy as np
import pytest
from scipy.special import gammaln
from scipy.stats import gamma as gamma_dist
from variant_cases import CASES, MAX_ITER

import gmmlimit as gl
from gmmlimit import variants as gv

CASE = CASES["gamma"]


def _is(X, means):
    r = X[:, None, :] / means[None, :, :]
    return (r - np.log(r) - 1.0).sum(axis=2)


def test_hard_limit_is_itakura_saito_lloyd():
    hard = CASE.fit(np.inf)
    n = int(hard.n_iter)
    means = np.asarray(CASE.params.means, np.float64)
    for _ in range(n):  # Lloyd in IS divergence: nearest mean, then cluster means
        labels = _is(CASE.X, means).argmin(1)
        means = np.stack([CASE.X[labels == j].mean(0) for j in range(3)])
    labels = _is(CASE.X, means).argmin(1)
    assert bool(hard.converged)
    np.testing.assert_array_equal(np.asarray(hard.labels), labels)
    np.testing.assert_allclose(np.asarray(hard.means), means, rtol=1e-12)
    np.testing.assert_allclose(float(hard.distortion), 3.0 * _is(CASE.X, means).min(1).sum())


def test_em_matches_scipy_gamma_em():
    soft = CASE.fit(1.0)
    a = 3.0
    means = np.asarray(CASE.params.means, np.float64)
    pi = np.asarray(CASE.params.weights, np.float64)
    for _ in range(int(soft.n_iter)):
        logp = gamma_dist.logpdf(CASE.X[:, None, :], a, scale=means[None] / a).sum(2)
        logp = logp + np.log(pi)
        r = np.exp(logp - logp.max(1, keepdims=True))
        r /= r.sum(1, keepdims=True)
        means = (r.T @ CASE.X) / r.sum(0)[:, None]
        pi = r.mean(0)
    np.testing.assert_allclose(np.asarray(soft.means), means, rtol=1e-9)
    # the free energy at beta = 1 is the log-likelihood minus sum_n f(x_n)
    logp = gamma_dist.logpdf(CASE.X[:, None, :], a, scale=means[None] / a).sum(2) + np.log(pi)
    loglik = np.logaddexp.reduce(logp, axis=1).sum()
    f = -np.log(CASE.X).sum() + CASE.X.size * (a * np.log(a) - a - gammaln(a))
    np.testing.assert_allclose(float(soft.objective) + f, loglik, rtol=1e-10)


def test_padding_never_reaches_the_divergence():
    # 300 rows in blocks of 128: zero padding rows would be -inf in log(x) and NaN the fit
    res = CASE.fit(1.0, block_size=128)
    assert np.all(np.isfinite(np.asarray(res.history)))
    assert np.isfinite(float(res.objective))


@pytest.mark.parametrize(
    ("X", "params", "message"),
    [
        (CASE.X * 0.0, CASE.params, "strictly positive"),
        (CASE.X, CASE.params._replace(means=-CASE.params.means), "means must be > 0"),
        (CASE.X, CASE.params._replace(shape=0.0), "shape"),
        (CASE.X, CASE.params._replace(beta=0.0), "beta"),
        (CASE.X.astype(np.float32), CASE.params._replace(shape=1e-50), "underflows"),
        # a subnormal entry: positive, but flushed to 0 on the CPU (before: objective -inf)
        (np.r_[CASE.X[:-1], [[1e-310] * CASE.X.shape[1]]], CASE.params, "smallest normal"),
        (np.r_[CASE.X[:-1], CASE.X[-1:] * 1e-40].astype(np.float32), CASE.params, "float32"),
    ],
)
def test_bad_inputs_raise(X, params, message):
    with pytest.raises(ValueError, match=message):
        gl.fit(gv.gamma, X, params, max_iter=MAX_ITER)


def test_out_of_core_refuses_a_chunk_that_turns_bad_on_a_later_pass():
    calls = []

    def source():
        calls.append(1)
        bad = CASE.X.copy()
        if len(calls) > 3:  # the two scan passes and the first fit pass are clean
            bad[5, 0] = -1.0
        return iter([bad[:150], bad[150:]])

    with pytest.raises(ValueError, match="strictly positive"):
        gl.scale.fit_out_of_core(gv.gamma, source, CASE.params, max_iter=MAX_ITER, block_size=128)


@pytest.mark.parametrize("exponent", [100, -100])
def test_data_past_the_window_fit_as_the_unit_data_mapped(exponent):
    # d_IS is scale-free: X 2^e (computed as X 2^(e -+ 32), the window's edge) fits as X, the
    # means x 2^e, the objective unchanged (invariant_scaling; the logarithms of the rows round
    # at another scale, so to float32's rounding)
    X = CASE.X.astype(np.float32)
    params = CASE.params._replace(means=np.asarray(CASE.params.means, np.float32))
    unit = gl.fit(gv.gamma, X, params, max_iter=6, tol=0.0)
    moved = params._replace(means=np.ldexp(params.means, exponent))
    far = gl.fit(gv.gamma, np.ldexp(X, exponent), moved, max_iter=6, tol=0.0)
    np.testing.assert_array_equal(np.asarray(far.labels), np.asarray(unit.labels))
    np.testing.assert_allclose(
        np.ldexp(np.asarray(far.means, np.float64), -exponent), unit.means, rtol=1e-5
    )
    np.testing.assert_allclose(far.history, unit.history, rtol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rows_near_the_largest_number_are_fit(dtype):
    # before: the M-step's sums overflowed and the mean stayed at its start (1e38 for rows of
    # 2e38 and 3e38), converged, distortion 0; init gave means of inf
    top = float(np.finfo(dtype).max)
    X = np.array([[0.6], [0.6], [0.9], [0.9]]) * top
    X = X.astype(dtype)
    start = gv.GammaParams(X[:1] / 2, dtype(1), np.ones(1, dtype), dtype(np.inf))
    fit = gl.fit(gv.gamma, X, start)
    np.testing.assert_allclose(np.asarray(fit.means), [[0.75 * top]], rtol=1e-6)
    drawn = gv.gamma.init(jax.random.key(0), X, 1)
    assert np.all(np.isfinite(np.asarray(drawn.means)))
