"""What a fit costs beyond its iterations, and whole fits against scikit-learn from the same start.

* ``fixed``: the compiled fit (``fit_program``, plain Lloyd, tol = -inf) run for 1 and for 11
  iterations, best of R each; per iteration = the difference over 10, fixed cost = the
  1-iteration time minus two iterations (its one iteration and its final E-step). Timed at N
  rows and at the largest multiple of the block size below N (no padding), Gaussian noise.
* ``whole``: ``gl.kmeans`` to convergence (tol 1e-4) on clustered data against
  ``sklearn.cluster.KMeans(algorithm="lloyd")`` from the same starting means, the data given as a
  NumPy array and as a JAX array, best of R, interleaved.

Cited in docs/benchmarks.md ("Rows read in place").

Usage: ``PYTHONPATH=$PWD python benchmarks/tuning/fit_fixed_cost.py [R] [N,D,K ...]`` (default 7
rounds at (156250, 64, 5), (12755, 784, 16) and (1000000, 8, 16), float32).
"""

import sys
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

import gmmlimit as gl
from gmmlimit._driver import DEFAULT_BLOCK_SIZE, fit_program, history_length
from gmmlimit.variants._isotropic import IsotropicParams, isotropic


def best_of(call, rounds: int) -> float:
    """Best wall seconds of ``rounds`` calls (after one warm-up call)."""
    jax.block_until_ready(call())
    best = np.inf
    for _ in range(rounds):
        start = time.perf_counter()
        jax.block_until_ready(call())
        best = min(best, time.perf_counter() - start)
    return best


def fixed_cost(n: int, d: int, k: int, rounds: int) -> tuple[float, float]:
    """(fixed seconds, seconds per iteration) of the compiled fit at (n, d, k)."""
    x = np.random.default_rng(0).normal(size=(n, d)).astype(np.float32)
    X, w = jnp.asarray(x), jnp.ones((n,), jnp.float32)
    params = IsotropicParams(jnp.asarray(x[:k]), jnp.zeros((), jnp.float32))
    tol = jnp.asarray(-jnp.inf, jnp.float32)
    fit = fit_program.lower(
        isotropic, X, w, params, tol, 1, history=history_length(11), block_size=DEFAULT_BLOCK_SIZE
    ).compile()
    one = best_of(lambda: fit(X, w, params, tol, 1), rounds)
    eleven = best_of(lambda: fit(X, w, params, tol, 11), rounds)
    per_iteration = (eleven - one) / 10
    return one - 2 * per_iteration, per_iteration


def whole_fits(n: int, d: int, k: int, rounds: int) -> dict[str, float]:
    """Best seconds of whole fits: gmmlimit on NumPy and on JAX data, scikit-learn's lloyd."""
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(0)
    centres = rng.normal(scale=3.0, size=(k, d))
    x = (centres[rng.integers(k, size=n)] + rng.normal(size=(n, d))).astype(np.float32)
    m0 = x[rng.choice(n, k, replace=False)].copy()
    xj = jnp.asarray(x)

    def sklearn_fit():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return KMeans(k, init=m0, n_init=1, max_iter=300, tol=1e-4, algorithm="lloyd").fit(x)

    calls = {
        "gmmlimit (numpy)": lambda: gl.kmeans(x, m0, max_iter=300, tol=1e-4),
        "gmmlimit (jax)": lambda: gl.kmeans(xj, m0, max_iter=300, tol=1e-4),
        "sklearn lloyd": sklearn_fit,
    }
    best = dict.fromkeys(calls, np.inf)
    for call in calls.values():
        jax.block_until_ready(call()) if call is not sklearn_fit else call()
    for _ in range(rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            out = call()
            if name != "sklearn lloyd":
                jax.block_until_ready(out)
            best[name] = min(best[name], time.perf_counter() - start)
    best["iterations (gmmlimit, sklearn)"] = (
        int(calls["gmmlimit (jax)"]().n_iter),
        sklearn_fit().n_iter_,
    )
    return best


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    sizes = sys.argv[2:] or ["156250,64,5", "12755,784,16", "1000000,8,16"]
    print(gl.cpu_kernel_status())
    for size in sizes:
        n, d, k = (int(v) for v in size.split(","))
        whole = n // DEFAULT_BLOCK_SIZE * DEFAULT_BLOCK_SIZE
        for rows in dict.fromkeys((n, whole)):
            if rows < 1:
                continue
            fixed, per = fixed_cost(rows, d, k, rounds)
            print(
                f"({rows}, {d}, {k}) float32, {rows % DEFAULT_BLOCK_SIZE} rows past whole blocks: "
                f"fixed {fixed * 1e3:.2f} ms, {per * 1e3:.3f} ms an iteration"
            )
        best = whole_fits(n, d, k, rounds)
        iterations = best.pop("iterations (gmmlimit, sklearn)")
        times = ", ".join(f"{name} {s * 1e3:.1f} ms" for name, s in best.items())
        ratio = best["sklearn lloyd"] / best["gmmlimit (numpy)"]
        print(f"  whole fit, {iterations} iters: {times}; sklearn / gmmlimit on numpy {ratio:.2f}x")


if __name__ == "__main__":
    main()
