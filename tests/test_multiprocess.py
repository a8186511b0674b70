"""Sharded fits over several real processes (``python -m gmmlimit.launch``) equal one-process fits.

Each test run starts 2 or 4 local processes joined over 127.0.0.1 with gloo CPU collectives.
Every process holds only its own rows, as a global array made with
``jax.make_array_from_process_local_data`` or (with 2 processes) as its own out-of-core source;
the fits must give the labels, iteration counts and means of the one-process fit computed here,
and bad rows on one process must raise the same ValueError on every process. This file is also
the worker script (``__main__`` below), so the data are made by the same code on both sides.
The launcher runs in its own session and is killed with all its processes if it outlives the
subprocess timeout.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
N_ROWS = 1200  # divisible by 2 and 4 processes
BLOCK = 64
SIGMA2 = 0.7
LAUNCH_TIMEOUT_S = 240


def data() -> dict[str, np.ndarray]:
    """The data and starting points every process and the reference fits use (float64)."""
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=3.0, size=(6, 4))
    X = centres[rng.integers(6, size=N_ROWS)] + rng.normal(size=(N_ROWS, 4))
    rates = rng.gamma(2.0, 3.0, size=(3, 5))
    C = rng.poisson(rates[rng.integers(3, size=N_ROWS)]).astype(np.float64)
    w = rng.uniform(0.0, 2.0, size=N_ROWS)
    w_first_zero = w.copy()
    w_first_zero[: N_ROWS // 4] = 0.0  # process 0 of 2 or 4 holds only zero weights
    return {
        "X": X,
        # A repeated initial mean: one cluster starts empty and K-means must relocate it.
        "m0_repeat": np.stack([X[0], X[0], X[1], X[2], X[3], X[4]]),
        # EM from distinct means (from equal ones the split would hinge on rounding).
        "m0": X[[0, 100, 200, 300, 400, 500]],
        "w": w,
        "w_first_zero": w_first_zero,
        "C": C,
        "rates0": C[[0, 1, 2]] + 0.5,
        # positive rows: a Gamma mixture's log sees any zero a padding row would hold
        "G": rng.gamma(3.0, 1.0, size=(N_ROWS, 3)) * rng.choice([1.0, 8.0], size=(N_ROWS, 1)),
    }


POISSON_W = np.array([0.3, 0.3, 0.4])
FAR = 64


def far_problem() -> dict[str, np.ndarray]:
    """The data in float32 times 2^64 (near 1e20): computed as given, every row in one cluster."""
    d = data()
    X = np.ldexp(d["X"].astype(np.float32), FAR)
    X[N_ROWS - 1, 0] *= 4  # the largest magnitude is on the last process only
    return {"X": X, "m0": X[[0, 100, 200, 300, 400, 500]]}


DIAG_FAR = 56
FAR_F64 = 530  # float64 rows near 1e160
OFFSET = np.array([1000.0, -3000.0, 500.0, 2000.0])


def offset_problem() -> dict[str, np.ndarray]:
    """float32 rows far from the origin against their spread (each feature within a factor of
    two): computed less each feature's extreme over every process's rows (gmmlimit._offset);
    as given, the expanded squares (~1e7, spacing ~1) swamp the squared spread (~0.1)."""
    X = (data()["X"] / 16 + OFFSET).astype(np.float32)
    return {"X": X, "m0": X[[0, 100, 200, 300, 400, 500]]}


def outlier_problem() -> dict[str, np.ndarray]:
    """float32 rows at 1e6 + N(0, 1), the last process's last row at (0, 0) (a "null island"
    row), K = 8 starting means drawn from the rows (that row among them): no feature lies within
    a factor of two of its extremes, so the rows are translated by the extreme whose window
    holds a majority of the rows, counted over every process's rows (gmmlimit._offset)."""
    rng = np.random.default_rng(6)
    X = (1e6 + rng.normal(size=(N_ROWS, 2))).astype(np.float32)
    X[N_ROWS - 1] = 0.0
    return {"X": X, "m0": X[[N_ROWS - 1, *rng.choice(N_ROWS - 1, 7, replace=False)]]}


