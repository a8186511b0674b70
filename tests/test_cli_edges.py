"""Edges of the command line: reused figures, output paths, out of memory, resume, the launcher.

Each test is unit-sized (crafted folders, a parser, a monkeypatched experiment): no real sweep.
"""

from __future__ import annotations

import os
import runpy
import subprocess
import time
import types
from pathlib import Path

import pytest
from stand_in_experiments import StandInConfig, StandInRecord, stand_in

from gmmlimit import cli, experiments, launch, paper_figures
from gmmlimit._paper import _reader
from gmmlimit._paper._reader import PaperRun
from gmmlimit.paper_figures import index_markdown

OLD = "20260101T000000000000Z-aaaaaaaaaaaa"
NEW = "20260202T000000000000Z-bbbbbbbbbbbb"
PHASE = "20260303T000000000000Z-cccccccccccc"


def _run(name: str, run_id: str) -> types.SimpleNamespace:
    """What :func:`index_markdown` reads of a run."""
    meta = {"seed": 0, "estep": "native: x", "git_revision": "abc"}
    return types.SimpleNamespace(
        name=name, run_id=run_id, setting="quick", overrides={}, default_config=True, meta=meta
    )


def _paper_run(name: str, run_id: str) -> PaperRun:
    return PaperRun(name, run_id, "quick", (), {}, "", {}, {})


def _figures_folder(folder: Path, used: dict, missing: dict) -> Path:
    """A figures folder as `gmmlimit figures` leaves it: old PNGs, then this call's index.md."""
    specs = paper_figures.registry()
    folder.mkdir()
    for name in specs:
        (folder / f"{name}.png").write_bytes(b"\x89PNG old")
    past = time.time() - 60
    for png in folder.glob("*.png"):
        os.utime(png, (past, past))
    drawn = [specs[name] for name in used]
    (folder / "index.md").write_text(index_markdown(drawn, used, missing) + "\n")
    return folder


# 1. a figure is reused only when its own index entry names the runs the paper reads


def test_a_figure_not_drawn_by_the_last_call_is_not_reused(tmp_path):
    # fig2_loglik failed to draw from the new loglik run: the index names the new run id only
    # in the "Not drawn" reason; before, that was enough to reuse the OLD fig2 PNG
    specs = paper_figures.registry()
    used = {"fig1_responsibilities": {"responsibilities": _run("responsibilities", OLD)}}
    missing = {
        "fig2_loglik": f"results unreadable: results/loglik/{NEW}/records.npz cannot be read",
        "fig6_hardening": "drawing failed (RuntimeError): boom",
    }
    folder = _figures_folder(tmp_path / "figures", used, missing)
    runs = {"loglik": _paper_run("loglik", NEW), "responsibilities": _paper_run("r", OLD)}
    with pytest.raises(ValueError, match="does not list figure 'fig2_loglik' as drawn"):
        _reader._reuse_figure(specs["fig2_loglik"], folder, tmp_path / "out", runs)
    # fig1 and fig6 read the same run; only fig1 was drawn by this call
    with pytest.raises(ValueError, match="does not list figure 'fig6_hardening' as drawn"):
        _reader._reuse_figure(specs["fig6_hardening"], folder, tmp_path / "out", runs)
    copied = _reader._reuse_figure(specs["fig1_responsibilities"], folder, tmp_path / "out", runs)
    assert copied.read_bytes() == b"\x89PNG old"


def test_a_figure_drawn_from_another_run_is_not_reused_though_the_index_names_it(tmp_path):
    # bifurcation drawn from the old phase_transition run; distinct_centres (not drawn) ...
    # and another figure's entry names the new run: the id is in index.md, not in its entry
    specs = paper_figures.registry()
    used = {
        "bifurcation": {"phase_transition": _run("phase_transition", OLD)},
        "fig1_responsibilities": {"responsibilities": _run("responsibilities", PHASE)},
    }
    folder = _figures_folder(tmp_path / "figures", used, {})
    runs = {"phase_transition": _paper_run("phase_transition", PHASE)}
    with pytest.raises(ValueError, match=f"does not name run {PHASE} of 'phase_transition'"):
        _reader._reuse_figure(specs["bifurcation"], folder, tmp_path / "out", runs)
    assert not (tmp_path / "out").exists()
    assert _reader.drawn_entries((folder / "index.md").read_text()) == {
        "fig1_responsibilities": {"responsibilities": PHASE},
        "bifurcation": {"phase_transition": OLD},
    }


