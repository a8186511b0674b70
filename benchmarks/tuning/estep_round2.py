"""The measurements behind the second E-step round (docs/scale.md, session of 2026-11-30).

Each subcommand prints best-of-R wall times of interleaved runs, float32 Gaussian noise, blocks
of 4096 rows. Usage (defaults: N = 1M, D = K = 64)::

    python benchmarks/tuning/estep_round2.py stages [--dtype float64]  # product, min, tree, ...
    python benchmarks/tuning/estep_round2.py reductions    # one E-step pass, old vs tree
    python benchmarks/tuning/estep_round2.py select        # exp with and without a select
    python benchmarks/tuning/estep_round2.py skinny        # numpy (N, D) @ (D, K) vs square
    python benchmarks/tuning/estep_round2.py blocks --n 100000 --d 32 --k 16
    python benchmarks/tuning/estep_round2.py sweep-parts --n 204800   # the wide tile's pieces
    python benchmarks/tuning/estep_round2.py kmeans-parts  # run with 2 host devices, see below

``kmeans-parts`` times a K-means iteration with and without the exact-distortion gather and the
farthest-row tracking; it shards over all devices, so split the host first, e.g.
``JAX_NUM_CPU_DEVICES=2 python ... kmeans-parts``. Comparisons against an older tree (sweep
branches, tiles) use ``compare_sweeps.py`` beside this file.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


def _interleaved(cases: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    for fn in cases.values():
        jax.block_until_ready(fn())
    best = dict.fromkeys(cases, np.inf)
    for _ in range(repeats):
        for name, fn in cases.items():
            t0 = time.perf_counter()
            jax.block_until_ready(fn())
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def _report(best: dict[str, float], per: float = 1.0, unit: str = "ms") -> None:
    for name, seconds in best.items():
        print(f"{name:40s} {seconds * 1e3 / per:9.2f} {unit}", flush=True)


def _old_min_first(values: jax.Array, axis: int = 0) -> tuple[jax.Array, jax.Array]:
    """The reduction the trees replaced: min, then the first index equal to it."""
    best = jnp.min(values, axis=axis)
    component = lax.broadcasted_iota(jnp.int32, values.shape, axis)
    k = values.shape[axis]
    first = jnp.min(jnp.where(values == jnp.expand_dims(best, axis), component, k), axis=axis)
    return best, jnp.minimum(first, k - 1)


def stages(args: argparse.Namespace) -> None:
    """Cumulative pieces of a hard E-step in a lax.scan over blocks."""
    from gmmlimit._reduce import tree_min_first_index

    rng = np.random.default_rng(0)
    X = rng.standard_normal((args.n, args.d)).astype(args.dtype)
    nb = args.n // args.block
    blocks = jnp.asarray(X[: nb * args.block].reshape(nb, args.block, args.d))
    means = jnp.asarray(X[: args.k])
    means_sq = jnp.sum(means * means, axis=1)

    def make(level: int) -> Callable[[], object]:
        def body(acc: jax.Array, x: jax.Array) -> tuple[jax.Array, None]:
            partial = means_sq[:, None] - 2.0 * (means @ x.T)
            if level == 0:
                return acc + jnp.sum(partial[:, :8]), None
            if level == 1:
                return acc + jnp.sum(jnp.min(partial, axis=0)), None
            reduce = _old_min_first if level == 2 else tree_min_first_index
            best, labels = reduce(partial, 0)
            out = acc + jnp.sum(best) + jnp.sum(labels).astype(acc.dtype)
            if level >= 4:
                out = out + jnp.sum(jax.ops.segment_sum(x, labels, num_segments=args.k))
            if level >= 5:
                diff = x - means[labels]
                out = out + jnp.sum(diff * diff)
            return out, None

        fn = jax.jit(lambda b: lax.scan(body, jnp.zeros((), b.dtype), b)[0])
        return lambda: fn(blocks)

    names = [
        "product",
        "+ min",
        "+ min, first index (old)",
        "+ tree min and first index",
        "tree + segment sums",
        "tree + segment sums + exact distortion",
    ]
    _report(_interleaved({name: make(i) for i, name in enumerate(names)}, args.repeats))


def reductions(args: argparse.Namespace) -> None:
    """One streamed E-step pass with the old reductions against the trees."""
    import gmmlimit as gl
    from gmmlimit import _driver, _reduce

    isotropic_module = sys.modules["gmmlimit.variants._isotropic"]
    X = jnp.asarray(np.random.default_rng(0).standard_normal((args.n, args.d)), jnp.float32)
    blocks = _driver.make_blocks(X, jnp.ones((args.n,), X.dtype), args.block)
    cases = {}
    for label, min_first, total in (
        ("old", _old_min_first, lambda v, axis=0: jnp.sum(v, axis=axis)),
        ("tree", _reduce.tree_min_first_index, _reduce.tree_sum),
    ):
        isotropic_module.tree_min_first_index = min_first  # read when the pass is traced
        isotropic_module.tree_sum = total
        for sigma2 in (0.0, 1.0):
            params = gl.variants.IsotropicParams(X[: args.k], jnp.asarray(sigma2, X.dtype))
            fn = jax.jit(
                lambda p, b: _driver.e_pass(gl.variants.isotropic, p, b, track_farthest=True)[:2]
            )
            jax.block_until_ready(fn(params, blocks))  # trace now, with these reductions
            cases[f"{label} sigma2={sigma2}"] = lambda fn=fn, p=params: fn(p, blocks)
    isotropic_module.tree_min_first_index = _reduce.tree_min_first_index
    isotropic_module.tree_sum = _reduce.tree_sum
    _report(_interleaved(cases, args.repeats))


def select(args: argparse.Namespace) -> None:
    """Elementwise exp over 64M float32 with and without a select."""
    a = jnp.asarray(-np.random.default_rng(0).random(64_000_000, dtype=np.float32))
    forms = {
        "exp(3a)": lambda a: jnp.sum(jnp.exp(a * 3.0)),
        "exp(where(a < 0, 3a, 0))": lambda a: jnp.sum(jnp.exp(jnp.where(a < 0, a * 3.0, 0.0))),
        "exp(minimum(3a, 0))": lambda a: jnp.sum(jnp.exp(jnp.minimum(a * 3.0, 0.0))),
        "where(a < 0, 3a, 0)": lambda a: jnp.sum(jnp.where(a < 0, a * 3.0, 0.0)),
    }
    cases = {name: partial(jax.jit(f), a) for name, f in forms.items()}
    _report(_interleaved(cases, args.repeats), per=64_000_000 / 1e6, unit="ns / element")


def skinny(args: argparse.Namespace) -> None:
    """numpy's (N, D) @ (D, K) product against its square GEMM, in GFLOP/s."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((args.n, args.d)).astype(np.float32)
    means = X[: args.k].copy()
    square = rng.standard_normal((2048, 2048)).astype(np.float32)
    for name, fn, flops in (
        ("skinny X @ M.T", lambda: X @ means.T, 2.0 * args.n * args.d * args.k),
        ("square 2048", lambda: square @ square, 2.0 * 2048**3),
    ):
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            fn()
            print(f"{name:20s} {flops / (time.perf_counter() - t0) / 1e9:7.1f} GFLOP/s")


