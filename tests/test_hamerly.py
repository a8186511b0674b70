"""Exact accelerated K-means: Hamerly's bounds give Lloyd's iterates bit for bit.

``kmeans(..., algorithm="hamerly")`` skips the scores of rows whose label provably cannot change;
everything a fit returns (means, labels, objectives and their history, distortion, iteration
count, convergence flag) must be the same bits as ``algorithm="lloyd"``, on every shape the
kernel tiles differently (D below, at and above a vector; K = 1; blocks that are not full),
with weights (zeros included), ties, empty clusters, float32 and float64, and under ``vmap``
(restarts). The kernel must also really skip: after a few iterations on separated clusters,
few rows are scored.
"""

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gmmlimit as gl
from gmmlimit import _native

pytestmark = [
    pytest.mark.skipif(
        not _native.available(), reason=f"CPU kernel unavailable: {_native.status()}"
    ),
    pytest.mark.cpu_bits,
]


def _blobs(seed, n, d, k, dtype, spread=10.0):
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-spread, spread, (k, d))
    return (centres[rng.integers(0, k, n)] + rng.normal(size=(n, d))).astype(dtype)


def _assert_same_fit(a, b):
    for name in a._fields:
        left, right = getattr(a, name), getattr(b, name)
        for x, y in zip(jax.tree.leaves(left), jax.tree.leaves(right), strict=True):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=name)


def _both(X, m0, **kw):
    lloyd = gl.kmeans(X, m0, algorithm="lloyd", **kw)
    hamerly = gl.kmeans(X, m0, algorithm="hamerly", **kw)
    return lloyd, hamerly


@pytest.mark.parametrize(
    "n, d, k, dtype, block_size",
    [
        (3001, 20, 17, np.float32, 512),  # last block not full; D past one float32 vector
        (1500, 64, 40, np.float64, 4096),  # one block; D several vectors
        (1000, 300, 20, np.float32, 384),  # groups past 32 KB: the bound test's spread prefetch
        (700, 1, 4, np.float64, 128),  # D = 1
        (400, 9, 1, np.float32, 128),  # K = 1: no other mean, every row skips after the first
    ],
)
def test_hamerly_gives_lloyds_iterates_bit_for_bit(monkeypatch, n, d, k, dtype, block_size):
    X = _blobs(0, n, d, k, dtype)
    m0 = X[np.random.default_rng(1).choice(n, k, replace=False)]
    lloyd, hamerly = _both(X, m0, block_size=block_size)
    assert int(lloyd.n_iter) > 2 or k == 1
    _assert_same_fit(lloyd, hamerly)
    if d in (20, 1, 9):  # last block not full; D = 1, float64; K = 1
        # Plain passes between bounded ones keep Lloyd's bits too (Lloyd's fit reads no
        # schedule: computed here, before the schedule is replaced, and not compiled again).
        lloyd = gl.kmeans(X, m0, algorithm="lloyd", block_size=block_size, tol=0.0)
        with _bounds_that_never_pay(monkeypatch) as calls:
            hamerly = gl.kmeans(X, m0, algorithm="hamerly", block_size=block_size, tol=0.0)
        _assert_same_fit(lloyd, hamerly)
        passes = int(hamerly.n_iter) + 1
        assert len(calls) < passes or passes <= 2  # some passes were plain ones


def test_hamerly_with_weights_ties_and_empty_clusters():
    rng = np.random.default_rng(2)
    # Integer data: many rows exactly equidistant from two means (ties go to the lowest index).
    X = rng.integers(-4, 5, (2000, 17)).astype(np.float32)
    weights = rng.uniform(0, 2, 2000).astype(np.float32)
    weights[::7] = 0.0
    # Three identical starting means and one far away: empty clusters on the first iterations.
    m0 = np.concatenate([np.repeat(X[:1], 3, axis=0), X[1:14], np.full((1, 17), 1e3, np.float32)])
    lloyd, hamerly = _both(X, m0, weights=weights, block_size=300, max_iter=60)
    assert np.asarray(lloyd.history)[0] < np.asarray(lloyd.history)[1]  # relocation moved means
    _assert_same_fit(lloyd, hamerly)


