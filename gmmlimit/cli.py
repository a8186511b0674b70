"""The ``gmmlimit`` command: list, run and reproduce experiments, draw the paper figures.

Usage::

    gmmlimit list [-v]
    gmmlimit run NAME [--quick | --full] [--config FILE.json] [--set key=value ...]
                      [--data PATH] [--variant NAME|module:attr] [--results DIR] [--no-bar]
    gmmlimit runs [NAME] [--results DIR]
    gmmlimit figures [--results DIR] [--out DIR] [--quick | --full] [--run ID ...]
    gmmlimit reproduce [--quick | --full] [--results DIR] [--out DIR] [--no-bar] [--paper PDF]
    gmmlimit paper [--results DIR] [--out FILE.pdf] [--figures DIR] [--quick | --full]

``run`` and ``reproduce`` share one default setting, the quick one; ``--full`` is the paper
setting. Progress bars and messages go to stderr, results and summaries to stdout.

Exit status: 0 when every verified statement held, 1 when one failed, 2 on a bad command line,
config, data file or path, or a stored results file that cannot be read (named, with what to
do; all refused before any work; a damaged ``results/index.json`` included, for ``figures``
too), a run already in progress in another process, or memory (host or device) running out
during a run; 3 when a figure is not drawn (its results are missing, its run's files
unreadable, or its drawing failed; the others are drawn) or the paper's results are missing;
130 when interrupted (``run``: rerun the same command to resume from the finished sweep points;
``reproduce``: rerun it to reuse the experiments it finished and resume the one it stopped);
141 when stdout is closed early (as in ``gmmlimit list | head -1``), quietly, as Unix tools end
on SIGPIPE.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main"]


def _specs():
    from gmmlimit import experiments

    return experiments.registry()


def _print(msg: str = "") -> None:
    print(msg, flush=True)


def _cmd_list(args: argparse.Namespace) -> int:
    import dataclasses

    from gmmlimit import paper_figures

    _print("experiments:")
    for name, spec in _specs().items():
        _print(f"  {name:<22} {spec.description.splitlines()[0] if spec.description else ''}")
        if args.verbose:
            for f in dataclasses.fields(spec.config_type):
                quick = f" (quick: {spec.quick[f.name]!r})" if f.name in spec.quick else ""
                _print(f"      {f.name} = {f.default!r}{quick}")
    _print("figures:")
    for name, fig in paper_figures.registry().items():
        _print(f"  {name:<22} {fig.title} [reads {', '.join(fig.needs)}]")
    return 0


def _load_config_file(path: str | None) -> dict:
    if path is None:
        return {}

    def unique(pairs: list[tuple[str, Any]]) -> dict:
        keys = [key for key, _ in pairs]
        twice = sorted({key for key in keys if keys.count(key) > 1})
        if twice:
            raise ValueError(f"config file {path} gives {', '.join(map(repr, twice))} twice.")
        return dict(pairs)

    try:
        data = json.loads(Path(path).read_text(), object_pairs_hook=unique)
    except FileNotFoundError:
        raise ValueError(f"config file {path} does not exist.") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"config file {path} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} must hold a JSON object of config keys.")
    return data


def _journal_path(results: str, quick: bool) -> Path:
    """Where ``reproduce`` notes the runs it finished until it ends (see :func:`_run_many`)."""
    return Path(results) / f".reproduce-{'quick' if quick else 'full'}.json"


def _read_journal(path: Path) -> dict[str, str]:
    """``{experiment: run_id}`` of an unfinished ``reproduce``; {} when none or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    runs = data.get("runs") if isinstance(data, dict) else None
    if not isinstance(runs, dict):
        return {}
    return {k: v for k, v in runs.items() if isinstance(k, str) and isinstance(v, str)}


