"""Where the test suite's time goes: XLA compiles per test, as a pytest plugin.

Loaded with ``-p compile_stats``, it listens to JAX's monitoring events and adds up, for each
test, the number of programs XLA compiled, the seconds XLA took to compile them, and the seconds
JAX took to trace and lower them. When the session ends, each process (every pytest-xdist worker
and the main process) writes its table to ``$COMPILE_STATS_DIR/<worker>.json`` as
``{test id: [programs, compile s, trace and lower s]}``; ``--summary`` then prints the totals
per file and the costliest tests. Programs compiled in subprocesses that tests start are not
counted. A persistent-cache hit is not a compile (no event), so a session with the suite's own
fresh cache (tests/conftest.py) counts each program once per process that compiled it.

Usage::

    COMPILE_STATS_DIR=/tmp/cs PYTHONPATH=benchmarks/tuning python -m pytest -p compile_stats
    python benchmarks/tuning/compile_stats.py --summary /tmp/cs [--top 30]

Cited in README.md (the test command's paragraph).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
from pathlib import Path

COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
TRACE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
)
OUT_ENV = "COMPILE_STATS_DIR"

_current_test = ["(outside any test)"]
_per_test: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0, 0.0])


def _on_duration(event: str, duration_s: float, **_: object) -> None:
    stats = _per_test[_current_test[0]]
    if event == COMPILE_EVENT:
        stats[0] += 1
        stats[1] += duration_s
    elif event in TRACE_EVENTS:
        stats[2] += duration_s


def pytest_configure(config) -> None:
    """Start listening (once per process)."""
    from jax import monitoring

    if OUT_ENV not in os.environ:
        raise ValueError(f"compile_stats: set {OUT_ENV} to the folder for the tables")
    monitoring.register_event_duration_secs_listener(_on_duration)


def pytest_runtest_logstart(nodeid: str, location: object) -> None:
    """Count what follows toward this test (its setup, call and teardown)."""
    _current_test[0] = nodeid


def pytest_unconfigure(config) -> None:
    """Write this process's table."""
    out_dir = Path(os.environ[OUT_ENV])
    out_dir.mkdir(parents=True, exist_ok=True)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    part = out_dir / f"{worker}.json.part"
    part.write_text(json.dumps(dict(_per_test)))
    part.replace(out_dir / f"{worker}.json")


def summary(folder: Path, top: int) -> str:
    """The totals, the files by compile seconds and the ``top`` costliest tests, as text."""
    per_test: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0, 0.0])
    per_file: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0, 0.0])
    for path in sorted(folder.glob("*.json")):
        for test, stats in json.loads(path.read_text()).items():
            for table, key in ((per_test, test), (per_file, test.split("::")[0])):
                table[key] = [a + b for a, b in zip(table[key], stats, strict=True)]
    totals = [sum(s[i] for s in per_test.values()) for i in range(3)]
    lines = [
        f"{int(totals[0])} programs compiled, {totals[1]:.0f} s compiling, "
        f"{totals[2]:.0f} s tracing and lowering",
        "",
        "programs  compile s  trace s  file",
    ]
    by_cost = sorted(per_file.items(), key=lambda item: -item[1][1])
    lines += [f"{int(s[0]):8d} {s[1]:10.1f} {s[2]:8.1f}  {name}" for name, s in by_cost]
    lines += ["", "programs  compile s  trace s  test"]
    by_cost = sorted(per_test.items(), key=lambda item: -item[1][1])[:top]
    lines += [f"{int(s[0]):8d} {s[1]:10.1f} {s[2]:8.1f}  {name}" for name, s in by_cost]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--summary", type=Path, required=True, help="the tables' folder")
    parser.add_argument("--top", type=int, default=30, help="costliest tests to list")
    args = parser.parse_args()
    print(summary(args.summary, args.top))


if __name__ == "__main__":
    main()
