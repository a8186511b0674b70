"""Experiments: quick runs verify their statements; determinism, resume, bad configs, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

import gmmlimit as gl
from gmmlimit import cli, experiments
from gmmlimit.experiments import Progress, load_latest, make_config, registry, run_experiment
from gmmlimit.experiments._common import load_data
from gmmlimit.experiments._config import parse_set

NAMES = ("responsibilities", "loglik", "updates", "trajectories", "precision")
_CACHE: dict = {}


def quick_run(factory) -> dict:
    """Run `gmmlimit reproduce --quick` once per test session (shared by the figure tests)."""
    if "root" not in _CACHE:
        root = factory.mktemp("quick")
        results, figures = root / "results", root / "figures"
        paper = root / "paper" / "gmmlimit.pdf"
        args = ["reproduce", "--quick", "--results", str(results), "--out", str(figures)]
        rc = cli.main([*args, "--no-bar", "--paper", str(paper)])
        _CACHE.update(root=root, results=results, figures=figures, paper=paper, rc=rc)
    return _CACHE


@pytest.fixture(scope="session")
def quick(tmp_path_factory):
    return quick_run(tmp_path_factory)


def test_registry_lists_every_experiment():
    assert set(NAMES) <= set(registry())


def test_reproduce_quick_passes_and_indexes_every_run(quick):
    assert quick["rc"] == 0
    assert quick["paper"].read_bytes().startswith(b"%PDF")  # reproduce also typesets the paper
    index = json.loads((quick["results"] / "index.json").read_text())["runs"]
    for name in NAMES:
        runs = [r for r in index if r["name"] == name]
        assert len(runs) == 1 and runs[0]["complete"] and runs[0]["quick"]
        folder = quick["results"] / runs[0]["path"]
        for f in ("config.json", "meta.json", "scalars.json", "records.npz", "summary.txt"):
            assert (folder / f).stat().st_size > 0
        meta = json.loads((folder / "meta.json").read_text())
        assert meta["seed"] == 0 and meta["quick"] and meta["x64"]
        assert meta["overrides"] == {} and meta["default_config"] and meta["data"] is None
        if jax.default_backend() == "cpu":  # the compiled kernel or pure JAX, and why
            assert meta["estep"] == gl.cpu_kernel_status()
        else:
            assert meta["estep"].startswith("pure JAX")
        assert meta["check_failures"] == []
        assert {"jax", "numpy", "gmmlimit"} <= set(meta["versions"])
        assert meta["device"]["platform"]
        assert not list(folder.parent.glob("*.partial"))


@pytest.mark.parametrize("name", NAMES)
def test_check_passes_on_loaded_results(quick, name):
    run = load_latest(name, quick["results"], quick=True)
    spec = registry()[name]
    config = make_config(spec, run.config)
    assert spec.check(config, run.records) == []
    assert spec.summarize(config, run.records) == run.summary
    assert run.summary.startswith(f"{name}:")


def test_responsibilities_bound_and_slope(quick):
    run = load_latest("responsibilities", quick["results"])
    for name, r in run.records.items():
        assert np.all(r.held)
        assert r.sigma2[-1] == 0 and r.max_gap[-1] == 0
        assert np.sum(r.fit_mask) >= 3
        ratio = r.slope / r.slope_predicted
        assert abs(ratio - 1) <= 0.05, (name, ratio)
        # recheck bound 1 independently at one grid point in the fit regime
        X, _, _ = load_data(make_config(registry()["responsibilities"], {}, quick=True), name)
        s2 = r.sigma2[np.nonzero(r.fit_mask)[0][0]]
        gap = np.asarray(gl.study.responsibility_gap(X, r.means, s2))
        bound = np.asarray(gl.study.responsibility_bound(X, r.means, s2))
        assert np.all(gap <= bound[:, None] * (1 + 1e-12))


def test_loglik_bound_two(quick):
    for r in load_latest("loglik", quick["results"]).records.values():
        lt, J, lower = r.ltilde, r.J, r.lower
        assert np.all(lt <= J * (1 + 1e-12)) and np.all(lt >= lower - 1e-12 * J)
        assert lt[-1] == pytest.approx(J, rel=1e-12)
        assert np.all(J - lt <= r.rate_bound * (1 + 1e-12) + 1e-12 * J)
        # the uncorrected -2 sigma2 l is far from J somewhere on the grid: the correction matters
        unc = r.uncorrected[:-1]
        assert np.max(np.abs(unc - J) / J) > 0.1


def test_updates_bound_and_exact_limit(quick):
    for r in load_latest("updates", quick["results"]).records.values():
        assert np.all(r.held)
        assert np.all(r.gap[:, -1] <= r.round_tol)
        assert r.round_tol < 1e-11
        assert np.any(r.gap[:, 0] > 1e-3)  # not trivially zero


def test_trajectories_partition_equal_below_reported_sigma2(quick):
    records = load_latest("trajectories", quick["results"]).records
    cfg = make_config(registry()["trajectories"], {}, quick=True)
    for name, r in records.items():
        stars = r.sigma2_star
        assert np.all(stars > 0)
        assert np.all(r.zero_equal_labels) and np.all(r.zero_equal_means)
        assert np.all(r.zero_equal_n_iter)
        X, _, _ = load_data(cfg, name)
        # independent check off the grid: below sigma2*, EM ends at Lloyd's partition exactly
        m0, star = r.init[0], float(stars[0])
        lloyd = gl.kmeans(X, m0, max_iter=cfg.max_iter, tol=cfg.tol)
        for s2 in (star * 0.7, star * 0.05):
            em = gl.em(X, m0, s2, max_iter=cfg.max_iter, tol=cfg.tol)
            np.testing.assert_array_equal(np.asarray(em.labels), np.asarray(lloyd.labels))
        assert np.all(r.ari[:, -1] == 1.0)


def test_precision_thresholds_and_no_nan(quick):
    records = load_latest("precision", quick["results"]).records
    for record in records.values():
        for dtype, thr in (("float32", 87.34), ("float64", 708.40)):
            p = record.by_dtype[dtype]
            assert np.all(p.stable_nonfinite_rows == 0)
            assert np.all(p.fit_finite)
            assert p.x_soft_max <= thr * 1.001 <= p.x_hard_min * 1.002
            assert p.naive_nan_onset > 0
            assert p.naive_nan_rows[-1] == p.delta.size
        # float32 hardens earlier (larger sigma2) than float64, by about 708 / 87
        ratio = record.by_dtype["float32"].onehot_onset / record.by_dtype["float64"].onehot_onset
        assert 6 < ratio < 10


def test_same_seed_gives_identical_numbers(quick, tmp_path):
    spec = registry()["responsibilities"]
    cfg = make_config(spec, {"datasets": "overlapping"}, quick=True)
    run, failures = run_experiment(spec, cfg, tmp_path, quick=True, progress=Progress(False))
    assert failures == []
    mine = run.records["overlapping"]
    ref = load_latest("responsibilities", quick["results"]).records["overlapping"]
    for field in ("sigma2", "max_gap", "mean_gap", "max_bound", "delta", "snap_resp"):
        np.testing.assert_array_equal(getattr(mine, field), getattr(ref, field))
    assert mine.slope == ref.slope


class _Interrupt(Progress):
    def __init__(self, after: int) -> None:
        super().__init__(enabled=False)
        self.after, self.seen = after, 0

    def advance(self, key: str, computed: bool) -> None:
        self.seen += computed
        if self.seen >= self.after:
            raise KeyboardInterrupt(f"simulated interruption after {key}")


def test_interrupted_sweep_resumes_from_finished_points(quick, tmp_path):
    spec = registry()["updates"]
    cfg = make_config(spec, {"datasets": "separated,overlapping,anisotropic"}, quick=True)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(spec, cfg, tmp_path, quick=True, progress=_Interrupt(2))
    (partial,) = (tmp_path / "updates").glob("*.partial")
    assert sorted(p.name for p in (partial / "points").glob("*.npz")) == [
        "overlapping.npz",
        "separated.npz",
    ]
    index = json.loads((tmp_path / "index.json").read_text())["runs"]
    assert [r["complete"] for r in index] == [False]
    with pytest.raises(FileNotFoundError, match="updates"):
        load_latest("updates", tmp_path, default_config=None)

    class Counting(Progress):
        def __init__(self):
            super().__init__(enabled=False)
            self.computed = []

        def advance(self, key, computed):
            self.computed.append((key, computed))

    progress = Counting()
    run, failures = run_experiment(spec, cfg, tmp_path, quick=True, progress=progress)
    assert failures == []
    expected = [("separated", False), ("overlapping", False), ("anisotropic", True)]
    assert progress.computed == expected
    assert run.meta["points_resumed"] == 2 and run.meta["points_computed"] == 1
    assert run.path.name == partial.name[: -len(".partial")]
    assert not partial.exists()
    ref = load_latest("updates", quick["results"]).records
    for name in ("separated", "overlapping", "anisotropic"):
        np.testing.assert_array_equal(run.records[name].gap, ref[name].gap)
    assert json.loads((tmp_path / "index.json").read_text())["runs"][0]["complete"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"nonsense": 1}, "unknown config key 'nonsense'"),
        ({"sigma2_min": "-1e-3"}, "sigma2_min must be a positive"),
        ({"sigma2_max": -2.0}, "sigma2_max must be a positive"),
        ({"k": 50, "n_samples": 20}, "K=50 exceeds N=20"),
        ({"digits_k": 30, "digits_n": 20}, "K=30 exceeds N=20 on data set 'digits'"),
        ({"n_sigma2": "many"}, "needs an integer"),
        ({"datasets": "separated,mnist"}, "unknown data set 'mnist'"),
        # cast to the grid's dtype, these held inf or zeros (and the run failed after starting)
        ({"dtype": "float32", "sigma2_max": 1e39}, "sigma2_max=1e\\+39 is not a normal float32"),
        ({"dtype": "float32", "sigma2_min": 1e-50}, "sigma2_min=1e-50 is not a normal float32"),
        ({"sigma2_max": 1e-320}, "sigma2_max=1e-320 is not a normal float64"),
        # n_samples aborted inside XLA (no Python error); n_sigma2 raised MemoryError after the
        # run had started
        ({"n_samples": 10**12}, r"n_samples \* dim = 2000000000000 values .* would not fit"),
        ({"n_sigma2": 10**12}, r"n_sigma2 = 1000000000000 values .* would not fit"),
    ],
)
def test_bad_config_refused_before_any_work(tmp_path, overrides, message):
    for name in ("responsibilities", "trajectories"):
        with pytest.raises(ValueError, match=message):
            make_config(registry()[name], overrides, quick=True)
    args = ["run", "trajectories", "--quick", "--results", str(tmp_path / "r")]
    for key, value in overrides.items():
        args += ["--set", f"{key}={value}"]
    assert cli.main(args) == 2
    assert not (tmp_path / "r").exists()  # nothing was computed or written


def test_a_key_given_twice_is_refused(tmp_path, capsys):
    # the last value won without a word
    args = ["run", "loglik", "--quick", "--results", str(tmp_path / "r")]
    assert cli.main([*args, "--set", "n_sigma2=10", "--set", "n_sigma2=5"]) == 2
    assert "--set gives 'n_sigma2' twice" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--set gives 'n_sigma2' twice"):
        parse_set(["n_sigma2=10", " n_sigma2 =5"])
    path = tmp_path / "c.json"
    path.write_text('{"k": 2, "k": 3}')
    assert cli.main([*args, "--config", str(path)]) == 2
    assert f"config file {path} gives 'k' twice" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_a_data_path_that_is_a_folder_is_named_so(tmp_path):
    folder = tmp_path / "rows.npy"
    folder.mkdir()
    with pytest.raises(ValueError, match="is a folder, not a file"):  # was: "does not exist"
        make_config(registry()["updates"], {"data": str(folder), "datasets": "rows"})


def test_out_of_memory_is_an_error_message_not_a_traceback(tmp_path, monkeypatch, capsys):
    def exhausted(*args, **kwargs):
        raise MemoryError("Unable to allocate 7.28 TiB")

    monkeypatch.setattr(cli, "_run_many", exhausted)
    assert cli.main(["run", "loglik", "--quick", "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "gmmlimit: error: out of memory: Unable to allocate 7.28 TiB" in err
    assert "Traceback" not in err


def test_config_file_and_set_are_typed(tmp_path):
    spec = registry()["trajectories"]
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"datasets": ["digits"], "tol": 1e-6, "n_restarts": 2}))
    cfg = make_config(spec, {**json.loads(path.read_text()), "n_sigma2": "7"}, quick=True)
    assert cfg.datasets == ("digits",) and cfg.tol == 1e-6 and cfg.n_restarts == 2
    assert cfg.n_sigma2 == 7 and cfg.n_samples == 300  # quick value kept
    assert cli.main(["run", "trajectories", "--config", str(tmp_path / "missing.json")]) == 2


def test_float64_needs_x64(tmp_path):
    spec = registry()["loglik"]
    cfg = make_config(spec, {"datasets": "separated"}, quick=True)
    jax.config.update("jax_enable_x64", False)
    try:
        with pytest.raises(ValueError, match="x64"):
            run_experiment(spec, cfg, tmp_path, progress=Progress(False))
    finally:
        jax.config.update("jax_enable_x64", True)
    assert not (tmp_path / "loglik").exists()


def test_missing_results_name_the_experiment(tmp_path):
    with pytest.raises(FileNotFoundError, match="gmmlimit run trajectories"):
        load_latest("trajectories", tmp_path)


def test_cli_list(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for name in NAMES:
        assert name in out
    assert "fig1_responsibilities" in out


def test_enable_x64_is_idempotent():
    experiments.enable_x64()
    experiments.enable_x64()
    assert jax.config.jax_enable_x64


def test_reproduce_exit_status_reports_failed_statements(tmp_path, monkeypatch):
    import dataclasses

    spec = registry()["loglik"]
    failing = dataclasses.replace(spec, check=lambda config, records: ["forced failure"])
    monkeypatch.setattr(experiments, "registry", lambda: {"loglik": failing})
    rc = cli.main(
        [
            "run",
            "loglik",
            "--quick",
            "--set",
            "datasets=separated",
            "--results",
            str(tmp_path / "r"),
        ]
    )
    assert rc == 1
    meta = next(Path(tmp_path / "r" / "loglik").glob("*/meta.json"))
    assert json.loads(meta.read_text())["check_failures"] == ["forced failure"]


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("seed", "99999999999999999999999", "out of the int64 range"),  # OverflowError before
        ("n_samples", "99999999999999999999999", "out of the int64 range"),  # TypeError before
        ("top", "inf", "needs a finite number"),  # refused only after the run had started
        ("kick", "-inf", "needs a finite number"),
    ],
)
def test_out_of_range_config_values_are_refused_before_any_work(tmp_path, key, value, message):
    args = ["run", "phase_transition", "--set", f"{key}={value}", "--results", str(tmp_path)]
    if key == "kick":
        args[1] = "convergence_rate"
    assert cli.main([*args, "--no-bar"]) == 2
    assert not any(tmp_path.iterdir())  # no .partial folder, no index entry
    with pytest.raises(ValueError, match=message):
        make_config(registry()[args[1]], {key: value}, quick=True)


def test_a_given_sigma2_min_is_used_as_given_or_refused():
    # a sigma2_min above a tenth of the grid's top was replaced by top / 10, silently
    from gmmlimit.experiments._common import sigma2_grid

    X = np.random.default_rng(0).normal(size=(60, 2))
    means = X[:3]
    top = 2.0 * float(gl.critical_sigma2(X))
    spec = registry()["loglik"]
    grid = sigma2_grid(
        make_config(spec, {"sigma2_min": top / 3, "n_sigma2": 5}, quick=True), X, means
    )
    assert grid[0] == pytest.approx(top) and grid[-2] == pytest.approx(top / 3) and grid[-1] == 0
    with pytest.raises(ValueError, match="must lie below the grid's top"):
        sigma2_grid(make_config(spec, {"sigma2_min": 2 * top}, quick=True), X, means)


def test_scalars_json_is_strict_json_when_a_scalar_is_not_finite(tmp_path):
    """A slope NaN (grid too coarse) or an infinite scalar is named in scalars.json, kept in npz."""
    import dataclasses

    from gmmlimit.experiments._store import write_run_files

    @dataclasses.dataclass(frozen=True)
    class Record:
        slope: float
        low: float
        high: float
        count: int

    write_run_files(tmp_path, {"a": Record(float("nan"), -np.inf, np.inf, 3)}, "s", {"m": 1})

    def refuse(word):
        raise AssertionError(f"scalars.json holds the bare word {word}, which is not JSON")

    scalars = json.loads((tmp_path / "scalars.json").read_text(), parse_constant=refuse)
    assert scalars["records"]["a"] == {
        "slope": "NaN",
        "low": "-Infinity",
        "high": "Infinity",
        "count": 3,
    }
    arrays = np.load(tmp_path / "records.npz")
    assert np.isnan(arrays["a/slope"]) and arrays["a/high"] == np.inf and arrays["a/low"] == -np.inf


_INDEX_WRITER = """
import sys, time
from pathlib import Path
from gmmlimit.experiments._store import update_index
root, me = Path(sys.argv[1]), sys.argv[2]
(root / f"ready{me}").touch()
while not (root / "go").exists():
    time.sleep(0.001)
