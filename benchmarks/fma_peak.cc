// The cores' multiply-add peak: each thread runs independent chains of vector multiply-adds held
// in registers (acc = acc * scale + step), no memory traffic, so the time is the multiply-add
// units' alone. No pass that does all of Lloyd's or EM's arithmetic can run faster than this;
// a GEMM library reaches part of it. Built and timed by benchmarks/fma_peak.py.
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

namespace {

// The widest vectors the build's target has; the chains fill most of its vector registers (16
// with AVX or SSE, 32 with AVX-512 or on aarch64), enough to keep every multiply-add unit busy
// across the instruction's latency.
#if defined(__AVX512F__)
constexpr int kVectorBytes = 64;
#elif defined(__AVX__)
constexpr int kVectorBytes = 32;
#else
constexpr int kVectorBytes = 16;
#endif
#if defined(__AVX512F__) || defined(__aarch64__)
constexpr int kChains = 16;
#else
constexpr int kChains = 12;
#endif

template <typename T>
struct VecOf;
template <>
struct VecOf<float> {
  typedef float type __attribute__((vector_size(kVectorBytes)));
};
template <>
struct VecOf<double> {
  typedef double type __attribute__((vector_size(kVectorBytes)));
};
template <typename T>
using Vec = typename VecOf<T>::type;

// The sum over chains and lanes after `steps` multiply-adds per chain, chain c starting at c.
template <typename T>
double Chains(int64_t steps, T scale, T step) {
  constexpr int L = kVectorBytes / static_cast<int>(sizeof(T));
  Vec<T> acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = Vec<T>{} + static_cast<T>(c);
  for (int64_t s = 0; s < steps; ++s)
    for (int c = 0; c < kChains; ++c) acc[c] = acc[c] * scale + step;
  double sum = 0;
  for (int c = 0; c < kChains; ++c)
    for (int i = 0; i < L; ++i) sum += static_cast<double>(acc[c][i]);
  return sum;
}

template <typename T>
double Run(int threads, int64_t steps, double scale, double step, double* checksum) {
  std::vector<double> sums(threads);
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      sums[t] = Chains<T>(steps, static_cast<T>(scale), static_cast<T>(step));
    });
  for (auto& thread : pool) thread.join();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  *checksum = 0;
  for (double s : sums) *checksum += s;
  return seconds;
}

}  // namespace

extern "C" {

// Lanes per vector for values of `value_bytes` (4: float32, 8: float64).
int fma_peak_lanes(int value_bytes) { return kVectorBytes / value_bytes; }

// Independent chains per thread.
int fma_peak_chains() { return kChains; }

// Wall seconds for `threads` threads to run `steps` multiply-adds on each chain; checksum: the
// sum over threads, chains and lanes of the final values (steps * step + c at scale 1, exact
// while it fits the type's significand). Returns -1 for another value size.
double fma_peak_run(int threads, int value_bytes, int64_t steps, double scale, double step,
                    double* checksum) {
  if (value_bytes == 4) return Run<float>(threads, steps, scale, step, checksum);
  if (value_bytes == 8) return Run<double>(threads, steps, scale, step, checksum);
  return -1;
}
}
