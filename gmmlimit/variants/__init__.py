"""Mixture variants: each one a small module defining a :class:`~gmmlimit.Variant`."""

from .isotropic import IsotropicParams, IsotropicStats, isotropic

__all__ = ["IsotropicParams", "IsotropicStats", "isotropic"]
