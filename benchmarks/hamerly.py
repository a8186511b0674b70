"""Whole K-means fits to convergence: Hamerly's exact bounds and Lloyd against scikit-learn.

Usage::

    PYTHONPATH=$PWD python benchmarks/hamerly.py                       # (1M, 64, 256)
    PYTHONPATH=$PWD python benchmarks/hamerly.py --sizes 200000,64,64;200000,2,8 --md out.md

On clustered data (K Gaussian blobs of unit variance, centres uniform in [-s, s]^D, s = 3 by
default: separated blobs that Lloyd still needs tens of iterations to sort out) and from one
k-means++ start (scikit-learn's ``kmeans_plusplus``, fixed seed), every method runs to strict
convergence (no label changes, ``tol=0``) or ``--max-iter``:

* gmmlimit ``kmeans(..., algorithm="hamerly")`` and ``algorithm="lloyd"`` (the same iterates bit
  for bit: checked here too);
* scikit-learn ``KMeans(algorithm="lloyd")`` and ``KMeans(algorithm="elkan")`` (n_init=1, the
  same start);
* ``gmmlimit.sklearn.KMeans`` with ``algorithm="lloyd"`` and ``"elkan"`` (the drop-in estimator:
  scikit-learn's rules for empty clusters and its centring of X; ``"elkan"`` runs the bounds),
  the entries that should match scikit-learn lloyd's labels and iteration count.

Reported per method: the best whole-fit wall time of ``--repeats`` runs (gmmlimit's compilation
excluded by one untimed run first), the iteration count, and whether the final labels and the
iteration count equal scikit-learn lloyd's. The speed-up is scikit-learn lloyd's time over each
method's. ``--no-sklearn`` times gmmlimit's two algorithms alone (the choice of
``algorithm="auto"``), against gmmlimit lloyd. ``--em-sigma2 0.1,1`` adds whole EM fits
(``gl.em``, tol 1e-8) at those variances with and without the bounds (rows with exactly one-hot
responsibilities skipped), checked bit for bit against each other.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _run_module():
    spec = importlib.util.spec_from_file_location("_bench_run", ROOT / "benchmarks" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def blobs(n: int, d: int, k: int, dtype: str, spread: float, seed: int = 0) -> np.ndarray:
    """K unit-variance Gaussian blobs, centres uniform in [-spread, spread]^D, N rows."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-spread, spread, (k, d))
    X = centres[rng.integers(0, k, n)] + rng.standard_normal((n, d))
    return X.astype(dtype)


def _best(fn, repeats: int) -> tuple[float, object]:
    best, out = math.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def bench_size(
    n: int,
    d: int,
    k: int,
    dtype: str,
    spread: float,
    repeats: int,
    max_iter: int,
    log,
    with_sklearn: bool = True,
    em_sigma2: tuple[float, ...] = (),
) -> dict:
    import jax
    from sklearn.cluster import KMeans, kmeans_plusplus

    import gmmlimit as gl

    X = blobs(n, d, k, dtype, spread)
    m0, _ = kmeans_plusplus(X, k, random_state=0)
    m0 = m0.astype(dtype)
    out: dict = {"N": n, "D": d, "K": k, "dtype": dtype, "spread": spread, "methods": {}}

    def sklearn_fit(algorithm: str):
        def run():
            km = KMeans(k, init=m0, n_init=1, max_iter=max_iter, tol=0.0, algorithm=algorithm)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                km.fit(X)
            return km.labels_.astype(np.int64), int(km.n_iter_)

        return run

    def gmmlimit_fit(algorithm: str):
        Xj = jax.device_put(X)

        def run():
            res = gl.kmeans(Xj, m0, max_iter=max_iter, tol=0.0, algorithm=algorithm)
            res = jax.block_until_ready(res)
            return np.asarray(res.labels).astype(np.int64), int(res.n_iter), res

        run()  # compile
        return run

    def gmmlimit_em(sigma2: float, algorithm: str):
        Xj = jax.device_put(X)

        def run():
            res = gl.em(Xj, m0, sigma2, max_iter=max_iter, algorithm=algorithm)
            res = jax.block_until_ready(res)
            return np.asarray(res.labels).astype(np.int64), int(res.n_iter), res

        run()  # compile
        return run

    def estimator_fit(algorithm: str):
        from gmmlimit.sklearn import KMeans as OurKMeans

        def run():
            km = OurKMeans(k, init=m0, n_init=1, max_iter=max_iter, tol=0.0, algorithm=algorithm)
            km.fit(X)
            return km.labels_.astype(np.int64), int(km.n_iter_)

        run()  # compile
        return run

    fits = {
        "gmmlimit-lloyd": gmmlimit_fit("lloyd"),
        "gmmlimit-hamerly": gmmlimit_fit("hamerly"),
    }
    for sigma2 in em_sigma2:
        fits[f"gmmlimit-em-lloyd@{sigma2:g}"] = gmmlimit_em(sigma2, "lloyd")
        fits[f"gmmlimit-em-hamerly@{sigma2:g}"] = gmmlimit_em(sigma2, "hamerly")
    if with_sklearn:
        fits = {
            "sklearn-lloyd": sklearn_fit("lloyd"),
            "sklearn-elkan": sklearn_fit("elkan"),
            # scikit-learn's rules (empty clusters, centring) in gmmlimit's estimator
            "gmmlimit.sklearn-lloyd": estimator_fit("lloyd"),
            "gmmlimit.sklearn-elkan": estimator_fit("elkan"),
            **fits,
        }
    results = {}
    for name, fn in fits.items():
        seconds, value = _best(fn, repeats)
        results[name] = value
        out["methods"][name] = {"fit_s": seconds, "n_iter": value[1]}
        log(f"[{n},{d},{k},{dtype}] {name}: {seconds:.3f} s, {value[1]} iterations")
    reference = "sklearn-lloyd" if with_sklearn else "gmmlimit-lloyd"
    out["reference"] = reference
    ref_labels, ref_iter = results[reference][:2]
    base = out["methods"][reference]["fit_s"]
    for name, entry in out["methods"].items():
        labels, n_iter = results[name][:2]
        own_ref_labels, own_ref_iter, own_base = ref_labels, ref_iter, base
        if name.startswith("gmmlimit-em-"):  # EM fits against EM without the bounds
            em_ref = "gmmlimit-em-lloyd@" + name.split("@")[1]
            own_ref_labels, own_ref_iter = results[em_ref][:2]
            own_base = out["methods"][em_ref]["fit_s"]
        entry["speedup"] = own_base / entry["fit_s"]
        entry["same_labels"] = bool(np.array_equal(labels, own_ref_labels))
        entry["same_n_iter"] = n_iter == own_ref_iter

    def bitwise(a, b) -> bool:
        return all(
            np.array_equal(np.asarray(x), np.asarray(y))
            for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
        )

    out["hamerly_bitwise_equal_to_lloyd"] = bitwise(
        results["gmmlimit-lloyd"][2], results["gmmlimit-hamerly"][2]
    )
    for sigma2 in em_sigma2:
        lloyd, bounded = f"gmmlimit-em-lloyd@{sigma2:g}", f"gmmlimit-em-hamerly@{sigma2:g}"
        out["methods"][bounded]["bitwise_equal_to_em_lloyd"] = bitwise(
            results[lloyd][2], results[bounded][2]
        )
        out["methods"][bounded]["speedup_vs_em_lloyd"] = (
            out["methods"][lloyd]["fit_s"] / out["methods"][bounded]["fit_s"]
        )
    return out


