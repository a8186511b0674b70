"""Every variant passes the template of tests/variant_contract.py (sharded: one subprocess)."""

import dataclasses
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from variant_cases import CASES
from variant_contract import CONTRACT, check_full_precision, fitted_wrapper, run_sharded

import gmmlimit as gl
import gmmlimit.variants as gv
from gmmlimit.sklearn import VariantMixture

# The 16-feature cases (full and tied past PER_COMPONENT_MIN_FEATURES) take the variant's other
# E-step and moments: they run the checks that compute them (shapes and finiteness, the
# objective, the hard limit, the bound, padding and out of core bit for bit, vmap over the
# temperature: the per-component loop under an outer vmap, and the products' precision).
# Restarts, annealing, the scikit-learn wrapper and the compiled-program cache (keyed on the
# variant and the shapes, not on the E-step taken) call the same functions through machinery
# that the 13-feature cases check.
MACHINERY = {"check_restarts", "check_anneal", "check_sklearn_wrapper", "check_no_recompilation"}
PAIRS = [
    (name, check)
    for name in sorted(CASES)
    for check in CONTRACT
    if not (name.endswith("_16_features") and check.__name__ in MACHINERY)
]


@pytest.mark.parametrize(
    ("name", "check"), PAIRS, ids=[f"{name}-{check.__name__}" for name, check in PAIRS]
)
def test_variant_contract(name, check):
    check(CASES[name])


# Sharding splits the rows, whatever E-step a block takes: the 16-feature cases (the variants'
# other E-step) are left to the one-device checks.
SHARDED = tuple(name for name in sorted(CASES) if not name.endswith("_16_features"))


def test_every_variant_sharded_over_forced_host_devices():
    out = run_sharded("variant_cases", names=SHARDED)
    assert all(f"sharded ok: {name}" in out for name in SHARDED), out


@pytest.mark.parametrize("name", SHARDED)
def test_score_samples_are_the_rows_terms_of_the_objective(name):
    # every shipped variant is a tempered_variant: its objective is the weighted sum of the
    # E-step's per-row log_lik (soft) or -d_n (hard), so score is their weighted mean
    case = CASES[name]
    est = fitted_wrapper(case)  # check_sklearn_wrapper's fit (its compiled programs)
    terms = est.score_samples(case.X)
    assert terms.shape == (case.X.shape[0],) and np.all(np.isfinite(terms))
    assert terms.dtype == np.asarray(case.X).dtype
    weights = np.linspace(0.5, 2.0, case.X.shape[0])
    rtol = 1e-5 if terms.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(np.mean(terms), est.score(case.X), rtol=rtol)
    np.testing.assert_allclose(
        np.average(terms, weights=weights), est.score(case.X, sample_weight=weights), rtol=rtol
    )
    if est.variant_.is_hard(est.params_):  # -d_n: the terms sum to -J
        np.testing.assert_allclose(np.sum(terms), -est.distortion_, rtol=rtol)


@pytest.fixture
def x64_off():
    """JAX's global x64 flag off (its default; the suite's conftest turns it on), restored."""
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", False)
    yield
    jax.config.update("jax_enable_x64", before)


def test_the_wrapper_keeps_float64_with_x64_off(x64_off):
    case = CASES["poisson"]  # float64 counts
    est = VariantMixture(case.variant, case.k, temperature=1.0, max_iter=case.max_iter)
    w = np.linspace(0.5, 2.0, len(case.X))
    est.fit(case.X, sample_weight=w)
    proba = est.predict_proba(case.X)
    assert proba.dtype == np.float64 and jax.config.jax_enable_x64 is False
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-13)
    score = est.score(case.X, sample_weight=w)  # in float32 it would be off by about 1e-8
    np.testing.assert_allclose(score, est.objective_ / w.sum(), rtol=1e-12)
    terms = est.score_samples(case.X.astype(np.int64))  # integer counts: float64 too
    assert terms.dtype == np.float64
    np.testing.assert_allclose(np.average(terms, weights=w), score, rtol=1e-12)


def test_an_init_called_directly_keeps_float64_data_with_x64_off(x64_off):
    # before: gv.diag.init(key, X, k) on float64 rows (docs/variants.md's own start) gave float32
    # parameters, the rows truncated with JAX's warning, unlike every tool that calls it
    for name in (n for n in gv.__all__ if isinstance(getattr(gv, n), gl.Variant)):
        case = next((c for c in CASES.values() if c.variant is getattr(gv, name)), None)
        rows = np.asarray(case.X if case is not None else CASES["diag"].X, np.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no "truncated to dtype float32"
            params = getattr(gv, name).init(jax.random.key(0), rows, 3)
        floats = [
            leaf for leaf in jax.tree.leaves(params) if jnp.issubdtype(leaf.dtype, jnp.floating)
        ]
        assert floats and all(leaf.dtype == np.float64 for leaf in floats), name


BUILD_THEIR_OWN_ARRAYS = ("check_vmap_temperature", "check_sklearn_wrapper")


@pytest.mark.parametrize(
    "check", [c for c in CONTRACT if c.__name__ in BUILD_THEIR_OWN_ARRAYS], ids=lambda c: c.__name__
)
def test_the_template_passes_with_x64_off(x64_off, check):
    check(CASES["poisson"])  # as a variant author's own test file runs it


def test_the_precision_check_fails_on_a_product_at_default_precision():
    case = CASES["poisson"]

    def e_step(params, x):  # the variant's E-step and one product at JAX's default precision
        out = case.variant.e_step(params, x)
        return out._replace(distortion=out.distortion + 0.0 * (x @ x.T)[:, 0])

    loose = dataclasses.replace(case, variant=case.variant._replace(e_step=e_step))
    with pytest.raises(AssertionError, match="below full precision"):
        check_full_precision(loose)