for j in range(100):
    update_index(root, {"name": "e" + me, "run_id": f"r{j}", "complete": True})
"""


ROOT = Path(__file__).resolve().parents[1]


def test_runs_finishing_at_once_in_two_processes_keep_every_index_entry(tmp_path):
    # the index's read, change and write hold a lock (before: 52 of 100 entries were kept)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    procs = [
        subprocess.Popen([sys.executable, "-c", _INDEX_WRITER, str(tmp_path), str(i)], env=env)
        for i in range(2)
    ]
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"ready{i}").exists() for i in range(2)):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
        time.sleep(0.01)
    (tmp_path / "go").touch()
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    runs = json.loads((tmp_path / "index.json").read_text())["runs"]
    assert len(runs) == 200


def _interrupt_loglik(tmp_path, monkeypatch) -> list[str]:
    """Run loglik by the CLI and interrupt it after one point; returns its arguments."""
    import dataclasses

    spec = registry()["loglik"]

    def interrupted_run(config, progress, resume=None):
        return spec.run(config, _Interrupt(1), resume=resume)

    # no --quick: run's default setting is the quick one, as for reproduce
    args = ["run", "loglik", "--set", "datasets=separated,overlapping", "--no-bar"]
    args += ["--results", str(tmp_path)]
    monkeypatch.setattr(
        experiments, "registry", lambda: {"loglik": dataclasses.replace(spec, run=interrupted_run)}
    )
    assert cli.main(args) == 130
    return args


def test_cli_interrupt_then_rerun_resumes(tmp_path, monkeypatch, capsys):
    args = _interrupt_loglik(tmp_path, monkeypatch)
    assert "rerun the same command to resume" in capsys.readouterr().err
    assert len(list((tmp_path / "loglik").glob("*.partial/points/*.npz"))) == 1
    monkeypatch.undo()
    assert cli.main(args) == 0
    captured = capsys.readouterr()
    assert "resumed 1/2 points" in captured.out
    assert "resuming" in captured.err and "1 finished point(s) kept" in captured.err
    (meta,) = (tmp_path / "loglik").glob("*/meta.json")
    meta = json.loads(meta.read_text())
    assert (meta["points_resumed"], meta["points_computed"]) == (1, 1)
    assert meta["quick"] and meta["overrides"] == {"datasets": ["separated", "overlapping"]}


def test_the_same_run_started_twice_is_refused_while_the_first_holds_it(
    tmp_path, monkeypatch, capsys
):
    # two identical commands at once shared one .partial folder: the second crashed at the end
    # (OSError: directory not empty) and left a broken folder. Now it is refused with exit 2.

    from gmmlimit.experiments._runner import _hold

    args = _interrupt_loglik(tmp_path, monkeypatch)  # an unfinished run, as another process
    monkeypatch.undo()  # would leave it
    (partial,) = (tmp_path / "loglik").glob("*.partial")
    other = _hold(partial, "loglik")  # the "other process" (its own open file description)
    capsys.readouterr()
    assert cli.main(args) == 2
    assert "already in progress" in capsys.readouterr().err
    other.close()
    assert cli.main(args) == 0  # once released, the run resumes and finishes
    (final,) = (tmp_path / "loglik").glob("*/meta.json")
    assert not (final.parent / ".lock").exists()


def test_changed_experiment_code_never_resumes_old_points(tmp_path, monkeypatch):
    from gmmlimit.experiments import _runner

    spec = registry()["loglik"]
    cfg = make_config(spec, {"datasets": "separated,overlapping"}, quick=True)
    monkeypatch.setattr(_runner, "code_fingerprint", lambda spec: "old-code")
    with pytest.raises(KeyboardInterrupt):
        run_experiment(spec, cfg, tmp_path, quick=True, progress=_Interrupt(1))
    monkeypatch.setattr(_runner, "code_fingerprint", lambda spec: "new-code")
    run, _ = run_experiment(spec, cfg, tmp_path, quick=True, progress=Progress(False))
    assert (run.meta["points_resumed"], run.meta["points_computed"]) == (0, 2)
    assert len(list((tmp_path / "loglik").glob("*.partial"))) == 1  # the old one, untouched


def test_run_and_reproduce_share_the_quick_default(capsys):
    for command in ("run", "reproduce"):
        with pytest.raises(SystemExit):
            cli.main([command, "--help"] + (["loglik"] if command == "run" else []))
        text = " ".join(capsys.readouterr().out.split())
        assert "--full" in text and "the default" in text
    # --full is accepted by run (here refused by the config, before any work)
    assert cli.main(["run", "loglik", "--full", "--set", "n_sigma2=1"]) == 2


def _own_data(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A (300, 2) file: the quick shapes, so every compilation of the session is reused."""
    X, _, _ = load_data(make_config(registry()["loglik"], {}, quick=True), "anisotropic")
    path = tmp_path / "cells.npy"
    np.save(path, X)
    return path, X