def weights_first_process(d: dict) -> np.ndarray:
    """The weights of ``ooc_far_f64_w``: process 0's (rows 0 to 499) given, process 1's unit."""
    return np.concatenate([d["w"][:500], np.ones(N_ROWS - 500)])


def diag_far_problem() -> dict:
    """The data in float32 times 2^56 and the hard diag fit's start: fit rescaled (its scaling).

    The largest magnitude is on the last process only, so the processes must agree on it.
    """
    from gmmlimit.variants import DiagParams

    X = np.ldexp(data()["X"].astype(np.float32), DIAG_FAR)
    X[N_ROWS - 1, 0] *= 4
    params = DiagParams(
        means=X[[0, 100, 200, 300, 400, 500]],
        variances=np.full((6, 4), np.ldexp(9.0, 2 * DIAG_FAR), np.float32),
        weights=np.full((6,), 1 / 6, np.float32),
        beta=np.float32(np.inf),
        reg_covar=np.float32(np.ldexp(1.0, 2 * DIAG_FAR - 4)),
    )
    return {"X": X, "params": params}


def gamma_start(d: dict) -> object:
    """The Gamma fit's start (float64), the same in every process."""
    from gmmlimit.variants import GammaParams

    return GammaParams(d["G"][[0, 1, 2]], 3.0, np.full(3, 1 / 3), 1.0)


# ----------------------------------------------------------------------------------------------
# The worker: run under the launcher, one copy per process.