def _run_many(
    names: Sequence[str],
    overrides: dict[str, dict],
    quick: bool,
    results: str,
    progress_enabled: bool = True,
    journal: Path | None = None,
) -> tuple[int, list[str]]:
    """Validate every config first, then run each; returns (n_failures, summary lines).

    With a ``journal`` (``reproduce``), every finished run is noted in that file, and a run it
    already notes is reused instead of computed again when it is still what the experiment
    would compute now (same config, setting, code fingerprint, data and device:
    :func:`gmmlimit.experiments.reuse_verdict`), so a rerun of an interrupted ``reproduce``
    resumes it; stderr says why a noted run is computed again. The caller deletes the journal
    when the command ends.
    """
    from gmmlimit import experiments
    from gmmlimit.experiments import Progress, make_config, reuse_verdict, run_experiment
    from gmmlimit.experiments._runner import check_resumable

    specs = _specs()
    configs = {}
    experiments.enable_x64()  # first: validating a config may look at its data in float64
    for name in names:
        _check_name(name, specs)
        configs[name] = make_config(specs[name], overrides.get(name, {}), quick=quick)
    noted = _read_journal(journal) if journal is not None else {}
    reused = {}
    for name in names:
        if name in noted:
            run, why = reuse_verdict(specs[name], configs[name], results, noted[name], quick=quick)
            if run is None:
                print(
                    f"{name}: computing again: the run {noted[name]} noted before the "
                    f"interruption {why}",
                    file=sys.stderr,
                )
            reused[name] = run
    if len(names) > 1:  # one experiment: run_experiment checks it before its own work
        for name in names:
            if reused.get(name) is None:
                check_resumable(specs[name], configs[name], results, quick=quick)
    failures = 0
    lines = []
    for name in names:
        t0 = time.perf_counter()
        run = reused.get(name)
        if run is not None:
            failed = list(run.meta.get("check_failures") or [])
            how = "; reused: finished before the interruption"
            print(f"{name}: reusing {run.path}, finished before the interruption", file=sys.stderr)
        else:
            run, failed = run_experiment(
                specs[name],
                configs[name],
                results,
                quick=quick,
                progress=Progress(enabled=progress_enabled, prefix=f"{name}: "),
            )
            resumed = run.meta["points_resumed"]
            total = resumed + run.meta["points_computed"]
            how = f"; resumed {resumed}/{total} points" if resumed else ""
            if journal is not None:
                from gmmlimit.experiments._store import atomic_write_json

                noted = {k: v for k, v in noted.items() if k in names and k != name}
                noted[name] = run.run_id
                atomic_write_json(journal, {"runs": noted})
        status = "ok" if not failed else f"FAILED ({len(failed)})"
        line = f"{run.summary}  [{status}; {time.perf_counter() - t0:.1f} s; {run.path}{how}]"
        lines.append(line)
        _print(line)
        for msg in failed:
            _print(f"    FAILED: {msg}")
        failures += len(failed)
    return failures, lines


def _check_name(name: str, specs: dict) -> None:
    """Refuse an experiment name that is not registered (ValueError listing the known ones)."""
    if name not in specs:
        raise ValueError(f"unknown experiment {name!r}; known: {', '.join(specs)}.")


def _check_folder_target(path: str, flag: str) -> None:
    """Refuse an output folder that could not be created or written, before any work.

    Raises:
        ValueError: naming ``flag`` and the path when it is an existing file, lies under a
            file, or its nearest existing folder is not writable (no permission, or no file
            can be made there: ``/proc``, a read-only mount).
    """
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise ValueError(f"{flag} {target} is an existing file, not a folder.")
    existing = next(p for p in (target, *target.parents) if p.exists())
    if not existing.is_dir():
        raise ValueError(f"{flag} {target} cannot be created: {existing} is a file.")
    from gmmlimit._paper import cannot_write_in

    why = cannot_write_in(existing)
    if why is not None:
        raise ValueError(f"{flag} {target}: {why}.")


def _with_data(spec, overrides: dict, data: str | None) -> dict:
    """Add the data file to the overrides: its resolved path, and the data set to run on.

    The file comes from ``--data PATH``, ``--set data=PATH`` or a ``--config`` file's
    ``"data"``; in every case, unless ``datasets`` is given too, the run is on the file alone
    (a ``datasets`` without the file's data set is refused by the config's validation).
    """
    from gmmlimit.experiments._data import data_name

    if data is not None:
        if not spec.accepts_data:
            raise ValueError(
                f"{spec.name}: --data is not accepted (it runs on its own generated data); "
                "experiments that take --data: "
                + ", ".join(n for n, s in _specs().items() if s.accepts_data)
                + "."
            )
        overrides = {**overrides, "data": data}
    if overrides.get("data") not in (None, "None", "none"):
        overrides = {**overrides, "data": str(Path(str(overrides["data"])).resolve())}
        if "datasets" in _field_names(spec):
            overrides.setdefault("datasets", data_name(overrides["data"]))
    return overrides


