"""A run's files are checked against the SHA-256 digests recorded when they were written.

A finished run's ``meta.json`` records the digest of every file written before it; a sweep
point's ``.npz`` has its digest beside it. A file changed afterwards (a hand edit, a file swapped
in from another run) is refused, named, by the loader, ``gmmlimit figures``, ``gmmlimit paper``,
``reproduce``'s reuse of finished runs and a resumed run. Every run here is written by the store's
own writer or by the runner with an instant experiment: no real sweep, no JAX program compiled.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
from stand_in_experiments import StandInConfig, StandInRecord, stand_in

from gmmlimit import cli, experiments
from gmmlimit.experiments import UnreadableResultError, load_run, sweep
from gmmlimit.experiments._store import (
    FILE_DIGESTS,
    FORMAT,
    PointStore,
    atomic_write_json,
    current_default,
    write_run_files,
)

RUN_ID = "20260101T000000000000Z-aaaaaaaaaaaa"
OLDER = "20250101T000000000000Z-bbbbbbbbbbbb"
CHANGED = "cannot be read (it was changed after the run finished: its sha256"


def _write_run(root: Path, name: str, records: dict, run_id: str = RUN_ID) -> dict:
    """A finished quick run of ``name`` with today's default config, as the runner writes it.

    Returns:
        Its index entry (not yet in the index).
    """
    folder = root / name / run_id
    folder.mkdir(parents=True)
    started = f"{run_id[:4]}-01-01T00:00:00+00:00"
    atomic_write_json(folder / "config.json", current_default(name, True))
    atomic_write_json(folder / "started.json", {"started": started})
    meta = {"name": name, "run_id": run_id, "format": FORMAT, "quick": True, "overrides": {}}
    write_run_files(folder, records, f"{name}: tiny", meta)
    return {
        "name": name,
        "run_id": run_id,
        "path": f"{name}/{run_id}",
        "quick": True,
        "overrides": {},
        "default_config": True,
        "format": FORMAT,
        "complete": True,
        "time": started,
    }


def _index(root: Path, entries: list[dict]) -> None:
    atomic_write_json(root / "index.json", {"version": FORMAT, "runs": entries})


def _edit(path: Path) -> None:
    """Change a run's file into another whole, readable file of its kind (as a hand edit would)."""
    if path.suffix == ".npz":
        with np.load(path) as npz:
            arrays = {key: npz[key] for key in npz.files}
        key = next(iter(arrays))
        arrays[key] = arrays[key] + 1
        np.savez(path, **arrays)
    elif path.suffix == ".json":
        value = json.loads(path.read_text())
        value["edited"] = True
        path.write_text(json.dumps(value))
    else:
        path.write_text(path.read_text() + "edited\n")


# --------------------------------------------------------------------------------------------
# The loader: every file of a finished run is checked before anything is decoded
# --------------------------------------------------------------------------------------------


def test_meta_records_every_earlier_file_and_an_untouched_run_loads(tmp_path):
    _write_run(tmp_path, "loglik", {"a": StandInRecord(1.5)})
    folder = tmp_path / "loglik" / RUN_ID
    meta = json.loads((folder / "meta.json").read_text())
    files = ("config.json", "started.json", "records.npz", "scalars.json", "summary.txt")
    assert meta[FILE_DIGESTS] == {
        name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in files
    }
    run = load_run(tmp_path, "loglik", RUN_ID, StandInRecord)
    assert run.records == {"a": StandInRecord(1.5)} and run.summary == "loglik: tiny"