def _worker(out_dir: str, cases: str) -> None:
    from gmmlimit.launch import initialize

    pid, count = initialize()
    import jax

    jax.config.update("jax_enable_x64", True)
    from jax.experimental import multihost_utils
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    import gmmlimit as gl

    mesh = gl.scale.default_mesh()
    rows = NamedSharding(mesh, P("rows"))
    d = data()
    per = N_ROWS // count
    mine = slice(pid * per, (pid + 1) * per)

    def global_rows(a: np.ndarray) -> jax.Array:
        return jax.make_array_from_process_local_data(rows, a[mine])

    X, C = global_rows(d["X"]), global_rows(d["C"])
    out: dict = {
        "process_count": jax.process_count(),
        "devices": len(jax.devices()),
        "local_rows": [int(s.data.shape[0]) for s in X.addressable_shards],
        "fully_addressable": bool(X.is_fully_addressable),
    }

    def record(name: str, res: gl.FitResult) -> None:
        labels = multihost_utils.process_allgather(res.labels, tiled=True)
        out[name] = {
            "labels": np.asarray(labels).tolist(),
            "n_iter": int(res.n_iter),
            "converged": bool(res.converged),
            "means": np.asarray(res.means).tolist(),
            "objective": float(res.objective),
            "label_devices": len(res.labels.sharding.device_set),
        }

    def error_of(fn) -> str | None:
        try:
            fn()
        except ValueError as err:
            return str(err)
        return None

    record("kmeans", gl.scale.kmeans_sharded(X, d["m0_repeat"], mesh=mesh, block_size=BLOCK))
    record("em", gl.scale.em_sharded(X, d["m0"], SIGMA2, mesh=mesh, block_size=BLOCK))
    bad = d["X"].copy()
    bad[(count - 1) * per + 3, 1] = np.nan  # only the last process holds the NaN
    out["bad_nan"] = error_of(lambda: gl.scale.kmeans_sharded(global_rows(bad), d["m0"], mesh=mesh))
    if cases == "all":
        # float32 rows near 1e20 (squared distances overflow): rescaled by the exponent of the
        # largest magnitude over every process's rows, as kmeans does in one process
        far = far_problem()
        record(
            "kmeans_far_f32",
            gl.scale.kmeans_sharded(global_rows(far["X"]), far["m0"], mesh=mesh, block_size=BLOCK),
        )
        record(
            "kmeans_w",
            gl.scale.kmeans_sharded(
                X, d["m0_repeat"], weights=global_rows(d["w"]), mesh=mesh, block_size=BLOCK
            ),
        )
        record(  # host weights with a global X: each process takes its rows' weights
            "kmeans_w_host",
            gl.scale.kmeans_sharded(X, d["m0_repeat"], weights=d["w"], mesh=mesh, block_size=BLOCK),
        )
        out["bad_weights_shape"] = error_of(
            lambda: gl.scale.kmeans_sharded(X, d["m0"], weights=np.ones(5), mesh=mesh)
        )
        record(
            "kmeans_w_first_zero",
            gl.scale.kmeans_sharded(
                X, d["m0"], weights=global_rows(d["w_first_zero"]), mesh=mesh, block_size=BLOCK
            ),
        )
        params = gl.variants.PoissonParams(d["rates0"], POISSON_W, 1.0, 1e-3)
        record(
            "poisson",
            gl.scale.fit_sharded(gl.variants.poisson, C, params, mesh=mesh, block_size=BLOCK),
        )
        negative = d["C"].copy()
        negative[per + 5, 0] = -1.0  # only process 1 holds it
        out["bad_poisson"] = error_of(
            lambda: gl.scale.fit_sharded(
                gl.variants.poisson, global_rows(negative), params, mesh=mesh
            )
        )
        neg_w = d["w"].copy()
        neg_w[per] = -1.0
        out["bad_weights"] = error_of(
            lambda: gl.scale.kmeans_sharded(X, d["m0"], weights=global_rows(neg_w), mesh=mesh)
        )
        zero_w = np.zeros(N_ROWS)
        out["zero_weights"] = error_of(
            lambda: gl.scale.kmeans_sharded(X, d["m0"], weights=global_rows(zero_w), mesh=mesh)
        )
        out["different_params"] = error_of(
            lambda: gl.scale.kmeans_sharded(X, d["m0"] + pid, mesh=mesh)
        )
        # a global array of float32 rows on process 1 and float64 on process 0 (before: a gloo
        # crash in fit_sharded, "different initial parameters" in kmeans_sharded)
        mixed = jax.make_array_from_process_local_data(
            rows, d["X"][mine].astype(np.float32 if pid else np.float64)
        )
        out["global_dtype_mismatch"] = error_of(
            lambda: gl.scale.fit_sharded(
                gl.variants.isotropic, mixed, gl.variants.IsotropicParams(d["m0"], 0.0), mesh=mesh
            )
        )
        # 500 rows on process 0, 700 on process 1: JAX infers global shapes (1000, 4) and
        # (1400, 4) (before: no error, labels of other lengths, and the documented gather crashed)
        uneven = jax.make_array_from_process_local_data(
            rows, d["X"][[slice(0, 500), slice(500, None)][pid]]
        )
        out["global_uneven"] = error_of(lambda: gl.scale.kmeans_sharded(uneven, d["m0"], mesh=mesh))
        # Out of core, each process reading its own rows (uneven: 500 and 700 of 1200) as two
        # chunks of its own, re-cut into chunks of 2 blocks.
        cut = [0, 500, N_ROWS][pid : pid + 2]
        own = d["X"][cut[0] : cut[1]]
        source = [own[:123], own[123:]]
        iso = gl.variants.isotropic
        for name, sigma2, m0 in (("ooc_kmeans", 0.0, "m0_repeat"), ("ooc_em", SIGMA2, "m0")):
            res = gl.scale.fit_out_of_core_processes(
                iso,
                source,
                gl.variants.IsotropicParams(d[m0], sigma2),
                block_size=BLOCK,
                chunk_blocks=2,
            )
            out[name] = {
                "own_labels": np.asarray(res.labels).tolist(),
                "n_iter": int(res.n_iter),
                "converged": bool(res.converged),
                "means": np.asarray(res.means).tolist(),
                "objective": float(res.objective),
            }
        # 600 rows per process in blocks of 64: the last block is padded with copies of a row
        record(
            "gamma",
            gl.scale.fit_sharded(gl.variants.gamma, global_rows(d["G"]), gamma_start(d), mesh=mesh,
                                 block_size=BLOCK),
        )  # fmt: skip
        out["bad_global_weights"] = error_of(
            lambda: gl.scale.kmeans_sharded(
                X, d["m0"], weights=global_rows(np.full(N_ROWS, 1e80)), mesh=mesh
            )
        )
        diag_far = diag_far_problem()
        record(
            "diag_far_f32",
            gl.scale.fit_sharded(
                gl.variants.diag, global_rows(diag_far["X"]), diag_far["params"], mesh=mesh,
                block_size=BLOCK,
            ),
        )  # fmt: skip
        # rows far from the origin: one offset from every process's extremes, as in one process
        offset = offset_problem()
        record(
            "kmeans_offset_f32",
            gl.scale.kmeans_sharded(
                global_rows(offset["X"]), offset["m0"], mesh=mesh, block_size=BLOCK
            ),
        )
        own_offset = offset["X"][cut[0] : cut[1]]
        res = gl.scale.fit_out_of_core_processes(
            iso, [own_offset[:123], own_offset[123:]],
            gl.variants.IsotropicParams(offset["m0"], 0.0), block_size=BLOCK, chunk_blocks=2,
        )  # fmt: skip
        out["ooc_offset_f32"] = {
            "own_labels": np.asarray(res.labels).tolist(),
            "n_iter": int(res.n_iter),
            "means": np.asarray(res.means).tolist(),
        }
        # one far row: the window counts are summed over the processes, as one process counts
        outlier = outlier_problem()
        record(
            "kmeans_outlier_f32",
            gl.scale.kmeans_sharded(
                global_rows(outlier["X"]), outlier["m0"], mesh=mesh, block_size=BLOCK, tol=0.0
            ),
        )
        own_outlier = outlier["X"][cut[0] : cut[1]]
        res = gl.scale.fit_out_of_core_processes(
            iso, [own_outlier[:123], own_outlier[123:]],
            gl.variants.IsotropicParams(outlier["m0"], 0.0), block_size=BLOCK, chunk_blocks=2,
            tol=0.0,
        )  # fmt: skip
        out["ooc_outlier_f32"] = {
            "own_labels": np.asarray(res.labels).tolist(),
            "n_iter": int(res.n_iter),
            "means": np.asarray(res.means).tolist(),
        }
        own_far = diag_far["X"][cut[0] : cut[1]]
        res = gl.scale.fit_out_of_core_processes(
            gl.variants.diag, [own_far[:123], own_far[123:]], diag_far["params"],
            block_size=BLOCK, chunk_blocks=2,
        )  # fmt: skip
        out["ooc_diag_far_f32"] = {
            "own_labels": np.asarray(res.labels).tolist(),
            "n_iter": int(res.n_iter),
            "converged": bool(res.converged),
            "means": np.asarray(res.means).tolist(),
            "objective": float(res.objective),
        }
        # float64 data with JAX's x64 flag off: computed in float64, as in one process
        with jax.enable_x64(False):
            res = gl.scale.fit_out_of_core_processes(
                iso, source, gl.variants.IsotropicParams(d["m0"], SIGMA2), block_size=BLOCK,
                chunk_blocks=2,
            )  # fmt: skip
            out["ooc_em_x64_off"] = {
                "own_labels": np.asarray(res.labels).tolist(),
                "n_iter": int(res.n_iter),
                "dtype": str(res.means.dtype),
            }
        own_w = np.full(len(own), 1e39)  # past float32's scale window (2^32)
        out["ooc_bad_weights"] = error_of(
            lambda: gl.scale.fit_out_of_core_processes(
                iso, [own.astype(np.float32)], gl.variants.IsotropicParams(d["m0"], 0.0),
                weights=own_w, block_size=BLOCK,
            )
        )  # fmt: skip
        # float64 rows near 1e160 (their squares pass float64), weights on process 0 only:
        # process 1's rows have unit weights (before: a gloo crash, and the spread overflowed,
        # so the fit stopped after one iteration)
        res = gl.scale.fit_out_of_core_processes(
            iso, [np.ldexp(own, FAR_F64)], gl.variants.IsotropicParams(
                np.ldexp(d["m0_repeat"], FAR_F64), 0.0
            ), weights=d["w"][cut[0] : cut[1]] if pid == 0 else None, block_size=BLOCK,
            chunk_blocks=2,  # ooc_kmeans's compiled chunk pass
        )  # fmt: skip
        out["ooc_far_f64_w"] = {
            "own_labels": np.asarray(res.labels).tolist(),
            "n_iter": int(res.n_iter),
            "means": np.asarray(np.ldexp(res.means, -FAR_F64)).tolist(),
        }
        # rows of another dtype on one process: named as such (before: "different parameters")
        out["ooc_dtype_mismatch"] = error_of(
            lambda: gl.scale.fit_out_of_core_processes(
                iso, [own.astype(np.float32) if pid == 1 else own],
                gl.variants.IsotropicParams(d["m0"], 0.0), block_size=BLOCK,
            )
        )  # fmt: skip
        # a source that changes after its checks, on process 1 only, from its nth pass on (the
        # first look at its dtype, the scan, the spread's pass, then one pass an iteration);
        # before, process 1 raised alone and process 0 waited for it in a collective
        nan_row = own.copy()
        nan_row[200, 1] = np.nan

        def changing(first_bad: int, bad: list[np.ndarray]):
            calls = []

            def passes() -> list[np.ndarray]:
                calls.append(None)
                return bad if pid == 1 and len(calls) >= first_bad else source

            return passes

        for name, first_bad, bad in (
            ("ooc_later_width", 3, [own[:, :3]]),  # the spread's pass
            ("ooc_later_nan", 5, [nan_row]),  # the second iteration
        ):
            out[name] = error_of(
                partial(
                    gl.scale.fit_out_of_core_processes, iso, changing(first_bad, bad),
                    gl.variants.IsotropicParams(d["m0"], 0.0), block_size=BLOCK, chunk_blocks=2,
                )
            )  # fmt: skip
        bad_source = [own, np.array([[0.0, np.inf, 0.0, 0.0]])] if pid == 1 else source
        out["ooc_bad"] = error_of(
            lambda: gl.scale.fit_out_of_core_processes(
                iso, bad_source, gl.variants.IsotropicParams(d["m0"], 0.0), block_size=BLOCK
            )
        )
    Path(out_dir, f"process{pid}.json").write_text(json.dumps(out))


