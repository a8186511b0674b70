"""An older source of the fused kernel against the current one: the hard and the soft E-step's
outputs, byte for byte, built by GCC and by clang.

For float32 and float64, D in {1, 2, 3, 4, 5, 8, 12, 16, 17, 33, 64} and K in {1, 2, 3, 5, 8, 9,
16, 40} (3001 clustered rows with random weights, blocks of 1024 rows, the last one padded), it
compares the old and the new build of each compiler, and the new GCC build with the new clang
build: the hard E-step, and the soft E-step of four parameter sets in one call (sigma2 of 1e-4,
0.05 and 1 times the data's mean squared distance to the nearest mean, from mostly one-hot rows
to none, and the smallest subnormal, which the kernel treats as the hard limit). Every output
(labels, squared distances, counts, sums, log-likelihood, distortion) is compared as bytes, so a
zero's sign counts. The soft E-step's GCC and clang builds are not compared with each other:
they agree only to rounding (at D >= 12 in both dtypes; tests/test_native.py compares them with
a tolerance). A kernel change that promises the same bits is checked with it. Cited in
docs/benchmarks.md.

Usage::

    PYTHONPATH=$PWD python benchmarks/tuning/same_bits.py path/to/old/estep.cc
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # compilers.py

from compilers import build  # noqa: E402

from gmmlimit import _native  # noqa: E402
from gmmlimit._driver import make_blocks  # noqa: E402

FEATURES = (1, 2, 3, 4, 5, 8, 12, 16, 17, 33, 64)
MEANS = (1, 2, 3, 5, 8, 9, 16, 40)
PAIRS = (("gcc_old", "gcc_new"), ("clang_old", "clang_new"), ("gcc_new", "clang_new"))


def same_bytes(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two outputs hold the same bytes (shapes included)."""
    a, b = np.atleast_1d(a), np.atleast_1d(b)
    return a.shape == b.shape and np.array_equal(a.view(np.uint8), b.view(np.uint8))


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    old = Path(sys.argv[1]).resolve()
    specs = (
        f"gcc_old=g++@{old}",
        "gcc_new=g++",
        f"clang_old=clang++@{old}",
        "clang_new=clang++",
    )
    with tempfile.TemporaryDirectory() as cache:
        names = [build(spec, Path(cache))[0] for spec in specs]
    compared = differing = 0
    for dtype in (np.float32, np.float64):
        for d in FEATURES:
            for k in MEANS:
                rng = np.random.default_rng(d * 100 + k)
                n = 3001
                centres = rng.normal(size=(k, d)) * 3
                x = (centres[rng.integers(k, size=n)] + rng.normal(size=(n, d))).astype(dtype)
                w = rng.uniform(0.5, 2, n).astype(dtype)
                means = jnp.asarray(x[rng.choice(n, k, replace=False)])
                blocks = make_blocks(jnp.asarray(x), jnp.asarray(w), 1024)
                scale = float(np.mean(np.min(((x[:, None] - np.asarray(means)) ** 2).sum(2), 1)))
                sigma2 = np.array([1e-4 * scale, 0.05 * scale, scale, 0.0], dtype)
                sigma2[3] = np.nextafter(dtype(0), dtype(1))
                sets = jnp.broadcast_to(means, (4, k, d))
                for step in ("hard", "soft"):
                    outputs = {
                        name: [
                            np.asarray(out) for out in run(step, name, means, sets, sigma2, blocks)
                        ]
                        for name in names
                    }
                    for a, b in PAIRS if step == "hard" else PAIRS[:2]:
                        compared += 1
                        if not all(map(same_bytes, outputs[a], outputs[b])):
                            differing += 1
                            print(f"differ: {step} {dtype.__name__} d={d} k={k}: {a} against {b}")
    print(f"{compared - differing} of {compared} comparisons byte for byte the same")


def run(step: str, name: str, means, sets, sigma2, blocks) -> tuple:
    """The hard E-step of ``means``, or the soft E-step of the four ``sets``, by build ``name``."""
    suffix = f"_{name}"
    if step == "hard":
        return _native.hard_assign(means, blocks.x, blocks.weight, suffix=suffix)
    return _native.soft_assign(sets, jnp.asarray(sigma2), blocks.x, blocks.weight, suffix=suffix)


if __name__ == "__main__":
    main()
