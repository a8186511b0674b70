"""Poisson, Bernoulli and vMF mixtures: EM at beta = 1, their Bregman hard limits, the sweep."""

import numpy as np
import pytest
from scipy.special import xlogy
from variant_cases import CASES, MAX_ITER

import gmmlimit as gl
from gmmlimit import variants as gv


def _gkl(X, rates):
    const = (xlogy(X, X) - X).sum(1)
    return const[:, None] - X @ np.log(rates).T + rates.sum(1)[None, :]


def _logistic(X, probs):
    return -(X @ np.log(probs).T + (1 - X) @ np.log1p(-probs).T)


def _cosine(X, means):
    return 1.0 - X @ means.T


def _reference(name, X, params, n_iter, hard):
    """EM (or, when hard, Bregman hard clustering) written directly from the textbook formulas."""
    if name == "poisson":
        loc, div = np.asarray(params.rates, float), _gkl
    elif name == "bernoulli":
        loc, div = np.asarray(params.probs, float), _logistic
    else:
        loc, div = np.asarray(params.means, float), _cosine
    weights = np.asarray(params.weights, float) / np.sum(params.weights)
    for _ in range(n_iter):
        d = div(X, loc)
        if hard:
            resp = np.eye(loc.shape[0])[np.argmin(d, axis=1)]
        else:
            logp = np.log(weights) - d
            resp = np.exp(logp - logp.max(1, keepdims=True))
            resp /= resp.sum(1, keepdims=True)
        nk = resp.sum(0)
        sums = resp.T @ X
        if name == "poisson":
            loc = np.maximum(sums / nk[:, None], float(params.floor))
        elif name == "bernoulli":
            loc = np.clip(sums / nk[:, None], float(params.floor), 1 - float(params.floor))
        else:
            loc = sums / np.linalg.norm(sums, axis=1, keepdims=True)
        weights = nk / nk.sum()
    return loc, weights, np.argmin(div(X, loc), axis=1)


NAMES = ["bernoulli", "poisson", "vmf"]


@pytest.mark.parametrize("name", NAMES)
def test_em_at_beta_one_matches_reference(name):
    case = CASES[name]
    ours = case.fit(1.0)
    loc, weights, _ = _reference(name, case.X, case.params, int(ours.n_iter), hard=False)
    np.testing.assert_allclose(np.asarray(ours.means), loc, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.asarray(ours.params.weights), weights, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_hard_limit_is_bregman_hard_clustering(name):
    case = CASES[name]
    hard = case.fit(np.inf)
    n = int(hard.n_iter)
    assert bool(hard.converged) and n < MAX_ITER
    loc, _, labels = _reference(name, case.X, case.params, n, hard=True)
    np.testing.assert_allclose(np.asarray(hard.means), loc, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(np.asarray(hard.labels), labels)
    # the hard objective is the divergence to the assigned centre (generalised KL, logistic loss,
    # cosine dissimilarity), and the converged partition is a fixed point of the hard iteration
    div = {"poisson": _gkl, "bernoulli": _logistic, "vmf": _cosine}[name](case.X, loc)
    np.testing.assert_allclose(float(hard.distortion), div.min(1).sum(), rtol=1e-10)
    assert float(hard.objective) == -float(hard.distortion)
    _, _, labels2 = _reference(name, case.X, case.params, n + 1, hard=True)
    np.testing.assert_array_equal(labels2, labels)


@pytest.mark.parametrize("name", NAMES)
def test_sweep_converges_to_the_hard_limit_within_the_bound(name):
    case = CASES[name]
    betas = np.geomspace(0.5, 2e4, 6)
    out = gv.limit_sweep(case.variant, case.X, case.params, betas, max_iter=MAX_ITER)
    assert out["bound_holds"].all()
    assert np.all(out["resp_gap"] <= out["bound"] + 1e-15)
    # responsibilities and one update approach the hard ones, down to exactly zero
    assert out["resp_gap"][0] > 1e-2 and out["resp_gap"][-1] < 1e-12
    assert np.all(np.diff(out["resp_gap"]) <= 1e-15)
    assert out["update_gap"][0] > 1e-3 and out["update_gap"][-1] < 1e-10
    # and whole fits end at the hard fit's partition and centres
    assert out["fit_label_agreement"][-1] == 1.0 and out["fit_means_gap"][-1] < 1e-8
    assert out["fit_label_agreement"][0] < 1.0 or out["fit_means_gap"][0] > 1e-3


def test_sweep_rejects_infinite_beta():
    case = CASES["poisson"]
    with pytest.raises(ValueError, match="must not hold the hard limit"):
        gv.limit_sweep(case.variant, case.X, case.params, [1.0, np.inf])


@pytest.mark.parametrize(
    ("name", "make_x", "message"),
    [
        ("poisson", lambda X: X - 1.0, "non-negative"),
        # counts whose x ln x terms overflow (before: an objective of -inf or NaN)
        ("poisson", lambda X: X * 1e305, "overflow the generalised KL"),
        ("bernoulli", lambda X: X * 2.0, r"\[0, 1\]"),
        ("vmf", lambda X: X * 2.0, "unit-norm"),
    ],
)
def test_bad_data_raise(name, make_x, message):
    case = CASES[name]
    with pytest.raises(ValueError, match=message):
        gl.fit(case.variant, make_x(case.X), case.params)


def test_bad_parameters_raise():
    c = CASES["poisson"]
    with pytest.raises(ValueError, match="rates must be > 0"):
        gl.fit(c.variant, c.X, c.params._replace(rates=-np.asarray(c.params.rates)))
    b = CASES["bernoulli"]
    with pytest.raises(ValueError, match="strictly between"):
        gl.fit(b.variant, b.X, b.params._replace(probs=np.ones_like(b.params.probs)))
    with pytest.raises(ValueError, match="floor"):
        gl.fit(b.variant, b.X, b.params._replace(floor=0.7))
    v = CASES["vmf"]
    with pytest.raises(ValueError, match="beta"):
        gl.fit(v.variant, v.X, v.params._replace(beta=-1.0))


def test_float32_poisson_follows_float64():
    case = CASES["poisson"]
    f64 = case.fit(1.0)
    f32 = case.fit(1.0, np.float32)
    assert f32.means.dtype == np.float32 and f32.objective.dtype == np.float32
    np.testing.assert_allclose(np.asarray(f32.means), np.asarray(f64.means), rtol=1e-4)
    np.testing.assert_allclose(float(f32.objective), float(f64.objective), rtol=1e-5)
    hard32, hard64 = case.fit(np.inf, np.float32), case.fit(np.inf)
    np.testing.assert_array_equal(np.asarray(hard32.labels), np.asarray(hard64.labels))