# ----------------------------------------------------------------------------------------------
# The tests.


def _start(n: int, out_dir: Path, cases: str) -> subprocess.Popen:
    """Start this file as the worker in n processes, under the launcher, in a new session."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["JAX_PLATFORMS"] = "cpu"  # CPU processes over gloo, also on a machine with one GPU
    cmd = [sys.executable, "-m", "gmmlimit.launch", "-n", str(n), "--timeout"]
    cmd += [str(LAUNCH_TIMEOUT_S), __file__, "worker", str(out_dir), cases]
    return subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )


def _finish(proc: subprocess.Popen, deadline: float) -> tuple[int, str]:
    """Wait for a launcher until ``deadline``; kill its whole session if it is still running."""
    try:
        output, _ = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        return -1, "timed out: " + output.decode(errors="replace")[-4000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, output.decode(errors="replace")[-4000:]


def _references() -> dict:
    import jax

    import gmmlimit as gl

    d = data()
    params = gl.variants.PoissonParams(d["rates0"], POISSON_W, 1.0, 1e-3)
    # On the CPU device, as the launched processes (JAX_PLATFORMS=cpu), also on a machine with a
    # GPU: the iteration counts and labels compared are those of XLA:CPU's sums (on an H200 one
    # reference fit took 12 iterations where the CPU processes took 11).
    with jax.default_device(jax.devices("cpu")[0]):
        return {
            "kmeans": gl.kmeans(d["X"], d["m0_repeat"], block_size=BLOCK),
            "em": gl.em(d["X"], d["m0"], SIGMA2, block_size=BLOCK),
            "kmeans_w": gl.kmeans(d["X"], d["m0_repeat"], weights=d["w"], block_size=BLOCK),
            "kmeans_w_first_zero": gl.kmeans(
                d["X"], d["m0"], weights=d["w_first_zero"], block_size=BLOCK
            ),
            "poisson": gl.fit(gl.variants.poisson, d["C"], params, block_size=BLOCK),
            "kmeans_far_f32": gl.kmeans(far_problem()["X"], far_problem()["m0"], block_size=BLOCK),
            "gamma": gl.fit(gl.variants.gamma, d["G"], gamma_start(d), block_size=BLOCK),
            "kmeans_w_first": gl.kmeans(
                d["X"], d["m0_repeat"], weights=weights_first_process(d), block_size=BLOCK
            ),
            "diag_far_f32": gl.fit(
                gl.variants.diag, diag_far_problem()["X"], diag_far_problem()["params"],
                block_size=BLOCK,
            ),
            "kmeans_offset_f32": gl.kmeans(
                offset_problem()["X"], offset_problem()["m0"], block_size=BLOCK
            ),
            "kmeans_outlier_f32": gl.kmeans(
                outlier_problem()["X"], outlier_problem()["m0"], block_size=BLOCK, tol=0.0
            ),
        }  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Both clusters (2 and 4 processes) run at once, while the reference fits run here."""
    dirs = {n: tmp_path_factory.mktemp(f"mp{n}") for n in (2, 4)}
    procs = {n: _start(n, dirs[n], "all" if n == 2 else "core") for n in (2, 4)}
    try:
        refs = _references()
    finally:
        deadline = time.monotonic() + LAUNCH_TIMEOUT_S + 30
        status = {n: _finish(proc, deadline) for n, proc in procs.items()}
    outs = {}
    for n, (code, output) in status.items():
        assert code == 0, f"{n} processes: {output}"
        outs[n] = [json.loads((dirs[n] / f"process{i}.json").read_text()) for i in range(n)]
    return outs, refs


