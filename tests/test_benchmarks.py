"""The benchmark script runs end to end (tiny sizes), sharded rows and the shape grid included."""

import importlib.util
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _cpu_env() -> dict[str, str]:
    """The environment of a benchmark subprocess that measures the CPU path (its host devices,
    the CPU kernels, the host's bandwidth), also on a machine with a GPU."""
    env = dict(os.environ)
    env["JAX_PLATFORMS"] = "cpu"
    return env


def test_benchmark_script_writes_json_and_markdown(tmp_path):
    out, md = tmp_path / "bench.json", tmp_path / "bench.md"
    args = [
        "--sizes", "3000,4,3",
        "--dtypes", "float32",
        "--iters", "2",
        "--repeats", "1",
        "--anchor-repeats", "1",
        "--gmm-iters", "1",
        "--memory-size", "",
        "--host-devices", "2",
        "--no-pauses",
        "--out", str(out),
        "--md", str(md),
    ]  # fmt: skip
    # With the anchors, and faiss hidden (it is an optional anchor, in the bench extra): the
    # script leaves out its row and says so instead of failing on the import.
    script = (
        "import runpy, sys; sys.modules['faiss'] = None; "
        f"sys.argv = [{str(ROOT / 'benchmarks' / 'run.py')!r}, *{args!r}]; "
        "runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True, cwd=ROOT,
        timeout=300, env=_cpu_env(),  # --host-devices 2: two CPU devices
    )  # fmt: skip
    assert "faiss is not installed: no faiss row" in done.stdout
    res = json.loads(out.read_text())
    assert res["machine"]["versions"]["faiss"] is None
    assert res["machine"]["n_devices"] == 2
    (setting,) = res["settings"]
    for task in ("kmeans", "em"):
        one, sharded = setting[task]["gmmlimit"], setting[task]["gmmlimit-sharded-2dev"]
        # Same data and start: the sharded fit runs exactly as many iterations and reaches the
        # same objective (up to the order of float32 summation across devices).
        assert one["n_iter"] == sharded["n_iter"]
        np.testing.assert_allclose(sharded["objective"], one["objective"], rtol=1e-5)
        assert one["n_iter"][0] == 1
        for entry in (one, sharded):
            assert entry["per_iter_s"] > 0
            assert entry["gflops"] > 0
    sweep = setting["sweep"]
    assert sweep["n_values"] == 32
    assert sweep["per_iter_s"] > 0
    assert {"sklearn-lloyd", "sklearn-elkan"} <= set(setting["kmeans"])
    assert "faiss" not in setting["kmeans"]
    assert setting["em"]["sklearn-gmm-spherical"]["per_iter_s"] > 0
    ways = res["gemm_peak_ways"]["float32"]
    assert res["gemm_peak_gflops"]["float32"] == ways["best"] == max(ways["numpy"], ways["xla"])
    text = md.read_text()
    assert f"Square-GEMM peak: float32 {ways['best']:.1f} GFLOP/s (the best of" in text
    assert "gmmlimit-sharded-2dev" in text
    assert "sharded speed-up" in text
    assert "| sklearn-lloyd |" in text


