"""gmmlimit: K-means as the small-variance limit of EM for Gaussian mixtures, in compiled JAX.

The top level holds the fits and the pieces of one iteration; the rest lives in subpackages:
:mod:`gmmlimit.init` (initial means), :mod:`gmmlimit.variants` (mixture variants and what a
variant author needs), :mod:`gmmlimit.scale` (out-of-core and sharded fits),
:mod:`gmmlimit.study` (limit diagnostics, rates, gradient comparison, annealing paths),
:mod:`gmmlimit.checks` (input validators) and :mod:`gmmlimit.sklearn` (estimators; imported on
first use).

Example:
    >>> import jax, jax.numpy as jnp
    >>> import gmmlimit as gl
    >>> X = jnp.array([[0.0, 0.0], [0.0, 1.0], [9.0, 9.0], [9.0, 10.0]])
    >>> m0 = gl.init.kmeans_plusplus(jax.random.key(0), X, 2)
    >>> hard = gl.kmeans(X, m0)        # Lloyd's K-means: the same code at sigma2 = 0
    >>> sorted(hard.means.tolist())
    [[0.0, 0.5], [9.0, 9.5]]
    >>> soft = gl.em(X, m0, 0.5)       # EM for the isotropic equal-prior mixture
    >>> bool(jnp.allclose(jnp.sort(soft.means, axis=0), jnp.sort(hard.means, axis=0), atol=1e-6))
    True
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

from . import checks, init, scale, study, variants
from ._anneal import anneal
from ._api import (
    critical_sigma2,
    em,
    em_step,
    fit,
    kmeans,
    kmeans_objective,
    log_likelihood,
    responsibilities,
    restarts,
)
from ._driver import FitResult
from ._native import status as cpu_kernel_status
from ._variant import Variant

__version__ = "0.1.0"

__all__ = [
    "FitResult",
    "Variant",
    "__version__",
    "anneal",
    "checks",
    "cpu_kernel_status",
    "critical_sigma2",
    "em",
    "em_step",
    "fit",
    "init",
    "kmeans",
    "kmeans_objective",
    "log_likelihood",
    "responsibilities",
    "restarts",
    "scale",
    "sklearn",
    "study",
    "variants",
]

# Names that left the top level, and their homes: still reachable here, with a DeprecationWarning.
_MOVED: dict[str, str] = {
    **dict.fromkeys(
        (
            "default_mesh",
            "em_out_of_core",
            "em_sharded",
            "fit_out_of_core",
            "fit_out_of_core_processes",
            "fit_sharded",
            "kmeans_out_of_core",
            "kmeans_sharded",
        ),
        "gmmlimit.scale",
    ),
    **dict.fromkeys(
        (
            "AnnealPath",
            "AnnealResult",
            "GradientResult",
            "MethodCost",
            "RateResult",
            "anneal_variant",
            "collapsed_rate",
            "compare_em_gradient",
            "convergence_rate",
            "count_distinct",
            "gradient_fit",
            "linearized_rate",
            "nearest_gap",
            "onehot_threshold",
            "responsibility_bound",
            "responsibility_gap",
            "scaled_log_likelihood",
            "schedule_values",
            "split_points",
            "update_gap",
        ),
        "gmmlimit.study",
    ),
    **dict.fromkeys(
        ("EStepBlock", "FarPoints", "IsotropicParams", "Temperature", "temperature_field"),
        "gmmlimit.variants",
    ),
}


def __getattr__(name: str) -> Any:
    if name == "sklearn":  # imported on first use: it pulls in scikit-learn
        return importlib.import_module("gmmlimit.sklearn")
    home = _MOVED.get(name)
    if home is None:
        raise AttributeError(f"module 'gmmlimit' has no attribute {name!r}")
    warnings.warn(
        f"gmmlimit.{name} moved to {home}.{name}; the top-level name will be removed.",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(importlib.import_module(home), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
