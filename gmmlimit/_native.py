"""Hand-written CPU kernels of the isotropic E-step, compiled on first use, as XLA FFI targets.

``_kernels/estep.cc`` fuses, for a hard (K-means) or soft (EM) E-step, the distance product, the
first index of the minimum, the exact assigned distance, the responsibilities and the weighted
sums over all blocks of rows (see the file's header). XLA:CPU runs the same steps as separate
operations with (B, K) intermediates in memory; fused, they run several times faster
(``docs/scale.md``).

The kernels are built the first time a fit is traced on the CPU: a C++ compiler compiles it
against the XLA FFI headers that ship with jaxlib, with ``-O3 -march=native`` (then without
``-march=native`` if that fails), into a cache directory (``$GMMLIMIT_CACHE_DIR``, else
``$XDG_CACHE_HOME/gmmlimit``, else ``~/.cache/gmmlimit``). The compiler is ``$CXX`` when set (a
command line such as ``clang++`` or ``ccache g++``; then no other is tried), else the first of
``c++``, ``g++``, ``clang++`` on the PATH; GCC and clang both build the source (portable vector
extensions; one AVX-512 intrinsic where the target has it, portable code elsewhere), and
:func:`status` names the compiler, its version and the flags of the loaded build. The file name
carries a hash of the source, the jaxlib version, the compiler and its version, the flags and the
CPU's model and feature flags, so a cache shared between machines never hands one machine
another's instructions. Later processes load the cached library
in milliseconds; processes that start together on an empty cache (test workers, the processes of
``gmmlimit.launch``) take a lock per build, so one compiles and the others wait for its library.
A build the compiler rejects leaves a ``.failed`` file with its error under the same hash, so
later processes fall back at once instead of compiling again; a new source, compiler or compiler
version retries.

Where no compiler works, or with ``GMMLIMIT_NATIVE=0`` in the environment, the fit uses the
pure-JAX E-step instead (same quantities, up to the rounding of the sums), and on GPUs and TPUs it
always does. :func:`status` says which one a CPU fit uses and why.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import jax
import jax.numpy as jnp
import jaxlib

__all__ = [
    "BOUNDED_MODES",
    "assign_bounded",
    "available",
    "build_info",
    "hard_assign",
    "hard_assign_bounded",
    "soft_assign",
    "soft_assign_bounded",
    "status",
]

SOURCE = Path(__file__).with_name("_kernels") / "estep.cc"
"""The kernels' C++ source."""

ENV_SWITCH = "GMMLIMIT_NATIVE"
"""Set to ``0`` to never build or use the kernel."""

_SUFFIX = {jnp.dtype(jnp.float32): "f32", jnp.dtype(jnp.float64): "f64"}
_SYMBOLS = {
    "gmmlimit_hard_assign_f32": "GmmlimitHardAssignF32",
    "gmmlimit_hard_assign_f64": "GmmlimitHardAssignF64",
    "gmmlimit_assign_bounded_f32": "GmmlimitAssignBoundedF32",
    "gmmlimit_assign_bounded_f64": "GmmlimitAssignBoundedF64",
    "gmmlimit_soft_assign_f32": "GmmlimitSoftAssignF32",
    "gmmlimit_soft_assign_f64": "GmmlimitSoftAssignF64",
    "gmmlimit_update_labels": "GmmlimitUpdateLabels",
    "gmmlimit_log_f32": "GmmlimitLogF32",
    "gmmlimit_log_f64": "GmmlimitLogF64",
}
_BASE_FLAGS = (
    "-O3",
    "-std=gnu++17",
    "-ffp-contract=fast",
    "--param=avoid-fma-max-bits=0",
    "-fPIC",
    "-shared",
)
"""``-ffp-contract=fast``: every ``a += b * c`` a fused multiply-add, in GCC and clang alike.
``--param=avoid-fma-max-bits=0``: GCC's tuning for AMD Zen (``-march=native`` on an EPYC or
Ryzen) otherwise splits the multiply-adds of loop-carried sums back into a multiply and an add
(``avoid-fma-max-bits`` 256), so paths of the kernel that promise each other's bits, and the GCC
and clang builds, differed in the last bit there; clang accepts and ignores the parameter."""
_COMPILE_TIMEOUT_S = 300

