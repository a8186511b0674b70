"""Annealing at the edges: data past the scale window, schedules and options the dtype refuses."""

import jax
import numpy as np
import pytest

import gmmlimit as gl
import gmmlimit.variants as gv

# Three tight float32 clusters about 1 apart. At 2^64 their squared distances and the sum of
# squares of the data scale overflow float32 unless the data are rescaled (the distortion of the
# first, collapsed stages truly does: it is inf); at 2^-64 the squares flush to zero. Every
# schedule value stays a normal float32 number at both ends (x 4^64 below 2, x 4^-64 above 4
# after the unit data are taken x 64, the schedule x 64^2).
_rng = np.random.default_rng(0)
_CENTRES = np.array([[-0.8, 0.0], [0.8, 0.0], [0.0, 0.9]])
XU = (np.repeat(_CENTRES, 8, axis=0) + 0.01 * _rng.normal(size=(24, 2))).astype(np.float32)
SCHEDULE = np.array([0.9, 0.25, 0.05, 0.01])  # lambda_max = 0.43: splits 1 -> 3
KEY = {"key": jax.random.key(0), "k": 3}
OPTS = {**KEY, "max_iter": 50, "perturbation": 1e-3}
X64 = XU.astype(np.float64)


def _squares(X: np.ndarray, means: np.ndarray) -> np.ndarray:
    """(S, N, K) squared distances of every stage in float64 (the far data's squares fit)."""
    x = X.astype(np.float64)
    return ((x[None, :, None, :] - means.astype(np.float64)[:, None, :, :]) ** 2).sum(-1)


def _log_likelihood(X: np.ndarray, means: np.ndarray, sigma2: float) -> float:
    """The isotropic log-likelihood (equal weights 1/K) of (K, D) means, in float64."""
    e = -_squares(X, means[None])[0] / (2.0 * sigma2)
    top = e.max(1)
    lse = top + np.log(np.exp(e - top[:, None]).sum(1))
    n, d = X.shape
    return float(lse.sum() - n * np.log(means.shape[0]) - 0.5 * n * d * np.log(2 * np.pi * sigma2))


@pytest.mark.parametrize(("power", "unit_factor"), [(64, 1), (-64, 64)])
def test_anneal_of_far_data_is_the_unit_path_scaled(power, unit_factor):
    # float32 data at 2^64 (before: scale inf, one centre, every row in label 0) and at 2^-64
    # (before: squares flushed to zero) follow the unit path exactly: X / 2^e, sigma2 / 4^e
    unit = XU * np.float32(unit_factor)
    far = np.ldexp(unit, power).astype(np.float32)
    schedule = SCHEDULE * float(unit_factor) ** 2
    ref = gl.anneal(unit, schedule, **OPTS)
    path = gl.anneal(far, schedule * 4.0**power, **OPTS)
    means, ref_means = np.asarray(path.means), np.asarray(ref.means)
    assert np.asarray(ref.n_distinct)[-1] == 3
    np.testing.assert_array_equal(np.asarray(path.n_distinct), np.asarray(ref.n_distinct))
    labels = _squares(far, means).argmin(-1)  # the labels of every stage
    np.testing.assert_array_equal(labels, _squares(unit, ref_means).argmin(-1))
    np.testing.assert_array_equal(np.asarray(path.labels), np.asarray(ref.labels))
    np.testing.assert_array_equal(means, np.ldexp(ref_means, power))
    np.testing.assert_array_equal(np.asarray(path.scale), np.ldexp(np.asarray(ref.scale), power))
    with np.errstate(over="ignore"):  # J of the collapsed stages is past float32 at 2^64
        expect = np.ldexp(np.asarray(ref.distortion), 2 * power)
    np.testing.assert_array_equal(np.asarray(path.distortion), expect)
    assert np.isfinite(expect[-1])
    np.testing.assert_allclose(np.asarray(path.sigma2)[:-1], schedule * 4.0**power, rtol=1e-7)
    # the log-likelihood is the far problem's own, and the last stage is gl.kmeans on far data
    ll = np.asarray(path.log_likelihood)
    assert ll[-1] == -np.inf
    for s in range(len(schedule)):
        expect = _log_likelihood(far, means[s], float(path.sigma2[s]))
        np.testing.assert_allclose(ll[s], expect, rtol=1e-5)
    km = gl.kmeans(far, means[-2], max_iter=OPTS["max_iter"])
    np.testing.assert_array_equal(np.asarray(path.labels), np.asarray(km.labels))
    np.testing.assert_allclose(means[-1], np.asarray(km.means), rtol=1e-6)  # two programs


def test_anneal_weights_past_the_window_are_relative():
    # before: refused ("divide them by their largest"); now scaled as em and kmeans scale them
    ref = gl.anneal(XU, SCHEDULE, **OPTS)
    tiny = gl.anneal(XU, SCHEDULE, weights=np.full(24, 2.0**-40), **OPTS)
    np.testing.assert_array_equal(np.asarray(tiny.means), np.asarray(ref.means))
    np.testing.assert_array_equal(
        np.asarray(tiny.distortion), np.ldexp(np.asarray(ref.distortion), -40)
    )


