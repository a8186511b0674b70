"""Command-line promises about paths, resumable state, one-feature data and code provenance.

Each test is unit-sized (crafted runs, stand-in experiments, a tiny annealing run): no full sweep.
"""

from __future__ import annotations

import json
import types
from pathlib import Path

import numpy as np
import pytest
from stand_in_experiments import StandInRecord, stand_in

from gmmlimit import cli, experiments, paper_figures
from gmmlimit._paper import document
from gmmlimit._paper._reader import PaperRun
from gmmlimit.experiments._anneal_common import pca_basis

OLD = "20260101T000000000000Z-aaaaaaaaaaaa"
NEW = "20260202T000000000000Z-bbbbbbbbbbbb"
NO_FILE_CAN_BE_MADE = "/proc/gmmlimit-xx"  # a folder where no file can be made, root or not


# 1. the paper's output is checked before any work


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc")
def test_reproduce_refuses_a_paper_where_no_file_can_be_made_before_any_work(
    tmp_path, monkeypatch, capsys
):
    calls = []
    monkeypatch.setattr(cli, "_run_many", lambda *a, **k: calls.append("run") or (0, []))
    monkeypatch.setattr(cli, "_draw", lambda *a, **k: calls.append("draw") or 0)
    paper = f"{NO_FILE_CAN_BE_MADE}/p.pdf"
    paths = ["--results", str(tmp_path / "r"), "--out", str(tmp_path / "f"), "--paper", paper]
    rc = cli.main(["reproduce", *paths, "--no-bar"])
    err = capsys.readouterr().err
    # before: every experiment ran and every figure was drawn, then a temporary file was named
    assert rc == 2 and calls == [], err
    assert f"the paper's output {paper} cannot be written" in err and "/proc/.p" not in err


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc")
def test_paper_refuses_an_out_where_no_file_can_be_made(tmp_path, capsys):
    out = f"{NO_FILE_CAN_BE_MADE}/p.pdf"
    rc = cli.main(["paper", "--results", str(tmp_path / "r"), "--out", out])
    err = capsys.readouterr().err
    assert rc == 2, err  # before: status 3 here (no results); with results, a temporary file
    assert f"the paper's output {out} cannot be written" in err


# 2. annealing experiments on a file of one feature (D = 1)


def test_the_principal_axis_of_one_feature_is_that_feature():
    x = np.random.default_rng(0).normal(size=(20, 1))
    np.testing.assert_array_equal(pca_basis(x), [[1.0, 0.0]])  # before: np.cov's 0-d error
    np.testing.assert_array_equal(pca_basis(-3 * x), [[1.0, 0.0]])


def test_phase_transition_runs_on_a_file_of_one_feature(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-4, 0.5, 20), rng.normal(4, 0.5, 20)])[:, None]
    np.save(tmp_path / "one.npy", x)
    results = tmp_path / "r"
    sizes = ["k=2", "n_fine=5", "fine_bottom=0.8", "n_coarse=2", "max_iter=10"]
    sets = [a for s in sizes for a in ("--set", s)]
    data = ["--data", str(tmp_path / "one.npy"), "--results", str(results)]
    rc = cli.main(["run", "phase_transition", *data, *sets, "--no-bar"])
    err = capsys.readouterr().err
    assert rc in (0, 1), err  # before: status 2 with numpy's error, a .partial folder left
    assert not list((results / "phase_transition").glob("*.partial"))
    (entry,) = experiments.list_runs(results, "phase_transition")
    run = experiments.load_run(results, "phase_transition", entry["run_id"])
    projected = np.asarray(run.records["one"].projected)
    assert projected.shape[1:] == (2, 2) and not projected[..., 1].any()


# 3. reproduce checks every experiment's unfinished run before running any


def test_reproduce_refuses_a_damaged_point_of_a_later_experiment_before_any_work(
    tmp_path, monkeypatch, capsys
):
    calls: dict = {}
    interrupt = {"updates"}

    def make(name: str):
        def run(config, progress, resume=None):
            calls[name] = calls.get(name, 0) + 1
            if name in interrupt:  # one finished point, then an interruption
                interrupt.discard(name)
                resume.put("separated", StandInRecord(1.0))
                raise KeyboardInterrupt
            return {"separated": StandInRecord(float(calls[name]))}

        return stand_in(experiments.registry()[name], name, run)

    specs = {name: make(name) for name in ("loglik", "updates")}
    monkeypatch.setattr(experiments, "registry", lambda: specs)
    monkeypatch.setattr(cli, "_draw", lambda *args, **kwargs: 0)
    results = tmp_path / "results"
    assert cli.main(["run", "updates", "--no-bar", "--results", str(results)]) == 130
    (point,) = (results / "updates").glob("*.partial/points/separated.npz")
    point.write_bytes(point.read_bytes()[:20])  # truncated
    calls.clear()
    capsys.readouterr()

    args = ["reproduce", "--no-bar", "--results", str(results), "--out", str(tmp_path / "f")]
    rc = cli.main([*args, "--paper", ""])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert calls == {}, err  # before: loglik ran first, then updates stopped with status 2
    assert str(point) in err and "delete that file" in err
    assert not (results / "loglik").exists()