def _field_names(spec) -> set[str]:
    import dataclasses

    return {f.name for f in dataclasses.fields(spec.config_type)}


def _cmd_run(args: argparse.Namespace) -> int:
    from gmmlimit.experiments import parse_set

    specs = _specs()
    _check_name(args.name, specs)
    _check_folder_target(args.results, "--results")  # before: 'R/<name>/<id>.partial: ...'
    overrides = {**_load_config_file(args.config), **parse_set(args.set or [])}
    overrides = _with_data(specs[args.name], overrides, args.data)
    if args.variant is not None:
        if "variant" not in _field_names(specs[args.name]):
            takes = [n for n, s in specs.items() if "variant" in _field_names(s)]
            raise ValueError(
                f"{args.name}: --variant is not accepted; experiments that take it: "
                f"{', '.join(takes)}."
            )
        overrides["variant"] = args.variant
    failures, _ = _run_many(
        [args.name], {args.name: overrides}, not args.full, args.results, not args.no_bar
    )
    return 1 if failures else 0


def _cmd_runs(args: argparse.Namespace) -> int:
    from gmmlimit.experiments import list_runs

    if args.name is not None:
        _check_name(args.name, _specs())
    runs = list_runs(args.results, args.name)
    if not runs:
        _print(f"no finished runs in {args.results}/")
        return 0
    for r in runs:
        shown = ", ".join(
            f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in sorted(r.get("overrides", {}).items())
        )
        config = f"overrides: {shown}" if shown else "default config"
        setting = "quick" if r["quick"] else "full"
        _print(f"{r['run_id']}  {r['name']:<18} {setting:<5} {config}")
    return 0


def _draw(results: str, out: str, quick: bool | None, run_ids: Sequence[str] = ()) -> int:
    from gmmlimit import paper_figures

    written, missing = paper_figures.draw_all(results, out, quick=quick, run_ids=run_ids)
    for name, paths in written.items():
        _print(f"figure {name}: {', '.join(str(p) for p in paths)}")
    for name, msg in missing.items():
        if msg.startswith(paper_figures.DRAWING_FAILED):
            label = "NOT DRAWN"
        elif msg.startswith(paper_figures.RESULTS_UNREADABLE):
            label = "UNREADABLE RESULTS"
        else:
            label = "MISSING RESULTS"
        _print(f"figure {name}: {label}: {msg}")
    if written:
        _print(f"figures index: {Path(out) / 'index.md'}")
    else:
        _print(f"no figure drawn; {out}/ left as it was")
    return 3 if missing else 0


def _cmd_figures(args: argparse.Namespace) -> int:
    quick = True if args.quick else (False if args.full else None)
    _check_folder_target(args.out, "--out")  # before drawing: 'afile: File exists' after it
    return _draw(args.results, args.out, quick, args.run or ())