def test_hamerly_at_tiny_and_huge_scales_and_with_tol():
    base = _blobs(3, 700, 24, 18, np.float64)  # blocks of 300: the last one padded
    m0 = base[:18]
    for scale in (2.0**-300, 1.0, 2.0**300):
        lloyd, hamerly = _both(base * scale, m0 * scale, tol=1e-4, block_size=300)
        _assert_same_fit(lloyd, hamerly)


def test_hamerly_restarts_under_vmap_match_lloyd_restarts(monkeypatch):
    X = _blobs(4, 600, 20, 12, np.float32)
    key = jax.random.key(5)
    lloyd = gl.restarts(key, X, 12, n_init=2, algorithm="lloyd", block_size=256)
    hamerly = gl.restarts(key, X, 12, n_init=2, algorithm="hamerly", block_size=256)
    _assert_same_fit(lloyd, hamerly)
    # Plain passes in vmapped restarts keep Lloyd's bits too (Lloyd's restarts read no schedule).
    with _bounds_that_never_pay(monkeypatch) as calls:
        hamerly = gl.restarts(key, X, 12, n_init=2, algorithm="hamerly", block_size=256)
    _assert_same_fit(lloyd, hamerly)
    assert 0 < len(calls) < 2 * (int(np.max(np.asarray(hamerly.n_iter))) + 1)


@settings(
    max_examples=3,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    seed=st.integers(0, 2**31 - 1),
    shape=st.sampled_from([(5, 2), (33, 20)]),
    dtype=st.sampled_from([np.float32, np.float64]),
    grid=st.booleans(),
)
def test_hamerly_equals_lloyd_on_random_problems(seed, shape, dtype, grid):
    d, k = shape
    rng = np.random.default_rng(seed)
    if grid:  # coarse integer grid: exact ties and duplicate rows
        X = rng.integers(-3, 4, (300, d)).astype(dtype)
    else:
        X = _blobs(seed, 300, d, k, dtype, spread=float(rng.uniform(0.5, 20)))
    m0 = X[rng.choice(300, k, replace=False)]
    lloyd, hamerly = _both(X, m0, block_size=128, max_iter=50)
    _assert_same_fit(lloyd, hamerly)


def test_the_bounded_kernel_skips_rows_and_matches_the_hard_kernel_pass_by_pass():
    n_blocks, b, d, k = 4, 1000, 48, 30
    X = _blobs(6, n_blocks * b, d, k, np.float32, spread=20.0)
    x_blocks = jnp.asarray(X.reshape(n_blocks, b, d))
    w_blocks = jnp.ones((n_blocks, b), jnp.float32)
    means = jnp.asarray(X[np.random.default_rng(7).choice(len(X), k, replace=False)])
    old, labels = means, -jnp.ones((n_blocks, b), jnp.int32)
    groups = 2  # means 0-15 and 16-29 (groups of 16 consecutive means)
    lower = jnp.zeros((n_blocks, b, groups), jnp.float32)
    hard, bounded = jax.jit(_native.hard_assign), jax.jit(_native.hard_assign_bounded)
    scored = []
    for _ in range(12):
        want = hard(means, x_blocks, w_blocks)
        got = bounded(means, old, labels, lower, x_blocks, w_blocks)
        for a, c in zip(want, got[:5], strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(c))
        labels, lower, old, scored = got[0], got[5], means, [*scored, int(got[6])]
        counts, sums = np.asarray(want[2]), np.asarray(want[3])
        means = jnp.asarray(
            np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], means)
        )
    # One mean of the second group jumps onto a mean of the first: the rows it now takes were
    # skippable a pass ago, and only that group's own shift says they are not any more.
    jumped = old.at[20].set(old[3] + 0.01)
    want = hard(jumped, x_blocks, w_blocks)
    got = bounded(jumped, old, labels, lower, x_blocks, w_blocks)
    assert np.any(np.asarray(want[0]) == 20) and np.any(np.asarray(labels) == 3)
    for a, c in zip(want, got[:5], strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(c))
    assert scored[0] == n_blocks * b  # no bounds yet: every row scored
    # Settled: most rows skipped (Lloyd scores every row every time). The rows still scored sit
    # between means that keep moving (two means sharing one cluster).
    assert max(scored[-5:]) < 0.15 * n_blocks * b
    # The bounds are true lower bounds on the distance to the other means of each group.
    dist = np.sqrt(((X[:, None, :].astype(np.float64) - np.asarray(old, np.float64)) ** 2).sum(2))
    own = np.asarray(labels).reshape(-1)
    dist[np.arange(len(X)), own] = np.inf
    bounds = np.asarray(lower).reshape(-1, groups)
    for g, members in enumerate((slice(0, 16), slice(16, k))):
        assert np.all(bounds[:, g] <= dist[:, members].min(1))
        assert np.mean(bounds[:, g] > 0.5 * dist[:, members].min(1)) > 0.5  # and useful ones