def to_markdown(res: dict) -> str:
    m = res["machine"]
    spread = res["spread"]
    data = (
        "Gaussian noise (spread 0: every blob centre at the origin)"
        if spread == 0
        else f"clustered data (blob centres in [-{spread:g}, {spread:g}]^D)"
    )
    lines = [
        f"Measured {m['date_utc']} on {m['cpu']} ({m['cpu_count']} cores), jax "
        f"{m['versions']['jax']}, scikit-learn {m['versions']['sklearn']}, git {m['git_rev']}.",
        "",
        f"Whole fits to strict convergence (or the iteration cap) from one k-means++ start on "
        f"{data}; speed-up and sameness against the first method of each size (EM fits: "
        "against EM without the bounds at the same sigma2):",
        "",
        "| N, D, K | dtype | method | fit s | iterations | speed-up | same labels / iterations |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for s in res["sizes"]:
        for name, e in s["methods"].items():
            same = f"{'yes' if e['same_labels'] else 'no'} / {'yes' if e['same_n_iter'] else 'no'}"
            lines.append(
                f"| {s['N']:,}, {s['D']}, {s['K']} | {s['dtype']} | {name} | {e['fit_s']:.3f} "
                f"| {e['n_iter']} | {e['speedup']:.2f}x | {same} |"
            )
    lines.append("")
    for s in res["sizes"]:
        lines.append(
            f"({s['N']:,}, {s['D']}, {s['K']}): gmmlimit hamerly equals gmmlimit lloyd bit for "
            f"bit: {'yes' if s['hamerly_bitwise_equal_to_lloyd'] else 'NO'}."
        )
        for name, e in s["methods"].items():
            if "bitwise_equal_to_em_lloyd" in e:
                lines.append(
                    f"({s['N']:,}, {s['D']}, {s['K']}) {name}: {e['speedup_vs_em_lloyd']:.2f}x "
                    "gmmlimit em lloyd's speed, the same fit bit for bit: "
                    f"{'yes' if e['bitwise_equal_to_em_lloyd'] else 'NO'}."
                )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1000000,64,256", help="N,D,K;N,D,K ...")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--spread", type=float, default=3.0, help="blob centres in [-s, s]^D")
    p.add_argument("--no-sklearn", action="store_true", help="gmmlimit's two algorithms only")
    p.add_argument(
        "--em-sigma2", default="", help="also EM fits at these sigma2 (comma list), both ways"
    )
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--max-iter", type=int, default=300)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "hamerly.json"))
    p.add_argument("--md", default=None, help="also write the Markdown table here")
    args = p.parse_args(argv)
    sizes = [tuple(int(v) for v in s.split(",")) for s in args.sizes.split(";") if s]
    res = {"machine": _run_module().machine_info(), "spread": args.spread, "sizes": []}
    for n, d, k in sizes:
        res["sizes"].append(
            bench_size(
                n,
                d,
                k,
                args.dtype,
                args.spread,
                args.repeats,
                args.max_iter,
                lambda m: print(m, flush=True),
                with_sklearn=not args.no_sklearn,
                em_sigma2=tuple(float(v) for v in args.em_sigma2.split(",") if v),
            )
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1))
    text = to_markdown(res)
    print(text)
    if args.md:
        Path(args.md).write_text(text)


if __name__ == "__main__":
    main()
