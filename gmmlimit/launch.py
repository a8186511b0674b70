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
A process that joined a cluster of several and fails ends at once (stdout and stderr flushed,
Python's exit handlers skipped): Python's own exit would call ``jax.distributed.shutdown``,
which waits for every other process to reach it, while they may be waiting for the failed one
in a collective, so neither the process nor the run would ever end. "Fails" means an uncaught
exception in the main thread (after :func:`initialize`, status 1) or, in a process the
launcher started, also a nonzero ``sys.exit`` status (that status). A process that succeeds
exits as usual, through the shutdown. The others' collectives then fail in turn; the launcher
reports the process that failed first, which names itself in a file the launcher reads. The
processes must make the same collective calls: one that makes a sharded fit more than the
others waits in its first collective for a peer already waiting in the shutdown, and neither
ends; ``--timeout`` bounds such a run.

On a cluster, the scheduler starts the processes instead (e.g. ``srun`` under SLURM) and
:func:`initialize` with no ``GMMLIMIT_*`` variables lets ``jax.distributed.initialize`` read the
scheduler's environment (see docs/scale.md).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
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

# A file that the processes the launcher starts name their failure in ("<process id> <status>"
# lines, appended just before they end): a failure ends the others' collectives at once, with
# errors of their own, so the first line (not the lowest process id among those that have
# exited) names the process that failed first.
_ENV_FAILURES = "GMMLIMIT_FAILURES_FILE"

# What each process the launcher starts runs, as ``python -c _BOOTSTRAP script [args ...]``: the
# script, as ``python script [args ...]`` would run it (as ``__main__``, with that ``sys.argv``
# and its directory first on ``sys.path``). If the script ends with a nonzero SystemExit or an
# exception after joining a JAX cluster, the process ends at once with that status (1 for an
# exception, after its traceback), skipping Python's exit and so JAX's distributed shutdown,
# which would wait for the other processes while they wait for this one in a collective. Only
# the standard library is imported here: the script may set up its environment before JAX loads.
_BOOTSTRAP = r"""
import os, runpy, sys

main_module = sys.modules["__main__"]  # this code's own globals (the script gets a new module)


def joined():
    jax = sys.modules.get("jax")
    try:
        return jax is not None and jax.distributed.is_initialized()
    except Exception:
        return False


def exit_now(status):
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    try:
        fd = os.open(os.environ["GMMLIMIT_FAILURES_FILE"], os.O_WRONLY | os.O_APPEND)
        os.write(fd, f"{os.environ['GMMLIMIT_PROCESS_ID']} {status}\n".encode())
        os.close(fd)
    except Exception:
        pass
    os._exit(status)


def run_script(script):
    path = os.path.abspath(script)
    if not os.path.isfile(path) or path.endswith(".pyc") or __import__("zipfile").is_zipfile(path):
        runpy.run_path(script, run_name="__main__")  # a directory or zip file with __main__.py
        return
    import builtins, importlib.machinery, types

    module = types.ModuleType("__main__")
    module.__file__ = path
    module.__loader__ = importlib.machinery.SourceFileLoader("__main__", path)
    module.__builtins__ = builtins
    sys.modules["__main__"] = module
    with open(path, "rb") as file:
        source = file.read()
    exec(compile(source, path, "exec", dont_inherit=True), module.__dict__)


del sys.argv[0]
script = sys.argv[0]
if not os.path.exists(script):
    print(f"{sys.executable}: can't open file {os.path.abspath(script)!r}: "
          "[Errno 2] No such file or directory", file=sys.stderr)
    sys.exit(2)
if not getattr(sys.flags, "safe_path", False):
    if os.path.isfile(script):
        sys.path[0] = os.path.dirname(os.path.realpath(script))
    else:
        del sys.path[0]  # run_path puts the directory or zip file first
try:
    run_script(script)
except SystemExit as exc:
    code = exc.code
    status = 0 if code is None else code & 0xFF if isinstance(code, int) else 1
    if status == 0 or not joined():
        raise
    if not isinstance(code, int):
        print(code, file=sys.stderr)
    exit_now(status)
except BaseException as exc:
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename in ("<string>", runpy.__file__):
        tb = tb.tb_next
    try:
        sys.excepthook(type(exc), exc.with_traceback(tb), tb)
    finally:
        if joined():
            exit_now(1)
    sys.exit(1)
"""


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

    Once this process joined a cluster of several, an uncaught exception in its main thread
    ends it at once with status 1 after printing its traceback (``sys.excepthook`` is wrapped):
    Python's normal exit would wait in ``jax.distributed.shutdown`` for the other processes,
    which may be waiting for this one in a collective, so the failure would hang instead of
    reaching the launcher or scheduler.

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
        return _after_join()
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
    return _after_join()


def _after_join() -> tuple[int, int]:
    """``(process_id, num_processes)`` of this process, which just joined a cluster.

    In a cluster of several, an uncaught exception from now on ends the process at once.
    """
    import jax

    if jax.process_count() > 1:
        _end_at_once_on_error()
    return jax.process_index(), jax.process_count()


def _exit_now(status: int) -> None:
    """Flush stdout and stderr and end this process with ``status``, skipping Python's exit.

    Under the launcher, the failure is first added to its failures file (see ``_ENV_FAILURES``).
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed or missing stream must not keep us alive
            stream.flush()
    with contextlib.suppress(Exception):  # not under the launcher, or the file is gone
        fd = os.open(os.environ[_ENV_FAILURES], os.O_WRONLY | os.O_APPEND)
        os.write(fd, f"{os.environ[ENV_PROCESS_ID]} {status}\n".encode())
        os.close(fd)
    os._exit(status)


def _first_failure(path: str) -> tuple[int, int] | None:
    """The first ``(process id, status)`` line of the failures file, if any."""
    with contextlib.suppress(OSError), open(path) as file:
        for line in file:
            fields = line.split()
            if line.endswith("\n") and len(fields) == 2 and all(f.isdigit() for f in fields):
                return int(fields[0]), int(fields[1])
    return None


def _end_at_once_on_error() -> None:
    """Make an uncaught exception end this process at once, with status 1, after its traceback.

    Python would end it through its exit handlers, among them JAX's, which calls
    ``jax.distributed.shutdown``: a barrier that waits for every other process, while they may
    be waiting for this one in a collective (a hang, not a failure the launcher or a scheduler
    could see). The traceback is printed by the hook in place before (``sys.excepthook``). In an
    interactive session, or once ``jax.distributed`` was shut down, the hook only prints.
    Exceptions in other threads keep Python's behaviour (they do not end the process).
    """
    previous = sys.excepthook
    if getattr(previous, "_gmmlimit_ends_process", False):
        return

    def hook(kind: type[BaseException], value: BaseException, tb: object) -> None:
        try:
            previous(kind, value, tb)
        finally:
            import jax

            interactive = hasattr(sys, "ps1") or sys.flags.interactive
            if not interactive and jax.distributed.is_initialized():
                _exit_now(1)

    hook._gmmlimit_ends_process = True  # type: ignore[attr-defined]
    sys.excepthook = hook


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
        port: the coordinator's port on 127.0.0.1, from 1 to 65535; default: a free one.
        timeout_s: stop every process after this many seconds (None: no limit).
        env: the environment of the processes (default: this one); the ``GMMLIMIT_*``
            variables are added to it.

    Each process runs the script as ``python argv...`` would; one that joined the cluster and
    fails (an uncaught exception: status 1; ``sys.exit`` with a nonzero status: that status)
    ends at once rather than in JAX's distributed shutdown, which would wait for the others.
    An ``argv`` that starts with a Python option (``["-m", "pkg.mod", ...]``) is passed to
    ``python`` as it is; there only an uncaught exception after :func:`initialize` ends the
    process at once.

    Returns:
        0 when every process exits with 0; else the status of the first one that failed
        (128 + s for one killed by signal s; 124 on timeout). The other processes are
        stopped as soon as one fails.

    Raises:
        ValueError: on a bad count, an empty ``argv``, a non-positive timeout or a port
            outside 1..65535 (before any process starts).
    """
    if isinstance(num_processes, bool) or not isinstance(num_processes, int) or num_processes < 1:
        raise ValueError(f"num_processes must be an integer >= 1; got {num_processes!r}.")
    if not argv:
        raise ValueError("argv must name the script to run.")
    if timeout_s is not None and not timeout_s > 0:
        raise ValueError(f"timeout_s must be > 0; got {timeout_s!r}.")
    if port is not None and (
        isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535
    ):
        # port 0 hung 129 s before XLA aborted; -1 started processes that failed; 99999 passed
        raise ValueError(f"port must be an integer from 1 to 65535; got {port!r}.")
    address = f"127.0.0.1:{free_port() if port is None else int(port)}"
    base = dict(os.environ if env is None else env)
    procs: list[subprocess.Popen] = []
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    previous = {}
    handle, failures = tempfile.mkstemp(prefix="gmmlimit-launch-", suffix=".failures")
    os.close(handle)

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
            child_env[_ENV_FAILURES] = failures
            script = [] if argv[0].startswith("-") else ["-c", _BOOTSTRAP]
            procs.append(subprocess.Popen([sys.executable, *script, *argv], env=child_env))
        while True:
            codes = [proc.poll() for proc in procs]
            # Read after the exit codes: a process that wrote its failure has done so by then.
            first = _first_failure(failures)
            failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
            if first is not None or failed:
                index, code = first if first is not None else failed[0]
                code = code if code > 0 else 128 - code  # killed by signal s: 128 + s, as a shell
                print(
                    f"[gmmlimit.launch] process {index} failed with status {code}; stopping "
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
        with contextlib.suppress(OSError):
            os.remove(failures)


def main(args: Sequence[str] | None = None) -> int:
    """Command-line entry point: ``python -m gmmlimit.launch -n N script.py [args ...]``."""
    parser = argparse.ArgumentParser(
        prog="python -m gmmlimit.launch",
        description="Run a script as N cooperating JAX processes on this machine (127.0.0.1).",
    )
    parser.add_argument("-n", "--num-processes", type=int, required=True, help="processes")
    parser.add_argument(
        "--port", type=int, default=None, help="coordinator port, 1 to 65535 (default: a free one)"
    )
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