def test_a_figure_newer_than_its_index_is_not_reused(tmp_path):
    # `gmmlimit figures` interrupted after moving a new PNG in, before writing its index
    specs = paper_figures.registry()
    used = {"fig2_loglik": {"loglik": _run("loglik", OLD)}}
    folder = _figures_folder(tmp_path / "figures", used, {})
    runs = {"loglik": _paper_run("loglik", OLD)}
    assert _reader._reuse_figure(specs["fig2_loglik"], folder, tmp_path / "out", runs).exists()
    later = (folder / "index.md").stat().st_mtime + 5
    os.utime(folder / "fig2_loglik.png", (later, later))
    with pytest.raises(ValueError, match="is newer than"):
        _reader._reuse_figure(specs["fig2_loglik"], folder, tmp_path / "out2", runs)


# 2. figures: --out is checked before anything is drawn


@pytest.mark.parametrize(
    ("out", "msg"),
    [
        ("afile", "--out {tmp}/afile is an existing file, not a folder."),
        ("afile/sub", "--out {tmp}/afile/sub cannot be created: {tmp}/afile is a file."),
    ],
)
def test_figures_refuses_an_unusable_out_before_drawing(tmp_path, monkeypatch, capsys, out, msg):
    (tmp_path / "afile").write_text("keep me")
    calls = []
    monkeypatch.setattr(paper_figures, "draw_all", lambda *a, **k: calls.append(a) or ({}, {}))
    rc = cli.main(["figures", "--results", str(tmp_path / "r"), "--out", str(tmp_path / out)])
    assert rc == 2 and calls == []  # before: every figure drawn, then "afile: File exists"
    assert f"gmmlimit: error: {msg.format(tmp=tmp_path)}" in capsys.readouterr().err
    assert (tmp_path / "afile").read_text() == "keep me"


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc")
def test_figures_refuses_an_out_where_no_file_can_be_made(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(paper_figures, "draw_all", lambda *a, **k: calls.append(a) or ({}, {}))
    rc = cli.main(["figures", "--results", str(tmp_path), "--out", "/proc/gmmlimit-xx"])
    err = capsys.readouterr().err
    assert rc == 2 and calls == [], err  # before (as root): a temporary path in the error
    assert "--out /proc/gmmlimit-xx" in err and ".tmp" not in err


# 3. out of device memory: a clear error, status 2


def test_device_out_of_memory_is_an_error_with_status_2(tmp_path, monkeypatch, capsys):
    import jax

    def exhausted(*args, **kwargs):
        raise jax.errors.JaxRuntimeError(
            "RESOURCE_EXHAUSTED: Out of memory allocating 1440800002400 bytes.\nmore detail"
        )

    monkeypatch.setattr(cli, "_run_many", exhausted)
    args = ["run", "loglik", "--set", "n_sigma2=100000000", "--results", str(tmp_path)]
    assert cli.main(args) == 2  # before: a 38-line traceback and status 1
    err = capsys.readouterr().err
    assert err.startswith("gmmlimit: error: out of memory: RESOURCE_EXHAUSTED: Out of memory")
    assert "n_sigma2" in err and "Traceback" not in err and "more detail" not in err


def test_other_jax_runtime_errors_still_raise(tmp_path, monkeypatch):
    import jax

    def broken(*args, **kwargs):
        raise jax.errors.JaxRuntimeError("INTERNAL: something else")

    monkeypatch.setattr(cli, "_run_many", broken)
    with pytest.raises(jax.errors.JaxRuntimeError, match="INTERNAL"):
        cli.main(["run", "loglik", "--results", str(tmp_path)])


# 4. reproduce, interrupted and rerun, reuses the experiments it finished


def _tiny_specs(calls: dict, interrupt: set) -> dict:
    """Two registered experiments whose run is instant (their modules give the fingerprint)."""
    real = experiments.registry()

    def make(name: str):
        def run(config, progress, resume=None):
            calls[name] = calls.get(name, 0) + 1
            if name in interrupt:
                interrupt.discard(name)
                raise KeyboardInterrupt
            return {"separated": StandInRecord(float(calls[name]))}

        return stand_in(real[name], name, run)

    return {name: make(name) for name in ("loglik", "updates")}


def test_reproduce_rerun_reuses_the_experiments_finished_before_an_interrupt(
    tmp_path, monkeypatch, capsys
):
    calls: dict = {}
    interrupt = {"updates"}
    specs = _tiny_specs(calls, interrupt)
    monkeypatch.setattr(experiments, "registry", lambda: specs)
    monkeypatch.setattr(cli, "_draw", lambda *args, **kwargs: 0)
    results = tmp_path / "results"
    args = ["reproduce", "--no-bar", "--results", str(results), "--out", str(tmp_path / "f")]
    args += ["--paper", ""]
    assert cli.main(args) == 130
    err = capsys.readouterr().err
    assert "rerun the same command to resume" in err and "reuses those runs" in err
    assert calls == {"loglik": 1, "updates": 1}
    assert (results / ".reproduce-quick.json").exists()

    assert cli.main(args) == 0
    captured = capsys.readouterr()
    assert calls == {"loglik": 1, "updates": 2}  # before: loglik computed again
    assert "loglik: reusing" in captured.err
    assert "reused: finished before the interruption" in captured.out
    assert not (results / ".reproduce-quick.json").exists()

    assert cli.main(args) == 0  # a reproduce that ended: the next one computes everything
    assert calls == {"loglik": 2, "updates": 3}


def test_a_noted_run_is_reused_only_when_it_is_what_would_run_now(tmp_path, monkeypatch):
    calls: dict = {}
    specs = _tiny_specs(calls, set())
    spec = specs["loglik"]
    config = StandInConfig()
    run, _ = experiments.run_experiment(
        spec, config, tmp_path, quick=True, progress=experiments.Progress(False)
    )
    assert experiments.reusable_run(spec, config, tmp_path, run.run_id, quick=True) is not None
    assert experiments.reuse_verdict(spec, config, tmp_path, run.run_id, quick=True).reason == ""
    hash_differs = "was computed with another config, setting or code (its hash differs)"
    for other_config, quick in ((StandInConfig(seed=1), True), (config, False)):
        verdict = experiments.reuse_verdict(spec, other_config, tmp_path, run.run_id, quick=quick)
        assert verdict == (None, hash_differs)
    assert experiments.reusable_run(spec, config, tmp_path, "no-such-run", quick=True) is None
    missing = experiments.reuse_verdict(spec, config, tmp_path, "no-such-run", quick=True)
    assert missing.reason.startswith("is not a finished run of this format (no finished run")
    other = experiments.reuse_verdict(specs["updates"], config, tmp_path, run.run_id, quick=True)
    assert other.reason == "is a run of 'loglik', not of 'updates'"
    monkeypatch.setattr(experiments._runner, "_device", lambda: {"platform": "elsewhere"})
    assert experiments.reuse_verdict(spec, config, tmp_path, run.run_id, quick=True).reason == (
        f"ran on another device ({run.meta['device']}; now {{'platform': 'elsewhere'}})"
    )
    monkeypatch.setattr(experiments._runner, "code_fingerprint", lambda spec: "changed code")
    assert experiments.reusable_run(spec, config, tmp_path, run.run_id, quick=True) is None


# 5. the launcher's --port


@pytest.mark.parametrize("port", ["0", "-1", "99999", "65536"])
def test_launch_refuses_a_port_out_of_range_before_starting(monkeypatch, capsys, port):
    def no_process(*args, **kwargs):
        raise AssertionError("a process was started")

    monkeypatch.setattr(subprocess, "Popen", no_process)
    with pytest.raises(SystemExit) as exit_:
        launch.main(["-n", "2", f"--port={port}", "script.py"])
    assert exit_.value.code == 2
    assert "port must be an integer from 1 to 65535" in capsys.readouterr().err


def test_launch_run_refuses_a_bad_port():
    with pytest.raises(ValueError, match="port must be"):
        launch.run(1, ["script.py"], port=True)


# 6. a damaged results/index.json: figures stops with status 2, drawing nothing, as documented


def test_a_damaged_index_stops_figures_with_status_2_as_documented(tmp_path, capsys):
    results = tmp_path / "results"
    results.mkdir()
    (results / "index.json").write_text('{"runs": [')
    out = tmp_path / "figures"
    out.mkdir()
    (out / "index.md").write_text("old index\n")
    assert cli.main(["figures", "--results", str(results), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{results / 'index.json'} cannot be read" in err and "restore it" in err
    assert [p.name for p in out.iterdir()] == ["index.md"]
    assert (out / "index.md").read_text() == "old index\n"
    docs = Path(__file__).resolve().parents[1] / "docs" / "experiments.md"
    text = " ".join(docs.read_text().split())
    # before, the docs said its figures were listed as not drawn (status 3)
    assert "A damaged `results/index.json`, from which every figure's run is chosen, stops" in text
    assert "`figures` (and `paper`) with status 2 before anything is drawn" in text


# 7. the figures index keeps each figure's fixed number


def test_figure_numbers_in_the_index_do_not_shift_when_figures_are_missing():
    specs = paper_figures.registry()
    fixed = {name: i for i, name in enumerate(specs, 1)}
    text = index_markdown([specs["fig1_responsibilities"], specs["fig6_hardening"]], {}, {})
    assert f"## Figure {fixed['fig6_hardening']}: " in text
    assert "## Figure 2: " not in text


def test_a_figure_drawn_from_a_run_whose_statement_failed_says_so():
    # the paper flags a failed statement; the figures index said nothing of it (a figure drawn
    # with --run from such a run carried the overrides note only)
    specs = paper_figures.registry()
    failed = _run("responsibilities", NEW)
    failed.meta = {**failed.meta, "check_failures": ["bound 1 violated at 3 points", "slope"]}
    text = index_markdown(
        [specs["fig1_responsibilities"], specs["fig2_loglik"]],
        {"fig1_responsibilities": {"responsibilities": failed},
         "fig2_loglik": {"loglik": _run("loglik", OLD)}},
    )  # fmt: skip
    entries = text.split("## Figure ")
    fig1 = next(e for e in entries if "(`fig1_responsibilities`)" in e)
    fig2 = next(e for e in entries if "(`fig2_loglik`)" in e)
    assert f"**A verified statement failed in run {NEW} of `responsibilities`: bound 1" in fig1
    assert "(and 1 more)" in fig1
    assert "failed" not in fig2


def test_python_dash_m_gmmlimit_is_the_command(monkeypatch, capsys):
    # `python -m gmmlimit list` ran nothing before (no __main__); the docs' command is gmmlimit
    monkeypatch.setattr("sys.argv", ["gmmlimit", "list"])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_module("gmmlimit", run_name="__main__")
    assert exit_.value.code == 0
    assert "loglik" in capsys.readouterr().out


def test_figures_drawn_from_runs_of_several_code_revisions_say_so():
    # runs of two git revisions were mixed with no word but each figure's own run line
    specs = paper_figures.registry()
    old, new = _run("responsibilities", OLD), _run("loglik", NEW)
    new.meta = {**new.meta, "git_revision": "def4567890abcdef-dirty"}
    figures = [specs["fig1_responsibilities"], specs["fig2_loglik"]]
    used = {"fig1_responsibilities": {"responsibilities": old}, "fig2_loglik": {"loglik": new}}
    mixed = index_markdown(figures, used)
    # a revision keeps its -dirty: "abc" and "abc-dirty" read "(abc, abc)" before
    assert "**Drawn from runs of 2 code revisions (abc, def4567890ab-dirty)" in mixed
    same = index_markdown(figures, {"fig1_responsibilities": {"responsibilities": old}})
    assert "code revisions" not in same
