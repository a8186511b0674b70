"""One iteration of a vmapped 8-lane sigma2 sweep (``fit_batch``) and of one EM fit, same process.

Each is timed as the difference of the best 11- and 1-iteration runs over 4 rounds, every run
right after 0.15 s of 1-iteration runs of the same fit (``grid.warm``: this VM runs slow after a
pause, ``clock_ramp.py``). Used to compare two versions of the code by running it on each in turn;
``sweep_lane.py`` adds the kernel's share.

Usage: ``PYTHONPATH=$PWD python benchmarks/tuning/sweep_iteration.py N,D,K float32|float64
[soft|mixed|far]``: the lanes all soft (the default), the first one 0 (K-means beside EM), or the
last one past the soft kernel (half the dtype's largest number).
"""

import sys
import time
from pathlib import Path
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/grid.py

from grid import warm

LANES = 8


def sweep_sigma2s(lanes: str, dtype: str) -> np.ndarray:
    """8 sigma2 from 1e-3 to 4 (``"soft"``); the first replaced by 0 (``"mixed"``), or the last by
    half the dtype's largest number (``"far"``)."""
    sigma2s = np.geomspace(1e-3, 4.0, LANES).astype(dtype)
    if lanes == "mixed":
        sigma2s[0] = 0.0
    elif lanes == "far":
        sigma2s[-1] = np.finfo(dtype).max / 2
    elif lanes != "soft":
        raise ValueError(f"lanes must be soft, mixed or far; got {lanes!r}")
    return sigma2s


def sweep_problem(n: int, d: int, k: int, dtype: str, lanes: str = "soft") -> SimpleNamespace:
    """Gaussian noise (n, d), the first k rows as means, 8 sigma2 (:func:`sweep_sigma2s`) and
    sigma2 = 1.

    Sets JAX's x64 flag for float64 (before any array is made).
    """
    jax.config.update("jax_enable_x64", dtype == "float64")
    from gmmlimit.variants._isotropic import IsotropicParams

    X = jnp.asarray(np.random.default_rng(0).standard_normal((n, d)).astype(dtype))
    m0 = X[:k]
    sigma2s = jnp.asarray(sweep_sigma2s(lanes, dtype))
    return SimpleNamespace(
        X=X,
        w=jnp.ones((n,), X.dtype),
        m0=m0,
        sigma2s=sigma2s,
        starts=IsotropicParams(jnp.broadcast_to(m0, (LANES, k, d)), sigma2s),
        one=IsotropicParams(m0, jnp.asarray(1.0, X.dtype)),
    )


def compiled_fit(p: SimpleNamespace, which: str, iters: int):
    """The ``"sweep"`` (``fit_batch`` of ``p.starts``) or ``"one fit"`` (of ``p.one``) program
    of ``iters`` iterations in blocks of 4096, compiled ahead; called with its parameters."""
    from gmmlimit._api import fit_batch
    from gmmlimit._driver import fit_compiled
    from gmmlimit.variants._isotropic import isotropic

    if which == "sweep":
        params = p.starts

        def run(q):
            return fit_batch(isotropic, p.X, p.w, q, 0.0, max_iter=iters, block_size=4096)
    else:
        params = p.one
        zero = jnp.asarray(0.0, p.X.dtype)

        def run(q):
            return fit_compiled(isotropic, p.X, p.w, q, zero, max_iter=iters, block_size=4096)

    return jax.jit(run).lower(params).compile()


def sweep_and_fit_seconds(p: SimpleNamespace) -> tuple[float, float]:
    """Seconds per iteration of the 8-lane sweep and of the one fit, timed in the same rounds."""
    runs = {
        "sweep": (p.starts, {m: compiled_fit(p, "sweep", m) for m in (1, 11)}),
        "one fit": (p.one, {m: compiled_fit(p, "one fit", m) for m in (1, 11)}),
    }
    best = {}
    for _ in range(4):
        for name, (params, by_iters) in runs.items():
            for m, run in by_iters.items():
                warm(
                    lambda by_iters=by_iters, params=params: jax.block_until_ready(
                        by_iters[1](params)
                    )
                )
                start = time.perf_counter()
                jax.block_until_ready(run(params))
                best[name, m] = min(best.get((name, m), np.inf), time.perf_counter() - start)
    sweep = (best["sweep", 11] - best["sweep", 1]) / 10
    fit = (best["one fit", 11] - best["one fit", 1]) / 10
    return sweep, fit


def main() -> None:
    n, d, k = map(int, sys.argv[1].split(","))
    dtype = sys.argv[2] if len(sys.argv) > 2 else "float32"
    lanes = sys.argv[3] if len(sys.argv) > 3 else "soft"
    sweep, fit = sweep_and_fit_seconds(sweep_problem(n, d, k, dtype, lanes))
    print(
        f"({n}, {d}, {k}) {dtype} {lanes}: sweep {1e3 * sweep:.2f} ms per iteration "
        f"({1e3 * sweep / LANES:.3f} per lane), one fit {1e3 * fit:.3f} ms per iteration, "
        f"lane / fit {sweep / LANES / fit:.2f}"
    )


if __name__ == "__main__":
    main()