_lock = threading.Lock()
_state: dict[str, str | bool | None] = {"loaded": None, "reason": "not loaded yet"}
"""What :func:`available` found: ``loaded``, ``reason``, and for a loaded kernel ``compiler``,
``compiler_version``, ``flags`` and ``path``."""


def _cache_dir() -> Path:
    explicit = os.environ.get("GMMLIMIT_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "gmmlimit"


def _compiler() -> tuple[list[str] | None, str]:
    """The compiler command to use, and where it came from (or why there is none).

    ``$CXX`` (split like a shell word list, so ``"ccache clang++"`` works) is the user's choice
    and is used alone; without it the first of ``c++``, ``g++``, ``clang++`` on the PATH.
    """
    explicit = os.environ.get("CXX", "").strip()
    if explicit:
        try:
            words = shlex.split(explicit)
        except ValueError as error:
            return None, f"$CXX={explicit!r} is not a command line: {error}"
        found = shutil.which(words[0]) if words else None
        if found is None:
            return None, f"$CXX={explicit!r}: {words[0] if words else explicit!r} not found"
        return [found, *words[1:]], "$CXX"
    for name in ("c++", "g++", "clang++"):
        found = shutil.which(name)
        if found:
            return [found], "PATH"
    return None, "no C++ compiler found ($CXX, c++, g++, clang++)"


def _cpu_fingerprint() -> str:
    """The CPU's model and feature flags (what ``-march=native`` compiles for)."""
    parts = [platform.machine(), platform.processor()]
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith(("model name", "flags", "Features", "CPU part")):
                    parts.append(line.strip())
                    if line.startswith(("flags", "Features")):
                        break
    except OSError:
        pass
    return "\n".join(parts)


def _compiler_version(cxx: list[str]) -> str:
    """The first line of ``cxx --version`` ("" when it prints nothing or cannot run)."""
    try:
        result = subprocess.run(
            [*cxx, "--version"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return result.stdout.splitlines()[0].strip() if result.stdout.strip() else ""


def _key(cxx: list[str], version: str, flags: tuple[str, ...]) -> str:
    """The cache key of one build: source, jaxlib, compiler, its version, flags and CPU."""
    text = "\n".join(
        [
            SOURCE.read_text(encoding="utf-8"),
            jaxlib.__version__,
            " ".join(cxx),
            version,
            " ".join(flags),
            _cpu_fingerprint(),
        ]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _write_atomically(target: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(suffix=".tmp", dir=target.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, target)


def _build(cxx: list[str], flags: tuple[str, ...], target: Path) -> tuple[str | None, bool]:
    """Compile the kernel into ``target`` (atomically).

    Returns:
        ``(None, False)`` on success, else ``(error, final)``: ``final`` when the compiler ran and
        rejected the source (the same command would fail again), not when it could not run or
        timed out.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    command = [*cxx, *flags, "-isystem", jax.ffi.include_dir(), str(SOURCE), "-o", tmp]
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=_COMPILE_TIMEOUT_S, check=False
        )
        if result.returncode != 0:
            output = (result.stderr.strip() or result.stdout.strip())[-2000:]
            return f"{' '.join(command)} failed:\n{output}", True
        os.replace(tmp, target)
        return None, False
    except (OSError, subprocess.SubprocessError) as error:
        return f"{' '.join(command)} failed: {error}", False
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _find_or_build(
    cxx: list[str], flags: tuple[str, ...], cache_dir: Path
) -> tuple[Path | None, str, str]:
    """The cached library of this compiler and these flags, built if needed.

    A build the compiler rejected leaves ``estep-<key>.failed`` (its error) beside where the
    library would be, so no later call or process runs the same failing command again; the key
    changes with the source, the compiler or its version, so an edit or an upgrade retries.

    Returns:
        ``(path, version, "")`` when the library is there, else ``(None, version, error)``.
    """
    version = _compiler_version(cxx)
    key = _key(cxx, version, flags)
    path = cache_dir / f"estep-{key}.so"
    marker = cache_dir / f"estep-{key}.failed"
    with _build_lock(cache_dir / f"estep-{key}.lock"):
        if path.exists():
            return path, version, ""
        if marker.exists():
            try:
                remembered = marker.read_text(encoding="utf-8")
            except OSError:
                remembered = ""
            return None, version, f"{remembered}\n(remembered in {marker}; delete it to retry)"
        error, final = _build(cxx, flags, path)
        if error is None:
            return path, version, ""
        if final:
            with contextlib.suppress(OSError):  # an unwritable cache only costs the retry
                _write_atomically(marker, error)
        return None, version, error


@contextlib.contextmanager
def _build_lock(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_path`` (one per build key) across processes.

    Processes that start together on an empty cache (the workers of a test run, the processes
    of ``gmmlimit.launch``) then compile the kernel once: the first builds, the others wait for
    it and load its library. Without ``fcntl`` (Windows), or where the cache is not writable,
    no lock is taken and each process may build (atomically) on its own.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock_path, "a")  # noqa: SIM115 - held across the yield
    except OSError:
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _register(path: Path, suffix: str = "") -> None:
    """Load the library at ``path`` and register its handlers as ``<target><suffix>``."""
    library = ctypes.cdll.LoadLibrary(str(path))
    for target, symbol in _SYMBOLS.items():
        jax.ffi.register_ffi_target(
            target + suffix, jax.ffi.pycapsule(getattr(library, symbol)), platform="cpu"
        )


def _load() -> bool:
    """Build (or find in the cache) and register the kernel; False, with a reason, if impossible."""
    if os.environ.get(ENV_SWITCH, "1").strip().lower() in ("0", "false", "no", "off"):
        _state["reason"] = f"disabled by {ENV_SWITCH}={os.environ[ENV_SWITCH]}"
        return False
    cxx, origin = _compiler()
    if cxx is None:
        _state["reason"] = origin
        return False
    errors = []
    for flags in ((*_BASE_FLAGS, "-march=native"), _BASE_FLAGS):
        path, version, error = _find_or_build(cxx, flags, _cache_dir())
        if path is None:
            errors.append(error)
            continue
        try:
            _register(path)
        except Exception as error:
            # A JaxRuntimeError here means another copy of the kernels already holds these
            # target names in this process (two gmmlimit trees imported side by side).
            errors.append(f"loading {path} failed: {error}")
            continue
        _state["compiler"] = " ".join(cxx)
        _state["compiler_version"] = version
        _state["flags"] = " ".join(flags)
        _state["path"] = str(path)
        _state["reason"] = (
            f"compiled kernel {path} (by {' '.join(cxx)} [{version or 'version unknown'}], "
            f"from {origin}, flags {' '.join(flags)})"
        )
        return True
    _state["reason"] = "the kernel did not build: " + "\n".join(errors)
    return False


def build_info() -> dict[str, str]:
    """The compiler, its version, the flags and the library of the loaded kernel.

    Returns:
        ``{"compiler", "compiler_version", "flags", "path"}`` (builds the kernel if not yet
        tried), or ``{}`` when fits use the pure-JAX E-step.
    """
    if not available():
        return {}
    return {name: str(_state[name]) for name in ("compiler", "compiler_version", "flags", "path")}


def available() -> bool:
    """Whether the CPU kernels are built and registered (builds them on the first call).

    Returns:
        True when isotropic E-steps on the CPU run the compiled kernels. The first call may
        take a few seconds (one compilation per machine, then cached); a failed build warns
        once.
    """
    with _lock:
        if _state["loaded"] is None:
            _state["loaded"] = _load()
            if not _state["loaded"] and not str(_state["reason"]).startswith("disabled"):
                warnings.warn(
                    "gmmlimit: the CPU E-step kernel is unavailable, so fits on the CPU use "
                    f"the (slower) pure-JAX E-step. Reason: {_state['reason']}",
                    RuntimeWarning,
                    stacklevel=3,
                )
        return bool(_state["loaded"])


def status() -> str:
    """Which E-step isotropic fits on the CPU use, and why (builds the kernels if not yet tried).

    Public as ``gmmlimit.cpu_kernel_status``.

    Returns:
        ``"native: compiled kernel <path> (by <compiler> [<version>], from <$CXX or PATH>,
        flags <flags>)"`` or ``"pure JAX: <reason>"``.
    """
    return ("native: " if available() else "pure JAX: ") + str(_state["reason"])


def kernel_rows(x_blocks: jax.Array, w_blocks: jax.Array) -> tuple[jax.Array, int, int, int]:
    """The rows a kernel reads: ``(x (M, D), n, B, D)`` for blocks of weights ``w_blocks`` (n, B).

    ``x_blocks`` is either (n, B, D) padded blocks (M = n B: a reshape, no copy) or (M, D), the
    blocks' first M rows, 1 <= M <= n B, as the fit driver passes its rows in place
    (:attr:`gmmlimit._driver.Blocks.rows`): the kernels treat the rows past M as the driver's
    padding, repeats of row 0 with weight 0 (their weights in ``w_blocks`` must be 0), which
    they leave out whether or not they are in memory (the same outputs, bit for bit).

    Raises:
        ValueError: if the shapes do not fit together.
    """
    n, b = w_blocks.shape
    if x_blocks.ndim == 3 and x_blocks.shape[:2] == (n, b):
        return x_blocks.reshape(n * b, x_blocks.shape[2]), n, b, x_blocks.shape[2]
    if x_blocks.ndim == 2 and 1 <= x_blocks.shape[0] <= n * b:
        return x_blocks, n, b, x_blocks.shape[1]
    raise ValueError(
        f"kernel rows: expected x (n, B, D) or (M, D) with 1 <= M <= n B for weights {(n, b)}; "
        f"got x of shape {x_blocks.shape}"
    )


def hard_assign(
    means: jax.Array, x_blocks: jax.Array, w_blocks: jax.Array, *, suffix: str = ""
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array]:
    """The fused hard E-step over blocks of rows, on the CPU (requires :func:`available`).

    Args:
        means: (K, D) means.
        x_blocks: (n, B, D) rows, or (M, D) the blocks' first rows (:func:`kernel_rows`),
            float32 or float64 (the dtype of ``means``).
        w_blocks: (n, B) sample weights.
        suffix: appended to the FFI target names: "" for the kernel :func:`available` loaded,
            else a second build registered by ``_register(path, suffix)`` (the tests compare
            the builds of two compilers so).

    Returns:
        ``(labels, nearest, counts, sums, distortion)``: (n, B) int32 labels (ties: lowest index),
        (n, B) squared distance to the assigned mean, (K,) summed weights, (K, D) weighted sums
        of the rows, () weighted distortion. The statistics of each block are summed over its rows
        and the blocks added in order, as the fit driver's scan adds them.
    """
    x, n, b, d = kernel_rows(x_blocks, w_blocks)
    k = means.shape[0]
    dtype = x.dtype
    out = (
        jax.ShapeDtypeStruct((n, b), jnp.int32),
        jax.ShapeDtypeStruct((n, b), dtype),
        jax.ShapeDtypeStruct((k,), dtype),
        jax.ShapeDtypeStruct((k, d), dtype),
        jax.ShapeDtypeStruct((), dtype),
    )
    target = f"gmmlimit_hard_assign_{_SUFFIX[jnp.dtype(dtype)]}{suffix}"
    return jax.ffi.ffi_call(target, out, vmap_method="sequential")(x, w_blocks, means)


def soft_assign(
    means: jax.Array,
    sigma2: jax.Array,
    x_blocks: jax.Array,
    w_blocks: jax.Array,
    *,
    suffix: str = "",
) -> tuple[jax.Array, ...]:
    """The fused soft E-step of S parameter sets over blocks of rows, on the CPU.

    Requires :func:`available`; every sigma2 must be > 0 (the caller routes sigma2 = 0 to
    :func:`hard_assign`).

    Args:
        means: (S, K, D) means of S parameter sets (S = 1 for one fit).
        sigma2: (S,) variances.
        x_blocks: (n, B, D) rows, or (M, D) the blocks' first rows (:func:`kernel_rows`),
            float32 or float64 (the dtype of ``means``).
        w_blocks: (n, B) sample weights.
        suffix: as in :func:`hard_assign`.

    Returns:
        ``(labels, nearest, counts, sums, log_lik_core, distortion)``: (S, n, B) int32 labels,
        (S, n, B) squared distance to the nearest mean, (S, K) summed responsibilities times
        weight, (S, K, D) weighted sums of the rows, (S,) ``sum_n w_n [lse_n - d_n* / (2
        sigma2)]`` and (S,) weighted distortion, blocks added in order as in
        :func:`hard_assign`.
    """
    x, n, b, d = kernel_rows(x_blocks, w_blocks)
    s, k, _ = means.shape
    dtype = x.dtype
    out = (
        jax.ShapeDtypeStruct((s, n, b), jnp.int32),
        jax.ShapeDtypeStruct((s, n, b), dtype),
        jax.ShapeDtypeStruct((s, k), dtype),
        jax.ShapeDtypeStruct((s, k, d), dtype),
        jax.ShapeDtypeStruct((s,), dtype),
        jax.ShapeDtypeStruct((s,), dtype),
    )
    target = f"gmmlimit_soft_assign_{_SUFFIX[jnp.dtype(dtype)]}{suffix}"
    return jax.ffi.ffi_call(target, out, vmap_method="sequential")(x, w_blocks, means, sigma2)


BOUNDED_MODES = {"hard": 0, "soft": 1, "hard_plain": 2, "soft_plain": 3, "nothing": 4}
"""What a call of :func:`assign_bounded` does (its ``mode`` operand, chosen at run time)."""


def assign_bounded(
    mode: jax.Array,
    means: jax.Array,
    sigma2: jax.Array,
    old_means: jax.Array,
    old_labels: jax.Array,
    lower: jax.Array,
    x_blocks: jax.Array,
    w_blocks: jax.Array,
    *,
    suffix: str = "",
) -> tuple[jax.Array, ...]:
    """One pass with Hamerly's bounds, of the kind ``mode`` says, the bounds updated in place.

    The means are cut into G groups of consecutive indices (as in Yinyang K-means). In the
    bounded modes a row whose label cannot change (hard: its lower bounds on the distance to
    the other means of each group, moved by the group's largest shift, exceed its distance to
    its own mean by more than any score's rounding error), or whose responsibilities are
    provably exactly one-hot (soft: every other mean's gap / (2 sigma2) past the exponential's
    underflow), is not scored against every mean; see the kernel's source. The modes
    (:data:`BOUNDED_MODES`):

    * 0, ``"hard"``: :func:`hard_assign`'s outputs, bit for bit, and new bounds;
    * 1, ``"soft"``: :func:`soft_assign`'s for one set (labels and distances the same bits, the
      statistics summed in another order), and new bounds;
    * 2, ``"hard_plain"`` and 3, ``"soft_plain"``: :func:`hard_assign`'s or :func:`soft_assign`'s
      outputs, bit for bit; the bounds and their labels kept as they were (still valid at any
      later means, only looser);
    * 4, ``"nothing"``: no pass (the caller runs another one): zero outputs, bounds kept.

    The bounds and their labels are aliased to the outputs, so inside a compiled loop they are
    updated in place and the modes that keep them touch nothing (XLA copies an array that a
    conditional's branch passes through, and again into the loop's carry: that is why the
    mode is an operand and not a ``lax.switch`` over kernels).

    Args:
        mode: () int32, one of :data:`BOUNDED_MODES`.
        means: (K, D) means.
        sigma2: () variance, > 0 in the soft modes (ignored in the others).
        old_means: (K, D) the means ``lower`` refers to (those of the last bounded pass).
        old_labels: (n, B) int32 labels the bounds refer to (< 0: none, the row is scored).
        lower: (n, B, G) lower bounds on each row's distance to the means of each group of
            ``old_means`` other than its label's (0: the row is scored); 1 <= G <= K.
        x_blocks: (n, B, D) rows, or (M, D) the blocks' first rows (:func:`kernel_rows`),
            float32 or float64 (the dtype of ``means``).
        w_blocks: (n, B) sample weights.
        suffix: as in :func:`hard_assign`.

    Returns:
        ``(labels, nearest, counts, sums, log_lik_core, distortion, lower, bound_labels,
        scored)``: (n, B) int32 labels, (n, B) distances, (K,) counts, (K, D) sums, ()
        log-likelihood core (0 in the hard modes), () distortion, the (n, B, G) bounds and
        (n, B) int32 labels they refer to, and the () int32 number of rows a bounded pass scored
        against every mean (the weightless repeats of row 0 the pass leaves out, the blocks'
        padding, counted as scored; 0 in the other modes).
    """
    x, n, b, d = kernel_rows(x_blocks, w_blocks)
    k = means.shape[0]
    dtype = x.dtype
    out = (
        jax.ShapeDtypeStruct((n, b), jnp.int32),
        jax.ShapeDtypeStruct((n, b), dtype),
        jax.ShapeDtypeStruct((k,), dtype),
        jax.ShapeDtypeStruct((k, d), dtype),
        jax.ShapeDtypeStruct((), dtype),
        jax.ShapeDtypeStruct((), dtype),
        jax.ShapeDtypeStruct(lower.shape, dtype),
        jax.ShapeDtypeStruct((n, b), jnp.int32),
        jax.ShapeDtypeStruct((), jnp.int32),
    )
    target = f"gmmlimit_assign_bounded_{_SUFFIX[jnp.dtype(dtype)]}{suffix}"
    call = jax.ffi.ffi_call(
        target, out, vmap_method="sequential", input_output_aliases={6: 7, 7: 6}
    )
    return call(
        x,
        w_blocks,
        means,
        jnp.asarray(sigma2, dtype),
        old_means,
        jnp.asarray(mode, jnp.int32),
        old_labels,
        lower,
    )


def hard_assign_bounded(
    means: jax.Array,
    old_means: jax.Array,
    old_labels: jax.Array,
    lower: jax.Array,
    x_blocks: jax.Array,
    w_blocks: jax.Array,
    *,
    suffix: str = "",
) -> tuple[jax.Array, ...]:
    """:func:`assign_bounded`'s bounded hard pass: :func:`hard_assign`'s outputs, faster.

    Returns:
        ``(labels, nearest, counts, sums, distortion, lower, scored)``: the outputs of
        :func:`hard_assign`, the (n, B, G) lower bounds at ``means`` and the () int32 number of
        rows scored against every mean.
    """
    mode = BOUNDED_MODES["hard"]
    labels, nearest, counts, sums, _, distortion, lower, _, scored = assign_bounded(
        mode, means, 0, old_means, old_labels, lower, x_blocks, w_blocks, suffix=suffix
    )
    return labels, nearest, counts, sums, distortion, lower, scored


def soft_assign_bounded(
    means: jax.Array,
    sigma2: jax.Array,
    old_means: jax.Array,
    old_labels: jax.Array,
    lower: jax.Array,
    x_blocks: jax.Array,
    w_blocks: jax.Array,
    *,
    suffix: str = "",
) -> tuple[jax.Array, ...]:
    """:func:`assign_bounded`'s bounded soft pass, rows with one-hot responsibilities unscored.

    Returns:
        ``(labels, nearest, counts, sums, log_lik_core, distortion, lower, scored)``: as
        :func:`soft_assign` for one set (without its leading axis), the new (n, B, G) bounds and
        the () int32 number of rows scored against every mean.
    """
    mode = BOUNDED_MODES["soft"]
    outs = assign_bounded(
        mode, means, sigma2, old_means, old_labels, lower, x_blocks, w_blocks, suffix=suffix
    )
    return (*outs[:7], outs[8])


def update_labels(
    labels: jax.Array, previous: jax.Array, *, suffix: str = ""
) -> tuple[jax.Array, jax.Array]:
    """The labels, written over ``previous``, and whether any differed, in one parallel pass.

    ``previous``'s buffer is aliased to the first output: where XLA can donate it (a fit loop's
    carried labels), the kernel compares and overwrites them in place.

    Args:
        labels: (..., n) int32 labels.
        previous: (..., n) int32 labels of the same shape.
        suffix: as in :func:`hard_assign`.

    Returns:
        ``(stored, changed)``: (..., n) int32 equal to ``labels``, and (...) int32, 1 where a row of
        ``n`` labels differs from ``previous`` anywhere, else 0. Under ``vmap`` the kernel gets the
        batch as leading axes (one call).
    """
    out = (
        jax.ShapeDtypeStruct(labels.shape, jnp.int32),
        jax.ShapeDtypeStruct(labels.shape[:-1], jnp.int32),
    )
    target = f"gmmlimit_update_labels{suffix}"
    call = jax.ffi.ffi_call(target, out, vmap_method="broadcast_all", input_output_aliases={1: 0})
    return call(labels, previous)


def log(values: jax.Array, suffix: str = "") -> jax.Array:
    """The natural logarithm by the soft E-step's vector logarithm (what its rows' totals take).

    Args:
        values: float32 or float64 array of any shape.
        suffix: as in :func:`hard_assign`.

    Returns:
        log(values), the same shape and dtype.
    """
    target = f"gmmlimit_log_{_SUFFIX[jnp.dtype(values.dtype)]}{suffix}"
    out = jax.ShapeDtypeStruct(values.shape, values.dtype)
    return jax.ffi.ffi_call(target, out, vmap_method="broadcast_all")(values)


def supports(dtype: jnp.dtype, k: int) -> bool:
    """Whether the kernels handle this dtype and number of components (and are available)."""
    return jnp.dtype(dtype) in _SUFFIX and 1 <= k < 2**24 and available()
