"""The variant-limit experiment runs on the experiment framework and verifies its statements."""

import dataclasses
import re

import numpy as np
import pytest
from user_variant import forget_module, write_module

from gmmlimit import cli
from gmmlimit.experiments import (
    Progress,
    list_runs,
    load_run,
    make_config,
    registry,
    run_experiment,
)


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


# --- variant_study: the limit study of any variant, from the command line -----------------------

TINY = ["n_samples=60", "dim=2", "k=3", "n_temp=4", "n_anneal=2", "max_iter=8"]

USER_EXTRA = """
not_a_variant = 3
bare = exponential._replace(init=None, temperature=None, log_odds_gap=None)
"""


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    folder = tmp_path / "pkg"
    folder.mkdir()
    name = write_module(folder, USER_EXTRA)
    monkeypatch.syspath_prepend(str(folder))
    yield name
    forget_module(name)


def _run_cli(tmp_path, variant: str, sets: list[str]) -> tuple[int, object]:
    results = tmp_path / "results"
    args = ["run", "variant_study", "--variant", variant, "--results", str(results), "--no-bar"]
    rc = cli.main([*args, *(a for item in sets for a in ("--set", item))])
    runs = list_runs(results, "variant_study")
    return rc, load_run(results, "variant_study", runs[-1]["run_id"]) if runs else None


def _draw(tmp_path, run, capsys) -> str:
    out = tmp_path / "figures"
    args = ["figures", "--results", str(tmp_path / "results"), "--out", str(out), "--quick"]
    rc = cli.main([*args, "--run", run.run_id])
    printed = capsys.readouterr().out
    assert rc == 3  # the other figures' experiments were not run here
    assert f"figure variant_study: {out / 'variant_study.pdf'}" in printed
    assert (out / "variant_study.png").stat().st_size > 0
    return (out / "index.md").read_text()


def test_variant_study_cli_builtin_gamma_and_its_figure(tmp_path, capsys):
    # the quick setting: in the whole suite its programs are compiled by `reproduce` already
    rc, run = _run_cli(tmp_path, "gamma", [])
    assert rc == 0
    assert run.meta["variant"] == {
        "spec": "gamma",
        "name": "gamma",
        "builtin": True,
        "temperature": "beta",
        "hard": "inf",
    }
    assert run.meta["check_failures"] == []
    r = run.records["gamma"]
    assert r.data == "positive" and r.temperature_name == "beta" and r.hard == np.inf
    assert np.all(r.bound_holds) and r.resp_gap[0] > 1e-3
    assert np.all(np.diff(r.temperature) > 0)  # toward beta = inf
    assert abs(r.objective_gap[-1]) < abs(r.objective_gap[0])
    assert r.anneal_objective[-1] == pytest.approx(-r.anneal_distortion[-1], rel=1e-12)
    index = _draw(tmp_path, run, capsys)
    assert "Variant: `gamma` (given as `gamma`), temperature beta" in index


def test_variant_study_cli_user_variant_module_attr(tmp_path, capsys, user_module):
    rc, run = _run_cli(tmp_path, f"{user_module}:exponential", TINY)
    assert rc == 0
    info = run.meta["variant"]
    assert info["spec"] == "my_variants:exponential" and info["builtin"] is False
    assert info["name"] == "exponential" and len(info["source_sha256"]) == 64
    r = run.records["my_variants-exponential"]
    # auto data: the first generator the variant's check_data accepts (no negative values)
    assert r.variant == "exponential" and r.data == "positive"
    assert np.all(r.bound_holds) and run.meta["check_failures"] == []
    assert "Variant: `exponential` (given as `my_variants:exponential`)" in _draw(
        tmp_path, run, capsys
    )


def test_a_user_variants_provenance_covers_the_helpers_it_imports(tmp_path, monkeypatch):
    # a run resumes only on the same variant code: a helper module that the variant's module
    # imports from its folder counts too (before: only the module's own source was hashed)
    from gmmlimit.experiments.variant_study import VariantStudyConfig, variant_provenance

    folder = tmp_path / "pkg2"
    folder.mkdir()
    (folder / "my_helpers.py").write_text("SCALE = 1.0\n")
    name = write_module(folder, "\nfrom my_helpers import SCALE\n", name="my_variants_h")
    monkeypatch.syspath_prepend(str(folder))
    config = VariantStudyConfig(variant=f"{name}:exponential")
    try:
        before = variant_provenance(config)["variant"]
        forget_module(name)
        forget_module("my_helpers")
        (folder / "my_helpers.py").write_text("SCALE = 2.0\n")
        after = variant_provenance(config)["variant"]
    finally:
        forget_module(name)
        forget_module("my_helpers")
    assert before["source_sha256"] == after["source_sha256"]  # the module itself is unchanged
    assert before["imported_sha256"] != after["imported_sha256"]


