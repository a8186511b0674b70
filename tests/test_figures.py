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
