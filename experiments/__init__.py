"""Experiments: one module per experiment, each with a module-level ``EXPERIMENT`` spec.

``registry()`` imports every module ``gmmlimit/experiments/<name>.py`` (``experiments/`` in the
repository; names not starting with ``_``) and returns ``{name: ExperimentSpec}``. The framework
is three modules: :mod:`._config` (specs and typed configs), :mod:`._store` (records, run
folders, the index and the loader API) and :mod:`._runner` (progress, resumable sweeps, the
code fingerprint, running).

Reading results (the stable loader API, for figures and a paper builder)::

    from gmmlimit import experiments as ex

    run = ex.load_latest("responsibilities", "results", quick=True)  # default config only
    run.records["separated"].slope, run.meta["estep"], run.overrides, run.setting
    quick, entries = ex.select_runs("results", ["loglik", "updates"])  # one setting, no mixing
    runs = [ex.load_run("results", e["name"], e["run_id"]) for e in entries.values()]
"""

from __future__ import annotations

import importlib
import pkgutil

from ._config import ExperimentSpec, config_overrides, make_config, parse_set
from ._runner import (
    Progress,
    Reuse,
    code_fingerprint,
    reusable_run,
    reuse_verdict,
    run_experiment,
    sweep,
)
from ._store import (
    PointStore,
    RunResult,
    UnreadableResultError,
    find_run,
    list_runs,
    load_latest,
    load_run,
    read_index,
    select_runs,
)

__all__ = [
    "ExperimentSpec",
    "PointStore",
    "Progress",
    "Reuse",
    "RunResult",
    "UnreadableResultError",
    "code_fingerprint",
    "config_overrides",
    "enable_x64",
    "find_run",
    "list_runs",
    "load_latest",
    "load_run",
    "make_config",
    "parse_set",
    "read_index",
    "registry",
    "reusable_run",
    "reuse_verdict",
    "run_experiment",
    "select_runs",
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
