"""Every verified statement of five experiments can fail: a wrong value is named.

Five: anneal_vs_lloyd, variant_study, updates, trajectories and loglik.

Each experiment runs in process on a tiny config, once as it is (its check must pass) and once
with one library function monkeypatched to compute a wrong value (its check must name the
failure). Before, ``anneal_vs_lloyd`` checked that a median is not below a minimum that includes
it, ``variant_study`` checked two identities that ``anneal_variant`` holds by construction, and
``updates`` counted points with an infinite bound, or one below a slack 25 to 250 times its own
rounding tolerance, as held: none of these mutations failed a check. ``trajectories`` asked
only for agreement at the smallest positive grid point (EM at 10 sigma2 passed), and
``loglik``'s bounds held for L~ evaluated at 1.02 sigma2.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import gmmlimit as gl
from gmmlimit.experiments import Progress, make_config, registry
from gmmlimit.experiments import updates as updates_module
from gmmlimit.experiments import variant_study as variant_study_module


def _run(name: str, overrides: dict):
    """``(config, records, failures)`` of experiment ``name`` on its quick config + overrides."""
    spec = registry()[name]
    config = make_config(spec, overrides, quick=True)
    records = spec.run(config, Progress(enabled=False, messages=False), None)
    return config, records, spec.check(config, records)


def _statement(name: str) -> str:
    """The statement the paper prints for ``name``: its check's first docstring paragraph."""
    from gmmlimit._paper._reader import experiment_texts

    return experiment_texts()[name][1]


# anneal_vs_lloyd: separated mixture, 60 rows, 5 restarts per rule, one short annealing run
TINY_ANNEAL = {
    "datasets": ("separated",),
    "n_samples": 60,
    "n_restarts": 5,
    "n_anneal": 1,
    "n_stages": 12,
    "max_iter": 50,
}


def test_anneal_vs_lloyd_statements_fail_on_a_wrong_annealing_distortion(monkeypatch):
    _, records, failures = _run("anneal_vs_lloyd", TINY_ANNEAL)
    assert failures == []

    original = gl.anneal

    def scaled_by(factor):
        def anneal(*args, **kwargs):
            path = original(*args, **kwargs)
            return path._replace(distortion=path.distortion * factor)

        return anneal

    # annealing 0.1% worse than it is: above every k-means++ restart (all at the best here)
    monkeypatch.setattr(gl, "anneal", scaled_by(1.001))
    _, _, failures = _run("anneal_vs_lloyd", TINY_ANNEAL)
    assert any("above the median k-means++ Lloyd distortion" in f for f in failures), failures
    assert any("differ from J recomputed from their final means" in f for f in failures)
    # the audit's mutation: 1000 times worse, above both rules' medians
    monkeypatch.setattr(gl, "anneal", scaled_by(1000.0))
    _, _, failures = _run("anneal_vs_lloyd", TINY_ANNEAL)
    assert any("above the median random-start Lloyd distortion" in f for f in failures)
    # annealing reported better than it is: the comparison holds, the recomputation does not
    monkeypatch.setattr(gl, "anneal", scaled_by(0.5))
    _, _, failures = _run("anneal_vs_lloyd", TINY_ANNEAL)
    assert len(failures) == 1 and "differ from J recomputed" in failures[0], failures
    assert "median" in _statement("anneal_vs_lloyd")
    (r,) = records.values()  # the unmutated run
    assert np.median(r.anneal) <= np.median(r.lloyd_pp) * (1 + 1e-6)
    np.testing.assert_allclose(r.anneal, r.anneal_recomputed, rtol=1e-12)


# variant_study: the isotropic model (its fits compile fastest) on 60 rows, 3 temperatures
TINY_VARIANT = {
    "variant": "isotropic",
    "n_samples": 60,
    "dim": 2,
    "k": 2,
    "n_temp": 3,
    "n_anneal": 2,
    "max_iter": 10,
}


def test_variant_study_fails_when_the_hard_stage_records_a_wrong_distortion(monkeypatch):
    _, unmutated, failures = _run("variant_study", TINY_VARIANT)
    assert failures == []

    original = gl.study.anneal_variant  # the function variant_study imports

    def unmapped(*args, **kwargs):
        """A path whose objectives miss a factor (as a scale not mapped back would)."""
        path = original(*args, **kwargs)
        return path._replace(distortion=path.distortion * 2, objective=path.objective * 2)

    # the old statements held here: the last temperature is the hard one, objective = -J
    monkeypatch.setattr(variant_study_module, "anneal_variant", unmapped)
    _, records, failures = _run("variant_study", TINY_VARIANT)
    (r,) = records.values()
    assert r.anneal_temperature[-1] == r.hard
    assert r.anneal_objective[-1] == -r.anneal_distortion[-1]
    assert len(failures) == 1 and "hard stage records J" in failures[0], failures
    (r,) = unmutated.values()
    assert r.anneal_distortion[-1] == pytest.approx(r.anneal_hard_recomputed, rel=1e-13)


def test_variant_study_statement_is_a_sentence_about_the_study():
    statement = _statement("variant_study")
    assert statement.startswith("Verified: the bound at every point")
    assert "failed" not in statement and "empty when" not in statement


# updates: separated mixture, 100 rows, 30 grid points, 2 starts
TINY_UPDATES = {"datasets": ("separated",), "n_samples": 100, "n_sigma2": 30, "n_starts": 2}


