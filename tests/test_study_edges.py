"""Edges of the study tools: zero spread, far scales, small sigma2, option validation."""

import itertools
from fractions import Fraction

import jax
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import gmmlimit as gl
from gmmlimit import _anneal, _ascent, study

_rng = np.random.default_rng(3)
X32 = _rng.normal(size=(40, 2)).astype(np.float32)
# two clusters 10 apart: at small sigma2 every responsibility is one-hot
Y = np.r_[_rng.normal(size=(20, 2)), _rng.normal(size=(20, 2)) + 10.0]
N_STEPS = 3


def test_zero_spread_data_get_a_learning_rate_only_where_one_is_used(monkeypatch):
    # the shapes of the other tests' fits (the compiled programs are shared)
    Z, start = np.ones_like(X32), np.zeros_like(X32[:3])
    fit = study.gradient_fit(Z, start, 0.5, n_steps=N_STEPS)  # Adam: a default step is derived
    assert np.all(np.isfinite(fit.history))
    assert float(fit.log_likelihood) > float(fit.history[0])  # the means moved up
    costs = study.compare_em_gradient(Z, start, 0.5, methods=("em",), n_steps=N_STEPS, repeats=1)
    assert np.all(np.isfinite(costs["em"].history))
    # L-BFGS takes no step size: it reaches its program (stubbed here: it compiles slowly)
    calls = []
    monkeypatch.setattr(_ascent, "_gradient_compiled", lambda *a, **k: calls.append(a) or fit)
    study.gradient_fit(Z[:1], start[:1], 0.5, optimizer="lbfgs", n_steps=N_STEPS)  # N = 1
    assert len(calls) == 1 and float(calls[0][-1]) == 1.0  # the factor L-BFGS's steps take


def test_a_learning_rate_the_data_dtype_cannot_hold_is_refused():
    with pytest.raises(ValueError, match=r"learning_rate.*float32"):
        study.gradient_fit(X32, X32[:3], 0.5, learning_rate=1e39, n_steps=N_STEPS)
    with pytest.raises(ValueError, match=r"learning_rate.*float32"):
        study.compare_em_gradient(X32, X32[:3], 0.5, learning_rate=[0.1, 1e39], repeats=1)


def test_far_scale_float32_rates_and_gradient_answer_as_the_unit_scale():
    # float32 data at 2^64: squared distances overflow unless computed as X / 2^64
    e = 64
    far, start, s2 = np.ldexp(X32, e), np.ldexp(X32[:3], e), np.ldexp(np.float32(0.5), 2 * e)
    opts = dict(n_steps=10, fixed_point_iter=50)
    unit = study.convergence_rate(X32, X32[:3], 0.5, **opts)
    scaled = study.convergence_rate(far, start, s2, **opts)
    assert 0 < unit.rate < 1 and np.isfinite(scaled.floor)
    assert scaled.rate == pytest.approx(unit.rate, rel=1e-5)
    np.testing.assert_allclose(scaled.fixed_point, np.ldexp(unit.fixed_point, e), rtol=1e-5)

    lin_unit = study.linearized_rate(X32, unit.fixed_point, 0.5)
    lin_far = study.linearized_rate(far, scaled.fixed_point, s2)
    assert 0 < lin_unit < 1
    assert lin_far == pytest.approx(lin_unit, rel=1e-4)

    fit_far = study.gradient_fit(far, start, s2, n_steps=N_STEPS)
    assert np.all(np.isfinite(fit_far.history)) and np.all(np.isfinite(fit_far.means))
    assert float(fit_far.log_likelihood) > float(fit_far.history[0])
    expected = gl.log_likelihood(far, fit_far.means, s2)
    assert float(fit_far.log_likelihood) == pytest.approx(float(expected), rel=1e-5)
    # data at 2^-40 are the same problem once rescaled: the same fit, scaled by 2^-104
    tiny = study.gradient_fit(
        np.ldexp(X32, -40),
        np.ldexp(X32[:3], -40),
        np.ldexp(np.float32(0.5), -80),
        n_steps=N_STEPS,
    )
    np.testing.assert_array_equal(np.ldexp(tiny.means, 104), fit_far.means)