def _load_module(name, path):
    """The benchmark script at ``benchmarks/<path>``, loaded as module ``name``."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_kernel_parts_tool_still_fits_the_kernel(tmp_path):
    # benchmarks/tuning/kernel_parts.py cuts pieces out of estep.cc by string patches and times
    # the chunks with its own driver (cited in docs/scale.md): every patch must still apply, and
    # the patched source with the driver must still compile against the kernel's code.
    import shutil

    kp = _load_module("kernel_parts", "tuning/kernel_parts.py")
    sources = {name: kp.variant_source(patches) for name, patches in kp.VARIANTS.items()}
    assert len(set(sources.values())) == len(kp.VARIANTS)  # every variant cuts something else
    with pytest.raises(ValueError, match="no longer applies"):
        kp.variant_source([("no such line in the kernel", "")])
    if shutil.which("g++") is None:
        pytest.skip("g++ is not installed: the patched sources were not compiled")
    for name in ("product (scores) only", "+ first index of the min"):
        src = tmp_path / f"{len(name)}.cc"
        src.write_text(sources[name])
        out = subprocess.run(kp.compile_command(src, None), capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-2000:]


def _load_grid_module():
    return _load_module("bench_grid", "grid.py")


def test_grid_shapes_limits_and_axis_checks():
    grid = _load_grid_module()
    shapes = grid.grid_shapes(grid.GRID_D, grid.GRID_K, 20_000_000, 500_000)
    assert len(shapes) == 20
    assert {(d, k) for _, d, k in shapes} == {
        (d, k) for d in (2, 3, 8, 64, 784) for k in (5, 16, 64, 512)
    }
    assert dict(((d, n) for n, d, _ in shapes)) == {
        2: 500_000,
        3: 500_000,
        8: 500_000,
        64: 312_500,
        784: 25_510,
    }
    with pytest.raises(ValueError, match="fewer than K"):
        grid.grid_shapes((784,), (512,), 100_000, 1_000_000)
    with pytest.raises(ValueError, match="--grid-d"):
        grid.parse_axis("2,x", "--grid-d")
    with pytest.raises(ValueError, match="positive"):
        grid.parse_axis("0,3", "--grid-k")
    # D = 2: reading 8 MB at 10 GB/s (0.8 ms) outlasts 4 N K D = 40 MFLOP at 100 GFLOP/s (0.4 ms).
    lim = grid.limit("em", 1_000_000, 2, 5, 4, 1.6e-3, 100.0, 10.0)
    assert lim["binds"] == "memory"
    np.testing.assert_allclose([lim["mem_s"], lim["gemm_s"], lim["fraction"]], [8e-4, 4e-4, 0.5])
    # D = 64, K = 512: the arithmetic binds (2 N K D flops for K-means).
    lim = grid.limit("kmeans", 100_000, 64, 512, 4, 0.1, 100.0, 10.0)
    assert lim["binds"] == "gemm"
    np.testing.assert_allclose(
        [lim["limit_s"], lim["fraction"]], [2 * 100_000 * 512 * 64 / 1e11, 0.65536]
    )
    # 1.5x an anchor of 0.09 s needs an iteration of 0.06 s: 0.06553.. s of limit is 109 % of it.
    needs = grid.needed_fraction(lim["limit_s"], 0.09, 1.5)
    assert needs == pytest.approx(lim["limit_s"] / 0.06, rel=1e-12) and needs > 1
    assert grid.needed_fraction(lim["limit_s"], None, 1.5) is None


def test_grid_times_fits_in_rotated_rounds_and_differences_the_best(monkeypatch):
    grid = _load_grid_module()
    monkeypatch.setattr(grid, "SETTLE_S", 0.0)
    calls = []
    clock = [0.0]
    # Fake fits: a fit of m iterations takes `cost * m` seconds on a fake clock, three times as
    # long in the first and last rounds (a loaded machine); "b" stops after 4 iterations. Every
    # cost is past WARM_S, so each warm-up is one call of run(1).
    cost = {"a": 1.0, "b": 2.0, "c": 0.5}
    assert min(cost.values()) >= grid.WARM_S

    def make(name):
        def run(m):
            calls.append((name, m))
            n = min(m, 4) if name == "b" else m
            slow = len(calls) <= 12 or len(calls) > 24
            clock[0] += cost[name] * n * (3.0 if slow else 1.0)
            return n

        return run

    monkeypatch.setattr(grid.time, "perf_counter", lambda: clock[0])
    fits = {name: (make(name), 5, name == "c") for name in cost}
    out = grid.interleaved(fits, rounds=3)
    # Round r starts with fit r (rotated); each fit runs 1 then 1 + iters iterations, each timed
    # run right after a warm-up run of 1 iteration of the same fit.
    firsts = [calls[12 * r][0] for r in range(3)]
    assert firsts == ["a", "b", "c"]
    assert calls[:4] == [("a", 1), ("a", 1), ("a", 1), ("a", 6)]
    assert all(calls[i][0] == calls[i + 1][0] and calls[i][1] == 1 for i in range(0, 36, 2))
    assert out["a"] == (1.0, 1, 6)  # only the fastest round counts
    assert out["b"] == (2.0, 1, 4)  # differenced over the iterations actually run
    assert out["c"] == (0.5, 1, 6)


def test_grid_warm_up_runs_one_iteration_until_warm_s_has_passed(monkeypatch):
    grid = _load_grid_module()
    clock = [0.0]
    calls = []

    def run(m):
        calls.append(m)
        clock[0] += 0.04
        return m

    monkeypatch.setattr(grid.time, "perf_counter", lambda: clock[0])
    grid.warm(lambda: run(1))
    assert set(calls) == {1}
    assert len(calls) == math.ceil(grid.WARM_S / 0.04 - 1e-9)
    calls.clear()
    monkeypatch.setattr(grid, "WARM_S", 0.0)
    grid.warm(lambda: run(1))
    assert calls == [1]  # at least once


def test_grid_calibrate_asks_enough_iterations(monkeypatch):
    grid = _load_grid_module()
    calls = []
    clock = [0.0]
    cost = {"a": 1.0, "c": 0.5}

    def make(name):
        def run(m):
            calls.append((name, m))
            slow = len(calls) <= 6
            clock[0] += cost[name] * m * (3.0 if slow else 1.0)
            return m

        return run

    monkeypatch.setattr(grid.time, "perf_counter", lambda: clock[0])
    # calibrate: enough iterations for the difference to take min_diff_s, within bounds.
    assert grid.calibrate(make("a"), 3, 0.0) == 3
    clock[0] = 0.0
    calls.clear()
    calls.extend([("x", 0)] * 10)  # past the slow round
    assert grid.calibrate(make("a"), 3, 10.0) == 10
    assert grid.calibrate(make("c"), 3, 1e6) == grid.MAX_ITERS


# On a GPU the programs would be compiled for it, without the CPU kernel whose call is checked;
# on the CPU device the bounded kernel is called, and the two algorithms give the same bits.
@pytest.mark.cpu_bits
def test_grid_kmeans_runs_what_kmeans_runs_by_default():
    import gmmlimit as gl
    from gmmlimit._native import available

    grid = _load_grid_module()
    assert grid.kmeans_algorithm(4, 3) == "lloyd"
    assert grid.kmeans_algorithm(784, 512) == "hamerly"
    rng = np.random.default_rng(0)
    X = rng.standard_normal((3000, 40), dtype=np.float32)
    m0 = X[:128].copy()
    runs = {}
    for algorithm in ("lloyd", "hamerly"):
        fits = grid.CompiledFits(X, m0, 1024, algorithm=algorithm)
        run, objective = fits.runner(0.0)
        runs[algorithm] = (run(4), objective[4])
        text = fits.program(4).as_text()
        if available():  # the bounded kernel is in the program exactly when asked for
            # (the target's name: source metadata may name a bounded function traced earlier)
            called = 'custom_call_target="gmmlimit_assign_bounded' in text
            assert called == (algorithm == "hamerly")
    assert runs["lloyd"] == runs["hamerly"]  # the same iterates
    ref = gl.kmeans(X, m0, max_iter=4, tol=0.0, block_size=1024)
    assert runs["lloyd"][0] == int(ref.n_iter)
    with pytest.raises(ValueError, match="algorithm"):
        grid.CompiledFits(X, m0, 1024, algorithm="elkan")


def test_grid_mode_writes_consistent_json_and_markdown(tmp_path):
    out, md = tmp_path / "grid.json", tmp_path / "grid.md"
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "run.py"),
        "--grid",
        "--grid-d", "4",
        "--grid-k", "3",
        "--grid-elements", "8000",
        "--grid-lanes", "4",
        "--iters", "2",
        "--repeats", "1",
        "--gmm-iters", "1",
        "--sweep-repeats", "1",
        "--grid-min-diff-s", "0",
        "--gemm-size", "128",
        "--bandwidth-mib", "8",
        "--no-pauses",  # what the grid writes, not its timings: no pauses between them
        "--out", str(out),
        "--md", str(md),
    ]  # fmt: skip
    # on the CPU: a GPU's grid measures the device's bandwidth, with other ways than the host's
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT, timeout=300, env=_cpu_env())
    grid_module = _load_grid_module()
    res = json.loads(out.read_text())
    assert res["machine"]["pauses"] == {"settle_s": 0.0, "warm_s": 0.0}
    assert "Run with --no-pauses" in md.read_text()  # such a table says it is not to compare
    g = res["grid"]
    bw, peak = g["bandwidth_gbs"], g["gemm_peak_gflops"]["float32"]
    assert bw > 0 and peak > 0
    assert bw == max(g["bandwidth_ways"][w] for w in ("sum", "gemv", "copy"))
    ways = g["gemm_peak_ways"]["float32"]
    assert set(ways) == {"numpy", "xla", "best"} and min(ways.values()) > 0
    assert peak == ways["best"] == max(ways["numpy"], ways["xla"])
    fma = g["fma_peak"]["gflops"]["float32"]
    assert fma > 0 and g["fma_peak"]["threads"] == os.cpu_count()
    assert f"multiply-add peak float32 {fma:.1f} GFLOP/s" in md.read_text()
    (s,) = g["shapes"]
    n, d, k = s["N"], s["D"], s["K"]
    assert (n, d, k) == (2000, 4, 3)
    assert list(s["by_dtype"]) == ["float32"]
    row = s["by_dtype"]["float32"]
    text = md.read_text()
    products = {"kmeans": ("scores",), "em": ("scores", "sums")}
    assert products == grid_module.PRODUCTS
    assert set(row["products"]) == {"scores", "sums"}
    for product in row["products"].values():
        assert product["per_call_s"] > 0 and product["library"] in ("numpy", "xla")
        assert product["n_calls"][0] == 1 and product["n_calls"][1] > 1
    assert f"float32 {peak:.1f} GFLOP/s (the best of numpy's BLAS {ways['numpy']:.1f}" in text
    assert f"XLA {ways['xla']:.1f})" in text
    for kind, flops in (("kmeans", 2.0), ("em", 4.0)):
        e = row[kind]
        ours, anchor = e["gmmlimit"]["per_iter_s"], e["anchor"]["per_iter_s"]
        assert ours > 0 and anchor > 0
        assert e["gmmlimit"]["n_iter"] == [1, 3]  # noise: no early stop in the timed fits
        assert e["gmmlimit"].get("algorithm") == ("lloyd" if kind == "kmeans" else None)
        assert e["anchor"]["n_iter"] == ([1, 3] if kind == "kmeans" else [1, 2])  # --gmm-iters
        assert e["ratio"] == pytest.approx(anchor / ours, rel=1e-12)
        assert e["target_met"] == (e["ratio"] >= g["targets"][kind])
        lim = e["limit"]
        assert lim["mem_s"] == pytest.approx(n * d * 4 / (bw * 1e9), rel=1e-12)
        assert lim["gemm_s"] == pytest.approx(flops * n * k * d / (peak * 1e9), rel=1e-12)
        assert lim["limit_s"] == max(lim["mem_s"], lim["gemm_s"])
        assert lim["fraction"] == pytest.approx(lim["limit_s"] / ours, rel=1e-12)
        assert lim["data_bytes"] == n * d * 4
        assert f"{e['ratio']:.2f}x" in text
        needs = lim["limit_s"] * g["targets"][kind] / anchor
        assert grid_module.needed_fraction(lim["limit_s"], anchor, g["targets"][kind]) == needs
        # the cores' multiply-add peak: the hard limit, in brackets after what the target needs
        assert lim["fma_s"] == pytest.approx(flops * n * k * d / (fma * 1e9), rel=1e-12)
        assert lim["hard_limit_s"] == max(lim["mem_s"], lim["fma_s"])
        hard = lim["hard_limit_s"] * g["targets"][kind] / anchor
        assert f"% {lim['binds'][0]}" in text
        assert f"| {100 * needs:.0f}% ({100 * hard:.0f}%) |" in text
        # the products of the shape the iteration contains, timed in the same rounds
        products_s = sum(row["products"][name]["per_call_s"] for name in products[kind])
        assert e["products_s"] == pytest.approx(products_s, rel=1e-12)
        budget = anchor / g["targets"][kind]  # an iteration that meets the target
        assert f"| {100 * products_s / ours:.0f}% ({100 * products_s / budget:.0f}%) |" in text
    assert set(s["sweep"]) == {"float32", "float64"}
    for sw in s["sweep"].values():
        assert sw["lanes"] == 4
        assert sw["n_iter"] == [1, 4]  # --sweep-iters 3 by default
        assert sw["per_iter_s"] > 0 and sw["one_fit_per_iter_s"] > 0
        assert sw["per_lane_per_iter_s"] == pytest.approx(sw["per_iter_s"] / 4, rel=1e-12)
        assert sw["cost_ratio"] == pytest.approx(
            sw["per_lane_per_iter_s"] / sw["one_fit_per_iter_s"], rel=1e-12
        )
        assert sw["target_met"] == (sw["cost_ratio"] <= 1.0)
        # the noise floor: the one fit against itself in the same rounds
        noise = sw["noise_ratio"]
        assert noise > 0
        assert sw["within_noise"] == (sw["cost_ratio"] <= max(noise, 1 / noise))
        assert f"{sw['cost_ratio']:.2f} ({noise:.2f})" in text
        assert sw["one_fit_n_iter"] == [1, 3]  # the one EM fit timed in the sweep's rounds
    assert text.startswith("Measured ")
    assert "| 4 | 3 | 2,000 | float32 |" in text
    assert "K-means of limit" in text and "sweep lane/fit f64" in text
    met = [row["kmeans"]["target_met"], row["em"]["target_met"]]
    sweeps_met = sum(sw["target_met"] for sw in s["sweep"].values())
    counts = f"K-means {int(met[0])} of 1; EM {int(met[1])} of 1; "
    assert counts + f"sweep (shape x dtype) {sweeps_met} of 2" in text
    near = sum(not sw["target_met"] and sw["within_noise"] for sw in s["sweep"].values())
    assert (f"({near} more sweeps miss by less than" in text) == (near > 0)
    marks = "yes" if sweeps_met == 2 else "~" if sweeps_met + near == 2 else "**no**"
    assert text.rstrip().splitlines()[-3].endswith(f"| {marks} |")


def test_grid_limit_with_the_multiply_add_peak_and_the_needs_cell():
    # flops bind: 2 * 1000 * 50 * 100 = 1e7 flops, 1e-4 s at the GEMM peak of 100 GFLOP/s and
    # 5e-5 s at the multiply-add peak of 200; the rows (400 kB) take 4e-7 s at 1000 GB/s
    grid = _load_grid_module()
    lim = grid.limit("kmeans", 1000, 100, 50, 4, 2e-4, 100.0, 1000.0, 200.0)
    assert lim["gemm_s"] == pytest.approx(1e-4) and lim["fma_s"] == pytest.approx(5e-5)
    assert lim["limit_s"] == lim["gemm_s"] and lim["hard_limit_s"] == lim["fma_s"]
    assert lim["fraction"] == pytest.approx(0.5) and lim["binds"] == "gemm"
    # an anchor of 3e-4 s at target 1.5: the target asks for 2e-4 s an iteration
    assert grid._needs_cell(lim, 3e-4, 1.5) == "50% (25%)"
    assert grid._needs_cell(lim, None, 1.5) == "—"
    # memory binds where the multiply-adds are few: the hard limit is the rows' read
    em = grid.limit("em", 1000, 100, 1, 4, 1e-3, 100.0, 1.0, 200.0)
    assert em["hard_limit_s"] == em["mem_s"] == pytest.approx(4e-4)
    # without the multiply-add peak (not measured, or a GPU run) no bracket
    plain = grid.limit("kmeans", 1000, 100, 50, 4, 2e-4, 100.0, 1000.0)
    assert "fma_s" not in plain and "hard_limit_s" not in plain
    assert grid._needs_cell(plain, 3e-4, 1.5) == "50%"


@pytest.fixture(scope="module")
def fma_loop(tmp_path_factory):
    """benchmarks/fma_peak.py's loop, built once for the module (skips without a compiler)."""
    fma_peak = _load_module("bench_fma_peak", "fma_peak.py")
    loop, command = fma_peak.build(tmp_path_factory.mktemp("fma_peak"))
    if loop is None:
        pytest.skip(f"no C++ compiler: {command}")
    return loop


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fma_peak_loop_runs_the_multiply_adds_it_counts(fma_loop, dtype):
    # benchmarks/fma_peak.py: the rate is flops() over the time of run(), so the loop must do
    # every multiply-add flops() counts. At scale 1 and step 1 each lane of chain c ends at
    # c + steps (exact in float32 below 2^24), on every thread.
    loop = fma_loop
    chains, lanes = loop.chains, loop.lanes(dtype)
    assert lanes * np.dtype(dtype).itemsize in (16, 32, 64) and chains >= 8
    for threads, steps in ((1, 1), (2, 1000), (3, 4097)):
        seconds, checksum = loop.run(threads, dtype, steps)
        assert seconds > 0
        assert checksum == threads * lanes * sum(c + steps for c in range(chains))
        assert loop.flops(threads, dtype, steps) == 2 * threads * chains * lanes * steps
    # a multiply-add per step, not an addition: scale 2, step 0 doubles each chain every step
    _, checksum = loop.run(1, dtype, 10, scale=2.0, step=0.0)
    assert checksum == lanes * sum(c * 2.0**10 for c in range(chains))
    assert loop.gflops(2, dtype, seconds=0.01, repeats=2) > 0
    with pytest.raises(ValueError, match="float32 or float64"):
        loop.run(1, "int32", 10)


