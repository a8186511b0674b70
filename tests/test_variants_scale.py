"""A variant that declares its scaling fits data past the dtype's scale window rescaled.

float32 data near 2^62 (5e18) or 2^-60 (1e-18) overflow or vanish in squared distances and second
moments; the Gaussian variants declare how their parameters move under X / 2^e
(``Variant.scaling``), so every fit path computes the problem at a representable scale and
maps the fit back. The reference is the same problem at unit scale: the same labels, and
parameters and objective mapped by the exact law.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gmmlimit as gl
from gmmlimit import variants as gv
from gmmlimit.sklearn import VariantMixture

BLOCK = 64
N = 203  # not a multiple of BLOCK: the last block is padded
ITERS = 60
"""max_iter of every fit here (one history length): each variant's fits share one program."""


def _unit_data() -> np.ndarray:
    rng = np.random.default_rng(5)
    centres = np.array([[0.0, 0.0], [6.0, 1.0], [1.0, 7.0]])
    return (centres[rng.integers(0, 3, N)] + rng.normal(0.0, 0.7, (N, 2))).astype(np.float32)


def _start(variant, X: np.ndarray, beta: float):
    params = variant.init(jax.random.key(3), jnp.asarray(X), 3)
    # a floor of 2^-4: a power of two, so exactly 2^±116 at the far scales
    return variant.temperature.set(params._replace(reg_covar=jnp.float32(2.0**-4)), beta)


ESTIMATOR = {"n_init": 1, "random_state": 0, "block_size": BLOCK, "max_iter": ITERS}
"""The estimators' options: their fits run the programs of gl.fit's fits here."""


def _law_objective(variant, value, params, exponent):
    """The objective of the data X 2^exponent from that of X (the scaling law, in float64)."""
    return float(variant.scaling.objective(jnp.float64(value), params, N, 2, exponent))


# 2^62: squared distances between the clusters (~2^129) overflow float32 as given; full's
# off-diagonal covariances (~6e-3) would be subnormal at 4^-60, so it goes to 2^-50
CASES = [
    (name, beta, exponent)
    for name, beta, tiny in (("diag", 1.0, -60), ("diag", math.inf, -60), ("full", 1.0, -50),
                             ("tied", math.inf, -60))
    for exponent in (62, tiny)
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "beta", "exponent"), CASES, ids=[f"{n}-{b}-{e}" for n, b, e in CASES]
)
def test_variant_fits_past_the_window_equal_the_unit_fit_mapped(name, beta, exponent):
    variant = getattr(gv, name)
    X = _unit_data()
    start = _start(variant, X, beta)
    unit = gl.fit(variant, X, start, block_size=BLOCK, max_iter=ITERS)
    Xfar = np.ldexp(X, exponent)
    far_start = variant.scaling.params(start, -exponent)
    far = gl.fit(variant, Xfar, far_start, block_size=BLOCK, max_iter=ITERS)
    for field in ("means", "objective", "distortion", "history"):
        assert np.all(np.isfinite(np.asarray(getattr(far, field)))), field
    np.testing.assert_array_equal(np.asarray(far.labels), np.asarray(unit.labels))
    if math.isinf(beta):  # the hard rule (labels) stops both at the same iteration
        assert int(far.n_iter) == int(unit.n_iter)
    mapped = variant.scaling.params(far.params, exponent)
    for got, want in zip(jax.tree.leaves(mapped), jax.tree.leaves(unit.params), strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=2e-4, atol=2e-4)
    expect = _law_objective(variant, float(unit.objective), unit.params, exponent)
    np.testing.assert_allclose(float(far.objective), expect, rtol=1e-5)
    # out of core, from uneven chunks: the same rescaled fit as in memory
    ooc = gl.scale.fit_out_of_core(
        variant, [Xfar[:77], Xfar[77:]], far_start, block_size=BLOCK, chunk_blocks=1, max_iter=ITERS
    )
    np.testing.assert_array_equal(np.asarray(ooc.labels), np.asarray(far.labels))
    assert int(ooc.n_iter) == int(far.n_iter)
    np.testing.assert_allclose(np.asarray(ooc.means), np.asarray(far.means), rtol=1e-5)
    np.testing.assert_allclose(float(ooc.objective), float(far.objective), rtol=1e-5)