@pytest.mark.parametrize(("dtype", "sigma2"), [(np.float64, 1e-18), (np.float32, 1e-8)])
def test_linearized_rate_is_zero_where_responsibilities_are_one_hot(dtype, sigma2):
    # EM's fixed point there is the two clusters' means (convergence_rate measures 0); the
    # forward-mode derivative of a softmax read 0.18 (float64, 1e-18) and 2.1 (float32, 1e-8)
    data = Y.astype(dtype)
    fixed = np.stack([data[:20].mean(0), data[20:].mean(0)])
    assert study.linearized_rate(data, fixed, sigma2) == 0.0


def test_count_distinct_validates_its_inputs_and_keeps_float64():
    assert int(study.count_distinct([[0.0], [0.5]], 0.1)) == 2
    for means, tol, name in [
        (np.array([0.0, 0.5]), 0.1, "means"),
        (np.array([[0.0], [np.nan]]), 0.1, "means"),
        (np.array([[0.0], [0.5]]), -1.0, "tol"),
        (np.array([[0.0], [0.5]]), np.nan, "tol"),
        (np.array([[0.0], [0.5]]), 1j, "tol"),
        (np.array([[0.0], [0.5]], np.float32), 1e39, "tol"),
    ]:
        with pytest.raises(ValueError, match=name):
            study.count_distinct(means, tol)
    # float64 means 1e-30 apart are two centres at tol 1e-31, also with JAX's x64 flag off
    with jax.enable_x64(False):
        assert int(study.count_distinct(np.array([[0.0], [1e-30]]), 1e-31)) == 2
    # far float32 means: distances overflow their squares unless compared rescaled
    far = np.array([[1e20], [3e20]], np.float32)
    assert int(study.count_distinct(far, 1.5e20)) == 2
    assert int(study.count_distinct(far, 2.5e20)) == 1


def test_scalar_options_of_the_wrong_kind_are_value_errors():
    with pytest.raises(ValueError, match="learning_rate"):
        study.compare_em_gradient(X32, X32[:3], 0.5, learning_rate=np.array(-0.1), repeats=1)
    with pytest.raises(ValueError, match="floor_rel"):
        study.convergence_rate(X32, X32[:3], 0.5, floor_rel=1j)
    with pytest.raises(ValueError, match="rel_gap"):
        study.compare_em_gradient(X32, X32[:3], 0.5, rel_gap="tight", repeats=1)
    costs = study.compare_em_gradient(
        X32,
        X32[:3],
        0.5,
        methods=("adam",),
        learning_rate=np.array(0.1),
        n_steps=N_STEPS,
        repeats=1,
    )
    assert costs["adam"].learning_rate == pytest.approx(0.1)


def _squared_distance(a: np.ndarray, b: np.ndarray) -> Fraction:
    """||a - b||^2 of two (D,) rows, exact (rational)."""
    return sum((Fraction(float(x)) - Fraction(float(y))) ** 2 for x, y in zip(a, b, strict=True))


def _distinct_groups(means: np.ndarray, tol: float) -> int:
    """Connected components of ||mu_i - mu_j|| <= tol, decided in exact rational arithmetic."""
    bound = Fraction(float(tol)) ** 2
    group = list(range(len(means)))
    for i, j in itertools.combinations(range(len(means)), 2):
        if _squared_distance(means[i], means[j]) <= bound:
            old, new = group[j], group[i]
            group = [new if g == old else g for g in group]
    return len(set(group))