def test_compile_stats_plugin_counts_each_tests_compiles(tmp_path, monkeypatch):
    # benchmarks/tuning/compile_stats.py (cited in README): a program compiled during a test is
    # counted toward that test, once; a second call, from the jit cache, is not a compile.
    import jax
    import jax.numpy as jnp
    from jax import monitoring

    cs = _load_module("compile_stats", "tuning/compile_stats.py")
    monkeypatch.setenv(cs.OUT_ENV, str(tmp_path))
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw7")
    monitoring.register_event_duration_secs_listener(cs._on_duration)
    try:
        # a shape no other test uses: XLA compiles it here (the suite's cache starts empty)
        x = np.arange(7 * 13, dtype=np.float32).reshape(7, 13)
        cs.pytest_runtest_logstart("tests/test_a.py::test_one", None)
        first = jax.jit(lambda a: jnp.cumsum(a * 3.0, axis=1) - 1.0)
        jax.block_until_ready(first(x))
        jax.block_until_ready(first(x))  # the jit cache's: no compile
        cs.pytest_runtest_logstart("tests/test_b.py::test_two", None)
        jax.block_until_ready(jax.jit(lambda a: jnp.cumsum(a * 5.0, axis=0) + 2.0)(x))
    finally:
        monitoring.unregister_event_duration_listener(cs._on_duration)
    cs.pytest_unconfigure(None)
    table = json.loads((tmp_path / "gw7.json").read_text())
    assert table["tests/test_a.py::test_one"][0] == 1 and table["tests/test_b.py::test_two"][0] == 1
    assert all(stats[1] > 0 and stats[2] > 0 for stats in table.values())
    text = cs.summary(tmp_path, top=5)
    assert text.startswith("2 programs compiled")
    lines = text.splitlines()
    assert sum(line.endswith("  tests/test_b.py") for line in lines) == 1  # the per-file table
    assert sum(line.endswith("  tests/test_a.py::test_one") for line in lines) == 1


