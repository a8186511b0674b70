"""The fused E-step kernel built by several compilers (or from several sources), timed side by side.

Each build is compiled into a private cache, registered under its own FFI target names and timed
on the same arrays in the same process, interleaved (in a rotated order each round), best of R;
scikit-learn's Lloyd iteration on the same rows is timed in the same loop (the best 5-iteration
fit minus the best 1-iteration fit, over 4), so every build also gets a ratio against
scikit-learn that depends less on how loaded the machine is at the moment. Both wall time and
the CPU time of the process (all its threads; steadier on a machine shared with other work) are
reported. A copy of one build under a second name (``base2=g++@old.cc%-march=native,-DSAME``)
shows the run's noise floor. Cited in docs/benchmarks.md.

Usage::

    PYTHONPATH=$PWD python benchmarks/tuning/compilers.py [--repeats R] \\
        [--sizes N,D,K ...] [--dtype float32] [--soft [--sigma2 S ...]] [--sweep] [--loop P] \\
        [--bounded SHIFT] \\
        gcc=g++ clang=clang++ [base=g++@path/to/old/estep.cc] [avx2=g++%-march=haswell]

A build is ``name=compiler[@source][%flags]``: ``@`` picks another source file (an older copy of
the kernel), ``%`` replaces ``-march=native`` by other space-free target flags (``,`` separates
several).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
import warnings
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/grid.py

from grid import GRID_LANES, sweep_sigma2s, warm

from gmmlimit import _native
from gmmlimit._driver import DEFAULT_BLOCK_SIZE, make_blocks
from gmmlimit.variants._isotropic_engines import bound_groups


def build(spec: str, cache: Path) -> tuple[str, str]:
    """Compile one ``name=compiler[@source][%flags]`` build and register it; (name, version)."""
    name, _, rest = spec.partition("=")
    rest, _, target_flags = rest.partition("%")
    compiler, _, source = rest.partition("@")
    target = target_flags.split(",") if target_flags else ["-march=native"]
    flags = (*_native._BASE_FLAGS, *target)
    cxx = shlex.split(compiler)
    saved = _native.SOURCE
    try:
        if source:
            _native.SOURCE = Path(source).resolve()
        start = time.perf_counter()
        path, version, error = _native._find_or_build(cxx, flags, cache)
        seconds = time.perf_counter() - start
    finally:
        _native.SOURCE = saved
    if path is None:
        raise SystemExit(f"build {name} failed: {error}")
    _native._register(path, f"_{name}")
    return name, f"{version} {' '.join(target)}, built in {seconds:.1f} s"


SETTLE_S = 0.5
"""Seconds of pause after scikit-learn's fits, before the builds are timed again."""


def timed(f) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process's threads) of one call of ``f``."""
    wall, cpu = time.perf_counter(), time.process_time()
    f()
    return time.perf_counter() - wall, time.process_time() - cpu


def passes(kernel_pass, means: jax.Array, count: int):
    """A zero-argument call running ``count`` passes of ``kernel_pass(means)`` in one compiled loop.

    ``kernel_pass`` returns the kernel's outputs, counts third; each pass's means take 0 times
    its counts, so every pass waits for the one before (XLA cannot hoist it out of the loop).
    """

    def run(means: jax.Array) -> jax.Array:
        def body(_, m: jax.Array) -> jax.Array:
            counts = kernel_pass(m)[2]
            return m + 0 * counts.reshape(-1)[:1].astype(m.dtype)

        return jax.lax.fori_loop(0, count, body, means)

    compiled = jax.jit(run).lower(means).compile()
    return partial(compiled, means)


