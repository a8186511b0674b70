"""Traced data whose entries are subnormal are rescaled as concrete data are, bit for bit.

XLA on the CPU flushes subnormal inputs of arithmetic to 0, and ``jnp.frexp``/``jnp.ldexp`` are
arithmetic: ``jnp.frexp(float32(3 * 2^-135))`` gave the exponent -149 (NumPy -133) and
``jnp.ldexp(float32(1e-40), 60)`` gave 1e-40 (NumPy 1.15e-22), and the largest magnitude
``max |x|`` of subnormal data came out 0. So a ``vmap`` of ``gl.kmeans`` over float32 data sets
at 2^-135 (every entry subnormal) computed every row as 0: each lane's labels agreed with the
lane's own (concrete, host-scaled) fit on 15 % and 32 % of the rows, and its means were 0.
The traced exponent and the traced ``exact_ldexp`` are now read from and assembled in the bits.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gmmlimit as gl
from gmmlimit._validation import exact_ldexp, scale_exponent, traced_exponent, window_exponents

_UINT = {np.float32: np.uint32, np.float64: np.uint64}
_WIDTH = 16  # entries per hypothesis example: every example has one shape (one compile)


def _values(dtype: type, seed: int = 0) -> np.ndarray:
    """(4, 64) values of either sign, a few zeros: row 0 deep subnormal (float32: below
    2^-137), rows 1..3 normal over the whole range and subnormal, mixed."""
    info = np.finfo(dtype)
    rng = np.random.default_rng(seed)
    uint = _UINT[dtype]
    fields = rng.integers(1, (1 << info.nexp) - 1, 128).astype(uint)
    mantissas = rng.integers(1, 1 << info.nmant, 256, dtype=np.int64).astype(uint)
    normal = ((fields << uint(info.nmant)) | mantissas[:128]).view(dtype)
    subnormal = mantissas[128:].view(dtype)
    deep = np.maximum(mantissas[128:192] >> uint(info.nmant // 2), uint(1)).view(dtype)
    values = np.concatenate([deep, rng.permutation([*normal, *subnormal[64:]])])
    values[::3] *= -1
    values[5::37] = 0.0
    return values.reshape(4, 64)


def _same_bits(got: np.ndarray, want: np.ndarray) -> bool:
    return np.array_equal(got.view(_UINT[want.dtype.type]), want.view(_UINT[want.dtype.type]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_traced_exponent_is_numpys_for_subnormal_and_normal_values(dtype):
    # each value's window exponent and each row's traced_exponent, on the device, against the
    # host's np.frexp (float32 3 * 2^-135: -133, not -149; a subnormal row's largest: not 0)
    values = _values(dtype)
    flat = values.reshape(-1)
    device = np.asarray(jax.jit(lambda x: window_exponents(x, dtype, jax.numpy))(flat))
    np.testing.assert_array_equal(device, window_exponents(flat, dtype))
    subnormal = np.abs(flat) < np.finfo(dtype).tiny
    np.testing.assert_array_equal(device[subnormal], np.frexp(flat[subnormal])[1])
    traced = np.asarray(jax.jit(jax.vmap(traced_exponent))(values))  # row 0: subnormal
    np.testing.assert_array_equal(traced, [scale_exponent(row) for row in values])
    assert traced[0] == np.frexp(np.max(np.abs(values[0])))[1] < np.finfo(dtype).minexp - 8


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_traced_exact_ldexp_is_numpys_bit_for_bit(dtype):
    # per row one exponent, as a lane's map: subnormal entries scaled up to normal numbers (the
    # data's largest to [0.5, 1)), normal entries moved within the normal range and past it,
    # and normal entries scaled down to subnormal results (rounded to nearest even)
    info = np.finfo(dtype)
    values = _values(dtype, seed=1)
    up = -np.frexp(np.max(np.abs(values[:1])))[1]
    exponents = np.array([up, 60, -(info.maxexp // 2), -(info.maxexp - info.minexp - 2)])
    got = np.asarray(jax.jit(jax.vmap(exact_ldexp))(values, exponents.astype(np.int32)))
    with np.errstate(over="ignore", under="ignore"):
        want = np.ldexp(values, exponents[:, None])
    assert _same_bits(got, want)
    subnormal = (np.abs(values) < info.tiny) & (values != 0)
    assert np.all(np.abs(got[0][subnormal[0]]) >= info.tiny)  # subnormal in, normal out


_FINITE_BITS = {
    dtype: st.tuples(
        st.booleans(),
        st.one_of(st.just(0), st.integers(1, (1 << np.finfo(dtype).nexp) - 2)),  # 0: subnormal
        st.integers(0, (1 << np.finfo(dtype).nmant) - 1),
    )
    for dtype in (np.float32, np.float64)
}


def _bit_values(dtype: type, parts: list[tuple[bool, int, int]]) -> np.ndarray:
    info, uint = np.finfo(dtype), _UINT[dtype]
    bits = [(int(s) << (info.bits - 1)) | (f << info.nmant) | m for s, f, m in parts]
    return np.resize(np.array(bits, dtype=uint), _WIDTH).view(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_traced_exact_ldexp_matches_numpy_on_any_finite_entries(dtype, data):
    # any finite entries (normal, subnormal, zero, either sign) by any exponent, float32 with
    # JAX's x64 flag off as well
    info = np.finfo(dtype)
    values = _bit_values(dtype, data.draw(st.lists(_FINITE_BITS[dtype], min_size=1)))
    reach = info.maxexp - info.minexp + info.nmant + 4
    exponent = data.draw(st.integers(-reach, reach))
    with np.errstate(over="ignore", under="ignore"):
        want = np.ldexp(values, exponent)
    scale = jax.jit(exact_ldexp)
    assert _same_bits(np.asarray(scale(values, np.int32(exponent))), want)
    if dtype is np.float32:
        with jax.enable_x64(False):
            assert _same_bits(np.asarray(scale(values, np.int32(exponent))), want)


def _subnormal_data_sets() -> tuple[np.ndarray, np.ndarray]:
    """(2, 60, 2) float32 data sets of three blobs at 2^-135 (every entry subnormal, positive)
    and their (2, 3, 2) starting means (rows 1..3)."""
    rng = np.random.default_rng(3)
    centres = np.array([[0.0, 0.0], [3.0, 0.5], [1.0, 3.0]]) + 4.0
    rows = centres[rng.integers(0, 3, (2, 60))] + 0.4 * rng.standard_normal((2, 60, 2))
    X = np.ldexp(rows, -135).astype(np.float32)
    assert np.all(np.abs(X) < np.finfo(np.float32).tiny)
    return X, X[:, 1:4].copy()


def _variant_fit(x: jax.Array, m: jax.Array) -> gl.FitResult:
    start = gl.variants.IsotropicParams(m, jax.numpy.zeros((), m.dtype))
    return gl.fit(gl.variants.isotropic, x, start, max_iter=8)


def _dpmeans_fit(x: jax.Array, m: jax.Array) -> gl.variants.DPMeansResult:
    return gl.variants.dpmeans(x, np.float32(2.0**-124), init_means=m, max_clusters=4, max_iter=8)


@pytest.mark.parametrize(
    "fit", [lambda x, m: gl.kmeans(x, m, max_iter=8), _variant_fit, _dpmeans_fit]
)
def test_a_vmap_over_subnormal_data_sets_is_each_lanes_own_fit(fit):
    # every entry subnormal (float32 at 2^-135): each lane's labels, iterations and means are
    # those of its own fit, which the host rescales with NumPy (a variant's fit: before, the
    # lanes' labels were their own fits' for 30 % of the rows, its translation of the means
    # flushed them to 0, and its own fit was refused, "the fitted means cannot be held"; the
    # lanes of dpmeans had means of 0, its offset added back on the device)
    X, m0 = _subnormal_data_sets()

    lanes = jax.jit(jax.vmap(fit))(X, m0)  # one compile (an eager vmap compiles op by op)
    for lane in range(2):
        own = fit(X[lane], m0[lane])
        assert np.any(np.asarray(own.means) != 0)
        np.testing.assert_array_equal(np.asarray(lanes.labels[lane]), np.asarray(own.labels))
        assert int(lanes.n_iter[lane]) == int(own.n_iter)
        assert _same_bits(np.asarray(lanes.means[lane]), np.asarray(own.means))


def test_a_covariance_entry_far_below_the_diagonal_may_come_back_subnormal():
    # float32 rows at 2^-50 with a correlation of 2^-30: the fitted off-diagonal covariance is
    # below eps times the diagonal and subnormal in the data's units; the fit is returned (a
    # review found it refused for one sign of the correlation and returned for the other)
    rng = np.random.default_rng(1)
    x1 = rng.standard_normal(60)
    x2 = 2.0**-30 * x1 + 2.0**-22 * rng.standard_normal(60)
    for sign in (1, -1):
        X = np.ldexp(np.stack([x1, sign * x2], 1), -50).astype(np.float32)
        cov = np.diag(np.var(X.astype(np.float64), 0) + 2.0**-120).astype(np.float32)[None]
        start = gl.variants.FullParams(
            X.mean(0, keepdims=True), cov, np.ones(1, np.float32), np.float32(1.0), 2.0**-120
        )
        fitted = np.asarray(gl.fit(gl.variants.full, X, start, max_iter=3).params.covariances)
        sample = np.cov(X.astype(np.float64), rowvar=False, bias=True)[0, 1]
        assert np.sign(fitted[0, 0, 1]) == np.sign(sample) and abs(fitted[0, 0, 1]) < 2.0**-126
