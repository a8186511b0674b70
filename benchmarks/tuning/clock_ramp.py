"""How long this machine runs slow after a pause: one hard kernel pass timed call after call.

After each pause (idle sleep) the same fused K-means pass at (156250, 64, 5) float32 is called
back to back and every call's wall time printed, so the first tens of milliseconds after a pause
can be compared with the steady state at the end of the row; then the same after 150 ms of a
threaded numpy matrix product (another library's thread pool busy just before). This is why
``benchmarks/grid.py`` warms every method up just before timing it (``warm``, ``WARM_S``) and
``benchmarks/tuning/compilers.py`` does the same. Cited in docs/benchmarks.md.

Usage: ``PYTHONPATH=$PWD python benchmarks/tuning/clock_ramp.py [PAUSE_S ...]`` (default 0.5).
"""

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from gmmlimit import _native
from gmmlimit._driver import DEFAULT_BLOCK_SIZE, make_blocks

CALLS = 30


def row(label: str, f) -> None:
    times = []
    for _ in range(CALLS):
        start = time.perf_counter()
        f()
        times.append(1e3 * (time.perf_counter() - start))
    steady = float(np.median(times[-10:]))
    print(
        f"{label}: first {times[0]:.2f} ms, first 5 {np.mean(times[:5]):.2f} ms, steady "
        f"{steady:.2f} ms (median of the last 10); calls until within 10 % of steady: "
        f"{next((i for i, t in enumerate(times) if t <= 1.1 * steady), CALLS)}"
    )
    print("  " + " ".join(f"{t:.1f}" for t in times))


def main() -> None:
    if not _native.available():
        raise SystemExit(f"the fused kernel is not available: {_native.status()}")
    pauses = [float(v) for v in sys.argv[1:]] or [0.5]
    n, d, k = 156_250, 64, 5
    x = jnp.asarray(np.random.default_rng(0).standard_normal((n, d)).astype(np.float32))
    blocks = make_blocks(x, jnp.ones((n,), x.dtype), DEFAULT_BLOCK_SIZE)
    means = x[:k]
    kernel = jax.jit(_native.hard_assign)

    def one_pass() -> None:
        jax.block_until_ready(kernel(means, blocks.x, blocks.weight))

    one_pass()
    a = np.random.default_rng(1).standard_normal((512, 512)).astype(np.float32)
    for pause in pauses:
        for repeat in range(2):
            time.sleep(pause)
            row(f"after {pause} s idle (#{repeat + 1})", one_pass)
        time.sleep(pause)
        start = time.perf_counter()
        while time.perf_counter() - start < 0.15:
            a @ a
        row(f"after {pause} s idle and 150 ms of numpy matmul", one_pass)
        start = time.perf_counter()
        while time.perf_counter() - start < 0.15:
            one_pass()
        row("after 150 ms of the same pass (warm)", one_pass)


if __name__ == "__main__":
    main()
