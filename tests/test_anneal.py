"""Deterministic annealing: the first split at lambda_max, schedules, compilation, the path."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gmmlimit as gl
from gmmlimit._anneal import _anneal_compiled

# Two tight, well-separated blobs on the first axis: C has one large eigenvalue, so the first
# split is a clean pitchfork at sigma2_c = lambda_max and the prediction is sharp.
_rng = np.random.default_rng(0)
X = np.concatenate(
    [
        _rng.normal([-2.0, 0.0], [0.3, 0.3], (100, 2)),
        _rng.normal([2.0, 0.0], [0.3, 0.3], (100, 2)),
    ]
)
LAMBDA = float(gl.critical_sigma2(X))
N_STAGES = 21
SCHEDULE = LAMBDA * np.linspace(1.05, 0.95, N_STAGES)  # steps of 0.5% of lambda_max
OPTS = {"k": 2, "max_iter": 300, "perturbation": 1e-3}


@pytest.fixture(scope="module")
def path():
    return gl.anneal(X, SCHEDULE, key=jax.random.key(0), **OPTS)


def test_first_split_within_two_percent_of_lambda_max(path):
    splits = gl.study.split_points(path)
    assert splits.shape[0] >= 1
    before, after, n_before, n_after = splits[0]
    assert (n_before, n_after) == (1, 2)
    # stable above sigma2_c: one centre at every stage with sigma2 > lambda_max
    counts = np.asarray(path.n_distinct)[:-1]
    assert np.all(counts[SCHEDULE > LAMBDA] == 1)
    assert before <= LAMBDA * 1.0001
    assert abs(after / LAMBDA - 1.0) <= 0.02, after / LAMBDA
    # ... and the collapsed centre is the data mean
    above = np.asarray(path.means)[:-1][SCHEDULE > LAMBDA]
    np.testing.assert_allclose(above, np.broadcast_to(X.mean(0), above.shape), atol=1e-2)
    # below the split the two centres sit on either side of the mean along the top eigenvector
    final_em = np.asarray(path.means)[-2]
    assert np.sign(final_em[0, 0]) != np.sign(final_em[1, 0])


def test_path_quantities_are_consistent(path):
    s2 = np.asarray(path.sigma2)
    np.testing.assert_array_equal(s2[:-1], SCHEDULE)
    assert s2[-1] == 0.0
    ll = np.asarray(path.log_likelihood)
    assert np.all(np.isfinite(ll[:-1])) and ll[-1] == -np.inf
    means = np.asarray(path.means)
    for s in (0, 10, N_STAGES - 1):
        np.testing.assert_allclose(ll[s], float(gl.log_likelihood(X, means[s], s2[s])), rtol=1e-12)
        np.testing.assert_allclose(
            float(path.distortion[s]), float(gl.kmeans_objective(X, means[s])), rtol=1e-12
        )
    # the K-means stage is Lloyd from the last EM means, unperturbed: the same as gl.kmeans
    km = gl.kmeans(X, means[-2], max_iter=OPTS["max_iter"])
    np.testing.assert_allclose(means[-1], np.asarray(km.means), atol=1e-12)
    np.testing.assert_array_equal(np.asarray(path.labels), np.asarray(km.labels))
    assert float(path.distortion[-1]) <= float(path.distortion[-2]) + 1e-9
    assert np.all(np.asarray(path.n_iter)[:-1] == OPTS["max_iter"])  # tol=None: fixed count


@pytest.mark.cpu_bits  # the two schedules evaluate to the same bits on XLA:CPU
def test_schedules_optax_and_plain_callables_compile_once_per_length(path):
    del path  # the module fixture compiled the length-21 program already, for its own device
    fixture_compiled = _anneal_compiled._cache_size()
    key = jax.random.key(1)
    schedules = {
        "exponential": optax.exponential_decay(2.0 * LAMBDA, 1, 0.85),
        "cosine": optax.cosine_decay_schedule(2.0 * LAMBDA, N_STAGES - 1, alpha=0.01),
        "joined": optax.join_schedules(
            [optax.constant_schedule(1.5 * LAMBDA), optax.linear_schedule(LAMBDA, 0.1, 10)], [5]
        ),
        "plain": lambda i: 2.0 * LAMBDA * math.exp(-0.2 * i),
    }
    # On a GPU the fixture compiled for the GPU and this test runs on the CPU device (cpu_bits):
    # the first schedule compiles the CPU program, so the count is taken after it.
    first, *others = schedules
    results = {first: gl.anneal(X, schedules[first], n_stages=N_STAGES, key=key, **OPTS)}
    before = _anneal_compiled._cache_size()
    if jax.default_backend() == "cpu":  # the fixture compiled on this very device
        assert before == fixture_compiled
    for name in others:
        results[name] = gl.anneal(X, schedules[name], n_stages=N_STAGES, key=key, **OPTS)
    assert _anneal_compiled._cache_size() == before  # same length: no new compilation
    for name, s in schedules.items():
        expect = np.array([float(s(i)) for i in range(N_STAGES)])
        np.testing.assert_allclose(np.asarray(results[name].sigma2)[:-1], expect, rtol=1e-6)
        # every schedule goes far below lambda_max: two centres at the end of EM
        assert int(results[name].n_distinct[-2]) == 2, name
    # max_iter is traced: another one of the same history length (300 and 260: 512) adds no
    # program, and runs its own iteration count (tol=None: every EM stage runs exactly max_iter)
    fewer_opts = {**OPTS, "max_iter": 260}
    fewer = gl.anneal(X, schedules["plain"], n_stages=N_STAGES, key=key, **fewer_opts)
    assert _anneal_compiled._cache_size() == before
    assert np.all(np.asarray(fewer.n_iter)[:-1] == 260)
    # a plain callable and the array of its values give the very same path
    values = gl.study.schedule_values(schedules["plain"], N_STAGES)
    same = gl.anneal(X, values, key=key, **OPTS)
    np.testing.assert_array_equal(np.asarray(same.means), np.asarray(results["plain"].means))
    # another length (here in float32) compiles exactly once, whatever the values
    X32 = X.astype(np.float32)
    short = gl.anneal(X32, values[:-4], key=key, **OPTS)
    gl.anneal(X32, values[4:], key=key, **OPTS)
    assert _anneal_compiled._cache_size() == before + 1
    assert short.means.shape == (N_STAGES - 4 + 1, 2, 2)
    # float32 is kept, nothing is NaN, and the path splits as in float64
    assert short.means.dtype == jnp.float32 and short.log_likelihood.dtype == jnp.float32
    assert np.all(np.isfinite(np.asarray(short.means)))
    assert np.all(np.isfinite(np.asarray(short.log_likelihood)[:-1]))
    s32 = np.asarray(short.sigma2)[:-1]
    counts = np.asarray(short.n_distinct)[:-1]
    assert np.all(counts[s32 > LAMBDA] == 1) and counts[-1] == 2


def test_uniform_weights_scale_only_the_sums(path):
    # weights 2 everywhere: same data scale, same responsibilities and means (same compiled
    # program, weights are traced); log-likelihood and distortion are twice as large
    doubled = gl.anneal(X, SCHEDULE, key=jax.random.key(0), weights=np.full(200, 2.0), **OPTS)
    np.testing.assert_allclose(np.asarray(doubled.means), np.asarray(path.means), atol=1e-9)
    np.testing.assert_array_equal(np.asarray(doubled.n_distinct), np.asarray(path.n_distinct))
    ll, ll2 = np.asarray(path.log_likelihood)[:-1], np.asarray(doubled.log_likelihood)[:-1]
    np.testing.assert_allclose(ll2, 2 * ll, rtol=1e-9)
    np.testing.assert_allclose(
        np.asarray(doubled.distortion), 2 * np.asarray(path.distortion), rtol=1e-9
    )


def test_count_distinct_is_transitive_and_order_free():
    chain = jnp.array([[0.0, 0.0], [0.6, 0.0], [1.2, 0.0], [5.0, 0.0]])
    assert int(gl.study.count_distinct(chain, 0.7)) == 2
    assert int(gl.study.count_distinct(chain[::-1], 0.7)) == 2
    assert int(gl.study.count_distinct(chain, 0.5)) == 4
    assert int(gl.study.count_distinct(chain, 10.0)) == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"schedule": [3.0, 4.0, 1.0]}, "non-increasing"),
        ({"schedule": [3.0, -1.0]}, "< 0"),
        ({"schedule": [3.0, np.nan]}, "NaN or inf"),
        ({"schedule": lambda i: 1.0 / (i + 1)}, "needs n_stages"),
        ({"schedule": [[1.0, 0.5]]}, "1-D"),
        ({"schedule": [2.0, 1.0 + 1.0j]}, "schedule must be real"),  # a TypeError before
        ({"schedule": np.array([2.0, 1.0 + 0.0j])}, "got complex dtype complex128"),  # dropped
        ({"schedule": lambda i: 1j, "n_stages": 2}, "schedule must be real"),
        ({"schedule": [2.0, 1.0], "k": 201}, "exceeds the number of samples"),
        ({"schedule": [2.0, 1.0], "init_means": np.zeros((3, 2))}, "k=2"),
        ({"schedule": [2.0, 1.0], "perturbation": -1.0}, "perturbation"),
        ({"schedule": [2.0, 1.0], "key": 0}, "key"),
        ({"schedule": [2.0, 1.0], "n_stages": 3}, "n_stages=3"),
    ],
)
def test_bad_input_raises_before_compiling(kwargs, match):
    args = {"key": jax.random.key(0), "k": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        gl.anneal(X, **args)
