"""Paper figures: one module per figure, each with a module-level ``FIGURE`` (a FigureSpec).

Figure scripts read results only (through :func:`experiments.load_latest`), never recompute, and
draw with the one shared style of :mod:`paper_figures._style`. ``registry()`` finds every module
``paper_figures/<name>.py`` with a ``FIGURE``; :func:`draw_all` draws them and writes the figures
index (Markdown, with each caption).
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import pkgutil
from collections.abc import Callable
from pathlib import Path

__all__ = ["FigureSpec", "draw_all", "draw_figure", "index_markdown", "registry"]


@dataclasses.dataclass(frozen=True)
class FigureSpec:
    """One paper figure.

    Attributes:
        name: the figure's name (its module name; files are ``<name>.pdf`` and ``<name>.png``).
        needs: experiment names whose latest results the figure reads.
        draw: ``draw(results: dict[name, RunResult], out_dir) -> list[Path]`` (written files).
        caption: what the figure shows, how to read it, the data and config behind it.
        title: a short title for the index.
        order: position in the index (ties: by name).
    """

    name: str
    needs: tuple[str, ...]
    draw: Callable[..., list]
    caption: str
    title: str = ""
    order: int = 100


def registry() -> dict[str, FigureSpec]:
    """Every figure module's ``FIGURE``, keyed by name, in index order."""
    found: list[FigureSpec] = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        spec = getattr(module, "FIGURE", None)
        if isinstance(spec, FigureSpec):
            found.append(spec)
    found.sort(key=lambda s: (s.order, s.name))
    return {spec.name: spec for spec in found}


def draw_figure(
    spec: FigureSpec,
    results_dir: str | os.PathLike = "results",
    out_dir: str | os.PathLike = "figures",
    quick: bool | None = None,
) -> tuple[list[Path], dict]:
    """Load the results a figure needs and draw it.

    Returns:
        ``(paths, results)``: files written and the RunResults used.

    Raises:
        FileNotFoundError: naming the experiment to run when its results are missing or were
            written by an older version that lacks a field the figure reads.
    """
    from gmmlimit.experiments import load_latest

    results = {}
    for name in spec.needs:
        try:
            results[name] = load_latest(name, results_dir, quick=quick)
        except FileNotFoundError as err:
            raise FileNotFoundError(
                f"figure {spec.name!r} needs results of experiment {name!r}: {err}"
            ) from None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    try:
        paths = [Path(p) for p in spec.draw(results, out)]
    except KeyError as err:
        names = ", ".join(spec.needs)
        raise FileNotFoundError(
            f"figure {spec.name!r}: the results of {names} lack a field ({err}); they were "
            f"written by an older version: rerun `gmmlimit run {spec.needs[0]}`."
        ) from None
    return paths, results


def index_markdown(specs: list[FigureSpec], used: dict[str, dict] | None = None) -> str:
    """The figures index: title, image link and caption of every figure.

    Args:
        specs: the figures, in order.
        used: optional ``{figure: {experiment: RunResult}}``; adds the runs behind each figure.
    """
    lines = [
        "# Figures",
        "",
        "Every figure is drawn from saved results only, by `gmmlimit figures` (or as the last step "
        "of `gmmlimit reproduce`), into `figures/<name>.pdf` and `figures/<name>.png`.",
        "",
    ]
    for i, spec in enumerate(specs, 1):
        lines += [f"## Figure {i}: {spec.title or spec.name} (`{spec.name}`)", ""]
        lines += [f"![{spec.name}]({spec.name}.png)", ""] if used is not None else []
        lines += [spec.caption.strip(), ""]
        lines += [f"Reads: {', '.join(f'`{n}`' for n in spec.needs)}.", ""]
        if used is not None and spec.name in used:
            for name, run in used[spec.name].items():
                setting = "quick" if run.meta.get("quick") else "full"
                lines.append(
                    f"- `{name}`: run `{run.run_id}` ({setting} setting, seed "
                    f"{run.meta.get('seed')}, git {run.meta.get('git_revision')})"
                )
            lines.append("")
    return "\n".join(lines)


def draw_all(
    results_dir: str | os.PathLike = "results",
    out_dir: str | os.PathLike = "figures",
    quick: bool | None = None,
    names: list[str] | None = None,
) -> tuple[dict[str, list[Path]], dict[str, str]]:
    """Draw every registered figure (or ``names``) and write ``out_dir/index.md``.

    Returns:
        ``(written, missing)``: files per drawn figure, and the error message per figure whose
        results were missing.
    """
    specs = registry()
    chosen = [specs[n] for n in names] if names else list(specs.values())
    written: dict[str, list[Path]] = {}
    missing: dict[str, str] = {}
    used: dict[str, dict] = {}
    for spec in chosen:
        try:
            written[spec.name], used[spec.name] = draw_figure(spec, results_dir, out_dir, quick)
        except FileNotFoundError as err:
            missing[spec.name] = str(err)
    drawn = [s for s in chosen if s.name in written]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "index.md").write_text(index_markdown(drawn, used) + "\n")
    return written, missing