def test_variant_study_check_catches_a_broken_bound():
    from gmmlimit.experiments import make_config

    spec = registry()["variant_study"]
    config = make_config(spec, {}, quick=True)
    rec = dataclasses.replace(
        _fake_record(), bound_holds=np.array([True, False]), update_gap=np.array([1.0, 2.0])
    )
    failures = spec.check(config, {"v": rec})
    assert any("bound violated at 1" in f for f in failures)
    assert any("update gap" in f for f in failures)
    assert spec.check(config, {"v": _fake_record()}) == []
    # a hard stage whose recorded J is not that of its final parameters
    wrong = dataclasses.replace(_fake_record(), anneal_hard_recomputed=3.5)
    assert any("recomputed at its final parameters" in f for f in spec.check(config, {"v": wrong}))


def _fake_record():
    from gmmlimit.experiments.variant_study import VariantStudyRecord

    two = np.array([1.0, 1e-9])
    return VariantStudyRecord(
        variant="v",
        spec="v",
        data="d",
        temperature_name="beta",
        hard=np.inf,
        cost_scale=1.0,
        temperature=np.array([1.0, 2.0]),
        tau=np.array([1.0, 2.0]),
        resp_gap=two,
        bound=two,
        bound_holds=np.array([True, True]),
        objective_gap=-two,
        update_gap=two,
        fit_means_gap=two,
        fit_label_agreement=np.ones(2),
        n_iter=np.ones(2, int),
        hard_objective=-3.0,
        anneal_tau=np.array([1.0]),
        anneal_temperature=np.array([1.0, np.inf]),
        anneal_objective=np.array([-2.0, -3.0]),
        anneal_distortion=np.array([2.5, 3.0]),
        anneal_n_distinct=np.array([1, 2]),
        anneal_means=np.zeros((2, 2, 1)),
        anneal_hard_recomputed=3.0,
    )


@pytest.mark.parametrize(
    ("variant", "message"),
    [
        ("nosuch", "unknown variant 'nosuch'; built in: "),
        ("no_such_module_xyz:v", "cannot import module 'no_such_module_xyz'"),
        ("my_variants:missing", "has no attribute 'missing'"),
        ("my_variants:not_a_variant", "is a int, not a gmmlimit Variant"),
        ("my_variants:bare", "has no init, temperature, log_odds_gap"),
        ("my_variants:", "package.module:attr"),
    ],
)
def test_variant_study_refuses_bad_variants_eagerly(variant, message, user_module):
    with pytest.raises(ValueError, match=re.escape(message)):
        make_config(registry()["variant_study"], {"variant": variant})


def test_variant_study_refuses_data_the_variant_refuses(tmp_path, capsys):
    path = tmp_path / "signed.npy"
    np.save(path, np.random.default_rng(0).normal(size=(30, 2)))
    rc = cli.main(
        [
            "run",
            "variant_study",
            "--variant",
            "gamma",
            "--data",
            str(path),
            "--results",
            str(tmp_path / "r"),
        ]
    )
    assert rc == 2 and "refuses the data 'signed'" in capsys.readouterr().err
    assert cli.main(["run", "loglik", "--variant", "gamma", "--results", str(tmp_path)]) == 2
    assert "--variant is not accepted" in capsys.readouterr().err


@dataclasses.dataclass(frozen=True)
class _Cfg:
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class _Rec:
    value: np.ndarray


class _StopAfterFirst(Progress):
    def __init__(self) -> None:
        super().__init__(enabled=False, messages=False)

    def advance(self, key: str, computed: bool) -> None:
        raise KeyboardInterrupt(f"simulated interruption after {key}")


def test_provenance_goes_to_meta_and_a_changed_one_never_resumes(tmp_path):
    """A spec's provenance (variant_study: the variant and its source hash) is in meta.json and
    in the run's hash: an interrupted run is resumed only while it is unchanged."""
    from gmmlimit.experiments import ExperimentSpec, sweep

    source = {"sha": "one"}
    computed = []

    def run(config, progress, resume=None):
        def point(key):
            computed.append(key)
            return _Rec(np.arange(2.0))

        return sweep(resume, ["a", "b"], point, progress, "points", _Rec)

    spec = ExperimentSpec(
        name="variant_study",  # a real module, for the code fingerprint
        config_type=_Cfg,
        record_type=_Rec,
        run=run,
        summarize=lambda c, r: "variant_study: fake",
        provenance=lambda c: {"variant": dict(source)},
    )
    with pytest.raises(KeyboardInterrupt):
        run_experiment(spec, _Cfg(), tmp_path, progress=_StopAfterFirst())
    source["sha"] = "two"  # the variant's code changed: the partial run is not continued
    run, _ = run_experiment(spec, _Cfg(), tmp_path, progress=Progress(False))
    assert computed == ["a", "a", "b"] and run.meta["variant"] == {"sha": "two"}
    with pytest.raises(KeyboardInterrupt):
        run_experiment(spec, _Cfg(), tmp_path, progress=_StopAfterFirst())
    run_experiment(spec, _Cfg(), tmp_path, progress=Progress(False))  # unchanged: resumed
    assert computed == ["a", "a", "b", "a", "b"]
