"""`gmmlimit paper`: the PDF is typeset from the quick results, and its numbers are theirs."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from gmmlimit import cli, experiments, paper_figures
from gmmlimit._paper import fmt, read_runs

pypdf = pytest.importorskip("pypdf")
pytest.importorskip("typst")


@pytest.fixture(scope="session")
def quick(tmp_path_factory):
    from test_experiments import quick_run  # the one shared quick run of the session

    return quick_run(tmp_path_factory)


@pytest.fixture(scope="module")
def paper(quick, tmp_path_factory):
    out = tmp_path_factory.mktemp("paper") / "article.pdf"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        # reuse the figures that `reproduce` drew from these runs
        args = ["paper", "--results", str(quick["results"]), "--out", str(out)]
        rc = cli.main([*args, "--figures", str(quick["figures"])])
    reader = pypdf.PdfReader(out)
    text = "\n".join(page.extract_text() for page in reader.pages)
    text = text.replace("\u2212", "-")  # typst sets a leading hyphen-minus as a minus sign
    return {
        "rc": rc,
        "printed": printed.getvalue(),
        "pdf": out,
        "text": text,
        "flat": re.sub(r"\s+", "", text),
    }


def _raw_runs(results: Path) -> dict[str, dict]:
    """Each experiment's record arrays, read from its run folder's records.npz (not via the paper).

    Keys are ``<data set>/<field>`` (nested records add ``/<key>`` levels), values numpy arrays.
    """
    runs = {}
    for entry in json.loads((results / "index.json").read_text())["runs"]:
        folder = results / entry["path"]
        with np.load(folder / "records.npz") as arrays:
            data = {k: arrays[k] for k in arrays.files}
        order = json.loads((folder / "scalars.json").read_text())["order"]
        config = json.loads((folder / "config.json").read_text())
        runs[entry["name"]] = {
            "run_id": entry["run_id"],
            "data": data,
            "order": order,
            "config": config,
        }
    return runs


def _v(run: dict, *path: str):
    value = run["data"]["/".join(path)]
    return value.item() if value.ndim == 0 else value


def test_paper_command_writes_a_pdf_and_prints_its_path(paper):
    assert paper["rc"] == 0
    assert paper["printed"].strip() == str(paper["pdf"])
    assert paper["pdf"].read_bytes().startswith(b"%PDF")
    sources = paper["pdf"].parent / "article_sources"
    assert (sources / "paper.json").exists() and (sources / "paper.typ").exists()
    assert len(list((sources / "figures").glob("*.png"))) == len(paper_figures.registry())


def test_paper_numbers_equal_the_results(quick, paper):
    """Each table row reads "<predicted> <measured>", both formatted from the records on disk."""
    runs = _raw_runs(quick["results"])
    flat = paper["flat"]
    pairs: list[tuple[str, str]] = []
    r = runs["responsibilities"]
    for s in r["order"]:
        held = _v(r, s, "held")
        pairs.append((s, fmt(int(np.size(held))) + fmt(int(np.sum(held)))))
        pairs.append((s, fmt(_v(r, s, "slope_predicted")) + fmt(_v(r, s, "slope"))))
    g = runs["loglik"]
    for s in g["order"]:
        pairs.append((s, fmt(_v(g, s, "J")) + fmt(float(_v(g, s, "ltilde")[-1]))))
    p = runs["precision"]
    for s in p["order"]:
        for dtype in ("float32", "float64"):
            pt = (s, "by_dtype", dtype)
            onset = f"{fmt(_v(p, *pt, 'x_soft_max'))},{fmt(_v(p, *pt, 'x_hard_min'))}"
            pairs.append((f"{s}-{dtype}", fmt(_v(p, *pt, "threshold")) + onset))
            nan = fmt(_v(p, *pt, "naive_nan_onset_predicted")) + fmt(_v(p, *pt, "naive_nan_onset"))
            pairs.append((f"{s}-{dtype}", nan))
    t = runs["phase_transition"]
    for s in t["order"]:
        split = f"{fmt(_v(t, s, 'first_split_after'))}to{fmt(_v(t, s, 'first_split_before'))}"
        pairs.append((s, fmt(_v(t, s, "lambda_max")) + split))
    c = runs["convergence_rate"]
    for s in c["order"]:
        pairs.append(
            (s, "atmost" + fmt(c["config"]["rate_tol"]) + fmt(_v(c, s, "max_rel_error_above")))
        )
    missing = [(s, pair) for s, pair in pairs if pair not in flat]
    assert not missing, missing
    for name, run in runs.items():
        assert run["run_id"] in flat, name  # every run read is named
        assert name in paper["text"]


def test_paper_lists_every_figure_caption_and_the_environment(quick, paper):
    flat = paper["flat"]
    for spec in paper_figures.registry().values():
        assert re.sub(r"\s+", "", spec.title) in flat
        assert re.sub(r"\s+", "", spec.caption)[:80] in flat
    meta = json.loads(next(quick["results"].glob("responsibilities/*/meta.json")).read_text())
    assert f"jax{meta['versions']['jax']}" in flat
    assert f"numpy{meta['versions']['numpy']}" in flat
    assert "Setting:quick" in flat


def test_paper_follows_edited_results(quick, tmp_path):
    """The numbers are read, not typed: change a result and the rebuilt paper shows the change.

    The changed ``records.npz`` gets its digest recorded in ``meta.json``, as a run that had
    computed that number would have it (an edit alone is refused: test_result_digests.py).
    """
    import hashlib

    from gmmlimit.experiments._store import FILE_DIGESTS

    results = tmp_path / "results"
    shutil.copytree(quick["results"], results)
    folder = next(results.glob("responsibilities/*/records.npz")).parent
    with np.load(folder / "records.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    name = json.loads((folder / "scalars.json").read_text())["order"][0]
    arrays[f"{name}/slope"] = np.asarray(-9.876543)
    np.savez(folder / "records.npz", **arrays)
    meta = json.loads((folder / "meta.json").read_text())
    meta["versions"]["jax"] = "9.8.7"
    digest = hashlib.sha256((folder / "records.npz").read_bytes()).hexdigest()
    meta[FILE_DIGESTS]["records.npz"] = digest
    (folder / "meta.json").write_text(json.dumps(meta))
    out = tmp_path / "edited.pdf"
    args = ["paper", "--results", str(results), "--out", str(out)]
    assert cli.main([*args, "--figures", str(quick["figures"])]) == 0
    text = "\n".join(p.extract_text() for p in pypdf.PdfReader(out).pages).replace("\u2212", "-")
    assert "-9.877" in text and "jax 9.8.7" in text


def test_paper_draws_its_figures_from_the_runs_it_reads(quick, tmp_path, monkeypatch):
    one = paper_figures.registry()["fig6_hardening"]
    monkeypatch.setattr(paper_figures, "registry", lambda: {one.name: one})
    out = tmp_path / "drawn.pdf"
    assert cli.main(["paper", "--results", str(quick["results"]), "--out", str(out)]) == 0
    assert (tmp_path / "drawn_sources" / "figures" / "fig6_hardening.png").stat().st_size > 5000
    flat = re.sub(r"\s+", "", "\n".join(p.extract_text() for p in pypdf.PdfReader(out).pages))
    run_id = _raw_runs(quick["results"])["responsibilities"]["run_id"]
    assert f"(Runs:responsibilities{run_id}.)" in flat
    assert "Figures:1." in flat


def test_figures_from_other_runs_are_refused(quick, tmp_path, capsys):
    stale = tmp_path / "stale"
    stale.mkdir()
    for png in quick["figures"].glob("*.png"):
        (stale / png.name).write_bytes(png.read_bytes())
    (stale / "index.md").write_text("# Figures\n\nrun `20000101T000000000000Z-000000000000`\n")
    out = tmp_path / "a.pdf"
    args = ["paper", "--results", str(quick["results"]), "--out", str(out), "--figures", str(stale)]
    assert cli.main(args) == 2
    assert "gmmlimit figures" in capsys.readouterr().err and not out.exists()


def test_missing_results_refused_and_good_pdf_kept(tmp_path, capsys):
    out = tmp_path / "article.pdf"
    out.write_bytes(b"%PDF-good")
    rc = cli.main(["paper", "--results", str(tmp_path / "none"), "--out", str(out)])
    assert rc == 3
    err = capsys.readouterr().err
    assert "responsibilities" in err and "gmmlimit reproduce" in err
    assert out.read_bytes() == b"%PDF-good"
    assert [p.name for p in tmp_path.iterdir()] == ["article.pdf"]


def test_failed_typesetting_keeps_the_good_pdf(quick, tmp_path, monkeypatch):
    import typst

    def broken(*args, **kwargs):
        raise RuntimeError("typesetting failed")

    monkeypatch.setattr(typst, "compile", broken)
    out = tmp_path / "article.pdf"
    out.write_bytes(b"%PDF-good")
    args = ["paper", "--results", str(quick["results"]), "--out", str(out)]
    with pytest.raises(RuntimeError, match="typesetting failed"):
        cli.main([*args, "--figures", str(quick["figures"])])
    assert out.read_bytes() == b"%PDF-good"
    assert [p.name for p in tmp_path.iterdir()] == ["article.pdf"]


def test_read_runs_never_mixes_settings(quick):
    runs, was_quick = read_runs(quick["results"])  # no full runs there: quick ones are read
    assert was_quick and {r.setting for r in runs.values()} == {"quick"}
    assert list(runs) == list(experiments.registry())
    assert all(r.overrides == () for r in runs.values())
    with pytest.raises(FileNotFoundError, match="no finished full run") as err:
        read_runs(quick["results"], quick=False)
    assert "responsibilities" in str(err.value) and "gmmlimit reproduce" in str(err.value)


def test_paper_refuses_a_non_pdf_output(tmp_path, capsys):
    rc = cli.main(["paper", "--results", str(tmp_path), "--out", str(tmp_path / "a.txt")])
    assert rc == 2 and ".pdf" in capsys.readouterr().err


def test_fmt_prints_integers_exactly_and_reals_to_four_digits():
    assert fmt(160) == "160" and fmt(np.int64(7)) == "7"
    assert fmt(-1.2303805462048703) == "-1.23"
    assert fmt(np.float64(708.3964185322641)) == "708.4"
    assert fmt(7.19216339484241e-06) == "7.192e-06"
    assert fmt(float("nan")) == "NaN"
    for bad in (True, "1.0", np.zeros(2)):
        with pytest.raises(ValueError, match="not a real number"):
            fmt(bad)
