"""gmmlimit: K-means as the small-variance limit of EM for Gaussian mixtures, in compiled JAX.

Quick start::

    import jax, gmmlimit as gl
    m0 = gl.init.kmeans_plusplus(jax.random.key(0), X, 3)
    soft = gl.em(X, m0, 0.5)        # EM for the isotropic equal-prior mixture
    hard = gl.kmeans(X, m0)         # Lloyd's K-means: the same code at sigma2 = 0
"""

from . import checks, init, variants
from ._anneal import (
    AnnealPath,
    AnnealResult,
    anneal,
    anneal_variant,
    count_distinct,
    schedule_values,
    split_points,
)
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
from ._ascent import GradientResult, MethodCost, compare_em_gradient, gradient_fit
from ._diagnostics import (
    nearest_gap,
    onehot_threshold,
    responsibility_bound,
    responsibility_gap,
    scaled_log_likelihood,
    update_gap,
)
from ._driver import FitResult
from ._native import status as cpu_kernel_status
from ._outofcore import em_out_of_core, fit_out_of_core, kmeans_out_of_core
from ._rates import RateResult, collapsed_rate, convergence_rate, linearized_rate
from ._sharding import (
    default_mesh,
    em_sharded,
    fit_out_of_core_processes,
    fit_sharded,
    kmeans_sharded,
)
from ._variant import EStepBlock, FarPoints, Temperature, Variant, temperature_field
from .variants.isotropic import IsotropicParams

__version__ = "0.1.0"

__all__ = [
    "AnnealPath",
    "AnnealResult",
    "EStepBlock",
    "FarPoints",
    "FitResult",
    "GradientResult",
    "IsotropicParams",
    "MethodCost",
    "RateResult",
    "Temperature",
    "Variant",
    "__version__",
    "anneal",
    "anneal_variant",
    "checks",
    "collapsed_rate",
    "compare_em_gradient",
    "convergence_rate",
    "count_distinct",
    "cpu_kernel_status",
    "critical_sigma2",
    "default_mesh",
    "em",
    "em_out_of_core",
    "em_sharded",
    "em_step",
    "fit",
    "fit_out_of_core",
    "fit_out_of_core_processes",
    "fit_sharded",
    "gradient_fit",
    "init",
    "kmeans",
    "kmeans_objective",
    "kmeans_out_of_core",
    "kmeans_sharded",
    "linearized_rate",
    "log_likelihood",
    "nearest_gap",
    "onehot_threshold",
    "responsibilities",
    "responsibility_bound",
    "responsibility_gap",
    "restarts",
    "scaled_log_likelihood",
    "schedule_values",
    "split_points",
    "temperature_field",
    "update_gap",
    "variants",
]