# 4. figures and the paper say when a run was made by code other than the current code


def _run(name: str, run_id: str, fingerprint: str | None, revision: str) -> types.SimpleNamespace:
    """What :func:`paper_figures.index_markdown` reads of a run."""
    meta = {"seed": 0, "estep": "native: x", "git_revision": revision}
    if fingerprint is not None:
        meta["code_fingerprint"] = fingerprint
    return types.SimpleNamespace(
        name=name, run_id=run_id, setting="quick", overrides={}, default_config=True, meta=meta
    )


def _current_code(*names: str) -> dict[str, str]:
    """The code fingerprint a run of each experiment made now records."""
    specs = experiments.registry()
    return {name: experiments.code_fingerprint(specs[name]) for name in names}


def test_figures_drawn_from_runs_of_other_code_say_so():
    specs = paper_figures.registry()
    now = _current_code("responsibilities", "loglik")
    rev = "0123456789abcdef0123456789abcdef01234567"
    old = _run("responsibilities", OLD, "0" * 16, rev)  # made by other code
    new = _run("loglik", NEW, now["loglik"], rev)
    figures = [specs["fig1_responsibilities"], specs["fig2_loglik"]]
    used = {"fig1_responsibilities": {"responsibilities": old}, "fig2_loglik": {"loglik": new}}
    text = paper_figures.index_markdown(figures, used)  # the current code's fingerprints itself
    top, fig1, fig2 = text.split("## Figure ")[:3]
    # before: no word, as every run had the same git revision
    assert "made by code other than the current code" in top
    assert f"`responsibilities` run {OLD} (git 0123456789ab)" in top and NEW not in top
    assert f"Made by code other than the current code: run {OLD} of `responsibilities`" in fig1
    assert f"the current code's is {now['responsibilities']}" in fig1
    assert "other than the current code" not in fig2

    # two git revisions whose code is today's (a docs-only commit): said, and why it is fine
    dirty = _run("responsibilities", OLD, now["responsibilities"], rev + "-dirty")
    mixed = {"fig1_responsibilities": {"responsibilities": dirty}, "fig2_loglik": {"loglik": new}}
    text = paper_figures.index_markdown(figures, mixed)
    assert "code revisions (0123456789ab, 0123456789ab-dirty)" in text
    assert "Every run's code fingerprint is the current code's" in text
    assert "other than the current code" not in text


def test_the_paper_says_when_its_runs_were_made_by_other_code():
    def paper_run(name: str, run_id: str, fingerprint: str) -> PaperRun:
        meta = {"code_fingerprint": fingerprint, "git_revision": "fedcba9876543210-dirty"}
        return PaperRun(name, run_id, "quick", (), meta, "", {}, {})

    now = _current_code("loglik", "updates")
    runs = {
        "loglik": paper_run("loglik", OLD, "0" * 16),
        "updates": paper_run("updates", NEW, now["updates"]),
    }
    doc = document(runs, [], {}, True)  # the current code's fingerprints itself
    assert doc.get("code_current") is False  # before: the paper said nothing of the code
    assert "1 of 2 runs were made by code other than the current code" in doc["code_note"]
    assert f"loglik (run {OLD}, git fedcba987654-dirty" in doc["code_note"]
    assert NEW not in doc["code_note"]
    json.dumps(doc)
    current = document({"updates": runs["updates"]}, [], {}, True, current=now)
    assert current["code_current"] is True
    assert current["code_note"].startswith("Every run was made by the current code")


def test_the_paper_and_the_figures_are_not_part_of_the_code_fingerprint(monkeypatch):
    """A wording change to the paper made every run 'made by code other than the current
    code' and reran every experiment (the review of session 63): the fingerprint reads the
    code the experiments run, not the paper's or the figures'."""
    from pathlib import Path

    from gmmlimit import experiments

    spec = experiments.registry()["loglik"]
    before = experiments.code_fingerprint(spec)
    read = Path.read_bytes

    def edited(path):
        parts = Path(path).parts
        return read(path) + (b"# edited" if "_paper" in parts or "cli.py" in parts else b"")

    monkeypatch.setattr(Path, "read_bytes", edited)
    assert experiments.code_fingerprint(spec) == before
