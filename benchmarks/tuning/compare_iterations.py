"""Interleaved best-of-R timing of one E+M iteration for several gmmlimit trees.

Used while tuning the E-step (docs/scale.md). To compare against the tree before the fused
E-step, export it as a package named ``gmmlimit_base`` into a folder and point
``GMMLIMIT_TREES`` at it, e.g. ``mkdir -p /tmp/trees && git archive c85d97c gmmlimit |
tar -x -C /tmp/trees && mv /tmp/trees/gmmlimit /tmp/trees/gmmlimit_base`` (then fix its absolute
imports if any). Usage: ``python compare_iterations.py 200000,64,64 float32 15 4096``.
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
n, d, k = map(int, sys.argv[1].split(","))
dt = sys.argv[2]
R = int(sys.argv[3])
bss = [int(b) for b in sys.argv[4].split(",")]
names = sys.argv[5].split(",") if len(sys.argv) > 5 else ["gmmlimit_base", "gmmlimit"]
s2s = [float(v) for v in (sys.argv[6].split(",") if len(sys.argv) > 6 else ["0", "1"])]
if dt == "float64":
    jax.config.update("jax_enable_x64", True)
rng = np.random.default_rng(0)
X = jnp.asarray(rng.standard_normal((n, d)).astype(dt))
M = X[:k]
w = jnp.ones((n,), X.dtype)
cases = []
for name in names:
    drv = importlib.import_module(f"{name}._driver")
    iso = isotropic_module(name)
    for bs in bss:
        blocks = drv.make_blocks(X, w, bs)
        step = jax.jit(lambda b, p, drv=drv, iso=iso: drv.em_iteration(iso.isotropic, p, b)[0])
        for s2 in s2s:
            p = iso.IsotropicParams(M, jnp.asarray(s2, X.dtype))

            def f(step=step, blocks=blocks, p=p):
                return jax.block_until_ready(step(blocks, p))

            f()
            cases.append(((name, bs, s2), f))
best = {c: 1e9 for c, _ in cases}
for _ in range(R):
    for c, f in cases:
        t = time.perf_counter()
        f()
        best[c] = min(best[c], time.perf_counter() - t)
for c, _ in cases:
    per = best[c]
    fl = (2 if c[2] == 0 else 4) * n * k * d
    print(
        f"{c[0]:14s} bs={c[1]:6d} s2={c[2]}: {per * 1e3:8.2f} ms/iter {fl / per / 1e9:6.1f} GF",
        flush=True,
    )
