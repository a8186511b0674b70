"""Running experiments: progress, resumable sweeps, the code fingerprint and the run itself.

:func:`run_experiment` turns a spec and a validated config into one finished run folder (see
:mod:`gmmlimit.experiments._store` for the layout): it resumes an interrupted run of the same
config, code and data file point by point, and records the provenance in ``meta.json``.
"""

from __future__ import annotations

import ast
import contextlib
import datetime as _dt
import hashlib
import importlib
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from ._config import ExperimentSpec, config_hash, config_overrides, config_to_dict
from ._store import (
    FILE_DIGESTS,
    FORMAT,
    PARTIAL_SUFFIX,
    PointStore,
    RunResult,
    UnreadableResultError,
    atomic_write_json,
    find_partial,
    load_json,
    load_run,
    read_index,
    update_index,
    write_run_files,
)

__all__ = [
    "Progress",
    "Reuse",
    "check_resumable",
    "code_fingerprint",
    "reusable_run",
    "reuse_verdict",
    "run_experiment",
    "sweep",
]


class Progress:
    """Progress reporting for sweeps, on stderr: tqdm bars and one-line messages.

    Experiments call :meth:`bar` (or use :func:`sweep`, which does); the command line passes an
    enabled one, tests a silent one. Subclasses may override :meth:`advance` (called once per
    finished point) to observe or interrupt a sweep.

    Args:
        enabled: draw tqdm bars on stderr.
        prefix: text put before every bar's description and message.
        messages: print :meth:`message` lines (such as "resuming ...") on stderr.
    """

    def __init__(self, enabled: bool = True, prefix: str = "", messages: bool = True) -> None:
        self.enabled = enabled
        self.prefix = prefix
        self.messages = messages

    def bar(self, total: int, desc: str) -> Any:
        """A tqdm bar (disabled when not ``enabled``); use it as a context manager."""
        from tqdm.auto import tqdm

        return tqdm(
            total=total,
            desc=f"{self.prefix}{desc}",
            disable=not self.enabled,
            leave=False,
            dynamic_ncols=True,
            file=sys.stderr,
        )

    def message(self, text: str) -> None:
        """One line on stderr (when ``messages``)."""
        if self.messages:
            print(f"{self.prefix}{text}", file=sys.stderr, flush=True)

    def advance(self, key: str, computed: bool) -> None:
        """Called after each point of a sweep (``computed`` False when it was resumed)."""


def sweep(
    store: PointStore | None,
    keys: Sequence[str],
    compute: Callable[[str], Any],
    progress: Progress,
    desc: str,
    record_type: type,
) -> dict[str, Any]:
    """Run ``compute(key)`` for every key not yet in ``store``, with a progress bar.

    Args:
        store: where finished points are kept (None: a fresh in-memory store).
        keys: the point keys, in order (letters, digits and ``_.=+-`` only).
        compute: returns one ``record_type`` record for a point.
        progress: progress reporter; its ``advance`` is called after every point.
        desc: the bar's description.
        record_type: the dataclass of a point's record.

    Returns:
        ``{key: record}`` for every key, in order; every record is read back from the store,
        so freshly computed and resumed points are alike.
    """
    store = PointStore() if store is None else store
    out: dict[str, Any] = {}
    with progress.bar(len(keys), desc) as bar:
        for key in keys:
            found = store.get(key, record_type)
            if found is None:
                record = compute(key)
                if not isinstance(record, record_type):
                    raise TypeError(
                        f"point {key!r} returned {type(record).__name__}, not "
                        f"{record_type.__name__}."
                    )
                store.put(key, record)
                found = store.get(key, record_type)
                store.computed.append(key)
                computed = True
            else:
                store.resumed.append(key)
                computed = False
            out[key] = found
            bar.update(1)
            progress.advance(key, computed)
    return out


# --------------------------------------------------------------------------------------------
# Code fingerprint
# --------------------------------------------------------------------------------------------

_FINGERPRINT_DISTS = ("jax", "jaxlib", "numpy", "scikit-learn", "optax")
_NOT_COMPUTE = ("experiments", "paper_figures", "_paper", "cli.py", "__pycache__")


