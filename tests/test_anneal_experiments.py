"""The annealing experiments' configs and helpers (no sweeps are run here)."""

import numpy as np
import pytest

import gmmlimit as gl
from gmmlimit.experiments import make_config, registry
from gmmlimit.experiments._anneal_common import group_critical, two_phase_schedule
from gmmlimit.paper_figures import registry as figure_registry

NAMES = ("phase_transition", "anneal_vs_lloyd", "convergence_rate", "em_vs_gradient")


def test_experiments_and_figures_are_registered():
    specs = registry()
    for name in NAMES:
        assert name in specs
        make_config(specs[name], {}, quick=True)  # the quick setting is valid
        make_config(specs[name], {}, quick=False)
    figures = figure_registry()
    for fig in ("bifurcation", "distinct_centres", "rate_vs_sigma2", "em_vs_gradient_cost"):
        assert set(figures[fig].needs) <= set(NAMES)


@pytest.mark.parametrize(
    ("name", "overrides", "match"),
    [
        ("phase_transition", {"top": "0.9"}, "top > 1"),
        ("phase_transition", {"perturbation": "0.5"}, "below merge_tol"),
        ("phase_transition", {"datasets": "digits,nope"}, "unknown data set"),
        ("anneal_vs_lloyd", {"n_restarts": "0"}, "n_restarts"),
        ("anneal_vs_lloyd", {"datasets": "separated", "k": "500", "n_samples": "100"}, "exceeds N"),
        ("convergence_rate", {"bottom": "2.0"}, "top > 1 > bottom"),
        ("em_vs_gradient", {"sigma2_rel": "0.1,-1"}, "positive"),
        ("em_vs_gradient", {"adam_rates": "0"}, "adam_rates"),
    ],
)
def test_bad_configs_are_refused_before_work(name, overrides, match):
    with pytest.raises(ValueError, match=match):
        make_config(registry()[name], overrides, quick=True)


def test_two_phase_schedule_is_fine_then_coarse():
    s = two_phase_schedule(2.0, 1.3, 0.7, 11, 1e-3, 5)
    values = gl.study.schedule_values(s, 16)
    np.testing.assert_allclose(values[[0, 10, 15]], [2.6, 1.4, 2e-3], rtol=1e-6)
    ratios = values[1:] / values[:-1]
    np.testing.assert_allclose(ratios[:10], (0.7 / 1.3) ** 0.1, rtol=1e-6)
    np.testing.assert_allclose(ratios[10:], (1e-3 / 0.7) ** 0.2, rtol=1e-6)


def test_group_critical_of_the_collapsed_group_is_lambda_max():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 3)) * np.array([3.0, 1.0, 0.5])
    collapsed = np.tile(X.mean(0), (4, 1))
    lam = float(gl.critical_sigma2(X))
    assert group_critical(X, collapsed, 2.0 * lam, 1e-6) == pytest.approx(lam, rel=1e-10)
    # two far-apart singletons: no group of two or more, nothing left to split
    assert np.isnan(group_critical(X, X[[0, 1]], 1.0, 1e-9))
