"""The paper's one door to saved results: which runs it reads, their fields, and the figures.

Everything that knows how experiments store their results lives here: the paper reads runs
through the loader API of :mod:`gmmlimit.experiments` (``select_runs``, ``load_run``, typed
records per data set) and draws figures through :mod:`gmmlimit.paper_figures`, so a change of
either changes this module only.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["PaperFigure", "PaperRun", "draw_figures", "experiment_texts", "read_runs"]


@dataclasses.dataclass(frozen=True)
class PaperRun:
    """One finished experiment run, as the paper reads it.

    Attributes:
        name: the experiment's name.
        run_id: the run folder's name.
        setting: ``"quick"`` or ``"full"``.
        overrides: config keys whose value differs from the setting's default config.
        meta: the run's provenance (versions, device, E-step, git revision, times, failures...).
        summary: the run's one-line summary, as written with the results.
        records: ``{data set or variant: typed record}`` in run order.
        config: the run's config as a dict.
        source: the loaded run (what figure scripts draw from).
    """

    name: str
    run_id: str
    setting: str
    overrides: tuple[str, ...]
    meta: Mapping[str, Any]
    summary: str
    records: Mapping[str, Any]
    config: Mapping[str, Any]
    source: Any = dataclasses.field(default=None, repr=False, compare=False)

    def subjects(self) -> list[str]:
        """The data sets (or variants) the run measured, in the run's order."""
        return list(self.records)

    def field(self, subject: str, *path: str) -> Any:
        """A field of one data set's record, following ``path`` through nested records and dicts.

        Example: ``run.field("digits", "slope")``, ``run.field("digits", "by_dtype", "float32",
        "threshold")``.

        Raises:
            KeyError: naming the run and the missing field (results of an older version).
        """
        if subject not in self.records:
            raise KeyError(f"run {self.run_id} of {self.name!r} has no data set {subject!r}.")
        value = self.records[subject]
        for step in path:
            if isinstance(value, Mapping) and step in value:
                value = value[step]
            elif dataclasses.is_dataclass(value) and hasattr(value, step):
                value = getattr(value, step)
            else:
                raise KeyError(
                    f"run {self.run_id} of {self.name!r} has no field {'.'.join(path)!r} for "
                    f"{subject!r}; rerun `gmmlimit run {self.name}`."
                )
        return value

    def value(self, name: str) -> Any:
        """A config value of the run (e.g. a tolerance of its verified statement)."""
        if name not in self.config:
            raise KeyError(f"run {self.run_id} of {self.name!r} has no config key {name!r}.")
        return self.config[name]


@dataclasses.dataclass(frozen=True)
class PaperFigure:
    """One drawn figure.

    Attributes:
        name: the figure's name.
        title: its short title.
        caption: its caption.
        image: the PNG file drawn.
        runs: ``{experiment: run_id}`` of the runs it was drawn from.
    """

    name: str
    title: str
    caption: str
    image: Path
    runs: Mapping[str, str]


def read_runs(
    results_dir: str | os.PathLike, quick: bool | None = None
) -> tuple[dict[str, PaperRun], bool]:
    """The latest default-config run of every experiment, all from one setting.

    Args:
        results_dir: the results root.
        quick: read quick runs (True), full runs (False), or (None) the setting whose default
            runs cover more experiments (full on a tie); the two are never mixed.

    Returns:
        ``(runs, quick)``: ``{experiment: PaperRun}`` in run order and the setting read.

    Raises:
        FileNotFoundError: naming the experiments without a finished run and the command to run.
    """
    from gmmlimit import experiments as ex

    root = Path(results_dir)
    names = list(ex.registry())
    quick_read, entries = ex.select_runs(root, names, quick)
    missing = [n for n in names if n not in entries]
    if missing:
        setting = "quick" if quick_read else "full"
        flag = " --quick" if quick_read else " --full"
        raise FileNotFoundError(
            f"no finished {setting} run with the default config in {root}/ of: "
            f"{', '.join(missing)}; run `gmmlimit reproduce{flag} --results {root}` first."
        )
    runs: dict[str, PaperRun] = {}
    for name in names:
        run = ex.load_run(root, name, entries[name]["run_id"])
        runs[name] = PaperRun(
            name=name,
            run_id=run.run_id,
            setting=run.setting,
            overrides=tuple(sorted(run.overrides)),
            meta=run.meta,
            summary=run.summary.strip(),
            records=run.records,
            config=run.config,
            source=run,
        )
    return runs, quick_read


def experiment_texts() -> dict[str, tuple[str, str]]:
    """``{experiment: (description, verified statement)}``, both written with the experiment."""
    from gmmlimit import experiments as ex

    out = {}
    for name, spec in ex.registry().items():
        doc = (spec.check.__doc__ or "") if spec.check is not None else ""
        statement = " ".join(doc.strip().split("\n\n")[0].split())
        out[name] = (" ".join(spec.description.split()), statement)
    return out


