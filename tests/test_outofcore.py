"""Out-of-core fits read the data in chunks and must reproduce the in-memory fit bit for bit."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from trace_count import traces

import gmmlimit as gl

pytestmark = pytest.mark.cpu_bits

# One shape, block size and max_iter throughout, so the compiled programs are shared.
N, D, K, B, IT = 600, 3, 4, 50, 40


def _blobs(seed, n=N, d=D, k=K, dtype=np.float64):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(k, d))
    return (centres[rng.integers(k, size=n)] + rng.normal(size=(n, d))).astype(dtype)


def _same(a, b):
    np.testing.assert_array_equal(np.asarray(a.means), np.asarray(b.means))
    np.testing.assert_array_equal(np.asarray(a.labels), np.asarray(b.labels))
    np.testing.assert_array_equal(np.asarray(a.history), np.asarray(b.history))
    assert int(a.n_iter) == int(b.n_iter)
    assert bool(a.converged) == bool(b.converged)
    assert np.asarray(a.objective) == np.asarray(b.objective)
    assert np.asarray(a.means).dtype == np.asarray(b.means).dtype == np.asarray(a.history).dtype


def test_float32_kmeans_from_memmap_equals_in_memory(tmp_path):
    X = _blobs(0, dtype=np.float32)
    path = tmp_path / "x.npy"
    np.save(path, X)
    mm = np.load(path, mmap_mode="r")
    m0 = X[:K].copy()
    ref = gl.kmeans(X, m0, max_iter=IT, block_size=B)
    ooc = gl.scale.kmeans_out_of_core(mm, m0, max_iter=IT, block_size=B, chunk_blocks=3)
    _same(ooc, ref)
    assert int(ref.n_iter) > 2


def test_em_from_uneven_chunk_list_equals_in_memory():
    X = _blobs(1)
    m0 = X[[0, 100, 200, 300]].copy()
    pieces = [X[:7], X[7:500], X[500:501], X[501:]]  # re-cut into whole blocks internally
    ref = gl.em(X, m0, 0.7, max_iter=IT, tol=0.0, block_size=B)
    ooc = gl.scale.em_out_of_core(
        pieces, m0, 0.7, max_iter=IT, tol=0.0, block_size=B, chunk_blocks=3
    )
    _same(ooc, ref)
    # Every iteration raised the log-likelihood (EM).
    assert np.all(np.diff(np.asarray(ooc.history)) >= -1e-9)


def test_weighted_kmeans_from_a_generator_factory_with_empty_cluster():
    X = _blobs(2)
    w = np.random.default_rng(0).uniform(0.0, 2.0, size=N)
    # Two identical initial means: one cluster starts empty and is relocated.
    m0 = np.stack([X[0], X[0], X[1], X[2]])

    def chunks():
        for i in range(0, N, 90):
            yield X[i : i + 90]

    ref = gl.kmeans(X, m0, weights=w, max_iter=IT, block_size=B)
    ooc = gl.scale.kmeans_out_of_core(
        chunks, m0, weights=w, max_iter=IT, block_size=B, chunk_blocks=3
    )
    _same(ooc, ref)


def test_generic_variant_path_and_max_iter():
    X = _blobs(3)
    params = gl.variants.IsotropicParams(X[:K].copy(), 0.0)
    ref = gl.fit(gl.variants.isotropic, X, params, max_iter=2, tol=0.0, block_size=B)
    ooc = gl.scale.fit_out_of_core(
        gl.variants.isotropic, X, params, max_iter=2, tol=0.0, block_size=B, chunk_blocks=3
    )
    _same(ooc, ref)
    assert int(ooc.n_iter) == 2 and not bool(ooc.converged)


def test_bad_sources_raise_value_errors():
    X = _blobs(4)
    m0 = X[:2]
    with pytest.raises(ValueError, match="read only once"):
        gl.scale.kmeans_out_of_core(iter([X]), m0)
    with pytest.raises(ValueError, match=r"must return an iterable .* it returned int"):
        gl.scale.kmeans_out_of_core(lambda: 5, m0)  # a TypeError before
    with pytest.raises(ValueError, match="NaN or inf"):
        bad = X.copy()
        bad[50, 1] = np.nan
        gl.scale.kmeans_out_of_core([X, bad], m0)
    with pytest.raises(ValueError, match="columns"):
        gl.scale.kmeans_out_of_core([X, X[:, :1]], m0)
    with pytest.raises(ValueError, match="columns"):
        gl.scale.kmeans_out_of_core([X], np.zeros((2, D + 1)))
    with pytest.raises(ValueError, match="sigma2"):
        gl.scale.em_out_of_core([X], m0, -1.0)
    with pytest.raises(ValueError, match="weights"):
        gl.scale.kmeans_out_of_core([X], m0, weights=np.ones(99))
    with pytest.raises(ValueError, match="k=3 exceeds"):
        gl.scale.kmeans_out_of_core([X[:2]], X[:3])


def test_result_independent_of_chunking():
    # The same k-means++ start, two chunkings: identical fits.
    X = _blobs(5)
    m0 = np.asarray(gl.init.kmeans_plusplus(jax.random.key(0), X, K))
    a = gl.scale.kmeans_out_of_core([X], m0, max_iter=IT, block_size=B, chunk_blocks=3)
    b = gl.scale.kmeans_out_of_core(
        [X[:260], X[260:]], m0, max_iter=IT, block_size=B, chunk_blocks=3
    )
    _same(a, b)
    assert int(a.n_iter) > 1


def test_a_second_out_of_core_fit_of_the_same_shapes_traces_nothing():
    # every pass once traced the E-step afresh for the shapes of its statistics: an out-of-core
    # fit paid one trace per iteration, again on every call
    X = _blobs(5)
    variant = gl.variants.diag
    params = variant.init(jax.random.key(0), X, K)

    def fit():
        return gl.scale.fit_out_of_core(
            variant, [X[:250], X[250:]], params, max_iter=IT, tol=0.0, block_size=B
        )

    first = fit()
    assert int(first.n_iter) == IT  # every pass ran
    with traces() as traced:
        again = fit()
    assert traced == [], traced
    _same(again, first)


class _Counted(NamedTuple):
    """diag's statistics and a count of JAX's default integer dtype (int32 or int64 with x64)."""

    inner: Any
    n: Any

    @property
    def counts(self):
        return self.inner.counts

    @property
    def distortion(self):
        return self.inner.distortion


def test_out_of_core_fits_under_either_x64_flag_in_one_process():
    # the statistics' shapes were cached without the x64 flag: the count's int32 from a fit with
    # x64 off met an int64 sum with it on ("carry input and carry output must have equal types")
    diag = gl.variants.diag
    counted = diag._replace(
        name="counted",
        sufficient_stats=lambda x, w, e: _Counted(diag.sufficient_stats(x, w, e), jnp.sum(w > 0)),
        m_step=lambda p, s: diag.m_step(p, s.inner),
        objective=lambda p, s: diag.objective(p, s.inner),
        relocate=None
        if diag.relocate is None
        else (lambda p, s, f: _Counted(diag.relocate(p, s.inner, f), s.n)),
        engine=None,
    )
    X = _blobs(6, dtype=np.float32)
    objectives = []
    for x64 in (False, True):
        with jax.enable_x64(x64):
            start = diag.init(jax.random.key(0), jnp.asarray(X), K)
            ooc = gl.scale.fit_out_of_core(counted, X, start, max_iter=5, block_size=B)
            objectives.append(float(ooc.objective))
    assert objectives[0] == objectives[1]
