"""EM for the isotropic mixture: monotone likelihood, the sigma2 = 0 limit, numerics."""

from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gmmlimit as gl
from gmmlimit._driver import fit_compiled, fit_program, history_length, stats_compiled


def _blobs(seed: int, n: int = 240, d: int = 3, k: int = 4, spread: float = 3.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=spread, size=(k, d))
    return centres[rng.integers(k, size=n)] + rng.normal(size=(n, d))


X64 = _blobs(0)
M0 = np.asarray(gl.init.random_points(jax.random.key(0), X64, 4))


@pytest.mark.parametrize("sigma2", [0.05, 0.5, 2.0, 20.0])
def test_em_log_likelihood_never_decreases(sigma2):
    result = gl.em(X64, M0, sigma2, max_iter=60, tol=0.0)
    n = int(result.n_iter)
    history = np.asarray(result.history)[:n]
    steps = np.diff(np.append(history, float(result.objective)))
    assert np.all(steps >= -1e-10 * np.abs(history).max()), steps.min()
    # the recorded history is the log-likelihood at the iterates
    np.testing.assert_allclose(
        float(result.objective), float(gl.log_likelihood(X64, result.means, sigma2)), rtol=1e-12
    )


@pytest.mark.cpu_bits
def test_em_at_zero_is_kmeans_exactly():
    km = gl.kmeans(X64, M0)
    em0 = gl.em(X64, M0, 0.0, tol=0.0)
    for field in ("means", "labels", "n_iter", "converged", "objective", "history"):
        np.testing.assert_array_equal(
            np.asarray(getattr(km, field)), np.asarray(getattr(em0, field))
        )


