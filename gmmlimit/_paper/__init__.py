"""The paper that rebuilds itself: a PDF article typeset with typst from saved results alone.

:func:`build_paper` reads the latest finished run of every experiment (one setting, never mixed),
draws every figure from those results, formats every number from them, and typesets the article
(``paper.typ``, shipped as package data) with the ``typst`` package: no TeX install.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import tempfile
from importlib import resources
from pathlib import Path

from ._content import document, fmt, table_rows
from ._reader import PaperFigure, PaperRun, draw_figures, experiment_texts, read_runs

__all__ = [
    "PaperFigure",
    "PaperRun",
    "build_paper",
    "cannot_write_in",
    "check_output",
    "document",
    "fmt",
    "read_runs",
    "table_rows",
]

TEMPLATE = "paper.typ"


def _timestamp(runs: dict[str, PaperRun]) -> int | None:
    """The latest ``finished`` time of the runs (the PDF's date, so rebuilds are identical)."""
    times = []
    for run in runs.values():
        stamp = run.meta.get("finished")
        if isinstance(stamp, str):
            try:
                times.append(_dt.datetime.fromisoformat(stamp))
            except ValueError:
                continue
    return int(max(times).timestamp()) if times else None


def cannot_write_in(folder: Path) -> str | None:
    """Why no file can be made in the existing ``folder``; None when one can.

    As root, ``os.access`` says yes to ``/proc`` and read-only mounts, so a file is tried there.
    """
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"no permission to write in {folder}"
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        return f"cannot write in {folder} ({err.strerror or err})"
    return None


def check_output(out: str | os.PathLike) -> Path:
    """Refuse a paper output that cannot be written, before any work.

    Args:
        out: the PDF to write.

    Returns:
        ``out`` as a Path.

    Raises:
        ValueError: naming ``out`` when it does not end in ``.pdf``, is an existing folder,
            lies under an existing file, or its nearest existing folder is one where no file
            can be written (no permission; or, as root too, ``/proc`` or a read-only mount).
        ImportError: when the ``typst`` package is not installed (``pip install typst``).
    """
    out = Path(out)
    if out.suffix.lower() != ".pdf":
        raise ValueError(f"the paper's output must be a .pdf file; got {str(out)!r}.")
    if out.is_dir():
        raise ValueError(f"the paper's output {out} is an existing folder, not a .pdf file.")
    existing = next(p for p in out.parents if p.exists())  # "." at the latest
    if not existing.is_dir():
        raise ValueError(
            f"the paper's output {out} cannot be written: {existing} is a file, not a folder."
        )
    # the PDF, its build folder and <stem>_sources/ are all made in that folder: fail now, not
    # after every figure was drawn with a message naming a temporary file
    why = cannot_write_in(existing)
    if why is not None:
        raise ValueError(f"the paper's output {out} cannot be written: {why}.")
    try:
        import typst  # noqa: F401
    except ImportError:
        raise ImportError(
            "gmmlimit paper typesets with the typst package: `pip install typst`."
        ) from None
    return out


def build_paper(
    results_dir: str | os.PathLike = "results",
    out: str | os.PathLike = "paper/gmmlimit.pdf",
    quick: bool | None = None,
    figures_dir: str | os.PathLike | None = None,
) -> Path:
    """Typeset the article from the saved results.

    Next to the PDF, ``<stem>_sources/`` keeps what it was made from: the template, the JSON
    document of every number, and the figures. A failed build leaves an earlier PDF untouched.

    Args:
        results_dir: the results root written by ``gmmlimit run`` / ``gmmlimit reproduce``.
        out: the PDF to write (its folder is created).
        quick: read quick runs (True), full runs (False), or (None) full runs when every
            experiment has one, else quick runs.
        figures_dir: None draws every figure afresh from the runs read; a folder written by
            ``gmmlimit figures`` from those same runs is reused instead (each figure's own
            entry in its ``index.md`` must name the runs read; a ValueError otherwise).

    Returns:
        The path of the written PDF.

    Raises:
        ValueError: when ``out`` does not end in ``.pdf``.
        FileNotFoundError: naming the experiments whose results (or figures) are missing.
        ImportError: when the ``typst`` package is not installed (``pip install typst``).
    """
    out = check_output(out)
    import typst

    runs, quick_read = read_runs(results_dir, quick)
    out.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=f".{out.stem}.", dir=out.parent))
    mask = os.umask(0)
    os.umask(mask)
    build.chmod(0o777 & ~mask)  # mkdtemp makes 0700 folders; the sources are shared like results
    try:
        figures = draw_figures(results_dir, build / "figures", runs, figures_dir)
        figures = [
            PaperFigure(f.name, f.title, f.caption, f.image.relative_to(build), f.runs)
            for f in figures
        ]
        doc = document(runs, figures, experiment_texts(), quick_read)
        (build / "paper.json").write_text(json.dumps(doc, indent=1) + "\n")
        template = resources.files(__name__).joinpath(TEMPLATE).read_text()
        (build / TEMPLATE).write_text(template)
        pdf = build / "paper.pdf"
        typst.compile(
            str(build / TEMPLATE),
            output=str(pdf),
            root=str(build),
            sys_inputs={"data": "paper.json"},
            timestamp=_timestamp(runs),
        )
        pdf.chmod(0o666 & ~mask)
        os.replace(pdf, out)
        sources = out.parent / f"{out.stem}_sources"
        if sources.exists():
            shutil.rmtree(sources)
        os.replace(build, sources)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    return out
