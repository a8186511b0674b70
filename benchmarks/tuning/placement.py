"""One hard pass of the fused kernel over fresh copies of the same blocks: does it depend on where
the arrays lie?

Each trial allocates a few odd-sized arrays (which moves the allocator's next address), then a
new copy of the padded blocks, and times ``--loop`` passes in one compiled loop, ``--repeats``
times. Each printed line is one trial: where the rows and the weights start (their offsets
within a 4 KiB page, in bytes) and the repeats' ms per pass. Times that stay level within a trial
but move between trials point at the arrays' placement (before the group outputs of session 23,
one pass at (250000, 2, 5) on one core of an AMD EPYC took 1.45 ms in some trials and 1.9 ms in
others). Cited in docs/benchmarks.md.

Usage::

    PYTHONPATH=$PWD python benchmarks/tuning/placement.py [--trials 8] [--loop 200] N,D,K
    taskset -c 0 python ...   # one core: no second thread to wait for
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from gmmlimit import _native
from gmmlimit._driver import DEFAULT_BLOCK_SIZE, make_blocks

PAGE_BYTES = 4096


def passes(count: int):
    """A jitted ``(means, x_blocks, w_blocks) -> means`` running ``count`` hard passes in a loop.

    Each pass's means take 0 times its counts, so every pass waits for the one before.
    """

    def run(means: jax.Array, x_blocks: jax.Array, w_blocks: jax.Array) -> jax.Array:
        def body(_, m: jax.Array) -> jax.Array:
            counts = _native.hard_assign(m, x_blocks, w_blocks)[2]
            return m + 0 * counts.reshape(-1)[:1].astype(m.dtype)

        return jax.lax.fori_loop(0, count, body, means)

    return jax.jit(run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("size", help="N,D,K")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--loop", type=int, default=200, help="passes per timed call")
    args = parser.parse_args()
    if not _native.available():
        raise SystemExit(f"the kernel is not available: {_native.status()}")
    n, d, k = (int(v) for v in args.size.split(","))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, d)).astype(np.float32)
    means = jnp.asarray(x[:k])
    loop = passes(args.loop)
    kept = []  # the odd-sized arrays stay alive, so each trial's blocks land elsewhere
    for _ in range(args.trials):
        kept.append(jnp.zeros(int(rng.integers(1, 5000)), jnp.float32))
        blocks = make_blocks(jnp.asarray(x), jnp.ones((n,), x.dtype), DEFAULT_BLOCK_SIZE)
        jax.block_until_ready(loop(means, blocks.x, blocks.weight))
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            jax.block_until_ready(loop(means, blocks.x, blocks.weight))
            times.append((time.perf_counter() - start) / args.loop * 1e3)
        x_at = blocks.x.unsafe_buffer_pointer() % PAGE_BYTES
        w_at = blocks.weight.unsafe_buffer_pointer() % PAGE_BYTES
        print(
            f"rows at {x_at:4d}, weights at {w_at:4d} (bytes into a page): "
            + " ".join(f"{t:.3f}" for t in times)
            + " ms per pass",
            flush=True,
        )


if __name__ == "__main__":
    main()