@pytest.mark.cpu_bits
def test_em_iterates_at_zero_equal_lloyd_steps():
    means = jnp.asarray(M0)
    steps = []
    for _ in range(3):
        means = gl.em_step(X64, means, 0.0)
        steps.append(np.asarray(means))
    for n_steps in (1, 3):
        truncated = gl.kmeans(X64, M0, max_iter=n_steps)
        np.testing.assert_array_equal(np.asarray(truncated.means), steps[n_steps - 1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_em_step_at_zero_keeps_an_empty_cluster_where_it_is(dtype):
    # no row is nearest to the third mean: the plain M-step keeps it (relocation is a fit's
    # rule), so the step at sigma2 = 0 is the limit of the steps at sigma2 > 0 (statement 3)
    X = np.array([[0.0], [1.0], [10.0]], dtype)
    means = np.array([[0.0], [10.0], [100.0]], dtype)
    hard = np.asarray(gl.em_step(X, means, 0.0))
    np.testing.assert_array_equal(hard, np.array([[0.5], [10.0], [100.0]], dtype))
    np.testing.assert_array_equal(np.asarray(gl.em_step(X, means, 1e-6)), hard)
    assert float(gl.study.update_gap(X, means, 1e-6)) == 0.0


def test_small_sigma2_em_reproduces_kmeans_partition():
    km = gl.kmeans(X64, M0)
    em = gl.em(X64, M0, 1e-3)
    np.testing.assert_array_equal(np.asarray(em.labels), np.asarray(km.labels))
    np.testing.assert_allclose(np.asarray(em.means), np.asarray(km.means), atol=1e-10)


def test_jit_and_eager_agree_and_vmap_matches_loop():
    sigmas = jnp.array([0.0, 0.1, 1.0, 5.0])
    batched = jax.vmap(lambda s: gl.em(X64, M0, s, max_iter=50))(sigmas)
    jitted = jax.jit(lambda s: gl.em(X64, M0, s, max_iter=50))
    for i, s in enumerate(np.asarray(sigmas)):
        eager = gl.em(X64, M0, float(s), max_iter=50)
        inside = jitted(s)
        for field in ("means", "labels", "n_iter", "objective"):
            a = np.asarray(getattr(eager, field))
            np.testing.assert_allclose(
                np.asarray(getattr(inside, field)), a, rtol=1e-12, atol=1e-12
            )
            np.testing.assert_allclose(
                np.asarray(getattr(batched, field))[i], a, rtol=1e-12, atol=1e-12
            )


def test_new_sigma2_does_not_recompile():
    gl.em(X64, M0, 0.3, max_iter=40)
    before = fit_program._cache_size()
    for s in (0.7, 1e-5, 0.0, 123.0):
        gl.em(X64, M0, s, max_iter=40)
    assert fit_program._cache_size() == before


def test_max_iter_is_traced_one_program_per_history_length():
    # max_iter 1 to 32 share one compiled program (the history buffer is 32 long and cut back
    # to max_iter); 33 needs a 64-long buffer, a second program.
    X = X64[:233]  # a shape no other test fits
    longest = gl.em(X, M0, 0.4, max_iter=32, tol=0.0)
    before = fit_program._cache_size()
    assert int(longest.n_iter) == 32
    for max_iter in (1, 2, 17, 31):
        short = gl.em(X, M0, 0.4, max_iter=max_iter, tol=0.0)
        assert short.history.shape == (max_iter,) and int(short.n_iter) == max_iter
        # the same iterations: its history is the longer fit's first entries, bit for bit
        np.testing.assert_array_equal(
            np.asarray(short.history), np.asarray(longest.history)[:max_iter]
        )
        assert float(short.objective) == float(longest.history[max_iter])
    assert fit_program._cache_size() == before
    assert gl.em(X, M0, 0.4, max_iter=33, tol=0.0).history.shape == (33,)
    assert fit_program._cache_size() == before + 1
    assert [history_length(m) for m in (1, 32, 33, 64, 65, 300)] == [32, 32, 64, 64, 128, 512]


def test_the_fit_program_holds_one_e_step():
    # The E-step after the last M-step (the result's labels and objective) is the loop's last
    # pass, not a second copy of the pass after the loop: the fit program traces the variant's
    # E-step as often as one streamed pass does (a copy cost a fifth of a fit's compile).
    traces = []

    def e_step(params, x):
        traces.append(x.shape)
        return gl.variants.diag.e_step(params, x)

    variant = gl.variants.diag._replace(e_step=e_step)  # no engine: the JAX E-step everywhere
    X = jnp.asarray(X64[:57])  # 57 rows in blocks of 16: the last holds 9
    w = jnp.ones((57,), X.dtype)
    start = gl.variants.DiagParams(X[:3], jnp.ones((3, 3)), jnp.full(3, 1 / 3), 1.0, 1e-6)
    stats_compiled.lower(variant, X, w, start, block_size=16)
    one_pass = len(traces)
    traces.clear()
    fit_program.lower(variant, X, w, start, jnp.asarray(1e-4), 30, history=32, block_size=16)
    assert one_pass >= 1 and len(traces) == one_pass


@pytest.mark.parametrize(
    ("dtype", "sigma2"),
    [
        (np.float32, 1e-30),
        (np.float32, 1e-20),
        (np.float32, 0.0),
        (np.float64, 1e-300),
        (np.float64, 1e-150),
        (np.float64, 0.0),
    ],
)
def test_tiny_sigma2_is_finite_and_keeps_dtype(dtype, sigma2):
    X = X64.astype(dtype)
    result = gl.em(X, M0.astype(dtype), sigma2)
    for field in ("means", "objective", "history"):
        value = np.asarray(getattr(result, field))
        assert value.dtype == dtype
        assert np.all(np.isfinite(value)), field
    resp = np.asarray(gl.responsibilities(X, result.means, sigma2))
    assert resp.dtype == dtype and np.all(np.isfinite(resp))
    np.testing.assert_array_equal(resp.argmax(1), np.asarray(result.labels))
    np.testing.assert_array_equal(resp.sum(1), 1.0)  # exactly one-hot at this scale
    assert np.isfinite(float(gl.study.scaled_log_likelihood(X, result.means, sigma2)))


def test_ties_go_to_lowest_index():
    X = np.array([[0.0, 0.0], [2.0, 0.0], [1.0, 5.0]])
    means = np.array([[1.0, 1.0], [1.0, 1.0], [1.0, -1.0]])  # row 0 ties between 0, 1, 2
    hard = np.asarray(gl.responsibilities(X, means, 0.0))
    np.testing.assert_array_equal(hard[:2], [[1, 0, 0], [1, 0, 0]])
    soft = np.asarray(gl.responsibilities(X, means, 1.0))
    np.testing.assert_allclose(soft[0], [1 / 3, 1 / 3, 1 / 3], rtol=1e-15)
    # the fit's own (fused) E-step, alone and batched over sigma2 (the wide sweep path)
    fused = gl.variants.isotropic.engine.block
    ones = jnp.ones((3,))
    for s2 in (0.0, 1.0):
        _, labels, _ = fused(
            gl.variants.IsotropicParams(jnp.asarray(means), jnp.asarray(s2)), X, ones
        )
        np.testing.assert_array_equal(np.asarray(labels), [0, 0, 0])  # row 2 ties 0, 1
    batched = jax.vmap(
        lambda s2: fused(gl.variants.IsotropicParams(jnp.asarray(means), s2), jnp.asarray(X), ones)[
            1
        ]
    )(jnp.array([0.0, 1.0]))
    np.testing.assert_array_equal(np.asarray(batched), [[0, 0, 0], [0, 0, 0]])


def test_em_component_with_underflowing_mass_keeps_its_mean():
    X = np.array([[0.0], [0.1], [0.2], [5.0], [5.1]])
    means = np.array([[0.1], [5.05], [1e6]])
    result = gl.em(X, means, 1e-2, max_iter=5)
    assert float(result.means[2, 0]) == 1e6
    assert np.all(np.isfinite(np.asarray(result.means)))


def test_integer_weights_equal_repeated_rows():
    rng = np.random.default_rng(1)
    counts = rng.integers(0, 4, size=X64.shape[0])
    counts[0] = 2
    repeated = np.repeat(X64, counts, axis=0)
    for s2 in (0.0, 0.8):
        weighted = gl.em(X64, M0, s2, weights=counts.astype(float), max_iter=30, tol=0.0)
        plain = gl.em(repeated, M0, s2, max_iter=30, tol=0.0)
        assert int(weighted.n_iter) == int(plain.n_iter)
        np.testing.assert_allclose(np.asarray(weighted.means), np.asarray(plain.means), atol=1e-10)
        np.testing.assert_allclose(float(weighted.objective), float(plain.objective), rtol=1e-10)


def test_block_size_does_not_change_the_fit():
    for s2 in (0.0, 0.5):
        whole = gl.em(X64, M0, s2, max_iter=25, tol=0.0)
        blocked = gl.em(X64, M0, s2, max_iter=25, tol=0.0, block_size=37)
        np.testing.assert_array_equal(np.asarray(whole.labels), np.asarray(blocked.labels))
        np.testing.assert_allclose(np.asarray(whole.means), np.asarray(blocked.means), atol=1e-10)


def test_large_fit_never_materialises_n_by_k():
    n, d, k = 2_000_000, 16, 256
    x = jax.ShapeDtypeStruct((n, d), jnp.float32)
    w = jax.ShapeDtypeStruct((n,), jnp.float32)
    params = gl.variants.IsotropicParams(
        jax.ShapeDtypeStruct((k, d), jnp.float32), jax.ShapeDtypeStruct((), jnp.float32)
    )
    compiled = fit_program.lower(
        gl.variants.isotropic, x, w, params, 0.0, 5, history=history_length(5), block_size=4096
    ).compile()
    temp = compiled.memory_analysis().temp_size_in_bytes
    n_by_k = n * k * 4
    # padded copy of X and the (N,) label buffers are O(N D); nothing near N x K
    assert temp < n_by_k / 4, (temp, n_by_k)
    assert temp < 2**30


def test_restarts_keep_the_best_run():
    key = jax.random.key(7)
    best = gl.restarts(key, X64, 4, n_init=4)
    keys = jax.random.split(key, 4)
    objectives = [
        float(gl.kmeans(X64, gl.init.kmeans_plusplus(kk, X64, 4)).distortion) for kk in keys
    ]
    assert float(best.distortion) == pytest.approx(min(objectives), rel=1e-12)
    soft = gl.restarts(key, X64, 4, sigma2=1.0, n_init=3, init="random")
    loglik = [
        float(gl.em(X64, gl.init.random_points(kk, X64, 4), 1.0).objective)
        for kk in jax.random.split(key, 3)
    ]
    assert float(soft.objective) == pytest.approx(max(loglik), rel=1e-12)


@pytest.mark.parametrize(
    ("exponent", "sigma2"), [(64, 0.0), (-64, 0.0), (64, 0.5), (-50, 0.5)]
)  # float32 data near 1e20 (squared distances overflow), 1e-18 (they vanish), 1e-14
def test_restarts_run_data_past_the_scale_window_rescaled(exponent, sigma2):
    X = _blobs(3).astype(np.float32)
    key = jax.random.key(1)
    unit = gl.restarts(key, X, 4, sigma2=sigma2, n_init=2, init="random")
    far = gl.restarts(
        key,
        np.ldexp(X, exponent),
        4,
        sigma2=np.ldexp(sigma2, 2 * exponent),
        n_init=2,
        init="random",
    )  # fmt: skip  (every row in one cluster, or NaN, before: squared distances overflowed)
    np.testing.assert_array_equal(far.labels, unit.labels)
    assert int(far.n_iter) == int(unit.n_iter)
    np.testing.assert_array_equal(far.means, np.ldexp(unit.means, exponent))
    with np.errstate(over="ignore"):  # J of data near 1e20 is past float32's range: inf
        np.testing.assert_array_equal(far.distortion, np.ldexp(unit.distortion, 2 * exponent))
    if sigma2 > 0:  # each row's log density moves by -(D / 2) ln 4^exponent
        shift = X.size * exponent * np.log(2.0)
        np.testing.assert_allclose(far.objective, unit.objective - shift, rtol=1e-6)


@pytest.mark.parametrize(
    ("exponent", "sigma2", "largest_weight"),
    [(64, 0.0, None), (-64, 0.0, 1e37), (60, 0.7, 1e-46), (-50, 0.7, None)],
)  # float32 data near 1e20 (squared distances overflow), 1e-18 (they vanish); weights that
# overflow their sums or flush to 0 in float32
@pytest.mark.parametrize("path", ["sharded", "out_of_core"])
def test_sharded_and_out_of_core_fits_rescale_as_em_does(path, exponent, sigma2, largest_weight):
    # em computes such data as X / 2^e and maps the fit back (test above, and
    # test_kmeans_is_scale_invariant_and_em_at_zero_is_kmeans); the sharded and out-of-core
    # fits must give em's fit bit for bit (before: one cluster, NaN distortion, other means).
    X = np.ldexp(_blobs(3, n=200).astype(np.float32), exponent)
    m0 = X[[0, 50, 100, 150]]
    s2 = np.ldexp(sigma2, 2 * exponent)
    w = None
    if largest_weight is not None:
        w = largest_weight * np.random.default_rng(0).uniform(0.25, 1.0, len(X))  # float64
    if path == "sharded":
        far = gl.scale.em_sharded(X, m0, s2, weights=w, block_size=64)
    else:
        far = gl.scale.em_out_of_core(X, m0, s2, weights=w, block_size=64, chunk_blocks=2)
    ref = gl.em(X, m0, s2, weights=w, block_size=64)
    assert len(np.unique(np.asarray(ref.labels))) == 4
    _same_fit(far, ref)
    assert far.means.dtype == np.float32


@pytest.mark.parametrize(("exponent", "sigma2"), [(64, 0.0), (-64, 0.0), (-50, 0.7)])
def test_the_diagnostics_answer_data_past_the_scale_window(exponent, sigma2):
    # data scaled by 2^e (float32, past the window) give the unit data's diagnostics scaled by
    # 4^e (gaps, bound 2's L~), 2^e (the update gap) or unchanged (responsibilities, bound 1),
    # bit for bit; where the scaled value passes float32's largest number it is inf. Before:
    # bound 1 read 1 at sigma2 = 0 for data near 1e20, L~ read 118 for 263 near 1e-19.
    X = _blobs(3, n=60).astype(np.float32)
    means = X[[0, 20, 40]]
    Xe, me, s2 = np.ldexp(X, exponent), np.ldexp(means, exponent), np.ldexp(sigma2, 2 * exponent)
    study = gl.study
    with np.errstate(over="ignore"):
        gap = np.ldexp(study.nearest_gap(X, means), 2 * exponent)
        gap[gap < np.finfo(np.float32).tiny] = 0.0  # subnormal: flushed to 0, as XLA does
        np.testing.assert_array_equal(study.nearest_gap(Xe, me), gap)
        np.testing.assert_array_equal(
            study.scaled_log_likelihood(Xe, me, s2),
            np.ldexp(study.scaled_log_likelihood(X, means, sigma2), 2 * exponent),
        )
    np.testing.assert_array_equal(
        study.responsibility_gap(Xe, me, s2), study.responsibility_gap(X, means, sigma2)
    )
    np.testing.assert_array_equal(
        study.responsibility_bound(Xe, me, s2), study.responsibility_bound(X, means, sigma2)
    )
    np.testing.assert_array_equal(
        study.update_gap(Xe, me, s2), np.ldexp(study.update_gap(X, means, sigma2), exponent)
    )
    if sigma2 > 0:
        assert float(study.update_gap(X, means, sigma2)) > 0  # the comparison is not 0 == 0


def _same_fit(a, b) -> None:
    for name in ("means", "labels", "n_iter", "objective", "distortion", "history"):
        np.testing.assert_array_equal(np.asarray(getattr(a, name)), np.asarray(getattr(b, name)))


@pytest.mark.parametrize(
    "options",
    [{"algorithm": "hamerly"}, {"algorithm": "lloyd"}, {"sigma2": 0.7, "init": "random"}],
    ids=["hamerly", "lloyd", "em"],
)
@pytest.mark.cpu_bits  # on the CPU by its subject, also where the default device is a GPU
def test_restarts_on_the_cpu_are_separate_fits_and_equal_the_batch(monkeypatch, options):
    # On the CPU each start runs as its own fit (the starts here stop after different numbers of
    # iterations, which a batch would run to the slowest); the best is that start's fit bit for
    # bit, and the batch that other platforms run picks the same fit with the same bits.
    import gmmlimit._api as api

    key = jax.random.key(5)
    X = _blobs(3, n=300, k=6, spread=1.5)
    batch = api.fit_batch
    monkeypatch.setattr(api, "fit_batch", lambda *a, **kw: pytest.fail("a batch on the CPU"))
    one_by_one = gl.restarts(key, X, 6, n_init=4, max_iter=200, **options)
    sigma2 = options.get("sigma2", 0.0)
    init = gl.init.random_points if "init" in options else gl.init.kmeans_plusplus
    algorithm = options.get("algorithm", "auto")
    singles = [
        gl.em(X, init(kk, X, 6), sigma2, max_iter=200, tol=1e-8, algorithm=algorithm)
        if sigma2
        else gl.kmeans(X, init(kk, X, 6), max_iter=200, algorithm=algorithm)
        for kk in jax.random.split(key, 4)
    ]
    assert len({int(r.n_iter) for r in singles}) > 1
    _same_fit(one_by_one, singles[int(np.argmax([float(r.objective) for r in singles]))])
    monkeypatch.setattr(api, "fit_batch", batch)
    monkeypatch.setattr(api, "_fits_one_by_one", lambda X: False)
    _same_fit(gl.restarts(key, X, 6, n_init=4, max_iter=200, **options), one_by_one)


@pytest.mark.cpu_bits  # the one-by-one restarts are the CPU's
def test_restarts_one_by_one_pass_over_nan_objectives(monkeypatch):
    # A start whose objective is NaN never wins, even when it runs first.
    import gmmlimit._api as api

    runs = []

    def first_is_nan(*args, **kwargs):
        fitted = fit_compiled(*args, **kwargs)
        runs.append(fitted)
        return fitted._replace(objective=jnp.nan) if len(runs) == 1 else fitted

    monkeypatch.setattr(api, "fit_compiled", first_is_nan)
    # n_init = 4: the starts' program of test_restarts_keep_the_best_run, compiled once for both
    best = gl.restarts(jax.random.key(2), X64, 4, n_init=4)
    assert len(runs) == 4 and np.isfinite(float(best.objective))
    scores = [float(r.objective) for r in runs[1:]]
    _same_fit(best, runs[1 + int(np.argmax(scores))])


@pytest.mark.parametrize("exponent", [60, -60])
def test_kmeans_plusplus_draws_the_same_rows_at_any_scale(exponent):
    """Its draws are those of the data at unit scale (before: at 1e18 the float32 squares
    overflowed, every probability was 0, and the means repeated rows)."""
    X = X64.astype(np.float32)
    key = jax.random.key(4)
    far = np.asarray(gl.init.kmeans_plusplus(key, np.ldexp(X, exponent), 4))
    unit = np.asarray(gl.init.kmeans_plusplus(key, X, 4))
    np.testing.assert_array_equal(far, np.ldexp(unit, exponent))
    assert len({tuple(m) for m in far}) == 4


def test_initialisers_are_keyed_vmappable_and_pick_data_points():
    # One data set and one batch of keys for every check (each vmap is a program of its own):
    # four far-apart blobs, on which k-means++ puts one mean in each blob almost always, while
    # uniform random points do so with probability 4!/4^4 < 0.1.
    rng = np.random.default_rng(4)
    corners = np.array([[0.0, 0.0], [100.0, 0.0], [0.0, 100.0], [100.0, 100.0]])
    X = corners[np.arange(400) % 4] + rng.normal(size=(400, 2))
    keys = jax.random.split(jax.random.split(jax.random.key(3), 5)[0], 20)
    batch = jax.vmap(lambda kk: gl.init.kmeans_plusplus(kk, X, 4))(keys)
    assert batch.shape == (20, 4, 2)
    np.testing.assert_array_equal(
        np.asarray(batch[2]), np.asarray(gl.init.kmeans_plusplus(keys[2], X, 4))
    )
    rows = {tuple(r) for r in X}
    for means in np.asarray(batch):
        assert all(tuple(m) in rows for m in means)
    pts = jax.vmap(lambda kk: gl.init.random_points(kk, X, 4))(keys)
    for means in np.asarray(pts):
        assert len({tuple(m) for m in means}) == 4 and all(tuple(m) in rows for m in means)

    def one_per_blob(batch):
        blob = np.linalg.norm(np.asarray(batch)[:, :, None] - corners, axis=-1).argmin(-1)
        return np.mean([len(set(b)) == 4 for b in blob])

    assert one_per_blob(batch) >= 0.9
    assert one_per_blob(pts) <= 0.4


@st.composite
def _problem(draw):
    # few distinct shapes, so that few programs are compiled; values vary freely. One N: the
    # functions take all rows at once (no blocks), so another N is another program, not a branch;
    # D = 1 and 3, K = 1 (no second mean: the bound is 0), 2 and 5 are kept.
    n = 24
    d = draw(st.sampled_from([1, 3]))
    k = draw(st.sampled_from([1, 2, 5]))
    seed = draw(st.integers(0, 2**31 - 1))
    log_s2 = draw(st.floats(-4.0, 3.0))
    rng = np.random.default_rng(seed)
    X = rng.normal(scale=draw(st.floats(0.1, 10.0)), size=(n, d))
    means = rng.normal(scale=3.0, size=(k, d))
    return X, means, 10.0**log_s2


@settings(max_examples=30, deadline=None)
@given(_problem())
def test_bound1_responsibilities(problem):
    X, means, sigma2 = problem
    k = means.shape[0]
    resp = np.asarray(gl.responsibilities(X, means, sigma2))
    d = ((X[:, None, :] - means[None]) ** 2).sum(-1)
    onehot = np.eye(k)[d.argmin(1)]
    srt = np.sort(d, axis=1)
    delta = srt[:, 1] - srt[:, 0] if k > 1 else np.full(len(X), np.inf)
    bound = (k - 1) * np.exp(-delta / (2 * sigma2))
    assert np.all(np.abs(resp - onehot) <= bound[:, None] * (1 + 1e-9) + 1e-13)
    ours = np.asarray(gl.study.responsibility_bound(X, means, sigma2))
    np.testing.assert_allclose(ours, bound, rtol=1e-6, atol=1e-14)


@settings(max_examples=30, deadline=None)
@given(_problem())
def test_bound2_scaled_log_likelihood(problem):
    X, means, sigma2 = problem
    n, dim = X.shape
    k = means.shape[0]
    J = float(gl.kmeans_objective(X, means))
    d = ((X[:, None, :] - means[None]) ** 2).sum(-1)
    np.testing.assert_allclose(J, d.min(1).sum(), rtol=1e-12, atol=1e-12)
    ll = float(gl.log_likelihood(X, means, sigma2))
    scaled = -2 * sigma2 * (ll + n * np.log(k) + 0.5 * n * dim * np.log(2 * np.pi * sigma2))
    slack = 1e-9 * (abs(J) + 1.0) + 1e-9 * abs(2 * sigma2 * ll)
    assert J - 2 * n * sigma2 * np.log(k) - slack <= scaled <= J + slack
    stable = float(gl.study.scaled_log_likelihood(X, means, sigma2))
    assert J - 2 * n * sigma2 * np.log(k) - 1e-9 * (J + 1) <= stable <= J + 1e-9 * (J + 1)
    # the reference value from scipy's logsumexp
    from scipy.special import logsumexp

    ref = (
        -n * np.log(k)
        - 0.5 * n * dim * np.log(2 * np.pi * sigma2)
        + logsumexp(-d / (2 * sigma2), axis=1).sum()
    )
    np.testing.assert_allclose(ll, ref, rtol=1e-9, atol=1e-9)


def test_critical_sigma2_is_lambda_max_of_the_covariance():
    X = _blobs(2, n=300, d=4) * np.array([3.0, 1.0, 0.5, 0.1])
    expected = np.linalg.eigvalsh(np.cov(X.T, bias=True))[-1]
    assert float(gl.critical_sigma2(X)) == pytest.approx(expected, rel=1e-10)
    assert gl.critical_sigma2(X.astype(np.float32)).dtype == np.float32


def test_onehot_threshold_values():
    assert gl.study.onehot_threshold(np.float32) == pytest.approx(87.34, abs=0.01)
    assert gl.study.onehot_threshold(np.float64) == pytest.approx(708.40, abs=0.01)


def test_log_likelihood_gradient_is_the_closed_form_under_vmap():
    """d l / d mu_k = sum_n r_nk (x_n - mu_k) / sigma2, through the fit's hot path."""
    sigmas = jnp.array([0.3, 2.0])
    dl_dm = jax.grad(lambda m, s: gl.log_likelihood(X64, m, s))
    grads = jax.jit(jax.vmap(dl_dm, in_axes=(None, 0)))(jnp.asarray(M0), sigmas)  # one program
    for grad, s2 in zip(np.asarray(grads), np.asarray(sigmas), strict=True):
        r = np.asarray(gl.responsibilities(X64, M0, s2))
        expected = (r.T @ X64 - r.sum(0)[:, None] * M0) / s2
        np.testing.assert_allclose(grad, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_engine_computes_what_the_bare_model_defines(dtype):
    # The public variant is the model with the fast E-step engines attached; the engines (kernel
    # or JAX, one block, a pass, a vmap over sigma2) must compute the model's own statistics.
    import importlib

    model_module = importlib.import_module("gmmlimit.variants._isotropic")
    model, fast = model_module.model, gl.variants.isotropic
    assert model.engine is None and fast.engine is not None
    assert fast._replace(engine=None) == model
    X = X64.astype(dtype)
    w = jnp.asarray(np.random.default_rng(1).uniform(0.5, 2.0, X.shape[0]), dtype)
    rtol = 2e-5 if dtype == np.float32 else 1e-11
    s2s = jnp.asarray([0.0, 0.3, 3.0], dtype)

    @jax.jit  # the model's statistics and labels, one program (its E-step has no value branch)
    def model_stats(params):
        estep = model.e_step(params, jnp.asarray(X))
        return model.sufficient_stats(jnp.asarray(X), w, estep), estep.labels

    for s2 in s2s:
        params = gl.variants.IsotropicParams(jnp.asarray(M0, dtype), s2)
        ref, ref_labels = model_stats(params)
        stats, labels, _ = fast.engine.block(params, jnp.asarray(X), w)
        np.testing.assert_array_equal(np.asarray(labels), np.asarray(ref_labels))
        for a, b in zip(stats, ref, strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=rtol * 100)
        if dtype == np.float32:
            continue  # one dtype suffices for the fits (two compilations each)
        slow = gl.fit(model, X, params, max_iter=8, tol=0.0, weights=w)
        quick = gl.fit(fast, X, params, max_iter=8, tol=0.0, weights=w)
        np.testing.assert_array_equal(np.asarray(slow.labels), np.asarray(quick.labels))
        np.testing.assert_allclose(quick.means, slow.means, rtol=rtol, atol=rtol)
    # the wide rule (vmap over parameters) against the model, lane by lane
    sweep = jax.jit(
        jax.vmap(
            lambda s: fast.engine.block(
                gl.variants.IsotropicParams(jnp.asarray(M0, dtype), s), X, w
            )[0]
        )
    )(s2s)
    for i, s2 in enumerate(s2s):
        ref, _ = model_stats(gl.variants.IsotropicParams(jnp.asarray(M0, dtype), s2))
        for a, b in zip(sweep, ref, strict=True):
            np.testing.assert_allclose(np.asarray(a[i]), np.asarray(b), rtol=rtol, atol=rtol * 100)


@pytest.mark.parametrize(("dtype", "top", "sub"), [(np.float32, 1e-36, 1e-39),
                                                   (np.float64, 1e-300, 1e-310)])  # fmt: skip
def test_subnormal_entries_of_rescaled_data_are_scaled_exactly(dtype, top, sub):
    # data this small are rescaled by 2^-e; jnp.ldexp flushed their subnormal entries to 0 first
    # (XLA on the CPU), moving them by up to 1 % of the data's scale (float32 mean 5.0000002e-37
    # where the true one is 5.005e-37)
    X = np.array([[top], [sub]], dtype)
    mean = float(dtype((Fraction(float(X[0, 0])) + Fraction(float(X[1, 0]))) / 2))
    assert float(gl.kmeans(X, X[:1]).means[0, 0]) == mean
    assert float(gl.restarts(jax.random.key(0), X, 1).means[0, 0]) == mean
    # a row nearer the second mean than the first, by less than its own (subnormal) size
    tiny = float(np.finfo(dtype).tiny)
    Y = np.array([[0.58 * tiny], [tiny]], dtype)
    labels = np.argmax(np.asarray(gl.responsibilities(Y, np.array([[0.0], [tiny]], dtype), 0.0)),
                       axis=1)  # fmt: skip
    np.testing.assert_array_equal(labels, [1, 1])


@pytest.mark.parametrize("exponent", [0, 100, -100])
def test_log_likelihood_at_a_traced_hard_sigma2_is_its_limit(exponent):
    """l -> -inf as sigma2 -> 0 when J > 0, +inf when every row sits on a mean; never NaN.

    A traced sigma2 of 0, or below the smallest normal number in the units the E-step computes
    in, is the hard limit (`is_soft`); the eager call refuses it. Float32 data at 2^100 and
    2^-100 are computed rescaled.
    """
    scale = np.float32(2.0**exponent)
    X = np.array([[0.0], [1.0], [4.0], [2.0]], np.float32) * scale
    means = np.array([[0.0], [4.0]], np.float32) * scale
    tiny = np.finfo(np.float32).tiny
    hard = jnp.asarray([tiny / 4, 0.0], jnp.float32)  # below tiny (a subnormal) and 0
    for data, limit in [(X, -np.inf), (means, np.inf)]:  # J > 0, and J = 0
        values = jax.vmap(lambda s, data=data: gl.log_likelihood(data, means, s))(hard)
        if exponent != -100:  # at 2^-100 these sigma2 are soft in the data's units
            assert np.asarray(values).tolist() == [limit, limit]
    # at a soft traced sigma2 the value is the eager one
    for data in (X, means):
        s2 = 1.5 * float(scale) ** 2
        if float(tiny) <= s2 <= float(np.finfo(np.float32).max):
            s2 = np.float32(s2)
            traced = jax.jit(lambda s, data=data: gl.log_likelihood(data, means, s))(s2)
            assert float(traced) == float(gl.log_likelihood(data, means, s2))
    # at 2^-100 a subnormal sigma2 is 2^200 times larger in the data's units: finite, no NaN
    if exponent == -100:
        values = jax.vmap(lambda s: gl.log_likelihood(X, means, s))(hard)
        assert not np.isnan(np.asarray(values)).any()
        assert float(values[1]) == -np.inf
