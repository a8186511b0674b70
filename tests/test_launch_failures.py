"""A process that fails after the processes talked to each other ends the launched run at once.

Process 1 of 2 fails after a first collective (``sync_global_devices``) while process 0 goes on
to a second one, where it waits for process 1. Python's own exit would hang in the failing
process (JAX's distributed shutdown waits for process 0, which waits for process 1 in the
collective), so the launcher, which watches exit statuses, would only stop at ``--timeout``.
The launcher must instead exit with the failing process's status within seconds of the failure,
with the failing process's traceback in its output. The launcher runs in its own session and
is killed with all its processes if it outlives the subprocess timeout.

Processes that pass different options to one fit (``max_iter`` 1 on one, 300 on the other) must
all raise the same ValueError naming the option before any fit work: before, every process ran
its own iteration count and one waited for ever in a collective the other never reached. And
a source whose chunks change dtype after the validating scan is refused, not cast. The same holds
where every process passes the same host array (``fit_sharded``, ``kmeans_sharded``,
``em_sharded`` on a mesh of both processes): another ``max_iter``, a host array whose values
differ, or a NaN in one process's copy raise the same ValueError on both (before, a hang, or
JAX's AssertionError in ``device_put``), and processes that agree fit as one process does.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_TIMEOUT_S = 120

FAIL_AFTER_A_COLLECTIVE = """
import sys, time
from gmmlimit.launch import initialize

pid, count = initialize()
from jax.experimental import multihost_utils

multihost_utils.sync_global_devices("first")
print(f"process {pid} passed the first collective", flush=True)
if pid == 1:
    print(f"process 1 fails at {time.time():.3f}", flush=True)
    if sys.argv[1] == "raise":
        raise RuntimeError("process 1 failed after a collective")
    sys.exit(int(sys.argv[1]))
