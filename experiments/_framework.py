"""The experiment framework: specs, configs, resumable sweeps and atomic result folders.

An experiment is an :class:`ExperimentSpec`: a typed, frozen config dataclass, a pure ``run``
that only computes (it returns numpy arrays and JSON-able scalars), a one-line ``summarize`` and
an optional ``check`` that lists the verified statements that failed. This module does everything
around it: validating configs before any work, resuming interrupted sweeps point by point, and
writing one self-describing folder per run plus a results index.

Layout of a results directory::

    results/
      index.json                       every run: name, run_id, path, config hash, quick, complete
      <name>/<run_id>.partial/         a run in progress (or interrupted): config.json, points/
      <name>/<run_id>/                 a finished run: config.json, meta.json, scalars.json,
                                       arrays.npz, summary.txt, points/

A finished run folder appears by one atomic ``rename`` of its ``.partial`` folder, after every
file in it has itself been written atomically (temp file + ``os.replace``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import hashlib
import io
import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "ExperimentSpec",
    "PointStore",
    "Progress",
    "RunResult",
    "code_fingerprint",
    "config_hash",
    "config_to_dict",
    "flatten_points",
    "load_latest",
    "make_config",
    "parse_set",
    "read_index",
    "run_experiment",
    "sweep",
]

INDEX_NAME = "index.json"
PARTIAL_SUFFIX = ".partial"
_SAFE_KEY = re.compile(r"^[A-Za-z0-9_.=+-]+$")


# --------------------------------------------------------------------------------------------
# Specs and progress
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ExperimentSpec:
    """What an experiment is: its config type, how to run it, summarise it and verify it.

    Attributes:
        name: the experiment's name (the module name under ``experiments/``).
        config_type: a frozen dataclass; its defaults are the full (paper) setting. It may define
            ``validate(self) -> None`` raising ValueError on a bad combination of values.
        run: ``run(config, progress, resume=None) -> dict``: pure computation returning numpy
            arrays and JSON-able scalars. ``resume`` is a :class:`PointStore` (None: in memory);
            sweeps should go through :func:`sweep` so that finished points are skipped.
        summarize: ``summarize(data) -> str``, the one-line summary of a result dict.
        quick: overrides of the defaults for ``--quick``.
        check: optional ``check(data) -> list[str]``: the verified statements that failed (empty
            when all hold).
        description: one paragraph saying what the experiment measures.
        order: position in ``gmmlimit list`` and ``gmmlimit reproduce`` (ties: by name).
    """

    name: str
    config_type: type
    run: Callable[..., dict]
    summarize: Callable[[dict], str]
    quick: dict = dataclasses.field(default_factory=dict)
    check: Callable[[dict], list[str]] | None = None
    description: str = ""
    order: int = 100


class Progress:
    """Progress reporting for sweeps: a thin wrapper over tqdm that can be silenced.

    Experiments call :meth:`bar` (or use :func:`sweep`, which does); the command line passes an
    enabled one, tests a silent one. Subclasses may override :meth:`advance` (called once per
    finished point) to observe or interrupt a sweep.

    Args:
        enabled: draw tqdm bars on stderr.
        prefix: text put before every bar's description.
    """

    def __init__(self, enabled: bool = True, prefix: str = "") -> None:
        self.enabled = enabled
        self.prefix = prefix

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

    def advance(self, key: str, computed: bool) -> None:
        """Called after each point of a sweep (``computed`` False when it was resumed)."""


# --------------------------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------------------------


def _field_types(config_type: type) -> dict[str, Any]:
    hints = typing.get_type_hints(config_type)
    return {f.name: hints[f.name] for f in dataclasses.fields(config_type)}


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert ``value`` (from JSON or from a ``--set`` string) to the field type ``tp``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        is_none = value is None or (isinstance(value, str) and value.lower() == "none")
        if is_none and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ValueError as err:
                errors.append(str(err))
        raise ValueError(f"config key {key!r}: {value!r} does not fit {tp}: {'; '.join(errors)}")
    if origin is tuple:
        if isinstance(value, str):
            items = [v.strip() for v in value.split(",") if v.strip()]
        elif isinstance(value, (list, tuple)):
            items = list(value)
        else:
            raise ValueError(f"config key {key!r} needs a list; got {value!r}.")
        item_type = args[0] if args else str
        return tuple(_coerce(v, item_type, key) for v in items)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ValueError(f"config key {key!r} needs true/false; got {value!r}.")
    if tp is int:
        if isinstance(value, bool):
            raise ValueError(f"config key {key!r} needs an integer; got {value!r}.")
        if isinstance(value, (int, np.integer)):
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ValueError(f"config key {key!r} needs an integer; got {value!r}.")
    if tp is float:
        if isinstance(value, bool):
            raise ValueError(f"config key {key!r} needs a number; got {value!r}.")
        try:
            out = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"config key {key!r} needs a number; got {value!r}.") from None
        if math.isnan(out):
            raise ValueError(f"config key {key!r} is NaN; it needs a number.")
        return out
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"config key {key!r} needs a string; got {value!r}.")
        return value
    raise ValueError(f"config key {key!r} has an unsupported type {tp}.")


def make_config(spec: ExperimentSpec, overrides: dict | None = None, quick: bool = False) -> Any:
    """Build and validate a config: defaults, then ``spec.quick`` if ``quick``, then overrides.

    Args:
        spec: the experiment.
        overrides: ``{key: value}``; values may be strings (``--set``) or JSON values.
        quick: apply the spec's quick overrides first.

    Returns:
        The frozen config instance.

    Raises:
        ValueError: naming the experiment and the problem: an unknown key, a value of the wrong
            type, or a combination the config's ``validate()`` refuses (negative sigma2, K > N,
            ...). Nothing has been computed when this is raised.
    """
    types_ = _field_types(spec.config_type)
    values: dict[str, Any] = {}
    for source in ((spec.quick if quick else {}), (overrides or {})):
        for key, value in source.items():
            if key not in types_:
                raise ValueError(
                    f"{spec.name}: unknown config key {key!r}; valid keys: "
                    f"{', '.join(sorted(types_))}."
                )
            try:
                values[key] = _coerce(value, types_[key], key)
            except ValueError as err:
                raise ValueError(f"{spec.name}: {err}") from None
    config = spec.config_type(**values)
    validate = getattr(config, "validate", None)
    if validate is not None:
        try:
            validate()
        except ValueError as err:
            raise ValueError(f"{spec.name}: invalid config: {err}") from None
    return config


def parse_set(items: Sequence[str]) -> dict[str, str]:
    """Parse ``--set key=value`` items into a dict of strings (typed later by make_config)."""
    out: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--set needs key=value; got {item!r}.")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def config_to_dict(config: Any) -> dict:
    """A config as a JSON-able dict (tuples become lists)."""
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def config_hash(name: str, config: Any, quick: bool, code: str = "") -> str:
    """A stable 12-hex-digit hash of the experiment name, config, quick flag and code."""
    payload = json.dumps(
        {"name": name, "config": config_to_dict(config), "quick": bool(quick), "code": code},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def code_fingerprint(spec: ExperimentSpec) -> str:
    """Hash of the source of ``experiments/<name>.py`` and of the shared experiment modules.

    Part of the run hash, so a run is only resumed by the same experiment code: finished points
    written by an older version are never mixed with new ones.
    """
    import importlib

    digest = hashlib.sha256()
    modules = [f"{__package__}.{spec.name}", f"{__package__}._common", f"{__package__}._data"]
    for name in modules:
        try:
            path = importlib.import_module(name).__file__
        except ImportError:
            continue
        if path:
            digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# Atomic writes
# --------------------------------------------------------------------------------------------


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON-serialisable: {type(value)}")


def _atomic_write_json(path: Path, obj: Any) -> None:
    text = json.dumps(obj, indent=2, sort_keys=True, default=_json_default, allow_nan=True)
    _atomic_write_bytes(path, (text + "\n").encode())


def _atomic_write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    _atomic_write_bytes(path, buf.getvalue())


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


# --------------------------------------------------------------------------------------------
# Resumable sweeps
# --------------------------------------------------------------------------------------------


class PointStore:
    """Finished sweep points, one ``.npz`` per point (atomic), or in memory.

    Args:
        directory: the ``points/`` folder of a run; None keeps points in memory only.
    """

    def __init__(self, directory: str | os.PathLike | None = None) -> None:
        self.directory = None if directory is None else Path(directory)
        self._memory: dict[str, dict[str, np.ndarray]] = {}
        self.computed: list[str] = []
        self.resumed: list[str] = []

    @staticmethod
    def _check_key(key: str) -> str:
        if not _SAFE_KEY.match(key):
            raise ValueError(f"point key {key!r} must match {_SAFE_KEY.pattern}.")
        return key

    def _path(self, key: str) -> Path:
        assert self.directory is not None
        return self.directory / f"{self._check_key(key)}.npz"

    def get(self, key: str) -> dict[str, np.ndarray] | None:
        """The stored arrays of a finished point, or None."""
        if self.directory is None:
            return self._memory.get(self._check_key(key))
        path = self._path(key)
        return _load_npz(path) if path.exists() else None

    def put(self, key: str, arrays: dict[str, Any]) -> None:
        """Store a finished point (atomically when on disk)."""
        host = {name: np.asarray(value) for name, value in arrays.items()}
        if self.directory is None:
            self._memory[self._check_key(key)] = host
        else:
            _atomic_write_npz(self._path(key), host)


def sweep(
    store: PointStore | None,
    keys: Sequence[str],
    compute: Callable[[str], dict[str, Any]],
    progress: Progress,
    desc: str,
) -> dict[str, dict[str, np.ndarray]]:
    """Run ``compute(key)`` for every key not yet in ``store``, with a progress bar.

    Args:
        store: where finished points are kept (None: a fresh in-memory store).
        keys: the point keys, in order (letters, digits and ``_.=+-`` only).
        compute: returns a dict of arrays (or scalars) for one point.
        progress: progress reporter; its ``advance`` is called after every point.
        desc: the bar's description.

    Returns:
        ``{key: arrays}`` for every key, in order (numpy arrays, freshly computed or resumed).
    """
    store = PointStore() if store is None else store
    out: dict[str, dict[str, np.ndarray]] = {}
    with progress.bar(len(keys), desc) as bar:
        for key in keys:
            found = store.get(key)
            if found is None:
                store.put(key, compute(key))
                found = store.get(key)
                assert found is not None
                store.computed.append(key)
                computed = True
            else:
                store.resumed.append(key)
                computed = False
            out[key] = found
            bar.update(1)
            progress.advance(key, computed)
    return out


def flatten_points(points: dict[str, dict[str, np.ndarray]], out: dict[str, Any]) -> dict[str, Any]:
    """Add every point's fields to ``out`` as ``"<point>__<field>"`` (0-d arrays as scalars).

    Args:
        points: ``{point key: {field: array}}``, as :func:`sweep` returns.
        out: the result dict to extend (its other entries are kept).

    Returns:
        ``out``, extended in place.
    """
    for key, arrays in points.items():
        for field, value in arrays.items():
            out[f"{key}__{field}"] = value if np.ndim(value) else np.asarray(value).item()
    return out


# --------------------------------------------------------------------------------------------
# Run folders, the index and loading
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RunResult:
    """A finished run read back from disk.

    Attributes:
        name: experiment name.
        run_id: the run folder's name.
        path: the run folder.
        config: the config as a dict.
        meta: provenance (seed, versions, device, precision, git revision, times, quick flag).
        scalars: JSON scalars returned by the run.
        arrays: numpy arrays returned by the run.
    """

    name: str
    run_id: str
    path: Path
    config: dict
    meta: dict
    scalars: dict
    arrays: dict

    @property
    def data(self) -> dict:
        """Scalars and arrays in one dict (what ``summarize`` and ``check`` take)."""
        return {**self.scalars, **self.arrays}


def read_index(results_dir: str | os.PathLike) -> list[dict]:
    """The entries of ``results_dir/index.json`` (empty if there is none)."""
    path = Path(results_dir) / INDEX_NAME
    if not path.exists():
        return []
    return json.loads(path.read_text())["runs"]


def _update_index(results_dir: Path, entry: dict) -> None:
    runs = [
        r
        for r in read_index(results_dir)
        if not (r["name"] == entry["name"] and r["run_id"] == entry["run_id"])
    ]
    runs.append(entry)
    _atomic_write_json(results_dir / INDEX_NAME, {"version": 1, "runs": runs})


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
    try:
        import gmmlimit

        out["gmmlimit"] = gmmlimit.__version__
    except ImportError:
        pass
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


def _split_result(name: str, result: dict) -> tuple[dict, dict[str, np.ndarray]]:
    scalars: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {}
    for key, value in result.items():
        if isinstance(value, (np.ndarray, np.generic)) and np.ndim(value) > 0:
            arrays[key] = np.asarray(value)
        elif isinstance(value, np.generic):
            scalars[key] = value.item()
        elif isinstance(value, (bool, int, float, str, type(None), list, tuple, dict)):
            scalars[key] = value
        elif hasattr(value, "__array__"):
            arr = np.asarray(value)
            if arr.ndim == 0:
                scalars[key] = arr.item()
            else:
                arrays[key] = arr
        else:
            raise TypeError(f"{name}: result {key!r} has unsupported type {type(value)}.")
    return scalars, arrays


def _find_partial(exp_dir: Path, chash: str) -> Path | None:
    if not exp_dir.exists():
        return None
    candidates = sorted(
        p for p in exp_dir.glob(f"*-{chash}{PARTIAL_SUFFIX}") if (p / "config.json").exists()
    )
    return candidates[-1] if candidates else None


def _check_x64(config: Any) -> None:
    import jax

    if "float64" in set(_flat_values(config_to_dict(config))) and not jax.config.jax_enable_x64:
        raise ValueError(
            "this config asks for float64 but JAX runs with x64 disabled; call "
            "experiments.enable_x64() (the gmmlimit command does) before running."
        )


def run_experiment(
    spec: ExperimentSpec,
    config: Any,
    results_dir: str | os.PathLike = "results",
    *,
    quick: bool = False,
    progress: Progress | None = None,
) -> tuple[RunResult, list[str]]:
    """Run one experiment into its own results folder, resuming an interrupted run.

    If ``results_dir/<name>/`` holds an unfinished run of the same config and the same
    experiment code (same hash), it is continued: its finished points are read back, not
    recomputed. Otherwise a new folder ``<UTC time>-<hash>.partial`` is made. When the run
    finishes, its files are written and the folder renamed to drop ``.partial``; the index is
    updated at the start and at the end.

    Args:
        spec: the experiment.
        config: a config made by :func:`make_config`.
        results_dir: the results root.
        quick: whether this is the quick setting (recorded, and part of the hash).
        progress: progress reporter (default: enabled tqdm bars).

    Returns:
        ``(result, failures)``: the written run and the verified statements that failed.
    """
    if not isinstance(config, spec.config_type):
        raise ValueError(f"{spec.name}: config must be a {spec.config_type.__name__}.")
    _check_x64(config)
    progress = Progress() if progress is None else progress
    root = Path(results_dir)
    exp_dir = root / spec.name
    code = code_fingerprint(spec)
    chash = config_hash(spec.name, config, quick, code)
    partial = _find_partial(exp_dir, chash)
    started = _now()
    if partial is None:
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        partial = exp_dir / f"{stamp}-{chash}{PARTIAL_SUFFIX}"
        partial.mkdir(parents=True)
        _atomic_write_json(partial / "config.json", config_to_dict(config))
        _atomic_write_json(partial / "started.json", {"started": started})
    else:
        started = json.loads((partial / "started.json").read_text())["started"]
    run_id = partial.name[: -len(PARTIAL_SUFFIX)]
    final = exp_dir / run_id
    entry = {
        "name": spec.name,
        "run_id": run_id,
        "path": str(partial.relative_to(root)),
        "config_hash": chash,
        "quick": bool(quick),
        "complete": False,
        "time": started,
    }
    _update_index(root, entry)

    store = PointStore(partial / "points")
    t0 = time.perf_counter()
    result = spec.run(config, progress, resume=store)
    wall = time.perf_counter() - t0
    scalars, arrays = _split_result(spec.name, result)
    data = {**scalars, **arrays}
    failures = list(spec.check(data)) if spec.check is not None else []
    summary = spec.summarize(data)

    import jax

    meta = {
        "name": spec.name,
        "run_id": run_id,
        "seed": getattr(config, "seed", None),
        "quick": bool(quick),
        "config_hash": chash,
        "code_fingerprint": code,
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
    _atomic_write_json(partial / "scalars.json", scalars)
    _atomic_write_npz(partial / "arrays.npz", arrays)
    _atomic_write_bytes(partial / "summary.txt", (summary + "\n").encode())
    _atomic_write_json(partial / "meta.json", meta)
    os.replace(partial, final)
    entry = {**entry, "path": str(final.relative_to(root)), "complete": True, "time": _now()}
    _update_index(root, entry)
    return load_run(root, spec.name, run_id), failures


def _flat_values(d: dict) -> Iterator[Any]:
    for v in d.values():
        if isinstance(v, (list, tuple)):
            yield from v
        else:
            yield v


def load_run(results_dir: str | os.PathLike, name: str, run_id: str) -> RunResult:
    """Read one finished run folder."""
    path = Path(results_dir) / name / run_id
    if not (path / "meta.json").exists():
        raise FileNotFoundError(
            f"{path} is not a finished run of experiment {name!r}; run `gmmlimit run {name}`."
        )
    return RunResult(
        name=name,
        run_id=run_id,
        path=path,
        config=json.loads((path / "config.json").read_text()),
        meta=json.loads((path / "meta.json").read_text()),
        scalars=json.loads((path / "scalars.json").read_text()),
        arrays=_load_npz(path / "arrays.npz"),
    )


def load_latest(
    name: str, results_dir: str | os.PathLike = "results", quick: bool | None = None
) -> RunResult:
    """The most recent finished run of experiment ``name`` listed in the results index.

    Args:
        name: the experiment.
        results_dir: the results root.
        quick: only quick runs (True), only full runs (False), or either (None).

    Returns:
        The :class:`RunResult`.

    Raises:
        FileNotFoundError: naming the experiment and the command to run when there is none.
    """
    root = Path(results_dir)
    runs = [
        r
        for r in read_index(root)
        if r["name"] == name
        and r["complete"]
        and (quick is None or r["quick"] == quick)
        and (root / r["path"] / "meta.json").exists()
    ]
    if not runs:
        setting = {None: "", True: " --quick", False: ""}[quick]
        raise FileNotFoundError(
            f"no finished results of experiment {name!r} in {root}/ "
            f"(quick={quick}); run `gmmlimit run {name}{setting} --results {root}` first."
        )
    latest = max(runs, key=lambda r: (r["time"], r["run_id"]))
    return load_run(root, name, Path(latest["path"]).name)


def iter_specs(specs: Iterable[ExperimentSpec]) -> list[ExperimentSpec]:
    """Specs in their run order (``order``, then name)."""
    return sorted(specs, key=lambda s: (s.order, s.name))
