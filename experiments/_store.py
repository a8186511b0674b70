"""Results on disk: atomic files, typed records, finished points, run folders and the index.

Layout of a results directory::

    results/
      index.json                       every run: name, run_id, path, setting, overrides, ...
      <name>/<run_id>.partial/         a run in progress (or interrupted): config.json,
                                       started.json, points/
      <name>/<run_id>/                 a finished run: config.json, meta.json, records.npz,
                                       scalars.json, summary.txt, started.json, points/

A finished run's ``meta.json`` is written last and records the SHA-256 of every file written
before it (``file_sha256``); :func:`load_run` checks them all before it decodes anything, so a
file changed after the run finished is refused, named, instead of being drawn or printed. Each
finished point ``points/<key>.npz`` has its SHA-256 beside it in ``points/<key>.sha256``,
checked whenever the point is read back (a resumed run never uses an edited point).

Records are frozen dataclasses; only this module turns them into files and back. A record is
stored as arrays named ``<record key>/<field>`` (nested records and ``dict[str, record]``
fields add further ``/<name>`` levels) in one ``.npz``; its scalar fields are also copied into
``scalars.json`` for reading by eye. Every file is written to a temporary file with the user's
umask and moved into place with ``os.replace``.

The loader API (stable; what ``gmmlimit figures`` and a paper builder use): :func:`list_runs`,
:func:`load_run`, :func:`load_latest`, :func:`select_runs` and :class:`RunResult`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import re
import tempfile
import types
import typing
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "FORMAT",
    "PointStore",
    "RunResult",
    "UnreadableResultError",
    "current_default",
    "decode_record",
    "encode_record",
    "list_runs",
    "load_latest",
    "load_run",
    "read_index",
    "select_runs",
]

FORMAT = 3  # version of the run-folder layout; runs of another format are not read
# 3: meta.json records the SHA-256 of the run's files (FILE_DIGESTS), checked by load_run
FILE_DIGESTS = "file_sha256"
"""The ``meta.json`` key of ``{file name: SHA-256 hex digest}`` of a finished run's files."""
_REQUIRED_RUN_FILES = ("config.json", "records.npz", "scalars.json", "summary.txt")
_DIGESTED_RUN_FILES = (*_REQUIRED_RUN_FILES, "started.json")  # started.json: made by a run
_HEX_DIGEST = re.compile(r"^[0-9a-f]{64}$")
INDEX_NAME = "index.json"
PARTIAL_SUFFIX = ".partial"
_SAFE_KEY = re.compile(r"^[A-Za-z0-9_.=+-]+$")


# --------------------------------------------------------------------------------------------
# Atomic writes with the user's umask
# --------------------------------------------------------------------------------------------


def _file_mode() -> int:
    """0o666 less the process umask: what ``open(path, "w")`` would give a new file."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _file_mode())  # mkstemp makes 0600 files; results are shared
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


def _json_bytes(obj: Any) -> bytes:
    """``obj`` as indented, key-sorted JSON text (a final newline), encoded."""
    text = json.dumps(obj, indent=2, sort_keys=True, default=_json_default, allow_nan=True)
    return (text + "\n").encode()


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """``arrays`` as the bytes of an uncompressed ``.npz`` file."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON, atomically."""
    atomic_write_bytes(path, _json_bytes(obj))