def test_own_data_file_runs_and_is_recorded(tmp_path, capsys):
    import hashlib
    import os

    path, X = _own_data(tmp_path)
    np.savez(tmp_path / "cells.npz", X=X, labels=np.zeros(len(X)))
    np.savetxt(tmp_path / "cells.csv", X, delimiter=",", header="a,b", comments="")
    from gmmlimit.experiments._data import load_file

    for other in ("cells.npz", "cells.csv"):
        np.testing.assert_array_equal(load_file(tmp_path / other), X)
    old = os.umask(0o027)
    try:
        args = ["run", "loglik", "--data", str(path), "--set", "k=3", "--no-bar"]
        assert cli.main([*args, "--results", str(tmp_path / "r")]) == 0
    finally:
        os.umask(old)
    (entry,) = experiments.list_runs(tmp_path / "r")
    run = experiments.load_run(tmp_path / "r", "loglik", entry["run_id"])
    assert list(run.records) == ["cells"] and run.records["cells"].n == 300
    assert run.meta["data"] == {
        "path": str(path.resolve()),
        "name": "cells",
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "shape": [300, 2],
        "dtype": "float64",
    }
    assert not run.default_config and run.overrides["data"] == str(path.resolve())
    # results are written with the user's umask (027 here), not mkstemp's 0600
    for name in ("meta.json", "records.npz", "summary.txt"):
        assert (run.path / name).stat().st_mode & 0o777 == 0o640, name
    assert next((run.path / "points").glob("*.npz")).stat().st_mode & 0o777 == 0o640
    with pytest.raises(FileNotFoundError):  # figures never draw it by default
        load_latest("loglik", tmp_path / "r")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (np.arange(5.0), "must hold an \\(N, D\\) array"),
        (np.array([[1.0, np.nan], [2.0, 3.0]]), "NaN or inf"),
        (np.array([["a", "b"], ["c", "d"]]), "real numbers"),
        (None, "does not exist"),
        # nanosecond timestamps near 2^62: float64 rounded rows 0 and 3 to one row
        (np.array([[2**62, 1], [2**62 + 1, 2], [2**62 + 3, 5], [2**62 + 7, 1]]), "past 2\\^53"),
    ],
)
def test_bad_data_file_is_refused_before_any_work(tmp_path, content, message):
    path = tmp_path / "bad.npy"
    if content is not None:
        np.save(path, content)
    with pytest.raises(ValueError, match=message):
        make_config(registry()["updates"], {"data": str(path), "datasets": "bad"})
    args = ["run", "updates", "--data", str(path), "--results", str(tmp_path / "r")]
    assert cli.main(args) == 2
    assert not (tmp_path / "r").exists()


