"""Registered experiments with instant runs, for tests of the command line and the store."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any


@dataclasses.dataclass(frozen=True)
class StandInConfig:
    """The configuration of a stand-in experiment."""

    seed: int = 0


@dataclasses.dataclass(frozen=True)
class StandInRecord:
    """One record of a stand-in experiment."""

    value: float


def stand_in(spec: Any, name: str, run: Callable[..., Any]) -> Any:
    """The registered experiment ``spec`` (its module gives the fingerprint) with ``run``.

    Args:
        spec: the registry's experiment.
        name: its name (in the summary).
        run: ``(config, progress, resume=None) -> records`` of :class:`StandInRecord`.

    Returns:
        The experiment with stand-in configuration and records, no check and no quick setting.
    """
    return dataclasses.replace(
        spec,
        config_type=StandInConfig,
        record_type=StandInRecord,
        run=run,
        summarize=lambda config, records: f"{name} summary",
        check=None,
        quick={},
        provenance=None,
    )
