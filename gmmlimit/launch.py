"""Run a script as N cooperating JAX processes on this machine, and join such a cluster.

Command line::

    python -m gmmlimit.launch -n 4 script.py [script args ...]

starts ``script.py`` in 4 processes. Each one finds the coordinator's address, the number of
processes and its own id in the environment (``GMMLIMIT_COORDINATOR_ADDRESS``,
``GMMLIMIT_NUM_PROCESSES``, ``GMMLIMIT_PROCESS_ID``) and joins the cluster by calling
:func:`initialize` before any other JAX call. The processes talk over 127.0.0.1, with CPU
collectives carried by gloo, so a sharded fit (:func:`gmmlimit.scale.kmeans_sharded`, ...) runs over
a mesh whose devices belong to different processes, exactly as it would over several hosts.

If one process fails, the launcher stops the others (they would otherwise wait for it in a
collective) and exits with the failing process's status; ``--timeout`` bounds the whole run.

On a cluster, the scheduler starts the processes instead (e.g. ``srun`` under SLURM) and
:func:`initialize` with no ``GMMLIMIT_*`` variables lets ``jax.distributed.initialize`` read the
scheduler's environment (see docs/scale.md).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence

__all__ = [
    "ENV_ADDRESS",
    "ENV_NUM_PROCESSES",
    "ENV_PROCESS_ID",
    "free_port",
    "initialize",
    "main",
    "run",
]

ENV_ADDRESS = "GMMLIMIT_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "GMMLIMIT_NUM_PROCESSES"
ENV_PROCESS_ID = "GMMLIMIT_PROCESS_ID"

# Variables by which a scheduler says it started several tasks; jax.distributed.initialize()
# reads the rest of the cluster's description from the same environment.
_SCHEDULER_SIZES = ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE")

_GRACE_S = 5.0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that no socket was bound to a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _int_setting(value: object, name: str) -> int:
    try:
        return int(str(value))
    except ValueError:
        raise ValueError(f"{name} must be an integer; got {value!r}.") from None


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    cpu_collectives: str = "gloo",
    timeout_s: int = 120,
) -> tuple[int, int]:
    """Join a multi-process JAX cluster (call it first, before any other JAX computation).

    The arguments default to the ``GMMLIMIT_*`` variables set by ``python -m gmmlimit.launch``.
    Without them, under a scheduler that started several tasks (``SLURM_NTASKS``,
    or ``OMPI_COMM_WORLD_SIZE`` above 1), ``jax.distributed.initialize()`` reads the
    cluster from the scheduler's environment; otherwise this is a single process and nothing is
    joined, so the same script runs alone or under the launcher.

    Args:
        coordinator_address: ``"host:port"`` of process 0's coordinator service.
        num_processes: the number of processes.
        process_id: this process's id, in ``[0, num_processes)``.
        cpu_collectives: the implementation of cross-process collectives on CPU devices
            (``"gloo"``, or ``"mpi"`` where jaxlib was built with it); GPUs use NCCL regardless.
        timeout_s: seconds to wait for every process to join.

    Returns:
        ``(process_id, num_processes)`` as JAX sees them after joining.

    Raises:
        ValueError: on a malformed address, count or id, or a partial set of settings.
    """
    import jax

    env = os.environ
    address = coordinator_address if coordinator_address is not None else env.get(ENV_ADDRESS)
    count = num_processes if num_processes is not None else env.get(ENV_NUM_PROCESSES)
    index = process_id if process_id is not None else env.get(ENV_PROCESS_ID)
    given = [v is not None for v in (address, count, index)]
    if any(given) and not all(given):
        raise ValueError(
            "coordinator_address, num_processes and process_id must be given together (or as "
            f"{ENV_ADDRESS}, {ENV_NUM_PROCESSES}, {ENV_PROCESS_ID}); got address={address!r}, "
            f"num_processes={count!r}, process_id={index!r}."
        )
    if jax.distributed.is_initialized():
        raise ValueError("jax.distributed is already initialised in this process.")
    if not any(given):
        sizes = [_int_setting(env[name], name) for name in _SCHEDULER_SIZES if name in env]
        if not any(size > 1 for size in sizes):
            return 0, 1
        jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
        jax.distributed.initialize(initialization_timeout=timeout_s)
        return jax.process_index(), jax.process_count()
    count = _int_setting(count, "num_processes")
    index = _int_setting(index, "process_id")
    if count < 1:
        raise ValueError(f"num_processes must be >= 1; got {count}.")
    if not 0 <= index < count:
        raise ValueError(f"process_id must lie in [0, {count}); got {index}.")
    host, _, port = str(address).rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"coordinator_address must be 'host:port'; got {address!r}.")
    jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
    jax.distributed.initialize(
        coordinator_address=str(address),
        num_processes=count,
        process_id=index,
        initialization_timeout=timeout_s,
    )
    return jax.process_index(), jax.process_count()


def _stop(procs: Sequence[subprocess.Popen]) -> None:
    """Terminate the processes still running, then kill those that outlive the grace period."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + _GRACE_S
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run(
    num_processes: int,
    argv: Sequence[str],
    *,
    port: int | None = None,
    timeout_s: float | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    """Start ``python argv...`` in ``num_processes`` local processes that form one JAX cluster.

    Args:
        num_processes: how many processes to start (>= 1).
        argv: the script and its arguments, as for ``python`` (e.g. ``["fit.py", "--k", "8"]``).
        port: the coordinator's port on 127.0.0.1; default: a free one.
        timeout_s: stop every process after this many seconds (None: no limit).
        env: the environment of the processes (default: this one); the ``GMMLIMIT_*``
            variables are added to it.

    Returns:
        0 when every process exits with 0; else the status of the first one that failed
        (128 + s for one killed by signal s; 124 on timeout). The other processes are
        stopped as soon as one fails.

    Raises:
        ValueError: on a bad count, an empty ``argv`` or a non-positive timeout.
    """
    if isinstance(num_processes, bool) or not isinstance(num_processes, int) or num_processes < 1:
        raise ValueError(f"num_processes must be an integer >= 1; got {num_processes!r}.")
    if not argv:
        raise ValueError("argv must name the script to run.")
    if timeout_s is not None and not timeout_s > 0:
        raise ValueError(f"timeout_s must be > 0; got {timeout_s!r}.")
    address = f"127.0.0.1:{free_port() if port is None else int(port)}"
    base = dict(os.environ if env is None else env)
    procs: list[subprocess.Popen] = []
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    previous = {}

    def on_signal(signum: int, frame: object) -> None:
        _stop(procs)
        raise SystemExit(128 + signum)

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        for index in range(num_processes):
            child_env = dict(base)
            child_env[ENV_ADDRESS] = address
            child_env[ENV_NUM_PROCESSES] = str(num_processes)
            child_env[ENV_PROCESS_ID] = str(index)
            procs.append(subprocess.Popen([sys.executable, *argv], env=child_env))
        while True:
            codes = [proc.poll() for proc in procs]
            failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                index, code = failed[0]
                code = code if code > 0 else 128 - code  # killed by signal s: 128 + s, as a shell
                print(
                    f"[gmmlimit.launch] process {index} exited with status {code}; stopping "
                    "the others.",
                    file=sys.stderr,
                    flush=True,
                )
                return code
            if all(c == 0 for c in codes):
                return 0
            if deadline is not None and time.monotonic() > deadline:
                print(
                    f"[gmmlimit.launch] timed out after {timeout_s} s; stopping all processes.",
                    file=sys.stderr,
                    flush=True,
                )
                return 124
            time.sleep(0.05)
    finally:
        _stop(procs)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(args: Sequence[str] | None = None) -> int:
    """Command-line entry point: ``python -m gmmlimit.launch -n N script.py [args ...]``."""
    parser = argparse.ArgumentParser(
        prog="python -m gmmlimit.launch",
        description="Run a script as N cooperating JAX processes on this machine (127.0.0.1).",
    )
    parser.add_argument("-n", "--num-processes", type=int, required=True, help="processes")
    parser.add_argument("--port", type=int, default=None, help="coordinator port (default: free)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds before all stop")
    parser.add_argument("script", help="the Python script each process runs")
    parser.add_argument("script_args", nargs=argparse.REMAINDER, help="its arguments")
    ns = parser.parse_args(args)
    try:
        return run(
            ns.num_processes, [ns.script, *ns.script_args], port=ns.port, timeout_s=ns.timeout
        )
    except ValueError as err:
        parser.error(str(err))
    return 2  # unreachable: parser.error exits


if __name__ == "__main__":
    sys.exit(main())