@pytest.mark.parametrize(
    "part", ["records.npz", "scalars.json", "config.json", "summary.txt", "started.json"]
)
def test_a_file_changed_after_the_run_finished_is_refused_naming_it(tmp_path, part):
    _write_run(tmp_path, "loglik", {"a": StandInRecord(1.5)})
    folder = tmp_path / "loglik" / RUN_ID
    _edit(folder / part)
    with pytest.raises(UnreadableResultError) as info:
        load_run(tmp_path, "loglik", RUN_ID, StandInRecord)
    message = str(info.value)
    assert message.startswith(f"{folder / part} {CHANGED}")
    assert "recorded in meta.json" in message
    advice = f"the run {folder} is damaged: delete that folder and rerun `gmmlimit run loglik`."
    assert message.endswith(advice)


def test_a_run_without_digests_is_refused(tmp_path):
    _write_run(tmp_path, "loglik", {"a": StandInRecord(1.5)})
    meta_path = tmp_path / "loglik" / RUN_ID / "meta.json"
    meta = json.loads(meta_path.read_text())
    del meta[FILE_DIGESTS]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(UnreadableResultError, match=r"meta\.json cannot be read \(no SHA-256"):
        load_run(tmp_path, "loglik", RUN_ID, StandInRecord)
    # a run of the layout before digests: the older-version message, not a damaged run
    meta_path.write_text(json.dumps({**meta, "format": 2}))
    with pytest.raises(FileNotFoundError, match=r"older version of gmmlimit \(format 2, need"):
        load_run(tmp_path, "loglik", RUN_ID, StandInRecord)


# --------------------------------------------------------------------------------------------
# The commands that read runs: figures (status 3, the figure named), paper (status 2)
# --------------------------------------------------------------------------------------------


def test_figures_lists_the_figure_of_an_edited_run_as_unreadable(tmp_path, capsys):
    _index(tmp_path, [_write_run(tmp_path, "phase_transition", {"separated": StandInRecord(1.0)})])
    records = tmp_path / "phase_transition" / RUN_ID / "records.npz"
    _edit(records)
    args = ["figures", "--results", str(tmp_path), "--out", str(tmp_path / "figs")]
    assert cli.main([*args, "--run", RUN_ID]) == 3
    captured = capsys.readouterr()
    assert "figure bifurcation: UNREADABLE RESULTS: results unreadable: figure" in captured.out
    assert f"{records} {CHANGED}" in captured.out
    assert "Traceback" not in captured.err


def test_an_edited_config_is_named_not_passed_over_for_an_older_run(tmp_path):
    # an edited config.json no longer equals the default: the newest default run was left out
    # and figures and the paper drew the older one without a word
    older = _write_run(tmp_path, "phase_transition", {}, run_id=OLDER)
    _index(tmp_path, [older, _write_run(tmp_path, "phase_transition", {})])
    config = tmp_path / "phase_transition" / RUN_ID / "config.json"
    _edit(config)
    _, chosen = experiments.select_runs(tmp_path, ["phase_transition"])
    assert chosen["phase_transition"]["run_id"] == RUN_ID
    with pytest.raises(UnreadableResultError, match=re.escape(f"{config} {CHANGED}")):
        load_run(tmp_path, "phase_transition", RUN_ID)


