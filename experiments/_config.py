"""What an experiment is, and its typed configs: specs, building, overrides and hashing.

An experiment is an :class:`ExperimentSpec`: a frozen config dataclass whose defaults are the
full (paper) setting, a pure ``run`` returning one typed record per data set, a ``summarize``
and a ``check`` that read those records by field name. This module builds and validates configs
(defaults, then the quick overrides, then the user's ``--set``/``--config`` values, each typed
from the dataclass annotations) before any work is done.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "ExperimentSpec",
    "config_hash",
    "config_overrides",
    "config_to_dict",
    "default_config_dict",
    "make_config",
    "parse_set",
]


@dataclasses.dataclass(frozen=True)
class ExperimentSpec:
    """What an experiment is: its config and record types, how to run, summarise and verify it.

    Attributes:
        name: the experiment's name (its module name in ``gmmlimit.experiments``).
        config_type: a frozen dataclass; its defaults are the full (paper) setting. It may define
            ``validate(self) -> None`` raising ValueError on a bad combination of values.
        record_type: the frozen dataclass of one record (one per data set, or per variant).
            Its fields are numpy arrays, Python scalars, strings, tuples of those, None (for
            optional fields), nested records or ``dict[str, record]``; the framework alone
            writes and reads them.
        run: ``run(config, progress, resume=None) -> dict[str, record]``: pure computation,
            records keyed by data set in run order. ``resume`` is a
            :class:`~gmmlimit.experiments.PointStore` (None: in memory); sweeps go through
            :func:`~gmmlimit.experiments.sweep` so that finished points are skipped.
        summarize: ``summarize(config, records) -> str``, the one-line summary.
        quick: overrides of the defaults for the quick setting.
        check: optional ``check(config, records) -> list[str]``: the verified statements that
            failed (empty when all hold).
        description: one paragraph saying what the experiment measures.
        order: position in ``gmmlimit list`` and ``gmmlimit reproduce`` (ties: by name).
        provenance: optional ``provenance(config) -> dict`` of JSON values that ``meta.json``
            records beside the framework's keys (e.g. which variant ran, and a hash of its
            source); it is part of the run's hash, so a run never resumes when it changed.
    """

    name: str
    config_type: type
    record_type: type
    run: Callable[..., dict]
    summarize: Callable[[Any, dict], str]
    quick: dict = dataclasses.field(default_factory=dict)
    check: Callable[[Any, dict], list[str]] | None = None
    description: str = ""
    order: int = 100
    provenance: Callable[[Any], dict] | None = None

    @property
    def accepts_data(self) -> bool:
        """Whether the experiment runs on a user's data file (its config has a ``data`` key)."""
        return "data" in {f.name for f in dataclasses.fields(self.config_type)}


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
        out = None
        if isinstance(value, (int, np.integer)) or (
            isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value)
        ):
            out = int(value)
        if out is None:
            raise ValueError(f"config key {key!r} needs an integer; got {value!r}.")
        if not -(2**63) <= out < 2**63:  # seeds and sizes are int64 downstream
            raise ValueError(f"config key {key!r} is out of the int64 range; got {out}.")
        return out
    if tp is float:
        if isinstance(value, bool):
            raise ValueError(f"config key {key!r} needs a number; got {value!r}.")
        try:
            out = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"config key {key!r} needs a number; got {value!r}.") from None
        if not math.isfinite(out):  # no config key takes inf: every one is a finite setting
            raise ValueError(f"config key {key!r} is {out}; it needs a finite number.")
        return out
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"config key {key!r} needs a string; got {value!r}.")
        return value
    raise ValueError(f"config key {key!r} has an unsupported type {tp}.")


def make_config(spec: ExperimentSpec, overrides: Mapping | None = None, quick: bool = False) -> Any:
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
            an unreadable data file, ...). Nothing has been computed when this is raised.
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
        key = key.strip()
        if key in out:
            raise ValueError(
                f"--set gives {key!r} twice ({key}={out[key]} and {key}={value.strip()}); "
                "give each key once."
            )
        out[key] = value.strip()
    return out


def config_to_dict(config: Any) -> dict:
    """A config as a JSON-able dict (tuples become lists)."""
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def config_overrides(spec: ExperimentSpec, config: Any, quick: bool) -> dict:
    """The keys where ``config`` differs from the default config of its setting.

    Args:
        spec: the experiment.
        config: a config of ``spec``.
        quick: the setting (quick or full) whose defaults are the reference.

    Returns:
        ``{key: value}`` (JSON-able), empty for the default config of the setting.
    """
    default = default_config_dict(spec, quick)
    return {k: v for k, v in config_to_dict(config).items() if default.get(k) != v}


def default_config_dict(spec: ExperimentSpec, quick: bool) -> dict:
    """The setting's default config of ``spec`` as the JSON values ``config.json`` holds.

    Args:
        spec: the experiment.
        quick: the setting.

    Returns:
        ``{key: value}``, tuples as lists, as a run's ``config.json`` reads back.
    """
    default = config_to_dict(spec.config_type(**_setting_values(spec, quick)))
    return json.loads(json.dumps(default))


def _setting_values(spec: ExperimentSpec, quick: bool) -> dict:
    types_ = _field_types(spec.config_type)
    source = spec.quick if quick else {}
    return {key: _coerce(value, types_[key], key) for key, value in source.items()}


def config_hash(name: str, config: Any, quick: bool, code: str = "") -> str:
    """A stable 12-hex-digit hash of the experiment name, config, quick flag and code."""
    payload = json.dumps(
        {"name": name, "config": config_to_dict(config), "quick": bool(quick), "code": code},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:12]