# means 0, s, 2.5 s (twice), 3 s along another axis, and a unit row: distances from s to 1
_SHAPE = np.array([[0.0, 0.0], [1.0, 0.0], [2.5, 0.0], [2.5, 0.0], [0.0, 3.0]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scale", ["subnormal", "tiny", "unit", "huge"])
def test_count_distinct_compares_distances_at_every_scale(dtype, scale):
    # before: squared distances were compared with tol^2, and both underflowed to 0 for means
    # 1e-160 apart (float64) or 1e-20 (float32): 0 <= 0 linked them at any tol, 0 included
    s = {
        "subnormal": {np.float32: 1e-42, np.float64: 1e-320},
        "tiny": {np.float32: 1e-20, np.float64: 1e-160},
        "unit": {np.float32: 1.0, np.float64: 1.0},
        "huge": {np.float32: 1e30, np.float64: 1e200},
    }[scale][dtype]
    # the unit row keeps tiny means as given (study.count_distinct rescales means whose
    # largest magnitude lies past the window, and jnp.ldexp leaves subnormals unscaled)
    means = np.r_[_SHAPE * s, [[1.0, 1.0]]].astype(dtype)
    cases = [(means, 0.0), (means[[0, 1, 4, 5]], 0.0), (means[[0, 1, 5]], 0.0)]
    for factor in (1e-10, 0.5, 1.0, 1.5, 2.0, 3.0, 1e10):
        with np.errstate(over="ignore"):  # 1e40 is past float32's largest number
            tol = dtype(factor * s)  # rounded to the dtype first: the reference sees that tol
        if np.isfinite(tol) and (tol > 0 or factor < 1):
            cases += [(means, float(tol)), (means[[0, 1, 4, 5]], float(tol))]
    if scale == "huge":  # squared distances overflow: a tol just below the distance, and at it
        big = np.array([[0.0], [s], [-s]], dtype)
        cases += [(big, float(dtype(0.9 * s))), (big, float(dtype(s)))]
    for m, tol in cases:
        assert int(study.count_distinct(m, tol)) == _distinct_groups(m, tol), (m, tol)


_EXPONENTS = {np.float32: (-160, 120), np.float64: (-1090, 1015)}
# the edges of each range drawn often: subnormal, smallest normal, unit and near the largest
_EDGES = {
    np.float32: [-160, -149, -140, -126, -70, 0, 100, 120],
    np.float64: [-1090, -1074, -1060, -1022, -540, 0, 660, 1015],
}


@st.composite
def _means_and_tol(draw, dtype):
    """(4, 2) means m * 2^(E + delta) and a tol at E: mixed scales, ties and subnormals."""
    low, high = _EXPONENTS[dtype]
    top = draw(st.one_of(st.sampled_from(_EDGES[dtype]), st.integers(low, high)))
    deltas = st.sampled_from([0, 0, 0, -1, -30, -200])
    entry = st.tuples(st.integers(-6, 6), deltas)
    raw = draw(st.lists(entry, min_size=8, max_size=8))
    means = np.array([np.ldexp(dtype(m), max(top + d, low)) for m, d in raw], dtype)
    t, d = draw(st.integers(0, 12)), draw(st.sampled_from([-200, -30, -1, 0, 0, 1, 30]))
    tol = np.ldexp(dtype(t), min(max(top + d, low), high))
    return means.reshape(4, 2), tol


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_count_distinct_compiled_matches_exact_components(dtype):
    # the compiled count (as gl.anneal calls it, jitted and vmapped over stages) against exact
    # rational distances, for means from subnormal to near the largest number, tol 0 included
    count = jax.jit(_anneal.count_distinct)
    batched = jax.jit(jax.vmap(_anneal.count_distinct))

    @settings(max_examples=150, deadline=None, derandomize=True)
    @given(_means_and_tol(dtype))
    def check(case):
        means, tol = case
        want = _distinct_groups(means, tol)
        bound = Fraction(float(tol)) ** 2
        for i, j in itertools.combinations(range(4), 2):  # a near tie: rounding decides
            sq = _squared_distance(means[i], means[j])
            assume(sq == bound or abs(sq - bound) > bound / 1024)
        assert int(count(means, tol)) == want
        both = batched(np.stack([means, means[::-1]]), np.stack([tol, tol]))
        assert np.asarray(both).tolist() == [want, want]

    with jax.enable_x64(dtype == np.float64):
        check()


def _update_gap_reference(X, means, sigma2, weights):
    """||one EM mean update - one Lloyd update||_F in float64 NumPy; empty components stay.

    A responsibility below X's dtype's smallest normal number is 0 (XLA flushes it), so a
    component whose every responsibility does is empty in the EM update too.
    """
    tiny = np.finfo(X.dtype).tiny
    X, means = X.astype(np.float64), means.astype(np.float64)
    sq = np.sum((X[:, None, :] - means[None]) ** 2, axis=2)  # (N, K)
    hard = np.eye(means.shape[0])[np.argmin(sq, axis=1)]  # ties: the lowest index
    if sigma2 > 0:
        logits = -(sq - sq.min(axis=1, keepdims=True)) / (2.0 * sigma2)
        soft = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        soft[soft < tiny] = 0.0
    else:
        soft = hard

    def step(r):
        counts = weights @ r  # (K,)
        sums = (weights[:, None] * r).T @ X
        kept = counts > 0
        return np.where(kept[:, None], sums / np.where(kept, counts, 1.0)[:, None], means)

    return float(np.linalg.norm(step(soft) - step(hard)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sigma2", [0.0, 0.05, 1.0])
@pytest.mark.parametrize("weighted", [False, True])
def test_update_gap_evaluates_more_means_than_rows(dtype, sigma2, weighted):
    # before: "k=4 exceeds the number of samples N=2", though evaluating given means needs no
    # K <= N (responsibility_gap and limits.diagnose take them). Two rows, four means: the
    # Lloyd update keeps the two means no row is nearest to, EM moves them toward the rows
    # unless their responsibilities underflow (sigma2 0.05: in float32, not float64).
    X = np.array([[0.0, 0.0], [1.0, 2.0]], dtype)
    means = np.array([[0.5, 0.0], [1.0, 1.5], [4.0, -1.0], [-3.0, 2.0]], dtype)
    weights = np.array([1.0, 3.0]) if weighted else np.ones(2)
    got = study.update_gap(X, means, sigma2, weights=weights if weighted else None)
    assert got.dtype == dtype
    want = _update_gap_reference(X, means, sigma2, weights)
    # updates rounded to X's dtype: soft corrections below its eps leave rounding noise
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(float(got), want, rtol=rtol, atol=rtol / 10)
    if sigma2 == 1.0:
        assert want > 1.0  # the empty clusters' means differ, not only rounding
    # the reproducer: one row, the second mean empty in the Lloyd update (as limits.diagnose)
    one = study.update_gap(np.array([[0.0]], dtype), np.array([[0.0], [4.0]], dtype), 1.0)
    assert float(one) == 4.0
    params = gl.variants.IsotropicParams(np.array([[0.0], [4.0]]), np.float64(1.0))
    diag = gl.variants.limits.diagnose(gl.variants.isotropic, np.array([[0.0]]), params)
    assert float(diag.update_gap) == 4.0


def test_update_gap_refuses_invalid_means_before_computing():
    X = np.array([[0.0]])
    for means, match in [
        (np.array([[0.0], [np.nan]]), "NaN"),
        (np.zeros((0, 1)), "at least one mean"),
        (np.zeros((2, 2)), "columns"),
        (np.zeros(2), "2-D"),
    ]:
        with pytest.raises(ValueError, match=match):
            study.update_gap(X, means, 1.0)
    with pytest.raises(ValueError, match="sigma2"):
        study.update_gap(X, np.zeros((3, 1)), -1.0)
