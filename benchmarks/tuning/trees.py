"""Importing a second gmmlimit tree beside this one, for the A/B scripts in this folder.

``compare_iterations.py`` and ``compare_sweeps.py`` time an older tree exported as a package
named ``gmmlimit_base`` (see ``compare_iterations.py``) against the tree in use.
"""

import importlib
from types import ModuleType


def isotropic_module(package: str) -> ModuleType:
    """The tree's isotropic variant module: ``variants._isotropic``, or ``variants.isotropic``
    in trees from before it was made private."""
    try:
        return importlib.import_module(f"{package}.variants._isotropic")
    except ModuleNotFoundError:
        return importlib.import_module(f"{package}.variants.isotropic")
