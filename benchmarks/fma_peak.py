"""The CPU's multiply-add peak: ``benchmarks/fma_peak.cc`` built with the kernel's compiler, timed.

The grid's GEMM peak (``run.gemm_peaks``) is what this machine's libraries reach on a square
product; the cores can do more. This loop of independent vector multiply-adds held in registers
(no loads, no stores) runs at what the multiply-add units allow, so ``2 N K D`` flops over it is
a bound no pass doing all of Lloyd's arithmetic can beat (``4 N K D`` for EM).

Usage (also called by ``benchmarks/run.py --grid``)::

    PYTHONPATH=$PWD python benchmarks/fma_peak.py [--threads T]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

SOURCE = Path(__file__).with_name("fma_peak.cc")
FLAGS = ("-O3", "-std=gnu++17", "-ffp-contract=fast", "-fPIC", "-shared", "-pthread")
"""``-ffp-contract=fast``: ``acc * scale + step`` one fused multiply-add (as in the kernel)."""
TARGET_FLAGS = (("-march=native", "-mprefer-vector-width=512"), ("-march=native",), ())
"""Tried in turn. ``-mprefer-vector-width=512`` (x86 only; elsewhere the next is taken): clang 14
with ``-march=native`` on an Intel Xeon with AVX-512 split the loop's 64-byte vectors into two
256-bit halves, which run at half the 512-bit rate there (94 against 185 GFLOP/s on one core).
The fused kernel's own vectors stay 512-bit in clang's build (its multiply-adds are on zmm)."""


class Loop:
    """The built loop: ``run`` times it, ``lanes`` and ``chains`` say how many flops a step is."""

    def __init__(self, library: ctypes.CDLL, command: str) -> None:
        self.command = command
        self._run = library.fma_peak_run
        self._run.restype = ctypes.c_double
        self._run.argtypes = [
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_int64,
            ctypes.c_double,
            ctypes.c_double,
            ctypes.POINTER(ctypes.c_double),
        ]
        library.fma_peak_lanes.restype = ctypes.c_int
        library.fma_peak_lanes.argtypes = [ctypes.c_int]
        library.fma_peak_chains.restype = ctypes.c_int
        self._lanes = library.fma_peak_lanes
        self.chains = int(library.fma_peak_chains())

    def lanes(self, dtype: str) -> int:
        """Values per vector of ``dtype`` ("float32" or "float64")."""
        return int(self._lanes(np.dtype(dtype).itemsize))

    def run(
        self, threads: int, dtype: str, steps: int, scale: float = 1.0, step: float = 1.0
    ) -> tuple[float, float]:
        """``(seconds, checksum)`` of ``threads`` threads, each ``steps`` multiply-adds per chain.

        Raises:
            ValueError: for a dtype other than float32 and float64, or steps or threads < 1.
        """
        if np.dtype(dtype) not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64; got {dtype!r}")
        if threads < 1 or steps < 1:
            raise ValueError(f"threads and steps must be >= 1; got {threads}, {steps}")
        checksum = ctypes.c_double()
        seconds = self._run(
            threads, np.dtype(dtype).itemsize, steps, scale, step, ctypes.byref(checksum)
        )
        return float(seconds), float(checksum.value)

    def flops(self, threads: int, dtype: str, steps: int) -> float:
        """Flops of one :meth:`run`: two per lane per multiply-add."""
        return 2.0 * threads * self.chains * self.lanes(dtype) * steps

    def gflops(self, threads: int, dtype: str, seconds: float = 0.2, repeats: int = 5) -> float:
        """The best rate of ``repeats`` runs of about ``seconds`` each, in GFLOP/s."""
        steps = 1 << 16
        while True:  # calibrate: double the steps until a run takes a tenth of `seconds`
            took, _ = self.run(threads, dtype, steps)
            if took >= seconds / 10 or steps >= 1 << 40:
                break
            steps *= 2
        steps = max(1, int(steps * seconds / max(took, 1e-9)))
        best = min(self.run(threads, dtype, steps)[0] for _ in range(repeats))
        return self.flops(threads, dtype, steps) / best / 1e9


def build(directory: Path, compiler: list[str] | None = None) -> tuple[Loop | None, str]:
    """Compile :data:`SOURCE` into ``directory`` and load it; ``(loop, command)``, or ``(None,
    why)`` where there is no compiler or the build fails (each of :data:`TARGET_FLAGS` in turn).

    Args:
        directory: where the shared library goes.
        compiler: the command (default: the one the fused kernel would use, ``gmmlimit._native``'s
            choice of ``$CXX``, ``c++``, ``g++``, ``clang++``).
    """
    if compiler is None:
        from gmmlimit import _native

        compiler, why = _native._compiler()
        if compiler is None:
            return None, why
    target = Path(directory) / "fma_peak.so"
    error = "not built"
    for extra in TARGET_FLAGS:
        command = [*compiler, *FLAGS, *extra, str(SOURCE), "-o", str(target)]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.SubprocessError) as exc:
            return None, f"{' '.join(command)} failed: {exc}"
        if result.returncode == 0:
            return Loop(ctypes.CDLL(str(target)), " ".join(command)), " ".join(command)
        error = f"{' '.join(command)} failed: {(result.stderr or result.stdout).strip()[-500:]}"
    return None, error


def peaks(dtypes: list[str], threads: int) -> dict:
    """The multiply-add peak per dtype on ``threads`` threads, built in a temporary directory.

    Returns:
        ``{"gflops": {dtype: GFLOP/s}, "threads": threads, "command": ...}``, or ``{"gflops":
        {}, "why": ...}`` where it could not be built.
    """
    with tempfile.TemporaryDirectory(prefix="gmmlimit-fma-") as directory:
        loop, command = build(Path(directory))
        if loop is None:
            return {"gflops": {}, "why": command}
        return {
            "gflops": {dt: loop.gflops(threads, dt) for dt in dtypes},
            "threads": threads,
            "chains": loop.chains,
            "lanes": {dt: loop.lanes(dt) for dt in dtypes},
            "command": command,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    res = peaks(["float32", "float64"], args.threads)
    if not res["gflops"]:
        raise SystemExit(res["why"])
    for dt, rate in res["gflops"].items():
        print(f"{dt}: {rate:.1f} GFLOP/s on {args.threads} threads ({res['command']})")


if __name__ == "__main__":
    main()
