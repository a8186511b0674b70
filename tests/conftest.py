"""Test configuration: float64 is enabled so both precisions are exercised.

The suite runs in parallel worker processes (pytest-xdist, ``-n auto`` in pyproject.toml): most
tests spend their time compiling, which XLA does on one core. The scheduler below hands each
worker whole test files, so a file's module fixtures are built once, on one worker; the files
that read the session's one ``gmmlimit reproduce --quick`` run (``test_experiments.quick_run``)
go to the same worker together, so that run is made once.

Compiled programs go to a JAX compilation cache on disk that lives for one test session
(``pytest_configure``): the workers and the subprocesses the tests start compile many of the same
programs (the same small fits in several files, the CLI in subprocesses), and each then compiles
a program once per session instead of once per process. Every session starts from an empty cache,
so no test reads a program compiled by an earlier build. A ``JAX_COMPILATION_CACHE_DIR`` set by
the caller is used as it is.
"""

import os
import shutil
import tempfile
from pathlib import Path

import jax
import pytest

jax.config.update("jax_enable_x64", True)

CACHE_ENV = "JAX_COMPILATION_CACHE_DIR"
"""The variable that hands the session's compilation cache to workers and subprocesses."""

_SESSION_CACHE: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    """Start the session's compilation cache (in the first process; workers inherit it)."""
    if CACHE_ENV in os.environ:
        return  # the caller's cache, or this session's, set before JAX read its settings
    path = tempfile.mkdtemp(prefix="gmmlimit-jax-cache-")
    _SESSION_CACHE.append(path)
    os.environ[CACHE_ENV] = path
    # every program, however quick to compile: most of the suite's are small ones
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    jax.config.update("jax_compilation_cache_dir", path)  # this process read them already
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the cache this process started (after its workers have stopped)."""
    for path in _SESSION_CACHE:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(autouse=True)
def _cpu_bits_on_the_cpu(request: pytest.FixtureRequest):
    """Run a test marked ``cpu_bits`` on the CPU device where JAX's default device is another.

    Such a test asserts that two compiled programs (in memory and out of core, Hamerly's and
    Lloyd's, EM at sigma2 = 0 and K-means, one fit and a vmapped batch) give the same bits. That
    holds on XLA:CPU, where the programs sum in the same order; on a GPU, XLA picks each
    program's product and reduction kernels on its own, and on an H200 the same pairs differed in
    the last bits (relative 1e-16 to 4e-6: benchmarks/results/gpu_h200_s33/failures.log).
    """
    if request.node.get_closest_marker("cpu_bits") is None or jax.default_backend() == "cpu":
        yield
        return
    with jax.default_device(jax.devices("cpu")[0]):
        yield


READ_THE_QUICK_RUN = {"test_experiments", "test_figures", "test_paper"}

# Seconds of each unit of work (summed wall seconds per file, 2-core Intel VM, 2026-12-07, after
# the session's test cuts; 3 workers on 2 cores, so each is about 1.5 times its time alone; 27 min
# 38 s in all; test_native with the clang build, as CI has clang). The scheduler hands out the
# costliest unit first (longest processing time first): xdist orders units by their number of
# tests, which sent the few slow files (the multi-process clusters, the benchmark scripts, the
# tutorials: 40 to 70 s in under 25 tests each) out last, where one worker could run them while
# the others had nothing left. A file not listed counts 0.2 s a test.
UNIT_SECONDS = {
    "tests/test_variants_contract.py": 220,
    "tests/test_estimators.py": 160,
    "tests/test_native.py": 135,  # 110 here, and the clang and portable kernel builds (fresh HOME)
    "quick_run": 123,
    "tests/test_offset_data.py": 101,
    "tests/test_hamerly.py": 89,
    "tests/test_core_em.py": 83,
    "tests/test_estimator_shapes.py": 71,
    "tests/test_docs.py": 70,
    "tests/test_benchmarks.py": 59,
    "tests/test_variants_scale.py": 55,
    "tests/test_properties.py": 50,
    "tests/test_traced_data.py": 80,  # 60 CPU s (2026-12-07, session 62): compiles, 35 tests
    "tests/test_multiprocess.py": 47,
    "tests/test_variants_edges.py": 35,
    "tests/test_core_sklearn.py": 27,
    "tests/test_anneal_rates.py": 25,
    "tests/test_validation.py": 25,
    "tests/test_offset_estimators.py": 23,
    "tests/test_gradient_scale.py": 22,
    "tests/test_perf.py": 22,
    "tests/test_launch_failures.py": 18,
    "tests/test_sharding.py": 18,
    # session 63's files (single-process CPU seconds, quiet machine): without an entry they
    # counted 0.2 s a test and went out last, where one worker ran them alone
    "tests/test_experiment_statements.py": 26,
    "tests/test_far_means.py": 11,
    "tests/test_student_t_out_of_core.py": 8,
}


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: unused when it is not installed
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """``-n auto``: one worker more than the machine has cores.

    A worker often waits, not computes: on the multi-process clusters and CLI runs it starts,
    on the C++ compilers of the kernel tests, on its own start-up. With one worker per core the
    2-core VM was busy 172 % of the time (``/usr/bin/time -v python -m pytest``: 604 s,
    2026-12-07); one more worker takes up that slack (196 %, 559 s, the same commit, nothing
    else running). A count set in ``PYTEST_XDIST_AUTO_NUM_WORKERS`` is used as it is.
    """
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # xdist reads it
    return (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    ) + 1


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

        def _assign_work_unit(self, node: object) -> None:
            def seconds(unit: str) -> float:
                return UNIT_SECONDS.get(unit, 0.2 * len(self.workqueue[unit]))

            self.workqueue.move_to_end(max(self.workqueue, key=seconds), last=False)
            super()._assign_work_unit(node)

    return ByFile(config, log)