def test_cpu_stats_plugin_counts_each_tests_own_and_childrens_cpu(tmp_path, monkeypatch):
    # benchmarks/tuning/cpu_stats.py (cited in README): the CPU of the test's process and of
    # the child it waited for, one line per test, summed per file and ranked
    cs = _load_module("cpu_stats", "tuning/cpu_stats.py")
    out = tmp_path / "cpu.tsv"
    monkeypatch.setenv(cs.OUT_ENV, str(out))
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass"

    class Item:
        nodeid = "tests/test_a.py::test_one"

    hook = cs.pytest_runtest_protocol(Item(), None)
    next(hook)
    start = time.process_time()
    while time.process_time() - start < 0.2:  # this process
        pass
    subprocess.run([sys.executable, "-c", burn], check=True, timeout=60)  # a child
    with pytest.raises(StopIteration):
        next(hook)
    test, own, children, wall = out.read_text().split("\t")
    assert test == Item.nodeid
    assert float(own) >= 0.2 and float(children) >= 0.3 and float(wall) >= 0.5
    with out.open("a") as more:
        more.write(
            "tests/test_a.py::test_two\t1.0\t0.0\t1.0\ntests/test_b.py::test\t3.0\t1.0\t5.0\n"
        )
    lines = cs.summary(out, top=2).splitlines()
    total = float(own) + float(children) + 1.0 + 4.0
    assert lines[0] == f"{total:.1f} CPU s in 3 tests"
    assert lines[3].endswith("  tests/test_b.py") and lines[4].endswith("  tests/test_a.py")
    assert lines[-2].endswith("  tests/test_b.py::test") and len(lines) == 9