def test_data_refused_by_an_experiment_without_data_sets(tmp_path, capsys):
    path, _ = _own_data(tmp_path)
    assert cli.main(["run", "variant_limits", "--data", str(path)]) == 2
    assert "--data is not accepted" in capsys.readouterr().err


def test_resume_refuses_a_changed_data_file(tmp_path):
    path, X = _own_data(tmp_path)
    spec = registry()["loglik"]
    cfg = make_config(spec, {"data": str(path), "datasets": "cells"}, quick=True)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(spec, cfg, tmp_path / "r", quick=True, progress=_Interrupt(1))
    np.save(path, X[::-1])  # same shape, new content
    with pytest.raises(ValueError, match="changed since the interrupted run"):
        run_experiment(spec, cfg, tmp_path / "r", quick=True, progress=Progress(False))
    np.save(path, X)  # restored: the run resumes its finished point
    run, _ = run_experiment(spec, cfg, tmp_path / "r", quick=True, progress=Progress(False))
    assert (run.meta["points_resumed"], run.meta["points_computed"]) == (1, 0)


def test_code_fingerprint_covers_gmmlimit_and_imported_experiment_modules(tmp_path, monkeypatch):
    import shutil

    from gmmlimit.experiments import _anneal_common, code_fingerprint

    specs = registry()
    before = {n: code_fingerprint(specs[n]) for n in ("loglik", "phase_transition")}
    # an edit anywhere in gmmlimit (a copy of it, here) changes every fingerprint
    core = tmp_path / "gmmlimit"
    shutil.copytree(Path(gl.__file__).parent, core, ignore=shutil.ignore_patterns("__pycache__"))
    with (core / "_anneal.py").open("a") as fh:
        fh.write("# edited\n")
    monkeypatch.setattr(gl, "__file__", str(core / "__init__.py"))
    assert code_fingerprint(specs["loglik"]) != before["loglik"]
    monkeypatch.undo()
    # an edit of _anneal_common changes the experiments that import it, and only those
    common = tmp_path / "_anneal_common.py"
    common.write_text(Path(_anneal_common.__file__).read_text() + "# edited\n")
    monkeypatch.setattr(_anneal_common, "__file__", str(common))
    assert code_fingerprint(specs["phase_transition"]) != before["phase_transition"]
    assert code_fingerprint(specs["loglik"]) == before["loglik"]