def _cmd_reproduce(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    quick = not args.full
    # every output path is checked before the experiments run (minutes), not after
    _check_folder_target(args.results, "--results")
    _check_folder_target(args.out, "--out")
    if args.paper:
        from gmmlimit._paper import check_output

        try:
            check_output(args.paper)
        except ImportError as err:
            raise ValueError(f"--paper {args.paper}: {err} (or --paper '' to skip it)") from None
    names = list(_specs())
    journal = _journal_path(args.results, quick)
    failures, lines = _run_many(
        names, {}, quick, args.results, progress_enabled=not args.no_bar, journal=journal
    )
    status = _draw(args.results, args.out, quick)
    paper = None
    if status == 0 and not failures and args.paper:
        from gmmlimit._paper import build_paper

        paper = build_paper(args.results, args.paper, quick=quick, figures_dir=args.out)
    _print("")
    _print(f"summary ({'quick' if quick else 'full'} setting):")
    for line in lines:
        _print(f"  {line}")
    _print(
        f"reproduce: {len(names)} experiments, {failures} failed statement(s), "
        f"{time.perf_counter() - t0:.1f} s wall"
    )
    if paper is not None:
        _print(f"paper: {paper}")
    # it ended (not interrupted, no error): a rerun computes every experiment again
    journal.unlink(missing_ok=True)
    if failures:
        return 1
    return status


def _cmd_paper(args: argparse.Namespace) -> int:
    from gmmlimit._paper import build_paper

    quick = True if args.quick else (False if args.full else None)
    try:
        path = build_paper(args.results, args.out, quick=quick, figures_dir=args.figures)
    except FileNotFoundError as err:
        print(f"gmmlimit: error: {err}", file=sys.stderr)
        return 3
    _print(str(path))
    return 0


_INTERRUPTED_RUN = "interrupted; finished sweep points are kept, rerun the same command to resume."
_INTERRUPTED_REPRODUCE = (
    "interrupted; the experiments already finished and the finished sweep points of the one "
    "running are kept: rerun the same command to resume (it reuses those runs while the code, "
    "config and data are unchanged, and computes the rest)."
)
_INTERRUPTED_DRAW = (
    "interrupted; no figure file is half written (each is moved into place whole): figures "
    "already moved are new, the others and index.md as they were; rerun the same command."
)
_INTERRUPTED_PAPER = "interrupted; the paper's PDF is as it was; rerun the same command."
_INTERRUPTED_READ = "interrupted."


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gmmlimit",
        description="K-means as the small-variance limit of EM: experiments and figures.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list experiments and figures")
    p.add_argument("-v", "--verbose", action="store_true", help="also show every config key")
    p.set_defaults(func=_cmd_list, interrupted=_INTERRUPTED_READ)

    p = sub.add_parser(
        "run",
        help="run one experiment (quick setting by default, as reproduce)",
        description="Run one experiment; an interrupted run of the same command resumes.",
    )
    p.add_argument("name", help="experiment name (see `gmmlimit list`)")
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--quick",
        action="store_true",
        help="the quick setting, minutes on a CPU (the default, as for reproduce)",
    )
    g.add_argument("--full", action="store_true", help="the full (paper) setting")
    p.add_argument("--config", help="JSON file of config overrides")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one config key")
    p.add_argument(
        "--data",
        metavar="PATH",
        help="run on your own data: an (N, D) array in .npy, .npz or .csv (K from --set k=K); "
        "its sha256, shape and dtype go into meta.json",
    )
    p.add_argument(
        "--variant",
        metavar="NAME|module:attr",
        help="the variant of a variant study: a name in gmmlimit.variants (gamma, poisson, ...) "
        "or your own Variant as an importable package.module:attr",
    )
    p.add_argument("--results", default="results", help="results folder (default: results)")
    p.add_argument("--no-bar", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_run, interrupted=_INTERRUPTED_RUN)

    p = sub.add_parser("runs", help="list the finished runs of a results folder")
    p.add_argument("name", nargs="?", help="only this experiment")
    p.add_argument("--results", default="results", help="results folder (default: results)")
    p.set_defaults(func=_cmd_runs, interrupted=_INTERRUPTED_READ)

    p = sub.add_parser(
        "figures",
        help="draw every paper figure from saved results",
        description="Draw every figure from the latest default-config runs of one setting "
        "(quick or full, never mixed; full when it covers as many figures), or from runs named "
        "with --run, which set the setting for the others. A figure that cannot be drawn is "
        "listed in the index (exit status 3); a call that draws nothing leaves the output folder "
        "as it was.",
    )
    p.add_argument("--results", default="results", help="results folder (default: results)")
    p.add_argument("--out", default="figures", help="figures folder (default: figures)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="use only quick runs")
    g.add_argument("--full", action="store_true", help="use only full runs")
    p.add_argument(
        "--run",
        action="append",
        metavar="ID",
        help="draw that experiment's figures from this run (see `gmmlimit runs`); repeatable",
    )
    p.set_defaults(func=_cmd_figures, interrupted=_INTERRUPTED_DRAW)

    p = sub.add_parser(
        "reproduce", help="run every experiment, draw every figure, typeset the paper"
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="the quick setting (the default)")
    g.add_argument("--full", action="store_true", help="the full (paper) setting")
    p.add_argument("--results", default="results", help="results folder (default: results)")
    p.add_argument("--out", default="figures", help="figures folder (default: figures)")
    p.add_argument("--no-bar", action="store_true", help="no progress bars")
    p.add_argument(
        "--paper",
        default="paper/gmmlimit.pdf",
        help="the PDF article typeset when every statement held ('' to skip; "
        "default: paper/gmmlimit.pdf)",
    )
    p.set_defaults(func=_cmd_reproduce, interrupted=_INTERRUPTED_REPRODUCE)

    p = sub.add_parser("paper", help="typeset the PDF article from saved results")
    p.add_argument("--results", default="results", help="results folder (default: results)")
    p.add_argument("--out", default="paper/gmmlimit.pdf", help="the PDF to write")
    p.add_argument("--figures", help="reuse figures drawn from the same runs by `gmmlimit figures`")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="read only quick runs")
    g.add_argument("--full", action="store_true", help="read only full runs")
    p.set_defaults(func=_cmd_paper, interrupted=_INTERRUPTED_PAPER)
    return parser