@pytest.mark.parametrize(
    ("model", "covariance_type"),
    # the tool hands every covariance type on alike (to both estimators: the test below), so
    # one type (full) times the gaussian model
    [("kmeans", None), ("isotropic", None), ("gaussian", "full")],
)
def test_estimator_benchmark_times_each_fit_from_the_same_start(
    tmp_path, capsys, model, covariance_type
):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        est = importlib.import_module("estimators")
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    out = tmp_path / "est.json"
    argv = ["--model", model, "--sizes", "3000,3,4", "--iters", "3", "--repeats", "1"]
    argv += ["--no-pauses"]
    if covariance_type is not None:
        argv += ["--covariance-type", covariance_type]
    rows = est.main([*argv, "--json", str(out)])
    (row,) = json.loads(out.read_text())
    assert row == json.loads(json.dumps(rows[0]))
    assert row["model"] == model and row["shape"] == [3000, 3, 4] and row["dtype"] == "float32"
    assert row["covariance_type"] == covariance_type
    assert row["pauses"] == {"settle_s": 0.0, "warm_s": 0.0}
    grid = sys.modules["grid"]  # estimators' own: the pauses come back after its run
    assert grid.SETTLE_S > 0 and grid.WARM_S > 0
    names = {"estimator", "sklearn"} | ({"library"} if model != "gaussian" else set())
    assert set(row["seconds"]) == names == set(row["n_iter"])
    assert all(0 < s < 60 for s in row["seconds"].values())
    # The same start, tol = 0 and 3 iterations: each runs all 3 (blobs do not converge exactly).
    assert set(row["n_iter"].values()) == {3}
    s = row["seconds"]
    assert row["sklearn_over_estimator"] == s["sklearn"] / s["estimator"]
    if model == "gaussian":
        assert row["estimator_over_library"] is None
    else:
        assert row["estimator_over_library"] == s["estimator"] / s["library"]
    assert f"{model} (3000, 3, 4) float32" in capsys.readouterr().out


