"""Means far beyond the rows: the rows keep their scale (docs/design.md, "Data scale").

A problem is computed divided by the power of two of the largest magnitude of its rows and
means. One mean 2^70 times farther from the origin than float32 rows near 1 used to set that
power alone: the rows, divided by 2^71, had squared distances of 0, every label was 0 and the
K-means objective 0. The rows now stay inside the scale window wherever the far means'
squared distances stay representable. Each fit with a far mean that no row is nearest to is,
bit for bit, the fit from that mean brought nearer (still no row's nearest).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gmmlimit as gl
from gmmlimit import scale
from gmmlimit import variants as gv
from gmmlimit.sklearn import KMeans

N = 40
BLOCK = 16  # 40 rows: the last block holds 8


def _rows(exponent: int = 0) -> np.ndarray:
    rng = np.random.default_rng(1)
    centres = np.array([[-2.0, 0.0], [2.0, 1.0]])
    X = centres[rng.integers(0, 2, N)] + rng.normal(0.0, 0.5, (N, 2))
    return np.ldexp(X, exponent).astype(np.float32)


def _near(X: np.ndarray) -> np.ndarray:
    """Two starting means from the rows: the first row left of 0 and the first right of it."""
    return X[[int(np.argmax(X[:, 0] < 0)), int(np.argmax(X[:, 0] > 0))]].copy()


def _with(near: np.ndarray, exponent: int) -> np.ndarray:
    return np.vstack([near, np.float32([2.0**exponent, 0.0])])


@pytest.mark.parametrize(
    ("rows", "far", "nearer"),
    [(0, 70, 20), (0, 90, 20), (-70, 1, -50)],
    ids=["2^70", "2^90", "tiny"],
)
def test_a_far_mean_leaves_the_rows_answers_as_a_nearer_one(rows, far, nearer):
    X = _rows(rows)
    near = _near(X)
    M, M_nearer = _with(near, far), _with(near, nearer)
    d = ((X[:, None, :].astype(np.float64) - M[None].astype(np.float64)) ** 2).sum(-1)
    labels = np.asarray(gl.responsibilities(X, M, 0.0)).argmax(1)
    np.testing.assert_array_equal(labels, d.argmin(1))
    if rows == 0:  # the tiny rows' objective and gaps are below float32's smallest normal
        np.testing.assert_allclose(float(gl.kmeans_objective(X, M)), d.min(1).sum(), rtol=1e-5)
        gaps = np.sort(d, 1)
        np.testing.assert_allclose(
            np.asarray(gl.study.nearest_gap(X, M)), gaps[:, 1] - gaps[:, 0], rtol=1e-4
        )
    # Fits: those from the nearer mean (its empty cluster relocated as there), bit for bit.
    reference = gl.kmeans(X, M_nearer, block_size=BLOCK)
    fits = {
        "kmeans": gl.kmeans(X, M, block_size=BLOCK),
        "jit": jax.jit(lambda x, m: gl.kmeans(x, m, block_size=BLOCK))(X, M),
        "out_of_core": scale.kmeans_out_of_core([X[:25], X[25:]], M, block_size=BLOCK),
        "sharded": scale.kmeans_sharded(X, M, block_size=BLOCK),
    }
    for name, fit in fits.items():
        np.testing.assert_array_equal(np.asarray(fit.labels), np.asarray(reference.labels), name)
        assert int(fit.n_iter) == int(reference.n_iter), name
        np.testing.assert_array_equal(np.asarray(fit.means), np.asarray(reference.means), name)
    if rows == 0:  # sigma2 = 0.5 2^(2 rows) is subnormal in float32 for the tiny rows
        # A soft fit's stopping rule reads its objective at the scale it is computed at, whose
        # rounding depends on that scale: the reference is computed at the same one (a mean
        # at 2^40 also keeps the rows at the window's edge).
        soft = gl.em(X, M, np.float32(0.5), block_size=BLOCK)
        soft_nearer = gl.em(X, _with(near, 40), np.float32(0.5), block_size=BLOCK)
        assert int(soft.n_iter) == int(soft_nearer.n_iter)
        np.testing.assert_array_equal(np.asarray(soft.means)[:2], np.asarray(soft_nearer.means)[:2])
        assert np.isfinite(float(soft.objective))


@pytest.mark.parametrize(
    ("rows", "far", "nearer"), [(0, 92, 20), (-70, 1, -50)], ids=["2^92", "tiny"]
)
def test_a_variants_far_location_leaves_the_rows_fit_as_a_nearer_one(rows, far, nearer):
    X = _rows(rows)
    near = _near(X)

    def start(exponent):
        return gv.IsotropicParams(jnp.asarray(_with(near, exponent)), jnp.float32(0.0))

    reference = gl.fit(gv.isotropic, X, start(nearer), block_size=BLOCK)
    fits = {
        "fit": gl.fit(gv.isotropic, X, start(far), block_size=BLOCK),
        "out_of_core": scale.fit_out_of_core(
            gv.isotropic, [X[:25], X[25:]], start(far), block_size=BLOCK
        ),
        "jit": jax.jit(lambda x: gl.fit(gv.isotropic, x, start(far), block_size=BLOCK))(X),
    }
    for name, fit in fits.items():
        np.testing.assert_array_equal(np.asarray(fit.labels), np.asarray(reference.labels), name)
        np.testing.assert_array_equal(
            np.asarray(fit.params.means), np.asarray(reference.params.means), name
        )


def test_rows_far_below_every_mean_are_answered_at_the_means_scale():
    """Past the reach of one scale with every mean far from the rows, the exponent stays the
    means': the rows are 0 beside them to the dtype's precision. A first version of the clip
    refused these (a review found KMeans.predict of one row near 1e-30 refused)."""
    X = _rows(-100)  # float32 rows near 1e-30, means near 1
    M = np.float32([[-1.0, 0.0], [2.0, 1.0]])
    d = ((X[:, None, :].astype(np.float64) - M[None].astype(np.float64)) ** 2).sum(-1)
    r = np.exp(-0.5 * (d - d.min(1, keepdims=True)))
    np.testing.assert_allclose(
        np.asarray(gl.responsibilities(X, M, 1.0)), r / r.sum(1, keepdims=True), rtol=1e-6
    )
    km = KMeans(n_clusters=2, init=M, n_init=1).fit(np.vstack([M, M + 0.5]))
    assert km.predict(np.float32([[1e-30, 0.0]])).tolist() == [0]


def test_the_traced_exponent_keeps_subnormal_rows_as_the_concrete_one():
    """XLA on the CPU compares a subnormal magnitude as 0: the clip's test reads the bits."""
    X = _rows(-130)  # subnormal float32 rows
    M = np.vstack([_near(X), np.float32([2.0**-60, 0.0])])
    labels = np.asarray(gl.responsibilities(X, M, 0.0)).argmax(1)
    traced = jax.jit(lambda x, m: gl.responsibilities(x, m, 0.0))(X, M)
    np.testing.assert_array_equal(np.asarray(traced).argmax(1), labels)
    assert len(np.unique(labels)) == 2
