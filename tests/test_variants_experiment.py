"""The variant-limit experiment runs on the experiment framework and verifies its statements."""

import numpy as np
import pytest

from gmmlimit.experiments import Progress, make_config, registry, run_experiment


def test_variant_limits_quick_run_passes_its_checks(tmp_path):
    spec = registry()["variant_limits"]
    # Poisson only, at the shapes of tests/variant_cases.py: the fits reuse their compilation
    cfg = make_config(spec, {"variants": "poisson"}, quick=True)
    run, failures = run_experiment(spec, cfg, tmp_path, quick=True, progress=Progress(False))
    assert failures == []
    r = run.records["poisson"]
    assert np.all(r.bound_holds)
    assert r.resp_gap[0] > 1e-2 and r.resp_gap[-1] == 0.0
    assert np.all(np.diff(r.resp_gap) <= 0)
    assert run.summary.startswith("variant_limits:")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"variants": "gamma"}, "variants"),
        ({"beta_min": 0.0}, "beta_min"),
        ({"k": 1}, "k must be"),
    ],
)
def test_variant_limits_rejects_bad_configs(overrides, message):
    with pytest.raises(ValueError, match=message):
        make_config(registry()["variant_limits"], overrides)
