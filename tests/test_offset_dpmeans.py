"""DP-means of data far from the origin relative to their spread: fit as the data translated.

DP-means forms squared distances as |x|^2 - 2 m.x + |m|^2, which cancel for such rows: before
``dpmeans`` and ``dpmeans_objective`` translated the rows by the exact offset of
:mod:`gmmlimit._offset`, ``dpmeans_objective([[1e10]], [[1e10-1], [1e10+3]], 1)`` gave 11 where
J + lambda K is 3, and ``dpmeans`` of clustered rows near 2^40 ran to ``max_iter`` with most labels
not those of the nearest mean. J + lambda K is translation-invariant, so DP-means of ``X + c``
is DP-means of ``X`` (labels, K, iterations and objective bit for bit, since both compute the
same translated rows), with the means moved by ``c``.

Rows past the dtype's window are computed as X / 2^e with lambda / 4^e (weights past theirs as
w / 2^v, lambda / 2^v): before, float32 rows near 2^64 overflowed every squared distance (K = 1,
an inf objective) and rows near 2^-60 flushed them to zero. Powers of two move every squared
distance and lambda alike, so DP-means of ``X 2^e`` with ``lambda 4^e`` is DP-means of ``X``
bit for bit: labels, K, iterations, means x 2^e and J + lambda K x 4^e.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

import gmmlimit.variants as gv

N, K, LAM = 300, 3, 0.05
SLOTS, MAX_ITER = 8, 60
OFFSETS = {np.float32: 1024.0, np.float64: 2.0**40}
"""Exact shifts of :func:`band`'s rows (at most 12 fraction bits, magnitude below 2)."""

DTYPES = [np.float32, np.float64]  # tests/conftest.py turns JAX's x64 flag on


def band(dtype: type) -> np.ndarray:
    """(N, 2) rows of three clusters, each feature within [1, 2) and a multiple of 2^-12.

    Each feature lies within a factor of two, so the rows are computed less their smallest
    values, as the rows plus ``OFFSETS[dtype]`` (an exact sum) are.
    """
    rng = np.random.default_rng(11)
    labels = rng.integers(0, K, N)
    rows = 1.25 + labels[:, None] * np.array([0.2, 0.1]) + 0.02 * rng.standard_normal((N, 2))
    return (np.round(rows * 4096) / 4096).astype(dtype)


def shifted(X: np.ndarray) -> np.ndarray:
    """X + OFFSETS[dtype], checked exact."""
    c = X.dtype.type(OFFSETS[X.dtype.type])
    moved = X + c
    assert np.array_equal(moved - c, X)
    return moved