def test_updates_counts_only_points_where_the_bound_can_fail(monkeypatch):
    config, records, failures = _run("updates", TINY_UPDATES)
    assert failures == []
    original = gl.study.update_gap

    def off_by_rounding(X, means, sigma2):
        """The gap plus 100 round_tol wherever it is above rounding (soft points only).

        Past the one-hot threshold nothing changes, and the error is below the old slack
        1e4 eps max|x| (255 round_tol at K D = 6); it passed the old check.
        """
        gap = original(X, means, sigma2)
        scale = jnp.max(jnp.abs(X)) * jnp.sqrt(means.size)
        round_tol = 16 * jnp.finfo(X.dtype).eps * scale
        return gap + jnp.where(gap > round_tol, 100 * round_tol, 0.0)

    monkeypatch.setattr(gl.study, "update_gap", off_by_rounding)
    _, _, mutated = _run("updates", TINY_UPDATES)
    assert any("update bound violated at" in f and "where it can fail" in f for f in mutated)

    (r,) = records.values()  # the unmutated run: what it counts
    vacuous = ~np.isfinite(r.bound) | (r.bound <= r.round_tol)
    assert np.any(np.isinf(r.bound)) and np.any(np.isfinite(r.bound) & vacuous)
    np.testing.assert_array_equal(r.bound_can_fail, ~vacuous)
    assert r.held.size == np.sum(~vacuous) < r.gap.size and r.held.all()
    summary = registry()["updates"].summarize(config, records)
    n = int(np.sum(~vacuous))
    assert f"held at {n}/{n} (start, sigma2) points where it can fail" in summary
    assert f"({int(vacuous.sum())} of {r.gap.size} vacuous" in summary


def test_updates_slack_is_the_rounding_it_absorbs():
    round_tol = 1.7e-14  # the quick separated set's 16 eps max|x| sqrt(KD)
    # the audit's one-ulp excess without a slack: gap 2.2e-16 against a bound of 1.7e-16
    assert updates_module.within_bound(np.array(2.2e-16), np.array(1.7e-16), round_tol)
    bound = np.array([np.inf, 1e-15, round_tol, 2 * round_tol, 1.0])
    can_fail = updates_module.bound_can_fail(bound, round_tol)
    np.testing.assert_array_equal(can_fail, [False, False, False, True, True])
    # a gap of a few round_tol over a bound of 1 fails: the old slack (1e4 eps max|x|, 25 to
    # 250 round_tol) let it pass
    gap = np.array([0.5, 1.0 + 3 * round_tol])
    np.testing.assert_array_equal(
        updates_module.within_bound(gap, np.ones(2), round_tol), [True, False]
    )


# trajectories: overlapping mixture, 100 rows, 3 starts, 40 grid points (one start's sigma2* is
# 6.9 times its predicted one-hot bound, so EM at 10 sigma2 misses Lloyd's partition below it)
TINY_TRAJECTORIES = {
    "datasets": ("overlapping",),
    "n_samples": 100,
    "n_restarts": 3,
    "n_sigma2": 40,
    "n_path_steps": 2,
    "max_iter": 50,
}


def test_trajectories_fails_when_em_runs_at_ten_times_its_sigma2(monkeypatch):
    config, records, failures = _run("trajectories", TINY_TRAJECTORIES)
    assert failures == []
    (r,) = records.values()
    # the prediction is tested: the grid reaches below it, and sigma2* lies above it
    assert np.all(r.n_below_prediction > 0) and np.all(r.equal_below_prediction)
    assert np.all(r.sigma2_star >= r.sigma2_onehot)
    eps = np.finfo(np.float64).eps
    expected = r.lloyd_path_delta_min / (2 * np.log(r.n * (r.k - 1) / eps))
    np.testing.assert_allclose(r.sigma2_onehot, expected, rtol=1e-12)
    summary = registry()["trajectories"].summarize(config, records)
    assert "up to the predicted one-hot bound" in summary and "in 3/3 restarts where" in summary

    original = gl.em
    # the audit's mutation: every soft fit at 10 sigma2 (sigma2 = 0 stays exact); it passed the
    # old check, which asked only for agreement at the smallest positive grid point
    monkeypatch.setattr(gl, "em", lambda X, m, s, **kw: original(X, m, s * 10.0, **kw))
    _, mutated, failures = _run("trajectories", TINY_TRAJECTORIES)
    assert np.all(mutated["overlapping"].sigma2_star > 0)  # the old statement still held
    assert any("below the predicted one-hot bound" in f for f in failures), failures


# loglik: the separated mixture, 60 rows, 12 grid points
TINY_LOGLIK = {"datasets": ("separated",), "n_samples": 60, "n_sigma2": 12}


def test_loglik_fails_when_ltilde_is_evaluated_at_a_wrong_sigma2(monkeypatch):
    config, records, failures = _run("loglik", TINY_LOGLIK)
    assert failures == []
    (r,) = records.values()
    assert r.ltilde_matches.all()
    np.testing.assert_allclose(r.ltilde, r.ltilde_float64, rtol=1e-12, atol=1e-12 * r.J)
    # vacuous rate points are not counted as held
    vacuous = ~(r.rate_bound > r.slack)
    assert vacuous.any() and r.rate_held.size == np.sum(~vacuous) and r.rate_held.all()
    summary = registry()["loglik"].summarize(config, records)
    n = int(np.sum(~vacuous))
    assert f"exponential rate at {n}/{n} points where it can fail" in summary

    original = gl.study.scaled_log_likelihood
    # the audit's mutation: L~ at 1.02 sigma2; bound 2 and the rate bound still hold
    monkeypatch.setattr(gl.study, "scaled_log_likelihood", lambda X, m, s: original(X, m, s * 1.02))
    _, mutated, failures = _run("loglik", TINY_LOGLIK)
    (m,) = mutated.values()
    assert m.held.all() and m.rate_held.all()
    assert len(failures) == 1 and "differs from its float64 recomputation" in failures[0], failures