def test_algorithm_is_checked_before_any_fit():
    X = np.zeros((10, 2), np.float32)
    with pytest.raises(ValueError, match="algorithm must be one of"):
        gl.kmeans(X, X[:2], algorithm="elkan")
    with pytest.raises(ValueError, match="algorithm must be one of"):
        gl.restarts(jax.random.key(0), X, 2, algorithm="fast")
    with pytest.raises(ValueError, match="applies to the isotropic model"):
        gl.restarts(jax.random.key(0), X, 2, variant=gl.variants.isotropic, algorithm="hamerly")


def test_rows_within_rounding_of_a_tie_are_scored_not_skipped():
    # Rows a hair off the bisector of two means, far from the origin: the kernel's rounded scores
    # pick the truly farther mean for some of them. Given true labels and true lower bounds (the
    # best any bound can be), the bounded kernel must still return the labels Lloyd's kernel
    # computes: a row is skipped only when its margin exceeds every score's rounding error.
    rng = np.random.default_rng(8)
    d, k, n = 32, 6, 4096
    means = (100.0 + rng.normal(size=(k, d))).astype(np.float32)
    pairs = rng.integers(0, k - 1, n)
    a, b = means[pairs].astype(np.float64), means[pairs + 1].astype(np.float64)
    direction = (b - a) / np.linalg.norm(b - a, axis=1, keepdims=True)
    eps = rng.uniform(-1, 1, (n, 1)) * 1e-4
    X = ((a + b) / 2 + eps * direction).astype(np.float32)
    x64, m64 = X.astype(np.float64), means.astype(np.float64)
    dist = np.sqrt(((x64[:, None, :] - m64[None]) ** 2).sum(2))
    true_labels = dist.argmin(1).astype(np.int32)
    others = dist.copy()
    others[np.arange(n), true_labels] = np.inf
    lower = np.nextafter(others.min(1).astype(np.float32), np.float32(0))  # rounded down
    assert np.all(lower <= others.min(1))
    shape = (4, n // 4)
    lower = lower[:, None]  # one group: all K = 6 means
    x_blocks = jnp.asarray(X.reshape(*shape, d))
    w_blocks = jnp.ones(shape, jnp.float32)
    m = jnp.asarray(means)
    want = jax.jit(_native.hard_assign)(m, x_blocks, w_blocks)
    got = jax.jit(_native.hard_assign_bounded)(
        m, m, jnp.asarray(true_labels.reshape(shape)), jnp.asarray(lower.reshape(*shape, 1)),
        x_blocks, w_blocks,
    )  # fmt: skip
    assert np.any(np.asarray(want[0]).reshape(-1) != true_labels)  # rounding decides some rows
    for x, y in zip(want, got[:5], strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_sklearn_kmeans_elkan_runs_the_bounds_and_returns_lloyds_result():
    from gmmlimit.sklearn import KMeans

    X = _blobs(9, 1500, 40, 33, np.float32, spread=3.0)
    lloyd = KMeans(33, random_state=0, n_init=2, algorithm="lloyd").fit(X)
    elkan = KMeans(33, random_state=0, n_init=2, algorithm="elkan").fit(X)
    assert lloyd.n_iter_ == elkan.n_iter_ > 2
    np.testing.assert_array_equal(lloyd.labels_, elkan.labels_)
    np.testing.assert_array_equal(lloyd.cluster_centers_, elkan.cluster_centers_)
    assert lloyd.inertia_ == elkan.inertia_


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_em_with_bounds_gives_the_same_iterates_bit_for_bit(dtype):
    X = _blobs(10, 2500, 40, 24, dtype, spread=4.0)
    weights = np.random.default_rng(11).uniform(0, 2, 2500).astype(dtype)
    weights[::9] = 0.0
    m0 = X[:24]
    for sigma2 in (0.05, 1.0):
        lloyd = gl.em(X, m0, sigma2, weights=weights, algorithm="lloyd", block_size=900)
        bounded = gl.em(X, m0, sigma2, weights=weights, algorithm="hamerly", block_size=900)
        assert int(lloyd.n_iter) > 3
        _assert_same_fit(lloyd, bounded)
    # Past the soft kernel's range (1 / (2 sigma2) not a normal number): the JAX pass runs.
    huge = float(np.finfo(dtype).max) / 2
    lloyd = gl.em(X, m0, huge, weights=weights, algorithm="lloyd", block_size=900)
    bounded = gl.em(X, m0, huge, weights=weights, algorithm="hamerly", block_size=900)
    assert np.all(np.isfinite(np.asarray(bounded.means)))
    _assert_same_fit(lloyd, bounded)


def test_the_soft_bounded_kernel_skips_one_hot_rows_with_the_soft_kernels_bits():
    n_blocks, b, d, k = 3, 1000, 40, 24
    X = _blobs(12, n_blocks * b, d, k, np.float32, spread=4.0)
    x_blocks = jnp.asarray(X.reshape(n_blocks, b, d))
    w_blocks = jnp.asarray(np.random.default_rng(13).uniform(0, 2, (n_blocks, b)), jnp.float32)
    means = jnp.asarray(X[:k])
    sigma2 = jnp.asarray(0.2, jnp.float32)
    old, labels = means, -jnp.ones((n_blocks, b), jnp.int32)
    lower = jnp.zeros((n_blocks, b, 2), jnp.float32)
    soft, bounded = jax.jit(_native.soft_assign), jax.jit(_native.soft_assign_bounded)
    scored = []
    for _ in range(10):
        want = [a[0] for a in soft(means[None], sigma2[None], x_blocks, w_blocks)]
        got = bounded(means, sigma2, old, labels, lower, x_blocks, w_blocks)
        for a, c in zip(want, got[:6], strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(c))
        labels, lower, old, scored = got[0], got[6], means, [*scored, int(got[7])]
        counts, sums = np.asarray(want[2]), np.asarray(want[3])
        means = jnp.asarray(sums / counts[:, None])
    assert scored[0] == n_blocks * b and scored[-1] < 0.5 * n_blocks * b


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("soft", [False, True])
def test_groups_scored_without_the_bound_test_get_bounds_that_skip(dtype, soft):
    """A pass whose bound test lets too few rows through scores most of a chunk's groups
    without the test, each row's |x|^2 for its new bounds taken from the scores' own read of
    it: those bounds must be as good as the tested rows'. At the same means the next pass then
    skips every row of these separated clusters, with the unbounded kernel's bits. The data sit
    far from the origin, so bounds from a wrong |x|^2 would be 0 (or not bounds at all)."""
    n_blocks, b, d, k = 2, 4096, 40, 16  # two chunks of 2048 rows per block, 64 groups each
    rng = np.random.default_rng(31)
    centres = 300.0 + rng.uniform(-20, 20, (k, d))
    X = (centres[rng.permutation(n_blocks * b) % k] + rng.normal(size=(n_blocks * b, d))).astype(
        dtype
    )
    x_blocks = jnp.asarray(X.reshape(n_blocks, b, d))
    w_blocks = jnp.ones((n_blocks, b), dtype)
    means = jnp.asarray(centres, dtype)
    sigma2 = jnp.asarray(1.0, dtype)
    mode = _native.BOUNDED_MODES["soft" if soft else "hard"]
    bounded = jax.jit(_native.assign_bounded)
    if soft:
        plain = jax.jit(
            lambda m, s, x, w: [a[0] for a in _native.soft_assign(m[None], s[None], x, w)]
        )
        want = plain(means, sigma2, x_blocks, w_blocks)
    else:
        want = jax.jit(_native.hard_assign)(means, x_blocks, w_blocks)
    labels = -jnp.ones((n_blocks, b), jnp.int32)
    lower = jnp.zeros((n_blocks, b, 1), dtype)
    first = bounded(mode, means, sigma2, means, labels, lower, x_blocks, w_blocks)
    second = bounded(mode, means, sigma2, means, first[7], first[6], x_blocks, w_blocks)
    assert int(first[8]) == n_blocks * b  # no bounds yet: every row scored
    assert int(second[8]) == 0
    np.testing.assert_array_equal(np.asarray(second[0]), np.asarray(first[0]))
    np.testing.assert_array_equal(np.asarray(first[0]), np.asarray(want[0]))
    np.testing.assert_array_equal(np.asarray(second[1]), np.asarray(want[1]))
    if not soft:  # the soft statistics are summed in another order (assign_bounded's docstring)
        for a, c in zip(want[2:], (second[2], second[3], second[5]), strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(c))


def test_rows_whose_other_responsibilities_are_tiny_but_not_zero_are_scored():
    # Every row sits near mean 0; mean 1's exponential exp(-gap / (2 sigma2)) runs from far
    # below the smallest normal float32 (exactly 0) to e^-60 (tiny, not 0) across the rows. With
    # the best bounds there are, only rows whose term is exactly 0 may skip their scores: mean 1's
    # count and sums are built from the others' tiny terms alone and would show any skipped one.
    rng = np.random.default_rng(14)
    n, d = 2048, 8
    means = np.zeros((2, d), np.float32)
    means[1, 0] = 2.0
    X = (rng.normal(size=(n, d)) * 0.1).astype(np.float32)
    X[:, 0] = rng.uniform(-29.0, -14.0, n)  # gap = 4 - 4 x_0 in [60, 120], sigma2 = 0.5
    x64 = X.astype(np.float64)
    true_lower = np.sqrt(((x64 - means[1]) ** 2).sum(1)).astype(np.float32)
    lower = np.nextafter(true_lower, np.float32(0)).reshape(2, n // 2, 1)
    shape = (2, n // 2)
    x_blocks = jnp.asarray(X.reshape(*shape, d))
    w_blocks = jnp.ones(shape, jnp.float32)
    m, sigma2 = jnp.asarray(means), jnp.asarray(0.5, jnp.float32)
    want = [a[0] for a in jax.jit(_native.soft_assign)(m[None], sigma2[None], x_blocks, w_blocks)]
    got = jax.jit(_native.soft_assign_bounded)(
        m, sigma2, m, jnp.zeros(shape, jnp.int32), jnp.asarray(lower), x_blocks, w_blocks
    )
    assert 0 < float(want[2][1]) < 1e-20  # mean 1's count: tiny terms only
    assert 0 < int(got[7]) < n  # some rows skipped, some scored
    for a, c in zip(want, got[:6], strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(c))


def test_auto_uses_the_bounds_from_32_features_and_4096_scores_per_row():
    from gmmlimit._api import _hard_variant
    from gmmlimit.variants._isotropic import isotropic, isotropic_bounded

    assert _hard_variant("auto", 64, 64) is isotropic_bounded
    assert _hard_variant("auto", 784, 16) is isotropic_bounded
    assert _hard_variant("auto", 32, 64) is isotropic  # D K = 2048
    assert _hard_variant("auto", 16, 256) is isotropic  # D < 32
    assert _hard_variant("lloyd", 784, 512) is isotropic
    assert _hard_variant("hamerly", 2, 3) is isotropic_bounded


def test_the_algorithm_choice_reaches_the_bounded_kernels(monkeypatch):
    # Bit-equality alone would also hold if "hamerly" silently ran Lloyd: count the bounded
    # kernels' calls while each fit is traced (shapes no other test compiles).
    from gmmlimit.sklearn import KMeans

    calls = []
    bounded = _native.assign_bounded

    def count(*args, **kwargs):
        calls.append(1)
        return bounded(*args, **kwargs)

    monkeypatch.setattr(_native, "assign_bounded", count)
    X = _blobs(15, 523, 37, 11, np.float32)
    # The EM fits are traced, not compiled: the calls are made in tracing. The K-means fits run:
    # under jax.make_jaxpr their sigma2 of 0 would be traced, and the fit would take the path of
    # a traced sigma2, not the hard variant that the algorithm picks.
    traced = jax.make_jaxpr
    gl.kmeans(X, X[:11], algorithm="lloyd", block_size=129)
    traced(lambda: gl.em(X, X[:11], 0.3, algorithm="lloyd", block_size=129))()
    assert not calls
    gl.kmeans(X, X[:11], algorithm="hamerly", block_size=129)
    assert calls
    for fit in (
        # (another block size: the K-means fit above compiled the same loop for any sigma2)
        traced(lambda: gl.em(X, X[:11], 0.3, algorithm="hamerly", block_size=131)),
        lambda: KMeans(11, init=X[:11], n_init=1, algorithm="elkan").fit(X[:517]),
    ):
        before = len(calls)
        fit()
        assert len(calls) > before


def test_hamerly_with_float64_data_and_x64_off_stays_float64_and_equals_lloyd():
    import os
    import subprocess
    import sys

    code = """
import jax, numpy as np
assert not jax.config.jax_enable_x64
import gmmlimit as gl
rng = np.random.default_rng(0)
c = rng.uniform(-3, 3, (40, 48))
X = c[rng.integers(0, 40, 3001)] + rng.normal(size=(3001, 48))
a = gl.kmeans(X, X[:40], algorithm="lloyd", block_size=1000)
b = gl.kmeans(X, X[:40], algorithm="hamerly", block_size=1000)
assert a.means.dtype == b.means.dtype == np.float64, (a.means.dtype, b.means.dtype)
for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    assert np.array_equal(np.asarray(x), np.asarray(y))
assert int(a.n_iter) > 2
print("ok")
"""
    env = dict(os.environ)
    # Lloyd's and Hamerly's programs give the same bits on XLA:CPU (cpu_bits), not on a GPU
    env["JAX_PLATFORMS"] = "cpu"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_bounds_pay_or_back_off_by_the_schedule():
    from gmmlimit.variants._isotropic_engines import MAX_BACKOFF, next_schedule

    rows = 1000

    def step(scored, previous, backoff):
        plain, grown = next_schedule(
            jnp.int32(scored), jnp.int32(previous), rows, jnp.int32(backoff)
        )
        return int(plain), int(grown)

    assert step(1000, 1000, 0) == (0, 1)  # the first pass (nothing to test): a bounded one next
    assert step(1000, 1000, 1) == (1, 2)  # bounds that skip nothing: one plain pass, then two
    assert step(990, 1000, 4) == (4, 8)
    assert step(1000, 1000, MAX_BACKOFF) == (MAX_BACKOFF, MAX_BACKOFF)  # capped
    assert step(500, 1000, 8) == (0, 0)  # half the rows skipped: bounded passes go on
    assert step(760, 1000, 8) == (0, 0)  # 24 % skipped, 24 points more than before: climbing
    assert step(760, 800, 2) == (2, 4)  # 24 % skipped, 4 points more: not paying


def test_bounds_kept_across_plain_passes_stay_valid_and_still_skip():
    """Plain passes keep the bounds of the last bounded pass; the next bounded pass starts from
    them (means and labels several passes old, each group moved by its shift since): the same
    bits as the plain pass, with rows skipped."""
    from gmmlimit.variants._isotropic_engines import bounded_pass, fused_pass, no_bounds

    n_blocks, b, d, k = 3, 500, 40, 24
    X = _blobs(11, n_blocks * b, d, k, np.float32, spread=20.0)
    x_blocks = jnp.asarray(X.reshape(n_blocks, b, d))
    w_blocks = jnp.ones((n_blocks, b), jnp.float32)
    means = jnp.asarray(X[np.random.default_rng(12).choice(len(X), k, replace=False)])
    sigma2 = jnp.zeros((), jnp.float32)
    run = jax.jit(bounded_pass)
    labels = -jnp.ones((n_blocks, b), jnp.int32)
    bounds = no_bounds(means, x_blocks)
    kinds = []
    for i in range(14):
        if i in (3, 8):  # schedule three plain passes
            bounds = bounds._replace(plain=jnp.int32(3))
        (totals, labels, nearest), new = run(means, sigma2, x_blocks, w_blocks, labels, bounds)
        (want_totals, want_labels, want_nearest) = fused_pass(means, sigma2, x_blocks, w_blocks)
        for a, c in zip(
            jax.tree.leaves((want_totals, want_labels, want_nearest)),
            jax.tree.leaves((totals, labels, nearest)),
            strict=True,
        ):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(c))
        plain = int(bounds.plain) > 0
        kinds.append("plain" if plain else int(new.scored))
        if plain:  # the bounds, their means and labels are kept as they were
            assert int(new.plain) == int(bounds.plain) - 1
            for kept, old in zip(new[:4], bounds[:4], strict=True):
                np.testing.assert_array_equal(np.asarray(kept), np.asarray(old))
        else:
            np.testing.assert_array_equal(np.asarray(new.labels), np.asarray(labels))
        bounds = new
        counts, sums = np.asarray(totals.counts), np.asarray(totals.sums)
        means = jnp.asarray(
            np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], means)
        )
    assert kinds[3:6] == ["plain"] * 3 and kinds[8:11] == ["plain"] * 3
    # The bounded passes after the plain ones start from bounds three passes old, and skip.
    assert kinds[6] < n_blocks * b and kinds[11] < 0.5 * n_blocks * b


def test_on_noise_the_fit_runs_plain_passes_between_bounded_ones_with_lloyds_bits():
    from gmmlimit.variants import _isotropic_engines as engines

    rng = np.random.default_rng(13)
    # No clusters, high dimension: every distance is close to every other, bounds never pay.
    X = rng.standard_normal((4000, 256)).astype(np.float32)
    m0 = X[:16]
    bounded = []
    original = engines.next_schedule

    def counted(scored, previous, rows, backoff):
        jax.debug.callback(lambda s: bounded.append(int(s)), scored)
        return original(scored, previous, rows, backoff)

    engines.next_schedule = counted
    try:
        lloyd, hamerly = _both(X, m0, max_iter=30, tol=0.0, block_size=1024)
    finally:
        engines.next_schedule = original
    _assert_same_fit(lloyd, hamerly)
    passes = int(hamerly.n_iter) + 1  # and the final pass
    assert passes >= 12
    # Bounded passes at 0, 1, then after 1, 2, 4, 8, ... plain passes: a few of them.
    assert 3 <= len(bounded) <= passes // 3
    assert min(bounded) > 0.9 * 4096  # none of them skipped much (4096 rows with padding)


@contextlib.contextmanager
def _bounds_that_never_pay(monkeypatch):
    """Every bounded pass reads as skipping nothing, so fits run plain passes between bounded
    ones (1, 2, 4, ...); yields the list of rows each bounded pass was told it scored."""
    from gmmlimit.variants import _isotropic_engines as engines

    original = engines.next_schedule
    calls = []

    def never(scored, previous, rows, backoff):
        jax.debug.callback(lambda s: calls.append(int(s)), scored)
        everything = jnp.int32(rows)
        return original(everything, everything, rows, backoff)

    jax.clear_caches()  # fits compiled before read the real schedule
    monkeypatch.setattr(engines, "next_schedule", never)
    try:
        yield calls
    finally:
        monkeypatch.setattr(engines, "next_schedule", original)
        jax.clear_caches()


def _bounded_call(mode, means, sigma2, bounds_means, labels, lower, x, w):
    return jax.jit(_native.assign_bounded)(mode, means, sigma2, bounds_means, labels, lower, x, w)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_plain_modes_give_the_plain_kernels_bits_and_keep_the_bounds(dtype):
    """One kernel serves every pass of a fit: in the plain modes it returns the plain kernels'
    outputs bit for bit and the bounds and their labels as they came in; "nothing" keeps them
    too; the bounded modes give new ones. Rows that do not fill the last block included."""
    modes = _native.BOUNDED_MODES
    n_blocks, b, d, k = 3, 700, 23, 19
    X = _blobs(21, n_blocks * b - 333, d, k, dtype, spread=6.0)
    x = np.zeros((n_blocks * b, d), dtype)
    x[: len(X)] = X
    w = np.zeros(n_blocks * b, dtype)
    w[: len(X)] = 1
    x, w = jnp.asarray(x.reshape(n_blocks, b, d)), jnp.asarray(w.reshape(n_blocks, b))
    means = jnp.asarray(X[:k])
    rng = np.random.default_rng(22)
    labels = jnp.asarray(rng.integers(-1, k, (n_blocks, b)), jnp.int32)
    lower = jnp.asarray(rng.uniform(0, 3, (n_blocks, b, 2)), dtype)
    old_means = means + 0.25
    sigma2 = jnp.asarray(0.7, dtype)
    hard = jax.jit(_native.hard_assign)(means, x, w)
    soft = jax.jit(_native.soft_assign)(means[None], sigma2[None], x, w)
    for mode, want in (("hard_plain", hard), ("soft_plain", [a[0] for a in soft])):
        out = _bounded_call(modes[mode], means, sigma2, old_means, labels, lower, x, w)
        got = out[:4] + out[5:6] if mode == "hard_plain" else out[:6]
        for a, c in zip(want, got, strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(c))
        if mode == "hard_plain":
            assert float(out[4]) == 0.0
        np.testing.assert_array_equal(np.asarray(out[6]), np.asarray(lower))
        np.testing.assert_array_equal(np.asarray(out[7]), np.asarray(labels))
        assert int(out[8]) == 0
    out = _bounded_call(modes["nothing"], means, sigma2, old_means, labels, lower, x, w)
    np.testing.assert_array_equal(np.asarray(out[6]), np.asarray(lower))
    np.testing.assert_array_equal(np.asarray(out[7]), np.asarray(labels))
    for mode, want in (("hard", hard), ("soft", [a[0] for a in soft])):
        out = _bounded_call(modes[mode], means, sigma2, old_means, labels, lower, x, w)
        np.testing.assert_array_equal(np.asarray(out[0]), np.asarray(want[0]))
        np.testing.assert_array_equal(np.asarray(out[7]), np.asarray(out[0]))  # bound labels
        assert not np.array_equal(np.asarray(out[6]), np.asarray(lower))
    with pytest.raises(Exception, match="mode"):
        _bounded_call(7, means, sigma2, old_means, labels, lower, x, w)
    with pytest.raises(Exception, match="sigma2 > 0"):
        _bounded_call(modes["soft_plain"], means, 0 * sigma2, old_means, labels, lower, x, w)


@pytest.mark.skipif(not _native.available(), reason="needs the compiled kernels")
def test_the_fit_loop_updates_the_bounds_in_place():
    """XLA:CPU copies an array that a conditional passes through, and again into a loop's carry:
    the fit's loop must hand the bounds to the kernel, aliased, with no copy of them at all
    (64 MB a pass at (1M, 64, 256))."""
    import re

    from gmmlimit._driver import fit_program
    from gmmlimit.variants import IsotropicParams
    from gmmlimit.variants._isotropic import isotropic_bounded

    X = jnp.asarray(_blobs(23, 3001, 33, 40, np.float32))
    params = IsotropicParams(X[:40], jnp.zeros((), jnp.float32))
    compiled = fit_program.lower(
        isotropic_bounded,
        X,
        jnp.ones(3001, jnp.float32),
        params,
        jnp.float32(0),
        20,
        history=32,
        block_size=1024,
    ).compile()
    text = compiled.as_text()
    bounds = r"f32\[3,1024,3\]"  # (blocks, B, G): 3 groups of means for K = 40
    assert "gmmlimit_assign_bounded" in text and re.search(bounds, text)
    copies = re.findall(rf"= {bounds}\{{[0-9,]*\}} copy\(", text)
    assert not copies, copies
