"""Time a sharded K-means and EM fit over 1, 2 and 4 local processes (``gmmlimit.launch``).

Usage::

    python benchmarks/multiprocess.py --n 200000 --d 16 --k 16 --processes 1,2,4 --repeats 3

For each process count P the script starts itself P times under the launcher. Every process
makes the same data from the seed, keeps only its own N / P rows as a global array
(``jax.make_array_from_process_local_data``), fits once to compile, then times ``--repeats``
fits of K-means (sigma2 = 0) and EM (``--sigma2``), each for at most ``--max-iter`` iterations,
and reports the best wall time. Process 0 writes the numbers; the table printed at the end
gives the time per iteration, the speed-up over one process and whether the labels and iteration
counts equal those of the one-process run.

Every process's XLA runtime and fused CPU kernel use all the machine's cores, so with more
processes than cores they compete for them: on a small machine the table measures the cost of
the cross-process all-reduce and of that competition, not a speed-up.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def make_data(n: int, d: int, k: int, seed: int, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """Clustered (N, D) rows and K initial means (the first K rows), identical in every process."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(k, d))
    X = centres[rng.integers(k, size=n)] + rng.normal(size=(n, d))
    X = X.astype(dtype)
    return X, X[:k].copy()


def worker(args: argparse.Namespace) -> None:
    """One process of the cluster: fit, time, and (process 0) write the results."""
    from gmmlimit.launch import initialize

    pid, count = initialize()
    import jax

    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    from jax.experimental import multihost_utils
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    import gmmlimit as gl

    X, m0 = make_data(args.n, args.d, args.k, args.seed, args.dtype)
    per = args.n // count
    mesh = gl.scale.default_mesh()
    Xg = jax.make_array_from_process_local_data(
        NamedSharding(mesh, P("rows")), X[pid * per : (pid + 1) * per]
    )
    del X
    out: dict = {"processes": count, "devices": len(jax.devices())}
    for name, sigma2 in (("kmeans", 0.0), ("em", args.sigma2)):

        def fit(sigma2: float = sigma2) -> gl.FitResult:
            res = gl.scale.em_sharded(Xg, m0, sigma2, mesh=mesh, max_iter=args.max_iter, tol=0.0)
            jax.block_until_ready(res)
            return res

        fit()  # compile
        best = float("inf")
        for _ in range(args.repeats):
            multihost_utils.sync_global_devices("start")
            start = time.perf_counter()
            res = fit()
            best = min(best, time.perf_counter() - start)
        labels = np.asarray(multihost_utils.process_allgather(res.labels, tiled=True))
        out[name] = {
            "seconds": best,
            "n_iter": int(res.n_iter),
            "labels_sha": hashlib.sha256(labels.astype(np.int32).tobytes()).hexdigest(),
        }
    if pid == 0:
        Path(args.out).write_text(json.dumps(out))


def main() -> None:
    """Run the clusters one after another and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--d", type=int, default=16)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--sigma2", type=float, default=1.0)
    parser.add_argument("--max-iter", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per cluster")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    sys.path.insert(0, str(ROOT))
    from gmmlimit.launch import run

    counts = [int(p) for p in args.processes.split(",")]
    for p in counts:
        if args.n % p:
            parser.error(f"--n {args.n} must split evenly over {p} processes.")
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for p in counts:
            out = Path(tmp, f"p{p}.json")
            argv = [str(Path(__file__).resolve()), "--worker", "--out", str(out)]
            for key in ("n", "d", "k", "dtype", "sigma2", "max_iter", "repeats", "seed"):
                argv += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
            code = run(p, argv, timeout_s=args.timeout, env=env)
            if code != 0:
                raise SystemExit(f"the {p}-process run failed with status {code}")
            results[p] = json.loads(out.read_text())
    base = results[counts[0]]
    print(
        f"(N, D, K) = ({args.n}, {args.d}, {args.k}), {args.dtype}, best of {args.repeats}, "
        f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f}"
    )
    print()
    print(
        "| processes | K-means ms / iter | iters | vs first | EM ms / iter | iters | vs first "
        "| labels, iters equal first |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---|")
    for p in counts:
        r = results[p]
        cells = [str(p)]
        same = True
        for name in ("kmeans", "em"):
            per_iter = 1e3 * r[name]["seconds"] / r[name]["n_iter"]
            base_iter = 1e3 * base[name]["seconds"] / base[name]["n_iter"]
            cells += [f"{per_iter:.1f}", str(r[name]["n_iter"]), f"{base_iter / per_iter:.2f}x"]
            same &= r[name]["labels_sha"] == base[name]["labels_sha"]
            same &= r[name]["n_iter"] == base[name]["n_iter"]
        cells.append("yes" if same else "NO")
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
