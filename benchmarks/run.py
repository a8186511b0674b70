"""Side-by-side timings of gmmlimit against scikit-learn and faiss, on the same data, in one run.

Usage::

    PYTHONPATH=$PWD python benchmarks/run.py --quick            # small sizes, about a minute
    PYTHONPATH=$PWD python benchmarks/run.py                    # (100k, 32, 16), (1M, 64, 64)
    PYTHONPATH=$PWD python benchmarks/run.py --md docs/benchmarks.md   # also the Markdown
    PYTHONPATH=$PWD python benchmarks/run.py --grid --md grid.md       # the D x K grid (issue 16)

``--grid`` (helpers and limits in ``benchmarks/grid.py``) times every shape of D x K (default D in
{2, 3, 8, 64, 784}, K in {5, 16, 64, 512}, N = min(--grid-max-n, --grid-elements // D)) on one
device: gmmlimit K-means against scikit-learn lloyd, gmmlimit EM against scikit-learn's spherical
GaussianMixture, each one's fraction of the memory-bandwidth or GEMM limit, and a vmapped sweep of
``--grid-lanes`` sigma2 values per lane against one EM fit, in float32 and float64. In the grid,
the four fits of a shape (and each sweep with its one fit) are timed in the same ``--repeats``
rounds, in a rotated order, best round per fit, with ``--iters`` raised per fit until the
iterations differenced take ``--grid-min-diff-s`` (scikit-learn's GMM: ``--gmm-iters``).

What is measured (every anchor on the same array, in the same process):

* K-means: gmmlimit ``kmeans`` (the isotropic driver at sigma2 = 0) against scikit-learn
  ``KMeans(algorithm="lloyd")``, ``KMeans(algorithm="elkan")`` and ``faiss.Kmeans`` (float32
  only; faiss has no float64 path; its subsampling is switched off so it sees every row).
* EM: gmmlimit ``em`` against scikit-learn ``GaussianMixture(covariance_type="spherical")``.
* gmmlimit twice: on one device (the default ``fit``), and with the rows sharded over all devices
  (``fit_sharded``). On a CPU the script first splits the host into ``--host-devices`` devices
  (default: one per core) with ``jax.config.update("jax_num_cpu_devices", n)``, so each core
  scans its own share of the rows; scikit-learn and faiss use every core through their own
  threads.
* Per-iteration time is a difference of two fits, ``(T(1 + R) - T(1)) / R`` iterations, so set-up
  costs (input checks, copies, centring, the final labelling pass) cancel for every library. Each
  fit time is the best of ``--repeats`` runs. The data are Gaussian noise, on which no method
  converges within the few iterations timed (the iteration counts are checked).
* GFLOP/s: 2 N K D flops per K-means iteration and 4 N K D per EM iteration, divided by the
  per-iteration time; "of peak" divides that by this machine's numpy square-GEMM rate in the same
  dtype, measured first.
* Compile time: gmmlimit's first call minus a warm call (scikit-learn and faiss have none).
* A vmapped sweep of 32 sigma2 values (one compiled program) against one fit, per value.
* Peak memory: a fresh subprocess fits K-means at ``--memory-size`` and reports its peak resident
  set size (VmHWM) and the part above the resident size after the data were made.

JAX picks its default device (CPU here; the same script runs unchanged on a GPU, where the anchors
still run on the CPU and the device is recorded in the output).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import math
import os
import platform
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/grid.py, also when imported

from grid import (  # noqa: E402
    GRID_D,
    GRID_ELEMENTS,
    GRID_K,
    GRID_LANES,
    GRID_MAX_N,
    peak_text,
)
from grid import MAX_ITERS as GRID_MAX_ITERS  # noqa: E402
from grid import best_time as _best_time  # noqa: E402
from grid import calibrate as _calibrate  # noqa: E402
from grid import difference as _difference  # noqa: E402
from grid import interleaved as _interleaved  # noqa: E402
from grid import no_pauses as _no_pauses  # noqa: E402
from grid import pauses as _pauses  # noqa: E402
from grid import settle as _settle  # noqa: E402

FULL_SIZES = [(100_000, 32, 16), (1_000_000, 64, 64)]
QUICK_SIZES = [(20_000, 16, 8), (40_000, 32, 32)]
N_SWEEP = 32


def gemm_peaks(n: int, dtype: str, repeats: int) -> dict[str, float]:
    """This machine's GEMM peak in GFLOP/s (2 n^3 flops / time), two ways, and the best.

    * ``numpy``: an (n, n) @ (n, n) product by numpy's BLAS (OpenBLAS in the wheels; scikit-learn
      calls scipy's, also OpenBLAS);
    * ``xla``: the same product compiled by JAX (XLA:CPU's own matrix multiply).

    They can differ by 2x: on an AMD Zen 5 (family 26) both OpenBLAS builds run their Haswell
    (AVX2) kernels (threadpoolctl's ``architecture``), and numpy's reached 235 GFLOP/s float32 on
    2 cores where XLA's product reached 433 (session 28). ``best`` is the largest: the
    limit it implies is the shortest, so the fraction reported against it is not flattered, and
    a target that needs "more than the peak" is one that no product on this machine reaches.
    Each is the best of ``repeats`` runs after a first. float64 needs JAX's x64 flag on (the
    XLA product is then float64), which the float64 benchmarks set before this runs.
    """
    import grid

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    out = {}
    for library, run in grid.library_products(a, b).items():
        run(1)
        out[library] = 2.0 * n**3 / _best_time(partial(run, 1), repeats) / 1e9
    out["best"] = max(out.values())
    return out


def make_data(n: int, d: int, k: int, dtype: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian noise (N, D) and K initial means drawn from its rows."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d), dtype=np.float32).astype(dtype)
    m0 = X[rng.choice(n, size=k, replace=False)].copy()
    return X, m0


def _per_iter(
    run: Callable[[int], int], iters: int, repeats: int, warm: bool = True
) -> tuple[float, int, int]:
    """Per-iteration time by differencing a 1-iteration and a (1 + iters)-iteration fit.

    ``warm``: run each once untimed first (compilation, first-touch allocations, thread pools).
    """
    counts = {}

    def timed(m: int) -> float:
        best = math.inf
        for _ in range(repeats):
            t0 = time.perf_counter()
            counts[m] = run(m)
            best = min(best, time.perf_counter() - t0)
        return best

    if warm:
        run(1)
        run(1 + iters)
    t1 = timed(1)
    t2 = timed(1 + iters)
    n1, n2 = counts[1], counts[1 + iters]
    return _difference(t1, t2, n1, n2), n1, n2


# ----------------------------------------------------------------------------------------------
# gmmlimit
# ----------------------------------------------------------------------------------------------


def _timed(fit: Callable[[int], object]):
    """Wrap ``fit(max_iter) -> FitResult`` as ``run(max_iter) -> n_iter`` for :func:`_per_iter`.

    Returns ``(run, compile_s, objective)``: the first call's wall time per ``max_iter`` (it
    includes compilation) and the final objective of the latest call per ``max_iter``.
    """
    import jax

    compile_s: dict[int, float] = {}
    objective: dict[int, float] = {}

    def run(max_iter: int) -> int:
        t0 = time.perf_counter()
        res = jax.block_until_ready(fit(max_iter))
        if max_iter not in compile_s:
            compile_s[max_iter] = time.perf_counter() - t0
        objective[max_iter] = float(res.objective)
        return int(res.n_iter)

    return run, compile_s, objective


def _block(block_size: int | None, n: int, k: int, d: int) -> int:
    """``--block-size``, or what a fit of N rows, K means and D features takes by default here."""
    from gmmlimit.scale import default_block_size

    return block_size or default_block_size(n, k, d)


def _gmmlimit_fit(X, m0, sigma2: float, block_size: int | None) -> Callable[[int], object]:
    import jax
    import jax.numpy as jnp

    from gmmlimit._driver import fit_compiled
    from gmmlimit.variants._isotropic import IsotropicParams, isotropic

    bs = _block(block_size, X.shape[0], *m0.shape)
    Xj = jax.device_put(jnp.asarray(X))
    w = jnp.ones((X.shape[0],), Xj.dtype)
    params = IsotropicParams(jnp.asarray(m0), jnp.asarray(sigma2, Xj.dtype))
    # tol = -inf: only max_iter stops a soft fit; a hard fit stops only if no label changes.
    tol = jnp.asarray(-jnp.inf, Xj.dtype)
    return lambda max_iter: fit_compiled(
        isotropic, Xj, w, params, tol, max_iter=max_iter, block_size=bs
    )


def _gmmlimit_sharded_fit(X, m0, sigma2: float, block_size: int | None) -> Callable[[int], object]:
    """Like :func:`_gmmlimit_fit`, with the rows sharded over all devices (``fit_sharded``).

    The blocks are padded and placed on the devices once, outside the timed calls.
    """
    import jax
    import jax.numpy as jnp
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from gmmlimit._driver import data_spread, history_length
    from gmmlimit._sharding import _fit_sharded_compiled, _shard_blocks, default_mesh
    from gmmlimit.variants._isotropic import IsotropicParams, isotropic

    mesh = default_mesh()
    axis = mesh.axis_names[0]
    bs = _block(block_size, -(-X.shape[0] // int(mesh.shape[axis])), *m0.shape)
    Xj = jnp.asarray(X)
    w = jnp.ones((X.shape[0],), Xj.dtype)
    blocks, local_rows = _shard_blocks(
        Xj, w, int(mesh.shape[axis]), bs, NamedSharding(mesh, P(axis))
    )
    params = jax.device_put(
        IsotropicParams(jnp.asarray(m0), jnp.asarray(sigma2, Xj.dtype)), NamedSharding(mesh, P())
    )
    spread = data_spread(Xj)  # (unit, shift_scale), as fit_sharded passes them
    tol = jnp.asarray(-jnp.inf, Xj.dtype)
    # max_iter traced, the history's length static: as fit_sharded calls it
    return lambda max_iter: _fit_sharded_compiled(
        isotropic,
        blocks,
        params,
        tol,
        spread,
        max_iter,
        n=X.shape[0],
        history=history_length(max_iter),
        mesh=mesh,
        axis=axis,
        local_rows=local_rows,
    )


def bench_gmmlimit(X, m0, sigma2, iters, repeats, block_size=None, sharded=False) -> dict:
    make_fit = _gmmlimit_sharded_fit if sharded else _gmmlimit_fit
    run, first, objective = _timed(make_fit(X, m0, sigma2, block_size))
    per_iter, n1, n2 = _per_iter(run, iters, repeats)
    # the first call, run(1), compiled (a fit's max_iter is traced: run(1 + iters) reuses it)
    t_warm = _best_time(lambda: run(1), 1)
    return {
        "per_iter_s": per_iter,
        "n_iter": [n1, n2],
        "compile_s": max(first[1] - t_warm, 0.0),
        "objective": objective[1 + iters],
    }


def bench_sweep(X, m0, sigma2s, iters, repeats, block_size=None) -> dict:
    """A vmapped fit over len(sigma2s) variances: per-iteration time for all of them."""
    import jax
    import jax.numpy as jnp

    from gmmlimit._driver import fit_compiled
    from gmmlimit.variants._isotropic import IsotropicParams, isotropic

    bs = _block(block_size, X.shape[0], *m0.shape)
    Xj = jnp.asarray(X)
    w = jnp.ones((X.shape[0],), Xj.dtype)
    s2 = jnp.asarray(sigma2s, Xj.dtype)
    means = jnp.asarray(m0)
    tol = jnp.asarray(-jnp.inf, Xj.dtype)

    @partial(jax.jit, static_argnames="max_iter")
    def sweep(Xj, w, means, s2, tol, *, max_iter: int):
        return jax.vmap(
            lambda s: fit_compiled(
                isotropic, Xj, w, IsotropicParams(means, s), tol, max_iter=max_iter, block_size=bs
            )
        )(s2)

    def run(max_iter: int) -> int:
        res = jax.block_until_ready(sweep(Xj, w, means, s2, tol, max_iter=max_iter))
        return int(jnp.max(res.n_iter))

    per_iter, n1, n2 = _per_iter(run, iters, repeats)
    return {"per_iter_s": per_iter, "n_iter": [n1, n2], "n_values": len(sigma2s)}


# ----------------------------------------------------------------------------------------------
# anchors
# ----------------------------------------------------------------------------------------------


def bench_sklearn_kmeans(X, m0, algorithm, iters, repeats, warm: bool = True) -> dict:
    per_iter, n1, n2 = _per_iter(_sklearn_kmeans_run(X, m0, algorithm), iters, repeats, warm)
    return {"per_iter_s": per_iter, "n_iter": [n1, n2]}


def _sklearn_kmeans_run(X, m0, algorithm: str) -> Callable[[int], int]:
    """``run(max_iter) -> n_iter``: one scikit-learn KMeans fit from ``m0`` (tol = 0)."""
    from sklearn.cluster import KMeans

    def run(max_iter: int) -> int:
        km = KMeans(
            n_clusters=m0.shape[0],
            init=m0,
            n_init=1,
            max_iter=max_iter,
            tol=0.0,
            algorithm=algorithm,
            copy_x=True,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            km.fit(X)
        return int(km.n_iter_)

    return run


def bench_faiss(X, m0, iters, repeats) -> dict:
    import faiss

    X32 = np.ascontiguousarray(X, dtype=np.float32)
    m32 = np.ascontiguousarray(m0, dtype=np.float32)

    def run(max_iter: int) -> int:
        km = faiss.Kmeans(
            X.shape[1],
            m0.shape[0],
            niter=max_iter,
            verbose=False,
            seed=1,
            max_points_per_centroid=X.shape[0],
            min_points_per_centroid=1,
        )
        km.train(X32, init_centroids=m32)
        return max_iter  # faiss always runs niter iterations

    per_iter, n1, n2 = _per_iter(run, iters, repeats)
    return {"per_iter_s": per_iter, "n_iter": [n1, n2], "threads": faiss.omp_get_max_threads()}


def bench_sklearn_gmm(X, m0, sigma2, iters, repeats, warm: bool = True) -> dict:
    per_iter, n1, n2 = _per_iter(_sklearn_gmm_run(X, m0, sigma2), iters, repeats, warm)
    return {"per_iter_s": per_iter, "n_iter": [n1, n2]}


def _sklearn_gmm_run(X, m0, sigma2: float) -> Callable[[int], int]:
    """``run(max_iter) -> n_iter``: a spherical GaussianMixture fit from m0 and sigma2 (tol 0)."""
    from sklearn.mixture import GaussianMixture

    k = m0.shape[0]

    def run(max_iter: int) -> int:
        gm = GaussianMixture(
            n_components=k,
            covariance_type="spherical",
            max_iter=max_iter,
            tol=0.0,
            init_params="random_from_data",
            weights_init=np.full(k, 1.0 / k),
            means_init=m0,
            precisions_init=np.full(k, 1.0 / sigma2),
            random_state=0,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gm.fit(X)
        return int(gm.n_iter_)

    return run


# ----------------------------------------------------------------------------------------------
# memory probe (runs in a fresh subprocess)
# ----------------------------------------------------------------------------------------------


def _proc_status_mib(field: str) -> float:
    """A memory field of /proc/self/status in MiB (VmRSS: now; VmHWM: peak of this process).

    VmHWM is used rather than ru_maxrss, which Linux carries over from the forking parent.
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def memory_probe(n: int, d: int, k: int, dtype: str, max_iter: int) -> dict:
    import jax

    if dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    import gmmlimit as gl

    X, m0 = make_data(n, d, k, dtype, seed=1)
    base = _proc_status_mib("VmRSS")
    res = gl.kmeans(X, m0, max_iter=max_iter)
    jax.block_until_ready(res)
    peak = _proc_status_mib("VmHWM")
    return {
        "N": n,
        "D": d,
        "K": k,
        "dtype": dtype,
        "data_mib": X.nbytes / 2**20,
        "rss_after_data_mib": base,
        "peak_rss_mib": peak,
        "peak_above_data_mib": peak - base,
        "n_iter": int(res.n_iter),
    }


