"""Experiments: one module per experiment, each with a module-level ``EXPERIMENT`` spec.

``registry()`` imports every module ``experiments/<name>.py`` (names not starting with ``_``)
and returns ``{name: ExperimentSpec}``. The framework (configs, resumable sweeps, atomic result
folders, the results index) lives in :mod:`experiments._framework`.
"""

from __future__ import annotations

import importlib
import pkgutil

from ._framework import (
    ExperimentSpec,
    PointStore,
    Progress,
    RunResult,
    load_latest,
    make_config,
    run_experiment,
    sweep,
)

__all__ = [
    "ExperimentSpec",
    "PointStore",
    "Progress",
    "RunResult",
    "enable_x64",
    "load_latest",
    "make_config",
    "registry",
    "run_experiment",
    "sweep",
]


def enable_x64() -> None:
    """Turn on float64 in JAX (the experiments' default precision); call before computing."""
    import jax

    jax.config.update("jax_enable_x64", True)


def registry() -> dict[str, ExperimentSpec]:
    """Every experiment module's ``EXPERIMENT``, keyed by name, in run order."""
    found: list[ExperimentSpec] = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        spec = getattr(module, "EXPERIMENT", None)
        if isinstance(spec, ExperimentSpec):
            if spec.name != info.name:
                raise ValueError(f"experiments/{info.name}.py declares EXPERIMENT {spec.name!r}.")
            found.append(spec)
    found.sort(key=lambda s: (s.order, s.name))
    return {spec.name: spec for spec in found}
