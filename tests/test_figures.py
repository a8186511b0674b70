"""Paper figures: drawn from quick results only; missing results name the experiment."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image as mpimg
import pytest

from gmmlimit import cli, paper_figures
from gmmlimit.paper_figures import draw_figure, index_markdown, registry

FIGURES = (
    "fig1_responsibilities",
    "fig2_loglik",
    "fig3_updates",
    "fig4_trajectories",
    "fig5_precision",
    "fig6_hardening",
)
DOCS = Path(__file__).resolve().parents[1] / "docs" / "figures.md"


@pytest.fixture(scope="session")
def quick(tmp_path_factory):
    from test_experiments import quick_run  # the one shared quick run of the session

    return quick_run(tmp_path_factory)


def test_every_figure_registered_with_caption_and_needs():
    specs = registry()
    assert set(FIGURES) <= set(specs)
    for name in FIGURES:
        spec = specs[name]
        assert len(spec.caption) > 200 and "Experiment `" in spec.caption
        assert spec.needs


@pytest.mark.parametrize("name", FIGURES)
def test_reproduce_wrote_pdf_and_png(quick, name):
    for ext in ("pdf", "png"):
        path = quick["figures"] / f"{name}.{ext}"
        assert path.stat().st_size > 5000, path
    assert (quick["figures"] / f"{name}.pdf").read_bytes().startswith(b"%PDF")
    image = mpimg.imread(quick["figures"] / f"{name}.png")
    assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 600
    assert image[..., :3].std() > 0.05  # not a blank canvas


def test_figure_redraws_from_results_alone(quick, tmp_path):
    spec = registry()["fig6_hardening"]
    paths, used = draw_figure(spec, quick["results"], tmp_path)
    assert sorted(p.name for p in paths) == ["fig6_hardening.pdf", "fig6_hardening.png"]
    assert set(used) == {"responsibilities"}
    assert all(p.stat().st_size > 0 for p in paths)


def test_index_lists_every_drawn_figure(quick):
    text = (quick["figures"] / "index.md").read_text()
    for name in FIGURES:
        assert f"![{name}]({name}.png)" in text
        assert registry()[name].caption.strip()[:60] in text
    assert "quick setting" in text


@pytest.mark.parametrize("name", FIGURES)
def test_missing_results_name_the_experiment(tmp_path, name):
    spec = registry()[name]
    with pytest.raises(FileNotFoundError) as err:
        draw_figure(spec, tmp_path / "empty", tmp_path / "out")
    message = str(err.value)
    assert spec.needs[0] in message and f"gmmlimit run {spec.needs[0]}" in message
    assert name in message


def test_cli_figures_reports_missing_results(tmp_path, capsys):
    rc = cli.main(["figures", "--results", str(tmp_path / "none"), "--out", str(tmp_path / "f")])
    assert rc == 3
    out = capsys.readouterr().out
    assert "MISSING RESULTS" in out and "gmmlimit run responsibilities" in out


def test_docs_figures_index_is_current():
    expected = index_markdown(list(paper_figures.registry().values())) + "\n"
    regenerate = "regenerate: python -m gmmlimit.paper_figures > docs/figures.md"
    assert DOCS.read_text() == expected, regenerate


def test_figures_use_default_runs_and_mark_explicit_override_runs(quick, tmp_path):
    import shutil

    from gmmlimit.experiments import list_runs, load_latest

    results = tmp_path / "results"
    shutil.copytree(quick["results"], results)
    default = load_latest("loglik", results, quick=True)
    args = ["run", "loglik", "--set", "datasets=separated", "--no-bar", "--results", str(results)]
    assert cli.main(args) == 0
    (override,) = list_runs(results, "loglik", default_config=False)
    assert override["overrides"] == {"datasets": ["separated"]}
    out = tmp_path / "figures"
    # default: the latest default-config run, not the newer override run
    written, missing = paper_figures.draw_all(results, out, names=["fig2_loglik"])
    assert list(written) == ["fig2_loglik"] and not missing
    text = (out / "index.md").read_text()
    assert f"run `{default.run_id}` (quick setting, default config" in text
    assert override["run_id"] not in text and "Not the default config" not in text
    # --run picks the override run, and the caption and index entry say so
    before = (out / "fig2_loglik.png").read_bytes()
    run_ids = [override["run_id"]]
    written, _ = paper_figures.draw_all(results, out, names=["fig2_loglik"], run_ids=run_ids)
    assert list(written) == ["fig2_loglik"]
    text = (out / "index.md").read_text()
    assert f"run `{override['run_id']}` (quick setting, **overrides: datasets=separated**" in text
    assert "**Not the default config: drawn from run " in text
    assert (out / "fig2_loglik.png").read_bytes() != before  # redrawn, with the note under it
    assert not list(tmp_path.glob(".figures.*"))  # the temporary folder is gone


def test_failed_figures_call_keeps_previous_output(tmp_path):
    out = tmp_path / "figures"
    out.mkdir()
    (out / "index.md").write_text("good index\n")
    (out / "fig2_loglik.png").write_bytes(b"good figure")
    rc = cli.main(["figures", "--results", str(tmp_path / "nonexistent"), "--out", str(out)])
    assert rc == 3
    assert (out / "index.md").read_text() == "good index\n"
    assert (out / "fig2_loglik.png").read_bytes() == b"good figure"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figures"]


def test_unknown_run_id_is_refused(quick, tmp_path):
    args = ["figures", "--results", str(quick["results"]), "--out", str(tmp_path / "f")]
    assert cli.main([*args, "--run", "20990101T000000Z-nope"]) == 2
    assert not (tmp_path / "f").exists()


# --- which runs: the named runs set the setting; a broken figure does not stop the others ----


def _fake_results(root: Path, runs: list[tuple[str, str, bool, bool]]) -> Path:
    """A results folder whose index lists ``(name, run_id, quick, default_config)`` runs.

    Only the index and each run's ``meta.json`` and ``config.json`` (today's default config
    for a default run) exist: enough for run selection (``select_runs``, ``find_run``), which
    happens before anything is loaded or drawn.
    """
    import json

    from gmmlimit.experiments._store import FORMAT, current_default

    entries = []
    for i, (name, run_id, is_quick, default) in enumerate(runs):
        folder = root / name / run_id
        folder.mkdir(parents=True)
        (folder / "meta.json").write_text(json.dumps({"format": FORMAT, "quick": is_quick}))
        config = current_default(name, is_quick) if default else {"seed": 1}
        (folder / "config.json").write_text(json.dumps(config))
        entries.append(
            {
                "name": name,
                "run_id": run_id,
                "path": f"{name}/{run_id}",
                "quick": is_quick,
                "default_config": default,
                "overrides": {} if default else {"seed": 1},
                "complete": True,
                "format": FORMAT,
                "time": f"2026-12-01T00:00:{i:02d}Z",
            }
        )
    (root / "index.json").write_text(json.dumps({"version": FORMAT, "runs": entries}))
    return root


def test_named_run_sets_the_setting_and_refuses_mixed_settings(tmp_path, capsys):
    from gmmlimit.experiments import select_runs

    results = _fake_results(
        tmp_path / "results",
        [
            ("loglik", "full-loglik", False, True),  # only a full default run of loglik
            ("responsibilities", "quick-resp", True, True),
            ("updates", "quick-updates-seed1", True, False),
            ("variant_limits", "quick-limits", True, True),
        ],
    )
    names = ["responsibilities", "loglik"]
    # the named quick run makes the setting quick: no full run is drawn beside it
    quick, chosen = select_runs(results, names, run_ids=["quick-resp"])
    assert quick is True and set(chosen) == {"responsibilities"}
    assert chosen["responsibilities"]["run_id"] == "quick-resp"
    quick, chosen = select_runs(results, names, run_ids=["full-loglik"])
    assert quick is False and set(chosen) == {"loglik"}
    # named runs against --full/--quick, or against each other: refused
    with pytest.raises(ValueError, match="never mixed"):
        select_runs(results, names, quick=False, run_ids=["quick-resp"])
    with pytest.raises(ValueError, match="quick and full runs"):
        select_runs(results, names, run_ids=["quick-resp", "full-loglik"])
    with pytest.raises(ValueError, match="variant_limits"):
        select_runs(results, [*names, "updates"], run_ids=["quick-limits"])
    quick, chosen = select_runs(results, [*names, "updates"], run_ids=["quick-updates-seed1"])
    assert quick is True and chosen["updates"]["run_id"] == "quick-updates-seed1"
    # the command: exit 2 before anything is drawn, with a message naming the problem
    out = tmp_path / "figures"
    base = ["figures", "--results", str(results), "--out", str(out)]
    cases = [
        (["--full", "--run", "quick-resp"], "--full asked for full runs"),
        (["--quick", "--run", "full-loglik"], "--quick asked for quick runs"),
        (["--run", "quick-resp", "--run", "full-loglik"], "--run names quick and full runs"),
        (["--run", "quick-limits"], "no figure drawn reads experiment 'variant_limits'"),
    ]
    for args, message in cases:
        assert cli.main([*base, *args]) == 2, args
        assert message in capsys.readouterr().err, args
    assert not out.exists()


def _fake_run(run_id: str):
    from types import SimpleNamespace

    meta = {"seed": 0, "estep": "pure JAX", "git_revision": "abc"}
    return SimpleNamespace(
        run_id=run_id, setting="quick", overrides={}, default_config=True, meta=meta, records={}
    )


def test_a_failing_figure_is_listed_and_the_others_are_drawn(tmp_path, monkeypatch, capsys):
    import gmmlimit.experiments as ex
    from gmmlimit.paper_figures import FigureSpec
    from gmmlimit.paper_figures import _style as st

    def good(results, out_dir):
        fig, axes = st.figure()
        axes[0][0].plot([0, 1], [0, 1])
        return st.save(fig, out_dir, "good")

    def broken(results, out_dir):
        st.figure()
        raise ValueError("matmul: size 8 is different from 10")

    caption = "x" * 10
    specs = {
        "broken": FigureSpec("broken", ("responsibilities",), broken, caption, order=1),
        "good": FigureSpec("good", ("responsibilities",), good, caption, order=2),
    }
    monkeypatch.setattr(paper_figures, "registry", lambda: specs)
    monkeypatch.setattr(ex, "load_run", lambda results_dir, name, run_id: _fake_run(run_id))
    results = _fake_results(tmp_path / "results", [("responsibilities", "r1", True, True)])
    out = tmp_path / "figures"
    open_before = len(st.plt.get_fignums())
    rc = cli.main(["figures", "--results", str(results), "--out", str(out)])
    printed = capsys.readouterr().out
    assert rc == 3  # the documented status for a figure not drawn
    assert f"figure good: {out / 'good.pdf'}" in printed
    assert "figure broken: NOT DRAWN: drawing failed (ValueError): matmul" in printed
    assert (out / "good.png").stat().st_size > 0 and not (out / "broken.png").exists()
    text = (out / "index.md").read_text()
    assert "## Not drawn by this call" in text
    assert "- `broken`: drawing failed (ValueError): matmul: size 8 is different from 10" in text
    assert "(`good`)" in text and "(`broken`)" not in text.split("## Not drawn")[0]
    assert len(st.plt.get_fignums()) == open_before  # the broken figure's canvas was closed


@pytest.mark.parametrize("k", [3, 10, 25])
def test_fig6_colours_any_number_of_components(tmp_path, k):
    from types import SimpleNamespace

    import numpy as np

    from gmmlimit.paper_figures import fig6_hardening

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 2))
    logits = rng.normal(size=(3, 60, k)) * np.array([0.1, 2.0, 50.0])[:, None, None]
    resp = np.exp(logits - logits.max(axis=2, keepdims=True))
    record = SimpleNamespace(
        X=X,
        means=X[:k],
        snap_sigma2=np.array([1.0, 0.1, 0.0]),
        snap_resp=resp / resp.sum(axis=2, keepdims=True),
        critical_sigma2=1.0,
    )
    run = SimpleNamespace(records={"ok": record})
    paths = fig6_hardening.draw({"responsibilities": run}, tmp_path)
    assert sorted(p.name for p in paths) == ["fig6_hardening.pdf", "fig6_hardening.png"]
    colours = fig6_hardening.component_colours(k)
    assert colours.shape == (k, 3) and len({tuple(c) for c in colours}) == k  # all distinct


def test_redrawn_pdf_is_byte_identical(tmp_path):
    # the PDF embedded its creation date, so drawing the same figure again changed its bytes
    import time

    from gmmlimit.paper_figures import _style

    pdfs = []
    for i in range(2):
        fig, ax = _style.plt.subplots()
        ax.plot([0, 1, 2], [1, 0, 2])
        (pdf, _png) = _style.save(fig, tmp_path / str(i), "same")
        pdfs.append(pdf.read_bytes())
        time.sleep(1.1)  # the creation date has one-second resolution
    assert pdfs[0] == pdfs[1]
    assert b"/CreationDate" not in pdfs[0]


def test_provenance_note_clears_a_legend_below_the_axes(tmp_path):
    # the note sat at figure coordinates (0, 0), right on a legend placed under the axes (fig1)
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from gmmlimit.paper_figures import _style as st

    note = "Not the default config: drawn from run 20990101T000000Z-abc of `loglik` " + "x=1, " * 30
    fig, axes = st.figure(ncols=2, wide=True)
    for ax in axes[0]:
        for i in range(5):
            ax.plot([0, 1, 2], [i, i + 1, i], color="black", label=f"line {i}")
        ax.set_xlabel("x label")
        ax.set_title("title")
    handles, labels = axes[0][0].get_legend_handles_labels()
    legend = fig.legend(handles, labels, loc="lower center", ncol=5, bbox_to_anchor=(0.5, -0.1))
    fig.tight_layout()
    with st.provenance_note(note):
        (_pdf, png) = st.save(fig, tmp_path, "noted")
    (text,) = [t for t in fig.texts if t.get_text() == note]
    renderer = FigureCanvasAgg(fig).get_renderer()  # save closed the figure: a new canvas
    box = text.get_window_extent(renderer)
    others = [legend.get_window_extent(renderer)]
    others += [ax.get_tightbbox(renderer) for ax in fig.axes]
    for other in others:
        assert not box.overlaps(other), (box, other)
    # and the saved file shows it: the note is the only red in the picture
    image = st.plt.imread(png)[..., :3]
    red = (image[..., 0] > 0.5) & (image[..., 1] < 0.2) & (image[..., 2] < 0.2)
    assert red.sum() > 500 and np.nonzero(red.any(axis=1))[0].max() < image.shape[0] - 1