def _fit_iteration_times(
    fits: dict[str, Callable[[int], object]], repeats: int
) -> dict[str, float]:
    """Per-iteration time: (T(6 iterations) - T(1)) / 5, best of interleaved runs."""
    cases = {}
    for name, fit in fits.items():
        for n_iter in (1, 6):
            cases[(name, n_iter)] = lambda fit=fit, n=n_iter: fit(n).means
    best = _interleaved(cases, repeats)
    return {name: (best[(name, 6)] - best[(name, 1)]) / 5 for name in fits}


def blocks(args: argparse.Namespace) -> None:
    """K-means and EM iterations at several block sizes."""
    import gmmlimit as gl

    X = jnp.asarray(np.random.default_rng(0).standard_normal((args.n, args.d)), jnp.float32)
    fits = {}
    for size in (1024, 4096, 16384, 65536):
        for sigma2 in (0.0, 1.0):
            fits[f"block {size} sigma2={sigma2}"] = lambda n, s=size, v=sigma2: gl.em(
                X, X[: args.k], v, max_iter=n, tol=0.0, block_size=s
            )
    _report(_fit_iteration_times(fits, args.repeats), unit="ms / iteration")


def kmeans_parts(args: argparse.Namespace) -> None:
    """A sharded K-means iteration without the exact-distortion gather and the tracking."""
    import gmmlimit as gl
    from gmmlimit._reduce import tree_min_first_index
    from gmmlimit.variants._isotropic import IsotropicStats

    X = jnp.asarray(np.random.default_rng(0).standard_normal((args.n, args.d)), jnp.float32)
    means = X[: args.k]
    iso = gl.variants.isotropic

    def hard_only(params: gl.variants.IsotropicParams, x: jax.Array, w: jax.Array, gather: bool):
        partial = jnp.sum(params.means**2, axis=1)[:, None] - 2.0 * (params.means @ x.T)
        best, labels = tree_min_first_index(partial, 0)
        if gather:
            diff = x - params.means[labels]
            nearest = jnp.sum(diff * diff, axis=1)
        else:
            nearest = best
        stats = IsotropicStats(
            counts=jax.ops.segment_sum(w, labels, num_segments=args.k),
            sums=jax.ops.segment_sum(x * w[:, None], labels, num_segments=args.k),
            total_weight=jnp.sum(w),
            log_lik_core=jnp.zeros((), x.dtype),
            distortion=jnp.sum(w * nearest),
        )
        return stats, labels, nearest

    variants = {"as shipped": iso}
    for gather in (True, False):
        block = lambda p, x, w, g=gather: hard_only(p, x, w, g)  # noqa: E731
        fused = iso._replace(engine=iso.engine._replace(block=block))
        variants[f"hard only, gather={gather}, tracked"] = fused
        variants[f"hard only, gather={gather}, untracked"] = fused._replace(relocate=None)
    start = gl.variants.IsotropicParams(means, jnp.zeros((), X.dtype))
    fits = {
        name: (lambda n, v=v: gl.scale.fit_sharded(v, X, start, max_iter=n, tol=0.0))
        for name, v in variants.items()
    }
    print(f"{len(jax.devices())} devices")
    _report(_fit_iteration_times(fits, args.repeats), unit="ms / iteration")


