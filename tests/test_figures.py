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
