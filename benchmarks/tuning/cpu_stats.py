"""Where the test suite's CPU goes: CPU seconds per test, as a pytest plugin.

Loaded with ``-p cpu_stats``, it adds up, for each test (its setup, call and teardown), the CPU
seconds of the process that ran it and of the child processes it started and waited for (the
subprocesses and multi-process clusters the tests launch), and appends one line per test to
``$CPU_STATS_FILE``: ``test id, own CPU s, children CPU s, wall s``, tab-separated. Unlike
``--durations``, the figures do not grow when the other workers load the machine (each worker
counts its own process), so two runs can be compared test by test. ``--summary`` then prints
the totals per file and the costliest tests. Without ``$CPU_STATS_FILE`` nothing is written.

Usage::

    CPU_STATS_FILE=/tmp/cpu.tsv PYTHONPATH=benchmarks/tuning python -m pytest -p cpu_stats
    python benchmarks/tuning/cpu_stats.py --summary /tmp/cpu.tsv [--top 30]

Cited in README.md (the test command's paragraph).
"""

from __future__ import annotations

import argparse
import collections
import os
import resource
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

OUT_ENV = "CPU_STATS_FILE"


def _cpu_seconds() -> tuple[float, float]:
    """(this process's, its waited-for children's) user and system CPU seconds."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: Any, nextitem: Any) -> Generator[None, None, None]:
    """Count one test's CPU seconds, and append its line to ``$CPU_STATS_FILE``."""
    own0, children0 = _cpu_seconds()
    start = time.perf_counter()
    yield
    own1, children1 = _cpu_seconds()
    path = os.environ.get(OUT_ENV)
    if path:
        line = f"{item.nodeid}\t{own1 - own0:.3f}\t{children1 - children0:.3f}"
        with open(path, "a") as out:  # one short write a line: workers append side by side
            out.write(f"{line}\t{time.perf_counter() - start:.3f}\n")


def summary(path: str | Path, top: int = 30) -> str:
    """The total, the CPU seconds per file and the ``top`` costliest tests of a TSV file."""
    per_test: dict[str, float] = collections.defaultdict(float)
    for line in Path(path).read_text().splitlines():
        test, own, children, _ = line.split("\t")
        per_test[test] += float(own) + float(children)
    per_file: dict[str, float] = collections.defaultdict(float)
    for test, seconds in per_test.items():
        per_file[test.split("::", 1)[0]] += seconds
    lines = [f"{sum(per_test.values()):.1f} CPU s in {len(per_test)} tests", "", "CPU s  file"]
    lines += [f"{s:6.1f}  {f}" for f, s in sorted(per_file.items(), key=lambda fs: -fs[1])]
    lines += ["", "CPU s  test"]
    ranked = sorted(per_test.items(), key=lambda ts: -ts[1])[:top]
    lines += [f"{s:6.1f}  {t}" for t, s in ranked]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """``--summary FILE [--top N]``: print :func:`summary`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--summary", required=True, help="the TSV file the plugin wrote")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args(argv)
    print(summary(args.summary, args.top))


if __name__ == "__main__":
    main()