def sweep_parts(args: argparse.Namespace) -> None:
    """Cumulative pieces of the wide (32-lane) sweep tile, per lane."""
    from gmmlimit._reduce import tree_min_first_index, tree_sum

    lanes, tile = 32, 128
    X = jnp.asarray(np.random.default_rng(0).standard_normal((args.n, args.d)), jnp.float32)
    means = jnp.broadcast_to(X[: args.k], (lanes, args.k, args.d))
    weight = jnp.ones((args.n,), X.dtype)
    sigma2 = jnp.asarray(np.geomspace(1e-3, 4.0, lanes), X.dtype)
    tiles = (X.reshape(-1, tile, args.d), weight.reshape(-1, tile))

    def make(level: int) -> Callable[[], object]:
        flat = means.reshape(lanes * args.k, args.d)
        means_sq = jnp.sum(means * means, axis=2)

        def body(acc: jax.Array, data: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, None]:
            xt, wt = data
            cross = (flat @ xt.T).reshape(lanes, args.k, tile)
            weighted = means_sq[:, :, None] - 2.0 * cross
            if level >= 1:
                best, labels = tree_min_first_index(weighted, 1)
                weighted = jnp.maximum(weighted - best[:, None, :], 0.0)
            if level >= 2:
                e = jnp.exp(-(weighted / (2.0 * sigma2[:, None, None])))
                weighted = e * (wt / tree_sum(e, 1))[:, None, :]
            if level >= 3:
                component = lax.broadcasted_iota(jnp.int32, weighted.shape, 1)
                hard = jnp.where(component == labels[:, None, :], wt[None, None, :], 0.0)
                weighted = jnp.where((sigma2 > 0)[:, None, None], weighted, hard)
            sums = weighted.reshape(lanes * args.k, tile) @ xt
            return acc + sums.reshape(lanes, args.k, args.d), None

        fn = jax.jit(lambda t: lax.scan(body, jnp.zeros_like(means), t)[0])
        return lambda: fn(tiles)

    names = ["two wide products", "+ tree min, gap", "+ exp, sum, soft", "+ hard one-hot, select"]
    best = _interleaved({name: make(i) for i, name in enumerate(names)}, args.repeats)
    _report(best, per=lanes, unit="ms per lane")


def main(argv: list[str] | None = None) -> None:
    commands = {
        "stages": stages,
        "reductions": reductions,
        "select": select,
        "skinny": skinny,
        "blocks": blocks,
        "kmeans-parts": kmeans_parts,
        "sweep-parts": sweep_parts,
    }
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=sorted(commands))
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--d", type=int, default=64)
    parser.add_argument("--k", type=int, default=64)
    parser.add_argument("--block", type=int, default=4096)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    commands[args.command](args)


if __name__ == "__main__":
    main()
