"""Edges of the out-of-core and sharded paths an audit found (2026-12-06).

A hard fit's stopping rule measures shifts in the data's unit: the same at every scale.

The rule compares the centres' squared shift with tol times the data's spread, both squares of
the data's size. For a variant without a declared scaling (Gamma, Poisson, a user's), float32
data near 1e-25 made both 0 and data near 1e25 both inf, so every hard fit stopped after one
iteration with ``converged=True`` (0 <= 0, inf <= inf), in memory, out of core and sharded; and
out of core, float64 rows near 1e160 overflowed the host's float64 spread the same way.
"""

import jax
import numpy as np
import pytest

import gmmlimit as gl
from gmmlimit import variants as gv
from gmmlimit.scale import fit_out_of_core, fit_sharded, kmeans_out_of_core

_rng = np.random.default_rng(12)
G = _rng.gamma(4.0, 1.0, (300, 2)) * np.where(_rng.random((300, 1)) < 0.5, 1.0, 6.0)


def _gamma_start(X: np.ndarray, dtype) -> gv.GammaParams:
    return gv.GammaParams(X[[0, 1, 2]], dtype(1.0), np.full(3, 1 / 3, dtype), dtype(np.inf))


@pytest.mark.parametrize("exponent", [-85, 85])
def test_a_hard_fit_without_a_declared_scaling_runs_as_at_unit_scale(exponent):
    X = G.astype(np.float32)
    far = np.ldexp(X, exponent)  # squares underflow (2^-85) or overflow (2^85) float32
    unit = gl.fit(gv.gamma, X, _gamma_start(X, np.float32), block_size=64)
    assert int(unit.n_iter) > 2
    for fit in (gl.fit, fit_out_of_core, fit_sharded):
        got = fit(gv.gamma, far, _gamma_start(far, np.float32), block_size=64)
        assert int(got.n_iter) == int(unit.n_iter), fit.__name__
        assert bool(got.converged)
        np.testing.assert_array_equal(np.asarray(got.labels), np.asarray(unit.labels))
        # the Itakura-Saito divergence is scale-free and the means are weighted averages
        np.testing.assert_array_equal(np.asarray(got.means), np.ldexp(unit.means, exponent))


def test_out_of_core_rows_whose_squares_pass_float64_fit_as_in_memory():
    X = np.ldexp(G, 530)  # near 1e160
    m0 = X[[0, 1, 2, 3]]
    for tol in (1e-4, 1e-8):
        a = gl.kmeans(X, m0, tol=tol, block_size=32)
        b = kmeans_out_of_core(X, m0, tol=tol, block_size=32)
        assert int(b.n_iter) == int(a.n_iter) > 1
        np.testing.assert_array_equal(np.asarray(b.labels), np.asarray(a.labels))
        np.testing.assert_array_equal(np.asarray(b.means), np.asarray(a.means))


def test_out_of_core_reads_big_endian_chunks_and_names_a_chunk_of_another_dtype():
    X = G.astype(np.float32)
    m0 = X[[0, 1, 2]]
    native = kmeans_out_of_core(X, m0, block_size=32)
    for source in (X.astype(">f4"), [X[:100].astype(">f4"), X[100:].astype(">f4")]):
        got = kmeans_out_of_core(source, m0, block_size=32)
        assert int(got.n_iter) == int(native.n_iter)
        np.testing.assert_array_equal(np.asarray(got.means), np.asarray(native.means))
    # two pieces of different dtypes: named in the order given (before: the first chunk, joined
    # from both, was float64, and the message named float32 as the odd one)
    with pytest.raises(ValueError, match="must all have dtype float32; got one of float64"):
        kmeans_out_of_core([X[:10], X[10:].astype(np.float64)], m0, block_size=32)


def test_a_chunk_of_one_block_sums_as_the_in_memory_fit():
    # before: chunk_blocks=1 compiled a one-trip scan that XLA inlined, and the spherical fit's
    # means were 3.3e-16 off the in-memory ones (chunk_blocks=2 was bit for bit)
    X = np.array(np.random.default_rng(0).normal(size=(178, 4)))
    X[:60] += 3.0
    p = gv.SphericalParams(X[[0, 70, 150]], np.ones(3), np.array([0.3, 0.3, 0.4]), 1.0, 1e-6)
    a = gl.fit(gv.spherical, X, p, max_iter=30, block_size=64)
    b = fit_out_of_core(gv.spherical, X, p, max_iter=30, block_size=64, chunk_blocks=1)
    assert int(b.n_iter) == int(a.n_iter)
    np.testing.assert_array_equal(np.asarray(b.labels), np.asarray(a.labels))
    np.testing.assert_array_equal(np.asarray(b.means), np.asarray(a.means))
    np.testing.assert_array_equal(np.asarray(b.params.variances), np.asarray(a.params.variances))


def _switching_source(first: np.ndarray, later: np.ndarray, calls: int):
    """A callable source: ``first`` on its first ``calls`` passes, ``later`` on every one after."""
    count = {"n": 0}

    def source():
        count["n"] += 1
        return iter([first if count["n"] <= calls else later])

    return source


# The calls a one-process fit makes before its first fitting pass: a look at the first chunk's
# dtype, then the two passes of the validating scan.
SCAN_CALLS = 3
_Y = np.random.default_rng(0).normal(size=(300, 2))
_Y[150:] += 4


@pytest.mark.parametrize("later", ["float64", "1e300"])
def test_a_later_pass_of_another_dtype_is_refused_not_cast(later):
    # before: every fitting pass checked its chunks only against its own first one, so float64
    # rows after a float32 scan were cast to float32: silently rounded, and a row of 1e300 (finite
    # in float64) became inf and the fit returned objective -inf with only a numpy warning
    X32 = _Y.astype(np.float32)
    rows = _Y + 1e-9 if later == "float64" else _Y.copy()
    if later == "1e300":
        rows[10] = 1e300
    source = _switching_source(X32, rows, SCAN_CALLS)
    message = r"must all have dtype float32; got one of float64 \(rows 0\.\.299, on a later pass"
    with pytest.raises(ValueError, match=message):
        kmeans_out_of_core(source, X32[[0, 200]], block_size=64)
    source = _switching_source(X32, rows, SCAN_CALLS)
    with pytest.raises(ValueError, match=message):
        fit_out_of_core(gv.isotropic, source, gv.IsotropicParams(X32[[0, 200]], np.float32(0.5)))


def test_a_scan_of_another_dtype_than_the_first_look_is_refused():
    # with x64 off, a float32 first chunk keeps the fit in float32; float64 chunks of the scan
    # were then computed in float32 (1e300 became inf) although the scan found them finite
    X32 = _Y.astype(np.float32)
    rows = _Y.copy()
    rows[10] = 1e300
    message = "must all have dtype float32; got one of float64"
    with jax.enable_x64(False), pytest.raises(ValueError, match=message):
        kmeans_out_of_core(_switching_source(X32, rows, 1), X32[[0, 200]], block_size=64)
