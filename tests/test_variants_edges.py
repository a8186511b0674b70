"""Issue 12's classes that live in the driver and the variants: the stop rule, -inf objectives,
out-of-core data that changes between passes, parameters valid only before the cast, M-steps that
must never return an invalid parameter, and unclear errors."""

from decimal import Decimal, localcontext
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.mixture import GaussianMixture
from variant_cases import CASES, W3, rows, wine

import gmmlimit as gl
from gmmlimit import variants as gv

X_WINE = wine()
M0 = rows(X_WINE, 0)
D = X_WINE.shape[1]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_a_fall_of_the_objective_is_not_convergence():
    # reg_covar far above the starting variances: the floored M-step is not a maximiser and the
    # objective falls from the second iteration on. The old rule stopped there (n_iter = 2,
    # converged); the fit must go on to the fixed point scikit-learn reaches from the same start.
    reg = 3.0
    start = gv.DiagParams(M0, np.full((3, D), 1e-3), W3, 1.0, reg)
    ours = gl.fit(gv.diag, X_WINE, start, max_iter=400, tol=1e-12)
    history = np.asarray(ours.history)[: int(ours.n_iter)]
    assert np.any(np.diff(history) < 0) and int(ours.n_iter) > 2
    ref = GaussianMixture(
        3, covariance_type="diag", reg_covar=reg, tol=1e-12, max_iter=400,
        weights_init=W3, means_init=M0, precisions_init=np.full((3, D), 1e3),
    ).fit(X_WINE)  # fmt: skip
    np.testing.assert_allclose(np.asarray(ours.means), ref.means_, rtol=1e-6, atol=1e-8)


def test_an_invalid_temperature_traced_in_a_vmap_does_not_converge():
    # beta is checked eagerly where it is concrete; traced in a user's vmap it cannot be, and
    # beta = 0 gives a NaN objective. Before, that lane reported converged=True.
    start = gv.DiagParams(M0, np.ones((3, D)), W3, 1.0, 1e-6)
    betas = np.array([0.0, 1.0])

    def fit_at(beta):
        # max_iter 400: the fall test's program, compiled once for both (alone it converges)
        return gl.fit(gv.diag, X_WINE, start._replace(beta=beta), max_iter=400)

    lanes = jax.vmap(fit_at)(betas)
    assert np.isnan(float(lanes.objective[0])) and not bool(lanes.converged[0])
    alone = fit_at(1.0)
    assert bool(alone.converged) and bool(lanes.converged[1])
    assert int(lanes.n_iter[1]) == int(alone.n_iter)
    np.testing.assert_allclose(np.asarray(lanes.means[1]), np.asarray(alone.means), rtol=1e-10)


def test_em_stops_where_the_log_likelihood_is_minus_inf():
    # float64 sigma2 near 1e-307: every row's density underflows, the log-likelihood is -inf;
    # the fit stops on the partition rule, at K-means' partition.
    X = X_WINE[:, :2]
    m0 = X[:3]
    res = gl.em(X, m0, 1e-307, max_iter=60)
    assert float(res.objective) == -np.inf
    assert bool(res.converged) and int(res.n_iter) < 60
    km = gl.kmeans(X, m0, max_iter=60)
    np.testing.assert_array_equal(np.asarray(res.labels), np.asarray(km.labels))


def test_out_of_core_source_turning_nan_later_raises():
    X = CASES["poisson"].X
    calls = []

    def source():
        calls.append(1)
        bad = X.copy()
        if len(calls) > 4:
            bad[7, 2] = np.nan
        return iter([bad[:100], bad[100:]])

    with pytest.raises(ValueError, match="NaN or inf"):
        gl.scale.fit_out_of_core(gv.poisson, source, CASES["poisson"].params, max_iter=30)
    assert len(calls) == 5


@pytest.mark.parametrize(
    ("name", "change", "message"),
    [
        ("poisson", {"rates": np.full((3, 6), 1e-50)}, "rates must be > 0 in float32"),
        ("bernoulli", {"probs": np.full((3, 12), 1 - 1e-10)}, "between 0 and 1 in float32"),
        ("spherical", {"variances": np.full(3, 1e-50)}, "> 0 in float32"),
        ("vmf", {"beta": 1e-50}, "not representable in float32"),
        ("vmf", {"beta": 1e-40}, "below the smallest normal number"),  # subnormal, not 0
        ("spherical", {"reg_covar": 1e-40}, "reg_covar=1e-40 underflows in float32"),
        ("gamma", {"means": np.full((3, 4), 1e300)}, "overflows in float32"),
    ],
)
def test_parameters_are_checked_after_the_cast(name, change, message):
    case = CASES[name]
    params = case.params._replace(**change)
    gl.fit(case.variant, case.X, params, max_iter=case.max_iter)  # valid in float64
    with pytest.raises(ValueError, match=message):
        gl.fit(case.variant, case.X.astype(np.float32), params, max_iter=case.max_iter)