def _stdout_closed() -> int:
    """Quiet end when the reader of stdout went away (``gmmlimit list | head -1``)."""
    # Point stdout at /dev/null so the interpreter's last flush raises nothing more.
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is no real file (a test's capture)
        pass
    finally:
        os.close(devnull)
    return 141


def _interrupted(args: argparse.Namespace, console: bool) -> int:
    """Report an interrupt; as the console command, end the process at once.

    When ``console`` (``main`` called with no argv: the ``gmmlimit`` command), the process ends
    with ``os._exit(130)`` after flushing stdout and stderr, so interpreter shutdown (where XLA
    mid-compilation could segfault, exit 139) never runs. This is safe: every results, figure
    and paper file is written to a temporary file and moved into place whole, and the
    ``finally``/``except`` clean-ups of those writes (temporary files and folders, locks) have
    run while the interrupt travelled up to here; the open lock files close with the process.
    """
    print(f"gmmlimit: {args.interrupted}", file=sys.stderr)
    if not console:
        return 130
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(130)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gmmlimit`` console script; returns the exit status.

    Args:
        argv: the arguments after ``gmmlimit``; None (the console script) reads ``sys.argv``,
            and then an interrupt ends the process at once with status 130 (see
            :func:`_interrupted`); a call with a list returns 130 instead.

    Returns:
        The exit status (see the module docstring).
    """
    console = argv is None
    args = _parser().parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:
        return _stdout_closed()
    except ValueError as err:
        print(f"gmmlimit: error: {err}", file=sys.stderr)
        return 2
    except MemoryError as err:  # a traceback and status 1 ("a statement failed") before
        _out_of_memory(args, str(err) or "an allocation failed")
        return 2
    except OSError as err:
        if isinstance(err, FileNotFoundError) and err.filename is None:
            # the loader API's "no finished run ...; run `gmmlimit run ...`": results missing
            print(f"gmmlimit: error: {err}", file=sys.stderr)
            return 3
        # a path the command line named that cannot be used: --config a folder, --results a
        # file, a folder without write permission, ...; refused like any other bad argument
        if err.filename is None:
            msg = str(err)
        else:
            paths = [str(err.filename)]
            if err.filename2 is not None:
                paths.append(str(err.filename2))
            msg = f"{' -> '.join(paths)}: {err.strerror or err}"
        print(f"gmmlimit: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return _interrupted(args, console)
    except RuntimeError as err:
        # XLA's "RESOURCE_EXHAUSTED: Out of memory ..." (jax.errors.JaxRuntimeError) on the
        # device: a 38-line traceback and status 1 ("a statement failed") before
        if not _is_device_oom(err):
            raise
        _out_of_memory(args, str(err).strip().splitlines()[0][:300])
        return 2


def _is_device_oom(err: BaseException) -> bool:
    """Whether ``err`` is JAX's out-of-memory error (``RESOURCE_EXHAUSTED``) of a device."""
    jax_errors = sys.modules.get("jax.errors")  # JAX raised it only if JAX was imported
    runtime = getattr(jax_errors, "JaxRuntimeError", None)
    return runtime is not None and isinstance(err, runtime) and "RESOURCE_EXHAUSTED" in str(err)


def _out_of_memory(args: argparse.Namespace, what: str) -> None:
    """Report an allocation that failed, with what to do (the caller exits with status 2)."""
    advice = (
        "reduce the sizes in the config (n_sigma2, n_samples, n_restarts, the data sets: "
        "`gmmlimit list -v` lists the keys) or run on a device with more memory"
    )
    if args.command in ("run", "reproduce"):
        advice += "; the finished sweep points of the run it stopped are kept"
    print(f"gmmlimit: error: out of memory: {what.rstrip('.')}; {advice}.", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