_ENTRY = re.compile(r"^## Figure \d+: .*\(`(?P<name>[^`]+)`\)\s*$")
_RUN_LINE = re.compile(r"^- `(?P<experiment>[^`]+)`: run `(?P<run_id>[^`]+)`")


def drawn_entries(index_text: str) -> dict[str, dict[str, str]]:
    """``{figure: {experiment: run_id}}`` of the figures a figures index lists as drawn.

    Each figure drawn by a ``gmmlimit figures`` call has its own section in ``index.md``
    (``## Figure N: title (`name`)``) whose lines ``- `experiment`: run `ID` (...)`` name the
    runs it was drawn from; figures under "Not drawn by this call" (a section without a
    figure's name) are not listed.
    """
    entries: dict[str, dict[str, str]] = {}
    current: str | None = None
    for line in index_text.splitlines():
        if line.startswith("## "):
            match = _ENTRY.match(line)
            current = match.group("name") if match else None
            if current is not None:
                entries[current] = {}
        elif current is not None and (match := _RUN_LINE.match(line)):
            entries[current][match.group("experiment")] = match.group("run_id")
    return entries


def _reuse_figure(
    spec: Any, figures_dir: Path, out_dir: Path, runs: Mapping[str, PaperRun]
) -> Path:
    """Copy a figure drawn earlier by ``gmmlimit figures`` after checking it came from ``runs``.

    The figure's own entry in ``figures_dir/index.md`` must list it as drawn and name, for
    every experiment it reads, the run the paper reads; and its PNG must not be newer than the
    index (a ``gmmlimit figures`` interrupted after moving new files in, before the index).

    Raises:
        FileNotFoundError: when the PNG or the index is missing.
        ValueError: when the figure is not listed as drawn, was drawn from other runs, or is
            newer than its index.
    """
    png = figures_dir / f"{spec.name}.png"
    index = figures_dir / "index.md"
    if not png.exists() or not index.exists():
        raise FileNotFoundError(
            f"{figures_dir}/ holds no figure {spec.name!r} with an index.md; draw the figures "
            f"with `gmmlimit figures` or leave out the figures folder."
        )
    redraw = "redraw them with `gmmlimit figures` (or leave out --figures)."
    entry = drawn_entries(index.read_text()).get(spec.name)
    if entry is None:
        raise ValueError(
            f"{index} does not list figure {spec.name!r} as drawn (the last `gmmlimit figures` "
            f"there did not draw it, so {png.name} may come from other runs); {redraw}"
        )
    stale = [
        f"run {runs[n].run_id} of {n!r} (its entry names "
        f"{'run ' + entry[n] if n in entry else 'no run of it'})"
        for n in spec.needs
        if n in runs and entry.get(n) != runs[n].run_id
    ]
    if stale:
        raise ValueError(
            f"{figures_dir}/ was not drawn from the runs the paper reads: figure {spec.name!r} "
            f"does not name {'; '.join(stale)}; {redraw}"
        )
    if png.stat().st_mtime > index.stat().st_mtime:
        raise ValueError(
            f"{png} is newer than {index} (a `gmmlimit figures` stopped before writing its "
            f"index, or a copy that did not keep the times), so its runs are unknown; {redraw}"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / png.name
    shutil.copyfile(png, target)
    return target


def draw_figures(
    results_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    runs: Mapping[str, PaperRun],
    figures_dir: str | os.PathLike | None = None,
) -> list[PaperFigure]:
    """Every registered figure, drawn from the runs the paper reads, as PNG files in ``out_dir``.

    Args:
        results_dir: the results root the runs were read from.
        out_dir: where the PNG files go.
        runs: the runs the paper reads (from :func:`read_runs`); figures are drawn from them.
        figures_dir: None draws every figure afresh; a folder written by ``gmmlimit figures``
            is reused instead, after checking that each figure's own entry in its index names the
            runs in ``runs`` (:func:`_reuse_figure`).

    Raises:
        FileNotFoundError: when a figure's results (or a reused figure) are missing.
        ValueError: when a reused figure was drawn from other runs than ``runs``.
    """
    from gmmlimit import experiments as ex
    from gmmlimit import paper_figures

    out = Path(out_dir)
    figures = []
    for spec in paper_figures.registry().values():
        missing = [n for n in spec.needs if n not in runs]
        if missing:
            raise FileNotFoundError(
                f"figure {spec.name!r} needs results of {', '.join(missing)}; run "
                f"`gmmlimit run {missing[0]}` first."
            )
        if figures_dir is None:
            # drawn from exactly the runs whose numbers the paper prints
            entries = {n: ex.find_run(results_dir, runs[n].run_id) for n in spec.needs}
            paths, _ = paper_figures.draw_figure(spec, results_dir, out, entries=entries)
            png = next(Path(p) for p in paths if Path(p).suffix == ".png")
        else:
            png = _reuse_figure(spec, Path(figures_dir), out, runs)
        figures.append(
            PaperFigure(
                name=spec.name,
                title=spec.title or spec.name,
                caption=" ".join(spec.caption.split()),
                image=png,
                runs={name: runs[name].run_id for name in spec.needs},
            )
        )
    return figures