def test_variant_restarts_and_init_take_data_past_the_window():
    X = np.ldexp(_unit_data(), 60)  # about 1e18: float32 sums of squares overflow
    start = gv.diag.init(jax.random.key(0), jnp.asarray(X), 3)
    assert np.all(np.isfinite(np.asarray(start.variances)))  # before: inf (the sums overflowed)
    fit = {"variant": gv.diag, "n_init": 2, "block_size": BLOCK, "max_iter": ITERS}
    best = gl.restarts(jax.random.key(1), X, 3, **fit)
    unit = gl.restarts(jax.random.key(1), _unit_data(), 3, **fit)
    assert np.all(np.isfinite(np.asarray(best.means))) and np.isfinite(float(best.objective))
    np.testing.assert_array_equal(np.asarray(best.labels), np.asarray(unit.labels))


def test_a_parameter_the_dtype_cannot_hold_at_the_data_scale_is_refused():
    X = np.ldexp(_unit_data(), 100)  # fit as X / 2^71: sigma2 = 1 / 4^71 underflows float32
    start = gv.IsotropicParams(X[:3], jnp.float32(1.0))
    with pytest.raises(ValueError, match="sigma2 cannot be held relative to the data's scale"):
        gl.fit(gv.isotropic, X, start)
    fit = {"block_size": BLOCK, "max_iter": ITERS}
    hard = gl.fit(gv.isotropic, X, start._replace(sigma2=jnp.float32(0.0)), **fit)
    unit = gl.fit(gv.isotropic, _unit_data(), gv.IsotropicParams(_unit_data()[:3], 0.0), **fit)
    np.testing.assert_array_equal(np.asarray(hard.labels), np.asarray(unit.labels))
    np.testing.assert_array_equal(np.asarray(hard.means), np.ldexp(np.asarray(unit.means), 100))
    assert math.isinf(float(hard.distortion))  # J near 2^210: past float32's largest number
    # a variant without a scaling (counts) is computed as given, as before
    assert gv.poisson.scaling is None and gv.diag.scaling is not None


def test_a_sweep_and_the_estimator_take_data_past_the_window():
    X = np.ldexp(_unit_data(), 62)  # squared distances overflow float32 as given
    start = _start(gv.diag, _unit_data(), 1.0)
    far = gv.diag.scaling.params(start, -62)
    lanes = [gv.diag.temperature.set(far, beta) for beta in (1.0, math.inf)]
    batch = jax.tree.map(lambda *a: jnp.stack(a), *lanes)
    # a sweep under vmap: every parameter is traced, the data's scale is not
    swept = jax.vmap(lambda p: gl.fit(gv.diag, X, p, block_size=BLOCK, max_iter=ITERS).labels)(
        batch
    )
    for i, lane in enumerate(lanes):
        one = gl.fit(gv.diag, X, lane, block_size=BLOCK, max_iter=ITERS)
        np.testing.assert_array_equal(np.asarray(swept[i]), np.asarray(one.labels))
    est = VariantMixture(gv.diag, 3, **ESTIMATOR).fit(X)
    np.testing.assert_array_equal(est.predict(X), est.labels_)
    proba = est.predict_proba(X)
    assert np.all(np.isfinite(proba)) and np.all(np.isfinite(est.means_))
    np.testing.assert_allclose(est.score(X), est.objective_ / N, rtol=1e-5)