def test_paper_refuses_an_edited_run_with_status_2(tmp_path, capsys):
    entries = [_write_run(tmp_path, name, {}) for name in experiments.registry()]
    _index(tmp_path, entries)
    summary = tmp_path / entries[-1]["path"] / "summary.txt"
    _edit(summary)
    out = tmp_path / "paper.pdf"
    assert cli.main(["paper", "--results", str(tmp_path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"gmmlimit: error: {summary} {CHANGED}")
    assert "delete that folder and rerun" in err and not out.exists()


# --------------------------------------------------------------------------------------------
# reproduce's reuse of finished runs, and a resumed run's finished points
# --------------------------------------------------------------------------------------------


def _instant_specs(calls: dict, interrupt: set) -> dict:
    """loglik and updates with instant runs of two sweep points (their modules' fingerprint)."""
    real = experiments.registry()

    def make(name: str):
        def point(key: str) -> StandInRecord:
            calls[name, key] = calls.get((name, key), 0) + 1
            if (name, key) in interrupt:
                interrupt.discard((name, key))
                raise KeyboardInterrupt
            return StandInRecord(float(len(calls)))

        def run(config, progress, resume=None):
            return sweep(resume, ["p1", "p2"], point, progress, "points", StandInRecord)

        return stand_in(real[name], name, run)

    return {name: make(name) for name in ("loglik", "updates")}


def test_reproduce_does_not_reuse_a_run_edited_after_it_finished(tmp_path, monkeypatch, capsys):
    calls: dict = {}
    specs = _instant_specs(calls, {("updates", "p1")})
    monkeypatch.setattr(experiments, "registry", lambda: specs)
    monkeypatch.setattr(cli, "_draw", lambda *args, **kwargs: 0)
    results = tmp_path / "results"
    args = ["reproduce", "--no-bar", "--results", str(results), "--out", str(tmp_path / "f")]
    assert cli.main([*args, "--paper", ""]) == 130  # loglik finished, noted; updates stopped
    (entry,) = experiments.list_runs(results, "loglik")
    noted = json.loads((results / ".reproduce-quick.json").read_text())["runs"]
    assert noted == {"loglik": entry["run_id"]}
    reuse = (specs["loglik"], StandInConfig(), results, entry["run_id"])
    assert experiments.reusable_run(*reuse, quick=True) is not None  # untouched: reusable
    _edit(results / entry["path"] / "scalars.json")
    assert experiments.reusable_run(*reuse, quick=True) is None
    capsys.readouterr()
    assert cli.main([*args, "--paper", ""]) == 0
    assert calls["loglik", "p1"] == 2  # computed again, not reused
    err = capsys.readouterr().err
    assert "loglik: reusing" not in err
    why = f"loglik: computing again: the run {entry['run_id']} noted before the interruption "
    assert why + "cannot be used: " in err and "it was changed after the run finished" in err


def test_a_point_edited_before_a_resume_is_named_before_any_work(tmp_path, monkeypatch, capsys):
    calls: dict = {}
    specs = _instant_specs(calls, {("loglik", "p2")})
    monkeypatch.setattr(experiments, "registry", lambda: specs)
    args = ["run", "loglik", "--no-bar", "--results", str(tmp_path)]
    assert cli.main(args) == 130  # p1 finished and stored, p2 interrupted
    (point,) = tmp_path.glob("loglik/*.partial/points/p1.npz")
    _edit(point)
    capsys.readouterr()
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert f"{point} cannot be read (it was changed after it was computed" in err
    assert "recorded in p1.sha256" in err and "delete that file and rerun" in err
    assert calls == {("loglik", "p1"): 1, ("loglik", "p2"): 1}  # refused before any work
    point.unlink()  # as the message says: that point is computed again
    assert cli.main(args) == 0
    assert calls == {("loglik", "p1"): 2, ("loglik", "p2"): 2}


def test_a_point_store_checks_each_point_against_its_digest(tmp_path):
    store = PointStore(tmp_path)
    store.put("a", StandInRecord(2.0))
    assert store.get("a", StandInRecord) == StandInRecord(2.0)
    assert (tmp_path / "a.sha256").read_text().strip() == hashlib.sha256(
        (tmp_path / "a.npz").read_bytes()
    ).hexdigest()
    _edit(tmp_path / "a.npz")
    changed = re.escape(f"{tmp_path / 'a.npz'} cannot be read (it was changed after it was")
    with pytest.raises(UnreadableResultError, match=changed):
        store.get("a", StandInRecord)
    with pytest.raises(UnreadableResultError, match=changed):
        store.verify()
    (tmp_path / "a.sha256").unlink()  # a point without its digest cannot be checked
    with pytest.raises(UnreadableResultError, match=r"its digest a\.sha256 is missing"):
        store.get("a", StandInRecord)
    assert PointStore(None).get("a", StandInRecord) is None  # in memory: nothing on disk to check
