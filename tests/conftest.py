"""Test configuration: float64 is enabled so both precisions are exercised.

The suite runs in parallel worker processes (pytest-xdist, ``-n auto`` in pyproject.toml): most
tests spend their time compiling, which XLA does on one core. The scheduler below hands each
worker whole test files, so a file's module fixtures are built once, on one worker; the files
that read the session's one ``gmmlimit reproduce --quick`` run (``test_experiments.quick_run``)
go to the same worker together, so that run is made once.
"""

from pathlib import Path

import jax
import pytest

jax.config.update("jax_enable_x64", True)

READ_THE_QUICK_RUN = {"test_experiments", "test_figures", "test_paper"}


def file_group(nodeid: str) -> str:
    """The unit of work a worker gets for a test: its file, or the group of quick-run readers."""
    file = nodeid.split("::", 1)[0]
    return "quick_run" if Path(file).stem in READ_THE_QUICK_RUN else file


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: unused when it is not installed
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    from xdist.scheduler import LoadScopeScheduling

    class ByFile(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return file_group(nodeid)

    return ByFile(config, log)