@pytest.mark.parametrize(
    ("name", "change"),
    [
        ("spherical", {"variances": np.full(3, 1e-40)}),
        ("student_t", {"dofs": np.full(3, 1e-40)}),
        ("poisson", {"rates": np.full((3, 6), 1e-40)}),
        ("bernoulli", {"probs": np.full((3, 12), 1e-40)}),
    ],
)
def test_subnormal_parameters_are_refused(name, change):
    """A value below the smallest normal number is 0 to XLA: before, accepted, and NaN fits."""
    case = CASES[name]
    with pytest.raises(ValueError, match=r"smallest normal number 1\.175e-38"):
        gl.fit(case.variant, case.X.astype(np.float32), case.params._replace(**change))


def test_student_t_never_forms_the_product_of_a_collapsed_scale_and_a_small_dof():
    """A scale collapsed onto duplicate rows (reg_covar 1e-37) and nu near 0.08: nu s is
    subnormal in float32; the objective was NaN when the divergence formed it."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(2, 2)) * 4
    X = (centres[rng.integers(2, size=40)] + rng.normal(size=(40, 2))).astype(np.float32)
    X[:10] = X[0]
    start = gv.StudentTParams(
        np.stack([X[0], X[20]]), np.array([1e-3, 1.0]), np.array([0.05, 5.0]),
        np.array([0.5, 0.5]), np.inf, 1e-37,
    )  # fmt: skip
    res = gl.fit(gv.student_t, X, start, max_iter=20)
    assert np.all(np.isfinite(np.asarray(res.history)))
    assert float(res.params.scales[0]) * float(res.params.dofs[0]) < np.finfo(np.float32).tiny


def test_full_covariance_singular_in_float32_is_refused():
    cov = np.stack([np.eye(D)] * 3)
    cov[0, 0, 1] = cov[0, 1, 0] = 1 - 1e-12  # positive definite in float64 only
    params = gv.FullParams(M0, cov, W3, 1.0, 1e-6)
    gl.fit(gv.full, X_WINE, params, max_iter=30)
    with pytest.raises(ValueError, match="not positive definite in float32"):
        gl.fit(gv.full, X_WINE.astype(np.float32), params, max_iter=30)


@pytest.mark.parametrize(
    "cov",
    [
        np.array([[1.0, 1 - 1e-10], [1 - 1e-10, 1.0]]),  # singular once cast to float32
        np.eye(2) * 1e39,  # inf in float32
    ],
)
def test_a_covariance_unusable_in_float32_is_refused_by_tied_and_full(cov):
    # (200, 2) float64 rows and max_iter 100: the program of the float64 tied fit below
    X = np.random.default_rng(0).normal(size=(200, 2))
    means, weights = X[:2], np.full(2, 0.5)
    tied = gv.TiedParams(means, cov, weights, 1.0, 1e-6)
    full = gv.FullParams(means, np.stack([cov, np.eye(2)]), weights, 1.0, 1e-6)
    gl.fit(gv.tied, X, tied, max_iter=100)  # usable in float64
    for variant, params in ((gv.tied, tied), (gv.full, full)):
        with pytest.raises(ValueError, match="not positive definite in float32"):
            gl.fit(variant, X.astype(np.float32), params, max_iter=2)


@pytest.mark.parametrize(("dtype", "reg_covar"), [(np.float32, 1e-12), (np.float64, 1e-20)])
def test_tied_fit_on_copied_features_keeps_a_covariance_it_can_factor(dtype, reg_covar):
    # Two features that are copies of each other: the pooled covariance is singular, and the
    # reg_covar is below the dtype's resolution of it. Taken as it is, the next E-step had no
    # Cholesky factor: a NaN objective, both components merged onto one mean, "converged".
    t = np.random.default_rng(0).normal(size=(200, 1))
    X = np.hstack([t, t]).astype(dtype)
    X[100:] += 5.0
    start = gv.TiedParams(X[[0, 150]], np.eye(2, dtype=dtype), np.full(2, 0.5), 1.0, reg_covar)
    res = gl.fit(gv.tied, X, start, max_iter=100)
    assert np.all(np.isfinite(np.asarray(res.history)[: int(res.n_iter)]))
    np.linalg.cholesky(np.asarray(res.params.covariance, dtype=np.float64))
    assert np.all(np.diag(np.linalg.cholesky(np.asarray(res.params.covariance))) > 0)
    np.testing.assert_array_equal(np.bincount(np.asarray(res.labels)), [100, 100])


def test_float32_full_fit_with_tiny_reg_covar_never_goes_nan():
    # Duplicated rows collapse a component onto few points: its covariance is singular, and a
    # reg_covar of 1e-12 is below float32's resolution of it. The M-step must still return a
    # covariance the next E-step can factor.
    X = np.repeat(X_WINE[:20], 5, axis=0).astype(np.float32)
    start = gv.FullParams(X[[0, 25, 60]], np.stack([np.eye(D)] * 3), W3, 1.0, 1e-12)
    for beta in (1.0, np.inf):
        res = gl.fit(gv.full, X, start._replace(beta=beta), max_iter=30)
        assert np.all(np.isfinite(np.asarray(res.history)))
        assert np.all(np.isfinite(np.asarray(res.params.covariances)))
        assert len(np.unique(np.asarray(res.labels))) > 1


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: gl.fit("isotropic", X_WINE, None), "variant must be a gmmlimit.Variant"),
        (lambda: gl.restarts(jax.random.key(0), X_WINE, 3, block_size=0), "block_size"),
        (lambda: gl.anneal(X_WINE, [1.0], key=jax.random.key(0), k=2, perturbation=None), "pert"),
        (lambda: gl.scale.fit_out_of_core("poisson", [X_WINE], None), "variant must be"),
        # before: "process 0: AttributeError: 'str' object has no attribute 'means'"
        (
            lambda: gl.scale.fit_out_of_core_processes("poisson", [X_WINE], None),
            "process 0: variant must be a gmmlimit.Variant",
        ),
        (
            lambda: gl.study.anneal_variant(
                gv.poisson, CASES["poisson"].X, [5.0, 1.0], init_params=CASES["poisson"].params
            ),
            "toward the hard limit",
        ),
        (
            lambda: gl.restarts(jax.random.key(0), X_WINE, 3, variant=gv.dpmeans),
            "variant must be",
        ),
    ],
)
def test_unclear_errors_are_value_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def _free_energy_reference(d: np.ndarray, weights: np.ndarray, beta: float) -> list[Decimal]:
    """tau ln sum_k p_k exp(-beta d_k) per row, in 420-digit decimals (p = weights / sum)."""
    with localcontext() as ctx:
        ctx.prec = 420
        b = Decimal(beta)
        w = [Decimal(float(v)) for v in weights]
        p = [v / sum(w) for v in w]
        rows = []
        for row in d:
            total = sum(
                pk * (-b * Decimal(float(dk))).exp() for pk, dk in zip(p, row, strict=True) if pk
            )
            rows.append(total.ln() / b)
        return rows


# one compiled program per dtype (as in a fit) for all weights and betas, not each op eagerly
_tempered_log_lik = jax.jit(lambda d, w, beta: gv.tempered_assign(d, w, beta).log_lik)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "weights",
    [(0.3, 0.3, 0.4), (0.5, 0.0, 0.5), (1e-6, 0.5, 0.5)],
    ids=["live", "one_off", "one_rare"],  # one_rare: near 1e-6 where the rare one is nearest
)
def test_the_tempered_free_energy_is_accurate_at_every_beta(dtype, weights):
    # the score form tau lse - s* subtracts two numbers near tau ln p_k: as beta -> 0 its
    # rounding swamped the value (float32 at beta = 1e-8: 8 per row off; float64 at 1e-300:
    # 1e284). Compared per row with 420-digit decimals on the dtype's own inputs.
    rng = np.random.default_rng(4)
    d = rng.gamma(2.0, 2.0, size=(24, 3)).astype(dtype)
    d[0] = d[0, 0]  # a tie
    d[1] = (0.0, 1e3, 1e6)  # far apart
    w = np.asarray(weights, dtype)
    eps = float(np.finfo(dtype).eps)
    # down to the smallest normal number: below about 1e-306 (float64) or 1e-36 (float32) terms
    # p_k beta (d_k - d_ref) were flushed to 0 on the CPU (F moved toward -d_ref: -160.5 for
    # the -161.5 of 30 rows at 1e-307), since 2026-12-07 taken to first order there
    tiny = (1e-306, 1e-307, 3e-308) if dtype == np.float64 else (1e-36, 1e-37, 2e-38)
    smallest = 1e-300 if dtype == np.float64 else 1e-30
    for beta in (*tiny, smallest, 1e-12, 1e-6, 1e-3, 1.0, 1e3, 1e8):
        got = np.asarray(_tempered_log_lik(jnp.asarray(d), jnp.asarray(w), dtype(beta)))
        want = _free_energy_reference(d, w, float(dtype(beta)))
        for n, (g, r) in enumerate(zip(got, want, strict=True)):
            scale = float(abs(r)) + float(np.max(np.abs(d[n])))
            assert abs(Decimal(float(g)) - r) <= Decimal(32 * eps * scale), (beta, n, g, r)


def test_a_tempered_fit_at_small_beta_climbs_in_float32_as_in_float64():
    # EM never lowers the free energy; at beta = 1e-6 float32's history fell (rounding)
    rng = np.random.default_rng(0)
    X = rng.gamma(3.0, 1.0, size=(200, 3)).astype(np.float32)
    start = gv.GammaParams(X[[5, 50, 150]], 3.0, np.full(3, 1 / 3), 1e-6)
    narrow = gl.fit(gv.gamma, X, start, max_iter=5, tol=0.0)
    wide = gl.fit(gv.gamma, X.astype(np.float64), start, max_iter=5, tol=0.0)
    np.testing.assert_allclose(np.asarray(narrow.history), np.asarray(wide.history), rtol=1e-5)
    assert np.all(np.diff(np.asarray(narrow.history)) >= -1e-5 * abs(float(narrow.objective)))


class _SquaredParams(NamedTuple):
    means: jax.Array
    weights: jax.Array
    beta: jax.Array


def _squared_variant(divergence=None, m_step=None):
    """A user's variant (squared distances, learned weights), with one piece replaced."""

    def good_divergence(params, x):
        return jnp.sum((x[:, None, :] - params.means[None]) ** 2, axis=2)

    def good_m_step(params, stats):
        means = stats.moments / jnp.maximum(stats.counts, 1e-30)[:, None]
        return params._replace(means=means, weights=gv.update_weights(params, stats))

    return gv.tempered_variant(
        "squared",
        divergence=divergence or good_divergence,
        moments=lambda params, x, wr: wr.T @ x,
        m_step=m_step or good_m_step,
        means=lambda params: params.means,
        validate=lambda X, p: _SquaredParams(*(jnp.asarray(a, X.dtype) for a in p)),
    )