def _sha256(data: bytes) -> str:
    """The SHA-256 hex digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


class UnreadableResultError(ValueError):
    """A stored results file exists but cannot be read: truncated, corrupt or malformed.

    The message names the file, why it cannot be read and what to do (delete it, or the run
    folder holding it, and rerun). The command line exits with status 2 on it, or lists a
    figure it keeps from being drawn as not drawn (status 3).
    """


def _unreadable(path: Path, reason: object, advice: str) -> UnreadableResultError:
    return UnreadableResultError(f"{path} cannot be read ({reason}); {advice}")


def _changed(
    path: Path, actual: str, recorded: str, when: str, where: str, advice: str
) -> UnreadableResultError:
    """The error for a file whose SHA-256 is not the one recorded when it was written.

    Args:
        path: the file.
        actual: its SHA-256 now.
        recorded: the SHA-256 recorded for it.
        when: when it was written (``"the run finished"``).
        where: the file the digest was recorded in.
        advice: what to do (goes into the error).
    """
    return _unreadable(
        path,
        f"it was changed after {when}: its sha256 {actual[:16]}... is not the "
        f"{recorded[:16]}... recorded in {where}",
        advice,
    )


def _decode_npz(data: bytes, path: Path, advice: str) -> dict[str, np.ndarray]:
    """Every array of the bytes of a stored ``.npz``.

    Args:
        data: the file's bytes.
        path: the file (named in the error).
        advice: what to do when it cannot be read (goes into the error).

    Raises:
        UnreadableResultError: naming ``path`` when it is truncated or corrupt.
    """
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            return {key: arrays[key] for key in arrays.files}
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, KeyError) as err:
        reason = str(err) or type(err).__name__
        raise _unreadable(path, f"not a whole .npz file: {reason}", advice) from None


def _decode_json(data: bytes, path: Path, advice: str) -> Any:
    """The value of the bytes of a stored JSON file.

    Args:
        data: the file's bytes.
        path: the file (named in the error).
        advice: what to do when it cannot be read (goes into the error).

    Raises:
        UnreadableResultError: naming ``path`` when it is not valid UTF-8 JSON.
    """
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _unreadable(path, f"not valid JSON: {err}", advice) from None


def load_json(path: Path, advice: str) -> Any:
    """A stored JSON file's value.

    Args:
        path: the file.
        advice: what to do when it cannot be read (goes into the error).

    Raises:
        FileNotFoundError: when ``path`` does not exist.
        UnreadableResultError: naming ``path`` when it is not valid UTF-8 JSON.
    """
    return _decode_json(path.read_bytes(), path, advice)


def _rerun_advice(folder: Path, name: str) -> str:
    return f"the run {folder} is damaged: delete that folder and rerun `gmmlimit run {name}`."


# --------------------------------------------------------------------------------------------
# Records <-> arrays
# --------------------------------------------------------------------------------------------


def check_key(key: str) -> str:
    """A record or point key: letters, digits and ``_.=+-`` only (it names files)."""
    if not isinstance(key, str) or not _SAFE_KEY.match(key):
        raise ValueError(f"key {key!r} must match {_SAFE_KEY.pattern}.")
    return key


def _hints(record_type: type) -> dict[str, Any]:
    hints = typing.get_type_hints(record_type)
    return {f.name: hints[f.name] for f in dataclasses.fields(record_type)}


def encode_record(record: Any, prefix: str = "") -> dict[str, np.ndarray]:
    """A record as ``{"<prefix><field>": array}`` (None fields are left out).

    Args:
        record: a dataclass instance whose fields are arrays, scalars, strings, tuples of
            those, None, nested dataclasses or ``dict[str, dataclass]``.
        prefix: put before every name (``"<record key>/"`` in a run's file).

    Returns:
        Host numpy arrays, 0-d for scalars.
    """
    if not dataclasses.is_dataclass(record) or isinstance(record, type):
        raise TypeError(f"expected a record (dataclass instance); got {type(record).__name__}.")
    out: dict[str, np.ndarray] = {}
    for f in dataclasses.fields(record):
        value = getattr(record, f.name)
        name = f"{prefix}{f.name}"
        if value is None:
            continue
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            out.update(encode_record(value, f"{name}/"))
        elif isinstance(value, dict):
            for key, item in value.items():
                out.update(encode_record(item, f"{name}/{check_key(key)}/"))
        else:
            out[name] = np.asarray(value)
    return out


def _decode_value(value: np.ndarray, tp: Any, name: str) -> Any:
    if tp is np.ndarray or tp is Any:
        return value
    if tp is bool:
        return bool(value)
    if tp is int:
        return int(value)
    if tp is float:
        return float(value)
    if tp is str:
        return str(value)
    if typing.get_origin(tp) is tuple:
        return tuple(value.tolist())
    raise TypeError(f"record field {name!r} has an unsupported type {tp}.")


def decode_record(record_type: type, arrays: dict[str, np.ndarray], prefix: str = "") -> Any:
    """The inverse of :func:`encode_record`: rebuild a ``record_type`` from its arrays.

    Raises:
        KeyError: naming the field when a required one is missing (results written by an
            older version of the experiment).
    """
    values: dict[str, Any] = {}
    for name, tp in _hints(record_type).items():
        full = f"{prefix}{name}"
        optional = False
        if typing.get_origin(tp) in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            optional = len(args) < len(typing.get_args(tp))
            tp = args[0] if len(args) == 1 else Any
        if dataclasses.is_dataclass(tp):
            if any(k.startswith(f"{full}/") for k in arrays):
                values[name] = decode_record(tp, arrays, f"{full}/")
            elif optional:
                values[name] = None
            else:
                raise KeyError(full)
        elif typing.get_origin(tp) is dict:
            item_type = typing.get_args(tp)[1]
            keys: list[str] = []
            for k in arrays:
                if k.startswith(f"{full}/"):
                    sub = k[len(full) + 1 :].split("/", 1)[0]
                    if sub not in keys:
                        keys.append(sub)
            values[name] = {k: decode_record(item_type, arrays, f"{full}/{k}/") for k in keys}
        elif full in arrays:
            values[name] = _decode_value(arrays[full], tp, full)
        elif optional:
            values[name] = None
        else:
            raise KeyError(full)
    return record_type(**values)


def _json_scalar(value: Any) -> Any:
    """A 0-d value for strict JSON: a float that is not finite becomes its name as a string.

    JSON has no NaN or infinity (``json.dumps`` would write the bare words ``NaN`` and
    ``Infinity``, which strict readers such as ``jq`` reject); ``records.npz`` keeps the value.
    """
    if isinstance(value, float) and not np.isfinite(value):
        return "NaN" if np.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def _scalars_of(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """The 0-d entries as a nested JSON dict (for reading by eye; not finite floats as names)."""
    out: dict[str, Any] = {}
    for name, value in arrays.items():
        if value.ndim:
            continue
        node = out
        *parents, leaf = name.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = _json_scalar(value.item())
    return out


# --------------------------------------------------------------------------------------------
# Finished sweep points
# --------------------------------------------------------------------------------------------


class PointStore:
    """Finished sweep points, one ``.npz`` per point (atomic), or in memory.

    On disk, point ``<key>`` is ``<key>.npz`` with its SHA-256 in ``<key>.sha256``, written
    first: a point is finished once its ``.npz`` exists, and its digest is then already there.
    Reading a point back checks the digest, so a point file changed after it was computed is
    refused, named, instead of being resumed.

    Args:
        directory: the ``points/`` folder of a run; None keeps points in memory only.
    """

    def __init__(self, directory: str | os.PathLike | None = None) -> None:
        self.directory = None if directory is None else Path(directory)
        self._memory: dict[str, dict[str, np.ndarray]] = {}
        self.computed: list[str] = []
        self.resumed: list[str] = []

    def _path(self, key: str) -> Path:
        assert self.directory is not None
        return self.directory / f"{check_key(key)}.npz"

    def _digest_path(self, key: str) -> Path:
        assert self.directory is not None
        return self.directory / f"{check_key(key)}.sha256"

    def finished(self) -> list[str]:
        """Keys of the points already stored."""
        if self.directory is None:
            return list(self._memory)
        return sorted(p.stem for p in self.directory.glob("*.npz"))

    def _advice(self) -> str:
        return (
            "delete that file and rerun the same command: only that point is computed again "
            "(the run's other finished points are kept)."
        )

    def _read(self, key: str) -> dict[str, np.ndarray]:
        """The arrays of a stored point, after checking its file against its digest.

        Raises:
            FileNotFoundError: when the point's ``.npz`` does not exist.
            UnreadableResultError: naming the point's file when its digest is missing or not
                its SHA-256 (changed after it was computed), or it is truncated or corrupt.
        """
        path, digest_path = self._path(key), self._digest_path(key)
        data = path.read_bytes()
        try:
            recorded = digest_path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            reason = f"its digest {digest_path.name} is missing, so it cannot be checked"
            raise _unreadable(path, reason, self._advice()) from None
        except UnicodeDecodeError:
            recorded = ""
        actual = _sha256(data)
        if actual != recorded:
            when = "it was computed"
            raise _changed(path, actual, recorded, when, digest_path.name, self._advice())
        return _decode_npz(data, path, self._advice())

    def get(self, key: str, record_type: type) -> Any | None:
        """The stored record of a finished point, or None.

        Raises:
            UnreadableResultError: naming the point's file when it was changed after it was
                computed (its digest differs or is missing), is truncated or corrupt, or lacks
                a field of ``record_type``.
        """
        if self.directory is None:
            arrays = self._memory.get(check_key(key))
            return None if arrays is None else decode_record(record_type, arrays)
        path = self._path(key)
        if not path.exists():
            return None
        arrays = self._read(key)
        try:
            return decode_record(record_type, arrays)
        except (KeyError, TypeError, ValueError) as err:
            reason = f"no field {err}" if isinstance(err, KeyError) else err
            raise _unreadable(path, reason, self._advice()) from None

    def verify(self) -> None:
        """Read and check every stored point's file once, so a damaged one is named first.

        Raises:
            UnreadableResultError: naming the first file that was changed after it was
                computed, has no digest, or is truncated or corrupt.
        """
        if self.directory is None:
            return
        for key in self.finished():
            self._read(key)

    def put(self, key: str, record: Any) -> None:
        """Store a finished point's record (atomically when on disk): its digest, then it."""
        arrays = encode_record(record)
        if self.directory is None:
            self._memory[check_key(key)] = arrays
            return
        data = _npz_bytes(arrays)
        atomic_write_bytes(self._digest_path(key), f"{_sha256(data)}\n".encode())
        atomic_write_bytes(self._path(key), data)


# --------------------------------------------------------------------------------------------
# Run folders
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RunResult:
    """A finished run read back from disk.

    Attributes:
        name: experiment name.
        run_id: the run folder's name (``<UTC time>-<hash>``), unique in a results folder.
        path: the run folder.
        config: the config as a dict (every key, JSON values).
        meta: provenance: seed, setting (``quick``), ``overrides`` (keys that differ from the
            setting's defaults), ``data`` (a user's data file: path, sha256, shape, dtype),
            ``estep`` (which CPU E-step ran), versions, device, git revision, times, points
            computed and resumed, the failed statements.
        records: ``{data set: record}`` in run order (typed records of the experiment).
        summary: the one-line summary.
    """

    name: str
    run_id: str
    path: Path
    config: dict
    meta: dict
    records: dict[str, Any]
    summary: str

    @property
    def quick(self) -> bool:
        """Whether this is a quick-setting run."""
        return bool(self.meta.get("quick"))

    @property
    def setting(self) -> str:
        """``"quick"`` or ``"full"``."""
        return "quick" if self.quick else "full"

    @property
    def overrides(self) -> dict:
        """Config keys that differ from the setting's defaults (empty: the default config)."""
        return dict(self.meta.get("overrides", {}))

    @property
    def default_config(self) -> bool:
        """Whether the run used its setting's default config as it is now.

        No overrides, no own data, and a config equal to today's defaults: a run made before a
        default changed is no longer the default run (figures would otherwise draw it as such).
        """
        return not self.overrides and self.config == current_default(self.name, self.quick)


def write_run_files(
    folder: Path, records: dict[str, Any], summary: str, meta: dict[str, Any]
) -> None:
    """Write a finished run's records, scalars, summary and (last) meta.json into ``folder``.

    ``meta.json`` gets ``meta`` and, under :data:`FILE_DIGESTS`, the SHA-256 of every file
    written before it: ``records.npz``, ``scalars.json`` and ``summary.txt`` (of the bytes
    written here) and the ``config.json`` and ``started.json`` already in ``folder``.

    Raises:
        ValueError: when ``meta`` already has a :data:`FILE_DIGESTS` key.
    """
    if FILE_DIGESTS in meta:
        raise ValueError(f"meta has a {FILE_DIGESTS!r} key of its own; write_run_files adds it.")
    arrays: dict[str, np.ndarray] = {}
    for key, record in records.items():
        arrays.update(encode_record(record, f"{check_key(key)}/"))
    written = {
        "records.npz": _npz_bytes(arrays),
        "scalars.json": _json_bytes({"order": list(records), "records": _scalars_of(arrays)}),
        "summary.txt": (summary + "\n").encode(),
    }
    digests = {}
    for name in _DIGESTED_RUN_FILES:
        if name in written:
            atomic_write_bytes(folder / name, written[name])
            digests[name] = _sha256(written[name])
        elif (folder / name).exists():
            digests[name] = _sha256((folder / name).read_bytes())
    atomic_write_json(folder / "meta.json", {**meta, FILE_DIGESTS: digests})


def _missing_run_file(folder: Path, part: str, name: str) -> FileNotFoundError:
    """The error for a file of a finished run that is gone."""
    return FileNotFoundError(
        f"{folder / part} is missing, so the finished run {folder} is incomplete (a file "
        f"was deleted or lost); delete that folder and rerun `gmmlimit run {name}`."
    )


def _verified_run_files(folder: Path, meta: dict, name: str, advice: str) -> dict[str, bytes]:
    """The bytes of every file of a finished run, each checked against its digest in meta.json.

    Args:
        folder: the run folder.
        meta: its ``meta.json``.
        name: the experiment (named in the errors' advice).
        advice: what to do with a damaged file (goes into the errors).

    Returns:
        ``{file name: bytes}`` of every file ``meta.json`` has a digest of (the files
        :func:`load_run` reads among them).

    Raises:
        FileNotFoundError: naming a file that is missing.
        UnreadableResultError: naming ``meta.json`` when its digests are missing or malformed,
            or naming the first file whose SHA-256 is not its recorded one (changed after the
            run finished).
    """
    for part in _REQUIRED_RUN_FILES:
        if not (folder / part).exists():
            raise _missing_run_file(folder, part, name)
    digests = meta.get(FILE_DIGESTS)
    if (
        not isinstance(digests, dict)
        or not set(_REQUIRED_RUN_FILES) <= set(digests) <= set(_DIGESTED_RUN_FILES)
        or not all(isinstance(d, str) and _HEX_DIGEST.match(d) for d in digests.values())
    ):
        reason = f"no SHA-256 of each of {', '.join(_REQUIRED_RUN_FILES)} under {FILE_DIGESTS!r}"
        raise _unreadable(folder / "meta.json", reason, advice)
    contents: dict[str, bytes] = {}
    for part in _DIGESTED_RUN_FILES:
        if part not in digests:
            continue
        try:
            data = (folder / part).read_bytes()
        except FileNotFoundError:
            raise _missing_run_file(folder, part, name) from None
        actual = _sha256(data)
        if actual != digests[part]:
            when = "the run finished"
            raise _changed(folder / part, actual, digests[part], when, "meta.json", advice)
        contents[part] = data
    return contents


def load_run(
    results_dir: str | os.PathLike, name: str, run_id: str, record_type: type | None = None
) -> RunResult:
    """Read one finished run folder.

    Every file's SHA-256 is checked against the one ``meta.json`` recorded when the run
    finished before anything is decoded, and only the bytes checked are decoded.

    Args:
        results_dir: the results root.
        name: the experiment.
        run_id: the run folder's name.
        record_type: the records' dataclass (default: the registered experiment's).

    Raises:
        FileNotFoundError: naming the command to run when the folder is not a finished run of
            this format (missing, interrupted, or written by an older version) or a file of it
            is missing.
        UnreadableResultError: naming the file, with what to do, when one was changed after
            the run finished (its SHA-256 is not the one recorded), or is truncated, corrupt or
            malformed.
    """
    path = Path(results_dir) / name / run_id
    if not (path / "meta.json").exists():
        raise FileNotFoundError(
            f"{path} is not a finished run of experiment {name!r}; run `gmmlimit run {name}`."
        )
    advice = _rerun_advice(path, name)
    meta = load_json(path / "meta.json", advice)
    if not isinstance(meta, dict):
        raise _unreadable(path / "meta.json", "not a JSON object", advice)
    if meta.get("format") != FORMAT:
        raise FileNotFoundError(
            f"{path} was written by an older version of gmmlimit (format "
            f"{meta.get('format', 1)}, need {FORMAT}); rerun `gmmlimit run {name}`."
        )
    contents = _verified_run_files(path, meta, name, advice)
    if record_type is None:
        from . import registry

        record_type = registry()[name].record_type
    arrays = _decode_npz(contents["records.npz"], path / "records.npz", advice)
    scalars = _decode_json(contents["scalars.json"], path / "scalars.json", advice)
    order = scalars.get("order") if isinstance(scalars, dict) else None
    if not isinstance(order, list) or not all(isinstance(key, str) for key in order):
        raise _unreadable(path / "scalars.json", "no list of record keys under 'order'", advice)
    try:
        records = {key: decode_record(record_type, arrays, f"{key}/") for key in order}
    except KeyError as err:
        raise FileNotFoundError(
            f"{path} lacks the record field {err}: it was written by an older version of "
            f"experiment {name!r}; rerun `gmmlimit run {name}`."
        ) from None
    config = _decode_json(contents["config.json"], path / "config.json", advice)
    if not isinstance(config, dict):
        raise _unreadable(path / "config.json", "not a JSON object", advice)
    try:
        summary = contents["summary.txt"].decode("utf-8").strip()
    except UnicodeDecodeError as err:
        raise _unreadable(path / "summary.txt", err, advice) from None
    return RunResult(
        name=name,
        run_id=run_id,
        path=path,
        config=config,
        meta=meta,
        records=records,
        summary=summary,
    )


# --------------------------------------------------------------------------------------------
# The index, and choosing runs
# --------------------------------------------------------------------------------------------


def read_index(results_dir: str | os.PathLike) -> list[dict]:
    """The entries of ``results_dir/index.json`` (empty if there is none)."""
    path = Path(results_dir) / INDEX_NAME
    if not path.exists():
        return []
    advice = (
        "it lists the runs of that results folder: restore it, or delete it (the runs are then "
        "no longer listed; rerun them) or use another --results folder."
    )
    index = load_json(path, advice)
    runs = index.get("runs") if isinstance(index, dict) else None
    if not isinstance(runs, list) or not all(
        isinstance(r, dict) and isinstance(r.get("name"), str) and isinstance(r.get("run_id"), str)
        for r in runs
    ):
        raise _unreadable(path, "no list of run entries under 'runs'", advice)
    return runs


def update_index(results_dir: Path, entry: dict) -> None:
    """Add or replace (same name and run_id) one entry of the index, atomically.

    The read, change and write hold an exclusive lock on ``results_dir/.index.lock``, so runs
    that finish at once in several processes each keep their entry.
    """
    with _locked(Path(results_dir) / INDEX_LOCK):
        runs = [
            r
            for r in read_index(results_dir)
            if not (r["name"] == entry["name"] and r["run_id"] == entry["run_id"])
        ]
        runs.append(entry)
        atomic_write_json(results_dir / INDEX_NAME, {"version": FORMAT, "runs": runs})


INDEX_LOCK = ".index.lock"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (created if needed) for the block.

    Where the platform has no ``fcntl`` (Windows) the block runs unlocked.
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def list_runs(
    results_dir: str | os.PathLike = "results",
    name: str | None = None,
    *,
    quick: bool | None = None,
    default_config: bool | None = None,
) -> list[dict]:
    """Finished runs listed in the index (this format only), oldest first.

    Args:
        results_dir: the results root.
        name: only this experiment (None: all).
        quick: only quick (True) or full (False) runs; None: both.
        default_config: only runs with (True) or without (False) their setting's default
            config as it is today (:func:`current_default`); None: both.

    Returns:
        Index entries: ``name, run_id, path, quick, overrides, default_config, time, ...``.
    """
    root = Path(results_dir)
    runs = [
        r
        for r in read_index(root)
        if r.get("complete")
        and r.get("format") == FORMAT
        and (name is None or r["name"] == name)
        and (quick is None or bool(r["quick"]) == quick)
        and (root / r["path"] / "meta.json").exists()
    ]
    if default_config is not None:
        runs = [r for r in runs if _is_current_default(root, r) == default_config]
    return sorted(runs, key=lambda r: (r["time"], r["run_id"]))


def current_default(name: str, quick: bool) -> dict | None:
    """Experiment ``name``'s default config of the setting today, as JSON values (None: unknown).

    Runs store the config they ran; one whose config is no longer the default (a default
    changed since) is not a default-config run (``list_runs``, ``RunResult.default_config``).
    """
    from . import registry  # the registry imports every experiment module: on first use
    from ._config import default_config_dict

    spec = registry().get(name)
    return None if spec is None else default_config_dict(spec, quick)


def _recorded_digest(folder: Path, part: str) -> str | None:
    """The SHA-256 of a run's file as its ``meta.json`` recorded it; None if it cannot be read.

    None too when ``meta.json`` is damaged or has no such digest: :func:`load_run` names that.
    """
    try:
        meta = load_json(folder / "meta.json", _rerun_advice(folder, folder.parent.name))
    except (OSError, UnreadableResultError):
        return None
    digests = meta.get(FILE_DIGESTS) if isinstance(meta, dict) else None
    digest = digests.get(part) if isinstance(digests, dict) else None
    return digest if isinstance(digest, str) else None


def _is_current_default(root: Path, entry: dict) -> bool:
    """Whether an index entry's run has no overrides and today's default config.

    A run whose ``config.json`` was changed after it finished counts as its index entry says
    (no overrides: a default run), so it is chosen as it was and :func:`load_run` refuses it,
    naming the file, instead of an older run being chosen in its place without a word.
    """
    if not entry.get("default_config"):
        return False
    folder = root / entry["path"]
    data = (folder / "config.json").read_bytes()
    if _recorded_digest(folder, "config.json") not in (None, _sha256(data)):
        return True
    stored = _decode_json(data, folder / "config.json", _rerun_advice(folder, entry["name"]))
    return stored == current_default(entry["name"], bool(entry["quick"]))


def load_latest(
    name: str,
    results_dir: str | os.PathLike = "results",
    quick: bool | None = None,
    *,
    default_config: bool | None = True,
) -> RunResult:
    """The most recent finished run of experiment ``name``.

    Args:
        name: the experiment.
        results_dir: the results root.
        quick: only quick runs (True), only full runs (False), or either (None).
        default_config: True (default): only runs with their setting's default config, the
            ones figures draw from; False: only runs with overrides; None: any.

    Returns:
        The :class:`RunResult`.

    Raises:
        FileNotFoundError: naming the experiment and the command to run when there is none.
    """
    runs = list_runs(results_dir, name, quick=quick, default_config=default_config)
    if not runs:
        setting = {None: "", True: " --quick", False: " --full"}[quick]
        which = {True: "default-config ", False: "overridden ", None: ""}[default_config]
        raise FileNotFoundError(
            f"no finished {which}results of experiment {name!r} in {results_dir}/ "
            f"(setting: {'any' if quick is None else ('quick' if quick else 'full')}); run "
            f"`gmmlimit run {name}{setting} --results {results_dir}` first."
        )
    return load_run(results_dir, name, Path(runs[-1]["path"]).name)


def find_run(results_dir: str | os.PathLike, run_id: str) -> dict:
    """The index entry of a finished run by its id.

    Raises:
        ValueError: naming the id when no finished run has it.
    """
    for entry in list_runs(results_dir):
        if entry["run_id"] == run_id:
            return entry
    raise ValueError(
        f"no finished run {run_id!r} in {results_dir}/index.json; `gmmlimit runs` lists them."
    )


def select_runs(
    results_dir: str | os.PathLike,
    names: Iterable[str],
    quick: bool | None = None,
    run_ids: Sequence[str] = (),
) -> tuple[bool, dict[str, dict]]:
    """Choose one run per experiment: the latest default-config run of one setting.

    Runs named in ``run_ids`` are used as they are (overrides included) and set the setting:
    every other experiment gets the latest finished run with the default config of the named
    runs' setting. Without named runs the setting is ``quick`` if given, else the one whose
    default runs cover more of ``names`` (full on a tie; quick, the default setting, when there
    are none). Quick and full runs are never mixed.

    Args:
        results_dir: the results root.
        names: the experiments wanted.
        quick: force the quick (True) or full (False) setting; None: choose as above.
        run_ids: explicit run ids (at most one per experiment, each of an experiment in
            ``names``, all of one setting, which must agree with ``quick`` when given).

    Returns:
        ``(quick, {name: index entry})``: the setting used and the entry of every experiment
        that has a run (the others are missing).

    Raises:
        ValueError: an unknown run id, two ids for one experiment, an id of an experiment not
            in ``names``, named runs of both settings, or named runs of the other setting than
            ``quick``.
    """
    names = list(dict.fromkeys(names))
    explicit: dict[str, dict] = {}
    for run_id in run_ids:
        entry = find_run(results_dir, run_id)
        if entry["name"] not in names:
            raise ValueError(
                f"--run {run_id}: no figure drawn reads experiment {entry['name']!r} "
                f"(the figures read: {', '.join(names) or 'none'})."
            )
        if entry["name"] in explicit:
            raise ValueError(f"--run names two runs of experiment {entry['name']!r}.")
        explicit[entry["name"]] = entry
    settings = {bool(e["quick"]) for e in explicit.values()}
    if len(settings) > 1:
        listed = ", ".join(
            f"{e['run_id']} ({'quick' if e['quick'] else 'full'})" for e in explicit.values()
        )
        raise ValueError(
            f"--run names quick and full runs ({listed}); quick and full runs are never mixed: "
            "name runs of one setting."
        )
    if settings:
        (named,) = settings
        if quick is not None and quick != named:
            wrong = ", ".join(e["run_id"] for e in explicit.values())
            raise ValueError(
                f"--{'quick' if quick else 'full'} asked for {'quick' if quick else 'full'} runs "
                f"but --run names {'quick' if named else 'full'} run(s) {wrong}; quick and full "
                "runs are never mixed."
            )
        quick = named
    if quick is None:
        cover = {
            q: sum(bool(list_runs(results_dir, n, quick=q, default_config=True)) for n in names)
            for q in (False, True)
        }
        quick = cover[True] > cover[False] or cover[True] == cover[False] == 0
    chosen: dict[str, dict] = {}
    for name in names:
        if name in explicit:
            chosen[name] = explicit[name]
            continue
        runs = list_runs(results_dir, name, quick=quick, default_config=True)
        if runs:
            chosen[name] = runs[-1]
    return quick, chosen


def find_partial(exp_dir: Path, chash: str) -> Path | None:
    """The newest unfinished run folder of this config hash, or None."""
    if not exp_dir.exists():
        return None
    candidates = sorted(
        p for p in exp_dir.glob(f"*-{chash}{PARTIAL_SUFFIX}") if (p / "config.json").exists()
    )
    return candidates[-1] if candidates else None
