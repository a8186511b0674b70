"""The soft kernel's pass over S parameter sets per set, against a pass over one set, for builds.

Each build (``name=compiler[@source][%flags]``, as in ``compilers.py``) is timed on the same
Gaussian-noise rows in blocks of 4096: a pass over S sets of means (distinct random rows,
sigma2 from 1e-3 to 4) and a pass over one of them, each in a compiled loop of ``--loop``
passes after ``grid.warm``. A round times both for every build, the two in alternating order,
the builds in a rotated order; the paired ratio (S-set pass per set over the one-set pass of
the same round) cancels the slow stretches this VM has, which last longer than a round.
Cited in docs/benchmarks.md ("Large sets in passes of their own").

Usage::

    PYTHONPATH=$PWD python benchmarks/tuning/soft_sets.py [--size N,D,K] [--dtype float64] \\
        [--sets 8] [--repeats 6] [--loop 2] old=g++@/path/to/old/estep.cc new=g++
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # compilers.py
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # grid.py


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("builds", nargs="+")
    parser.add_argument("--size", default="12755,784,512")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--sets", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--loop", type=int, default=2, help="passes per timed call")
    args = parser.parse_args()

    import jax

    jax.config.update("jax_enable_x64", args.dtype == "float64")
    import jax.numpy as jnp
    from compilers import build, passes
    from grid import warm

    from gmmlimit import _native
    from gmmlimit._driver import make_blocks

    with tempfile.TemporaryDirectory() as tmp:
        versions = dict(build(spec, Path(tmp)) for spec in args.builds)
    for name, version in versions.items():
        print(f"{name}: {version}")
    n, d, k = (int(v) for v in args.size.split(","))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, d)).astype(args.dtype)
    blocks = make_blocks(jnp.asarray(x), jnp.ones((n,), x.dtype), 4096)
    sets = args.sets
    means = jnp.asarray(np.stack([x[rng.choice(n, k, replace=False)] for _ in range(sets)]))
    sigma2 = jnp.asarray(np.geomspace(1e-3, 4.0, sets).astype(args.dtype))
    runs = {}
    for name in versions:
        soft = partial(
            _native.soft_assign, x_blocks=blocks.x, w_blocks=blocks.weight, suffix=f"_{name}"
        )
        runs[name] = (
            passes(lambda m, soft=soft: soft(m, sigma2), means, args.loop),
            passes(lambda m, soft=soft: soft(m, sigma2[-2:-1]), means[-2:-1], args.loop),
        )

    def seconds(run) -> float:
        warm(lambda: jax.block_until_ready(run()))
        start = time.perf_counter()
        jax.block_until_ready(run())
        return (time.perf_counter() - start) / args.loop

    per_set = {name: [] for name in runs}
    one = {name: [] for name in runs}
    names = list(runs)
    for round_ in range(args.repeats):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            wide, single = runs[name]
            if round_ % 2:
                one[name].append(seconds(single))
                per_set[name].append(seconds(wide) / sets)
            else:
                per_set[name].append(seconds(wide) / sets)
                one[name].append(seconds(single))
    print(f"\n({n}, {d}, {k}) {args.dtype}, {sets} sets, best of {args.repeats} rounds")
    for name in names:
        paired = np.asarray(per_set[name]) / np.asarray(one[name])
        print(
            f"  {name:8s} {sets} sets {1e3 * min(per_set[name]):7.1f} ms per set, one set "
            f"{1e3 * min(one[name]):7.1f} ms; per set / one set: median of rounds "
            f"{np.median(paired):.3f} (rounds {' '.join(f'{r:.2f}' for r in paired)})"
        )


if __name__ == "__main__":
    main()
