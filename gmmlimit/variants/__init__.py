"""Mixture variants: each one a small module defining a :class:`~gmmlimit.Variant`."""

from . import limits
from ._tempered import MixtureStats, TemperedEStep, tempered_variant
from .bernoulli import BernoulliParams, bernoulli
from .diag import DiagParams, diag
from .dpmeans import DPMeansParams, DPMeansResult, dpmeans, dpmeans_objective
from .full import FullParams, full
from .isotropic import IsotropicParams, IsotropicStats, isotropic
from .limits import limit_sweep
from .poisson import PoissonParams, poisson
from .shared_spherical import SharedSphericalParams, shared_spherical
from .spherical import SphericalParams, spherical
from .student_t import StudentTParams, student_t
from .tied import TiedParams, tied
from .vmf import VMFParams, vmf

__all__ = ["IsotropicParams", "IsotropicStats", "isotropic"]
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
