"""Package layout: ``experiments/`` and ``paper_figures/`` install as gmmlimit subpackages.

The metadata lives in ``pyproject.toml``; only the package list and the folder mapping are here,
because ``pyproject.toml`` cannot both discover ``gmmlimit*`` packages and map extra folders.
"""

from setuptools import find_namespace_packages, setup

MAPPED = {"gmmlimit.experiments": "experiments", "gmmlimit.paper_figures": "paper_figures"}

packages = [
    name
    for name in find_namespace_packages(include=["gmmlimit", "gmmlimit.*"])
    if "__pycache__" not in name
]
setup(packages=[*packages, *MAPPED], package_dir=MAPPED)