def test_a_variants_limit_diagnostics_sweep_and_annealing_take_data_past_the_window():
    X, e = _unit_data(), 62
    start = _start(gv.diag, X, 1.0)
    far, far_start = np.ldexp(X, e), gv.diag.scaling.params(start, -e)
    law = gv.diag.scaling
    unit_d, far_d = (
        gv.limits.diagnose(gv.diag, X, start),
        gv.limits.diagnose(gv.diag, far, far_start),
    )
    np.testing.assert_allclose(np.asarray(far_d.resp_gap), np.asarray(unit_d.resp_gap), atol=1e-5)
    np.testing.assert_allclose(float(far_d.update_gap), math.ldexp(float(unit_d.update_gap), e),
                               rtol=1e-4)  # fmt: skip
    want = float(law.objective(jnp.float64(unit_d.objective), start, N, 2, e))
    np.testing.assert_allclose(float(far_d.objective), want, rtol=1e-5)
    want = -float(law.distortion(-jnp.float64(unit_d.hard_objective), start, N, 2, e))
    np.testing.assert_allclose(float(far_d.hard_objective), want, rtol=1e-5)
    betas = [1.0, 4.0]
    unit_s = gv.limit_sweep(gv.diag, X, start, betas, max_iter=30)
    far_s = gv.limit_sweep(gv.diag, far, far_start, betas, max_iter=30)
    np.testing.assert_array_equal(far_s["fit_label_agreement"], unit_s["fit_label_agreement"])
    np.testing.assert_allclose(far_s["fit_means_gap"], np.ldexp(unit_s["fit_means_gap"], e),
                               rtol=1e-3, atol=math.ldexp(1e-4, e))  # fmt: skip
    unit_p = gl.study.anneal_variant(gv.diag, X, betas, init_params=start, max_iter=30,
                                     block_size=BLOCK)  # fmt: skip
    far_p = gl.study.anneal_variant(gv.diag, far, betas, init_params=far_start, max_iter=30,
                                    block_size=BLOCK)  # fmt: skip
    np.testing.assert_array_equal(np.asarray(far_p.n_distinct), np.asarray(unit_p.n_distinct))
    np.testing.assert_array_equal(np.asarray(far_p.labels), np.asarray(unit_p.labels))
    np.testing.assert_allclose(np.asarray(far_p.means), np.ldexp(np.asarray(unit_p.means), e),
                               rtol=1e-4, atol=math.ldexp(1e-4, e))  # fmt: skip
    np.testing.assert_allclose(float(far_p.scale), math.ldexp(float(unit_p.scale), e), rtol=1e-6)


# predict, predict_proba and score compute as fit does: before, they evaluated X as given, where
# float32 squared distances overflow (2^63) or vanish (2^-100): wrong labels, NaN scores
ESTIMATOR_CASES = [("diag", 63), ("student_t", 63), ("isotropic", 63), ("full", -70),
                   ("isotropic", -100)]  # fmt: skip


@pytest.mark.parametrize(("name", "exponent"), ESTIMATOR_CASES)
def test_the_estimator_predicts_and_scores_data_past_the_window_as_it_fit_them(name, exponent):
    X = np.ldexp(_unit_data(), exponent)
    # student_t converges in 100 iterations, the default (no other fit here runs its program)
    options = {**ESTIMATOR, "max_iter": 100} if name == "student_t" else ESTIMATOR
    est = VariantMixture(getattr(gv, name), 3, **options).fit(X)
    np.testing.assert_array_equal(est.predict(X), est.labels_)
    proba = est.predict_proba(X)
    assert np.all(np.isfinite(proba)) and np.all(np.isfinite(est.means_))
    np.testing.assert_array_equal(np.argmax(proba, axis=1), est.labels_)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    score = est.score(X)
    # objective_ and distortion_ too: float32 J near 2^128 (isotropic at 2^63) was inf
    assert np.isfinite(est.objective_) and np.isfinite(est.distortion_)
    # each row's term, mapped back by the variant's law for one row, in float64
    terms = est.score_samples(X)
    assert terms.dtype == np.float64 and np.all(np.isfinite(terms))
    np.testing.assert_allclose(np.mean(terms), score, rtol=1e-6)
    if est.variant_.is_hard(est.params_):  # -J / N, in float64: J itself may overflow float32
        means = np.asarray(est.means_, np.float64)[est.labels_]
        rows = -np.sum((X.astype(np.float64) - means) ** 2, axis=1)
        np.testing.assert_allclose(terms, rows, rtol=1e-5)
        want = np.mean(rows)
        assert np.isfinite(score)
        np.testing.assert_allclose(score, want, rtol=1e-5)
        np.testing.assert_allclose([est.objective_, est.distortion_], [want * N, -want * N],
                                   rtol=1e-5)  # fmt: skip
    else:  # the objective per row: the fit's mapped-back objective over N
        np.testing.assert_allclose(score, est.objective_ / N, rtol=1e-5)