def test_covariance_fits_tool_times_full_iterations(capsys):
    # benchmarks/tuning/covariance_fits.py (cited in docs/benchmarks.md): each kind runs all the
    # requested iterations from its start (tol = 0) and prints one line per shape. Each shape is
    # a compiled program per kind (its cost here): the same shape twice still runs the loop over
    # sizes within the loop over kinds, from one program per kind.
    cf = _load_module("covariance_fits", "tuning/covariance_fits.py")
    argv = ["--sizes", "600,3,4", "600,3,4", "--iters", "3", "--repeats", "1"]
    rows = cf.main(argv)
    assert [(r["kind"], r["shape"]) for r in rows] == [
        (kind, [600, 3, 4]) for kind in ("full", "full", "tied", "tied")
    ]
    assert all(r["n_iter"] == 3 and 0 < r["seconds"] < 60 for r in rows)
    out = capsys.readouterr().out
    assert out.count("full (600, 3, 4): ") == 2 and out.count("tied (600, 3, 4): ") == 2


@pytest.mark.filterwarnings("ignore:.*converge:sklearn.exceptions.ConvergenceWarning")
def test_estimator_benchmark_passes_the_covariance_type_to_both_estimators(monkeypatch):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        est = importlib.import_module("estimators")
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    seen = []

    def recording(cls):
        class Recorded(cls):
            def fit(self, X, y=None):
                seen.append((cls.__module__.split(".")[0], self.covariance_type))
                return super().fit(X, y)

        return Recorded

    monkeypatch.setattr(est, "GaussianMixture", recording(est.GaussianMixture))
    monkeypatch.setattr(est, "SkGaussianMixture", recording(est.SkGaussianMixture))
    X = est.blobs(300, 3, 2, "float32")
    fits = est.fits_of("gaussian", X, X[:2].copy(), 2, "diag")
    assert {name: fit() for name, fit in fits.items()} == {"estimator": 2, "sklearn": 2}
    assert sorted(seen) == [("gmmlimit", "diag"), ("sklearn", "diag")]


def test_numpy_fits_tool_times_both_fits(capsys):
    # benchmarks/tuning/numpy_fits.py (cited in docs/benchmarks.md): best <= median for both
    # fits, one line per shape.
    nf = _load_module("numpy_fits", "tuning/numpy_fits.py")
    (row,) = nf.main(["--sizes", "2000,3,4", "--iters", "2", "--repeats", "3"])
    assert row["shape"] == [2000, 3, 4]
    assert all(0 < row[name][0] <= row[name][1] < 60 for name in ("estimator", "library"))
    assert "(2000, 3, 4): estimator best " in capsys.readouterr().out
