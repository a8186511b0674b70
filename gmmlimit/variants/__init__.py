"""Mixture variants: each one a small private module defining a :class:`~gmmlimit.Variant`.

The package exports each variant under its name (``gmmlimit.variants.poisson`` is the Variant,
never a module), its parameter type, and the public helpers a variant author needs.
"""

from .._variant import (
    EStepBlock,
    FarPoints,
    Scaling,
    Temperature,
    density_scaling,
    invariant_scaling,
    temperature_field,
)
from . import limits
from ._bernoulli import BernoulliParams, bernoulli
from ._diag import DiagParams, diag
from ._dpmeans import DPMeansParams, DPMeansResult, dpmeans, dpmeans_objective
from ._full import FullParams, full
from ._isotropic import IsotropicParams, IsotropicStats, isotropic
from ._poisson import PoissonParams, poisson
from ._shared_spherical import SharedSphericalParams, shared_spherical
from ._spherical import SphericalParams, spherical
from ._student_t import StudentTParams, student_t
from ._tempered import (
    MixtureStats,
    TemperedEStep,
    distinct_rows,
    tempered_assign,
    tempered_variant,
    update_weights,
)
from ._tied import TiedParams, tied
from ._vmf import VMFParams, vmf
from .limits import limit_sweep

__all__ = ["IsotropicParams", "IsotropicStats", "isotropic"]
__all__ += ["EStepBlock", "FarPoints", "Scaling", "Temperature", "density_scaling"]
__all__ += ["invariant_scaling"]
__all__ += ["temperature_field"]
__all__ += [
    "BernoulliParams",
    "DPMeansParams",
    "DPMeansResult",
    "DiagParams",
    "FullParams",
    "MixtureStats",
    "PoissonParams",
    "SharedSphericalParams",
    "SphericalParams",
    "StudentTParams",
    "TemperedEStep",
    "TiedParams",
    "VMFParams",
    "bernoulli",
    "diag",
    "dpmeans",
    "dpmeans_objective",
    "full",
    "limit_sweep",
    "limits",
    "poisson",
    "shared_spherical",
    "spherical",
    "student_t",
    "tempered_variant",
    "tied",
    "vmf",
]

# after the helpers above: the Gamma walkthrough imports them from this package, as a user would
from ._bernoulli import logistic_loss  # noqa: E402
from ._gamma import GammaParams, gamma, itakura_saito  # noqa: E402
from ._poisson import generalized_kl  # noqa: E402
from ._vmf import cosine_dissimilarity  # noqa: E402

__all__ += [
    "GammaParams",
    "cosine_dissimilarity",
    "distinct_rows",
    "gamma",
    "generalized_kl",
    "itakura_saito",
    "logistic_loss",
    "tempered_assign",
    "update_weights",
]