multihost_utils.sync_global_devices("second")  # process 0 waits here for process 1
print("process 0 passed the second collective", flush=True)
"""


def _launch(
    script: Path, how: str, timeout: int = LAUNCH_TIMEOUT_S
) -> tuple[int, str, float, float]:
    """Run the script in 2 processes; (status, output, seconds taken, end time since the epoch)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["JAX_PLATFORMS"] = "cpu"  # CPU processes over gloo, also on a machine with one GPU
    cmd = [sys.executable, "-m", "gmmlimit.launch", "-n", "2", "--timeout", str(timeout)]
    start = time.monotonic()
    proc = subprocess.Popen(
        [*cmd, str(script), how],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=timeout + 60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, output.decode(errors="replace"), time.monotonic() - start, time.time()


@pytest.mark.parametrize(
    ("how", "status", "message"),
    [
        ("raise", 1, "RuntimeError: process 1 failed after a collective"),
        ("3", 3, "process 1 failed with status 3"),
    ],
    ids=["exception", "sys.exit(3)"],
)
def test_a_failure_after_a_collective_ends_the_run_with_its_status(tmp_path, how, status, message):
    script = tmp_path / "fail_after_a_collective.py"
    script.write_text(FAIL_AFTER_A_COLLECTIVE)
    code, output, seconds, end = _launch(script, how)
    tail = output[-4000:]
    assert code == status, tail  # 124: the launcher waited for its timeout
    assert "process 1 passed the first collective" in output, tail
    failed_at = re.search(r"process 1 fails at ([0-9.]+)", output)
    assert failed_at is not None, tail
    # Bounds on a hang, not on speed: the run would otherwise last the whole timeout.
    assert end - float(failed_at.group(1)) < 30, tail
    assert seconds < 90, tail
    assert message in output, tail
    if how == "raise":
        assert "Traceback (most recent call last)" in output, tail
        assert 'raise RuntimeError("process 1 failed after a collective")' in output, tail
    assert "process 0 passed the second collective" not in output, tail


DIFFERENT_OPTIONS = """
import sys
import numpy as np
from gmmlimit.launch import initialize

pid, count = initialize()
import jax
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import gmmlimit as gl

rng = np.random.default_rng(0)
X = rng.normal(size=(64, 2)).astype(np.float32)
X[32:] += 4
m0 = X[[0, 1]]  # 4 iterations in one process: more than process 0 allows
own = X[pid * 32 : (pid + 1) * 32]
max_iter = 1 if pid == 0 else 300
def say(line):  # one write of the whole line: the two processes share one pipe
    sys.stdout.write(line + "\\n")
    sys.stdout.flush()


for case in sys.argv[1].split(","):  # in turn, in the same 2 processes
  try:
    if case == "out_of_core":
        gl.scale.fit_out_of_core_processes(
            gl.variants.isotropic, own, gl.variants.IsotropicParams(m0, np.float32(0)),
            max_iter=max_iter, block_size=16,
        )
    elif case == "sharded":
        mesh = gl.scale.default_mesh()
        rows = jax.make_array_from_process_local_data(NamedSharding(mesh, P("rows")), own)
        gl.scale.kmeans_sharded(rows, m0, mesh=mesh, max_iter=max_iter, block_size=16)
    elif case == "host_max_iter":  # every process passes the same host array, of any N
        gl.scale.fit_sharded(
            gl.variants.isotropic, X, gl.variants.IsotropicParams(m0, np.float32(0)),
            mesh=gl.scale.default_mesh(), max_iter=max_iter, block_size=16,
        )
    elif case == "host_data":  # process 1's copy differs in one value
        mine = X.copy()
        mine[5, 0] += pid
        gl.scale.kmeans_sharded(mine, m0, mesh=gl.scale.default_mesh(), block_size=16)
    elif case == "host_nan":  # only process 1's copy holds a NaN: only its checks fail
        mine = X.copy()
        mine[5, 0] = np.nan if pid == 1 else mine[5, 0]
        gl.scale.em_sharded(mine, m0, 0.5, mesh=gl.scale.default_mesh(), block_size=16)
    elif case == "host_agree":  # the same host array on both: the one-process fit
        res = gl.scale.kmeans_sharded(X, m0, mesh=gl.scale.default_mesh(), block_size=16)
        with jax.default_device(jax.local_devices()[0]):
            ref = gl.kmeans(X, m0, block_size=16)
        labels = multihost_utils.process_allgather(res.labels, tiled=True)
        same = int(res.n_iter) == int(ref.n_iter) > 1
        same = same and np.array_equal(np.asarray(labels), np.asarray(ref.labels))
        same = same and np.allclose(np.asarray(res.means), np.asarray(ref.means), rtol=1e-6)
        say(f"{case}: process {pid} fit as one process: {same}")
    else:  # float32 on the first look and the scan, float64 on every later pass
        calls = {"n": 0}

        def source():
            calls["n"] += 1
            return iter([own if calls["n"] <= 2 else own.astype(np.float64)])

        gl.scale.fit_out_of_core_processes(
            gl.variants.isotropic, source, gl.variants.IsotropicParams(m0, np.float32(0)),
            block_size=16,
        )
    say(f"{case}: process {pid} fitted without an error")
  except ValueError as err:
    say(f"{case}: process {pid} raised: {err}")
"""

# Each case: where the processes disagree, the message both must raise. The cases run in turn
# in one launch of 2 processes; the old code hung in the first (the launcher's timeout, 124).
DISAGREEING = {
    "out_of_core": "different options (max_iter is 1 on process 0, 300 on process 1)",
    "sharded": "different options (max_iter is 1 on process 0, 300 on process 1)",
    "later_dtype": "must all have dtype float32; got one of float64 (rows 0..31, on a later",
    "host_max_iter": "different options (max_iter is 1 on process 0, 300 on process 1)",
    "host_data": "; a host X and host weights must be identical on every process.",
    "host_nan": "process 1: X contains 1 NaN or inf value(s); clean the data first.",
}
DISAGREEING_TIMEOUT_S = 120


def test_processes_that_disagree_raise_on_every_process(tmp_path):
    # out of core and global arrays: max_iter, a later pass's dtype; a host array on every
    # process: max_iter, one value of the data, a NaN on one process only. Then, in the same
    # processes, the same host array on both: the one-process fit (no false alarm)
    script = tmp_path / "different_options.py"
    script.write_text(DIFFERENT_OPTIONS)
    cases = ",".join([*DISAGREEING, "host_agree"])
    code, output, _, _ = _launch(script, cases, timeout=DISAGREEING_TIMEOUT_S)
    tail = output[-6000:]
    assert code == 0, tail  # 124: a process waited in a collective until the launcher's timeout
    for pid in (0, 1):
        assert f"host_agree: process {pid} fit as one process: True" in output, tail
        assert f"host_agree: process {pid} fitted without an error" in output, tail
    lines = output.splitlines()
    for case, message in DISAGREEING.items():
        raised = [line for line in lines if line.startswith(f"{case}: process ")]
        for pid in (0, 1):
            assert any(f"{case}: process {pid} raised: " in line for line in raised), tail
        assert not any("fitted without an error" in line for line in raised), tail
        assert sum(message in line for line in raised) == 2, (case, tail)
        if case == "host_data":  # the digests of the two copies, named on both processes
            named = "X is 'a host array float32[64, 2] (digest "
            assert sum(named in line for line in raised) == 2, tail