def _experiment_modules(module_name: str) -> list[str]:
    """The experiment module and every ``gmmlimit.experiments`` module it imports, transitively."""
    package = __package__  # gmmlimit.experiments
    seen: list[str] = []
    todo = [module_name]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.append(name)
        path = importlib.import_module(name).__file__
        if not path:
            continue
        for node in ast.walk(ast.parse(Path(path).read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level > 1:
                    continue  # gmmlimit itself is hashed whole
                if node.level == 1:
                    target = f"{package}.{node.module}" if node.module else package
                else:
                    target = node.module
                if not target or not target.startswith(package):
                    continue
                names = [f"{package}.{a.name}" for a in node.names] if target == package else []
                todo += [n for n in [target, *names] if importlib.util.find_spec(n) is not None]
    return sorted(seen)


def code_fingerprint(spec: ExperimentSpec) -> str:
    """A hash of every piece of code a run of ``spec`` executes, so resume never mixes code.

    It covers the source of every ``gmmlimit`` module and kernel (``cli``, the paper and the figure
    scripts aside), the experiment module and every experiment module it imports
    transitively (``_common``, ``_data``, ``_anneal_common``, ...), the versions of the numeric
    libraries and which CPU E-step runs (compiled kernel or pure JAX).
    """
    import importlib.metadata as md

    import gmmlimit

    digest = hashlib.sha256()
    core = Path(gmmlimit.__file__).resolve().parent
    files = sorted(
        p
        for ext in ("*.py", "*.cc")
        for p in core.rglob(ext)
        if not set(p.relative_to(core).parts) & set(_NOT_COMPUTE)
    )
    for path in files:
        digest.update(str(path.relative_to(core)).encode() + b"\0" + path.read_bytes())
    for name in _experiment_modules(f"{__package__}.{spec.name}"):
        path = importlib.import_module(name).__file__
        digest.update(name.encode() + b"\0" + Path(path).read_bytes())
    for dist in _FINGERPRINT_DISTS:
        with contextlib.suppress(md.PackageNotFoundError):
            digest.update(f"{dist}=={md.version(dist)}".encode())
    digest.update(estep().split(":", 1)[0].encode())
    return digest.hexdigest()[:16]


def estep() -> str:
    """Which E-step the run's fits use: the CPU kernel's status, or pure JAX off the CPU.

    Returns:
        ``gmmlimit.cpu_kernel_status()`` (``"native: ..."`` or ``"pure JAX: <reason>"``) when
        JAX computes on the CPU; ``"pure JAX: <platform> device"`` otherwise (the compiled
        kernel serves CPU fits only).
    """
    import jax

    import gmmlimit

    platform_ = jax.default_backend()
    if platform_ == "cpu":
        return gmmlimit.cpu_kernel_status()
    return f"pure JAX: {platform_} device"


# --------------------------------------------------------------------------------------------
# Provenance
# --------------------------------------------------------------------------------------------


def _git_revision() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10
        )
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for dist in ("gmmlimit", "jax", "jaxlib", "numpy", "scikit-learn", "scipy", "matplotlib"):
        with contextlib.suppress(md.PackageNotFoundError):
            out[dist] = md.version(dist)
    import gmmlimit

    out["gmmlimit"] = gmmlimit.__version__
    return out


def _device() -> dict[str, Any]:
    import jax

    dev = jax.devices()[0]
    return {
        "platform": dev.platform,
        "device_kind": getattr(dev, "device_kind", str(dev)),
        "device_count": jax.device_count(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
    }


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _flat_values(d: dict) -> Iterator[Any]:
    for v in d.values():
        if isinstance(v, (list, tuple)):
            yield from v
        else:
            yield v


def _check_x64(config: Any) -> None:
    import jax

    if "float64" in set(_flat_values(config_to_dict(config))) and not jax.config.jax_enable_x64:
        raise ValueError(
            "this config asks for float64 but JAX runs with x64 disabled; call "
            "gmmlimit.experiments.enable_x64() (the gmmlimit command does) before running."
        )


_LOCK = ".lock"


def _hold(partial: Path, name: str) -> Any:
    """Lock an unfinished run's folder for this process (released when the process ends).

    Returns:
        The open lock file, or None where the platform has no ``fcntl`` advisory locks.

    Raises:
        ValueError: if another process holds the same run (the same command started twice).
    """
    try:
        import fcntl
    except ImportError:  # no advisory locks (Windows): runs are not guarded against each other
        return None
    handle = open(partial / _LOCK, "a")  # noqa: SIM115  (held for the whole run)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise ValueError(
            f"{name}: this run is already in progress in {partial} (another process holds "
            "it); wait for it to finish, or stop it and run the command again to resume."
        ) from None
    return handle


def _read_started(partial: Path, name: str) -> dict:
    """An unfinished run's ``started.json``: when it started and on which data file.

    Raises:
        UnreadableResultError: naming the file when it is missing its keys or not JSON.
    """
    path = partial / "started.json"
    advice = f"delete {partial} and run `gmmlimit run {name}` again to start that run over."
    if not path.exists():
        raise UnreadableResultError(f"{path} is missing; {advice}")
    before = load_json(path, advice)
    if not isinstance(before, dict) or not isinstance(before.get("started"), str):
        raise UnreadableResultError(f"{path} cannot be read (no 'started' time); {advice}")
    return before


def _data_provenance(config: Any) -> dict | None:
    path = getattr(config, "data", None)
    if path is None:
        return None
    from ._data import file_info

    return file_info(path)


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------


def check_resumable(
    spec: ExperimentSpec, config: Any, results_dir: str | Path, *, quick: bool
) -> None:
    """Refuse, before any work, an unfinished run that :func:`run_experiment` cannot resume.

    The checks :func:`run_experiment` makes before its own work, for a caller that runs several
    experiments (``gmmlimit reproduce``) and checks them all first: the newest ``.partial``
    folder of the run's hash (config, setting, code fingerprint) must have a readable
    ``started.json``, and every finished point file must match its digest. So a damaged point
    file of the fourth experiment stops ``reproduce`` before the first one runs.

    Args:
        spec: the experiment.
        config: its config.
        results_dir: the results folder.
        quick: the quick setting.

    Raises:
        UnreadableResultError: (a ValueError) naming the damaged file, with what to do.
    """
    extra = dict(spec.provenance(config)) if spec.provenance is not None else {}
    chash = _run_hash(spec, config, quick, code_fingerprint(spec), extra)
    partial = find_partial(Path(results_dir) / spec.name, chash)
    if partial is not None:
        _read_started(partial, spec.name)
        PointStore(partial / "points").verify()


def _run_hash(spec: ExperimentSpec, config: Any, quick: bool, code: str, extra: dict) -> str:
    salt = hashlib.sha256(json.dumps(extra, sort_keys=True).encode()).hexdigest()
    return config_hash(spec.name, config, quick, code + (f":{salt}" if extra else ""))


class Reuse(NamedTuple):
    """Whether a noted run can stand for a new one (:func:`reuse_verdict`).

    Attributes:
        run: the finished run, or None where it is computed again.
        reason: why it is not reused (words that follow "the noted run <id>"); "" when it is.
    """

    run: RunResult | None
    reason: str


def reuse_verdict(
    spec: ExperimentSpec,
    config: Any,
    results_dir: str | os.PathLike,
    run_id: str,
    *,
    quick: bool,
) -> Reuse:
    """The run ``run_id`` when :func:`run_experiment` would compute it again unchanged, or why not.

    It is reused when it is finished, of ``spec``, and has the hash this call of
    :func:`run_experiment` would give (the same config, setting and code fingerprint: see
    :func:`code_fingerprint`), the same data file content (``meta.json``'s ``data``) and the
    same device. A run missing from the index, or whose files cannot be read or were changed
    after it finished, is computed again too.
    """
    from ._store import find_run

    try:  # finished runs of this version's format only
        entry = find_run(results_dir, run_id)
    except (ValueError, OSError) as err:
        return Reuse(None, f"is not a finished run of this format ({err})")
    if entry.get("name") != spec.name:
        return Reuse(None, f"is a run of {entry.get('name')!r}, not of {spec.name!r}")
    extra = dict(spec.provenance(config)) if spec.provenance is not None else {}
    if entry.get("config_hash") != _run_hash(spec, config, quick, code_fingerprint(spec), extra):
        return Reuse(None, "was computed with another config, setting or code (its hash differs)")
    try:
        run = load_run(results_dir, spec.name, run_id, spec.record_type)
    except (FileNotFoundError, UnreadableResultError) as err:
        return Reuse(None, f"cannot be used: {err}")
    if run.meta.get("data") != _data_provenance(config):
        return Reuse(None, "read a data file whose content differs from the file's now")
    if run.meta.get("device") != _device():
        return Reuse(None, f"ran on another device ({run.meta.get('device')}; now {_device()})")
    return Reuse(run, "")


def reusable_run(
    spec: ExperimentSpec,
    config: Any,
    results_dir: str | os.PathLike,
    run_id: str,
    *,
    quick: bool,
) -> RunResult | None:
    """A finished run that :func:`run_experiment` would compute again unchanged, or None.

    :func:`reuse_verdict`'s run (it also says why a run is not reused).
    """
    return reuse_verdict(spec, config, results_dir, run_id, quick=quick).run


def run_experiment(
    spec: ExperimentSpec,
    config: Any,
    results_dir: str | os.PathLike = "results",
    *,
    quick: bool = False,
    progress: Progress | None = None,
) -> tuple[RunResult, list[str]]:
    """Run one experiment into its own results folder, resuming an interrupted run.

    If ``results_dir/<name>/`` holds an unfinished run of the same config and the same code
    (same hash: see :func:`code_fingerprint`), it is continued: its finished points are read
    back, not recomputed (a message on stderr says how many). A run on a user's data file
    refuses to resume when the file's content changed. Otherwise a new folder
    ``<UTC time>-<hash>.partial`` is made. When the run finishes, its files are written and the
    folder renamed to drop ``.partial``; the index is updated at the start and at the end.

    Args:
        spec: the experiment.
        config: a config made by :func:`~gmmlimit.experiments.make_config`.
        results_dir: the results root.
        quick: whether this is the quick setting (recorded, and part of the hash).
        progress: progress reporter (default: enabled tqdm bars).

    Returns:
        ``(result, failures)``: the written run and the verified statements that failed.

    Raises:
        ValueError: a config of the wrong type, float64 without x64, or a changed data file
            on resume (before any computation).
    """
    if not isinstance(config, spec.config_type):
        raise ValueError(f"{spec.name}: config must be a {spec.config_type.__name__}.")
    _check_x64(config)
    progress = Progress() if progress is None else progress
    root = Path(results_dir)
    exp_dir = root / spec.name
    code = code_fingerprint(spec)
    extra = dict(spec.provenance(config)) if spec.provenance is not None else {}
    chash = _run_hash(spec, config, quick, code, extra)
    data = _data_provenance(config)
    overrides = config_overrides(spec, config, quick)
    partial = find_partial(exp_dir, chash)
    started = _now()
    read_index(root)  # an unreadable index is named before anything is created
    if partial is None:
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        partial = exp_dir / f"{stamp}-{chash}{PARTIAL_SUFFIX}"
        partial.mkdir(parents=True)
        lock = _hold(partial, spec.name)
        atomic_write_json(partial / "config.json", config_to_dict(config))
        atomic_write_json(partial / "started.json", {"started": started, "data": data})
    else:
        lock = _hold(partial, spec.name)
        before = _read_started(partial, spec.name)
        if before.get("data") != data:
            old = (before.get("data") or {}).get("sha256", "none")
            raise ValueError(
                f"{spec.name}: the data file {data['path'] if data else None} changed since the "
                f"interrupted run {partial} started (sha256 {old[:12]} then, "
                f"{(data or {}).get('sha256', 'none')[:12]} now); its finished points came from "
                f"the old file. Restore the file, or delete {partial} to start over."
            )
        started = before["started"]
        PointStore(partial / "points").verify()  # a damaged point is named before any work
        done = len(PointStore(partial / "points").finished())
        progress.message(f"resuming {partial} ({done} finished point(s) kept)")
    run_id = partial.name[: -len(PARTIAL_SUFFIX)]
    final = exp_dir / run_id
    entry = {
        "name": spec.name,
        "run_id": run_id,
        "path": str(partial.relative_to(root)),
        "config_hash": chash,
        "quick": bool(quick),
        "overrides": overrides,
        "default_config": not overrides,
        "format": FORMAT,
        "complete": False,
        "time": started,
    }
    update_index(root, entry)

    store = PointStore(partial / "points")
    t0 = time.perf_counter()
    records = spec.run(config, progress, resume=store)
    wall = time.perf_counter() - t0
    for key, record in records.items():
        if not isinstance(record, spec.record_type):
            raise TypeError(
                f"{spec.name}: record {key!r} is a {type(record).__name__}, not "
                f"{spec.record_type.__name__}."
            )
    failures = list(spec.check(config, records)) if spec.check is not None else []
    summary = spec.summarize(config, records)

    import jax

    meta = {
        "name": spec.name,
        "run_id": run_id,
        "format": FORMAT,
        "seed": getattr(config, "seed", None),
        "quick": bool(quick),
        "overrides": overrides,
        "default_config": not overrides,
        "data": data,
        "records": list(records),
        "config_hash": chash,
        "code_fingerprint": code,
        "estep": estep(),
        "versions": _versions(),
        "device": _device(),
        "x64": bool(jax.config.jax_enable_x64),
        "dtypes": sorted(
            {v for v in _flat_values(config_to_dict(config)) if v in ("float32", "float64")}
        ),
        "git_revision": _git_revision(),
        "started": started,
        "finished": _now(),
        "wall_seconds_this_session": round(wall, 3),
        "points_computed": len(store.computed),
        "points_resumed": len(store.resumed),
        "complete": True,
        "check_failures": failures,
        "argv": list(sys.argv),
    }
    clash = sorted(set(extra) & {*meta, FILE_DIGESTS})
    if clash:
        raise ValueError(f"{spec.name}: provenance keys {clash} clash with meta.json's own keys.")
    meta.update(extra)
    write_run_files(partial, records, summary, meta)
    (partial / _LOCK).unlink(missing_ok=True)
    os.replace(partial, final)
    if lock is not None:
        lock.close()
    entry = {**entry, "path": str(final.relative_to(root)), "complete": True, "time": _now()}
    update_index(root, entry)
    return load_run(root, spec.name, run_id, spec.record_type), failures
