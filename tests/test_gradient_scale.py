"""Gradient ascent (``study.gradient_fit``, ``study.compare_em_gradient``) is unit-free.

The same problem given as X * 2^e, means * 2^e, sigma2 * 4^e is computed in the same unit-free
coordinates at every e, so its iterates are those of X times 2^e, bit for bit. Before, the data
were computed as given inside the dtype's scale window, where optax's L-BFGS line search (its
first trial step, its tolerances) and Adam's epsilon read the raw scale: at float64 2^30 L-BFGS
made no progress in 10 steps, at 2^-30 it ended 189 nats below its start, and
``compare_em_gradient`` reported it "never reached" (-1) at 2^30.
"""

import math

import numpy as np
import optax
import pytest

import gmmlimit as gl
from gmmlimit import study

_rng = np.random.default_rng(0)
# two clusters 6 apart (spread per coordinate 3.2: computed as X / 4)
X = np.concatenate([_rng.normal(size=(10, 2)) - 3, _rng.normal(size=(10, 2)) + 3])
START = X[[0, 15]] + 0.5
N_STEPS = 10
# 0, both sides of the unit scale inside the dtype's scale window (float32: 2^20; at 2^30 the
# largest magnitude 5.3 * 2^30 is past float32's window), and past it (rescaled before too)
SCALES = {np.float32: (0, 20, -30, 30, 40), np.float64: (0, 30, -30, 100, 300)}


def _problem(dtype, e):
    """X * 2^e, START * 2^e and sigma2 = 4^e (exact) in ``dtype``."""
    return (
        np.ldexp(X, e).astype(dtype),
        np.ldexp(START, e).astype(dtype),
        np.ldexp(dtype(1.0), 2 * e),
    )


def _shift(e):
    """l(X 2^e) - l(X) at the same scaled means: -(N D / 2) ln 4^e."""
    return -X.shape[0] * X.shape[1] * e * math.log(2.0)


@pytest.mark.cpu_bits
@pytest.mark.parametrize(
    ("optimizer", "dtype"),
    [
        ("lbfgs", np.float32),
        ("lbfgs", np.float64),
        ("adam", np.float32),
        ("adam", np.float64),
        # a given optax transformation: float64 runs the same first-order program as Adam's
        (optax.sgd(0.05), np.float32),
    ],
    ids=["lbfgs-float32", "lbfgs-float64", "adam-float32", "adam-float64", "sgd-float32"],
)
def test_gradient_fit_iterates_are_the_unit_ones_scaled_at_every_power_of_two(dtype, optimizer):
    fits = {
        e: study.gradient_fit(*_problem(dtype, e), optimizer=optimizer, n_steps=N_STEPS)
        for e in SCALES[dtype]
    }
    unit = fits[0]
    eps = float(np.finfo(dtype).eps)
    for e, fit in fits.items():
        assert fit.means.dtype == fit.history.dtype == dtype
        # the same iterates, exactly scaled (power-of-two scaling is exact)
        np.testing.assert_array_equal(np.ldexp(np.asarray(fit.means), -e), unit.means, str(e))
        np.testing.assert_array_equal(fit.evaluations, unit.evaluations, str(e))
        # log-likelihoods in the data's units: the unit ones shifted by -(N D / 2) ln 4^e,
        # up to the rounding of values of that size in the dtype
        history = np.asarray(fit.history, np.float64)
        expected = np.asarray(unit.history, np.float64) + _shift(e)
        tol = 4 * eps * float(np.max(np.abs(history)))
        np.testing.assert_allclose(history, expected, rtol=0, atol=tol, err_msg=str(e))
        assert float(fit.log_likelihood) == float(history[-1])
        # the ascent climbs at every scale (L-BFGS to the EM fixed point: a gain of 6.005)
        gain = history[-1] - history[0]
        assert gain > 1.0, (e, gain)
        if optimizer == "lbfgs":
            assert gain == pytest.approx(6.00522, abs=1e-4), e


@pytest.mark.cpu_bits
@pytest.mark.parametrize(
    ("dtype", "e"),
    [(np.float64, 30), (np.float64, -30), (np.float32, 20), (np.float32, -30)],
    ids=["float64-2^30", "float64-2^-30", "float32-2^20", "float32-2^-30"],
)
def test_compare_em_gradient_counts_the_same_iterations_at_any_scale(dtype, e):
    opts = dict(methods=("em", "adam", "lbfgs"), n_steps=N_STEPS, repeats=1)
    unit = study.compare_em_gradient(*_problem(dtype, 0), learning_rate=0.5, **opts)
    scaled = study.compare_em_gradient(
        *_problem(dtype, e), learning_rate=math.ldexp(0.5, e), **opts
    )
    for method in opts["methods"]:
        assert scaled[method].iterations == unit[method].iterations, method
        assert scaled[method].learning_rate == pytest.approx(
            math.ldexp(unit[method].learning_rate, e), rel=1e-15, nan_ok=True
        )
        tol = 4 * float(np.finfo(dtype).eps) * float(np.max(np.abs(scaled[method].history)))
        np.testing.assert_allclose(
            scaled[method].history, unit[method].history + _shift(e), rtol=0, atol=tol
        )
    # L-BFGS reaches the target (EM's fixed point) within the budget at every scale
    assert 0 < scaled["lbfgs"].iterations <= N_STEPS
    assert scaled["lbfgs"].final == pytest.approx(scaled["em"].final, abs=1e-3)
    # from EM's fixed point (found at the unit scale) every method is there at iteration 0 at
    # both scales: the methods run in other units, where it moves by rounding alone
    fixed = np.asarray(gl.em(*_problem(dtype, 0), max_iter=200, tol=0.0).means)
    for f in (0, e):
        data, _, sigma2 = _problem(dtype, f)
        start = np.ldexp(fixed, f)
        rate = math.ldexp(0.5, f)
        costs = study.compare_em_gradient(data, start, sigma2, learning_rate=rate, **opts)
        assert {m: c.iterations for m, c in costs.items()} == dict.fromkeys(opts["methods"], 0)


@pytest.mark.parametrize("rate", [np.inf, np.nan], ids=["inf", "nan"])
def test_an_optimizer_that_leaves_the_finite_numbers_is_refused(rate):
    # optax.sgd(inf) returned NaN means and log-likelihood without a word
    with pytest.raises(ValueError, match=r"optimizer's updates left the finite numbers.*learning"):
        study.gradient_fit(X, START, 1.0, optimizer=optax.sgd(rate), n_steps=3)
