"""The paper's one door to saved results: which runs it reads, their fields, and the figures.

Everything that knows how experiments store their results (today the ``results/<experiment>/
<run>/`` folders of :mod:`experiments._framework` and the ``"<subject>__<field>"`` keys of their
data) lives here, so that a change of the record format changes this module only.
"""

from __future__ import annotations

import dataclasses
import os
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
        meta: the run's provenance (versions, device, git revision, times, check failures...).
        summary: the run's one-line summary, as written with the results.
        data: the run's scalars and arrays.
        source: the record the run was read from (what figure scripts draw from).
    """

    name: str
    run_id: str
    setting: str
    overrides: tuple[str, ...]
    meta: Mapping[str, Any]
    summary: str
    data: Mapping[str, Any]
    source: Any = dataclasses.field(default=None, repr=False, compare=False)

    def subjects(self) -> list[str]:
        """The data sets (or variants) the run measured, in the run's order."""
        for key in ("datasets", "variants"):
            if key in self.data:
                return list(self.data[key])
        raise KeyError(f"run {self.run_id} of {self.name!r} lists no data sets or variants.")

    def field(self, subject: str, name: str) -> Any:
        """The value of field ``name`` for one data set (or variant) of the run.

        Raises:
            KeyError: naming the run and the missing field (results of an older version).
        """
        key = f"{subject}__{name}"
        if key not in self.data:
            raise KeyError(
                f"run {self.run_id} of {self.name!r} has no field {name!r} for {subject!r}; "
                f"rerun `gmmlimit run {self.name}`."
            )
        return self.data[key]

    def value(self, name: str) -> Any:
        """A run-wide value (not per data set), e.g. a tolerance."""
        if name not in self.data:
            raise KeyError(f"run {self.run_id} of {self.name!r} has no value {name!r}.")
        return self.data[name]


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


def _setting(quick: bool) -> str:
    return "quick" if quick else "full"


def _read_setting(results_dir: Path, quick: bool) -> dict[str, PaperRun]:
    """The latest finished run of every experiment in one setting (all must have one)."""
    import experiments
    from experiments._framework import config_to_dict, load_latest, make_config

    runs: dict[str, PaperRun] = {}
    missing: list[str] = []
    for name, spec in experiments.registry().items():
        try:
            run = load_latest(name, results_dir, quick=quick)
        except FileNotFoundError:
            missing.append(name)
            continue
        default = config_to_dict(make_config(spec, {}, quick=quick))
        overrides = tuple(sorted(k for k in default if run.config.get(k) != default[k]))
        runs[name] = PaperRun(
            name=name,
            run_id=run.run_id,
            setting=_setting(quick),
            overrides=overrides,
            meta=run.meta,
            summary=(run.path / "summary.txt").read_text().strip(),
            data=run.data,
            source=run,
        )
    if missing:
        flag = " --quick" if quick else ""
        raise FileNotFoundError(
            f"no finished {_setting(quick)} run in {results_dir}/ of: {', '.join(missing)}; "
            f"run `gmmlimit reproduce{flag} --results {results_dir}` first."
        )
    return runs


def read_runs(
    results_dir: str | os.PathLike, quick: bool | None = None
) -> tuple[dict[str, PaperRun], bool]:
    """The latest finished run of every experiment, all from one setting.

    Args:
        results_dir: the results root.
        quick: read quick runs (True), full runs (False), or (None) full runs when every
            experiment has one, else quick runs; the two settings are never mixed.

    Returns:
        ``(runs, quick)``: ``{experiment: PaperRun}`` in run order and the setting read.

    Raises:
        FileNotFoundError: naming the experiments without a finished run and the command to run.
    """
    root = Path(results_dir)
    if quick is not None:
        return _read_setting(root, quick), quick
    try:
        return _read_setting(root, False), False
    except FileNotFoundError as full_err:
        try:
            return _read_setting(root, True), True
        except FileNotFoundError as quick_err:
            raise FileNotFoundError(f"{full_err} Quick setting: {quick_err}") from None


def experiment_texts() -> dict[str, tuple[str, str]]:
    """``{experiment: (description, verified statement)}``, both written with the experiment."""
    import experiments

    out = {}
    for name, spec in experiments.registry().items():
        doc = (spec.check.__doc__ or "") if spec.check is not None else ""
        statement = " ".join(doc.strip().split("\n\n")[0].split())
        out[name] = (" ".join(spec.description.split()), statement)
    return out


def _reuse_figure(
    spec: Any, figures_dir: Path, out_dir: Path, runs: Mapping[str, PaperRun]
) -> Path:
    """Copy a figure drawn earlier by ``gmmlimit figures`` after checking it came from ``runs``."""
    png = figures_dir / f"{spec.name}.png"
    index = figures_dir / "index.md"
    if not png.exists() or not index.exists():
        raise FileNotFoundError(
            f"{figures_dir}/ holds no figure {spec.name!r} with an index.md; draw the figures "
            f"with `gmmlimit figures` or leave out the figures folder."
        )
    text = index.read_text()
    stale = [runs[n].run_id for n in spec.needs if n in runs and runs[n].run_id not in text]
    if stale:
        raise ValueError(
            f"{figures_dir}/ was not drawn from the runs the paper reads (figure {spec.name!r} "
            f"does not name run {', '.join(stale)}); redraw them with `gmmlimit figures`."
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / png.name
    shutil.copyfile(png, target)
    return target


def draw_figures(
    out_dir: str | os.PathLike,
    runs: Mapping[str, PaperRun],
    figures_dir: str | os.PathLike | None = None,
) -> list[PaperFigure]:
    """Every registered figure, drawn from the runs the paper reads, as PNG files in ``out_dir``.

    Args:
        out_dir: where the PNG files go.
        runs: the runs the paper reads (from :func:`read_runs`); figures are drawn from them.
        figures_dir: None draws every figure afresh; a folder written by ``gmmlimit figures``
            is reused instead, after checking that its index names the runs in ``runs``.

    Raises:
        FileNotFoundError: when a figure's results (or a reused figure) are missing.
        ValueError: when a reused figure was drawn from other runs than ``runs``.
    """
    import paper_figures

    out = Path(out_dir)
    figures = []
    for spec in paper_figures.registry().values():
        if figures_dir is None:
            missing = [n for n in spec.needs if n not in runs]
            if missing:
                raise FileNotFoundError(
                    f"figure {spec.name!r} needs results of {', '.join(missing)}; run "
                    f"`gmmlimit run {missing[0]}` first."
                )
            out.mkdir(parents=True, exist_ok=True)
            try:  # drawn from exactly the runs whose numbers the paper prints
                paths = spec.draw({n: runs[n].source for n in spec.needs}, out)
            except KeyError as err:
                raise FileNotFoundError(
                    f"figure {spec.name!r}: the results of {', '.join(spec.needs)} lack a field "
                    f"({err}); rerun `gmmlimit run {spec.needs[0]}`."
                ) from None
            png = next(Path(p) for p in paths if Path(p).suffix == ".png")
        else:
            png = _reuse_figure(spec, Path(figures_dir), out, runs)
        drawn_from = {name: runs[name].run_id for name in spec.needs if name in runs}
        figures.append(
            PaperFigure(
                name=spec.name,
                title=spec.title or spec.name,
                caption=" ".join(spec.caption.split()),
                image=png,
                runs=drawn_from,
            )
        )
    return figures