def test_csv_with_a_byte_order_mark_keeps_its_first_row(tmp_path):
    from gmmlimit.experiments._data import load_file

    bom = b"\xef\xbb\xbf"
    (tmp_path / "bom.csv").write_bytes(bom + b"1.0,2.0\n3.0,4.0\n5.0,7.0\n")
    (tmp_path / "head.csv").write_bytes(bom + b"a,b\n1.0,2.0\n3.0,4.0\n5.0,7.0\n")
    want = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 7.0]])
    np.testing.assert_array_equal(load_file(tmp_path / "bom.csv"), want)
    np.testing.assert_array_equal(load_file(tmp_path / "head.csv"), want)  # header still skipped


def test_file_system_errors_exit_2_naming_the_path(tmp_path, capsys, monkeypatch):
    from gmmlimit.experiments._data import load_file

    folder = tmp_path / "configs"
    folder.mkdir()
    assert cli.main(["run", "loglik", "--config", str(folder)]) == 2
    assert f"{folder}: Is a directory" in capsys.readouterr().err
    taken = tmp_path / "results.txt"
    taken.write_text("not a folder")
    args = ["run", "loglik", "--set", "datasets=separated", "--results", str(taken), "--no-bar"]
    assert cli.main(args) == 2
    err = capsys.readouterr().err  # before 2026-12-07: 'results.txt/loglik/<id>.partial: ...'
    assert f"--results {taken} is an existing file, not a folder" in err
    assert taken.read_text() == "not a folder"

    # the loader's "no finished run ..." is missing results (exit 3), not a bad path
    def missing(args):
        raise FileNotFoundError("no finished run of loglik; run `gmmlimit run loglik`")

    monkeypatch.setattr(cli, "_cmd_runs", missing)
    assert cli.main(["runs", "--results", str(tmp_path)]) == 3
    assert "gmmlimit run loglik" in capsys.readouterr().err
    # numpy's own refusals name the file too
    (tmp_path / "ragged.csv").write_text("1,2\n3,4,5\n")
    with pytest.raises(ValueError, match=r"ragged\.csv could not be read: the number of col"):
        load_file(tmp_path / "ragged.csv")
    np.save(tmp_path / "objects.npy", np.array([[1, "a"]], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match=r"objects\.npy could not be read: Object arrays"):
        load_file(tmp_path / "objects.npy")


def test_float32_tolerances_scale_with_eps():
    from gmmlimit.experiments.loglik import LoglikRecord
    from gmmlimit.experiments.variant_limits import VariantLimitsRecord

    def loglik_check(dtype, last, J):
        grid = np.array([1.0, 0.0], dtype)
        ok = np.ones(2, bool)
        record = LoglikRecord(
            grid, np.array([J, last], dtype), J, grid, grid, grid, ok, ok, 2, 2, 2
        )
        spec = registry()["loglik"]
        return spec.check(make_config(spec, {"dtype": dtype}, quick=True), {"s": record})

    # the failure seen on `--set dtype=float32`: 1.6 float32 ulp apart
    assert loglik_check("float32", 15.141481399536133, 15.141484260559082) == []
    assert loglik_check("float32", 15.14, 15.141484260559082)  # 1e-4 relative still fails
    assert loglik_check("float64", 15.0 * (1 + 2e-12), 15.0)  # float64 as strict as before

    def variant_check(dtype, update_gap, resp_gap=0.0):
        ones = np.ones(2)
        record = VariantLimitsRecord(
            ones, np.array([0.5, resp_gap]), ones, np.ones(2, bool),
            np.array([1.0, update_gap]), ones, ones, ones, 1.0, 87.0,
        )  # fmt: skip
        spec = registry()["variant_limits"]
        return spec.check(make_config(spec, {"dtype": dtype}, quick=True), {"vmf": record})

    assert variant_check("float32", 2.9147741997803678e-08) == []  # vmf's float32 rounding
    assert variant_check("float32", 1e-3) and variant_check("float32", 0.0, 1e-3)
    assert variant_check("float64", 2e-10) and variant_check("float64", 0.0, 2e-12)
    assert variant_check("float64", 5.3e-17) == []  # vmf's float64 rounding


def test_data_from_set_or_config_file_is_the_data_run_on(tmp_path, capsys):
    path, _ = _own_data(tmp_path)
    spec = registry()["loglik"]
    (tmp_path / "c.json").write_text(json.dumps({"data": str(path), "k": 3}))
    for given in (
        experiments.parse_set([f"data={path}"]),
        cli._load_config_file(tmp_path / "c.json"),
    ):
        overrides = cli._with_data(spec, given, None)
        assert overrides["datasets"] == "cells" and overrides["data"] == str(path.resolve())
        assert make_config(spec, overrides, quick=True).datasets == ("cells",)
    # a data file left out of the data sets named would be recorded but never used: refused
    args = ["run", "loglik", "--set", f"data={path}", "--set", "datasets=separated"]
    assert cli.main([*args, "--results", str(tmp_path / "r")]) == 2
    assert "is not in datasets" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("rows", "dtype", "message"),
    [
        (np.ones((6, 2)), "float64", "zero variance in float64"),
        (np.repeat([[0.0, 1.0], [2.0, 3.0]], 3, axis=0), "float64", "2 distinct row"),
        ([[1e20, 0.0], [-1e20, 1.0], [0.0, 3e20], [2e20, 1e20]], "float32", "rescale the data"),
        ([[1e-25, 0.0], [-1e-25, 0.0], [0.0, 3e-25], [0.0, 0.0]], "float32", "rescale the data"),
        ([[1e160, 0.0], [-1e160, 1.0], [0.0, 3.0], [2.0, 1e160]], "float64", "rescale the data"),
    ],
)
def test_unusable_data_refused_before_any_work(tmp_path, capsys, rows, dtype, message):
    path = tmp_path / "flat.npy"
    np.save(path, np.asarray(rows, dtype=np.float64))
    args = ["run", "phase_transition", "--data", str(path), "--set", "k=3", "--no-bar"]
    assert cli.main([*args, "--set", f"dtype={dtype}", "--results", str(tmp_path / "r")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
    # precision computes in float32 too, whatever dtype says
    if dtype == "float32":
        with pytest.raises(ValueError, match="in float32"):
            make_config(registry()["precision"], {"data": str(path), "datasets": "flat", "k": 3})


# --------------------------------------------------------------------------------------------
# Damaged result files, early refusals and the command line's edges
# --------------------------------------------------------------------------------------------


def test_a_damaged_point_file_is_named_before_any_work(tmp_path, monkeypatch, capsys):
    # a truncated point .npz stopped the resume with zipfile.BadZipFile (a traceback, exit 1);
    # now its digest (points/<key>.sha256) no longer matches it
    args = _interrupt_loglik(tmp_path, monkeypatch)
    monkeypatch.undo()
    (point,) = (tmp_path / "loglik").glob("*.partial/points/*.npz")
    point.write_bytes(point.read_bytes()[:100])
    capsys.readouterr()
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert f"{point} cannot be read (it was changed after it was computed" in err
    assert "delete that file and rerun the same command" in err and "Traceback" not in err
    assert point.stat().st_size == 100  # refused before any work: nothing recomputed
    point.unlink()  # as the message says: that point is computed again
    assert cli.main(args) == 0


def test_unreadable_run_files_are_named_with_what_to_do(tmp_path, capsys):
    from gmmlimit.experiments import UnreadableResultError, load_run

    args = ["run", "phase_transition", "--set", "datasets=separated", "--no-bar"]
    assert cli.main([*args, "--results", str(tmp_path)]) == 0
    (entry,) = experiments.list_runs(tmp_path)
    folder = tmp_path / entry["path"]
    records = folder / "records.npz"
    whole = records.read_bytes()
    # a deleted records.npz was "written by an older version of gmmlimit (format 2, need 2)"
    records.unlink()
    with pytest.raises(FileNotFoundError, match=r"records\.npz is missing, so the finished run"):
        load_run(tmp_path, "phase_transition", entry["run_id"])
    records.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(UnreadableResultError, match=r"records\.npz cannot be read") as info:
        load_run(tmp_path, "phase_transition", entry["run_id"])
    assert "delete that folder and rerun `gmmlimit run phase_transition`" in str(info.value)
    capsys.readouterr()
    figures = ["figures", "--results", str(tmp_path), "--out", str(tmp_path / "figs")]
    figures += ["--run", entry["run_id"]]
    assert cli.main(figures) == 3  # that figure is not drawn, named, and no traceback
    out = capsys.readouterr().out
    assert "figure bifurcation: UNREADABLE RESULTS: results unreadable: figure" in out
    assert str(records) in out
    records.write_bytes(whole)
    meta = folder / "meta.json"
    meta.write_text('{"format": 2, ')
    with pytest.raises(UnreadableResultError, match=r"meta\.json cannot be read \(not valid JSON"):
        load_run(tmp_path, "phase_transition", entry["run_id"])
    index = tmp_path / "index.json"
    index.write_text("[1, 2")
    assert cli.main(["runs", "--results", str(tmp_path)]) == 2
    assert f"{index} cannot be read (not valid JSON" in capsys.readouterr().err
    before = sorted(p.name for p in (tmp_path / "phase_transition").iterdir())
    assert cli.main([*args, "--set", "seed=1", "--results", str(tmp_path)]) == 2
    assert f"{index} cannot be read" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "phase_transition").iterdir()) == before