def sklearn_fit(x: np.ndarray, m0: np.ndarray, iters: int) -> tuple[float, float]:
    """(wall, CPU) seconds of one scikit-learn Lloyd fit of ``iters`` iterations from ``m0``."""
    from sklearn.cluster import KMeans

    def fit() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            KMeans(len(m0), init=m0, n_init=1, max_iter=iters, tol=0.0, algorithm="lloyd").fit(x)

    return timed(fit)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("builds", nargs="+")
    parser.add_argument(
        "--sizes", nargs="+", default=["200000,2,8", "200000,16,16", "100000,64,64"]
    )
    parser.add_argument("--dtype", default="float32")
    parser.add_argument(
        "--spread", type=float, default=3.0, help="scale of the cluster centres (0: Gaussian noise)"
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--soft", action="store_true", help="time the soft kernel too")
    parser.add_argument(
        "--sigma2",
        type=float,
        nargs="+",
        default=[1.0],
        help="the soft kernel's variances, one timed pass each (default 1; the data's clusters "
        "have unit variance)",
    )
    parser.add_argument(
        "--sweep",
        action="store_true",
        help="time the soft kernel's pass of the grid's sweep too: its 8 sigma2 values (1e-3 to 4) "
        "as 8 parameter sets in one call, all from the same means (times are per pass of 8 sets)",
    )
    parser.add_argument(
        "--bounded",
        type=float,
        default=None,
        metavar="SHIFT",
        help="time the bounded hard pass too (Hamerly's bounds, mode 'hard'): bounds from a "
        "bounded pass at the start means, each timed pass at those means moved by SHIFT times "
        "Gaussian noise (on Gaussian-noise data, --spread 0, few rows are skipped); the bounds "
        "are the same input every pass, so each pass also copies them (aliased outputs)",
    )
    parser.add_argument(
        "--loop",
        type=int,
        default=1,
        help="passes per timed call, in one compiled loop (times are per pass); in a loop the "
        "passes reuse their output buffers, where single calls also pay fresh pages",
    )
    args = parser.parse_args()
    if np.dtype(args.dtype) == np.float64:
        jax.config.update("jax_enable_x64", True)  # else the arrays would be float32
    with tempfile.TemporaryDirectory() as tmp:
        versions = dict(build(spec, Path(tmp)) for spec in args.builds)
    for name, version in versions.items():
        print(f"{name}: {version}")
    for size in args.sizes:
        n, d, k = (int(v) for v in size.split(","))
        rng = np.random.default_rng(0)
        centres = rng.normal(scale=args.spread, size=(k, d))
        x = (centres[rng.integers(k, size=n)] + rng.normal(size=(n, d))).astype(args.dtype)
        m0 = x[rng.choice(n, k, replace=False)]
        # The fit's own blocks (its default block size): a pass over padding rows is timed as
        # part of the pass, so blocks much longer than the fit's would time rows it never reads.
        blocks = make_blocks(jnp.asarray(x), jnp.ones((n,), x.dtype), DEFAULT_BLOCK_SIZE)
        xb, wb = blocks.x, blocks.weight
        means = jnp.asarray(m0)
        if args.bounded is not None:
            groups = bound_groups(k)
            moved = means + args.bounded * jnp.asarray(rng.normal(size=(k, d)), x.dtype)
            first = f"_{next(iter(versions))}"
            no_labels = jnp.full(wb.shape, -1, jnp.int32)
            no_bounds = jnp.zeros((*wb.shape, groups), x.dtype)
            start = _native.hard_assign_bounded(
                means, means, no_labels, no_bounds, xb, wb, suffix=first
            )
            start_labels, start_bounds = start[0], start[5]
            scored = _native.hard_assign_bounded(
                moved, means, start_labels, start_bounds, xb, wb, suffix=first
            )[6]
            print(
                f"({n}, {d}, {k}) bounded: {int(scored)} of {wb.size} rows scored (the blocks' "
                f"padding counted as scored), {groups} groups"
            )
        cases = {}
        for name in versions:
            hard = partial(_native.hard_assign, x_blocks=xb, w_blocks=wb, suffix=f"_{name}")
            cases[f"{name} hard"] = passes(hard, means, args.loop)
            if args.bounded is not None:
                bounded = partial(
                    _native.hard_assign_bounded,
                    old_means=means,
                    old_labels=start_labels,
                    lower=start_bounds,
                    x_blocks=xb,
                    w_blocks=wb,
                    suffix=f"_{name}",
                )
                cases[f"{name} bounded"] = passes(
                    lambda m, bounded=bounded, moved=moved, origin=means: bounded(
                        m - origin + moved
                    ),
                    means,
                    args.loop,
                )
            for s2 in args.sigma2 if args.soft else ():
                soft = partial(
                    _native.soft_assign,
                    sigma2=jnp.full((1,), s2, x.dtype),
                    x_blocks=xb,
                    w_blocks=wb,
                    suffix=f"_{name}",
                )
                label = f"{name} soft" + ("" if args.sigma2 == [1.0] else f" {s2:g}")
                cases[label] = passes(lambda m, soft=soft: soft(m[None]), means, args.loop)
            if args.sweep:
                sweep = partial(
                    _native.soft_assign,
                    sigma2=jnp.asarray(sweep_sigma2s(GRID_LANES), x.dtype),
                    x_blocks=xb,
                    w_blocks=wb,
                    suffix=f"_{name}",
                )
                cases[f"{name} sweep"] = passes(
                    lambda m, sweep=sweep: sweep(jnp.broadcast_to(m, (GRID_LANES, *m.shape))),
                    means,
                    args.loop,
                )
        for f in cases.values():
            jax.block_until_ready(f())
        best = {case: np.full(2, np.inf) for case in cases}
        best_fit = {1: np.full(2, np.inf), 5: np.full(2, np.inf)}
        names = list(cases)
        for round_ in range(args.repeats):
            # The builds in a new order each round (rotated), so none is always the first after
            # scikit-learn; and a pause first, while scikit-learn's OpenMP threads stop spinning.
            # (In a fixed order the first build timed 5 to 15 % slower than a copy of itself
            # timed last.)
            time.sleep(SETTLE_S)
            for case in names[round_ % len(names) :] + names[: round_ % len(names)]:
                f = cases[case]
                warm(lambda f=f: jax.block_until_ready(f()))
                seconds = timed(lambda f=f: jax.block_until_ready(f()))
                best[case] = np.minimum(best[case], np.asarray(seconds) / args.loop)
            for iters in best_fit:
                best_fit[iters] = np.minimum(best_fit[iters], sklearn_fit(x, m0, iters))
        # One iteration: (T(5) - T(1)) / 4 of the best fits, so set-up costs cancel.
        per_iter = (best_fit[5] - best_fit[1]) / 4
        print(f"\n({n}, {d}, {k}) {args.dtype}: sklearn lloyd iteration", end=" ")
        print(f"{per_iter[0] * 1e3:.2f} ms wall, {per_iter[1] * 1e3:.2f} ms CPU")
        for case, (wall, cpu) in best.items():
            print(
                f"  {case:12s} {wall * 1e3:8.2f} ms wall {cpu * 1e3:8.2f} ms CPU   sklearn "
                f"iteration / pass {per_iter[0] / wall:5.2f}x wall {per_iter[1] / cpu:5.2f}x CPU"
            )


if __name__ == "__main__":
    main()