@pytest.mark.parametrize("dtype", DTYPES)
def test_dpmeans_of_far_rows_is_dpmeans_of_the_rows(dtype):
    X = band(dtype)
    near = gv.dpmeans(X, LAM, max_clusters=SLOTS, max_iter=MAX_ITER)
    far = gv.dpmeans(shifted(X), LAM, max_clusters=SLOTS, max_iter=MAX_ITER)
    assert int(near.n_clusters) == K and bool(near.converged)
    np.testing.assert_array_equal(np.asarray(far.labels), np.asarray(near.labels))
    np.testing.assert_array_equal(np.asarray(far.active), np.asarray(near.active))
    assert int(far.n_clusters) == int(near.n_clusters)
    assert int(far.n_iter) == int(near.n_iter)
    assert bool(far.converged) and not bool(far.saturated)
    assert float(far.objective) == float(near.objective)
    np.testing.assert_array_equal(np.asarray(far.history), np.asarray(near.history))
    active = np.asarray(near.active)
    c = OFFSETS[dtype]
    ulp = float(np.spacing(np.asarray(c, dtype)))  # the one rounding of moving the means back
    np.testing.assert_allclose(
        np.asarray(far.means, np.float64)[active] - c,
        np.asarray(near.means, np.float64)[active],
        rtol=0,
        atol=ulp,
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_dpmeans_of_far_rows_from_given_means_and_weights(dtype):
    X = band(dtype)
    m0 = X[[0, 1]]
    w = np.random.default_rng(2).integers(1, 4, N).astype(dtype)
    near = gv.dpmeans(X, LAM, max_clusters=SLOTS, max_iter=MAX_ITER, init_means=m0, weights=w)
    far = gv.dpmeans(
        shifted(X), LAM, max_clusters=SLOTS, max_iter=MAX_ITER, init_means=shifted(m0), weights=w
    )
    np.testing.assert_array_equal(np.asarray(far.labels), np.asarray(near.labels))
    assert int(far.n_clusters) == int(near.n_clusters)
    assert int(far.n_iter) == int(near.n_iter)
    assert float(far.objective) == float(near.objective)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dpmeans_objective_of_far_rows_is_that_of_the_rows(dtype):
    X = band(dtype)
    means = X[[0, 1, 2, 3]]
    near = gv.dpmeans_objective(X, means, LAM)
    far = gv.dpmeans_objective(shifted(X), shifted(means), LAM)
    assert float(far) == float(near)


def test_dpmeans_objective_of_one_row_near_1e10():
    # the row is 1 from its nearest mean: J + lambda K = 1 + 2 lambda
    value = gv.dpmeans_objective(np.array([[1e10]]), np.array([[1e10 - 1], [1e10 + 3]]), 1.0)
    assert float(value) == 3.0


def test_integer_rows_near_a_million_without_x64():
    """JAX's x64 flag off: integer data are computed in float32."""
    with jax.enable_x64(False):
        # integers below 2^24 are exact in float32, and so is each row less its smallest value
        rng = np.random.default_rng(5)
        Xi = 10**6 + rng.integers(0, 40, (200, 2))
        Mi = np.array([[10**6 + 5, 10**6 + 5], [10**6 + 30, 10**6 + 30]])
        lo = Xi.min(axis=0)
        Xr, Mr = (Xi - lo).astype(np.float32), (Mi - lo).astype(np.float32)
        far = gv.dpmeans_objective(Xi, Mi, 5.0)
        assert far.dtype == np.float32
        assert float(far) == float(gv.dpmeans_objective(Xr, Mr, 5.0))
        fit, ref = gv.dpmeans(Xi, 50.0, max_iter=MAX_ITER), gv.dpmeans(Xr, 50.0, max_iter=MAX_ITER)
        np.testing.assert_array_equal(np.asarray(fit.labels), np.asarray(ref.labels))
        assert int(fit.n_iter) == int(ref.n_iter)
        assert float(fit.objective) == float(ref.objective)


def centred(dtype: type) -> np.ndarray:
    """:func:`band` less 1.5 (exact): no feature within a factor of two, so no translation."""
    return band(dtype) - dtype(1.5)


@pytest.mark.parametrize("exponent", [66, -60])
def test_dpmeans_of_float32_rows_past_the_window_is_dpmeans_of_the_rows_scaled(exponent):
    # at 2^66 the squared norms overflowed float32 (K = 1); at 2^-60 each squared distance
    # (about 2^-131) flushed to zero (K = 1); J + lambda K is past float32 at 2^66 (inf)
    X = centred(np.float32)
    unit = gv.dpmeans(X, LAM, max_clusters=SLOTS, max_iter=MAX_ITER)
    lam = np.ldexp(np.float32(LAM), 2 * exponent)
    far = gv.dpmeans(np.ldexp(X, exponent), lam, max_clusters=SLOTS, max_iter=MAX_ITER)
    assert int(unit.n_clusters) == K and bool(unit.converged)
    np.testing.assert_array_equal(np.asarray(far.labels), np.asarray(unit.labels))
    np.testing.assert_array_equal(np.asarray(far.active), np.asarray(unit.active))
    assert int(far.n_iter) == int(unit.n_iter) and bool(far.converged)
    active = np.asarray(unit.active)
    np.testing.assert_array_equal(
        np.asarray(far.means)[active], np.ldexp(np.asarray(unit.means)[active], exponent)
    )
    means = np.ldexp(X[[0, 1, 2, 3]], exponent)
    scored = gv.dpmeans_objective(np.ldexp(X, exponent), means, lam)
    # J + lambda K of the data: inf where past float32's largest number (the contract), as
    # numpy's ldexp gives it
    with np.errstate(over="ignore"):
        expected = np.ldexp(np.asarray(unit.objective), 2 * exponent)
        history = np.ldexp(np.asarray(unit.history), 2 * exponent)
        score = np.ldexp(np.asarray(gv.dpmeans_objective(X, X[[0, 1, 2, 3]], LAM)), 2 * exponent)
    assert np.isfinite(expected) == (exponent < 0)
    assert float(far.objective) == float(expected)
    np.testing.assert_array_equal(np.asarray(far.history), history)
    assert float(scored) == float(score)


def test_dpmeans_with_weights_past_the_window_is_dpmeans_with_lambda_scaled_alike():
    X = centred(np.float32)
    w = np.random.default_rng(2).integers(1, 4, N).astype(np.float32)
    unit = gv.dpmeans(X, LAM, max_clusters=SLOTS, max_iter=MAX_ITER, weights=w)
    big = np.float32(2.0**100)  # w x 2^100 times a squared distance overflowed float32
    heavy = gv.dpmeans(
        X, np.float32(LAM) * big, max_clusters=SLOTS, max_iter=MAX_ITER, weights=w * big
    )
    np.testing.assert_array_equal(np.asarray(heavy.labels), np.asarray(unit.labels))
    assert int(heavy.n_clusters) == int(unit.n_clusters)
    assert int(heavy.n_iter) == int(unit.n_iter)
    assert float(heavy.objective) == float(unit.objective) * 2.0**100


def test_a_lambda_that_underflows_at_the_data_scale_is_refused():
    X = np.ldexp(centred(np.float32), 60)  # squared distances / 2^120 in the computation
    with pytest.raises(ValueError, match=r"lam=.*relative to the data's scale"):
        gv.dpmeans(X, 1e-30)
    # the objective needs no computed lambda: J + lambda K is formed in the data's units
    value = gv.dpmeans_objective(X, X[:2], 1e-30)
    unit = centred(np.float32)  # at unit scale 2 lambda is far below J's last bit either way
    J = gv.dpmeans_objective(unit, unit[:2], 2.0**-100)
    assert np.isfinite(float(value)) and float(value) == float(np.ldexp(np.asarray(J), 120))
