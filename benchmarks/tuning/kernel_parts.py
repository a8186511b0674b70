"""Where the time of the fused CPU kernel goes: its pieces timed on one core, interleaved.

Builds ``gmmlimit/_kernels/estep.cc`` several times with pieces cut out of the hard chunk
(string patches of the source, each checked to apply), links each into a small C++ driver that
times one chunk call over N rows on the calling thread (no XLA, no thread pool), and prints the
best of R interleaved runs per variant, in ms per pass and GFLOP/s (2 N K D). The soft chunk is
timed whole (4 N K D). Cited in docs/scale.md.

Usage: ``python benchmarks/tuning/kernel_parts.py [N D K [R]]`` (default 1048576 64 64 5).
"""

import subprocess
import sys
import tempfile
from pathlib import Path

import jax.ffi

ROOT = Path(__file__).resolve().parents[2]
SOURCE = (ROOT / "gmmlimit" / "_kernels" / "estep.cc").read_text()

ARGMIN_NEAREST = (
    "  for (int r = 0; r < kGroup; r += L) ArgMinRows<T>(scores + r * kp, kp, labels + r);\n"
    "  NearestRows<T, kWithNorms>(group, dp, means_padded, labels, nearest, norms);\n"
)
NEAREST = (
    "  NearestRows<T, kWithNorms>(group, dp, means_padded, labels, nearest, norms);\n}\n\n"
    "// Labels and exact"
)
NO_NEAREST = "  for (int r = 0; r < kGroup; ++r) nearest[r] = 0;\n}\n\n// Labels and exact"
LABELS_FIXED = (
    "  for (int r = 0; r < kGroup; ++r) {\n    labels[r] = (r * 7) % k;\n    nearest[r] = 0;\n  }\n"
)
SUMS = "      AddWeightedRow<T>(sums + label * dp, group + r * dp, weight, dp);\n"
NO_SUMS = ""

# Cuts in AssignGroup and HardChunk's row loop: they apply to the shapes that take AssignGroup
# (K > kTransposedMaxK, D > kByLanesMaxD, and not the by-features shapes of few means, many
# features); elsewhere every variant times the whole hard chunk.
VARIANTS = {
    "product (scores) only": [(ARGMIN_NEAREST, LABELS_FIXED), (SUMS, NO_SUMS)],
    "+ first index of the min": [(NEAREST, NO_NEAREST), (SUMS, NO_SUMS)],
    "+ exact distance": [(SUMS, NO_SUMS)],
    "+ sums, counts (hard chunk)": [],
}

DRIVER = r"""
#include <chrono>
#include <cstdio>
#include <cstdlib>
int main(int argc, char** argv) {
  const int64_t n = atol(argv[1]), d = atol(argv[2]), k = atol(argv[3]);
  const int soft = atoi(argv[4]);
  constexpr int L = kLanes<float>;
  const int64_t kp = RoundUp(k, L), dp = RoundUp(d, L);
  std::vector<float> x(n * d), w(n, 1.f), means(k * d), means_t(dp * kp), bias(kp),
      padded(k * dp), nearest(n), stats(kp + k * dp + 2),
      scratch(kGroup * (kp + dp) + k * dp + L);
  std::vector<int32_t> labels(n);
  srand(0);
  for (auto& v : x) v = rand() / float(RAND_MAX) - 0.5f;
  std::copy(x.begin(), x.begin() + k * d, means.begin());
  PrepareMeans<float>(means.data(), k, d, dp, kp, means_t.data(), bias.data(), padded.data());
  const float two_sigma2 = 2.0f;
  double best = 1e30;
  for (int rep = 0; rep < 2; ++rep) {
    auto t0 = std::chrono::steady_clock::now();
    if (soft) {
      SoftProblem<float> p{x.data(), w.data(), means_t.data(), bias.data(), padded.data(),
                           &two_sigma2, n, d, dp, k, kp, 1};
      SoftChunk<float>(p, 0, n, labels.data(), nearest.data(), stats.data(), scratch.data());
    } else {
      HardProblem<float> p{x.data(), w.data(), means_t.data(), bias.data(), padded.data(),
                           d, dp, k, kp};
      HardChunk<float>(p, 0, n, labels.data(), nearest.data(), stats.data(), scratch.data());
    }
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
                              .count());
  }
  printf("%.6f %g\n", best, stats[0]);
}
"""


def variant_source(patches: list[tuple[str, str]]) -> str:
    """The kernel source with ``patches`` (each must apply exactly once) and the timing driver."""
    text = SOURCE
    for old, new in patches:
        if text.count(old) != 1:
            raise ValueError(f"patch no longer applies to estep.cc: {old[:60]!r}")
        text = text.replace(old, new)
    return text + DRIVER


def compile_command(src: Path, out: Path | None) -> list[str]:
    """g++ on ``src`` into the executable ``out`` (None: check the syntax only)."""
    target = ["-o", str(out)] if out is not None else ["-fsyntax-only"]
    return ["g++", "-O3", "-march=native", "-std=gnu++17", "-isystem", jax.ffi.include_dir(),
            str(src), *target]  # fmt: skip


def build(name: str, patches: list[tuple[str, str]], folder: Path) -> Path:
    src = folder / f"{abs(hash(name))}.cc"
    src.write_text(variant_source(patches))
    exe = src.with_suffix("")
    subprocess.run(compile_command(src, exe), check=True)
    return exe


def main() -> None:
    n, d, k = (int(v) for v in (sys.argv[1:4] if len(sys.argv) > 3 else (1 << 20, 64, 64)))
    repeats = int(sys.argv[4]) if len(sys.argv) > 4 else 5
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cases = [(name, build(name, patches, folder), 0) for name, patches in VARIANTS.items()]
        cases.append(("soft chunk (sigma2 = 1)", build("soft", [], folder), 1))
        best = {name: float("inf") for name, _, _ in cases}
        for _ in range(repeats):
            for name, exe, soft in cases:
                out = subprocess.run(
                    ["taskset", "-c", "0", str(exe), str(n), str(d), str(k), str(soft)],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout.split()
                best[name] = min(best[name], float(out[0]))
    print(f"one core, N={n} D={d} K={k} float32, best of {repeats} interleaved:")
    for name, _, soft in cases:
        flops = (4 if soft else 2) * n * d * k
        print(f"  {name:30s} {best[name] * 1e3:8.1f} ms  {flops / best[name] / 1e9:6.1f} GFLOP/s")


if __name__ == "__main__":
    main()