@pytest.fixture(params=[2, 4], ids=["2proc", "4proc"])
def run(request, runs):
    return request.param, runs[0][request.param]


def test_every_process_holds_only_its_own_rows(run):
    n, outs = run
    for out in outs:
        assert out["process_count"] == n
        assert out["devices"] == n
        assert not out["fully_addressable"]
        assert out["local_rows"] == [N_ROWS // n]


CORE = ["kmeans", "em"]  # with 4 processes (one compiled fit, for the time budget)
ALL = [*CORE, "kmeans_w", "kmeans_w_host", "kmeans_w_first_zero", "poisson", "kmeans_far_f32"]
ALL += ["diag_far_f32", "gamma", "kmeans_offset_f32", "kmeans_outlier_f32"]


def _assert_own_rows_fit(outs: list[dict], name: str, ref: object, rtol: float) -> None:
    """Each process's labels of its own rows, together, and every process's iterations and
    means: the one-process fit's (means to ``rtol``: float32 sums in another order)."""
    labels = np.concatenate([out[name]["own_labels"] for out in outs])
    np.testing.assert_array_equal(labels, np.asarray(ref.labels))
    for out in outs:
        assert out[name]["n_iter"] == int(ref.n_iter) > 1
        np.testing.assert_allclose(out[name]["means"], np.asarray(ref.means), rtol=rtol)


def test_out_of_core_processes_equal_one_process_fit(runs):
    outs, references = runs[0][2], runs[1]
    for name, ref in (("ooc_kmeans", references["kmeans"]), ("ooc_em", references["em"])):
        labels = np.concatenate([out[name]["own_labels"] for out in outs])
        np.testing.assert_array_equal(labels, np.asarray(ref.labels))
        assert [len(out[name]["own_labels"]) for out in outs] == [500, 700]
        for out in outs:
            got = out[name]
            assert got["n_iter"] == int(ref.n_iter) > 1
            assert got["converged"] == bool(ref.converged)
            np.testing.assert_allclose(got["means"], np.asarray(ref.means), rtol=0, atol=1e-10)
            np.testing.assert_allclose(got["objective"], float(ref.objective), rtol=1e-10)
    # float32 data near 1e17 (1e18 on process 1): the hard diag fit rescaled, by the exponent of
    # every process's largest magnitude, as in one process
    _assert_own_rows_fit(outs, "ooc_diag_far_f32", references["diag_far_f32"], rtol=1e-5)
    for out in outs:
        got, ref = out["ooc_diag_far_f32"], references["diag_far_f32"]
        np.testing.assert_allclose(got["objective"], float(ref.objective), rtol=1e-5)
    # float32 rows far from the origin, each process reading its own: one offset for all
    _assert_own_rows_fit(outs, "ooc_offset_f32", references["kmeans_offset_f32"], rtol=1e-6)
    # one far row on process 1, the window counts summed over both processes: the one-process
    # fit (the offsets and the rows translated are those of one process, to the order of the
    # float32 sums across processes)
    _assert_own_rows_fit(outs, "ooc_outlier_f32", references["kmeans_outlier_f32"], rtol=1e-6)
    # float64 data with x64 off: float64, and the one-process fit's iterations (before, float32)
    ref = references["em"]
    labels = np.concatenate([out["ooc_em_x64_off"]["own_labels"] for out in outs])
    np.testing.assert_array_equal(labels, np.asarray(ref.labels))
    for out in outs:
        assert out["ooc_em_x64_off"]["dtype"] == "float64"
        assert out["ooc_em_x64_off"]["n_iter"] == int(ref.n_iter)
        # weights of 1e39 on float32 rows: refused on every process (before: a NaN fit)
        assert "the largest weight (1e+39) lies outside [2^-32, 2^32]" in out["ooc_bad_weights"]
    # rows near 1e160 with weights on one process: the fit of the unit-scale rows, times 2^530
    ref = references["kmeans_w_first"]
    labels = np.concatenate([out["ooc_far_f64_w"]["own_labels"] for out in outs])
    np.testing.assert_array_equal(labels, np.asarray(ref.labels))
    for out in outs:
        assert out["ooc_far_f64_w"]["n_iter"] == int(ref.n_iter) > 1
        np.testing.assert_allclose(out["ooc_far_f64_w"]["means"], ref.means, rtol=0, atol=1e-10)
        assert out["ooc_dtype_mismatch"].startswith(
            "the processes' data differ in width or dtype (D, dtype code per process: [[4, 12], "
            "[4, 11]]: D=4 float64, D=4 float32)"
        )
    for out in outs:
        assert out["ooc_bad"] == (
            "process 1: X contains 1 NaN or inf value(s); clean the data first."
        )


@pytest.mark.parametrize(("n", "name"), [(2, name) for name in ALL] + [(4, name) for name in CORE])
def test_fit_equals_one_process_fit(runs, n, name):
    outs, references = runs[0][n], runs[1]
    ref = references["kmeans_w" if name == "kmeans_w_host" else name]
    for out in outs:
        got = out[name]
        assert got["label_devices"] == n
        assert got["n_iter"] == int(ref.n_iter) > 1
        assert got["converged"] == bool(ref.converged)
        np.testing.assert_array_equal(got["labels"], np.asarray(ref.labels))
        if name.endswith("f32"):  # float32 sums, in another order across processes
            np.testing.assert_allclose(got["means"], np.asarray(ref.means), rtol=1e-5)
            np.testing.assert_allclose(got["objective"], float(ref.objective), rtol=1e-5)
            continue
        np.testing.assert_allclose(got["means"], np.asarray(ref.means), rtol=0, atol=1e-10)
        np.testing.assert_allclose(got["objective"], float(ref.objective), rtol=1e-10)
    if name == "kmeans":  # the repeated start left a cluster empty: relocation ran
        assert len(np.unique(outs[0][name]["labels"])) == 6


def test_bad_rows_on_one_process_raise_everywhere(run):
    n, outs = run
    for out in outs:
        assert out["bad_nan"] == (
            f"process {n - 1}: X contains 1 NaN or inf value(s); clean the data first."
        )
    if n != 2:
        return
    for out in outs:
        assert out["bad_poisson"].startswith("process 1: Poisson data must be non-negative")
        assert out["bad_weights"] == "process 1: weights must be non-negative; found 1 < 0."
        assert out["zero_weights"].startswith("weights are all zero")
        assert out["bad_weights_shape"] == "weights must have shape (N,) = (1200,); got (5,)."
        assert "different initial parameters" in out["different_params"]
        assert out["global_dtype_mismatch"].startswith(
            "the processes' data differ in width or dtype (D, dtype code per process: [[4, 12], "
            "[4, 11]]: D=4 float64, D=4 float32)"
        )
        assert out["global_uneven"].startswith(
            "the processes see global arrays of different row counts (N per process: [1000, 1400])"
        )
        assert "the largest weight (1e+80) lies outside" in out["bad_global_weights"]
        assert out["ooc_later_width"].startswith(
            "process 1: chunks must all have D=4 columns; got one with 3 (rows 0..699, on a "
            "later pass"
        )
        assert out["ooc_later_nan"] == "process 1: X contains NaN or inf values (in rows 128..255)."


# ----------------------------------------------------------------------------------------------
# The launcher itself (no JAX in the children: fast).

FAIL_ONE = """
import os, sys, time
if os.environ["GMMLIMIT_PROCESS_ID"] == "1":
    sys.exit(3)
time.sleep(60)
"""

ENV_ECHO = """
import os, sys
keys = ("GMMLIMIT_COORDINATOR_ADDRESS", "GMMLIMIT_NUM_PROCESSES", "GMMLIMIT_PROCESS_ID")
with open(os.path.join(sys.argv[1], os.environ["GMMLIMIT_PROCESS_ID"]), "w") as f:
    f.write(" ".join(os.environ[k] for k in keys))
"""


def test_launcher_passes_the_cluster_in_the_environment(tmp_path):
    from gmmlimit.launch import run as launch_run

    script = tmp_path / "echo.py"
    script.write_text(ENV_ECHO)
    assert launch_run(3, [str(script), str(tmp_path)], timeout_s=60) == 0
    seen = sorted((tmp_path / str(i)).read_text().split() for i in range(3))
    addresses = {s[0] for s in seen}
    assert len(addresses) == 1 and addresses.pop().startswith("127.0.0.1:")
    assert [s[1:] for s in seen] == [["3", "0"], ["3", "1"], ["3", "2"]]


def test_launcher_stops_the_others_when_one_fails(tmp_path):
    from gmmlimit.launch import run as launch_run

    script = tmp_path / "fail.py"
    script.write_text(FAIL_ONE)
    start = time.monotonic()
    assert launch_run(2, [str(script)], timeout_s=120) == 3
    assert time.monotonic() - start < 30  # the sleeping process was stopped, not waited for


def test_launcher_timeout_stops_everything(tmp_path):
    from gmmlimit.launch import run as launch_run

    script = tmp_path / "sleep.py"
    script.write_text("import time\ntime.sleep(60)\n")
    start = time.monotonic()
    assert launch_run(2, [str(script)], timeout_s=1.0) == 124
    assert time.monotonic() - start < 30


def test_launcher_and_initialize_reject_bad_settings(monkeypatch):
    from gmmlimit.launch import ENV_ADDRESS, ENV_NUM_PROCESSES, ENV_PROCESS_ID, initialize
    from gmmlimit.launch import run as launch_run

    with pytest.raises(ValueError, match="num_processes"):
        launch_run(0, ["x.py"])
    with pytest.raises(ValueError, match="script"):
        launch_run(2, [])
    for name in (ENV_ADDRESS, ENV_NUM_PROCESSES, ENV_PROCESS_ID):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="together"):
        initialize(coordinator_address="127.0.0.1:1234")
    with pytest.raises(ValueError, match="process_id must lie"):
        initialize("127.0.0.1:1234", 2, 2)
    with pytest.raises(ValueError, match="host:port"):
        initialize("localhost", 2, 0)
    for name in ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert initialize() == (0, 1)  # alone: nothing to join


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "worker":
    _worker(sys.argv[2], sys.argv[3])
