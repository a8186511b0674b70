"""The batched (custom_vmap) E-step used by sweeps and restarts equals per-lane fits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gmmlimit as gl
from gmmlimit._driver import fit_compiled
from gmmlimit.variants._isotropic import IsotropicParams, isotropic

rng = np.random.default_rng(0)
X = rng.normal(scale=3.0, size=(4, 3))[rng.integers(4, size=300)] + rng.normal(size=(300, 3))
W = rng.uniform(0.2, 2.0, size=300)


def _fit(x, w, means, s2):
    return fit_compiled(
        isotropic, x, w, IsotropicParams(means, s2), 0.0, max_iter=20, block_size=64
    )


def test_vmap_over_means_and_sigma2_equals_loop_float32_weighted():
    x = jnp.asarray(X, jnp.float32)
    w = jnp.asarray(W, jnp.float32)
    starts = jnp.stack([x[:4], x[10:14], x[20:24]])
    s2 = jnp.asarray([0.0, 0.3, 2.0], jnp.float32)
    batched = jax.vmap(lambda m, s: _fit(x, w, m, s))(starts, s2)
    assert batched.means.dtype == jnp.float32
    for i in range(3):
        one = _fit(x, w, starts[i], s2[i])
        labels, expected = np.asarray(batched.labels[i]), np.asarray(one.labels)
        if float(s2[i]) == 0.0:
            np.testing.assert_array_equal(labels, expected)
        else:
            # A soft lane's sums are added in another order in the batched kernel, so its means
            # equal the separate fit's only to rounding (below); a row within that rounding of a
            # tie between two means may take either label (seen on an AMD EPYC: row 56 of lane
            # 2, its two nearest means 1e-5 apart in squared distance). Every other row: equal.
            d2 = ((X[:, None, :] - np.asarray(one.means, np.float64)[None]) ** 2).sum(-1)
            nearest = np.sort(d2, axis=1)
            clear = nearest[:, 1] - nearest[:, 0] > 1e-4 * nearest[:, 1]
            assert clear.sum() >= 200  # lane 2 has two means close together: 236 rows
            np.testing.assert_array_equal(labels[clear], expected[clear])
        assert int(batched.n_iter[i]) == int(one.n_iter)
        np.testing.assert_allclose(batched.means[i], one.means, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(batched.objective[i], one.objective, rtol=1e-5)


def test_vmap_over_datasets_takes_the_plain_path():
    x = jnp.asarray(X)
    xs = jnp.stack([x, x[::-1], x * 2.0])
    w = jnp.ones((300,), x.dtype)
    m0 = x[:4]
    batched = jax.vmap(lambda d: _fit(d, w, m0, jnp.asarray(0.5)))(xs)
    for i in range(3):
        one = gl.em(xs[i], m0, 0.5, max_iter=20, tol=0.0, block_size=64)
        np.testing.assert_allclose(batched.means[i], one.means, rtol=1e-12, atol=1e-12)
        assert int(batched.n_iter[i]) == int(one.n_iter)


@pytest.fixture
def jax_only(monkeypatch):
    """The E-step without the compiled CPU kernels, as on a GPU: the wide path's own branches."""
    from gmmlimit import _native

    monkeypatch.setattr(_native, "supports", lambda dtype, k: False)
    jax.clear_caches()
    yield
    monkeypatch.undo()
    jax.clear_caches()


SWEEP_LANE_SETS = {"mixed": [0.0, 0.3, 2.0], "hard": [0.0, 0.0, 0.0], "soft": [0.1, 0.3, 2.0]}
"""All-soft and all-hard lane sets take branches of their own (no one-hot, no exponentials),
chosen per block at run time (``lax.switch``): one compiled sweep serves all three."""


def test_wide_sweep_in_tiles_equals_loop(jax_only, monkeypatch):
    # 3 lanes x 4 components: 40 elements -> tiles of 3 rows (a padded last tile of each block
    # of 64 rows); 2^18 -> one tile per block. Each lane set of SWEEP_LANE_SETS in turn, against
    # the lanes' own fits (the plain path, which reads no tile size: computed once for both).
    import sys

    engines = sys.modules["gmmlimit.variants._isotropic_engines"]
    x = jnp.asarray(X)
    w = jnp.asarray(W)
    starts = jnp.stack([x[:4], x[10:14], x[20:24]])
    singles = {
        lanes: [_fit(x, w, starts[i], jnp.asarray(sigma2s)[i]) for i in range(3)]
        for lanes, sigma2s in SWEEP_LANE_SETS.items()
    }
    for tile_elements in (40, 1 << 18):
        monkeypatch.setattr(engines, "WIDE_TILE_ELEMENTS", tile_elements)
        jax.clear_caches()  # the tile size is read when the sweep is traced
        sweep = jax.jit(jax.vmap(lambda m, s: _fit(x, w, m, s)))
        for lanes, sigma2s in SWEEP_LANE_SETS.items():
            batched = sweep(starts, jnp.asarray(sigma2s))
            for i, one in enumerate(singles[lanes]):
                msg = f"{tile_elements} elements a tile, {lanes} lanes, lane {i}"
                np.testing.assert_array_equal(
                    np.asarray(batched.labels[i]), np.asarray(one.labels), err_msg=msg
                )
                assert int(batched.n_iter[i]) == int(one.n_iter), msg
                np.testing.assert_allclose(
                    batched.means[i], one.means, rtol=1e-12, atol=1e-12, err_msg=msg
                )
                np.testing.assert_allclose(batched.history[i], one.history, rtol=1e-12, err_msg=msg)
