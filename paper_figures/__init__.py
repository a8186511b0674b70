"""Paper figures: one module per figure, each with a module-level ``FIGURE`` (a FigureSpec).

Figure scripts read results only (typed records, through the loader API of
:mod:`gmmlimit.experiments`), never recompute, and draw with the one shared style of
:mod:`._style`. ``registry()`` finds every module ``gmmlimit/paper_figures/<name>.py`` with a
``FIGURE``; :func:`draw_all` draws them and writes the figures index (Markdown, with each
caption and the runs behind it).

Which runs: by default, for every experiment the latest finished run with the default config of
one setting, quick or full, never both (:func:`gmmlimit.experiments.select_runs`); explicit run
ids override that per experiment and set the setting for the others (named runs of disagreeing
settings are refused), and a figure drawn from a run with overrides (or a user's data file) says
so under the figure, in its caption and in its index entry; a run made by code other than the
current code (its recorded code fingerprint is not the one the current code gives) is drawn and
named in the index, with its git revision (:func:`code_note`). :func:`draw_all` draws into a
temporary folder and moves each finished file into place, so a failed call leaves the previous
figures and index as they were; a figure whose drawing raises is listed as not drawn, with its
error, and does not stop the others.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import pkgutil
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

__all__ = [
    "DRAWING_FAILED",
    "RESULTS_UNREADABLE",
    "FigureSpec",
    "code_note",
    "current_code",
    "draw_all",
    "draw_figure",
    "failure_note",
    "index_markdown",
    "override_note",
    "registry",
    "short_revision",
]


DRAWING_FAILED = "drawing failed"
"""How :func:`draw_all` starts the reason of a figure whose drawing raised."""

RESULTS_UNREADABLE = "results unreadable"
"""How :func:`draw_all` starts the reason of a figure whose run has a damaged file."""


@dataclasses.dataclass(frozen=True)
class FigureSpec:
    """One paper figure.

    Attributes:
        name: the figure's name (its module name; files are ``<name>.pdf`` and ``<name>.png``).
        needs: experiment names whose results the figure reads.
        draw: ``draw(results: dict[name, RunResult], out_dir) -> list[Path]`` (written files).
        caption: what the figure shows, how to read it, the data and config behind it.
        title: a short title for the index.
        order: position in the index (ties: by name).
        describe: optional ``describe(results) -> str``, a sentence added to the caption in the
            index for the runs drawn (e.g. which variant a variant study ran).
    """

    name: str
    needs: tuple[str, ...]
    draw: Callable[..., list]
    caption: str
    title: str = ""
    order: int = 100
    describe: Callable[[dict], str] | None = None


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


def _fmt_value(value: object) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def override_note(runs: dict) -> str | None:
    """The warning a figure carries when one of its runs is not its setting's default config.

    Args:
        runs: ``{experiment: RunResult}``.

    Returns:
        One sentence naming each such run and its overrides (and data file), or None.
    """
    parts = []
    for name, run in runs.items():
        if run.default_config:
            continue
        shown = {k: v for k, v in run.overrides.items() if k != "data"}
        text = ", ".join(f"{k}={_fmt_value(v)}" for k, v in sorted(shown.items()))
        data = run.meta.get("data")
        if data:
            own = f"data file {Path(data['path']).name} (sha256 {data['sha256'][:12]})"
            text = f"{own}, {text}" if text else own
        if not text:  # no overrides, but a default changed since the run was made
            text = "the defaults of its time, which are no longer today's"
        parts.append(f"run {run.run_id} of `{name}` ({run.setting} setting) with {text}")
    if not parts:
        return None
    return "Not the default config: drawn from " + "; ".join(parts) + "."


def failure_note(runs: dict) -> str | None:
    """The warning a figure carries when a verified statement failed in one of its runs.

    Args:
        runs: ``{experiment: RunResult}``.

    Returns:
        One sentence naming each such run and its first failed check (with how many failed),
        or None.
    """
    parts = []
    for name, run in runs.items():
        failures = list(run.meta.get("check_failures") or [])
        if failures:
            more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
            parts.append(f"run {run.run_id} of `{name}`: {failures[0]}{more}")
    if not parts:
        return None
    return "A verified statement failed in " + "; ".join(parts) + "."


def current_code(names: Iterable[str]) -> dict[str, str | None]:
    """The code fingerprint the current code gives each experiment, as a new run would record it.

    :func:`gmmlimit.experiments.code_fingerprint`: the source of every ``gmmlimit`` module, the
    experiment's own modules, the numeric libraries' versions and which CPU E-step runs.

    Args:
        names: experiment names.

    Returns:
        ``{name: fingerprint}``; None for a name that is no registered experiment.
    """
    from gmmlimit import experiments

    specs = experiments.registry()
    return {
        name: experiments.code_fingerprint(specs[name]) if name in specs else None
        for name in dict.fromkeys(names)
    }


def short_revision(revision: object) -> str:
    """A git revision as notes name it: 12 hex digits, keeping ``-dirty`` (None: unrecorded)."""
    if not revision:
        return "unrecorded"
    text = str(revision)
    dirty = text.endswith("-dirty")
    return text.removesuffix("-dirty")[:12] + ("-dirty" if dirty else "")


def _stale(runs: Mapping[str, object], current: Mapping[str, str | None]) -> list[tuple]:
    """``(name, run, now)`` of the runs whose recorded code fingerprint differs from ``now``."""
    out = []
    for name, run in runs.items():
        recorded, now = run.meta.get("code_fingerprint"), current.get(name)
        if recorded and now and recorded != now:
            out.append((name, run, now))
    return out


def code_note(runs: dict, current: Mapping[str, str | None]) -> str | None:
    """The note a figure carries when one of its runs was made by code other than the current.

    A run records the code fingerprint of the code that made it (``meta.json``'s
    ``code_fingerprint``); drawing an older run is legitimate, but is said.

    Args:
        runs: ``{experiment: RunResult}``.
        current: ``{experiment: fingerprint}`` the current code gives (:func:`current_code`).

    Returns:
        One sentence naming each such run, its git revision and both fingerprints, or None.
    """
    parts = [
        f"run {run.run_id} of `{name}` (git {short_revision(run.meta.get('git_revision'))}, "
        f"code fingerprint {run.meta.get('code_fingerprint')}; the current code's is {now})"
        for name, run, now in _stale(runs, current)
    ]
    if not parts:
        return None
    return "Made by code other than the current code: " + "; ".join(parts) + "."


def _missing_message(spec: FigureSpec, name: str, results_dir: object, quick: bool) -> str:
    flag = "--quick" if quick else "--full"
    return (
        f"figure {spec.name!r} needs results of experiment {name!r}: no finished default-config "
        f"{'quick' if quick else 'full'} run in {results_dir}/; run `gmmlimit run {name} {flag} "
        f"--results {results_dir}` (or pick a run with --run ID)."
    )


def draw_figure(
    spec: FigureSpec,
    results_dir: str | os.PathLike = "results",
    out_dir: str | os.PathLike = "figures",
    quick: bool | None = None,
    run_ids: Sequence[str] = (),
    entries: dict[str, dict] | None = None,
) -> tuple[list[Path], dict]:
    """Load the results a figure needs and draw it into ``out_dir``.

    Args:
        spec: the figure.
        results_dir: the results root.
        out_dir: where ``<name>.pdf`` and ``<name>.png`` go.
        quick: the setting of the default runs (None: the one with more default runs).
        run_ids: explicit runs (overrides allowed) for some experiments.
        entries: index entries already chosen (as :func:`gmmlimit.experiments.select_runs`
            returns them); when given, ``run_ids`` is not used and ``quick`` only names the
            setting in the missing-results message.

    Returns:
        ``(paths, results)``: files written and the RunResults used.

    Raises:
        FileNotFoundError: naming the experiment and the command to run when its results are
            missing or were written by an older version.
        UnreadableResultError: naming the experiment and the damaged file of its run.
        ValueError: from :func:`gmmlimit.experiments.select_runs` (an unknown run id, one of
            an experiment the figure does not read, or named runs of disagreeing settings).
    """
    from gmmlimit.experiments import UnreadableResultError, load_run, select_runs

    from ._style import provenance_note

    if entries is None:
        quick, entries = select_runs(results_dir, spec.needs, quick, run_ids)
    results = {}
    for name in spec.needs:
        if name not in entries:
            raise FileNotFoundError(_missing_message(spec, name, results_dir, bool(quick)))
        try:
            results[name] = load_run(results_dir, name, entries[name]["run_id"])
        except FileNotFoundError as err:
            raise FileNotFoundError(
                f"figure {spec.name!r} needs results of experiment {name!r}: {err}"
            ) from None
        except UnreadableResultError as err:
            raise UnreadableResultError(
                f"figure {spec.name!r} needs results of experiment {name!r}: {err}"
            ) from None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with provenance_note(override_note(results)):
        paths = [Path(p) for p in spec.draw(results, out)]
    return paths, results


def _run_line(name: str, run: object) -> str:
    overrides = run.overrides
    if overrides:
        shown = ", ".join(f"{k}={_fmt_value(v)}" for k, v in sorted(overrides.items()))
        config = f"**overrides: {shown}**"
    else:
        config = "default config"
    estep = str(run.meta.get("estep", "unrecorded")).split(":", 1)[0]
    return (
        f"- `{name}`: run `{run.run_id}` ({run.setting} setting, {config}, seed "
        f"{run.meta.get('seed')}, E-step {estep}, git {run.meta.get('git_revision')})"
    )


def _code_lines(used: dict[str, dict], current: Mapping[str, str | None]) -> list[str]:
    """The index's notes on the code behind the runs drawn (none when all is the current code).

    Runs made by code other than the current code (their recorded code fingerprint differs
    from the one the current code gives) are named with their git revision; runs of several
    git revisions are said too, with whether their code is nonetheless the current code's (a
    commit that changed only documentation, say).
    """
    runs = {r.run_id: (name, r) for rs in used.values() for name, r in rs.items()}
    stale = [(name, r) for name, r in runs.values() if _stale({name: r}, current)]
    lines = []
    if stale:
        named = "; ".join(
            f"`{name}` run {r.run_id} (git {short_revision(r.meta.get('git_revision'))})"
            for name, r in stale
        )
        lines += [
            f"**Drawn from {len(stale)} run(s) made by code other than the current code (the "
            "code fingerprint in their meta.json differs from the one the current code gives: "
            "the gmmlimit source, the experiment's modules, the numeric libraries' versions or "
            f"the E-step changed since): {named}. Rerun them (`gmmlimit reproduce`, or `gmmlimit "
            "run NAME`) to draw the current code's results.**",
            "",
        ]
    revisions = {r.meta.get("git_revision") for _, r in runs.values()}
    known = sorted(short_revision(rev) for rev in revisions if rev)
    if len(known) > 1:  # e.g. one experiment rerun after a code change
        recorded = all(r.meta.get("code_fingerprint") for _, r in runs.values())
        checked = all(current.get(name) for name, _ in runs.values())
        same = (
            " Every run's code fingerprint is the current code's: the revisions differ only "
            "outside the code the experiments run."
            if recorded and checked and not stale
            else ""
        )
        lines += [
            f"**Drawn from runs of {len(known)} code revisions ({', '.join(known)}): each "
            f"figure's runs below name their own.{same}**",
            "",
        ]
    return lines


def index_markdown(
    specs: list[FigureSpec],
    used: dict[str, dict] | None = None,
    missing: dict[str, str] | None = None,
    current: Mapping[str, str | None] | None = None,
) -> str:
    """The figures index: title, image link and caption of every figure.

    Args:
        specs: the figures drawn, in order.
        used: optional ``{figure: {experiment: RunResult}}``; adds the runs behind each figure
            (and a warning in the caption when one has overrides, when a verified statement
            failed in it, or when it was made by code other than the current code).
        missing: optional ``{figure: reason}`` for figures not drawn by this call.
        current: ``{experiment: code fingerprint}`` of the current code; None computes it
            (:func:`current_code`) for the experiments whose runs record one.
    """
    lines = [
        "# Figures",
        "",
        "Every figure is drawn from saved results only, by `gmmlimit figures` (or as the last step "
        "of `gmmlimit reproduce`), into `figures/<name>.pdf` and `figures/<name>.png`.",
        "",
    ]
    if used and current is None:
        current = current_code(
            name for rs in used.values() for name, r in rs.items() if r.meta.get("code_fingerprint")
        )
    current = current or {}
    if used:
        settings = sorted({r.setting for runs in used.values() for r in runs.values()})
        lines += [f"Drawn from {' and '.join(settings)}-setting runs.", ""]
        lines += _code_lines(used, current)
    # each figure keeps its number in the registry (docs/figures.md), whichever are drawn
    fixed = {name: i for i, name in enumerate(registry(), 1)}
    for i, spec in enumerate(specs, 1):
        runs = (used or {}).get(spec.name, {})
        number = fixed.get(spec.name, i)
        lines += [f"## Figure {number}: {spec.title or spec.name} (`{spec.name}`)", ""]
        lines += [f"![{spec.name}]({spec.name}.png)", ""] if used is not None else []
        notes = [override_note(runs), failure_note(runs), code_note(runs, current)] if runs else []
        about = f" {spec.describe(runs)}" if runs and spec.describe is not None else ""
        lines += [spec.caption.strip() + about + "".join(f" **{n}**" for n in notes if n), ""]
        lines += [f"Reads: {', '.join(f'`{n}`' for n in spec.needs)}.", ""]
        if runs:
            lines += [_run_line(name, run) for name, run in runs.items()]
            lines.append("")
    if missing:
        lines += ["## Not drawn by this call", ""]
        lines += [f"- `{name}`: {msg}" for name, msg in missing.items()]
        lines.append("")
    return "\n".join(lines)


def draw_all(
    results_dir: str | os.PathLike = "results",
    out_dir: str | os.PathLike = "figures",
    quick: bool | None = None,
    names: list[str] | None = None,
    run_ids: Sequence[str] = (),
) -> tuple[dict[str, list[Path]], dict[str, str]]:
    """Draw every registered figure (or ``names``) and write ``out_dir/index.md``.

    One setting serves every figure (see :func:`gmmlimit.experiments.select_runs`). Files are
    drawn into a temporary folder beside ``out_dir`` and moved into place one by one
    (``os.replace``) once drawn; ``index.md`` is written last, the same way, and only when at
    least one figure was drawn, so a call that draws nothing leaves ``out_dir`` untouched.

    A figure whose results are missing or unreadable, or whose drawing raises, is not drawn: it
    keeps its old files, the others are drawn, and the index lists it under "Not drawn by this
    call" with the reason (a drawing error starts with :data:`DRAWING_FAILED`, a damaged results
    file with :data:`RESULTS_UNREADABLE`).

    Returns:
        ``(written, missing)``: files per drawn figure, and the reason per figure not drawn
        (its results were missing, or drawing it failed).

    Raises:
        ValueError: an unknown figure name or run id, a run id of an experiment no chosen
            figure reads, or named runs whose settings disagree (with each other or ``quick``).
    """
    from gmmlimit.experiments import UnreadableResultError, select_runs
    from gmmlimit.experiments._store import atomic_write_bytes

    from ._style import plt  # the Agg backend first

    specs = registry()
    unknown = [n for n in names or [] if n not in specs]
    if unknown:
        raise ValueError(f"unknown figure(s) {', '.join(unknown)}; known: {', '.join(specs)}.")
    chosen = [specs[n] for n in names] if names else list(specs.values())
    needs = list(dict.fromkeys(n for s in chosen for n in s.needs))
    quick, entries = select_runs(results_dir, needs, quick, run_ids)
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    written: dict[str, list[Path]] = {}
    missing: dict[str, str] = {}
    used: dict[str, dict] = {}
    try:
        drawn: dict[str, list[Path]] = {}
        for spec in chosen:
            before = set(plt.get_fignums())
            try:
                drawn[spec.name], used[spec.name] = draw_figure(
                    spec, results_dir, tmp, quick=quick, entries=entries
                )
            except FileNotFoundError as err:
                missing[spec.name] = str(err)
            except UnreadableResultError as err:  # a damaged file of a chosen run
                missing[spec.name] = f"{RESULTS_UNREADABLE}: {err}"
            except Exception as err:  # one broken figure must not stop the others
                missing[spec.name] = f"{DRAWING_FAILED} ({type(err).__name__}): {err}"
                for num in set(plt.get_fignums()) - before:  # the failed figure's canvas
                    plt.close(num)
        if drawn:
            out.mkdir(parents=True, exist_ok=True)
            mode = 0o666 & ~_umask()
            for name, paths in drawn.items():
                written[name] = []
                for path in paths:
                    os.chmod(path, mode)
                    os.replace(path, out / path.name)
                    written[name].append(out / path.name)
            names_used = (n for runs in used.values() for n in runs)
            text = index_markdown(
                [s for s in chosen if s.name in drawn], used, missing, current_code(names_used)
            )
            atomic_write_bytes(out / "index.md", (text + "\n").encode())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return written, missing


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
