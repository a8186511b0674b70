"""The benchmark script runs end to end (tiny sizes, gmmlimit only), sharded rows included."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_script_writes_json_and_markdown(tmp_path):
    out, md = tmp_path / "bench.json", tmp_path / "bench.md"
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "run.py"),
        "--sizes", "3000,4,3",
        "--dtypes", "float32",
        "--only-gmmlimit",
        "--iters", "2",
        "--repeats", "1",
        "--memory-size", "",
        "--host-devices", "2",
        "--out", str(out),
        "--md", str(md),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT, timeout=300)
    res = json.loads(out.read_text())
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
    text = md.read_text()
    assert "gmmlimit-sharded-2dev" in text
    assert "sharded speed-up" in text
