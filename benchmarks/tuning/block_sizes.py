"""Per-iteration time of gmmlimit's fits against the E-step's block size, shape by shape.

Usage::

    PYTHONPATH=$PWD python benchmarks/tuning/block_sizes.py OUT.json [--budget-s 250]
        [--shapes 250000,2,5;...] [--blocks 4096,16384,65536,262144,auto]

For each (N, D, K) shape and block size: K-means float32 (the algorithm ``gl.kmeans`` runs by
default there), EM float64 and a vmapped float64 sweep over 8 sigma2 values, each compiled ahead
(``grid.CompiledFits``) and timed per iteration by differencing a 1- and a (1 + iters)-iteration
fit (best of 3). Written for a lent GPU, where a block is a kernel launch (session 33 measured
about 40 us a block on an H200), to choose a default block size per backend. The JSON is
rewritten after every measurement, so a run cut at its time limit keeps what it finished; the
measurements stop once ``--budget-s`` seconds have passed. ``auto`` in ``--blocks`` is the
default block of a fit on this machine (``gl.scale.default_block_size``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run.py, grid.py

import grid
from run import _per_iter, make_data

DEFAULT_SHAPES = (
    "250000,2,5;250000,2,64;250000,8,16;156250,64,64;156250,64,512;12755,784,64;1000000,64,64"
)
KINDS = (("kmeans", "float32"), ("em", "float64"), ("sweep", "float64"))


def measure(X, m0, kind: str, block: int, d: int, k: int, iters: int) -> dict:
    """One kind at one block size: per-iteration seconds (all lanes of a sweep together)."""
    if kind == "sweep":
        fits = grid.CompiledFits(X, m0, block, sigma2s=grid.sweep_sigma2s(grid.GRID_LANES))
        sigma2 = None
    elif kind == "kmeans":
        fits = grid.CompiledFits(X, m0, block, algorithm=grid.kmeans_algorithm(d, k))
        sigma2 = 0.0
    else:
        fits = grid.CompiledFits(X, m0, block)
        sigma2 = 1.0
    t0 = time.perf_counter()
    fits.compile(1 + iters)
    compile_s = time.perf_counter() - t0
    run, _ = fits.runner(sigma2)
    per_iter, n1, n2 = _per_iter(run, iters, 3)
    return {"per_iter_s": per_iter, "n_iter": [n1, n2], "compile_s": compile_s}


def main(argv: list[str] | None = None) -> None:
    import jax

    from gmmlimit.scale import default_block_size

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--shapes", default=DEFAULT_SHAPES)
    parser.add_argument("--blocks", default="4096,16384,65536,262144", help="sizes, or auto")
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--budget-s", type=float, default=250.0)
    args = parser.parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    shapes = [tuple(int(v) for v in s.split(",")) for s in args.shapes.split(";")]
    blocks = args.blocks.split(",")
    res: dict = {"backend": jax.default_backend(), "devices": str(jax.devices()), "rows": []}
    start = time.perf_counter()
    for n, d, k in shapes:
        X32, m0 = make_data(n, d, k, "float32")
        for kind, dtype in KINDS:
            X = X32.astype(dtype)
            auto = default_block_size(n, k, d)  # what a fit takes by default here
            for block in sorted({min(auto if b == "auto" else int(b), n) for b in blocks}):
                if time.perf_counter() - start > args.budget_s:
                    print("budget spent", flush=True)
                    return
                row = {"N": n, "D": d, "K": k, "kind": kind, "dtype": dtype, "block": block}
                try:
                    row.update(measure(X, m0.astype(dtype), kind, block, d, k, args.iters))
                except Exception as err:  # an out-of-memory at a large block is a result too
                    row["error"] = f"{type(err).__name__}: {str(err)[:200]}"
                res["rows"].append(row)
                Path(args.out).write_text(json.dumps(res, indent=1))
                t = row.get("per_iter_s")
                print(
                    f"({n},{d},{k}) {kind} {dtype} block {block}: "
                    + (f"{1e3 * t:.3f} ms/iter" if t is not None else row["error"]),
                    flush=True,
                )


if __name__ == "__main__":
    main()