def test_a_user_variants_functions_of_the_wrong_form_are_named():
    # before: a (B, 1) divergence broadcast against the K weights and fit every row to
    # component 0 without a word; an M-step returning a tuple failed inside the user's own
    # divergence ("'tuple' object has no attribute 'means'"); a float64 leaf of a float32 fit
    # failed in JAX's while_loop ("carry input and carry output must have equal types").
    X = np.random.default_rng(0).normal(size=(101, 2)).astype(np.float32)
    X[50:] += 6.0
    start = _SquaredParams(X[[0, 80]], np.full(2, 0.5), 1.0)
    good = _squared_variant()
    assert np.bincount(np.asarray(gl.fit(good, X, start, block_size=32).labels)).tolist() == [
        50,
        51,
    ]
    narrow = _squared_variant(divergence=lambda p, x: jnp.sum(x * x, axis=1, keepdims=True))
    as_tuple = _squared_variant(m_step=lambda p, s: tuple(p))
    wider = _squared_variant(m_step=lambda p, s: p._replace(beta=jnp.asarray(p.beta, "float64")))
    wrong_resp = good._replace(
        e_step=lambda p, x: good.e_step(p, x)._replace(resp=good.e_step(p, x).resp[:, :1])
    )
    cases = [
        (narrow, r"divergence of variant 'squared' must return \(B, K\) = \(32, 2\).*\(32, 1\)"),
        (as_tuple, "m_step of variant 'squared' must return its parameters in the form"),
        (wider, r"params\.beta was \(\) float32, it returned \(\) float64"),
        (wrong_resp, r"e_step of variant 'squared' must return resp of shape \(32, 2\)"),
    ]
    for variant, message in cases:
        for fit in (gl.fit, gl.scale.fit_out_of_core):
            with pytest.raises(ValueError, match=message):
                fit(variant, X, start, block_size=32)


