"""What a call with a new ``max_iter`` costs: the sharded fit, DP-means and the annealing path.

Each call kind runs once at ``max_iter=100`` (compiling its program), then at 90, 80, 120 and
110; the wall time of each of those four calls is printed. With ``max_iter`` traced (only the
history buffer's length, the next power of two, is static) they run the compiled program; with
``max_iter`` static each is a compile. Data: (20000, 8, 8) float32, eight Gaussian clusters,
``em_sharded`` over 2 CPU devices (``jax_num_cpu_devices``), ``dpmeans`` with lambda 50 and 16
slots, ``anneal`` over 16 stages. Cited in ``docs/design.md``.

Usage: ``PYTHONPATH=$PWD python benchmarks/tuning/new_max_iter.py``
"""

import time

import jax
import numpy as np

jax.config.update("jax_num_cpu_devices", 2)

import gmmlimit as gl  # noqa: E402
import gmmlimit.variants as gv  # noqa: E402


def main() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=3.0, size=(8, 8))
    X = (centres[rng.integers(8, size=20000)] + rng.normal(size=(20000, 8))).astype(np.float32)
    m0 = X[:8]
    schedule = np.geomspace(20.0, 0.05, 16)
    calls = {
        "em_sharded": lambda m: gl.scale.em_sharded(X, m0, 0.5, max_iter=m),
        "dpmeans": lambda m: gv.dpmeans(X, 50.0, max_clusters=16, max_iter=m),
        "anneal": lambda m: gl.anneal(X, schedule, k=8, key=jax.random.key(0), max_iter=m),
    }
    for name, call in calls.items():
        jax.block_until_ready(call(100))
        seconds = []
        for max_iter in (90, 80, 120, 110):
            start = time.perf_counter()
            jax.block_until_ready(call(max_iter))
            seconds.append(time.perf_counter() - start)
        print(f"{name}: max_iter 90, 80, 120, 110:", " ".join(f"{s:.3f}" for s in seconds), "s")


if __name__ == "__main__":
    main()
