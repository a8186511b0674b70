"""Mixture variants: each one a small module defining a :class:`~gmmlimit.Variant`."""

from .diag import DiagParams, diag
from .full import FullParams, full
from .isotropic import IsotropicParams, IsotropicStats, isotropic
from .shared_spherical import SharedSphericalParams, shared_spherical
from .spherical import SphericalParams, spherical

__all__ = [
    "DiagParams",
    "FullParams",
    "IsotropicParams",
    "IsotropicStats",
    "SharedSphericalParams",
    "SphericalParams",
    "diag",
    "full",
    "isotropic",
    "shared_spherical",
    "spherical",
]