def test_reproduce_refuses_bad_output_paths_before_any_run(tmp_path, monkeypatch, capsys):
    # --out and --paper were checked after every experiment had run (~90 s), then exit 2
    def no_work(*args, **kwargs):
        raise AssertionError("an experiment ran before the output paths were checked")

    monkeypatch.setattr(cli, "_run_many", no_work)
    taken = tmp_path / "taken"
    taken.write_text("a file")
    base = ["reproduce", "--no-bar", "--results", str(tmp_path / "results")]
    assert cli.main([*base, "--out", str(taken)]) == 2
    assert f"--out {taken} is an existing file" in capsys.readouterr().err
    assert cli.main([*base, "--out", str(taken / "figs")]) == 2
    assert f"{taken} is a file" in capsys.readouterr().err
    assert cli.main([*base, "--out", str(tmp_path / "f"), "--paper", str(tmp_path / "p.txt")]) == 2
    assert "the paper's output must be a .pdf file" in capsys.readouterr().err
    assert cli.main([*base, "--out", str(tmp_path / "f"), "--paper", str(taken / "p.pdf")]) == 2
    assert f"{taken} is a file, not a folder" in capsys.readouterr().err
    assert cli.main([*base, "--results", str(taken)]) == 2
    assert f"--results {taken} is an existing file" in capsys.readouterr().err
    assert taken.read_text() == "a file" and sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_a_sigma2_min_above_the_data_top_is_refused_before_any_folder(tmp_path, capsys):
    # the run folder (.partial) and its index entry were made before the grid refused it
    args = ["run", "responsibilities", "--set", "sigma2_min=1e6", "--no-bar"]
    assert cli.main([*args, "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "sigma2_min=1000000.0 must lie below the grid's top sigma2" in err
    assert "on data set 'separated'" in err
    assert not any(tmp_path.iterdir())
    for name in ("precision", "updates"):  # precision's grid is float64 whatever the dtype
        with pytest.raises(ValueError, match="must lie below the grid's top"):
            make_config(registry()[name], {"sigma2_min": 1e6}, quick=True)
    make_config(registry()["responsibilities"], {"sigma2_min": 1e-3}, quick=True)  # below: ok


def test_runs_refuses_an_unknown_experiment(tmp_path, capsys):
    # it printed "no finished runs" and exited 0
    assert cli.main(["runs", "nosuch", "--results", str(tmp_path)]) == 2
    assert "unknown experiment 'nosuch'; known: responsibilities" in capsys.readouterr().err


def test_em_vs_gradient_winner_is_decided_by_iterations_not_wall_time():
    from gmmlimit.experiments.em_vs_gradient import EmVsGradientRecord

    def record(seconds):
        return EmVsGradientRecord(
            sigma2=np.array([0.1, 1.0, 2.0]),
            sigma2_rel=np.array([0.1, 1.0, 2.0]),
            methods=("em", "adam", "lbfgs"),
            iterations=np.array([[3, 40, 5], [9, -1, 9], [-1, -1, -1]]),
            seconds=np.asarray(seconds, dtype=float),
            seconds_per_iter=np.ones((3, 3)),
            final=np.zeros((3, 3)),
            history=np.zeros((3, 3, 2)),
            adam_rate_rel=np.ones(3),
            lambda_max=1.0,
            n=10,
            d=2,
            k=2,
        )

    nan = np.nan
    slow_em = record([[9.0, 1.0, 2.0], [5.0, nan, 1.0], [nan] * 3])
    fast_em = record([[0.1, 1.0, 2.0], [1.0, nan, 5.0], [nan] * 3])
    spec = registry()["em_vs_gradient"]
    config = make_config(spec, {}, quick=True)
    line = spec.summarize(config, {"anisotropic": slow_em})
    assert line == spec.summarize(config, {"anisotropic": fast_em})  # timings never decide it
    assert "0.1:em(3/40/5) 1:em=lbfgs(9/-1/9) 2:none(-1/-1/-1)" in line


def test_stdout_closed_early_ends_quietly(tmp_path):
    # `gmmlimit list | head -1` printed "[Errno 32] Broken pipe" and exited 2
    script = (
        "import os, sys\n"
        "r, w = os.pipe()\n"
        "os.close(r)\n"  # no reader: every write to the pipe raises BrokenPipeError
        "os.dup2(w, 1)\n"
        "from gmmlimit import cli\n"
        "sys.exit(cli.main(['list']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert done.returncode == 141, done.stderr
    assert done.stderr == ""


def test_failure_and_summary_texts_name_the_real_values():
    spec = registry()["phase_transition"]
    config = make_config(spec, {"split_tol": 0.001}, quick=True)

    class Off:
        first_split_rel_error = 0.01

    (msg,) = spec.check(config, {"separated": Off()})
    assert "not within split_tol 0.001 (0.1%) of it" in msg  # was "not within 0%"

    class Record:
        held = np.ones((1, 3), bool)
        gap = np.array([[1.0, 0.0, 0.0]])
        round_tol = 1e-6
        sigma2 = np.array([1.0, 0.1, 0.0])

    spec = registry()["updates"]
    f32 = make_config(spec, {"dtype": "float32"}, quick=True)
    assert "-> float32 rounding:" in spec.summarize(f32, {"separated": Record()})
    f64 = make_config(spec, {}, quick=True)
    assert "-> float64 rounding:" in spec.summarize(f64, {"separated": Record()})


@pytest.mark.parametrize(
    ("command", "said", "unsaid"),
    [
        (["figures"], "no figure file is half written", "resume"),
        (["paper"], "the paper's PDF is as it was", "resume"),
        (["run", "loglik"], "finished sweep points are kept", None),
    ],
)
def test_interrupt_message_fits_the_command(tmp_path, monkeypatch, capsys, command, said, unsaid):
    def interrupted(args):
        raise KeyboardInterrupt

    parser = cli._parser  # the command's own function is replaced by the interrupting one
    monkeypatch.setattr(cli, "_parser", lambda: _with_func(parser(), command[0], interrupted))
    assert cli.main([*command, "--results", str(tmp_path)]) == 130
    err = capsys.readouterr().err
    assert said in err
    if unsaid:
        assert unsaid not in err


def _with_func(parser, command, func):
    """``parser`` with ``command``'s function replaced (its other defaults kept)."""
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            action.choices[command].set_defaults(func=func)
    return parser


_CONSOLE_INTERRUPT = """
import atexit, sys
from pathlib import Path
from gmmlimit import cli
marker = Path(sys.argv[1])
atexit.register(marker.write_text, "interpreter shutdown ran")
def interrupted(args):
    print("partial output", flush=False)
    raise KeyboardInterrupt
parser = cli._parser
def patched():
    p = parser()
    import argparse
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            a.choices["list"].set_defaults(func=interrupted)
    return p
cli._parser = patched
sys.argv = ["gmmlimit", "list"]
sys.exit(cli.main())
"""


def test_console_interrupt_exits_130_without_interpreter_shutdown(tmp_path):
    # Ctrl-C while XLA compiled could segfault at interpreter shutdown (exit 139) after the
    # message: the console command now flushes and leaves with os._exit(130)
    marker = tmp_path / "shutdown"
    done = subprocess.run(
        [sys.executable, "-c", _CONSOLE_INTERRUPT, str(marker)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 130, done.stderr
    assert "gmmlimit: interrupted." in done.stderr
    assert done.stdout == "partial output\n"  # flushed before leaving
    assert not marker.exists()  # atexit (interpreter shutdown) never ran


def test_a_run_made_before_a_default_changed_is_no_longer_the_default_run(quick, monkeypatch):
    # the index's default_config flag was set when the run was made and never checked again:
    # after a default changed, figures and the paper drew the old run as "default config"
    from gmmlimit.experiments import list_runs, load_run

    results = quick["results"]
    (entry,) = list_runs(results, "loglik", quick=True, default_config=True)
    assert load_run(results, "loglik", entry["run_id"]).default_config
    spec = registry()["loglik"]
    monkeypatch.setitem(spec.quick, "n_sigma2", int(spec.quick["n_sigma2"]) - 1)
    assert list_runs(results, "loglik", quick=True, default_config=True) == []
    assert [r["run_id"] for r in list_runs(results, "loglik", default_config=False)] == [
        entry["run_id"]
    ]
    stale = load_run(results, "loglik", entry["run_id"])
    assert not stale.default_config
    from gmmlimit.paper_figures import override_note

    assert "the defaults of its time, which are no longer today's" in override_note(
        {"loglik": stale}
    )
    with pytest.raises(FileNotFoundError, match="no finished default-config results"):
        load_latest("loglik", results, quick=True)