@pytest.mark.parametrize("exponent", [100, -100])
def test_a_fit_the_dtype_cannot_hold_in_the_data_units_is_refused(exponent):
    # float32 data near 2^100 have variances near 2^200, past float32's range (2^-200 below
    # it): the fit computes on X / 2^e, but its parameters cannot be returned in X's units
    X = np.ldexp(_unit_data(), exponent)
    held = "fitted variances cannot be held in float32 in the data's units"
    with pytest.raises(ValueError, match=held):
        VariantMixture(gv.diag, 3, **ESTIMATOR).fit(X)
    # as given: start variances the dtype holds, but one component's fitted variance (the
    # whole data's spread, about 12 x 4^63) overflows: refused by every fit path, not returned
    # as inf (at K = 3 the same data are held: the estimator test above, diag at 2^63)
    X = np.ldexp(_unit_data(), 63)
    start = gv.DiagParams(X[:1], np.full((1, 2), 2.0**120, np.float32), np.ones(1, np.float32),
                          np.float32(1.0), np.float32(2.0**100))  # fmt: skip
    with pytest.raises(ValueError, match=held):
        gl.fit(gv.diag, X, start, block_size=BLOCK)
    with pytest.raises(ValueError, match=held):
        gl.scale.fit_out_of_core(gv.diag, [X[:77], X[77:]], start, block_size=BLOCK)
    with pytest.raises(ValueError, match=held):
        gl.scale.fit_sharded(gv.diag, X, start, block_size=BLOCK)


# the variant contract asserts the same bits for every built-in variant on its own data; tied's
# einsum differed only here (float32, N = 203, D = 3)
GAUSSIAN = ("tied",)


@pytest.mark.cpu_bits
@pytest.mark.parametrize("name", GAUSSIAN)
def test_a_gaussian_variant_fits_out_of_core_bit_for_bit(name):
    # docs/scale.md: the blocks are summed in the in-memory order, so means, every other
    # parameter, labels and n_iter are the in-memory fit's bits. tied's M-step fused its einsum
    # of the mean shifts differently in the two programs: means 3e-8 off after one iteration.
    with jax.default_device(jax.devices("cpu")[0]):
        rng = np.random.default_rng(1)
        X = rng.normal(size=(N, 3))
        X[100:] += 3.0
        X = X.astype(np.float32)
        variant = getattr(gv, name)
        start = variant.init(jax.random.key(0), jnp.asarray(X), 3)
        ref = gl.fit(variant, X, start, block_size=32, max_iter=5)
        ooc = gl.scale.fit_out_of_core(variant, X, start, block_size=32, chunk_blocks=2, max_iter=5)
        assert int(ooc.n_iter) == int(ref.n_iter)
        np.testing.assert_array_equal(np.asarray(ooc.labels), np.asarray(ref.labels))
        for field, value in ooc.params._asdict().items():
            expect = np.asarray(getattr(ref.params, field))
            np.testing.assert_array_equal(np.asarray(value), expect, err_msg=field)
