"""DP-means: the monotone objective J + lambda K, its fixed points, a reference, the options."""

import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.cluster import KMeans

from gmmlimit import variants as gv
from gmmlimit.variants._dpmeans import _dpmeans_compiled

RNG = np.random.default_rng(0)
X = (RNG.normal(size=(5, 2)) * 6)[RNG.integers(5, size=300)] + RNG.normal(size=(300, 2))
SLOTS, MAX_ITER = 24, 60


def _fit(lam, data=X, **kw):
    return gv.dpmeans(data, lam, max_clusters=SLOTS, max_iter=MAX_ITER, **kw)


def _reference(X, lam, slots):
    """The same batch DP-means, written plainly in NumPy."""
    means = np.zeros((slots, X.shape[1]))
    means[0] = X.mean(0)
    active = np.zeros(slots, bool)
    active[0] = True
    previous = None
    while True:
        d = ((X[:, None, :] - means[None]) ** 2).sum(-1)
        d[:, ~active] = np.inf
        labels = d.argmin(1)
        nearest = d[np.arange(len(X)), labels]
        far = int(np.argmax(nearest))
        create = nearest[far] > lam and not active.all()
        moved = labels.copy()
        if create:
            moved[far] = int(np.argmin(active))
        counts = np.bincount(moved, minlength=slots)
        for k in np.flatnonzero(counts):
            means[k] = X[moved == k].mean(0)
        active = counts > 0
        if previous is not None and not create and np.array_equal(labels, previous):
            return means, active
        previous = labels


@pytest.mark.parametrize("lam", [3.0, 12.0, 60.0])
def test_objective_never_increases_and_lambda_never_recompiles(lam):
    _fit(1.0)
    size = _dpmeans_compiled._cache_size()
    result = _fit(lam)
    assert _dpmeans_compiled._cache_size() == size
    n = int(result.n_iter)
    values = np.append(np.asarray(result.history)[:n], float(result.objective))
    assert np.all(np.diff(values) <= 1e-10 * values.max()), np.diff(values).max()
    assert bool(result.converged) and not bool(result.saturated)


def test_converged_partition_is_a_dpmeans_and_lloyd_fixed_point():
    lam = 12.0
    result = _fit(lam)
    active = np.asarray(result.active)
    means = np.asarray(result.means)[active]
    k = int(result.n_clusters)
    assert k == active.sum() and k > 1
    # every point lies within lambda of its mean: no point would open a cluster
    d = ((X[:, None, :] - means[None]) ** 2).sum(-1)
    assert d.min(1).max() <= lam
    # the objective is J + lambda K, and the means are a fixed point of Lloyd's iteration
    np.testing.assert_allclose(float(result.objective), d.min(1).sum() + lam * k, rtol=1e-12)
    np.testing.assert_allclose(
        float(result.objective), float(gv.dpmeans_objective(X, means, lam)), rtol=1e-12
    )
    lloyd = KMeans(k, init=means, n_init=1, algorithm="lloyd", tol=0.0, max_iter=5).fit(X)
    np.testing.assert_allclose(lloyd.cluster_centers_, means, atol=1e-12)
    slots = np.flatnonzero(active)
    np.testing.assert_array_equal(slots[lloyd.labels_], np.asarray(result.labels))


def test_matches_plain_reference():
    lam = 8.0
    result = _fit(lam)
    means, active = _reference(X, lam, SLOTS)
    np.testing.assert_array_equal(np.asarray(result.active), active)
    np.testing.assert_allclose(np.asarray(result.means)[active], means[active], atol=1e-12)


def test_huge_lambda_gives_one_cluster_at_the_mean():
    result = _fit(1e6)
    assert int(result.n_clusters) == 1 and int(result.n_iter) == 2
    np.testing.assert_allclose(np.asarray(result.means)[0], X.mean(0), atol=1e-12)
    np.testing.assert_allclose(float(result.objective), ((X - X.mean(0)) ** 2).sum() + 1e6)


def test_saturation_is_reported():
    result = _fit(1e-3)
    assert int(result.n_clusters) == SLOTS and bool(result.saturated)


def test_float32_kept_and_weights_count():
    result = _fit(12.0, X.astype(np.float32))
    assert result.means.dtype == np.float32 and result.objective.dtype == np.float32
    assert result.labels.shape == (300,) and result.labels.dtype == jnp.int32
    ref = _fit(12.0)
    assert int(result.n_clusters) == int(ref.n_clusters)
    np.testing.assert_allclose(float(result.objective), float(ref.objective), rtol=1e-5)
    # weight 2 on every row doubles J; lambda 2x keeps the same solution, objective doubles
    doubled = _fit(24.0, weights=np.full(300, 2.0))
    np.testing.assert_allclose(float(doubled.objective), 2 * float(ref.objective), rtol=1e-10)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lam": 0.0}, "lam"),
        ({"lam": -1.0}, "lam"),
        ({"lam": np.nan}, "lam"),
        ({"lam": 1.0, "init_means": np.zeros((30, 2))}, "max_clusters"),
        ({"lam": 1.0, "max_clusters": 0}, "at least 1"),
        ({"lam": 1.0, "weights": -np.ones(300)}, "non-negative"),
    ],
)
def test_bad_input_raises(kwargs, message):
    kwargs = {"max_clusters": SLOTS, **kwargs}
    with pytest.raises(ValueError, match=message):
        gv.dpmeans(X, **kwargs)


def test_max_iter_is_traced_its_history_cut_back():
    long = gv.dpmeans(X, 12.0, max_clusters=SLOTS, max_iter=20)  # a 32-long history
    size = _dpmeans_compiled._cache_size()
    short = gv.dpmeans(X, 12.0, max_clusters=SLOTS, max_iter=2)
    assert _dpmeans_compiled._cache_size() == size  # the same history length: no new program
    assert short.history.shape == (2,) and int(short.n_iter) == 2
    # the same first two iterations, bit for bit
    np.testing.assert_array_equal(np.asarray(short.history), np.asarray(long.history)[:2])


def test_rows_of_weight_zero_count_for_nothing():
    # the row that opens a cluster is the one of largest w_n d_n: before, the farthest row by
    # d_n alone was asked, and weightless far rows stopped every cluster from opening (K = 1,
    # J + lambda K = 91.2 against 13.1 at lam 0.5 on rows like these)
    far = X.copy()
    far[200:] += 50.0  # far rows, weighted 0
    weights = np.r_[np.ones(200), np.zeros(100)]
    weighted, alone = _fit(8.0, far, weights=weights), _fit(8.0, X[:200])
    assert int(weighted.n_clusters) == int(alone.n_clusters) > 1
    np.testing.assert_allclose(float(weighted.objective), float(alone.objective), rtol=1e-12)
    active = np.asarray(weighted.active)
    np.testing.assert_allclose(
        np.asarray(weighted.means)[active], np.asarray(alone.means)[np.asarray(alone.active)]
    )
    # a light far row opens no cluster of its own: w d = 0.1 is not above lambda; it joins 1
    light = gv.dpmeans(np.array([[0.0], [1.0], [10.0]]), 0.1, weights=np.array([1.0, 1.0, 1e-3]))
    assert int(light.n_clusters) == 2 and abs(float(light.objective) - 0.2809190809) < 1e-9
