"""What the fit loop adds to its E-step: one K-means iteration of the compiled fit against the same
iterations without the loop's bookkeeping, same process, interleaved, best of R.

* ``fit/iter``: ``fit_compiled`` (the loop of ``gl.kmeans``, plain Lloyd) run for 1 and for
  1 + 10 iterations (tol = -inf), the difference over 10;
* ``steps/iter``: 10 ``em_iteration`` calls in a ``fori_loop`` (E-step, relocation check,
  M-step; no labels carried, no stopping rule);
* ``kernel/iter``: 10 calls of the hard kernel alone in a ``fori_loop``.

``fit/iter - steps/iter`` is the loop's own cost: the objective, the centre shift, the stopping
rule and the labels it carries and compares (see ``gmmlimit._driver.compare_labels``). Cited in
``docs/benchmarks.md``.

Usage: ``PYTHONPATH=$PWD python benchmarks/tuning/fit_overhead.py [R] [N,D,K ...]`` (default 7
rounds at (250000, 8, 5) and (156250, 64, 5), the grid's Gaussian-noise data, float32).
"""

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from gmmlimit import _native
from gmmlimit._driver import (
    DEFAULT_BLOCK_SIZE,
    em_iteration,
    fit_program,
    history_length,
    make_blocks,
)
from gmmlimit.variants._isotropic import IsotropicParams, isotropic

ITERS = 10


def cases(n: int, d: int, k: int) -> dict:
    """name -> call, on the grid's data: Gaussian noise, initial means drawn from the rows."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, d)).astype(np.float32)
    m0 = x[rng.choice(n, size=k, replace=False)].copy()
    X, w = jnp.asarray(x), jnp.ones((n,), jnp.float32)
    blocks = make_blocks(X, w, DEFAULT_BLOCK_SIZE)
    params = IsotropicParams(jnp.asarray(m0), jnp.zeros((), jnp.float32))
    tol = jnp.asarray(-jnp.inf, jnp.float32)
    # max_iter is traced: one program runs both lengths (the fit's own, as gl.kmeans runs it)
    fit = fit_program.lower(
        isotropic, X, w, params, tol, 1, history=history_length(1 + ITERS),
        block_size=DEFAULT_BLOCK_SIZE,
    ).compile()  # fmt: skip

    def steps(b, p):
        return lax.fori_loop(0, ITERS, lambda i, q: em_iteration(isotropic, q, b)[0], p)

    def kernels(b, m):
        def body(i, means):
            sums = _native.hard_assign(means, b.x, b.weight)[3]
            return means + 0 * sums  # a dependence from call to call, the same means

        return lax.fori_loop(0, ITERS, body, m)

    steps_jit, kernels_jit = jax.jit(steps), jax.jit(kernels)
    return {
        "fit 1": lambda: fit(X, w, params, tol, 1),
        "fit 11": lambda: fit(X, w, params, tol, 1 + ITERS),
        "steps": lambda: steps_jit(blocks, params),
        "kernel": lambda: kernels_jit(blocks, params.means),
    }


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    sizes = sys.argv[2:] or ["250000,8,5", "156250,64,5"]
    print(_native.status())
    for size in sizes:
        n, d, k = (int(v) for v in size.split(","))
        calls = cases(n, d, k)
        best = dict.fromkeys(calls, np.inf)
        for call in calls.values():
            jax.block_until_ready(call())
        for _ in range(rounds):
            for name, call in calls.items():
                for _ in range(2):  # warm: the cores after a pause (benchmarks/grid.py, WARM_S)
                    jax.block_until_ready(call())
                start = time.perf_counter()
                jax.block_until_ready(call())
                best[name] = min(best[name], time.perf_counter() - start)
        fit = (best["fit 11"] - best["fit 1"]) / ITERS
        print(
            f"({n}, {d}, {k}) float32, best of {rounds}: ms per iteration: "
            f"fit {fit * 1e3:.3f}, steps {best['steps'] / ITERS * 1e3:.3f}, "
            f"kernel {best['kernel'] / ITERS * 1e3:.3f}"
        )


if __name__ == "__main__":
    main()
