"""variant_study's temperature grid is free of the data's units (defect s55: the grid's unit was
the mean hard cost per row, which for a -ln p divergence is negative on data of small spread,
refused with exit 2, and shifted by D ln c on data multiplied by c, so the same data in other
units were studied over another range of the limit).

The grid is now set by the mean log-odds gap g_n (runner-up minus best divergence, times beta),
which a common shift of the divergences does not move. Each study runs through the experiment's
Python entry (``make_config`` then ``run_experiment``) on 90 rows, D = 2, K = 3.
"""

import sys

import numpy as np
import pytest
from user_variant import forget_module, write_module

from gmmlimit import cli
from gmmlimit.experiments import Progress, make_config, registry, run_experiment

MODULE = "my_variants_scale"

NLL_EXTRA = '''

def nll_divergence(params, x):
    """-ln p of the exponential density (no term dropped): negative where the means are small."""
    ratio = jnp.matmul(x, (1.0 / params.means).T, precision=lax.Precision.HIGHEST)
    return ratio + jnp.sum(jnp.log(params.means), 1)[None, :]


exponential_nll = tempered_variant(
    "exponential_nll", divergence=nll_divergence, moments=moments, m_step=m_step,
    means=lambda p: p.means, validate=validate, init=init, check_data=check_positive_data,
)
'''

VARIANTS = ["diag", f"{MODULE}:exponential_nll"]
SMALL = {"k": 3, "n_temp": 4, "n_anneal": 2, "max_iter": 15}


def _data() -> np.ndarray:
    """A well-separated 3-cluster mixture of positive rows (90, 2)."""
    rng = np.random.default_rng(0)
    centres = np.array([[1.0, 1.0], [6.0, 1.5], [1.5, 6.0]])
    labels = np.repeat(np.arange(3), 30)
    return centres[labels] * rng.gamma(40.0, 1.0 / 40.0, size=(90, 2))


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """study(variant, scale) -> the run's record (each computed once per module)."""
    folder = tmp_path_factory.mktemp("variant_module")
    write_module(folder, NLL_EXTRA, name=MODULE)
    sys.path.insert(0, str(folder))
    cache = {}

    def run(variant: str, scale: float):
        if (variant, scale) not in cache:
            root = tmp_path_factory.mktemp("study")
            path = root / "data.npy"
            np.save(path, _data() * scale)
            spec = registry()["variant_study"]
            config = make_config(spec, {"variant": variant, "data": str(path), **SMALL}, quick=True)
            result, failures = run_experiment(
                spec, config, root, quick=True, progress=Progress(False)
            )
            assert failures == []
            (record,) = result.records.values()
            cache[variant, scale] = record
        return cache[variant, scale]

    yield run
    sys.path.remove(str(folder))
    forget_module(MODULE)


@pytest.mark.parametrize("variant", VARIANTS)
def test_data_of_small_spread_with_negative_divergences_are_studied(study, variant):
    # X * 0.05: every -ln p hard cost is negative (mean about -1.3 for diag); it used to be
    # refused with "the mean hard cost at the start is -1.29...; the grid needs a positive one"
    r = study(variant, 0.05)
    assert r.cost_scale > 0 and np.all(r.bound_holds)
    # the grid still runs from soft responsibilities to one-hot ones
    assert r.resp_gap[0] > 0.3 and r.resp_gap[-1] < 1e-6
    assert r.update_gap[-1] < 1e-3 * r.update_gap[0]


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_study_of_data_times_two_to_the_60_is_the_study_of_the_data(study, variant):
    # before: tau's unit held the D ln(2^60) shift of the hard cost, so at 2^60 the same grid of
    # tau stopped far from the hard limit (resp 0.037 at the coldest point against ~1e-40)
    unit, big = study(variant, 1.0), study(variant, 2.0**60)
    np.testing.assert_array_equal(big.tau, unit.tau)
    # the same range of the limit: equal responsibility gaps and bounds at every grid point
    for name in ("resp_gap", "bound"):
        a, b = getattr(unit, name), getattr(big, name)
        np.testing.assert_array_equal(a == 0, b == 0)
        np.testing.assert_allclose(np.log(b[b > 0]), np.log(a[a > 0]), rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(big.bound_holds, unit.bound_holds)
    # diag's reg_covar (1e-6, absolute) is the only term that does not scale: agreement to 1e-5
    np.testing.assert_allclose(big.temperature, unit.temperature, rtol=1e-5)
    np.testing.assert_allclose(big.cost_scale, unit.cost_scale, rtol=1e-5)
    np.testing.assert_allclose(big.objective_gap, unit.objective_gap, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(big.update_gap / 2.0**60, unit.update_gap, rtol=1e-4, atol=1e-9)
    np.testing.assert_array_equal(big.fit_label_agreement, unit.fit_label_agreement)
    assert unit.resp_gap[0] > 0.3 and unit.resp_gap[-1] < 1e-6


def test_data_the_model_cannot_tell_apart_are_refused_with_exit_2(tmp_path, capsys):
    # diag at 1e-30: its variance floor reg_covar (1e-6) swamps the data's spread, every row is
    # equally far from every starting component in float64: no temperature moves anything
    path = tmp_path / "tiny.npy"
    np.save(path, _data() * 1e-30)
    args = ["run", "variant_study", "--variant", "diag", "--data", str(path), "--set", "k=3"]
    rc = cli.main([*args, "--results", str(tmp_path / "results"), "--no-bar"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "no row has a positive finite log-odds gap" in err
    assert "0 of 90 rows" in err and "reg_covar" in err
