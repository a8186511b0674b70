"""Rows sharded over 4 host devices give the one-device fit (run in a subprocess with 4 devices).

The subprocess sets XLA_FLAGS=--xla_force_host_platform_device_count=4 before importing jax, so
the main test process keeps its single device.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import gmmlimit as gl

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent(
    """
    import json
    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np
    import gmmlimit as gl

    out = {"devices": len(jax.devices())}
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=3.0, size=(5, 3))
    X = centres[rng.integers(5, size=1003)] + rng.normal(size=(1003, 3))
    w = rng.uniform(0.0, 2.0, size=1003)
    # A repeated initial mean: one cluster starts empty and must be relocated.
    m0 = np.stack([X[0], X[0], X[1], X[2], X[3]])
    mesh = gl.scale.default_mesh()

    def compare(name, sharded, single):
        out[name] = {
            "n_iter": [int(sharded.n_iter), int(single.n_iter)],
            "converged": [bool(sharded.converged), bool(single.converged)],
            "labels_equal": bool(np.array_equal(sharded.labels, single.labels)),
            "means_err": float(np.max(np.abs(np.asarray(sharded.means) - single.means))),
            "objective": [float(sharded.objective), float(single.objective)],
            "dtype": [str(sharded.means.dtype), str(single.means.dtype)],
            "label_devices": len(sharded.labels.sharding.device_set),
        }

    compare("kmeans", gl.scale.kmeans_sharded(X, m0, mesh=mesh, block_size=64),
            gl.kmeans(X, m0, block_size=64))
    compare("kmeans_weighted", gl.scale.kmeans_sharded(X, m0, weights=w, block_size=64),
            gl.kmeans(X, m0, weights=w, block_size=64))
    compare("em", gl.scale.em_sharded(X, m0, 0.5, max_iter=40, block_size=64),
            gl.em(X, m0, 0.5, max_iter=40, block_size=64))
    em40 = gl.scale.em_sharded(X, m0, 0.5, max_iter=40, tol=0.0, block_size=64)
    # max_iter is traced: 7 and 33 to 40 share the 64-long history's program, and 7 iterations
    # are the 40-iteration fit's first 7, bit for bit
    from gmmlimit._sharding import _fit_sharded_compiled
    programs = _fit_sharded_compiled._cache_size()
    em7 = gl.scale.em_sharded(X, m0, 0.5, max_iter=7, tol=0.0, block_size=64)
    gl.scale.em_sharded(X, m0, 0.5, max_iter=33, tol=0.0, block_size=64)
    out["max_iter"] = {
        "new_programs": _fit_sharded_compiled._cache_size() - programs,
        "history": [len(em7.history), len(em40.history)],
        "n_iter": int(em7.n_iter),
        "first_iterations_equal": bool(np.array_equal(em7.history, em40.history[:7])),
    }
    # jax.make_mesh's mesh has Explicit axes (the fit runs it with Auto axes).
    explicit = jax.make_mesh((4,), ("rows",))
    compare("kmeans_make_mesh", gl.scale.kmeans_sharded(X, m0, mesh=explicit, block_size=64),
            gl.kmeans(X, m0, block_size=64))
    X32 = X.astype(np.float32)
    compare("kmeans_f32", gl.scale.kmeans_sharded(X32, m0.astype(np.float32), block_size=64),
            gl.kmeans(X32, m0.astype(np.float32), block_size=64))
    # float32 data near 1e20, past the scale window: run as X / 2^e on every device, as kmeans
    Xfar, mfar = np.ldexp(X32, 64), np.ldexp(m0.astype(np.float32), 64)
    compare("kmeans_far_f32", gl.scale.kmeans_sharded(Xfar, mfar, block_size=64),
            gl.kmeans(Xfar, mfar, block_size=64))
    # The default block of a sharded fit on a GPU: that of each device's rows (patched platform;
    # the fit still runs here). _shard_blocks would clip N to them; the block asked for is seen.
    import gmmlimit._sharding as sharding
    asked, shard_blocks = [], sharding._shard_blocks
    sharding._platform = lambda mesh: "gpu"
    def spy(X, w, n_dev, block_size, rows):
        asked.append(block_size)
        return shard_blocks(X, w, n_dev, block_size, rows)
    sharding._shard_blocks = spy
    compare("kmeans_default_block", gl.scale.kmeans_sharded(X, m0), gl.kmeans(X, m0))
    out["default_block"] = asked
    try:
        gl.scale.kmeans_sharded(X, m0, mesh="all")
        out["bad_mesh"] = None
    except ValueError as err:
        out["bad_mesh"] = str(err)
    print("RESULT " + json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def four_devices():
    env = dict(os.environ)
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    env["JAX_PLATFORMS"] = "cpu"  # four host devices, also on a machine with a GPU
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT ") :])


def test_subprocess_has_four_devices_and_main_process_one(four_devices):
    assert four_devices["devices"] == 4
    import jax

    assert len(jax.devices()) == 1


@pytest.mark.parametrize(
    "name", ["kmeans", "kmeans_weighted", "em", "kmeans_f32", "kmeans_make_mesh", "kmeans_far_f32"]
)
def test_sharded_fit_equals_one_device_fit(four_devices, name):
    r = four_devices[name]
    assert r["label_devices"] == 4  # the rows really were spread over the 4 devices
    assert r["n_iter"][0] == r["n_iter"][1] > 1
    assert r["converged"][0] == r["converged"][1]
    assert r["labels_equal"]
    assert r["dtype"][0] == r["dtype"][1]
    tol = 1e-4 if name.endswith("f32") else 1e-10
    assert r["means_err"] <= tol * (2.0**64 if "far" in name else 1.0)
    np.testing.assert_allclose(r["objective"][0], r["objective"][1], rtol=tol)


def test_a_sharded_fits_default_block_is_that_of_its_rows_per_device(four_devices):
    from gmmlimit.scale import default_block_size

    assert four_devices["default_block"] == [default_block_size(-(-1003 // 4), 5, 3, backend="gpu")]
    r = four_devices["kmeans_default_block"]
    assert r["labels_equal"] and r["n_iter"][0] == r["n_iter"][1] > 1


def test_bad_mesh_is_a_value_error(four_devices):
    assert "jax.sharding.Mesh" in four_devices["bad_mesh"]


def test_bad_axis_is_a_value_error_before_compiling():
    X = np.random.default_rng(1).normal(size=(20, 2))
    with pytest.raises(ValueError, match="axis_name"):
        gl.scale.fit_sharded(
            gl.variants.isotropic, X, gl.variants.IsotropicParams(X[:3], 0.0), axis_name="cols"
        )
    with pytest.raises(ValueError, match="NaN"):
        gl.scale.kmeans_sharded(np.full((5, 2), np.nan), X[:2])


def test_max_iter_is_traced_in_the_sharded_fit(four_devices):
    # 7 iterations (a 32-long history) and 33 (64) after 40 (64): one new program, for 7's length
    assert four_devices["max_iter"] == {
        "new_programs": 1,
        "history": [7, 40],
        "n_iter": 7,
        "first_iterations_equal": True,
    }
