"""What compiling one fit costs: XLA's CPU seconds and fusions for each variant's fit program.

For each named case of ``tests/variant_cases.py`` (the contract tests' data and starts), the
compiled fit (``fit_program``, history 32) is lowered at ``rounds`` row counts (N, N - 1, ...),
so that every round compiles a new program, and compiled; the least process CPU seconds of the
compiles is printed with the program's number of fusions and lines of optimised HLO. The JAX
compilation cache is off (``JAX_COMPILATION_CACHE_DIR`` empty), so nothing is read from disk.

Cited in docs/benchmarks.md ("The fit program holds one E-step").

Usage: ``JAX_COMPILATION_CACHE_DIR= PYTHONPATH=$PWD python benchmarks/tuning/fit_compile.py
[CASE,CASE,...] [ROUNDS]`` (default isotropic, diag, full, poisson, student_t, vmf; 3 rounds).
"""

import re
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)  # as the test suite runs the cases
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))

from variant_cases import CASES  # noqa: E402

from gmmlimit._driver import fit_program  # noqa: E402

DEFAULT_CASES = "isotropic,diag,full,poisson,student_t,vmf"


def compile_cost(name: str, rounds: int) -> tuple[float, int, int]:
    """(least CPU seconds, fusions, HLO lines) of compiling the case's fit program."""
    case = CASES[name]
    X = jnp.asarray(case.X)

    def as_array(leaf: object) -> jax.Array:
        a = np.asarray(leaf)
        return jnp.asarray(a, X.dtype) if a.dtype.kind == "f" else jnp.asarray(a)

    params = jax.tree.map(as_array, case.params)
    tol = jnp.asarray(1e-4, X.dtype)
    seconds, text = [], ""
    for drop in range(rounds):
        n = X.shape[0] - drop
        lowered = fit_program.lower(
            case.variant, X[:n], jnp.ones((n,), X.dtype), params, tol, 30, history=32
        )
        start = time.process_time()
        text = lowered.compile().as_text()
        seconds.append(time.process_time() - start)
    return min(seconds), len(re.findall(r" fusion\(", text)), text.count("\n")


def main() -> None:
    names = (sys.argv[1] if len(sys.argv) > 1 else DEFAULT_CASES).split(",")
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    for name in names:
        cpu, fusions, lines = compile_cost(name, rounds)
        print(f"{name:18s} compile {cpu:.3f} s CPU (least of {rounds}), {fusions} fusions, "
              f"{lines} lines of HLO")  # fmt: skip


if __name__ == "__main__":
    main()
