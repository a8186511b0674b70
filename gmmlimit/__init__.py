"""gmmlimit: K-means as the small-variance limit of EM for Gaussian mixtures, in compiled JAX.

Quick start::

    import jax, gmmlimit as gl
    m0 = gl.init.kmeans_plusplus(jax.random.key(0), X, 3)
    soft = gl.em(X, m0, 0.5)        # EM for the isotropic equal-prior mixture
    hard = gl.kmeans(X, m0)         # Lloyd's K-means: the same code at sigma2 = 0
"""

from . import init, variants
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
from ._diagnostics import (
    nearest_gap,
    onehot_threshold,
    responsibility_bound,
    responsibility_gap,
    scaled_log_likelihood,
    update_gap,
)
from ._driver import FitResult
from ._outofcore import em_out_of_core, fit_out_of_core, kmeans_out_of_core
from ._sharding import default_mesh, em_sharded, fit_sharded, kmeans_sharded
from ._variant import EStepBlock, FarPoints, Variant
from .variants.isotropic import IsotropicParams

__version__ = "0.1.0"

__all__ = [
    "EStepBlock",
    "FarPoints",
    "FitResult",
    "IsotropicParams",
    "Variant",
    "__version__",
    "critical_sigma2",
    "default_mesh",
    "em",
    "em_out_of_core",
    "em_sharded",
    "em_step",
    "fit",
    "fit_out_of_core",
    "fit_sharded",
    "init",
    "kmeans",
    "kmeans_objective",
    "kmeans_out_of_core",
    "kmeans_sharded",
    "log_likelihood",
    "nearest_gap",
    "onehot_threshold",
    "responsibilities",
    "responsibility_bound",
    "responsibility_gap",
    "restarts",
    "scaled_log_likelihood",
    "update_gap",
    "variants",
]
