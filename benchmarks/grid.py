"""Helpers of ``benchmarks/run.py --grid``: the (D, K) shape grid, the machine's limits, the table.

The grid (issue 16) times gmmlimit against scikit-learn at every shape of D x K, with N chosen so
the whole grid fits a time budget (``N = min(max_n, elements // D)``), and says for each shape how
close each method comes to the limit the machine sets on it:

* memory: the data must be read at least once per iteration, ``N D itemsize`` bytes, at the
  read bandwidth measured here (:func:`memory_bandwidth`);
* arithmetic: ``2 N K D`` flops per K-means iteration and ``4 N K D`` per EM iteration, at the
  square-GEMM rate of the machine's libraries measured by ``run.py`` (numpy's BLAS, XLA), and at
  the cores' multiply-add peak (``fma_peak.py``), which no pass doing all the arithmetic beats;

``limit_s = max(mem_s, gemm_s)`` is the shortest iteration either bound allows at the libraries'
GEMM rate (``hard_limit_s`` the same at the multiply-add peak), and the reported fraction is
``limit_s / measured_s`` (1 = at the limit). Beside it, the matrix products that an
iteration contains at the shape (:data:`PRODUCTS`), timed with the machine's libraries in the same
rounds (:func:`shape_products`): what a product of that shape, skinny or not, costs here at best.

The gmmlimit programs are compiled ahead of time (``jit(...).lower(...).compile()``), one per
``max_iter``, so no timed call compiles and no untimed warm-up run of a large fit is needed.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np

GRID_D = (2, 3, 8, 64, 784)
GRID_K = (5, 16, 64, 512)
GRID_ELEMENTS = 10_000_000
GRID_MAX_N = 250_000
GRID_LANES = 8

TARGETS = {"kmeans": 1.5, "em": 15.0, "sweep": 1.0}
"""Issue 16: K-means >= 1.5x scikit-learn lloyd, EM >= 15x scikit-learn spherical
GaussianMixture, and a vmapped sigma2 sweep at most one fit per lane (ratio <= 1)."""

FLOPS_PER_NKD = {"kmeans": 2.0, "em": 4.0}

PRODUCTS = {"kmeans": ("scores",), "em": ("scores", "sums")}
"""The matrix products of the shape that one iteration contains: Lloyd's scores ``X M^T``
((N, D) by (D, K)), and EM's scores and weighted sums ``R^T X`` ((K, N) by (N, D)), 2 N K D flops
each. Timed by :func:`shape_products` with the machine's own libraries, they say what the square
GEMM peak cannot: how fast a product of this shape (skinny where K or D is small) runs at best."""


def parse_axis(text: str, name: str) -> tuple[int, ...]:
    """A comma-separated list of positive integers (``"2,3,8"``).

    Raises:
        ValueError: naming ``name`` when an entry is not a positive integer.
    """
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"{name}: expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise ValueError(f"{name}: expected positive integers, got {text!r}")
    return values


def grid_shapes(
    ds: Sequence[int], ks: Sequence[int], elements: int, max_n: int
) -> list[tuple[int, int, int]]:
    """The (N, D, K) shapes of the grid, D-major: ``N = min(max_n, elements // D)``.

    Raises:
        ValueError: if a shape would have fewer rows than components.
    """
    shapes = []
    for d in ds:
        n = min(max_n, elements // d)
        for k in ks:
            if n < k:
                raise ValueError(
                    f"grid shape D={d}, K={k}: N = min({max_n}, {elements} // {d}) = {n} rows "
                    f"is fewer than K; raise --grid-elements"
                )
            shapes.append((n, d, k))
    return shapes


def best_time(fn: Callable[[], object], repeats: int) -> float:
    """The shortest wall time of ``repeats`` calls of ``fn``, in seconds."""
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


SETTLE_S = 0.5
"""Pause before timing gmmlimit after scikit-learn ran: its OpenMP and OpenBLAS threads keep
spinning for a while after a parallel region, and on 2 cores they took CPU from the next timed
fit (grid cells 3x to 5x slower than the same fit timed alone)."""


def settle() -> None:
    """Sleep :data:`SETTLE_S` seconds."""
    time.sleep(SETTLE_S)


WARM_S = 0.15
"""Seconds of untimed one-iteration runs of a method just before each timed run of it: after a
pause (a :func:`settle`, or the machine idle between cells) this VM's cores ran the next 50 to
100 ms up to twice as slow (``python benchmarks/tuning/clock_ramp.py``), which taxed whichever
method came first after a pause and pulled every ratio towards 1."""


@contextlib.contextmanager
def no_pauses() -> Iterator[None]:
    """:data:`SETTLE_S` and :data:`WARM_S` at 0 inside the block (the scripts' ``--no-pauses``).

    Timings taken so are not comparable with timed runs (whatever comes after scikit-learn or
    after a pause pays for its threads and the cores' clock); the switch is for checking what the
    scripts write, as the tests do. Every result records the pauses in force (:func:`pauses`).
    """
    global SETTLE_S, WARM_S
    saved = SETTLE_S, WARM_S
    SETTLE_S = WARM_S = 0.0
    try:
        yield
    finally:
        SETTLE_S, WARM_S = saved


def pauses() -> dict[str, float]:
    """The pauses in force: ``{"settle_s": SETTLE_S, "warm_s": WARM_S}``."""
    return {"settle_s": SETTLE_S, "warm_s": WARM_S}


def warm(call: Callable[[], object]) -> None:
    """Call ``call()`` until :data:`WARM_S` seconds have passed (at least once).

    Shared by the grid (one-iteration runs of the fit about to be timed) and the scripts of
    ``benchmarks/tuning`` (the call about to be timed).
    """
    start = time.perf_counter()
    call()
    while time.perf_counter() - start < WARM_S:
        call()


def difference(t1: float, t2: float, n1: int, n2: int) -> float:
    """Seconds per iteration from the times t1, t2 of fits that ran n1 < n2 iterations."""
    if t2 <= t1 or n2 <= n1:  # noise on a shared machine: fall back to the plain average
        return t2 / max(n2, 1)
    return (t2 - t1) / (n2 - n1)


MAX_ITERS = 60
"""Most iterations :func:`calibrate` asks one timed fit of the grid to difference."""


def calibrate(run: Callable[[int], int], iters: int, min_diff_s: float) -> int:
    """Iterations to difference so that they take about ``min_diff_s`` or more.

    One untimed fit of ``1 + iters`` iterations (which also warms the method up) estimates the
    time of an iteration; the result lies between ``iters`` and :data:`MAX_ITERS`.
    """
    t0 = time.perf_counter()
    n = run(1 + iters)
    per_iter = (time.perf_counter() - t0) / max(n, 1)
    if min_diff_s <= 0 or per_iter <= 0:
        return iters
    return int(min(MAX_ITERS, max(iters, math.ceil(min_diff_s / per_iter))))


def interleaved(fits: dict, rounds: int) -> dict[str, tuple[float, int, int]]:
    """Seconds per iteration of several fits timed in the same rounds: name -> (s, n1, n2).

    Args:
        fits: name -> (``run(max_iter) -> n_iter``, iters, foreign). Each round runs every fit
            for 1 and for 1 + iters iterations, the fits in a rotated order (none is always
            first); after a ``foreign`` fit (scikit-learn) comes a pause of :data:`SETTLE_S`,
            and before every timed run :data:`WARM_S` seconds of the same fit (:func:`warm`).
        rounds: rounds; per fit and length the fastest round counts, and the seconds per
            iteration are their difference over the difference of iterations (as in
            ``run.py``'s ``_per_iter``).

    A stretch of a loaded machine then slows every method of the shape a little rather than one
    of them a lot, which is what moved single cells 3x to 10x between earlier runs.
    """
    names = list(fits)
    best = {(name, m): math.inf for name, (_, it, _) in fits.items() for m in (1, 1 + it)}
    counts: dict[tuple[str, int], int] = {}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            run, it, foreign = fits[name]
            for m in (1, 1 + it):
                warm(partial(run, 1))
                t0 = time.perf_counter()
                counts[name, m] = run(m)
                best[name, m] = min(best[name, m], time.perf_counter() - t0)
                if foreign:
                    settle()
    out = {}
    for name, (_, it, _) in fits.items():
        n1, n2 = counts[name, 1], counts[name, 1 + it]
        out[name] = (difference(best[name, 1], best[name, 1 + it], n1, n2), n1, n2)
    return out


def memory_bandwidth(mib: int, repeats: int, threads: int) -> dict[str, float]:
    """The read bandwidth of JAX's default device in GB/s (bytes read / time) over ``mib`` MiB.

    On a CPU, three ways:

    * ``sum``: ``threads`` numpy sums over slices of a float64 array;
    * ``gemv``: the array as (rows, 64) times a vector, on BLAS's threads;
    * ``copy``: ``np.copyto`` into a second array (the bytes read; as many are written).

    On another device (a GPU) the data live in its memory, so the host's bandwidth says nothing
    about it: :func:`device_bandwidth` measures that device's instead.

    Each is the best of ``repeats`` runs after a first touch. ``best`` is the largest: the limit
    it implies is then the shortest, so the fraction reported against it is not flattered.
    """
    import jax

    if jax.default_backend() != "cpu":
        return device_bandwidth(mib, repeats)
    a = np.ones(max(mib, 1) * 2**20 // 8, dtype=np.float64)
    b = np.empty_like(a)
    mat, vec = a.reshape(-1, 64), np.ones(64)  # 2**17 elements per MiB: always whole rows
    parts = np.array_split(a, threads)

    def best(fn: Callable[[], object]) -> float:
        fn()  # first touch
        return best_time(fn, repeats)

    with ThreadPoolExecutor(threads) as pool:
        t_sum = best(lambda: list(pool.map(np.sum, parts)))
    out = {
        "sum": a.nbytes / t_sum / 1e9,
        "gemv": mat.nbytes / best(lambda: mat @ vec) / 1e9,
        "copy": a.nbytes / best(lambda: np.copyto(b, a)) / 1e9,
    }
    out["best"] = max(out.values())
    return out


def device_bandwidth(mib: int, repeats: int) -> dict[str, float]:
    """JAX's default device's read bandwidth in GB/s over ``mib`` MiB of float32, two ways.

    * ``sum``: a compiled sum of the whole array (one read, nothing written);
    * ``copy``: a compiled ``x + 1`` into a new array (the bytes read; as many are written).

    Each is the best of ``repeats`` runs after a first; ``best`` is the largest.
    """
    import jax
    import jax.numpy as jnp

    x = jnp.ones((max(mib, 1) * 2**20 // 4,), jnp.float32)
    total = jax.jit(jnp.sum)
    shifted = jax.jit(lambda a: a + 1.0)

    def best(fn: Callable[[], object]) -> float:
        jax.block_until_ready(fn())  # compiles
        return best_time(lambda: jax.block_until_ready(fn()), repeats)

    out = {
        "sum": x.nbytes / best(lambda: total(x)) / 1e9,
        "copy": x.nbytes / best(lambda: shifted(x)) / 1e9,
    }
    out["best"] = max(out.values())
    return out


def last_level_cache_bytes() -> int | None:
    """The size of the CPU's largest-level cache in bytes (Linux sysfs), or None if unknown."""
    from pathlib import Path

    best: tuple[int, int] | None = None
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            level = int((index / "level").read_text())
            size = (index / "size").read_text().strip()
        except (OSError, ValueError):
            continue
        units = {"K": 2**10, "M": 2**20, "G": 2**30}
        nbytes = int(size[:-1]) * units[size[-1]] if size[-1] in units else int(size)
        if best is None or level > best[0]:
            best = (level, nbytes)
    return None if best is None else best[1]


def limit(
    kind: str,
    n: int,
    d: int,
    k: int,
    itemsize: int,
    measured_s: float,
    gemm_gflops: float,
    bandwidth_gbs: float,
    fma_gflops: float | None = None,
) -> dict:
    """The shortest iteration the machine allows for ``kind`` at (n, d, k), and our fraction of it.

    Args:
        kind: ``"kmeans"`` or ``"em"``.
        n, d, k: the shape.
        itemsize: bytes per element of the data.
        measured_s: the measured seconds per iteration.
        gemm_gflops: the GEMM peak in the data's dtype.
        bandwidth_gbs: the read bandwidth.
        fma_gflops: the cores' multiply-add peak in the data's dtype (``fma_peak.py``), or None
            where it was not measured.

    Returns:
        ``mem_s``, ``gemm_s``, ``limit_s`` (their maximum), ``binds`` (``"memory"`` or
        ``"gemm"``), ``fraction = limit_s / measured_s`` and ``data_bytes`` (N D itemsize);
        with ``fma_gflops`` also ``fma_s`` (the flops at that peak) and ``hard_limit_s =
        max(mem_s, fma_s)``, the bound no pass doing all the arithmetic beats.
    """
    mem_s = n * d * itemsize / (bandwidth_gbs * 1e9)
    flops = FLOPS_PER_NKD[kind] * n * k * d
    gemm_s = flops / (gemm_gflops * 1e9)
    limit_s = max(mem_s, gemm_s)
    out = {
        "mem_s": mem_s,
        "gemm_s": gemm_s,
        "limit_s": limit_s,
        "binds": "memory" if mem_s >= gemm_s else "gemm",
        "fraction": limit_s / measured_s,
        "data_bytes": n * d * itemsize,
    }
    if fma_gflops is not None:
        out["fma_s"] = flops / (fma_gflops * 1e9)
        out["hard_limit_s"] = max(mem_s, out["fma_s"])
    return out


def library_products(a: np.ndarray, b: np.ndarray) -> dict[str, Callable[[int], int]]:
    """``a @ b`` by each library here: numpy's BLAS (OpenBLAS in the wheels, as scikit-learn's)
    and XLA (``jnp.matmul`` at the precision gmmlimit's products ask for, compiled; only where
    JAX keeps the dtype, so float64 needs the x64 flag).

    Returns:
        library (``"numpy"``, ``"xla"``) -> ``run(m) -> m``, which computes the product m times
        and waits for the last.
    """
    import jax
    import jax.numpy as jnp

    out = np.empty((a.shape[0], b.shape[1]), a.dtype)

    def by_numpy(m: int) -> int:
        for _ in range(m):
            np.matmul(a, b, out=out)
        return m

    runs = {"numpy": by_numpy}
    aj, bj = jax.device_put(a), jax.device_put(b)
    if aj.dtype == a.dtype:
        # at the precision gmmlimit's products ask for (on a GPU the default is TF32)
        product = jax.jit(partial(jnp.matmul, precision=jax.lax.Precision.HIGHEST))

        def by_xla(m: int) -> int:
            last = None
            for _ in range(m):
                last = product(aj, bj)
            jax.block_until_ready(last)
            return m

        runs["xla"] = by_xla
    return runs


def shape_products(
    X: np.ndarray, m0: np.ndarray, repeats: int = 3
) -> dict[str, tuple[Callable[[int], int], str]]:
    """The products of :data:`PRODUCTS` at the shape of (X, m0), each by the faster library.

    Each product is run by each of :func:`library_products`; the faster over ``repeats`` calls
    after a first is kept. The responsibilities of the sums product are uniform draws in X's
    dtype.

    Args:
        X: (N, D) data.
        m0: (K, D) means.
        repeats: calls per library when choosing.

    Returns:
        name (``"scores"``, ``"sums"``) -> (``run(m) -> m``, which computes the product m times
        and waits for the last, and the library's name, ``"numpy"`` or ``"xla"``).
    """
    rng = np.random.default_rng(0)
    resp = rng.random((X.shape[0], m0.shape[0])).astype(X.dtype)
    operands = {
        "scores": (X, np.ascontiguousarray(m0.T)),
        "sums": (np.ascontiguousarray(resp.T), X),
    }
    chosen: dict[str, tuple[Callable[[int], int], str]] = {}
    for name, (a, b) in operands.items():
        runs = library_products(a, b)
        seconds = {}
        for library, run in runs.items():
            run(1)
            seconds[library] = best_time(partial(run, 1), repeats)
            if library == "numpy":
                settle()  # OpenBLAS's threads spin on after a call
        library = min(seconds, key=seconds.__getitem__)
        chosen[name] = (runs[library], library)
    return chosen


# ----------------------------------------------------------------------------------------------
# gmmlimit programs, compiled ahead of time
# ----------------------------------------------------------------------------------------------


def _sweep_fn(Xj, w, means, s2, tol, max_iter, *, history: int, block_size: int):
    import jax

    from gmmlimit._driver import fit_program
    from gmmlimit.variants._isotropic import IsotropicParams, isotropic

    return jax.vmap(
        lambda s: fit_program(
            isotropic,
            Xj,
            w,
            IsotropicParams(means, s),
            tol,
            max_iter,
            history=history,
            block_size=block_size,
        )
    )(s2)


def kmeans_algorithm(d: int, k: int) -> str:
    """The algorithm ``gl.kmeans(..., algorithm="auto")`` runs at (D, K): "lloyd" or "hamerly"."""
    from gmmlimit._api import _hard_variant
    from gmmlimit.variants._isotropic import isotropic_bounded

    return "hamerly" if _hard_variant("auto", d, k) is isotropic_bounded else "lloyd"


class CompiledFits:
    """gmmlimit's fit (one sigma2 per call) or its vmapped sweep, compiled once per ``max_iter``.

    Args:
        X: (N, D) data; its dtype is the fit's.
        m0: (K, D) initial means.
        block_size: rows per E-step block.
        sigma2s: None for single fits; else the (S,) variances of one vmapped sweep.
        algorithm: "lloyd" (the plain isotropic fit) or "hamerly" (the same iterates with
            Hamerly's bounds, what ``gl.kmeans`` runs by default at large D and K).
    """

    def __init__(
        self, X: np.ndarray, m0: np.ndarray, block_size: int, sigma2s=None, algorithm="lloyd"
    ) -> None:
        import jax
        import jax.numpy as jnp

        if algorithm not in ("lloyd", "hamerly"):
            raise ValueError(f"algorithm must be 'lloyd' or 'hamerly'; got {algorithm!r}")
        self.algorithm = algorithm

        self.Xj = jax.device_put(jnp.asarray(X))
        self.w = jnp.ones((X.shape[0],), self.Xj.dtype)
        self.means = jnp.asarray(m0, self.Xj.dtype)
        self.tol = jnp.asarray(-jnp.inf, self.Xj.dtype)
        self.block_size = block_size
        self.s2 = None if sigma2s is None else jnp.asarray(sigma2s, self.Xj.dtype)
        self._compiled: dict[int, object] = {}
        self.compile_s: dict[int, float] = {}

    def _args(self, sigma2: float | None) -> tuple:
        import jax.numpy as jnp

        from gmmlimit.variants._isotropic import IsotropicParams

        if self.s2 is not None:
            return (self.Xj, self.w, self.means, self.s2, self.tol)
        params = IsotropicParams(self.means, jnp.asarray(sigma2, self.Xj.dtype))
        return (self.Xj, self.w, params, self.tol)

    def compile(self, max_iter: int) -> None:
        """Compile the program that runs ``max_iter`` (once per history length, as a fit does:
        ``max_iter`` is traced) and record the time it took."""
        import jax

        from gmmlimit._driver import fit_program, history_length
        from gmmlimit.variants._isotropic import isotropic, isotropic_bounded

        history = history_length(max_iter)
        if history in self._compiled:
            return
        t0 = time.perf_counter()
        if self.s2 is None:
            lowered = fit_program.lower(
                isotropic_bounded if self.algorithm == "hamerly" else isotropic,
                *self._args(1.0),
                max_iter,
                history=history,
                block_size=self.block_size,
            )
        else:
            jitted = jax.jit(_sweep_fn, static_argnames=("history", "block_size"))
            lowered = jitted.lower(
                *self._args(None), max_iter, history=history, block_size=self.block_size
            )
        self._compiled[history] = lowered.compile()
        self.compile_s[history] = time.perf_counter() - t0

    def program(self, max_iter: int):
        """The compiled program that runs ``max_iter`` iterations (compiled on first use)."""
        from gmmlimit._driver import history_length

        self.compile(max_iter)
        return self._compiled[history_length(max_iter)]

    def runner(self, sigma2: float | None = None) -> tuple[Callable[[int], int], dict]:
        """``run(max_iter) -> n_iter`` (the largest over lanes) and the latest objectives.

        Args:
            sigma2: the variance of a single fit (0 = K-means); None for the sweep.
        """
        import jax
        import jax.numpy as jnp

        args = self._args(sigma2)
        objective: dict[int, float] = {}

        def run(max_iter: int) -> int:
            res = jax.block_until_ready(self.program(max_iter)(*args, max_iter))
            objective[max_iter] = float(jnp.max(res.objective))
            return int(jnp.max(res.n_iter))

        return run, objective


# ----------------------------------------------------------------------------------------------
# Markdown
# ----------------------------------------------------------------------------------------------


def needed_fraction(limit_s: float, anchor_s: float | None, target: float) -> float | None:
    """The fraction of the limit an iteration meeting ``target`` would reach: ``limit_s`` over
    ``anchor_s / target``. Above 1 against the GEMM peak, the target asks for more than this
    machine's libraries reach on a square product; above 1 against ``hard_limit_s`` (the cores'
    multiply-add peak; not a memory limit of data held in the last-level cache), no pass doing
    all of Lloyd's or EM's arithmetic can meet it on this machine."""
    return None if anchor_s is None else limit_s * target / anchor_s


def _f(x: float | None, fmt: str) -> str:
    return "—" if x is None else format(x, fmt)


def _met(ok: bool | None) -> str:
    return "—" if ok is None else ("yes" if ok else "**no**")


def peak_text(peaks: dict[str, float], ways: dict[str, dict[str, float]] | None) -> str:
    """The GEMM peaks per dtype as Markdown text, with the ways each was measured when known
    (``run.gemm_peaks``: numpy's BLAS and XLA's product; the peak is the best of them)."""
    parts = []
    for dtype, peak in peaks.items():
        text = f"{dtype} {peak:.1f} GFLOP/s"
        how = {k: v for k, v in (ways or {}).get(dtype, {}).items() if k != "best"}
        if how:
            named = {"numpy": "numpy's BLAS", "xla": "XLA"}
            text += (
                " (the best of "
                + ", ".join(f"{named.get(k, k)} {v:.1f}" for k, v in how.items())
                + ")"
            )
        parts.append(text)
    return ", ".join(parts)


def to_markdown(grid: dict) -> list[str]:
    """The grid table (one row per shape and dtype) and its legend, as Markdown lines."""
    t = grid["targets"]
    bw = grid["bandwidth_gbs"]
    ways = grid.get("bandwidth_ways", {})
    on_host = "gemv" in ways  # measured by numpy on the CPU, not on a device (a GPU)
    # the host's cache says nothing about data in a device's memory
    llc = grid.get("llc_bytes") if on_host else None
    peaks = peak_text(grid["gemm_peak_gflops"], grid.get("gemm_peak_ways"))
    fma = grid.get("fma_peak") or {}
    fma_text = (
        "; multiply-add peak "
        + ", ".join(f"{dt} {v:.1f} GFLOP/s" for dt, v in fma["gflops"].items())
        + f" (`benchmarks/fma_peak.py`: {fma['chains']} independent chains of vector "
        f"multiply-adds in registers on each of {fma['threads']} threads)"
        if fma.get("gflops")
        else ""
    )
    if on_host:
        read = (
            f"array of {grid['bandwidth_threads']} threaded numpy sums "
            f"({ways.get('sum', math.nan):.1f}), a BLAS matrix-vector product "
            f"({ways.get('gemv', math.nan):.1f}) and a copy ({ways.get('copy', math.nan):.1f}, "
            "bytes read)"
        )
    else:
        read = (
            f"float32 array in the device's memory of a compiled sum "
            f"({ways.get('sum', math.nan):.1f}) and a compiled x + 1 "
            f"({ways.get('copy', math.nan):.1f}, bytes read)"
        )
    lines = [
        f"Grid: D in {list(grid['d'])}, K in {list(grid['k'])}, N = min({grid['max_n']:,}, "
        f"{grid['elements']:,} // D); Gaussian-noise data, sigma2 = 1 for EM"
        + (
            f"; rows in blocks of {grid['block_size']:,}."
            if grid.get("block_size")
            else "; rows in each shape's default blocks (`gl.scale.default_block_size`)."
        ),
        "",
        f"Limits: read bandwidth {bw:.1f} GB/s, the best over a {grid['bandwidth_mib']} MiB "
        f"{read}; GEMM peak {peaks}{fma_text}. Fraction of limit = "
        "max(N D itemsize / bandwidth, flops / GEMM peak) / measured s per iteration "
        "(flops: 2 N K D for K-means, 4 N K D for EM); the letter says which binds "
        "(m: memory, g: GEMM). K-means runs what `gl.kmeans` runs by default "
        "(`algorithm=\"auto\"`): Lloyd, or Lloyd's iterates with Hamerly's bounds where marked "
        "(H), whose skipped rows make the GEMM fraction an equivalent one"
        + (
            f"; * marks data that fit in the {llc / 2**20:.0f} MiB last-level "
            "cache, where a pass may read faster than memory and the memory fraction can pass "
            "100%."
            if llc
            else "."
        )
        + " Target needs: the fraction of the same limit an iteration would have to reach to "
        "meet the target against the anchor measured here (over 100% with g: beyond the GEMM "
        "peak, faster than this machine's libraries run a square product)"
        + (
            "; in brackets, of max(N D itemsize / bandwidth, flops / multiply-add peak) (over "
            "100% with g: out of reach for any pass that does all the arithmetic)."
            if fma_text
            else "."
        )
        + " Of products: the "
        "time of the matrix products of the shape that an iteration contains (K-means: the "
        "scores X M^T; EM: those and the weighted sums R^T X), each by the faster of numpy's "
        "BLAS and XLA and timed in the same rounds, over the measured iteration's (over 100%: "
        "the iteration beats the libraries' products alone); in brackets, the same for an "
        "iteration that would meet the target (over 100%: the target needs an iteration "
        "faster than this machine's libraries compute its products alone).",
        "",
        f"Targets: K-means >= {t['kmeans']}x scikit-learn lloyd, EM >= {t['em']}x scikit-learn "
        f"spherical GaussianMixture, a vmapped sweep of {grid['lanes']} sigma2 values costs "
        f"<= {t['sweep']} fit per lane (sweep s/iter / lanes over one EM fit's s/iter, same "
        "dtype). In brackets after a sweep's ratio: the one EM fit timed a second time in the "
        "same rounds, over the first (the same program against itself: the run's noise floor "
        "for such a ratio); a sweep that misses its target by less than that is marked ~ "
        "(within the noise).",
        "",
        "| D | K | N | dtype | K-means s/iter | lloyd s/iter | ratio | >= "
        f"{t['kmeans']}x | K-means of limit | target needs | of products (needs) | EM s/iter | "
        f"GMM s/iter | ratio | >= {t['em']}x | EM of limit | target needs | of products (needs) "
        "| sweep lane/fit f32 | sweep lane/fit f64 | sweep <= 1 |",
        "|---:|---:|---:|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|"
        "---:|---:|---|",
    ]
    for s in grid["shapes"]:
        sweeps = s["sweep"]
        sw_ok = [v["target_met"] for v in sweeps.values()]
        sw_met = all(sw_ok) if sw_ok else None
        sw_near = all(v["target_met"] or v.get("within_noise", False) for v in sweeps.values())
        for dt, row in s["by_dtype"].items():
            cells = [str(s["D"]), str(s["K"]), f"{s['N']:,}", dt]
            for kind in ("kmeans", "em"):
                r = row[kind]
                lim = r["limit"]
                algorithm = r["gmmlimit"].get("algorithm")
                anchor_s = r.get("anchor", {}).get("per_iter_s")
                cells += [
                    f"{r['gmmlimit']['per_iter_s']:.4g}"
                    + (" (H)" if algorithm == "hamerly" else ""),
                    _f(r.get("anchor", {}).get("per_iter_s"), ".4g"),
                    _f(r["ratio"], ".2f") + ("x" if r["ratio"] is not None else ""),
                    _met(r["target_met"]),
                    f"{100 * lim['fraction']:.0f}% {lim['binds'][0]}"
                    + ("*" if llc and lim["data_bytes"] <= llc else ""),
                    _needs_cell(lim, anchor_s, t[kind]),
                    _products_cell(r, t[kind]),
                ]
            cells += [_sweep_cell(sweeps.get("float32")), _sweep_cell(sweeps.get("float64"))]
            cells.append("~" if sw_met is False and sw_near else _met(sw_met))
            lines.append("| " + " | ".join(cells) + " |")
    return [*lines, "", summary(grid)]


def _needs_cell(lim: dict, anchor_s: float | None, target: float) -> str:
    """What fraction of the limit an iteration meeting ``target`` would reach, and in brackets of
    the hard limit (the multiply-add peak's) where measured; "—" without an anchor."""
    needs = needed_fraction(lim["limit_s"], anchor_s, target)
    if needs is None:
        return "—"
    hard = needed_fraction(lim["hard_limit_s"], anchor_s, target) if "hard_limit_s" in lim else None
    return f"{100 * needs:.0f}%" + ("" if hard is None else f" ({100 * hard:.0f}%)")


def _products_cell(entry: dict, target: float) -> str:
    """The time of a method's products alone (:data:`PRODUCTS`) over its measured iteration's
    (above 100 %: the iteration beats the libraries' products), and in brackets over an iteration
    that would meet ``target`` against the anchor; "—" where not measured."""
    products_s = entry.get("products_s")
    if products_s is None:
        return "—"
    text = f"{100 * products_s / entry['gmmlimit']['per_iter_s']:.0f}%"
    anchor_s = entry.get("anchor", {}).get("per_iter_s")
    if anchor_s is not None:
        text += f" ({100 * products_s / (anchor_s / target):.0f}%)"
    return text


def _sweep_cell(sweep: dict | None) -> str:
    """A sweep's lane/fit ratio, with the run's noise floor in brackets where it was measured."""
    if sweep is None:
        return "—"
    noise = sweep.get("noise_ratio")
    return f"{sweep['cost_ratio']:.2f}" + ("" if noise is None else f" ({noise:.2f})")


def summary(grid: dict) -> str:
    """One sentence: at how many rows each target is met (rows without an anchor not counted)."""
    near = sum(
        not sw["target_met"] and sw.get("within_noise", False)
        for s in grid["shapes"]
        for sw in s["sweep"].values()
    )
    counts = {"kmeans": [0, 0], "em": [0, 0], "sweep": [0, 0]}
    for s in grid["shapes"]:
        for row in s["by_dtype"].values():
            for kind in ("kmeans", "em"):
                if row[kind]["target_met"] is not None:
                    counts[kind][0] += bool(row[kind]["target_met"])
                    counts[kind][1] += 1
        for sw in s["sweep"].values():
            counts["sweep"][0] += bool(sw["target_met"])
            counts["sweep"][1] += 1
    names = {"kmeans": "K-means", "em": "EM", "sweep": "sweep (shape x dtype)"}
    parts = [f"{names[k]} {met} of {total}" for k, (met, total) in counts.items() if total]
    noise = f" ({near} more sweeps miss by less than the run's noise floor)" if near else ""
    return "Targets met: " + "; ".join(parts) + noise + "."


def sweep_sigma2s(lanes: int) -> np.ndarray:
    """The sweep's variances: ``lanes`` values geometrically from 1e-3 to 4 (soft to near-hard)."""
    return np.geomspace(1e-3, 4.0, lanes)


__all__ = [
    "GRID_D",
    "GRID_ELEMENTS",
    "GRID_K",
    "GRID_LANES",
    "GRID_MAX_N",
    "PRODUCTS",
    "TARGETS",
    "CompiledFits",
    "grid_shapes",
    "last_level_cache_bytes",
    "library_products",
    "limit",
    "memory_bandwidth",
    "parse_axis",
    "shape_products",
    "summary",
    "sweep_sigma2s",
    "to_markdown",
]