_tempered_labels = jax.jit(lambda d, w, beta: gv.tempered_assign(d, w, beta)[1:4:2])


@pytest.mark.parametrize(("dtype", "beta"), [(np.float64, 1e-20), (np.float32, 1e-9)])
def test_tied_scores_at_small_beta_label_the_nearest_component(dtype, beta):
    # tau ln p_k swamps d_k in the score at small beta: with equal weights every row tied and
    # went to component 0 (diagnose's hard objective: -715.5 where the nearest give -328.4)
    rng = np.random.default_rng(8)
    d = rng.gamma(2.0, 2.0, size=(32, 3)).astype(dtype)
    d[0] = d[0, 0]  # an exact tie: the lowest index, as ever
    labels, nearest = _tempered_labels(jnp.asarray(d), jnp.full(3, 1 / 3, dtype), dtype(beta))
    np.testing.assert_array_equal(np.asarray(labels), np.argmin(d, axis=1))
    np.testing.assert_array_equal(np.asarray(nearest), np.min(d, axis=1))
    # unequal weights: the heaviest component wins at small beta (its score is lowest)
    heavy, _ = _tempered_labels(jnp.asarray(d), jnp.asarray([0.2, 0.5, 0.3], dtype), dtype(beta))
    assert np.all(np.asarray(heavy) == 1)