def run_memory_probe(size: tuple[int, int, int], dtype: str, max_iter: int) -> dict:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--memory-probe",
        ",".join(map(str, size)),
        "--dtypes",
        dtype,
        "--iters",
        str(max_iter),
    ]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------------
# driver
# ----------------------------------------------------------------------------------------------


def faiss_version() -> str | None:
    """faiss's version, or None where it cannot be imported (an optional anchor: the bench
    extra)."""
    try:
        import faiss
    except ImportError:
        return None
    return faiss.__version__


def machine_info() -> dict:
    import jax
    import sklearn

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    from gmmlimit import _native

    dev = jax.devices()[0]
    return {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "jax_device": f"{dev.platform}:{getattr(dev, 'device_kind', '')}",
        "n_devices": len(jax.devices()),
        "estep": _native.status() if dev.platform == "cpu" else f"pure JAX on {dev.platform}",
        "estep_build": _native.build_info() if dev.platform == "cpu" else {},
        "versions": {
            "python": platform.python_version(),
            "jax": jax.__version__,
            "numpy": np.__version__,
            "sklearn": sklearn.__version__,
            "faiss": faiss_version(),
        },
        "git_rev": git_rev(),
        "pauses": _pauses(),  # {"settle_s": 0, "warm_s": 0} after --no-pauses
    }