def test_anneal_refuses_a_schedule_that_underflows_at_the_data_scale():
    far = np.ldexp(XU, 64).astype(np.float32)  # 0.1 / 4^64 < 2^-126
    with pytest.raises(ValueError, match=r"schedule stage 1: .*relative to the data's scale"):
        gl.anneal(far, [1e30, 0.1], **OPTS)


@pytest.mark.parametrize(
    "option",
    [{"perturbation": 1e39}, {"merge_tol": 1e39}, {"perturbation": 1e-40}],
    ids=["perturbation_overflows", "merge_tol_overflows", "perturbation_subnormal"],
)
def test_anneal_refuses_options_the_dtype_cannot_hold(option):
    # before: cast to float32 as inf (or flushed to 0) and run
    with pytest.raises(ValueError, match="not representable in float32"):
        gl.anneal(XU, SCHEDULE, **{**OPTS, **option})


_ISO = gv.IsotropicParams(X64[:3], 0.5)
_BAD_SCHEDULES = {
    "anneal_bool": (lambda: gl.anneal(X64, [True, False], **OPTS), "not booleans"),
    "variant_complex": (
        lambda: gl.study.anneal_variant(gv.isotropic, X64, np.array([2 + 1j, 0.5]), **KEY),
        "schedule must be real",
    ),
    "variant_callable_complex": (
        lambda: gl.study.anneal_variant(gv.isotropic, X64, lambda i: 2 + 1j, n_stages=1, **KEY),
        "schedule must be real",
    ),
    "variant_bool": (
        lambda: gl.study.anneal_variant(gv.isotropic, X64, [True, False], **KEY),
        "not booleans",
    ),
    "sweep_complex": (
        lambda: gv.limit_sweep(gv.isotropic, X64, _ISO, np.array([2 + 1j])),
        "temperatures must be real",
    ),
    "sweep_2d": (
        lambda: gv.limit_sweep(gv.isotropic, X64, _ISO, [[1.0, 0.5]]),
        r"1-D grid \(G,\); got shape \(1, 2\)",
    ),
    "sweep_strings": (
        lambda: gv.limit_sweep(gv.isotropic, X64, _ISO, ["a"]),
        "temperatures must hold real numbers",
    ),
    "sweep_bool": (lambda: gv.limit_sweep(gv.isotropic, X64, _ISO, [True]), "not booleans"),
}


@pytest.mark.parametrize("case", list(_BAD_SCHEDULES))
def test_schedules_and_grids_must_be_real_numbers(case):
    # before: complex values lost their imaginary part (a ComplexWarning), a callable's complex
    # value raised TypeError, booleans ran as 1 and 0, a 2-D grid was flattened
    run, match = _BAD_SCHEDULES[case]
    with pytest.raises(ValueError, match=match):
        run()


def test_a_finite_beta_past_float32_is_refused_not_run_as_the_hard_limit():
    # before: beta = 1e39 became inf in the cast, and ran as the hard stage
    counts = np.random.default_rng(1).poisson(3.0, size=(24, 2)).astype(np.float32)
    start = gv.PoissonParams(counts[:3] + 1, np.full(3, 1 / 3, np.float32), 1.0, 1e-3)
    with pytest.raises(ValueError, match=r"schedule stage 1: beta=1e\+39 is not representable"):
        gl.study.anneal_variant(gv.poisson, counts, [1.0, 1e39], **KEY)
    with pytest.raises(ValueError, match=r"temperatures\[1\]: beta=1e\+39 is not representable"):
        gv.limit_sweep(gv.poisson, counts, start, [1.0, 1e39])


def test_n_stages_with_an_array_schedule_is_its_length_in_both_annealers():
    # the variant annealer ignored n_stages given with an array (even 0); gl.anneal refused it
    betas = np.array([1.0, 4.0])
    with pytest.raises(ValueError, match="n_stages=4 but the schedule has 2 values"):
        gl.study.anneal_variant(gv.diag, X64, betas, n_stages=4, **KEY)
    with pytest.raises(ValueError, match="n_stages must be"):
        gl.study.anneal_variant(gv.diag, X64, betas, n_stages=0, **KEY)
    with pytest.raises(ValueError, match="n_stages=4 but the schedule has 2 values"):
        gl.anneal(X64, np.array([1.0, 0.5]), key=jax.random.key(0), k=3, n_stages=4)
    same = gl.study.anneal_variant(gv.diag, X64, betas, n_stages=2, **KEY)
    plain = gl.study.anneal_variant(gv.diag, X64, betas, **KEY)
    np.testing.assert_array_equal(np.asarray(same.means), np.asarray(plain.means))
