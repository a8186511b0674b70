"""Interleaved timing of one vmapped 32-lane EM iteration for two gmmlimit trees.

Used for the sweep tiles and the all-soft / all-hard branches (docs/scale.md). Export the older
tree as ``gmmlimit_base`` (see ``compare_iterations.py``), then e.g.
``python compare_sweeps.py 200000`` prints, for sigma2 lanes all soft, mixed (one 0) and all
hard, the per-lane time of each tree and the largest difference of their means.
"""

import importlib
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from trees import isotropic_module  # beside this script

sys.path.insert(0, os.environ.get("GMMLIMIT_TREES", "/tmp/trees"))
n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 3
lanes = 32
X = jnp.asarray(np.random.default_rng(0).standard_normal((n, 64)), jnp.float32)
M = X[:64]
w = jnp.ones((n,), X.dtype)
grids = {
    "soft": np.geomspace(1e-3, 4.0, lanes),
    "mixed": np.concatenate([[0.0], np.geomspace(1e-3, 4.0, lanes - 1)]),
    "hard": np.zeros(lanes),
}
cases = {}
for name in ("gmmlimit_base", "gmmlimit"):
    drv = importlib.import_module(f"{name}._driver")
    iso = isotropic_module(name)
    blocks = drv.make_blocks(X, w, 4096)

    def sweep(s2, blocks=blocks, drv=drv, iso=iso):
        step = lambda s: drv.em_iteration(iso.isotropic, iso.IsotropicParams(M, s), blocks)  # noqa: E731
        return jax.vmap(step)(s2)[0].means

    sweep = jax.jit(sweep)
    for grid, values in grids.items():
        s2 = jnp.asarray(values, X.dtype)
        cases[(name, grid)] = lambda f=sweep, s2=s2: f(s2)
means = {case: np.asarray(fn()) for case, fn in cases.items()}
best = dict.fromkeys(cases, np.inf)
for _ in range(repeats):
    for case, fn in cases.items():
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        best[case] = min(best[case], time.perf_counter() - t0)
for grid in grids:
    diff = np.max(np.abs(means[("gmmlimit", grid)] - means[("gmmlimit_base", grid)]))
    base, new = best[("gmmlimit_base", grid)], best[("gmmlimit", grid)]
    print(
        f"{grid:5s}: base {base * 1e3 / lanes:7.1f} ms/lane, new {new * 1e3 / lanes:7.1f} ms/lane,"
        f" max |means difference| {diff:.1e}"
    )