def git_rev() -> str:
    """The checkout's short commit, or ``GMMLIMIT_GIT_REV`` where there is no git repository.

    A copy of the working tree without ``.git`` (sent to a lent machine, say) or a machine
    without git gives an empty answer or no git at all; the caller then names the commit.
    """
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        rev = ""
    return rev or os.environ.get("GMMLIMIT_GIT_REV", "")


def bench_setting(n, d, k, dtype, args, peak: float) -> dict:
    X, m0 = make_data(n, d, k, dtype)
    sigma2 = 1.0  # the data are unit-variance noise: a genuinely soft mixture
    it, rep = args.iters, args.repeats
    arep = args.anchor_repeats or rep
    out: dict = {"N": n, "D": d, "K": k, "dtype": dtype, "sigma2": sigma2, "kmeans": {}, "em": {}}
    log = lambda msg: print(f"  [{n},{d},{k},{dtype}] {msg}", flush=True)  # noqa: E731

    import jax

    n_dev = len(jax.devices())
    sharded_name = f"gmmlimit-sharded-{n_dev}dev"
    km = out["kmeans"]
    km["gmmlimit"] = bench_gmmlimit(X, m0, 0.0, it, rep, args.block_size)
    log(f"gmmlimit kmeans {km['gmmlimit']['per_iter_s']:.4f} s/iter")
    if n_dev > 1:
        km[sharded_name] = bench_gmmlimit(X, m0, 0.0, it, rep, args.block_size, sharded=True)
        log(f"gmmlimit kmeans over {n_dev} devices {km[sharded_name]['per_iter_s']:.4f} s/iter")
    for algo in () if args.only_gmmlimit else ("lloyd", "elkan"):
        km[f"sklearn-{algo}"] = bench_sklearn_kmeans(X, m0, algo, it, arep)
        log(f"sklearn {algo} {km[f'sklearn-{algo}']['per_iter_s']:.4f} s/iter")
    if dtype == "float32" and not (args.no_faiss or args.only_gmmlimit):
        if faiss_version() is None:
            log("faiss is not installed: no faiss row (pip install -e '.[bench]' adds it)")
        else:
            km["faiss"] = bench_faiss(X, m0, it, arep)
            log(f"faiss {km['faiss']['per_iter_s']:.4f} s/iter")

    em = out["em"]
    em["gmmlimit"] = bench_gmmlimit(X, m0, sigma2, it, rep, args.block_size)
    log(f"gmmlimit em {em['gmmlimit']['per_iter_s']:.4f} s/iter")
    if n_dev > 1:
        em[sharded_name] = bench_gmmlimit(X, m0, sigma2, it, rep, args.block_size, sharded=True)
        log(f"gmmlimit em over {n_dev} devices {em[sharded_name]['per_iter_s']:.4f} s/iter")
    if not args.only_gmmlimit:
        gmm_it = args.gmm_iters or it
        em["sklearn-gmm-spherical"] = bench_sklearn_gmm(X, m0, sigma2, gmm_it, arep)
        log(f"sklearn gmm {em['sklearn-gmm-spherical']['per_iter_s']:.4f} s/iter")

    for kind, flops in (("kmeans", 2.0 * n * k * d), ("em", 4.0 * n * k * d)):
        ours = out[kind]["gmmlimit"]["per_iter_s"]
        ours_sharded = out[kind].get(sharded_name, {}).get("per_iter_s")
        for entry in out[kind].values():
            entry["gflops"] = flops / entry["per_iter_s"] / 1e9
            entry["frac_peak"] = entry["gflops"] / peak
            entry["speedup_of_gmmlimit"] = entry["per_iter_s"] / ours
            if ours_sharded is not None:
                entry["speedup_of_gmmlimit_sharded"] = entry["per_iter_s"] / ours_sharded

    if args.sweep and dtype in args.sweep_dtypes.split(","):
        s2 = np.geomspace(1e-3, 4.0, N_SWEEP)
        sw = bench_sweep(X, m0, s2, max(2, it // 2), rep, args.block_size)
        one = em["gmmlimit"]["per_iter_s"]
        sw["per_value_per_iter_s"] = sw["per_iter_s"] / N_SWEEP
        sw["cost_ratio_vs_one_fit"] = sw["per_value_per_iter_s"] / one
        out["sweep"] = sw
        log(
            f"sweep {sw['per_value_per_iter_s']:.4f} s/value/iter "
            f"({sw['cost_ratio_vs_one_fit']:.2f}x one fit)"
        )
    return out


def _machine_lines(m: dict) -> list[str]:
    """The Markdown lines naming the machine, the versions, the commit and the E-step path."""
    return [
        f"Measured {m['date_utc']} on {m['cpu']} ({m['cpu_count']} cores), JAX device "
        f"`{m['jax_device']}`, jax {m['versions']['jax']}, scikit-learn "
        f"{m['versions']['sklearn']}, faiss {m['versions']['faiss']}, git {m['git_rev']}.",
        "",
        f"gmmlimit E-step: {m.get('estep', 'pure JAX (before the CPU kernels)').split(' /')[0]}"
        + (
            f" (built by {m['estep_build']['compiler_version']}, {m['estep_build']['flags']})."
            if m.get("estep_build")
            else "."
        ),
        *(
            ["", "Run with --no-pauses (no pauses, no warm-up runs): not timings to compare."]
            if m.get("pauses", {}).get("settle_s") == 0
            else []
        ),
    ]


def to_markdown(res: dict) -> str:
    m = res["machine"]
    lines = [
        *_machine_lines(m),
        "",
        "Square-GEMM peak: " + peak_text(res["gemm_peak_gflops"], res.get("gemm_peak_ways")) + ".",
        "",
        "Speed-up columns: this row's time over gmmlimit's, on one device and with the rows "
        f"sharded over {m.get('n_devices', 1)} devices (`fit_sharded`; on a CPU, host devices "
        "from `jax_num_cpu_devices`, one per core).",
        "",
        "| N, D, K | dtype | task | method | s / iter | gmmlimit speed-up | sharded speed-up |"
        " GFLOP/s | of peak | compile s |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for s in res["settings"]:
        shape = f"{s['N']:,}, {s['D']}, {s['K']}"
        for kind in ("kmeans", "em"):
            for name, e in s[kind].items():
                comp = f"{e['compile_s']:.2f}" if "compile_s" in e else ""
                sharded = e.get("speedup_of_gmmlimit_sharded")
                sharded_txt = f"{sharded:.2f}x" if sharded is not None else ""
                lines.append(
                    f"| {shape} | {s['dtype']} | {kind} | {name} | {e['per_iter_s']:.4f} | "
                    f"{e['speedup_of_gmmlimit']:.2f}x | {sharded_txt} | {e['gflops']:.1f} | "
                    f"{100 * e['frac_peak']:.0f}% | {comp} |"
                )
    sweeps = [s for s in res["settings"] if "sweep" in s]
    if sweeps:
        lines += [
            "",
            f"Vmapped sweep over {N_SWEEP} sigma2 values (one compiled program) against one EM "
            "fit:",
            "",
            "| N, D, K | dtype | sweep s / iter (all values) | per value | one fit s / iter |"
            " cost per value / one fit |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for s in sweeps:
            sw = s["sweep"]
            lines.append(
                f"| {s['N']:,}, {s['D']}, {s['K']} | {s['dtype']} | {sw['per_iter_s']:.3f} | "
                f"{sw['per_value_per_iter_s']:.4f} | {s['em']['gmmlimit']['per_iter_s']:.4f} | "
                f"{sw['cost_ratio_vs_one_fit']:.2f} |"
            )
    if res.get("memory"):
        lines += [
            "",
            "Peak memory of a K-means fit (fresh process, VmHWM):",
            "",
            "| N, D, K | dtype | data MiB | RSS after data MiB | peak RSS MiB |"
            " peak above data MiB |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for p in res["memory"]:
            lines.append(
                f"| {p['N']:,}, {p['D']}, {p['K']} | {p['dtype']} | {p['data_mib']:.0f} | "
                f"{p['rss_after_data_mib']:.0f} | {p['peak_rss_mib']:.0f} | "
                f"{p['peak_above_data_mib']:.0f} |"
            )
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# the shape grid (--grid)
# ----------------------------------------------------------------------------------------------


def _warm_anchors(X, m0, sigma2) -> None:
    """One small scikit-learn K-means and GMM fit (imports, thread pools) before timing them."""
    rows = X[: max(4 * m0.shape[0], min(X.shape[0], 2000))]
    bench_sklearn_kmeans(rows, m0, "lloyd", 1, 1, warm=False)
    bench_sklearn_gmm(rows, m0, sigma2, 1, 1, warm=False)


def _ready(fits, sigma2: float | None, iters: int, min_diff_s: float) -> tuple:
    """A compiled gmmlimit fit made ready to time: (run, iterations to difference, objectives).

    Compiles the programs of 1 and 1 + ``iters`` iterations, calibrates (:func:`_calibrate`),
    then compiles and runs once the program of the calibrated length, so no timed call
    compiles or touches memory for the first time.
    """
    for m in (1, 1 + iters):
        fits.compile(m)
    run, objective = fits.runner(sigma2)
    its = _calibrate(run, iters, min_diff_s)
    fits.compile(1 + its)
    run(1 + its)
    return run, its, objective


def bench_grid_shape(
    n, d, k, args, peaks: dict, bandwidth: float, fma_peaks: dict | None = None
) -> dict:
    """One (N, D, K) of the grid: each method against its anchor and limit, and the sweeps.

    Every gmmlimit program is compiled before it is timed (:class:`grid.CompiledFits`), so the
    per-iteration differences hold execution only. gmmlimit's K-means and EM and scikit-learn's
    lloyd and GMM are timed in the same rounds (:func:`_interleaved`), and so are each sweep
    and the one EM fit it is compared with.
    """
    import grid

    X32, m0 = make_data(n, d, k, "float32")
    sigma2 = 1.0  # unit-variance noise: a genuinely soft mixture
    it, rounds, min_diff = args.iters, args.repeats, args.grid_min_diff_s
    bs = _block(args.block_size, n, k, d)
    log = lambda msg: print(f"  [{n},{d},{k}] {msg}", flush=True)  # noqa: E731
    out: dict = {
        "N": n, "D": d, "K": k, "sigma2": sigma2, "block_size": bs, "by_dtype": {}, "sweep": {}
    }  # fmt: skip
    em_ready: dict = {}  # dtype -> (run, iterations) of the EM fit readied above
    anchors = {"kmeans": "lloyd", "em": "gmm"}
    for dt in args.dtype_list:
        X = X32.astype(dt)
        algorithm = grid.kmeans_algorithm(d, k)
        fits = {"em": grid.CompiledFits(X, m0, bs)}
        fits["kmeans"] = grid.CompiledFits(X, m0, bs, algorithm=algorithm)
        runs, objectives = {}, {}
        for kind, s2 in (("kmeans", 0.0), ("em", sigma2)):
            run, its, objectives[kind] = _ready(fits[kind], s2, it, min_diff)
            runs[kind] = (run, its, False)
        em_ready[dt] = runs["em"][:2]
        if not args.only_gmmlimit:
            _warm_anchors(X, m0, sigma2)
            lloyd = _sklearn_kmeans_run(X, m0, "lloyd")
            runs["lloyd"] = (lloyd, _calibrate(lloyd, it, min_diff), True)
            runs["gmm"] = (_sklearn_gmm_run(X, m0, sigma2), args.gmm_iters, True)
            _settle()
        products = grid.shape_products(X, m0)
        for name, (run, library) in products.items():
            runs[f"{name} product"] = (run, _calibrate(run, it, min_diff), library == "numpy")
        timed = _interleaved(runs, rounds)
        row: dict = {
            "products": {
                name: {
                    "per_call_s": timed[f"{name} product"][0],
                    "n_calls": list(timed[f"{name} product"][1:]),
                    "library": library,
                }
                for name, (_, library) in products.items()
            }
        }
        for kind in ("kmeans", "em"):
            per_iter, n1, n2 = timed[kind]
            ours = {
                "per_iter_s": per_iter,
                "n_iter": [n1, n2],
                "objective": objectives[kind][runs[kind][1] + 1],
            }
            if kind == "kmeans":
                ours["algorithm"] = algorithm
            entry: dict = {"gmmlimit": ours, "ratio": None, "target_met": None}
            if not args.only_gmmlimit:
                a_per_iter, a1, a2 = timed[anchors[kind]]
                entry["anchor"] = {"per_iter_s": a_per_iter, "n_iter": [a1, a2]}
                entry["ratio"] = a_per_iter / per_iter
                entry["target_met"] = bool(entry["ratio"] >= grid.TARGETS[kind])
            entry["limit"] = grid.limit(
                kind, n, d, k, X.itemsize, per_iter, peaks[dt], bandwidth,
                (fma_peaks or {}).get(dt),
            )  # fmt: skip
            entry["products_s"] = sum(
                row["products"][product]["per_call_s"] for product in grid.PRODUCTS[kind]
            )
            row[kind] = entry
            lim = entry["limit"]
            log(
                f"{dt} {kind} gmmlimit {per_iter:.4g} s/iter"
                + (f", anchor {entry['anchor']['per_iter_s']:.4g}" if "anchor" in entry else "")
                + f", {100 * lim['fraction']:.0f}% of the {lim['binds']} limit, its products "
                + f"alone {entry['products_s']:.4g} s"
            )
        row["compile_s"] = sum(sum(f.compile_s.values()) for f in fits.values())
        out["by_dtype"][dt] = row

    s2s = grid.sweep_sigma2s(args.grid_lanes)
    for dt in args.sweep_dtypes.split(","):
        X = X32.astype(dt)
        if dt not in em_ready:  # a dtype swept but not compared: ready its one EM fit here
            em_ready[dt] = _ready(grid.CompiledFits(X, m0, bs), sigma2, it, min_diff)[:2]
        run_one, its = em_ready[dt]
        sweep = grid.CompiledFits(X, m0, bs, sigma2s=s2s)
        sit = args.sweep_iters
        for m in (1, 1 + sit):
            sweep.compile(m)
        run_sweep, _ = sweep.runner()
        # The one fit is timed twice, under two names, in the same rounds: the ratio of the two
        # is the run's noise floor for a ratio of fits (the same program against itself).
        timed = _interleaved(
            {
                "one": (run_one, its, False),
                "sweep": (run_sweep, sit, False),
                "one again": (run_one, its, False),
            },
            args.sweep_repeats,
        )
        per_iter, n1, n2 = timed["sweep"]
        one_per_iter, o1, o2 = timed["one"]
        per_lane = per_iter / len(s2s)
        noise = timed["one again"][0] / one_per_iter
        sw = {
            "lanes": len(s2s),
            "per_iter_s": per_iter,
            "n_iter": [n1, n2],
            "per_lane_per_iter_s": per_lane,
            "one_fit_per_iter_s": one_per_iter,
            "one_fit_n_iter": [o1, o2],
            "cost_ratio": per_lane / one_per_iter,
            "compile_s": sum(sweep.compile_s.values()),
        }
        sw["target_met"] = bool(sw["cost_ratio"] <= grid.TARGETS["sweep"])
        sw["noise_ratio"] = noise
        sw["within_noise"] = bool(sw["cost_ratio"] <= grid.TARGETS["sweep"] * max(noise, 1 / noise))
        out["sweep"][dt] = sw
        log(
            f"{dt} sweep {per_lane:.4g} s/lane/iter = {sw['cost_ratio']:.2f} x one fit "
            f"(one fit against itself {noise:.2f})"
        )
    return out


def run_grid(args, progress: Callable[[dict], None] | None = None) -> dict:
    """The whole grid: machine limits first, then every shape (see ``benchmarks/grid.py``).

    ``progress``, if given, gets the grid so far after every shape (the same dictionary as the
    return value, with the shapes done), so a run cut short still leaves its finished shapes.
    """
    import gc

    import fma_peak
    import grid
    import jax

    ds = grid.parse_axis(args.grid_d, "--grid-d")
    ks = grid.parse_axis(args.grid_k, "--grid-k")
    shapes = grid.grid_shapes(ds, ks, args.grid_elements, args.grid_max_n)
    peak_ways = {dt: gemm_peaks(args.gemm_size, dt, 10) for dt in args.dtype_list}
    peaks = {dt: ways["best"] for dt, ways in peak_ways.items()}
    threads = os.cpu_count() or 1
    ways = grid.memory_bandwidth(args.bandwidth_mib, 5, threads)
    bandwidth = ways["best"]
    if jax.default_backend() == "cpu":  # the host's cores compute
        fma = fma_peak.peaks(args.dtype_list, threads)
    else:
        fma = {"gflops": {}, "why": f"the fits run on {jax.default_backend()}, not the host CPU"}
    print(f"GEMM peak GFLOP/s {peaks}; multiply-add peak {fma}; bandwidth GB/s {ways}", flush=True)
    t0 = time.perf_counter()
    results: list[dict] = []
    out = {
        "d": list(ds),
        "k": list(ks),
        "elements": args.grid_elements,
        "max_n": args.grid_max_n,
        "lanes": args.grid_lanes,
        "block_size": args.block_size,  # None: each shape's default (its own "block_size")
        "targets": dict(grid.TARGETS),
        "gemm_peak_gflops": peaks,
        "gemm_peak_ways": peak_ways,
        "fma_peak": fma,
        "bandwidth_gbs": bandwidth,
        "bandwidth_ways": ways,
        "bandwidth_mib": args.bandwidth_mib,
        "bandwidth_threads": threads,
        # the host CPU's cache: on another device the data are in that device's memory
        "llc_bytes": grid.last_level_cache_bytes() if jax.default_backend() == "cpu" else None,
        "wall_s": 0.0,
        "shapes": results,
    }
    for n, d, k in shapes:
        t_shape = time.perf_counter()
        results.append(bench_grid_shape(n, d, k, args, peaks, bandwidth, fma["gflops"]))
        results[-1]["wall_s"] = time.perf_counter() - t_shape
        # Free the shape's compiled programs: XLA:CPU maps about 400 memory regions per program,
        # and a whole grid's programs passed Linux's 65,530 (vm.max_map_count), at which LLVM
        # failed with "Cannot allocate memory" and the process crashed at (784, 64).
        jax.clear_caches()
        gc.collect()
        out["wall_s"] = time.perf_counter() - t0
        print(f"  ({out['wall_s']:.0f} s so far)", flush=True)
        if progress is not None:
            progress(out)
    return out


def grid_markdown(res: dict) -> str:
    import grid

    return "\n".join([*_machine_lines(res["machine"]), "", *grid.to_markdown(res["grid"])]) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes (about a minute)")
    p.add_argument("--sizes", default=None, help="N,D,K;N,D,K ... (overrides the defaults)")
    p.add_argument("--dtypes", default=None, help="default float32,float64 (float32 with --grid)")
    p.add_argument("--iters", type=int, default=None, help="iterations timed per fit")
    p.add_argument("--repeats", type=int, default=None, help="best of this many runs")
    p.add_argument("--anchor-repeats", type=int, default=None, help="repeats for the anchors")
    p.add_argument("--gmm-iters", type=int, default=None, help="iterations timed for sklearn GMM")
    p.add_argument("--sweep-dtypes", default="float32,float64", help="dtypes of the sigma2 sweep")
    p.add_argument(
        "--block-size", type=int, default=None, help="default: gl.scale.default_block_size's"
    )
    p.add_argument("--no-faiss", action="store_true")
    p.add_argument("--only-gmmlimit", action="store_true", help="skip the anchors (for tuning)")
    p.add_argument("--no-sweep", dest="sweep", action="store_false")
    p.add_argument("--memory-size", default=None, help="N,D,K of the memory probe ('' to skip)")
    p.add_argument("--memory-probe", default=None, help=argparse.SUPPRESS)
    p.add_argument(
        "--host-devices",
        type=int,
        default=os.cpu_count() or 1,
        help="CPU host devices for the sharded rows (default: one per core; 1: no sharded rows). "
        "Only the CPU platform reads it; a GPU run shards over the GPUs it has.",
    )
    g = p.add_argument_group("grid (issue 16): every D x K, see benchmarks/grid.py")
    g.add_argument("--grid", action="store_true", help="run the shape grid instead")
    g.add_argument("--grid-d", default=",".join(map(str, GRID_D)), help="the D axis")
    g.add_argument("--grid-k", default=",".join(map(str, GRID_K)), help="the K axis")
    g.add_argument(
        "--grid-elements",
        type=int,
        default=GRID_ELEMENTS,
        help="N = min(--grid-max-n, this // D) rows per shape",
    )
    g.add_argument("--grid-max-n", type=int, default=GRID_MAX_N)
    g.add_argument("--grid-lanes", type=int, default=GRID_LANES, help="sigma2 values swept")
    g.add_argument("--sweep-iters", type=int, default=3, help="iterations timed per sweep")
    g.add_argument("--sweep-repeats", type=int, default=3, help="rounds per sweep timing")
    g.add_argument(
        "--grid-min-diff-s",
        type=float,
        default=0.2,
        help="difference at least this many seconds of iterations (--iters up to "
        f"{GRID_MAX_ITERS}) in gmmlimit's fits and scikit-learn's lloyd; 0: --iters",
    )
    g.add_argument("--gemm-size", type=int, default=None, help="n of the GEMM-peak product")
    g.add_argument("--bandwidth-mib", type=int, default=512, help="array read for bandwidth")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/...)")
    p.add_argument("--md", default=None, help="also write the Markdown table here")
    p.add_argument(
        "--no-pauses",
        action="store_true",
        help="skip the settle pauses and warm-up runs (to check the output, as the tests do; "
        "the timings are then not comparable)",
    )
    args = p.parse_args(argv)
    with _no_pauses() if args.no_pauses else contextlib.nullcontext():
        _dispatch(args, p)


def _dispatch(args: argparse.Namespace, p: argparse.ArgumentParser) -> None:
    """The run that ``args`` asks for: the grid, the memory probe or the settings' table."""
    if args.dtypes is None:
        args.dtypes = "float32" if args.grid else "float32,float64"
    dtypes = args.dtypes.split(",")
    for dt in dtypes + args.sweep_dtypes.split(","):
        if dt not in ("float32", "float64"):
            p.error(f"dtype {dt!r}: expected float32 or float64")
    if args.grid:
        main_grid(args, dtypes)
        return

    if args.memory_probe:
        n, d, k = map(int, args.memory_probe.split(","))
        print(json.dumps(memory_probe(n, d, k, dtypes[0], args.iters or 5)))
        return

    import jax

    if args.host_devices > 1:
        # Before JAX creates its CPU client: split the host into that many devices (each scans
        # its share of the rows). A GPU backend is unaffected and shards over its GPUs.
        jax.config.update("jax_num_cpu_devices", args.host_devices)
    if "float64" in dtypes:
        jax.config.update("jax_enable_x64", True)

    if args.sizes:
        sizes = [tuple(map(int, s.split(","))) for s in args.sizes.split(";")]
    else:
        sizes = QUICK_SIZES if args.quick else FULL_SIZES
    args.iters = args.iters or 4
    args.repeats = args.repeats or 2
    mem = args.memory_size
    if mem is None:
        mem = "100000,16,64" if args.quick else "2000000,16,256"

    res: dict = {"machine": machine_info(), "args": vars(args), "settings": [], "memory": []}
    n_gemm = args.gemm_size or (1024 if args.quick else 2048)
    res["gemm_peak_ways"] = {dt: gemm_peaks(n_gemm, dt, 15) for dt in dtypes}
    res["gemm_peak_gflops"] = {dt: ways["best"] for dt, ways in res["gemm_peak_ways"].items()}
    print("GEMM peak GFLOP/s", res["gemm_peak_gflops"], flush=True)
    for n, d, k in sizes:
        for dt in dtypes:
            res["settings"].append(bench_setting(n, d, k, dt, args, res["gemm_peak_gflops"][dt]))
    if mem:
        size = tuple(map(int, mem.split(",")))
        res["memory"].append(run_memory_probe(size, "float32", 5))
        print("memory", res["memory"][-1], flush=True)

    name = "quick.json" if args.quick else "full.json"
    _write(res, args.out or ROOT / "benchmarks" / "results" / name, to_markdown(res), args.md)


def _write(res: dict, out: str | Path, md: str, md_path: str | None) -> None:
    """The results as JSON at ``out``, and their Markdown printed and written to ``md_path``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(md)
    if md_path:
        Path(md_path).write_text(md)


def main_grid(args, dtypes: list[str]) -> None:
    """``--grid``: one device (no sharded rows, no faiss), the JSON and the Markdown grid table."""
    import jax

    if "float64" in dtypes or "float64" in args.sweep_dtypes.split(","):
        jax.config.update("jax_enable_x64", True)
    args.dtype_list = dtypes
    args.iters = args.iters or 3
    args.repeats = args.repeats or 3
    args.gmm_iters = args.gmm_iters or 2
    args.gemm_size = args.gemm_size or 2048
    if args.grid_min_diff_s < 0:
        raise ValueError(f"--grid-min-diff-s must be at least 0, got {args.grid_min_diff_s}")
    for name in (
        "iters",
        "repeats",
        "gmm_iters",
        "grid_lanes",
        "sweep_iters",
        "sweep_repeats",
    ):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
    res: dict = {"machine": machine_info(), "args": vars(args)}
    out = Path(args.out or ROOT / "benchmarks" / "results" / "grid.json")

    def progress(grid_so_far: dict) -> None:
        # the finished shapes, replaced whole (a file never half written)
        partial = out.with_name(out.name + ".partial")
        partial.write_text(json.dumps({**res, "grid": grid_so_far}, indent=2) + "\n")
        partial.replace(out)

    out.parent.mkdir(parents=True, exist_ok=True)
    res["grid"] = run_grid(args, progress)
    _write(res, out, grid_markdown(res), args.md)


if __name__ == "__main__":
    main()
