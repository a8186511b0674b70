// Fused E-steps of the isotropic mixture for the CPU, as XLA FFI custom calls.
//
// Rows x come as n blocks of B rows (the fit driver's blocks), with sample weights w.
//
// Hard E-step (sigma2 = 0, Lloyd's K-means), means m (K, D):
//   labels     (n, B) int32  argmin_k (|m_k|^2 - 2 <x, m_k>), ties to the lowest k
//   nearest    (n, B)        |x - m_label|^2, summed from the differences (no cancellation)
//   counts     (K,)          sum of w over the rows of each label
//   sums       (K, D)        sum of w x over the rows of each label
//   distortion ()            sum of w * nearest
// Soft E-step (sigma2 > 0) of S parameter sets at once (S = 1: one fit; S > 1: a vmapped sigma2
// sweep or restarts), means m (S, K, D) and variances sigma2 (S,), per parameter set s:
//   labels, nearest          as above
//   counts     (S, K)        sum of w r_k,    r_k = e_k / sum_j e_j,  e_k = exp(-gap_k / 2 sigma2)
//   sums       (S, K, D)     sum of w r_k x,  gap_k = max(score_k - min_j score_j, 0) >= 0
//   log_lik    (S,)          sum of w (log sum_j e_j - nearest / 2 sigma2)
//   distortion (S,)          sum of w * nearest
// the quantities of the pure-JAX E-step in gmmlimit/variants/isotropic.py (_fused_jax), up to
// rounding: the exponential here is a polynomial good to about one unit in the last place, and
// the logarithm of the totals another (LogPositive, within one unit; tested against a correctly
// rounded one).
//
// Layout of the work, per group of kGroup rows:
//   1. scores (kGroup, kp) = bias - 2 x m^T as a register-blocked matrix product: panel by panel
//      of kPanel vectors of the transposed, zero-padded means (stored panel by panel, see
//      PrepareMeans), each against all the group's rows, kScoreRows rows at a time;
//   2. first index of the minimum of every row: a lane-wise running minimum over the row's
//      vectors, then a transpose-and-reduce network over L rows at a time (L = lanes per vector),
//      so the horizontal part costs O(1) vector operations per row;
//   3. squared distance to the chosen mean from the differences, reduced by the same network;
//   4. hard: the weighted sums, counts and distortion, row by row;
//      soft: responsibilities in place of the scores, then sums += r^T x as a register-blocked
//      product of kRows components by kPanel vectors of features over the group's rows; for
//      rows of at most 8 features with the components in the lanes instead (GroupSumsByLanes,
//      sums transposed), and with at most L / 2 means two rows to one vector of exponentials
//      (SoftResponsibilities): the same operations on every value, so the same bits.
// For few features and means (d <= 3, K <= 32; d = 4 or 8, K <= L where registers allow) the
// hard E-step puts rows in the lanes instead (AssignGroupByLanes): per mean one vector of
// scores, a lane-wise running minimum, same bits;
// with K <= L it also keeps the sums and counts in registers, the means in the lanes
// (HardChunkByLanes), the same additions in the same order;
// for few means (K <= kTransposedMaxK) and more features it transposes L rows by L features at
// a time and does the same (AssignGroupTransposed), again the same bits. For very few means and
// many features (ByFeatures) the scores take the features in the lanes instead (DotRows): every
// row's and mean's product is lane-wise multiply-adds then the lanes summed; these scores are
// other bits than the row blocks', so every E-step (hard, soft, bounded) takes them for those
// shapes, and the hard E-step does all its steps a few rows at a time (HardGroupByFeatures).
// Vectors are vector extensions that GCC and clang both accept, of a width chosen for the target
// (see kVectorBytes); the compiler lowers them to its SIMD instructions (AVX-512, AVX/AVX2, NEON,
// SSE2) or to scalar code. One ISA intrinsic, AVX-512's two-table permute (PermuteLanes, which
// neither compiler's vector extensions express with a lane index known only at run time), is
// used where the target has it, and every other target takes the portable code beside it.
//
// Every block is cut into chunks of kChunk rows; each chunk's statistics are summed on their own,
// a block's chunks are added in order, and the blocks are added to the running total in order.
// The result is therefore the same, bit for bit, whether the blocks come in one call or one per
// call (the driver's scan adds block statistics in the same order), and whatever the number of
// threads of XLA's intra-op pool that ran the chunks.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "xla/ffi/api/ffi.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace ffi = xla::ffi;

namespace {

// The vector width and register blocks follow the target's vector registers: 32 of 64 bytes
// (AVX-512), 16 of 32 (AVX, AVX2), 32 of 16 (AArch64 NEON), 16 of 16 (SSE2, other targets, where
// the compiler may also lower the vectors to scalar code). A register block holds kRows x kPanel
// accumulators, plus kPanel vectors of means and one broadcast row value. kByFeaturesMinD: the
// fewest features for which few means take the features in the lanes (see its section below).
#if defined(__AVX512F__)
constexpr int kVectorBytes = 64;
constexpr int kPanel = 4;
constexpr int64_t kByFeaturesMinD = 128;
#elif defined(__AVX__)
constexpr int kVectorBytes = 32;
constexpr int kPanel = 2;
constexpr int64_t kByFeaturesMinD = 64;
#elif defined(__aarch64__)
constexpr int kVectorBytes = 16;
constexpr int kPanel = 4;
constexpr int64_t kByFeaturesMinD = 128;
#else
constexpr int kVectorBytes = 16;
constexpr int kPanel = 2;
constexpr int64_t kByFeaturesMinD = 128;
#endif
constexpr int kRows = 4;  // rows (components) per register block of the products
constexpr int kGroup = 32;    // rows per group: a multiple of kRows and of every lane count
constexpr int64_t kChunk = 2048;  // rows per unit of parallel work: a multiple of kGroup
constexpr int64_t kSliceRows = 8 * kGroup;  // soft E-step: rows per set before the next set
constexpr int kSumsGroups = 4;  // soft E-step: groups per call of GroupSums (SumsBatch)
constexpr int64_t kSharedSetBytes = int64_t{1} << 18;  // soft E-step: larger sets run alone
constexpr int kTransposedMaxK = 8;  // AssignGroupTransposed up to this many means (hard E-step)
constexpr int64_t kWindowBytes = int64_t{8} << 20;  // unit statistics held at once (see RunUnits)

template <typename T>
struct Simd;
template <>
struct Simd<float> {
  typedef float Vec __attribute__((vector_size(kVectorBytes)));
  typedef int32_t Mask __attribute__((vector_size(kVectorBytes)));
};
template <>
struct Simd<double> {
  typedef double Vec __attribute__((vector_size(kVectorBytes)));
  typedef int64_t Mask __attribute__((vector_size(kVectorBytes)));
};

template <typename T>
using Vec = typename Simd<T>::Vec;
template <typename T>
using Mask = typename Simd<T>::Mask;
template <typename T>
constexpr int kLanes = kVectorBytes / sizeof(T);

template <typename T>
inline Vec<T> Load(const T* p) {
  Vec<T> v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

template <typename T>
inline void Store(T* p, Vec<T> v) {
  std::memcpy(p, &v, sizeof(v));
}

// An empty asm that claims to change a vector: no instruction, the same bits, through memory
// where no vector register constraint is known.
#if defined(__AVX512F__)
#define GMMLIMIT_VECTOR_OPERAND "+v"
#elif defined(__x86_64__) || defined(__i386__)
#define GMMLIMIT_VECTOR_OPERAND "+x"
#elif defined(__aarch64__)
#define GMMLIMIT_VECTOR_OPERAND "+w"
#else
#define GMMLIMIT_VECTOR_OPERAND "+m"
#endif

// Pins the loaded vectors of a panel to registers for the loop that reuses them. GCC 12 otherwise
// folds the loads into every multiply-add that reads a vector (vfmadd231ps mem, ...), so
// ScoreBlock's register block of R rows by NV vectors issued R * NV + R loads per feature instead
// of NV + R, and with AVX2's two vector loads per cycle the loads, not the multiply-adds, set the
// pace (AMD EPYC, AVX2: one hard pass at (12755, 784, 512) 138.6 ms folded, 96.5 ms pinned;
// docs/benchmarks.md). With AVX-512 the same holds where two 512-bit multiply-adds issue per
// cycle (AMD Zen 5: 20 loads per 16 multiply-adds folded, 8 pinned; one hard pass at (156250, 64,
// 64) 8.3 ms folded, 6.0 ms pinned; docs/benchmarks.md, session 28). One empty asm that claims to
// change all NV vectors at once: no instruction, the same bits. A separate asm per vector (one
// operand each) made GCC 12 also store every loaded vector to the stack on every feature, an
// unused copy: NV 512-bit stores per R * NV multiply-adds, which on an AMD Zen 4 cost a sixth of
// the hard pass (one hard pass at (156250, 64, 512) float32 65.8 -> 54.3 ms; docs/benchmarks.md,
// session 36). SumsBlock pins its vectors of rows the same way (session 19's pin there, one asm
// per vector, did not measurably pay on AVX2; in one asm the soft pass on an AMD Zen 4 ran up to
// 9 % faster, level at D = 8). Only where measured (AVX, AVX2, AVX-512); elsewhere a no-op.
template <typename T, int NV>
inline void InRegisters(Vec<T> (&v)[NV]) {
  static_assert(1 <= NV && NV <= 4);
#if defined(__AVX512F__) || defined(__AVX__)
  if constexpr (NV == 1) {
    asm("" : GMMLIMIT_VECTOR_OPERAND(v[0]));
  } else if constexpr (NV == 2) {
    asm("" : GMMLIMIT_VECTOR_OPERAND(v[0]), GMMLIMIT_VECTOR_OPERAND(v[1]));
  } else if constexpr (NV == 3) {
    asm(""
        : GMMLIMIT_VECTOR_OPERAND(v[0]), GMMLIMIT_VECTOR_OPERAND(v[1]),
          GMMLIMIT_VECTOR_OPERAND(v[2]));
  } else {
    asm(""
        : GMMLIMIT_VECTOR_OPERAND(v[0]), GMMLIMIT_VECTOR_OPERAND(v[1]),
          GMMLIMIT_VECTOR_OPERAND(v[2]), GMMLIMIT_VECTOR_OPERAND(v[3]));
  }
#else
  (void)v;
#endif
}

// Hides how v was made from the compiler. Where paths promise each other's bits, it keeps a
// square from being fused into the addition that takes it (those paths round the square, then
// add).
template <typename T>
inline void Opaque(Vec<T>& v) {
  asm("" : GMMLIMIT_VECTOR_OPERAND(v));
}

// v as a value of its own: as Opaque, and volatile, so that two copies of one vector are never
// merged into one (the compiler may merge two non-volatile asm on the same input). At most a
// register move.
template <typename T>
inline Vec<T> OwnCopy(Vec<T> v) {
  asm volatile("" : GMMLIMIT_VECTOR_OPERAND(v));
  return v;
}

// sum + weights * x: a row's multiply-add into sums kept in registers, one lane per mean, the
// weights zero in the lanes of the other means. In the row's own lane this is the expression
// of adding into memory, and the same bits. In another lane it adds a zero (x is finite) and
// leaves the sum's value, though not always the sign of a zero sum (-0 + +0 is +0). That sign
// is never seen: FoldUnit adds every chunk's sums into totals that start at +0, and a zero
// added to +0 is +0. So no select is needed, and each row's additions wait on one multiply-add
// instead of a multiply-add and a select. The product is the call's own (OwnCopy): where
// several calls took the same weights and x (the sums of several means), clang computed the
// product once and rounded it apart from each addition, instead of one multiply-add each (other
// bits than GCC's and the memory path's).
template <typename T, typename X>
inline Vec<T> AddWeighted(const Vec<T>& sum, const Vec<T>& weights, X x) {
  return sum + OwnCopy<T>(weights) * x;
}

// Multiply-adds are written as one expression (acc += a * b), and the build passes
// -ffp-contract=fast to GCC and clang alike (GCC's default; clang's own fuses only within an
// expression) and --param=avoid-fma-max-bits=0 (GCC's tuning for AMD Zen otherwise splits the
// multiply-adds of loop-carried sums again; clang ignores it), so where the target has a fused
// multiply-add instruction both compilers fuse them. In the hard E-step every product feeds
// exactly one addition of its own expression, so GCC and clang builds for the same CPU give the
// same bits (checked by the tests); in the soft E-step some products also feed a store, and the
// compilers may decide differently whether to fuse those, so the builds agree there to within a
// few units in the last place.
// The first address at or after p on a whole vector's boundary (p from an array of T with at
// least kLanes<T> - 1 values to spare).
template <typename T>
inline T* AlignUp(T* p) {
  const auto address = reinterpret_cast<std::uintptr_t>(p);
  return reinterpret_cast<T*>((address + kVectorBytes - 1) & ~std::uintptr_t{kVectorBytes - 1});
}

inline int64_t RoundUp(int64_t value, int64_t multiple) {
  return (value + multiple - 1) / multiple * multiple;
}

// Asks the memory system for the cache line of base[offset], an address that may lie past base's
// array (the next group's rows, or none): a prefetch never faults, and the address is formed as an
// integer, never as a pointer past the array. Locality: 3 brings the line into the L1 cache, 2
// into the L2 cache (__builtin_prefetch's third argument).
template <int kLocality = 3, typename T>
inline void PrefetchAt(const T* base, int64_t offset) {
  const auto address = reinterpret_cast<std::uintptr_t>(base) + offset * int64_t{sizeof(T)};
  __builtin_prefetch(reinterpret_cast<const void*>(address), 0, kLocality);
}

// Values of T in a cache line, taken as 64 bytes (x86 and most AArch64 cores; where lines are 128
// bytes, as on Apple's cores, every other prefetch asks for a line already asked for).
template <typename T>
constexpr int64_t kLineValues = 64 / int64_t{sizeof(T)};

// ---------------------------------------------------------------------------------------------
// 1. Scores.

// Whether ScoreBlock pins its panel's vectors (InRegisters): always with AVX and AVX2; with
// AVX-512 for panels of several vectors. One-vector panels keep their vector in a register either
// way (GCC folds the row values instead: the same loop pinned or not). Float64 panels were left
// unpinned after session 28 (slower on AMD Zen 5 at (156250, 64, 64) and (12755, 784, 64), 12.5
// -> 14.9 and 9.9 -> 11.3 ms, measured with one asm per vector, which also kept stack copies);
// pinned in one asm they run faster on AMD Zen 4 (one hard pass at (156250, 64, 512) 144 -> 113
// ms, (12755, 784, 512) 139 -> 109 ms; docs/benchmarks.md, session 36).
template <typename T, int NV>
constexpr bool kPinPanel = kVectorBytes < 64 || NV > 1;

// scores[r][col ..] = bias - 2 <x_r, m> for R rows (row r at x + r * stride) and NV vectors of
// columns starting at col (panel: their means, feature by feature, NV vectors each), over the d
// real features (the padding features are zero: the sum over them would add exact zeros, so
// skipping them changes no bit and, for small d, most of the work). The rows are read from
// bases of up to 8 rows each: from one base, the 16 rows of a one-vector panel's block (K <= 16
// in float32 with AVX-512) needed 15 row offsets, and GCC 12 kept some on the stack and in vector
// registers, reloading them for every feature; from two, the same 8 offsets serve both.
// Measured (benchmarks/tuning/compilers.py --repeats 9 --loop 5 --spread 0, AMD Zen 5, one hard
// pass, ms, one base -> two, 2026-12-04): (156250, 64, 16) 1.68 -> 1.54 and 2.14 -> 1.73,
// (156250, 64, 12) 1.82 -> 1.54 and 1.60 -> 1.49, (12755, 784, 16) 1.51 -> 1.44, soft passes
// 3 to 6 % faster there; (625000, 16, 16) 3.28 -> 3.40, 3.27 -> 3.34, 3.22 -> 3.35 and
// (312500, 32, 16) 2.57 -> 2.54, 2.45 -> 2.59 (level to 5 % slower, where a block's loop over
// the features is short). The same bits. kAhead: at every kLineValues-th feature also ask for
// that line of each of the R rows `ahead` values past x (same stride) into the L2 cache
// (ScoreGroupInRuns: the next group's same rows; the address formed as an integer, as
// PrefetchAt does, since it may lie past the rows' array).
template <typename T, int R, int NV, bool kAhead = false>
inline void ScoreBlock(const T* x, int64_t d, int64_t stride, const T* panel, int64_t kp,
                       const T* bias, int64_t col, T* scores, bool first = true,
                       bool last = true, int64_t ahead = 0) {
  constexpr int L = kLanes<T>;
  Vec<T> acc[R][NV];
  constexpr int kBaseRows = R < 8 ? R : 8;
  const T* bases[R / kBaseRows];
  for (int b = 0; b < R / kBaseRows; ++b) bases[b] = x + b * kBaseRows * stride;
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v)
      acc[r][v] = first ? Vec<T>{} : Load<T>(scores + r * kp + col + v * L);
  for (int64_t j = 0; j < d; ++j) {
    if constexpr (kAhead)
      if (j % kLineValues<T> == 0)
        for (int r = 0; r < R; ++r) PrefetchAt<2>(x, ahead + r * stride + j);
    const T* row = panel + j * (NV * L);
    Vec<T> m[NV];
    for (int v = 0; v < NV; ++v) m[v] = Load<T>(row + v * L);
    if constexpr (kPinPanel<T, NV>) InRegisters<T, NV>(m);
    for (int r = 0; r < R; ++r) {
      const T xv = bases[r / kBaseRows][(r % kBaseRows) * stride + j];
      for (int v = 0; v < NV; ++v) acc[r][v] += xv * m[v];
    }
  }
  if (!last) {
    for (int v = 0; v < NV; ++v)
      for (int r = 0; r < R; ++r) Store<T>(scores + r * kp + col + v * L, acc[r][v]);
    return;
  }
  for (int v = 0; v < NV; ++v) {
    const Vec<T> b = Load<T>(bias + col + v * L);
    for (int r = 0; r < R; ++r) Store<T>(scores + r * kp + col + v * L, b - 2 * acc[r][v]);
  }
}

// ScoreBlock compiled as a function of its own, for rows of at least kApartMinD features.
// Inlined into AssignGroup, its loop over the features met the register pressure of the whole
// pass: GCC 12 kept three of the four row offsets of a block in vector registers and on the
// stack and moved them back to general registers on every feature (34 instructions per 16
// multiply-adds; clang 14's loop: 28, no stack). Apart it has the registers to itself; the call
// and its accumulators' start and end are paid once per block, which short rows do not repay.
// Measured (benchmarks/tuning/compilers.py --spread 0 --repeats 9 --loop 5, Intel Xeon with
// AVX-512, GCC 12.2, one hard pass, ms, inlined -> apart, each build twice, session 41): float32
// (156250, 64, 512) 41.12 / 40.95 -> 37.90 / 37.21, (156250, 64, 64) 5.73 / 5.64 -> 5.36 / 5.27,
// (312500, 32, 64) 6.24 / 6.31 -> 6.11 / 5.98; D < 32 (inlined either way) level: (500000, 3,
// 64) 4.54 / 4.79 -> 4.65 / 4.63. Level on the float32 soft pass ((156250, 64, 512) 99.42 /
// 99.00 -> 96.68 / 95.95) and on float64 ((156250, 64, 512) hard 74.84 / 76.68 -> 77.51 /
// 76.11), and at (12755, 784, 64). ScoreBlock apart at every d was not kept: at D = 3 it made
// the soft pass slower ((500000, 3, 64) 13.14 / 13.19 -> 14.36 / 14.09). The same bits
// (benchmarks/tuning/same_bits.py).
constexpr int64_t kApartMinD = 32;

template <typename T, int R, int NV>
__attribute__((noinline)) void ScoreBlockApart(const T* x, int64_t d, int64_t stride,
                                               const T* panel, int64_t kp, const T* bias,
                                               int64_t col, T* scores) {
  ScoreBlock<T, R, NV>(x, d, stride, panel, kp, bias, col, scores);
}

// Long rows are scored in runs of features whose part of the panel takes kScoreChunkBytes (128
// features of a panel of four 64-byte vectors): every block of the group's rows runs over one
// run before the next, so that part of the panel stays in the L1 cache over the group's blocks,
// where a panel over all the features (200 KB at d = 784, four vectors of float32) came from
// the L2 cache for every block of rows. Between runs each block's sums wait in its scores (the
// same multiply-adds in the same order, so the same bits); bias - 2 acc after the last run.
// Rows of at most twice a run are scored in one (the sums' extra store and load would not pay).
// Float32 only. Measured (benchmarks/tuning/compilers.py --spread 0 --repeats 9 --loop 3 --soft,
// Intel Xeon with AVX-512 (48 KB L1 data cache), GCC 12.2, one pass, ms, whole rows -> runs,
// each build twice, session 41): (12755, 784, 64) hard 8.53 / 8.18 -> 7.20 / 7.38, soft 13.26 /
// 13.00 -> 11.97 / 12.02; (12755, 784, 512) hard 52.40 / 55.02 -> 48.32 / 48.42, soft 103.77 /
// 107.67 -> 98.36 / 97.62; (500000, 3, 64) level; runs of 16 and 24 KB about the same as 32.
// Float64 did not gain ((12755, 784, 64) hard 12.66 / 12.97 -> 13.30, soft 21.98 / 22.42 ->
// 22.98). Not measured on a core with a 32 KB L1 data cache.
template <typename T>
constexpr int64_t kScoreChunkBytes = sizeof(T) == sizeof(float) ? int64_t{32} << 10 : 0;

// Calls f(std::integral_constant<int, n>{}, start) over [0, extent), a multiple of unit: in
// tiles of Max units, then once for the 1 .. Max - 1 units left, so register blocks of every size
// are compile-time constants.
template <int N, typename F>
inline void TileRest(int64_t units, int64_t start, F&& f) {
  if constexpr (N > 0) {
    if (units == N) {
      f(std::integral_constant<int, N>{}, start);
    } else {
      TileRest<N - 1>(units, start, f);
    }
  }
}

// Calls f(std::integral_constant<int, KC>{}) for KC == k, 1 <= k <= Max (nothing otherwise), so
// a function of a small count (means, features) gets it as a compile-time constant.
template <int Max, int KC = 1, typename F>
inline void WithCount(int64_t k, F&& f) {
  if constexpr (KC <= Max) {
    if (k == KC) {
      f(std::integral_constant<int, KC>{});
    } else {
      WithCount<Max, KC + 1>(k, f);
    }
  }
}

template <int Max, typename F>
inline void Tiles(int64_t extent, int64_t unit, F&& f) {
  int64_t start = 0;
  for (; start + Max * unit <= extent; start += Max * unit) f(std::integral_constant<int, Max>{}, start);
  TileRest<Max - 1>((extent - start) / unit, start, f);
}

// Rows per register block of the scores against NV vectors of columns: kRows rows against the
// widest panel, more when the panel is narrower (few means), so that a block keeps about
// kRows * kPanel independent accumulators in flight (enough to hide the multiply-add latency)
// and reuses each loaded vector of means over more rows. A power of two, dividing kGroup.
template <int NV>
constexpr int kScoreRows = kRows * (kPanel / NV >= 4 ? 4 : kPanel / NV >= 2 ? 2 : 1);

// Groups of at most this many bytes have the next group's rows prefetched while they are scored
// (ScoreGroup).
constexpr int64_t kPrefetchGroupBytes = int64_t{32} << 10;

// The bounded pass's bound test asks for the next group's rows spread over its read of a group
// (NearestRows' kAhead) where the group takes at least this many bytes, and row by row after
// each row's test where it takes fewer (see BoundedChunk).
constexpr int64_t kSpreadTestGroupBytes = int64_t{32} << 10;

// ScoreGroup of rows longer than twice the widest panel's run (a function of its own, so the
// inlined ScoreGroup of shorter rows is compiled as without runs: with the runs' loop inlined
// beside it, the AVX2 build's hard pass at (500000, 3, 64) took 7.19 ms instead of 5.78).
// Each panel in runs of its own length, or whole where its rows are at most twice that.
// While the first panel scores a block of rows (a run of them, or whole rows), ScoreBlock asks
// for the same features of the same rows of the next group (past the group, as ScoreGroup's
// prefetch) into the L2 cache, a line of each row every kLineValues features (ScoreBlock's
// kAhead): a group's rows are read run by run across its blocks, and without the requests the
// first panel's loads waited on those lines. The same bits (a prefetch changes no value).
// Measured (benchmarks/tuning/compilers.py --spread 0 --repeats 7 --loop 3 --soft, Intel Xeon
// with AVX-512, GCC 12.2, one pass, ms, each build twice): session 43 asked for a block's lines
// all at once before the block, only where rows are cut into runs: without -> with, (12755,
// 784, 64) hard 7.30 / 7.13 -> 6.20 / 6.55, soft 11.88 / 11.94 -> 11.27 / 11.18; (19531, 512,
// 64) hard 6.12 / 6.38 -> 5.57 / 5.63; so for whole rows (K <= 16 at d = 784) it made the hard
// pass slower (2.64 / 2.62 -> 3.08 / 3.09). In `perf` (session 44) 84 % of this function's own
// samples, 7 % of the pass, sat on those prefetches: 32 lines asked for at once waited on the
// core's line fill buffers. Spread over the block's features instead (--repeats 9, session 44),
// at once -> spread: (12755, 784, 64) hard 6.06 / 6.12 -> 5.70 / 5.74, soft 11.07 / 11.19 ->
// 10.39 / 10.49, bounded (--bounded 0.05) 6.94 / 6.65 -> 6.48 / 6.58; (12755, 784, 32) hard
// 3.95 / 3.93 -> 3.33 / 3.29, soft 6.37 / 6.27 -> 5.66 / 5.67; (19531, 512, 64) hard 5.45 / 5.41
// -> 5.12 / 5.13, soft 10.71 / 10.61 -> 10.01 / 10.12; (12755, 784, 512) level (the requests
// come with the first of eight panels); the AVX2 build level. Whole rows too, spread (against
// spread over runs only): (12755, 784, 16) hard 2.65 / 2.68 -> 2.41 / 2.36, soft 3.80 / 3.75 ->
// 3.40 / 3.39; (19531, 512, 16) hard 2.56 / 2.50 -> 2.28 / 2.33, soft 3.76 / 3.80 -> 3.55 / 3.48.
template <typename T>
__attribute__((noinline)) void ScoreGroupInRuns(const T* group, int64_t d, int64_t dp,
                                                const T* means_t, int64_t kp, const T* bias,
                                                T* scores) {
  Tiles<kPanel>(kp, kLanes<T>, [&](auto vectors, int64_t col) {
    constexpr int NV = decltype(vectors)::value, R = kScoreRows<NV>;
    constexpr int64_t chunk = kScoreChunkBytes<T> / (NV * kVectorBytes);
    const int64_t run = d > 2 * chunk ? chunk : d;
    for (int64_t j0 = 0; j0 < d; j0 += run) {
      const int64_t j1 = std::min(d, j0 + run);
      for (int r = 0; r < kGroup; r += R) {
        const T* rows = group + r * dp + j0;
        const T* panel = means_t + col * dp + j0 * NV * kLanes<T>;
        if (col == 0) {  // the next group's same rows asked for, spread over the features
          ScoreBlock<T, R, NV, true>(rows, j1 - j0, dp, panel, kp, bias, col, scores + r * kp,
                                     j0 == 0, j1 == d, kGroup * dp);
        } else {
          ScoreBlock<T, R, NV>(rows, j1 - j0, dp, panel, kp, bias, col, scores + r * kp,
                               j0 == 0, j1 == d);
        }
      }
    }
  });
}

// Scores (kGroup, kp) of the kGroup rows of a padded group (row stride dp), panel by panel of
// columns, each panel against all the rows (its means stay in cache meanwhile). A block of rows
// reads its rows feature by feature, a line of each row at a time; where rows are short the
// hardware's prefetch did not keep up with that order on an AMD Zen 4, so before each block of
// the first panel the same rows of the next group (past the group: the address formed as an
// integer) are asked for, line by line in address order, into the L2 cache. Measured, one hard
// pass, ms (benchmarks/tuning/compilers.py --spread 0 --repeats 5 --loop 3, session 37), without
// -> with: float32 (156250, 64, 16) 4.46 -> 2.94, (156250, 64, 32) 5.63 -> 4.56, (312500, 32,
// 16) 3.62 -> 3.30, (78125, 128, 16) 4.49 -> 3.20, (39062, 256, 16) 3.57 -> 3.18, (39062, 256,
// 64) 8.03 -> 7.56, (156250, 64, 64) and (156250, 64, 512) level; float64 (156250, 64, 16) 8.72
// -> 5.96, (156250, 64, 64) 17.12 -> 14.25, (312500, 32, 16) 8.19 -> 6.00. Slower for larger
// groups, whose long rows the hardware streams by itself: float32 (19531, 512, 16) 2.80 -> 3.01,
// (12755, 784, 16) 3.01 -> 3.49, float64 (12755, 784, 16) 6.28 -> 7.10; hence
// kPrefetchGroupBytes. The soft pass (the same ScoreGroup), float32: (156250, 64, 16) 6.62 ->
// 5.53, (78125, 128, 16) 6.81 -> 4.91, (156250, 64, 64) level (17.05 -> 17.92, the same build
// twice 17.05 and 17.62). The same bits (a prefetch changes no value). A group that LoadGroup
// copied (rows of d < dp features, or a chunk's last, partial group) has scratch values past it,
// not the next rows: those requests are wasted, and such rows are read in order by the copy.
template <typename T>
inline void ScoreGroup(const T* group, int64_t d, int64_t dp, const T* means_t, int64_t kp,
                       const T* bias, T* scores) {
  constexpr int64_t kWidestRun = kScoreChunkBytes<T> / (kPanel * kVectorBytes);
  if (kWidestRun > 0 && d > 2 * kWidestRun) {
    ScoreGroupInRuns<T>(group, d, dp, means_t, kp, bias, scores);
    return;
  }
  const bool prefetch_next = kGroup * dp * int64_t{sizeof(T)} <= kPrefetchGroupBytes;
  Tiles<kPanel>(kp, kLanes<T>, [&](auto vectors, int64_t col) {
    constexpr int NV = decltype(vectors)::value, R = kScoreRows<NV>;
    static_assert(kGroup % R == 0);
    for (int r = 0; r < kGroup; r += R) {
      if (prefetch_next && col == 0)
        for (int64_t e = 0; e < R * dp; e += kLineValues<T>)
          PrefetchAt<2>(group, (kGroup + r) * dp + e);
      if (d >= kApartMinD) {
        ScoreBlockApart<T, R, NV>(group + r * dp, d, dp, means_t + col * dp, kp, bias, col,
                                  scores + r * kp);
      } else {
        ScoreBlock<T, R, NV>(group + r * dp, d, dp, means_t + col * dp, kp, bias, col,
                             scores + r * kp);
      }
    }
  });
}

// ---------------------------------------------------------------------------------------------
// 2-3. Transpose-and-reduce networks over L vectors (one per row).
//
// Level h (h = L/2, L/4, .., 1) pairs vectors p, q into
//   first[i]  = (i & h) ? q[i - h] : p[i]
//   second[i] = (i & h) ? q[i]     : p[i + h]
// and combines first and second lane-wise. After all levels lane i holds row BitReverse(i).
// The shuffles have compile-time lane indices: __builtin_shufflevector where the compiler has it
// (clang, GCC >= 12), else GCC's __builtin_shuffle with a constant mask (older GCC), so the
// compiler picks the target's cheapest permutes (AVX-512, AVX2, NEON or scalar moves).

#if defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector)
#define GMMLIMIT_SHUFFLEVECTOR 1
#endif
#endif

// Lane i of the pair (p, q) taken by first / second at level h (q's lanes count from L).
constexpr int FirstLane(int i, int h, int lanes) { return (i & h) ? lanes + i - h : i; }
constexpr int SecondLane(int i, int h, int lanes) { return (i & h) ? lanes + i : i + h; }

// Lane i of the result is lane J_i of the pair (p, q), q's lanes counting from L: the one place
// that picks the compiler's shuffle builtin for the networks below.
template <typename T, int... J>
inline Vec<T> Shuffled(Vec<T> p, Vec<T> q) {
#ifdef GMMLIMIT_SHUFFLEVECTOR
  return __builtin_shufflevector(p, q, J...);
#else
  return __builtin_shuffle(p, q, Mask<T>{J...});
#endif
}

template <typename T, int H, int... I>
inline Vec<T> FirstOf(Vec<T> p, Vec<T> q, std::integer_sequence<int, I...>) {
  return Shuffled<T, FirstLane(I, H, kLanes<T>)...>(p, q);
}

template <typename T, int H, int... I>
inline Vec<T> SecondOf(Vec<T> p, Vec<T> q, std::integer_sequence<int, I...>) {
  return Shuffled<T, SecondLane(I, H, kLanes<T>)...>(p, q);
}

template <typename T>
using LaneSequence = std::make_integer_sequence<int, kLanes<T>>;

// The lane numbers 0 .. L-1 as values of T.
template <typename T, int... I>
inline Vec<T> IotaOf(std::integer_sequence<int, I...>) {
  return Vec<T>{static_cast<T>(I)...};
}

inline int BitReverse(int i, int bits) {
  int r = 0;
  for (int b = 0; b < bits; ++b) r |= ((i >> b) & 1) << (bits - 1 - b);
  return r;
}

template <typename T>
constexpr int kLaneBits = kLanes<T> == 16 ? 4 : kLanes<T> == 8 ? 3 : kLanes<T> == 4 ? 2 : 1;

// One level of the sum network: 2H vectors v[0 .. 2H) into H, then the levels below.
template <typename T, int H>
__attribute__((always_inline)) inline void SumLevels(Vec<T>* v) {
  for (int i = 0; i < H; ++i) {
    const Vec<T> p = v[2 * i], q = v[2 * i + 1];
    v[i] = FirstOf<T, H>(p, q, LaneSequence<T>{}) + SecondOf<T, H>(p, q, LaneSequence<T>{});
  }
  if constexpr (H > 1) SumLevels<T, H / 2>(v);
}

// out[r] = sum of the lanes of v[r], r < L. v is overwritten. Always inlined, as DotRows: GCC 12
// called both out of line, so the vectors went through the stack and LaneSums read back halves
// and lanes of vectors it had just stored (perf annotate on AMD Zen 3: a third of its samples on
// those loads). Inlined, one hard pass (benchmarks/tuning/compilers.py --repeats 9 --loop 5,
// float32, AVX2, best of 9, three runs) took 4.3 to 4.7 against 5.2 to 6.0 ms at (156250, 64, 5),
// 3.4 to 4.0 against 4.0 to 4.5 at (104166, 96, 5), 12.5 and 13.4 against 14.6 and 16.1 at
// (12755, 784, 64); the other shapes and the soft passes within the noise.
template <typename T>
__attribute__((always_inline)) inline void LaneSums(Vec<T>* v, T* out) {
  constexpr int L = kLanes<T>;
  SumLevels<T, L / 2>(v);
  for (int i = 0; i < L; ++i) out[BitReverse(i, kLaneBits<T>)] = v[0][i];
}

// One level of the minimum network: as SumLevels, with the lane-wise minimum for the sum.
template <typename T, int H>
inline void MinLevels(Vec<T>* v) {
  for (int i = 0; i < H; ++i) {
    const Vec<T> p = v[2 * i], q = v[2 * i + 1];
    const Vec<T> a = FirstOf<T, H>(p, q, LaneSequence<T>{});
    const Vec<T> b = SecondOf<T, H>(p, q, LaneSequence<T>{});
    v[i] = b < a ? b : a;
  }
  if constexpr (H > 1) MinLevels<T, H / 2>(v);
}

// out[r] = the smallest lane of v[r], r < L. v is overwritten.
template <typename T>
inline void LaneMins(Vec<T>* v, T* out) {
  constexpr int L = kLanes<T>;
  MinLevels<T, L / 2>(v);
  for (int i = 0; i < L; ++i) out[BitReverse(i, kLaneBits<T>)] = v[0][i];
}

// One level of the argmin network over (value, index) pairs: the lower value wins, then the
// lower index.
template <typename T, int H>
inline void ArgMinLevels(Vec<T>* value, Vec<T>* index) {
  for (int i = 0; i < H; ++i) {
    const Vec<T> pv = value[2 * i], qv = value[2 * i + 1];
    const Vec<T> pi = index[2 * i], qi = index[2 * i + 1];
    const Vec<T> av = FirstOf<T, H>(pv, qv, LaneSequence<T>{});
    const Vec<T> bv = SecondOf<T, H>(pv, qv, LaneSequence<T>{});
    const Vec<T> ai = FirstOf<T, H>(pi, qi, LaneSequence<T>{});
    const Vec<T> bi = SecondOf<T, H>(pi, qi, LaneSequence<T>{});
    const auto take = (bv < av) | ((bv == av) & (bi < ai));
    value[i] = take ? bv : av;
    index[i] = take ? bi : ai;
  }
  if constexpr (H > 1) ArgMinLevels<T, H / 2>(value, index);
}

// out[r] = first index of the minimum of (value[r], index[r]) pairs over lanes, r < L: the lower
// value wins, then the lower index. value and index are overwritten.
template <typename T>
inline void LaneArgMins(Vec<T>* value, Vec<T>* index, int32_t* out) {
  constexpr int L = kLanes<T>;
  ArgMinLevels<T, L / 2>(value, index);
  for (int i = 0; i < L; ++i) out[BitReverse(i, kLaneBits<T>)] = static_cast<int32_t>(index[0][i]);
}

// One level of the transpose network over L vectors: for every pair (v[i], v[i + H]) with bit H
// of i clear, FirstOf / SecondOf swap bit H of the vector index with bit H of the lane index.
// After all levels (H = L/2, .., 1) lane j of vector i holds what lane i of vector j held.
// Always inlined: GCC 12 called it out of line, passing the L vectors through the stack; inlined,
// a hard pass took 1.75 against 1.89 ms at (156250, 64, 5) and 0.90 against 0.96 ms at
// (250000, 8, 5) (float32, AVX-512, benchmarks/tuning/compilers.py --repeats 9 --loop 5).
template <typename T, int H>
__attribute__((always_inline)) inline void TransposeLevels(Vec<T>* v) {
  for (int i = 0; i < kLanes<T>; ++i) {
    if (i & H) continue;
    const Vec<T> p = v[i], q = v[i + H];
    v[i] = FirstOf<T, H>(p, q, LaneSequence<T>{});
    v[i + H] = SecondOf<T, H>(p, q, LaneSequence<T>{});
  }
  if constexpr (H > 1) TransposeLevels<T, H / 2>(v);
}

// Labels of L rows of scores (row stride kp): a lane-wise running minimum over each row's
// vectors (strict <, so the earlier vector keeps a tie), then LaneArgMins. Indices are held as T,
// exact while kp < 2^24 (checked by the caller).
template <typename T>
inline void ArgMinRows(const T* scores, int64_t kp, int32_t* labels) {
  constexpr int L = kLanes<T>;
  const Vec<T> iota = IotaOf<T>(LaneSequence<T>{});
  Vec<T> value[L], index[L];
  for (int r = 0; r < L; ++r) {
    const T* s = scores + r * kp;
    Vec<T> best = Load<T>(s), where = iota, pos = iota;
    for (int64_t c = L; c < kp; c += L) {
      pos += static_cast<T>(L);
      const Vec<T> cand = Load<T>(s + c);
      const auto lt = cand < best;
      best = lt ? cand : best;
      where = lt ? pos : where;
    }
    value[r] = best;
    index[r] = where;
  }
  LaneArgMins<T>(value, index, labels);
}

// ---------------------------------------------------------------------------------------------
// 3. The exponential of a vector of non-positive values (the soft E-step's only transcendental
// per element): x = n ln 2 + r with |r| <= ln 2 / 2, exp(r) by a polynomial, 2^n by the exponent
// bits. Values below the logarithm of the smallest normal number (and -inf) give 0.

template <typename T>
struct ExpConstants;
template <>
struct ExpConstants<float> {
  static constexpr float kLower = -87.3365447f;  // log(FLT_MIN)
  static constexpr float kRound = 12582912.0f;   // 1.5 * 2^23: adding it rounds to an integer
  static constexpr float kLn2Hi = 0.693359375f;
  static constexpr float kLn2Lo = -2.12194440e-4f;
  static constexpr int kBias = 127, kMantissa = 23;
  // exp(r) - 1 - r = r^2 (c0 + c1 r + ...), Cephes expf.
  static constexpr float kPoly[] = {5.0000001201e-1f, 1.6666665459e-1f, 4.1665795894e-2f,
                                    8.3334519073e-3f, 1.3981999507e-3f, 1.9875691500e-4f};
};
template <>
struct ExpConstants<double> {
  static constexpr double kLower = -708.39641853226408;  // log(DBL_MIN)
  static constexpr double kRound = 6755399441055744.0;   // 1.5 * 2^52
  static constexpr double kLn2Hi = 6.93145751953125e-1;
  static constexpr double kLn2Lo = 1.42860682030941723212e-6;
  static constexpr int kBias = 1023, kMantissa = 52;
  // exp(r) - 1 - r = r^2 (1/2! + r/3! + ... + r^11/13!): truncation below 1e-17 for |r| <= 0.35.
  static constexpr double kPoly[] = {1.0 / 2,         1.0 / 6,          1.0 / 24,
                                     1.0 / 120,       1.0 / 720,        1.0 / 5040,
                                     1.0 / 40320,     1.0 / 362880,     1.0 / 3628800,
                                     1.0 / 39916800,  1.0 / 479001600,  1.0 / 6227020800};
};

template <typename T>
inline Vec<T> ExpNonPositive(Vec<T> x) {
  using C = ExpConstants<T>;
  constexpr int kTerms = sizeof(C::kPoly) / sizeof(C::kPoly[0]);
  const auto underflow = x < C::kLower;
  x = underflow ? Vec<T>{} + C::kLower : x;
  const Vec<T> n = ((x * static_cast<T>(1.4426950408889634) + C::kRound) - C::kRound);
  const Vec<T> r = (x - n * C::kLn2Hi) - n * C::kLn2Lo;
  Vec<T> p = Vec<T>{} + C::kPoly[kTerms - 1];
  for (int i = kTerms - 2; i >= 0; --i) p = p * r + C::kPoly[i];
  p = p * (r * r) + r + static_cast<T>(1);
  const Mask<T> exponent = (__builtin_convertvector(n, Mask<T>) + C::kBias) << C::kMantissa;
  Vec<T> scale;
  std::memcpy(&scale, &exponent, sizeof(scale));
  const Vec<T> result = p * scale;
  return underflow ? Vec<T>{} : result;
}

// The natural logarithm of a vector (the soft E-step's totals of exponentials, each >= 1), in
// place of a call of the C library's `log` a row, whose branches go at random where about half the
// totals are exactly 1 (docs/benchmarks.md, "The logarithm of a row's total"). x = 2^e m with m in
// [sqrt(1/2), sqrt(2)), taken from the bits; f = m - 1 (exact), s = f / (2 + f), and
// log m = 2 atanh s = 2 s + 2 s^3 / 3 + ... = f - f^2 / 2 + s (f^2 / 2 + R), R = sum over n >= 1
// of 2 s^(2n) / (2n + 1), whose first kTerms terms reach past the last bit (|s| <= 0.1716).
// log 1 = +0 exactly. Lanes that are not positive normal finite numbers (never a total) take the
// library's log.
template <typename T>
struct LogConstants;
template <>
struct LogConstants<float> {
  static constexpr int kTerms = 4;          // the next term below 2^-28 of the result
  static constexpr int32_t kSqrtHalf = 0x3f3504f3;  // the bits of sqrt(1/2)
};
template <>
struct LogConstants<double> {
  static constexpr int kTerms = 10;  // the next term below 2^-59 of the result
  static constexpr int64_t kSqrtHalf = 0x3fe6a09e667f3bcd;
};

template <typename T>
inline Vec<T> LogPositive(Vec<T> x) {
  using C = LogConstants<T>;
  using E = ExpConstants<T>;
  constexpr int L = kLanes<T>;
  Mask<T> bits;
  std::memcpy(&bits, &x, sizeof(bits));
  // bits - bits(sqrt(1/2)): the exponent field is e, the rest m's mantissa bits less sqrt(1/2)'s.
  const Mask<T> shifted = bits - C::kSqrtHalf;
  const Mask<T> mantissa_bits =
      (shifted & ((Mask<T>{} + 1) << E::kMantissa) - 1) + C::kSqrtHalf;
  Vec<T> m;
  std::memcpy(&m, &mantissa_bits, sizeof(m));
  const Vec<T> e = __builtin_convertvector(shifted >> E::kMantissa, Vec<T>);
  const Vec<T> f = m - static_cast<T>(1);
  const Vec<T> s = f / (f + static_cast<T>(2));
  const Vec<T> z = s * s;
  Vec<T> series = Vec<T>{} + static_cast<T>(2) / static_cast<T>(2 * C::kTerms + 1);
  for (int n = C::kTerms - 1; n >= 1; --n)
    series = series * z + static_cast<T>(2) / static_cast<T>(2 * n + 1);
  const Vec<T> half_f2 = static_cast<T>(0.5) * f * f;
  const Vec<T> small = s * (half_f2 + series * z) + e * E::kLn2Lo;
  Vec<T> result = e * E::kLn2Hi - ((half_f2 - small) - f);
  const Mask<T> usual =
      (x >= std::numeric_limits<T>::min()) & (x <= std::numeric_limits<T>::max());
  bool any_unusual = false;
  for (int i = 0; i < L; ++i) any_unusual |= usual[i] == 0;
  if (any_unusual) {
    for (int i = 0; i < L; ++i)
      if (usual[i] == 0) result[i] = std::log(x[i]);
  }
  return result;
}

// out[i] = log(values[i]) for i < n, by LogPositive, vector by vector (the last one completed with
// ones).
template <typename T>
inline void LogsOf(const T* values, int64_t n, T* out) {
  constexpr int L = kLanes<T>;
  int64_t i = 0;
  for (; i + L <= n; i += L) Store<T>(out + i, LogPositive<T>(Load<T>(values + i)));
  if (i < n) {
    T tail[L];
    std::fill(tail, tail + L, T(1));
    std::copy(values + i, values + n, tail);
    Store<T>(tail, LogPositive<T>(Load<T>(tail)));
    std::copy(tail, tail + (n - i), out + i);
  }
}

// ---------------------------------------------------------------------------------------------
// Shared pieces of both E-steps.

// The transposed, zero-padded means (dp * kp values) and their squared norms (kp,; +inf on
// padded columns, so those never win the minimum) of one parameter set. The transposed means are
// stored panel by panel, as ScoreGroup reads them: the panel of columns [c0, c0 + w) (w = kPanel
// vectors, fewer for the last panel) holds feature j of column c at c0 * dp + j * w + (c - c0),
// so the scores read each panel's features from consecutive addresses.
template <typename T>
void PrepareMeans(const T* means, int64_t k, int64_t d, int64_t dp, int64_t kp, T* means_t,
                  T* bias, T* means_padded) {
  std::fill(means_t, means_t + dp * kp, T(0));
  std::fill(bias, bias + kp, std::numeric_limits<T>::infinity());
  std::fill(means_padded, means_padded + k * dp, T(0));
  constexpr int64_t kWidth = kPanel * kLanes<T>;
  for (int64_t c = 0; c < k; ++c) {
    const int64_t c0 = c / kWidth * kWidth, w = std::min(kWidth, kp - c0);
    T sq = 0;
    for (int64_t j = 0; j < d; ++j) {
      const T v = means[c * d + j];
      means_t[c0 * dp + j * w + (c - c0)] = v;
      means_padded[c * dp + j] = v;
      sq += v * v;
    }
    bias[c] = sq;
  }
}

// Rows [g, g + rows) of x (row length d) as a (kGroup, dp) group: x itself when it is already
// that shape, else a zero-padded copy in buffer. The caller zeroes buffer (kGroup * dp) once
// per chunk; only the d real features of each row are written here, so the padding features
// stay zero, and rows past `rows` (the chunk's last, partial group) are zeroed.
constexpr int kCopyMaxD = 8;  // LoadGroup copies rows of up to this many features without a loop

template <typename T, int N>
inline void CopyRows(const T* x, int64_t dp, int64_t rows, T* buffer) {
  for (int64_t r = 0; r < rows; ++r)
    for (int j = 0; j < N; ++j) buffer[r * dp + j] = x[r * N + j];
}

template <typename T>
inline const T* LoadGroup(const T* x, int64_t d, int64_t dp, int64_t g, int64_t rows, T* buffer) {
  if (d == dp && rows == kGroup) return x + g * d;
  // A row of a few features is copied without a loop over them (d a compile-time constant).
  const T* first = x + g * d;
  if (d <= kCopyMaxD) {
    WithCount<kCopyMaxD>(d, [&](auto dc) {
      CopyRows<T, decltype(dc)::value>(first, dp, rows, buffer);
    });
  } else {
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < d; ++j) buffer[r * dp + j] = first[r * d + j];
  }
  std::fill(buffer + rows * dp, buffer + kGroup * dp, T(0));
  return buffer;
}

// Exact squared distances |x_r - m_labels[r]|^2 of the kGroup rows of a padded group, from the
// differences; each row's value depends on that row and its mean alone (the same bits wherever
// the row sits in a group). kWithNorms: also each row's |x_r|^2 into norms, summed in T (within
// (d + 2) eps of the exact value), from the same read of the row. kAhead: at every kLineValues-th
// feature of row r also ask for ahead[ahead_at + r * ahead_stride + j] into the L2 cache (the
// bound test: the same line of the next group's row r; the address formed as an integer, as
// PrefetchAt does, since it may lie past the rows' array).
template <typename T, bool kWithNorms = false, bool kAhead = false>
inline void NearestRows(const T* group, int64_t dp, const T* means_padded, const int32_t* labels,
                        T* nearest, T* norms = nullptr, const T* ahead = nullptr,
                        int64_t ahead_at = 0, int64_t ahead_stride = 0) {
  constexpr int L = kLanes<T>;
  Vec<T> partial[L], squares[L];
  for (int r0 = 0; r0 < kGroup; r0 += L) {
    for (int r = 0; r < L; ++r) {
      const T* xr = group + (r0 + r) * dp;
      const T* mk = means_padded + labels[r0 + r] * dp;
      Vec<T> acc{}, sq{};
      for (int64_t j = 0; j < dp; j += L) {
        if constexpr (kAhead)
          if (j % kLineValues<T> == 0)
            PrefetchAt<2>(ahead, ahead_at + (r0 + r) * ahead_stride + j);
        const Vec<T> v = Load<T>(xr + j);
        const Vec<T> diff = v - Load<T>(mk + j);
        acc += diff * diff;
        if constexpr (kWithNorms) sq += v * v;
      }
      partial[r] = acc;
      squares[r] = sq;
    }
    LaneSums<T>(partial, nearest + r0);
    if constexpr (kWithNorms) LaneSums<T>(squares, norms + r0);
  }
}

// ---------------------------------------------------------------------------------------------
// Scores by features: for very few means and many features. With the means in the lanes
// (ScoreGroup) most lanes hold padding columns when K is well below L, and at hundreds of
// features a group of kGroup rows (100 KB at d = 784, float32) is read from the L2 cache once for
// the scores, again for the distances and again for the sums. With the features in the lanes
// every multiply-add is real work, and the hard E-step runs score, label, distance and sums over a
// few rows at a time while they are in the L1 cache. Used when d >= kByFeaturesMinD, K <=
// kByFeaturesMaxK and the means take at most kByFeaturesMeansBytes (they stay in the L1 cache with
// the sums and a few rows). Measured (benchmarks/tuning/compilers.py --loop 5 --soft, float32,
// AVX-512, 2 threads, against the row blocks / transposed rows): one pass at (12755, 784, 5) hard
// 2.82 to 2.25 ms, soft 3.87 to 2.97; (39062, 256, 5) hard 2.29 to 1.83, soft 4.03 to 2.48;
// (78125, 128, 5) hard level (2.10, 2.13), soft 3.59 to 2.79; slower at K = 8 (d = 256: 181 to
// 205 ns a row, one core), hence K <= 5. On AVX2 without AVX-512 (AMD EPYC, Zen 3) from d = 64:
// one pass, hard / soft ms, transposed rows against features in lanes, (156250, 64, K) K = 1:
// 2.99 / 6.13 to 2.60 / 5.51; K = 3: 5.14 / 8.07 to 3.70 / 6.03; K = 5: 8.90 / 9.72 to 5.65 /
// 8.24; (104166, 96, 5): 7.46 / 10.54 to 4.69 / 7.38; but slower at d = 32 ((312500, 32, 5) hard
// 4.79 to 9.06). On AVX-512 from d = 16 it was much slower (session 18), and d = 64 to 127 was not
// measured there, nor on other targets: they keep 128 (kByFeaturesMinD, set per target above).
constexpr int kByFeaturesMaxK = 5;
constexpr int64_t kByFeaturesMeansBytes = 16 << 10;

template <typename T>
inline bool ByFeatures(int64_t d, int64_t dp, int64_t k) {
  return d >= kByFeaturesMinD && k <= kByFeaturesMaxK &&
         k * dp * static_cast<int64_t>(sizeof(T)) <= kByFeaturesMeansBytes;
}

// Rows per block of DotRows against KC means: R * KC accumulators within the register budget
// (three halves of the row blocks' kRows * kPanel), R a power of two dividing kGroup and at most
// the lane count (HardGroupByFeatures sums the R rows' distances as the lanes of one vector; two
// lanes of float64 on 16-byte vectors).
template <typename T, int KC>
constexpr int kByFeaturesRows = std::min(kLanes<T>, (kRows * kPanel * 3 / 2) / KC >= 4   ? 4
                                                    : (kRows * kPanel * 3 / 2) / KC >= 2 ? 2
                                                                                         : 1);

// dots[r * KC + c] = <x_r, m_c> of R rows (row stride dp, zero padding features) and KC means
// (means_padded, stride dp): per row and mean, lane-wise multiply-adds over the dp features a
// vector at a time from zero, then the lanes summed by LaneSums. Each dot depends on its row and
// mean alone (the same bits wherever the row sits and whatever R). The same features of the next
// R rows are prefetched meanwhile, into the L2 cache: the rows stream from memory while these are
// scored. Into the L1 cache (until session 37) the same pass was slower on an AMD Zen 4 (one pass,
// ms, hard / soft, benchmarks/tuning/compilers.py --soft --spread 0 --repeats 5 --loop 3: float32
// (12755, 784, 5) 2.44 / 2.83 -> 1.91 / 2.41, (39062, 256, 5) 2.33 / 3.17 -> 1.68 / 2.43;
// float64 (39062, 256, 5) 4.89 / 5.86 -> 3.20 / 4.85; (78125, 128, 3) and float64 (12755, 784,
// 5) level; AVX2 (-mno-avx512f) (12755, 784, 5) 2.55 / 3.31 -> 2.12 / 2.82). Always inlined (see
// LaneSums).
template <typename T, int KC, int R>
__attribute__((always_inline)) inline void DotRows(const T* rows, int64_t dp, const T* means_padded,
                                                   T* dots) {
  constexpr int L = kLanes<T>;
  constexpr int kFilled = R * KC, kStaged = (kFilled + L - 1) / L * L;
  Vec<T> acc[R][KC];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < KC; ++c) acc[r][c] = Vec<T>{};
  for (int64_t j = 0; j < dp; j += L) {
    Vec<T> x[R];
    for (int r = 0; r < R; ++r) PrefetchAt<2>(rows, (R + r) * dp + j);
    for (int r = 0; r < R; ++r) x[r] = Load<T>(rows + r * dp + j);
    for (int c = 0; c < KC; ++c) {
      const Vec<T> m = Load<T>(means_padded + c * dp + j);
      for (int r = 0; r < R; ++r) acc[r][c] += x[r] * m;
    }
  }
  Vec<T> staged[kStaged];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < KC; ++c) staged[r * KC + c] = acc[r][c];
  for (int i = kFilled; i < kStaged; ++i) staged[i] = Vec<T>{};
  T sums[kStaged];
  for (int i = 0; i < kStaged; i += L) LaneSums<T>(staged + i, sums + i);
  std::copy(sums, sums + kFilled, dots);
}

// ScoreGroup's scores (kGroup, kp) of a padded group from DotRows: bias - 2 <x, m> for the KC
// means, the padded columns' bias (+inf) for the rest.
template <typename T, int KC>
inline void ScoreGroupByFeatures(const T* group, int64_t dp, const T* means_padded, const T* bias,
                                 int64_t kp, T* scores) {
  constexpr int R = kByFeaturesRows<T, KC>;
  T dots[R * KC];
  for (int r0 = 0; r0 < kGroup; r0 += R) {
    DotRows<T, KC, R>(group + r0 * dp, dp, means_padded, dots);
    for (int r = 0; r < R; ++r) {
      T* row = scores + (r0 + r) * kp;
      for (int c = 0; c < KC; ++c) row[c] = bias[c] - 2 * dots[r * KC + c];
      std::copy(bias + KC, bias + kp, row + KC);
    }
  }
}


// Scores, labels and exact squared distances of one padded group against one parameter set of k
// means. kWithNorms: also each row's |x|^2 into norms (NearestRows').
template <typename T, bool kWithNorms = false>
inline void AssignGroup(const T* group, int64_t d, int64_t dp, const T* means_t, const T* bias,
                        const T* means_padded, int64_t k, int64_t kp, T* scores, int32_t* labels,
                        T* nearest, T* norms = nullptr) {
  constexpr int L = kLanes<T>;
  if (ByFeatures<T>(d, dp, k)) {
    WithCount<kByFeaturesMaxK>(k, [&](auto kc) {
      ScoreGroupByFeatures<T, decltype(kc)::value>(group, dp, means_padded, bias, kp, scores);
    });
  } else {
    ScoreGroup<T>(group, d, dp, means_t, kp, bias, scores);
  }
  for (int r = 0; r < kGroup; r += L) ArgMinRows<T>(scores + r * kp, kp, labels + r);
  NearestRows<T, kWithNorms>(group, dp, means_padded, labels, nearest, norms);
}

// Labels and exact squared distances of the kGroup rows of a padded group (row stride dp) against
// KC means, with the rows in the lanes: L rows by L features at a time are transposed
// (TransposeLevels), then for each feature j every mean's accumulator takes x_j * m_cj across
// the L rows. For few means this does no work on padded columns and no horizontal step, and it
// gives AssignGroup's bits: each score is the same sequence of multiply-adds as in ScoreBlock
// (the real features in order, from zero) and bias - 2 acc as there; the running minimum over
// the means in order with strict < keeps the first index of the minimum, as ArgMinRows does;
// the distances come from NearestRows. Rows of the group past the chunk's end get labels that
// the caller ignores. Where a row is longer than a vector, the loads of L rows by L features
// jump from row to row, and on an AMD Zen 4 they waited on memory. Each step (L rows by L
// features) asks for the next L * L values of the next group, in address order, into the L2
// cache (PrefetchAt<2>; the address past the group is formed as an integer): the group's steps
// together cover the whole next group, a line at a time from its start, which the hardware's own
// stream prefetch follows. Measured, one hard pass, ms, AMD Zen 4 (benchmarks/tuning/compilers.py
// --spread 0 --repeats 5 --loop 3, session 37), the next L rows' same block into the L1 cache
// (session 36) -> this: float32 (156250, 64, 5) 2.85 -> 1.93, (156250, 64, 8) 3.17 -> 2.41,
// (78125, 128, 8) 3.20 -> 2.04, (39062, 256, 8) 2.19 -> 1.79, (12755, 784, 8) 2.30 -> 2.30;
// float64 (156250, 64, 5) 5.70 -> 2.92, (78125, 128, 8) 5.02 -> 3.43, (12755, 784, 8) 4.80 ->
// 4.24. The same order into the L1 cache gained about half as much at D = 64 and was slower at
// D = 784 (2.30 -> 2.98); AVX2 (-mno-avx512f) level. The same bits.
template <typename T, int KC>
inline void AssignGroupTransposed(const T* group, int64_t d, int64_t dp, const T* means_padded,
                                  const T* bias, int32_t* labels, T* nearest) {
  constexpr int L = kLanes<T>;
  alignas(kVectorBytes) T block[L * L];  // block[j * L + i]: feature j0 + j of row r0 + i
  for (int r0 = 0; r0 < kGroup; r0 += L) {
    Vec<T> acc[KC];
    for (int c = 0; c < KC; ++c) acc[c] = Vec<T>{};
    for (int64_t j0 = 0; j0 < d; j0 += L) {
      Vec<T> v[L];
      for (int i = 0; i < L; ++i) v[i] = Load<T>(group + (r0 + i) * dp + j0);
      if (d > L) {
        const int64_t step = (r0 / L) * (dp / L) + j0 / L;
        for (int64_t e = 0; e < L * L; e += kLineValues<T>)
          PrefetchAt<2>(group, kGroup * dp + step * (L * L) + e);
      }
      TransposeLevels<T, L / 2>(v);
      for (int j = 0; j < L; ++j) Store<T>(block + j * L, v[j]);
      const int64_t width = std::min<int64_t>(L, d - j0);
      for (int64_t j = 0; j < width; ++j) {
        const Vec<T> xj = Load<T>(block + j * L);
        for (int c = 0; c < KC; ++c) acc[c] += xj * means_padded[c * dp + j0 + j];
      }
    }
    Vec<T> best = bias[0] - 2 * acc[0], where{};
    for (int c = 1; c < KC; ++c) {
      const Vec<T> score = bias[c] - 2 * acc[c];
      const auto lt = score < best;
      best = lt ? score : best;
      where = lt ? Vec<T>{} + static_cast<T>(c) : where;
    }
    for (int i = 0; i < L; ++i) labels[r0 + i] = static_cast<int32_t>(where[i]);
  }
  NearestRows<T>(group, dp, means_padded, labels, nearest);
}


// Buffers kept by each thread from call to call, up to this size: a fresh vector of a few hundred
// kilobytes is a fresh mapping from the system, whose page faults and zeroing took about 5 % of
// the samples of a fit at (12755, 784, 16). Larger ones are allocated per call (their faults are
// a smaller part of their work), so that no thread holds much memory after a large fit.
constexpr size_t kKeptBufferBytes = size_t{4} << 20;

// A zeroed buffer of `size` values for this thread: its kept buffer `slot` (0 or 1) when small
// enough, else *fresh.
template <typename T>
T* ZeroedBuffer(int slot, int64_t size, std::vector<T>* fresh) {
  thread_local std::vector<T> kept[2];
  std::vector<T>& buffer = size * sizeof(T) <= kKeptBufferBytes ? kept[slot] : *fresh;
  buffer.assign(static_cast<size_t>(size), T(0));
  return buffer.data();
}

// Runs n_units units of work on the calling thread and up to workers - 1 tasks on XLA's intra-op
// pool, window by window; after each window, fold(u) is called for its units in order on the
// calling thread. work(u, slot, scratch) computes unit u into stats slot `slot` of the window.
template <typename T>
void RunUnits(ffi::ThreadPool& pool, int64_t n_units, int64_t stats_size, int64_t scratch_size,
              const std::function<void(int64_t, T*, T*)>& work,
              const std::function<void(int64_t, const T*)>& fold) {
  const int64_t workers = std::max<int64_t>(1, std::min<int64_t>(n_units, pool.num_threads()));
  // As many units per window as kWindowBytes of statistics hold (at least 4 per worker): each
  // window ends in a wait for its slowest unit, so fewer windows waste less.
  const int64_t per_window = kWindowBytes / static_cast<int64_t>(sizeof(T) * stats_size);
  const int64_t window = std::min<int64_t>(n_units, std::max<int64_t>(4 * workers, per_window));
  std::vector<T> fresh_slots;
  T* const slot_data = ZeroedBuffer<T>(0, window * stats_size, &fresh_slots);
  std::vector<std::vector<T>> scratch(static_cast<size_t>(workers));  // where not kept
  for (int64_t start = 0; start < n_units; start += window) {
    const int64_t count = std::min(window, n_units - start);
    // Units are claimed from a counter by the caller and the pool tasks; the caller waits until
    // every unit of the window is finished. A task that starts late finds none left and touches
    // nothing but the counters, which it co-owns.
    struct Shared {
      std::atomic<int64_t> next{0};
      std::atomic<int64_t> done{0};
      std::atomic<int64_t> thread{0};
    };
    auto shared = std::make_shared<Shared>();
    std::vector<T>* scratch_data = scratch.data();
    auto run = [shared, start, count, stats_size, scratch_size, slot_data, scratch_data, &work]() {
      int64_t u = shared->next.fetch_add(1, std::memory_order_relaxed);
      if (u >= count) return;
      T* const own = ZeroedBuffer<T>(
          1, scratch_size, &scratch_data[shared->thread.fetch_add(1, std::memory_order_relaxed)]);
      for (; u < count; u = shared->next.fetch_add(1, std::memory_order_relaxed)) {
        work(start + u, slot_data + u * stats_size, own);
        shared->done.fetch_add(1, std::memory_order_release);
      }
    };
    const int64_t helpers = std::min(workers, count) - 1;
    for (int64_t t = 0; t < helpers; ++t) pool.Schedule([run]() { run(); });
    run();
    while (shared->done.load(std::memory_order_acquire) < count) std::this_thread::yield();
    for (int64_t u = 0; u < count; ++u) fold(start + u, slot_data + u * stats_size);
  }
}

// Folds unit statistics into the totals: a block's chunks summed in order into block_acc, each
// finished block added to total. Both hold stats_size values; total starts at zero.
template <typename T>
inline void FoldUnit(int64_t unit, int64_t chunks_per_block, const T* stats, int64_t stats_size,
                     T* block_acc, T* total) {
  const int64_t chunk = unit % chunks_per_block;
  if (chunk == 0) {
    std::copy(stats, stats + stats_size, block_acc);
  } else {
    for (int64_t i = 0; i < stats_size; ++i) block_acc[i] += stats[i];
  }
  if (chunk == chunks_per_block - 1)
    for (int64_t i = 0; i < stats_size; ++i) total[i] += block_acc[i];
}

// The end of the rows of [begin, end) to compute: all but the run at the end that repeats row 0
// with weight 0 (never row 0 itself). Such runs are the fit driver's padding (the last block
// filled with weightless copies of the first row: 3629 of 16384 rows for 12755 rows in blocks of
// 4096), and leaving one out is exact whatever the rows are: a repeat of row 0 gets row 0's
// label and distance (each row's depend on that row and the means alone; CopyRowZero writes
// them), and a row of weight 0 adds exact zeros to every statistic (a sum starts at +0 and is
// never -0, so adding a zero of either sign leaves its bits). Each chunk looks at its own rows,
// in the pool's units; where there is no such run it costs one comparison of a weight.
template <typename T>
int64_t RowsEnd(const T* x, const T* w, int64_t d, int64_t begin, int64_t end) {
  const int64_t first = std::max<int64_t>(begin, 1);
  while (end > first && w[end - 1] == T(0) &&
         std::memcmp(x + (end - 1) * d, x, static_cast<size_t>(d) * sizeof(T)) == 0)
    --end;
  return end;
}

// Rows of the problem left out as repeats of row 0 (see RowsEnd): [begin[u], end[u]) per unit.
struct LeftOut {
  std::vector<int64_t> begin, end;
};

// The statistics (stats_size values) of n_blocks blocks of b rows (weights w, n_blocks * b),
// summed as the driver's scan sums them: chunk(begin, end, stats, scratch) computes rows
// [begin, end) of one chunk of a block, the repeats of row 0 at its end left out (see RowsEnd;
// their ranges in *left_out); a block's chunks are added in order, and the blocks in order.
// x holds the first `rows` rows (1 <= rows <= n_blocks * b, row length d); the blocks' rows past
// them are padding that is not in memory: repeats of row 0 with weight 0, left out as RowsEnd
// leaves out such rows that are in memory (the same statistics, bit for bit). So the fit driver
// passes its rows in place, and XLA does not copy them into padded blocks for every fit.
template <typename T, typename F>
std::vector<T> RunBlocks(ffi::ThreadPool& pool, int64_t n_blocks, int64_t b, int64_t rows,
                         const T* x, const T* w, int64_t d, int64_t stats_size,
                         int64_t scratch_size, LeftOut* left_out, F&& chunk) {
  const int64_t chunks_per_block = std::max<int64_t>(1, (b + kChunk - 1) / kChunk);
  const int64_t n_units = n_blocks * chunks_per_block;
  left_out->begin.assign(n_units, 0);
  left_out->end.assign(n_units, 0);
  std::vector<T> block_acc(stats_size), total(stats_size, T(0));
  RunUnits<T>(
      pool, n_units, stats_size, scratch_size,
      [&](int64_t unit, T* stats, T* scratch) {
        const int64_t block = unit / chunks_per_block, part = unit % chunks_per_block;
        const int64_t begin = block * b + part * kChunk;
        const int64_t end = block * b + std::min(b, (part + 1) * kChunk);
        const int64_t in_memory = std::min(end, rows);
        const int64_t computed_end = begin < in_memory ? RowsEnd<T>(x, w, d, begin, in_memory)
                                                       : begin;
        left_out->begin[unit] = computed_end;
        left_out->end[unit] = end;
        chunk(begin, computed_end, stats, scratch);
      },
      [&](int64_t unit, const T* stats) {
        FoldUnit<T>(unit, chunks_per_block, stats, stats_size, block_acc.data(), total.data());
      });
  return total;
}

// Row 0's values (`width` per row) into the rows RunBlocks left out.
template <typename V>
void CopyRowZero(const LeftOut& left_out, int64_t width, V* values) {
  for (size_t u = 0; u < left_out.begin.size(); ++u)
    for (int64_t i = left_out.begin[u]; i < left_out.end[u]; ++i)
      std::copy(values, values + width, values + i * width);
}

// AssignGroupByLanes up to these sizes, AssignGroup beyond. Measured (one core, float32, AVX-512,
// benchmarks/tuning/compilers.py): faster by 25 to 35 % at (d, k) = (1, 3), (2, 8), (3, 5), the
// same at (2, 32), 3 to 11 % slower at (4, 8), (4, 16), (8, 16) and twice as slow at (16, 32)
// (these with each row's features loaded a value at a time; 4 and 8 features take
// FeaturesInLanes' swap network since session 32, see kByLanesD). At most the lane count too:
// AssignGroupByLanes holds a row's d features in d vectors of L rows (two float64 lanes on
// 16-byte vectors).
template <typename T>
constexpr int kByLanesMaxD = std::min(8, kLanes<T>);
constexpr int64_t kByLanesMaxK = 32;

// The feature counts that AssignGroupByLanes takes: up to 3, and the powers of two 4 and 8 whose
// rows FeaturesInLanes moves into the lanes by a swap network (at most the lane count), where the
// loop's 2 D + 4 vectors (features, the chosen mean's features, the best score, its index, a
// score) fit in the target's vector registers, and those only for K <= L (the means' sums in the
// lanes). Measured (benchmarks/tuning/compilers.py --repeats 9 --loop 5 --spread 0, AMD Zen 5,
// one hard pass, ms, against the transposed rows or the row blocks, 2026-12-04):
//   AVX-512 float32: (250000, 8, 5) 0.68 -> 0.40 and 0.74 -> 0.42, (250000, 8, 16) 0.88 -> 0.62,
//     (500000, 4, 5) 1.30 -> 0.44, (500000, 4, 8) 1.61 -> 0.50, (500000, 4, 16) 1.52 -> 0.64;
//     K > L: (250000, 8, 24) 1.02 -> 0.93, (250000, 8, 32) 1.02 -> 1.10 (left out);
//   AVX-512 float64: (250000, 8, 5) 0.71 -> 0.55, (250000, 8, 8) 0.94 -> 0.70, (500000, 4, 4)
//     1.24 -> 0.60, (500000, 4, 8) 1.93 -> 0.76;
//   AVX2 (-march=haswell) float32: (500000, 4, 5) 0.98 -> 0.63, (500000, 4, 8) 1.43 -> 0.83,
//     but (250000, 8, 5) 0.54 -> 0.58 and (250000, 8, 16) 0.79 -> 1.35 (20 vectors in 16
//     registers: left out), K > L (500000, 4, 16) 1.34 -> 1.46; float64 (500000, 4, 4) level.
#if defined(__AVX512F__) || defined(__aarch64__)
constexpr int kVectorRegisters = 32;
#else
constexpr int kVectorRegisters = 16;
#endif

template <typename T, int D>
constexpr bool kByLanesD = D >= 1 && D <= kByLanesMaxD<T> &&
                           (D <= 3 || ((D == 4 || D == 8) && 2 * D + 4 <= kVectorRegisters));

template <typename T>
inline bool ByLanes(int64_t d, int64_t k) {
  bool by_lanes = false;
  WithCount<kByLanesMaxD<T>>(d, [&](auto dc) { by_lanes = kByLanesD<T, decltype(dc)::value>; });
  return by_lanes && k <= (d <= 3 ? kByLanesMaxK : int64_t{kLanes<T>});
}

// The lane-wise sum of D <= L vectors of squares in the order of the level network over L vectors
// (h = L/2, .., 1: v[i] += v[i + h]) that LaneSums' network follows, the vectors from D on being
// zero: the levels that add one of those add +0 to a sum of squares (never -0), which leaves its
// bits, so they are left out. Hence (sq0 + sq2) + sq1 for D = 3 (L >= 4), and ((sq0 + sq4) +
// (sq2 + sq6)) + ((sq1 + sq5) + (sq3 + sq7)) for D = 8. sq is overwritten.
template <typename T, int D>
inline Vec<T> SquaresInLaneSumsOrder(Vec<T>* sq) {
  static_assert(1 <= D && D <= kLanes<T>);
  for (int h = kLanes<T> / 2; h >= 1; h /= 2)
    for (int i = 0; i < h && i + h < D; ++i) sq[i] = sq[i] + sq[i + h];
  return sq[0];
}

// Feature j of rows r0 .. r0 + L - 1 in the lanes, from the D vectors v that hold those rows one
// after another (row i's feature j at position i * D + j, counting v[0]'s lanes from 0, v[1]'s
// from L, ...): lane i of the shuffle of (p, q) at step 0 (p = v[0], q = v[1]) takes position
// i * D + j where it is below 2L; at step 1 (p = step 0's vector, q = v[2], D = 3) it keeps lane i
// or takes the position from v[2].
constexpr int FeatureLane(int i, int j, int d, int step, int lanes) {
  return step == 0 ? (i * d + j < 2 * lanes ? i * d + j : 0)
                   : (i * d + j < 2 * lanes ? i : i * d + j - lanes);
}

template <typename T, int D, int J, int Step, int... I>
inline Vec<T> FeatureOf(Vec<T> p, Vec<T> q, std::integer_sequence<int, I...>) {
  return Shuffled<T, FeatureLane(I, J, D, Step, kLanes<T>)...>(p, q);
}

// The swap network of FeaturesInLanes for D = 2^A features, L = 2^B lanes (A <= B). The L rows
// (row r, feature j at position r * D + j) fill D vectors: vector bit i holds bit B - A + i of r,
// lane bit i bit i of j (i < A) and bit i - A of r (i >= A). Step s (1 .. A) swaps vector bit
// s - 1 with lane bit s - 1, two shuffles per pair of vectors; after step s, vector bit i holds
// j's bit i and lane bit i r's bit B - A + i (i < s). The last step also orders the lanes, so that
// vector j, lane r holds row r's feature j. SwapVector and SwapLane: where (r, j) lies after step
// s; SwapRow and SwapFeature: which (r, j) lies at vector v, lane l after step s.
constexpr int BitOf(int x, int i) { return (x >> i) & 1; }

constexpr int SwapVector(int r, int j, int s, int a, int b) {
  int v = 0;
  for (int i = 0; i < a; ++i) v |= (i < s ? BitOf(j, i) : BitOf(r, b - a + i)) << i;
  return v;
}

constexpr int SwapLane(int r, int j, int s, int a, int b) {
  int l = 0;
  for (int i = 0; i < b; ++i)
    l |= (i < s ? BitOf(r, b - a + i) : i < a ? BitOf(j, i) : BitOf(r, i - a)) << i;
  return l;
}

constexpr int SwapRow(int v, int l, int s, int a, int b) {
  if (s == a) return l;
  int r = 0;
  for (int i = 0; i < a; ++i) r |= (i < s ? BitOf(l, i) : BitOf(v, i)) << (b - a + i);
  for (int i = 0; i < b - a; ++i) r |= BitOf(l, i + a) << i;
  return r;
}

constexpr int SwapFeature(int v, int l, int s, int a) {
  if (s == a) return v;
  int j = 0;
  for (int i = 0; i < a; ++i) j |= (i < s ? BitOf(v, i) : BitOf(l, i)) << i;
  return j;
}

// Lane l of vector v after step s, as an index into the pair (vectors with bit s - 1 of their
// index clear, then set; the second's lanes counting from 2^b).
constexpr int SwapSource(int v, int l, int s, int a, int b) {
  const int r = SwapRow(v, l, s, a, b), j = SwapFeature(v, l, s, a);
  return (BitOf(SwapVector(r, j, s - 1, a, b), s - 1) << b) + SwapLane(r, j, s - 1, a, b);
}

template <typename T, int V, int S, int A, int... I>
inline Vec<T> SwapOf(Vec<T> p, Vec<T> q, std::integer_sequence<int, I...>) {
  return Shuffled<T, SwapSource(V, I, S, A, kLaneBits<T>)...>(p, q);
}

template <typename T, int D, int S, int A, int V = 0>
__attribute__((always_inline)) inline void SwapStep(const Vec<T>* v, Vec<T>* out) {
  if constexpr (V < D) {
    constexpr int H = 1 << (S - 1);
    if constexpr ((V & H) == 0) {
      out[V] = SwapOf<T, V, S, A>(v[V], v[V + H], LaneSequence<T>{});
      out[V + H] = SwapOf<T, V + H, S, A>(v[V], v[V + H], LaneSequence<T>{});
    }
    SwapStep<T, D, S, A, V + 1>(v, out);
  }
}

template <typename T, int D, int A, int S = 1>
__attribute__((always_inline)) inline void SwapSteps(Vec<T>* v) {
  if constexpr (S <= A) {
    Vec<T> out[D];
    SwapStep<T, D, S, A>(v, out);
    for (int i = 0; i < D; ++i) v[i] = out[i];
    SwapSteps<T, D, A, S + 1>(v);
  }
}

// xs[j][i] = x[i * D + j] for the L rows at x (all L present): D whole-vector loads and shuffles
// in place of L * D loads of single values. Moves values only (the same bits).
template <typename T, int D>
inline void FeaturesInLanes(const T* x, Vec<T>* xs) {
  constexpr int L = kLanes<T>;
  Vec<T> v[D];
  for (int j = 0; j < D; ++j) v[j] = Load<T>(x + j * L);
  if constexpr (D == 4 || D == 8) {
    static_assert(D <= L);
    SwapSteps<T, D, D == 4 ? 2 : 3>(v);
    for (int j = 0; j < D; ++j) xs[j] = v[j];
  } else if constexpr (D == 1) {
    xs[0] = v[0];
  } else if constexpr (D == 2) {
    xs[0] = FeatureOf<T, 2, 0, 0>(v[0], v[1], LaneSequence<T>{});
    xs[1] = FeatureOf<T, 2, 1, 0>(v[0], v[1], LaneSequence<T>{});
  } else {
    static_assert(D == 3);
    xs[0] = FeatureOf<T, 3, 0, 1>(FeatureOf<T, 3, 0, 0>(v[0], v[1], LaneSequence<T>{}), v[2],
                                  LaneSequence<T>{});
    xs[1] = FeatureOf<T, 3, 1, 1>(FeatureOf<T, 3, 1, 0>(v[0], v[1], LaneSequence<T>{}), v[2],
                                  LaneSequence<T>{});
    xs[2] = FeatureOf<T, 3, 2, 1>(FeatureOf<T, 3, 2, 0>(v[0], v[1], LaneSequence<T>{}), v[2],
                                  LaneSequence<T>{});
  }
}

// Where AssignGroupByLanes takes a whole group's features by FeaturesInLanes rather than value by
// value. One pass, float32, AVX2 (AMD EPYC), one core, best of 15 (benchmarks/tuning/compilers.py
// --loop 5 --spread 0, two runs): (250000, 3, 5) 2.19 and 1.86 against 2.64 and 2.26 ms, (250000,
// 1, 5) level; at D = 2 the shuffles were 0 to 20 % slower (GCC 12), so D = 2 loads the values.
template <int D>
constexpr bool kShuffledFeatures = D != 2;

// The lanes of the pair (low, high) that index picks, lane by lane (0 .. L - 1 from low, L ..
// 2 L - 1 from high): one permute on AVX-512 (vpermt2ps, vpermt2pd). Elsewhere kLanePermute is
// false and the callers carry the values along instead.
#if defined(__AVX512F__)
constexpr bool kLanePermute = true;
inline Vec<float> PermuteLanes(Vec<float> low, Vec<float> high, Mask<float> index) {
  return _mm512_permutex2var_ps(low, (__m512i)index, high);
}
inline Vec<double> PermuteLanes(Vec<double> low, Vec<double> high, Mask<double> index) {
  return _mm512_permutex2var_pd(low, (__m512i)index, high);
}
#else
constexpr bool kLanePermute = false;
#endif

// The lanes of a vector of T as int32 values (L of them), for the labels.
template <typename T>
struct LabelLanes {
  typedef int32_t Vec __attribute__((vector_size(4 * kLanes<T>)));
};

// Labels and exact squared distances of rows [0, rows) of x (row length D <= L, rows <= kGroup)
// against k means, with the rows in the lanes: for each mean, one vector of L rows' scores, a
// lane-wise running minimum and the chosen mean's features carried along, so no horizontal step
// and no padded columns. For few features and few means (see kByLanesMaxK) this is cheaper than
// AssignGroup's row-by-row blocks, and it gives the same bits: each score is the same sequence of
// multiply-adds over the features, ties go to the lowest index (strict <, means in order), and
// the squared distances are summed in the order in which LaneSums adds the lanes of one vector
// (SquaresInLaneSumsOrder). D is a compile-time constant, so the D vectors of features and of the
// chosen mean stay in registers. kByIndex (AVX-512, k <= 2 L): the chosen mean's features are not
// carried through the loop over the means (D blends per mean) but picked once at the end by each
// lane's index from lane_means (2 D vectors: lane_means[2 j + h] holds feature j of means h L ..
// h L + L - 1), D permutes in all; the same values, so the same bits. Measured, one hard pass, ms
// (benchmarks/tuning/compilers.py --spread 0 --repeats 5 --loop 3, AMD Zen 4, session 37),
// carried -> picked: float32 (250000, 8, 16) 1.58 -> 1.18 (clang 14: 1.62 -> 1.07), (250000, 8,
// 5) 0.98 -> 0.90, (500000, 4, 16) 1.82 -> 1.41, (500000, 2, 32) 1.70 -> 1.28, (1000000, 2, 8)
// 1.97 -> 1.84; float64 (250000, 8, 8) 1.66 -> 1.34, (500000, 4, 8) 1.93 -> 1.57, (500000, 2,
// 16) 1.81 -> 1.53.
template <typename T, int D, bool kByIndex = false>
inline void AssignGroupByLanes(const T* x, int64_t rows, const T* means_padded, int64_t dp,
                               const T* bias, int64_t k, int32_t* labels, T* nearest,
                               const Vec<T>* lane_means = nullptr) {
  constexpr int L = kLanes<T>;
  static_assert(kByLanesD<T, D>);
  for (int r0 = 0; r0 < kGroup; r0 += L) {
    Vec<T> xs[D];  // xs[j][i]: feature j of row r0 + i (0 past the last row)
    if (kShuffledFeatures<D> && r0 + L <= rows) {
      FeaturesInLanes<T, D>(x + r0 * D, xs);
    } else {
      for (int j = 0; j < D; ++j) xs[j] = Vec<T>{};
      for (int i = 0; i < L && r0 + i < rows; ++i)
        for (int j = 0; j < D; ++j) xs[j][i] = x[(r0 + i) * D + j];
    }
    auto score = [&](int64_t c) {
      const T* mc = means_padded + c * dp;
      Vec<T> acc{};
      for (int j = 0; j < D; ++j) acc += xs[j] * mc[j];
      return bias[c] - 2 * acc;
    };
    Vec<T> best = score(0), where{}, chosen[D];  // chosen[j]: feature j of each lane's mean so far
    if constexpr (!kByIndex)
      for (int j = 0; j < D; ++j) chosen[j] = Vec<T>{} + means_padded[j];
    for (int64_t c = 1; c < k; ++c) {
      const T* mc = means_padded + c * dp;
      const Vec<T> score_c = score(c);
      const auto lt = score_c < best;
      best = lt ? score_c : best;
      where = lt ? Vec<T>{} + static_cast<T>(c) : where;
      if constexpr (!kByIndex)
        for (int j = 0; j < D; ++j) chosen[j] = lt ? Vec<T>{} + mc[j] : chosen[j];
    }
    if constexpr (kByIndex) {
      const Mask<T> index = __builtin_convertvector(where, Mask<T>);
      for (int j = 0; j < D; ++j)
        chosen[j] = PermuteLanes(lane_means[2 * j], lane_means[2 * j + 1], index);
    }
    Vec<T> sq[D];
    for (int j = 0; j < D; ++j) {
      const Vec<T> diff = xs[j] - chosen[j];
      sq[j] = diff * diff;
      Opaque<T>(sq[j]);  // as NearestRows' lanes: each square rounded, then summed
    }
    const Vec<T> total = SquaresInLaneSumsOrder<T, D>(sq);
    const auto label_lanes = __builtin_convertvector(where, typename LabelLanes<T>::Vec);
    std::memcpy(labels + r0, &label_lanes, sizeof(label_lanes));
    Store<T>(nearest + r0, total);
  }
}

// sums_k += weight * x_r over the first n features of one row: one multiply-add per feature, in
// whole vectors where L features fit and one value at a time for the rest (the same bits either
// way: each lane is the scalar expression). With n = dp on a padded row (zero padding features)
// the padding sums take weight * 0 and stay 0.
template <typename T>
inline void AddWeightedRow(T* __restrict sk, const T* __restrict xr, T weight, int64_t n) {
  constexpr int L = kLanes<T>;
  int64_t j = 0;
  for (; j + L <= n; j += L) Store(sk + j, Load(sk + j) + weight * Load(xr + j));
  for (; j < n; ++j) sk[j] += weight * xr[j];
}

// AddWeightedRow over N <= L features (the rows in the lanes), one value at a time, N a
// compile-time constant: each value is the expression of AddWeightedRow's lanes.
template <typename T, int N>
inline void AddWeightedRowOf(T* __restrict sk, const T* __restrict xr, T weight) {
  static_assert(N <= kLanes<T>);
  for (int j = 0; j < N; ++j) sk[j] += weight * xr[j];
}

// ---------------------------------------------------------------------------------------------
// Hard E-step.

// Where a group's labels and distances go: a whole group's straight into the outputs at the
// group's rows; a last group of fewer rows into arrays of its own (the assignments write all
// kGroup values), copied into the outputs by Finish. The hard paths read them back from there
// for each row's statistics. Copied row by row into the outputs from arrays on the stack,
// between the loads of each row's weight and features, the stores stalled those loads, by how
// much depending on where the arrays lay (a store and a later load 4 KiB apart look alike to
// the CPU's memory ordering; a guess: no hardware counters were at hand). One pass at
// (250000, 2, 5), one core of an AMD EPYC, fresh copies of the blocks
// (benchmarks/tuning/placement.py): 1.45 to 1.9 ms so (five copies), 0.92 to 0.95 ms now (six).
template <typename T>
class GroupOutputs {
 public:
  GroupOutputs(int32_t* labels_out, T* nearest_out, int64_t rows)
      : labels(rows == kGroup ? labels_out : own_labels_),
        nearest(rows == kGroup ? nearest_out : own_nearest_),
        labels_out_(labels_out),
        nearest_out_(nearest_out),
        rows_(rows) {}
  GroupOutputs(const GroupOutputs&) = delete;
  GroupOutputs& operator=(const GroupOutputs&) = delete;

  void Finish() {
    if (rows_ == kGroup) return;
    std::copy(own_labels_, own_labels_ + rows_, labels_out_);
    std::copy(own_nearest_, own_nearest_ + rows_, nearest_out_);
  }

  int32_t* const labels;  // kGroup labels
  T* const nearest;       // kGroup squared distances

 private:
  int32_t own_labels_[kGroup];
  T own_nearest_[kGroup];
  int32_t* const labels_out_;
  T* const nearest_out_;
  const int64_t rows_;
};

// HardChunk's work on the first `rows` rows of a padded group (row stride dp) for ByFeatures
// shapes, R rows at a time while they are in the L1 cache: DotRows, the first index of the least
// score (strict <, means in order: ArgMinRows' label, the scores being finite), the exact squared
// distance with NearestRows' operations (each row's multiply-adds in order, the lanes summed by
// LaneSums), then the row's weighted sums, count and distortion in row order (HardChunk's
// expressions). So the same bits as AssignGroup with HardChunk's additions.
template <typename T, int KC>
inline void HardGroupByFeatures(const T* group, int64_t dp, const T* means_padded, const T* bias,
                                const T* w, int64_t rows, T* sums, T* counts, T* distortion,
                                int32_t* labels, T* nearest) {
  constexpr int L = kLanes<T>, R = kByFeaturesRows<T, KC>;
  static_assert(R <= L && kGroup % R == 0);
  T dots[R * KC];
  int32_t label[R];
  for (int64_t r0 = 0; r0 < rows; r0 += R) {
    const T* block = group + r0 * dp;
    DotRows<T, KC, R>(block, dp, means_padded, dots);
    Vec<T> partial[L];
    const T* chosen[R];
    for (int r = 0; r < R; ++r) {
      T best = bias[0] - 2 * dots[r * KC];
      int32_t where = 0;
      for (int c = 1; c < KC; ++c) {
        const T score = bias[c] - 2 * dots[r * KC + c];
        if (score < best) {
          best = score;
          where = c;
        }
      }
      label[r] = where;
      chosen[r] = means_padded + where * dp;
      partial[r] = Vec<T>{};
    }
    for (int64_t j = 0; j < dp; j += L) {
      for (int r = 0; r < R; ++r) {
        const Vec<T> diff = Load<T>(block + r * dp + j) - Load<T>(chosen[r] + j);
        partial[r] += diff * diff;
      }
    }
    for (int r = R; r < L; ++r) partial[r] = Vec<T>{};
    T near[L];
    LaneSums<T>(partial, near);
    const int64_t n = std::min<int64_t>(R, rows - r0);
    for (int64_t r = 0; r < n; ++r) {
      const T weight = w[r0 + r];
      AddWeightedRow<T>(sums + label[r] * dp, block + r * dp, weight, dp);
      counts[label[r]] += weight;
      *distortion += weight * near[r];
      labels[r0 + r] = label[r];
      nearest[r0 + r] = near[r];
    }
  }
}


template <typename T>
struct HardProblem {
  const T* x;
  const T* w;
  const T* means_t;       // (dp, kp)
  const T* bias;          // (kp,)
  const T* means_padded;  // (k, dp)
  int64_t d, dp, k, kp;
};

// HardChunk's rows [begin, end) for shapes whose rows go in the lanes (d = D <= kByLanesMaxD,
// k <= kByLanesMaxK): AssignGroupByLanes, then each row's weighted sums (sums_k += w x, one
// multiply-add per feature), count and distortion in row order, as every other path adds them.
// With kMeansInLanes (k <= L) the sums and counts stay in registers, the means in the lanes:
// the row's weight in its mean's lane, zero in the others, takes the row's multiply-add
// (AddWeighted: in the mean's lane the expression and bits of adding into memory; the other
// lanes add zeros, which keep their values). Through memory, each row's additions waited on the
// last's: one pass at (250000, 2, 5) spent half its time in them (AMD EPYC, AVX2).
// Counts and sums (k rows of dp values) start at zero; the sums' padding features stay zero.
template <typename T, int D, bool kMeansInLanes>
void HardChunkByLanes(const HardProblem<T>& p, int64_t begin, int64_t end, int32_t* labels,
                      T* nearest, T* counts, T* sums, T* distortion) {
  const Vec<T> mean_index = IotaOf<T>(LaneSequence<T>{});
  Vec<T> count_lanes{}, sum_lanes[D];  // lane c: mean c's count, sum of feature j
  for (int j = 0; j < D; ++j) sum_lanes[j] = Vec<T>{};
  constexpr int L = kLanes<T>;
  // lane_means[2 j + h]: feature j of means h L .. h L + L - 1 in the lanes (0 past the k-th)
  const bool by_index = kLanePermute && p.k <= 2 * L;
  Vec<T> lane_means[2 * D];
  for (int i = 0; i < 2 * D; ++i) lane_means[i] = Vec<T>{};
  if (by_index)
    for (int64_t c = 0; c < p.k; ++c)
      for (int j = 0; j < D; ++j) lane_means[2 * j + c / L][c % L] = p.means_padded[c * p.dp + j];
  T chunk_distortion = 0;
  for (int64_t g = begin; g < end; g += kGroup) {
    const int64_t rows = std::min<int64_t>(kGroup, end - g);
    const T* group = p.x + g * D;
    GroupOutputs<T> out(labels + g, nearest + g, rows);
    if (by_index) {
      if constexpr (kLanePermute)
        AssignGroupByLanes<T, D, true>(group, rows, p.means_padded, p.dp, p.bias, p.k,
                                       out.labels, out.nearest, lane_means);
    } else {
      AssignGroupByLanes<T, D>(group, rows, p.means_padded, p.dp, p.bias, p.k, out.labels,
                               out.nearest);
    }
    for (int64_t r = 0; r < rows; ++r) {
      const int32_t label = out.labels[r];
      const T weight = p.w[g + r];
      const T* xr = group + r * D;
      if constexpr (kMeansInLanes) {
        const Mask<T> mine = mean_index == static_cast<T>(label);
        const Vec<T> weights = mine ? Vec<T>{} + weight : Vec<T>{};
        for (int j = 0; j < D; ++j) sum_lanes[j] = AddWeighted<T>(sum_lanes[j], weights, xr[j]);
        count_lanes += weights;  // +0 in the other lanes: a count is never -0
      } else {
        AddWeightedRowOf<T, D>(sums + label * p.dp, xr, weight);
        counts[label] += weight;
      }
      chunk_distortion += weight * out.nearest[r];
    }
    out.Finish();
  }
  if constexpr (kMeansInLanes) {
    for (int64_t c = 0; c < p.k; ++c) {
      counts[c] = count_lanes[c];
      for (int j = 0; j < D; ++j) sums[c * p.dp + j] = sum_lanes[j][c];
    }
  }
  *distortion = chunk_distortion;
}

// The transposed rows' weighted sums kept in registers: KC means of NV <= kRegisterRowVectors
// vectors of features each, at most kRegisterSums vectors in all (the rest of the 16 vector
// registers of AVX2 for the row, its weight and masks).
constexpr int kRegisterSums = 8;
constexpr int kRegisterRowVectors = 2;

// HardChunk's rows [begin, end) for few means (KC <= kTransposedMaxK) and padded rows of NV
// vectors: AssignGroupTransposed, then each row's weighted sums, count and distortion in row
// order, the sums of each mean in NV vectors in registers and the counts in the lanes of
// ceil(KC / L) vectors. A row's mean takes the row's multiply-adds (AddWeighted, AddWeightedRow's
// expression), the other means add zeros, which keep their values; so the same bits as adding
// into memory, where each row's load waited on the last row's store: one pass at (250000, 8, 5)
// spent a third of its samples on that store (AMD EPYC, AVX2).
template <typename T, int KC, int NV>
void HardChunkTransposed(const HardProblem<T>& p, int64_t begin, int64_t end, int32_t* labels,
                         T* nearest, T* counts, T* sums, T* distortion, T* buffer) {
  constexpr int L = kLanes<T>, NC = (KC + L - 1) / L;
  static_assert(KC * NV <= kRegisterSums);
  const int64_t dp = p.dp;
  const Vec<T> lane_index = IotaOf<T>(LaneSequence<T>{});
  Vec<T> mean_sums[KC][NV], count_lanes[NC];
  for (int c = 0; c < KC; ++c)
    for (int v = 0; v < NV; ++v) mean_sums[c][v] = Vec<T>{};
  for (int v = 0; v < NC; ++v) count_lanes[v] = Vec<T>{};
  T chunk_distortion = 0;
  for (int64_t g = begin; g < end; g += kGroup) {
    const int64_t rows = std::min<int64_t>(kGroup, end - g);
    const T* group = LoadGroup<T>(p.x, p.d, dp, g, rows, buffer);
    GroupOutputs<T> out(labels + g, nearest + g, rows);
    AssignGroupTransposed<T, KC>(group, p.d, dp, p.means_padded, p.bias, out.labels,
                                 out.nearest);
    for (int64_t r = 0; r < rows; ++r) {
      const int32_t label = out.labels[r];
      const T weight = p.w[g + r];
      const Vec<T> weights = Vec<T>{} + weight;
      // The label compared as a value of T (as HardChunkByLanes does): from an integer
      // compare clang 14 built each mean's mask through 16-bit lanes and back.
      const Vec<T> label_lanes = Vec<T>{} + static_cast<T>(label);
      const T* xr = group + r * dp;
      for (int c = 0; c < KC; ++c) {
        const Vec<T> mean_weights = label_lanes == static_cast<T>(c) ? weights : Vec<T>{};
        for (int v = 0; v < NV; ++v)
          mean_sums[c][v] = AddWeighted<T>(mean_sums[c][v], mean_weights, Load<T>(xr + v * L));
      }
      for (int v = 0; v < NC; ++v)  // +0 in the other lanes: a count is never -0
        count_lanes[v] += (lane_index + static_cast<T>(v * L)) == static_cast<T>(label)
                              ? weights
                              : Vec<T>{};
      chunk_distortion += weight * out.nearest[r];
    }
    out.Finish();
  }
  for (int c = 0; c < KC; ++c) {
    counts[c] = count_lanes[c / L][c % L];
    for (int v = 0; v < NV; ++v) Store<T>(sums + c * dp + v * L, mean_sums[c][v]);
  }
  *distortion = chunk_distortion;
}

// HardChunk's rows [begin, end) for every other shape, a group of kGroup rows at a time:
// HardGroupByFeatures, or a group's labels (AssignGroupTransposed for few means, AssignGroup's
// scores otherwise) and then each row's weighted sums, count and distortion in row order, in
// memory. Counts and sums (k rows of dp values) start at zero.
template <typename T>
void HardChunkGroups(const HardProblem<T>& p, int64_t begin, int64_t end, bool by_features,
                     int32_t* labels, T* nearest, T* counts, T* sums, T* distortion, T* scores,
                     T* buffer) {
  const int64_t dp = p.dp;
  T chunk_distortion = 0;
  for (int64_t g = begin; g < end; g += kGroup) {
    const int64_t rows = std::min<int64_t>(kGroup, end - g);
    const T* group = LoadGroup<T>(p.x, p.d, dp, g, rows, buffer);
    if (by_features) {
      WithCount<kByFeaturesMaxK>(p.k, [&](auto kc) {
        HardGroupByFeatures<T, decltype(kc)::value>(group, dp, p.means_padded, p.bias, p.w + g,
                                                     rows, sums, counts, &chunk_distortion,
                                                     labels + g, nearest + g);
      });
      continue;
    }
    GroupOutputs<T> out(labels + g, nearest + g, rows);
    if (p.k <= kTransposedMaxK) {
      WithCount<kTransposedMaxK>(p.k, [&](auto kc) {
        AssignGroupTransposed<T, decltype(kc)::value>(group, p.d, dp, p.means_padded, p.bias,
                                                      out.labels, out.nearest);
      });
    } else {
      AssignGroup<T>(group, p.d, dp, p.means_t, p.bias, p.means_padded, p.k, p.kp, scores,
                     out.labels, out.nearest);
    }
    for (int64_t r = 0; r < rows; ++r) {
      const int32_t label = out.labels[r];
      const T weight = p.w[g + r];
      AddWeightedRow<T>(sums + label * dp, group + r * dp, weight, dp);
      counts[label] += weight;
      chunk_distortion += weight * out.nearest[r];
    }
    out.Finish();
  }
  *distortion = chunk_distortion;
}

// Rows [begin, end): labels and nearest written in place; the chunk's counts (k), sums (k * dp)
// and distortion (1) into stats. scratch: kGroup * (kp + dp) + k * dp + L values.
template <typename T>
void HardChunk(const HardProblem<T>& p, int64_t begin, int64_t end, int32_t* labels, T* nearest,
               T* stats, T* scratch) {
  const int64_t dp = p.dp;
  T* counts = stats;
  T* distortion = stats + p.k + p.k * dp;
  std::fill(counts, counts + p.k, T(0));
  T* scores = scratch;
  T* buffer = scratch + kGroup * p.kp;
  std::fill(buffer, buffer + kGroup * dp, T(0));
  // The sums in scratch aligned to a whole vector (rows of dp values: every row's vectors
  // aligned), copied into stats at the end: in stats they start after the k counts, and
  // vectors across two cache lines made the per-row additions slower.
  T* sums = AlignUp(buffer + kGroup * dp);
  std::fill(sums, sums + p.k * dp, T(0));
  // The distortion in a register (the same additions in the same order): added through memory,
  // stats being one array the sums and counts also write, each row would wait for the last.
  T chunk_distortion = 0;
  const bool by_features = ByFeatures<T>(p.d, dp, p.k);
  const int64_t row_vectors = dp / kLanes<T>;
  if (ByLanes<T>(p.d, p.k)) {
    WithCount<kByLanesMaxD<T>>(p.d, [&](auto dc) {
      constexpr int D = decltype(dc)::value;
      if constexpr (!kByLanesD<T, D>) {
      } else if (p.k <= kLanes<T>) {
        HardChunkByLanes<T, D, true>(p, begin, end, labels, nearest, counts, sums,
                                     &chunk_distortion);
      } else {
        HardChunkByLanes<T, D, false>(p, begin, end, labels, nearest, counts, sums,
                                      &chunk_distortion);
      }
    });
  } else if (!by_features && p.k <= kTransposedMaxK && row_vectors <= kRegisterRowVectors &&
             p.k * row_vectors <= kRegisterSums) {
    WithCount<kTransposedMaxK>(p.k, [&](auto kc) {
      constexpr int KC = decltype(kc)::value;
      WithCount<std::min(kRegisterRowVectors, kRegisterSums / KC)>(row_vectors, [&](auto nv) {
        HardChunkTransposed<T, KC, decltype(nv)::value>(p, begin, end, labels, nearest, counts,
                                                         sums, &chunk_distortion, buffer);
      });
    });
  } else {
    HardChunkGroups<T>(p, begin, end, by_features, labels, nearest, counts, sums,
                       &chunk_distortion, scores, buffer);
  }
  std::copy(sums, sums + p.k * dp, stats + p.k);
  *distortion = chunk_distortion;
}

// x (M, D): the first M rows of the blocks whose weights are w (n, B), 1 <= M <= n B (the rows
// past M are padding, repeats of row 0 with weight 0; see RunBlocks).
bool ValidBlocks(const ffi::Span<const int64_t>& x_dims, const ffi::Span<const int64_t>& w_dims) {
  return x_dims.size() == 2 && w_dims.size() == 2 && x_dims[0] >= 1 &&
         x_dims[0] <= w_dims[0] * w_dims[1];
}

// The hard E-step of n_blocks blocks of b rows (x: the first `rows`, see RunBlocks) at means
// (k, d) into labels, nearest (n_blocks, b), counts (k), sums (k, d) and distortion ();
// HardAssign and the plain mode of AssignBounded.
template <typename T>
void RunHard(ffi::ThreadPool& pool, int64_t n_blocks, int64_t b, int64_t rows, int64_t d,
             int64_t k, const T* x, const T* w, const T* means, int32_t* labels, T* nearest, T* counts,
             T* sums, T* distortion) {
  constexpr int L = kLanes<T>;
  const int64_t kp = RoundUp(k, L), dp = RoundUp(d, L);
  std::vector<T> means_t(dp * kp), bias(kp), means_padded(k * dp);
  PrepareMeans<T>(means, k, d, dp, kp, means_t.data(), bias.data(), means_padded.data());
  const HardProblem<T> problem{x, w, means_t.data(), bias.data(), means_padded.data(),
                               d, dp, k, kp};
  const int64_t stats_size = k + k * dp + 1;
  LeftOut left_out;
  const std::vector<T> total = RunBlocks<T>(
      pool, n_blocks, b, rows, problem.x, problem.w, d, stats_size,
      kGroup * (kp + dp) + k * dp + L,
      &left_out, [&](int64_t begin, int64_t end, T* stats, T* scratch) {
        HardChunk<T>(problem, begin, end, labels, nearest, stats, scratch);
      });
  CopyRowZero(left_out, 1, labels);
  CopyRowZero(left_out, 1, nearest);
  std::copy(total.begin(), total.begin() + k, counts);
  for (int64_t c = 0; c < k; ++c)
    std::copy(total.begin() + k + c * dp, total.begin() + k + c * dp + d, sums + c * d);
  *distortion = total[k + k * dp];
}

template <ffi::DataType DT>
ffi::Error HardAssign(ffi::ThreadPool pool, ffi::Buffer<DT> x_buf, ffi::Buffer<DT> w_buf,
                      ffi::Buffer<DT> means_buf, ffi::ResultBuffer<ffi::S32> labels_buf,
                      ffi::ResultBuffer<DT> nearest_buf, ffi::ResultBuffer<DT> counts_buf,
                      ffi::ResultBuffer<DT> sums_buf, ffi::ResultBuffer<DT> distortion_buf) {
  const auto x_dims = x_buf.dimensions();
  const auto m_dims = means_buf.dimensions();
  const auto w_dims = w_buf.dimensions();
  if (!ValidBlocks(x_dims, w_dims) || m_dims.size() != 2 || m_dims[1] != x_dims[1] ||
      m_dims[0] < 1 || m_dims[0] >= (int64_t{1} << 24)) {
    return ffi::Error::InvalidArgument(
        "gmmlimit hard_assign: expected x (M, D), w (n, B) and means (K, D), 1 <= M <= n B, "
        "1 <= K < 2^24");
  }
  RunHard(pool, w_dims[0], w_dims[1], x_dims[0], x_dims[1], m_dims[0], x_buf.typed_data(),
          w_buf.typed_data(), means_buf.typed_data(), labels_buf->typed_data(),
          nearest_buf->typed_data(), counts_buf->typed_data(), sums_buf->typed_data(),
          distortion_buf->typed_data());
  return ffi::Error::Success();
}

// ---------------------------------------------------------------------------------------------
// Soft E-step.

template <typename T>
struct SoftProblem {
  const T* x;
  const T* w;
  const T* means_t;       // (S, dp, kp)
  const T* bias;          // (S, kp)
  const T* means_padded;  // (S, k, dp)
  const T* two_sigma2;    // (S,)
  int64_t n_rows, d, dp, k, kp, sets;
};

// sums (k, dp) += resp^T group for `rows` rows: resp (rows, kp) rows of responsibilities times
// weight, group (rows, dp) rows; kRows components by NV vectors of features per register block,
// the row's NV vectors pinned to registers as ScoreBlock's panel (kPinPanel, InRegisters).
// Every sum is its own sequence of multiply-adds over the rows in order, so splitting the rows
// into consecutive runs (one call per run) gives the same bits.
template <typename T, int R, int NV>
inline void SumsBlock(const T* resp, int64_t kp, const T* group, int64_t dp, int64_t rows,
                      int64_t c0, int64_t j0, T* sums) {
  constexpr int L = kLanes<T>;
  Vec<T> acc[R][NV];
  for (int c = 0; c < R; ++c)
    for (int v = 0; v < NV; ++v) acc[c][v] = Load<T>(sums + (c0 + c) * dp + j0 + v * L);
  for (int64_t r = 0; r < rows; ++r) {
    Vec<T> xv[NV];
    for (int v = 0; v < NV; ++v) xv[v] = Load<T>(group + r * dp + j0 + v * L);
    if constexpr (kPinPanel<T, NV>) InRegisters<T, NV>(xv);
    for (int c = 0; c < R; ++c) {
      const T rc = resp[r * kp + c0 + c];
      for (int v = 0; v < NV; ++v) acc[c][v] += rc * xv[v];
    }
  }
  for (int c = 0; c < R; ++c)
    for (int v = 0; v < NV; ++v) Store<T>(sums + (c0 + c) * dp + j0 + v * L, acc[c][v]);
}

template <typename T>
inline void GroupSums(const T* resp, int64_t k, int64_t kp, const T* group, int64_t dp,
                      int64_t rows, T* sums) {
  Tiles<kRows>(k, 1, [&](auto components, int64_t c0) {
    Tiles<kPanel>(dp, kLanes<T>, [&](auto vectors, int64_t j0) {
      SumsBlock<T, decltype(components)::value, decltype(vectors)::value>(resp, kp, group, dp,
                                                                          rows, c0, j0, sums);
    });
  });
}

// The same sums with the components in the lanes, for rows of a few features (D <= kCopyMaxD):
// sums_t (D, kp) += (resp^T group) transposed, over the kGroup rows of a group. Per row, each
// vector of L components' responsibilities times each of the row's D features, a tile of CV
// vectors by D features of accumulators held in registers over the rows. GroupSums multiplies
// each component's responsibility by every vector of dp features, dp - D of them padding (13 of
// 16 lanes at D = 3, float32); this form does kp / L * D multiply-adds a row where GroupSums does
// k * dp / L (SumsByLanes). Every sum is the same sequence of multiply-adds as in SumsBlock (the
// rows in order, fma(responsibility, feature, sum) from the same start), so the same bits.
template <typename T, int D>
inline void GroupSumsByLanes(const T* resp, int64_t kp, const T* group, int64_t dp, T* sums_t) {
  constexpr int L = kLanes<T>;
  constexpr int kTile = std::max(1, kRows * kPanel / D);
  Tiles<kTile>(kp, L, [&](auto vectors, int64_t c0) {
    constexpr int CV = decltype(vectors)::value;
    Vec<T> acc[CV][D];
    for (int v = 0; v < CV; ++v)
      for (int j = 0; j < D; ++j) acc[v][j] = Load<T>(sums_t + j * kp + c0 + v * L);
    for (int r = 0; r < kGroup; ++r) {
      Vec<T> feature[D];
      for (int j = 0; j < D; ++j) feature[j] = Vec<T>{} + group[r * dp + j];
      for (int v = 0; v < CV; ++v) {
        const Vec<T> rv = Load<T>(resp + r * kp + c0 + v * L);
        for (int j = 0; j < D; ++j) acc[v][j] += rv * feature[j];
      }
    }
    for (int v = 0; v < CV; ++v)
      for (int j = 0; j < D; ++j) Store<T>(sums_t + j * kp + c0 + v * L, acc[v][j]);
  });
}

// Whether SoftChunk sums by GroupSumsByLanes: rows of at most kCopyMaxD features, where its
// multiply-adds (kp / L * d a row) are fewer than GroupSums' (k * dp / L).
inline bool SumsByLanes(int64_t d, int64_t dp, int64_t k, int64_t kp) {
  return d <= kCopyMaxD && kp * d < k * dp;
}

// The soft E-step of one group of rows, once AssignGroup has left their scores (kGroup, kp), labels
// and nearest distances: exponentials in place of the scores (or, at a two_sigma2 that is not
// > 0, one-hot rows), responsibilities times weight (weight 0 past the group's `rows`) added to
// counts (kp) and, by GroupSums, to sums (k * dp) (or by GroupSumsByLanes to the transposed
// sums); each row's log-likelihood and distortion terms added to log_lik and distortion.
// The first half of SoftRows: scores (kGroup, kp) of k means become responsibilities times
// weight, and group_total (kGroup) the rows' totals of exponentials.
template <typename T>
inline void SoftResponsibilities(int64_t k, int64_t kp, const int32_t* group_labels,
                                 const T* weights, T two_sigma2, T* scores, T* group_total) {
  constexpr int L = kLanes<T>;
  Vec<T> partial[L];
  // gap / (2 sigma2) as a product with the reciprocal (a vector division costs several times
  // more), unless the reciprocal overflows (a subnormal sigma2): then 0 * inf would be NaN where
  // 0 / (2 sigma2) is 0, so the quotient is formed instead.
  const T inverse = two_sigma2 > 0 ? T(1) / two_sigma2 : T(0);
  const bool multiply = inverse <= std::numeric_limits<T>::max();
  if (!(two_sigma2 > 0)) {
    // sigma2 that XLA reads as 0 (a subnormal, with denormals flushed): the hard limit, as the
    // caller's `sigma2 > 0` test decides it. One-hot rows at the labels, totals 1.
    std::fill(scores, scores + kGroup * kp, T(0));
    for (int r = 0; r < kGroup; ++r) {
      scores[r * kp + group_labels[r]] = T(1);
      group_total[r] = T(1);
    }
  }
  // Exponentials in place of the scores, and each row's total. At most L / 2 means (one vector
  // of scores a row, its upper half padding, whose exponentials are 0): two rows' real halves
  // side by side in one vector (FirstOf), one exponential for both, each half back in its row
  // with zeros above it (FirstOf, SecondOf with a zero vector) and summed as before. Every
  // exponential and total is the same as in the loop below (lane-wise work, the same zeros in
  // the same lanes): the same bits at half the exponentials. One soft pass at (250000, 8, 5)
  // float32 3.47 -> 2.95 ms (docs/benchmarks.md, "Two rows in one vector of exponentials").
  constexpr int H = L / 2;
  const bool paired = kp == L && k <= H;
  for (int r0 = 0; two_sigma2 > 0 && paired && r0 < kGroup; r0 += L) {
    for (int r = 0; r < L; r += 2) {
      T* row = scores + (r0 + r) * kp;
      T* next = row + kp;
      const Vec<T> best = FirstOf<T, H>(Vec<T>{} + row[group_labels[r0 + r]],
                                        Vec<T>{} + next[group_labels[r0 + r + 1]],
                                        LaneSequence<T>{});
      Vec<T> gap = FirstOf<T, H>(Load<T>(row), Load<T>(next), LaneSequence<T>{}) - best;
      gap = gap > 0 ? gap : Vec<T>{};
      const Vec<T> scaled = multiply ? gap * inverse : gap / two_sigma2;
      const Vec<T> e = ExpNonPositive<T>(-scaled);
      partial[r] = FirstOf<T, H>(e, Vec<T>{}, LaneSequence<T>{});
      partial[r + 1] = SecondOf<T, H>(e, Vec<T>{}, LaneSequence<T>{});
      Store<T>(row, partial[r]);
      Store<T>(next, partial[r + 1]);
    }
    LaneSums<T>(partial, group_total + r0);
  }
  for (int r0 = 0; two_sigma2 > 0 && !paired && r0 < kGroup; r0 += L) {
    for (int r = 0; r < L; ++r) {
      T* row = scores + (r0 + r) * kp;
      const Vec<T> best = Vec<T>{} + row[group_labels[r0 + r]];
      Vec<T> total{};
      for (int64_t c = 0; c < kp; c += L) {
        Vec<T> gap = Load<T>(row + c) - best;
        gap = gap > 0 ? gap : Vec<T>{};
        const Vec<T> scaled = multiply ? gap * inverse : gap / two_sigma2;
        const Vec<T> e = ExpNonPositive<T>(-scaled);
        Store<T>(row + c, e);
        total += e;
      }
      partial[r] = total;
    }
    LaneSums<T>(partial, group_total + r0);
  }
  // Responsibilities times weight (0 on padding rows).
  for (int r = 0; r < kGroup; ++r) {
    T* row = scores + r * kp;
    const T factor = weights[r] / group_total[r];
    for (int64_t c = 0; c < kp; c += L) Store<T>(row + c, Load<T>(row + c) * factor);
  }
}

// counts (kp) += one row of responsibilities times weight.
template <typename T>
inline void AddCounts(const T* resp, int64_t kp, T* counts) {
  constexpr int L = kLanes<T>;
  for (int64_t c = 0; c < kp; c += L) Store<T>(counts + c, Load<T>(counts + c) + Load<T>(resp + c));
}

// AddCounts of the kGroup rows of resp (row stride kp) in row order, each vector of counts held
// in a register over the rows (the same additions; no store and reload per row).
template <typename T>
inline void AddGroupCounts(const T* resp, int64_t kp, T* counts) {
  constexpr int L = kLanes<T>;
  for (int64_t c = 0; c < kp; c += L) {
    Vec<T> total = Load<T>(counts + c);
    for (int r = 0; r < kGroup; ++r) total += Load<T>(resp + r * kp + c);
    Store<T>(counts + c, total);
  }
}

// A row's log-likelihood term, weight 0 (a padding row) giving none, even where
// nearest / two_sigma2 overflows (0 * inf).
template <typename T>
inline void AddLogLik(T weight, T log_total, T nearest, T two_sigma2, T* log_lik) {
  if (two_sigma2 > 0 && weight > 0) *log_lik += weight * (log_total - nearest / two_sigma2);
}

// The soft E-step of one group's scores (kGroup, kp) of k means: responsibilities times weight in
// their place, added to counts, and each row's log-likelihood and distortion terms; the
// responsibilities' sums over the rows are the caller's (SoftChunk: by GroupSumsByLanes, or
// GroupSums over several groups at once).
template <typename T>
inline void SoftRows(int64_t k, int64_t kp, int64_t rows, const int32_t* group_labels,
                     const T* group_nearest, const T* weights, T two_sigma2, T* scores,
                     T* counts, T* log_lik, T* distortion) {
  T group_total[kGroup];
  SoftResponsibilities<T>(k, kp, group_labels, weights, two_sigma2, scores, group_total);
  // Their counts, and the row terms.
  AddGroupCounts<T>(scores, kp, counts);
  T group_log[kGroup];
  LogsOf<T>(group_total, kGroup, group_log);
  for (int64_t r = 0; r < rows; ++r) {
    AddLogLik<T>(weights[r], group_log[r], group_nearest[r], two_sigma2, log_lik);
    *distortion += weights[r] * group_nearest[r];
  }
}

// Groups whose responsibilities wait in consecutive slots of a scores array for one GroupSums
// call over all their rows: rows read in place from consecutive groups are consecutive in
// memory, so up to kSumsGroups groups are summed as kSumsGroups * kGroup rows. Each sum is then
// loaded and stored once per call instead of once per group, and SumsBlock's loop over the rows
// runs four times longer. Every sum takes the same multiply-adds in the same row order (a
// store and a load between groups change no value): the same bits as one call per group.
// A group copied by LoadGroup (its buffer is reused by the next group) is summed at once.
// In `perf` of the soft pass at (12755, 784, 64) (session 44) SumsBlock held 45 % of the
// kernel's samples, a sixth of them outside its loop over the group's 32 rows (its sums loaded
// and stored, GCC's stack copies). Measured (benchmarks/tuning/compilers.py --spread 0 --repeats
// 7 --loop 3 --soft, Intel Xeon with AVX-512, GCC 12.2, one soft pass, ms, a call per group ->
// batches of four, each build twice): float32 (12755, 784, 64) 10.41 / 10.31 -> 10.08 / 9.96,
// (12755, 784, 512) 96.99 / 97.66 -> 89.43 / 89.98, (156250, 64, 64) 12.31 / 12.15 -> 11.60 /
// 11.54, (156250, 64, 512) 97.02 / 94.78 -> 90.36 / 90.53, (39062, 256, 16) 4.07 / 4.03 -> 3.99
// / 3.98; float64 level ((12755, 784, 64) 22.49 / 23.14 -> 22.90 / 23.76, (156250, 64, 64)
// 30.26 / 34.08 -> 29.45 / 29.68); the hard pass (which has no GroupSums) level.
// benchmarks/tuning/same_bits.py: 880 of 880 byte for byte.
template <typename T>
struct SumsBatch {
  T* scores;  // kSumsGroups slots of (kGroup, kp)
  int64_t k, kp, dp;
  T* sums;  // the set's (k, dp) sums
  const T* first = nullptr;  // the first group's rows
  int groups = 0;

  // Whether `group` continues the batch's rows (an empty batch takes any group).
  bool Follows(const T* group) const {
    return groups == 0 || group == first + groups * kGroup * dp;
  }
  T* NextScores() const { return scores + groups * kGroup * kp; }
  // The group whose responsibilities NextScores() now holds; copied: sum it at once.
  void Add(const T* group, bool copied) {
    if (groups == 0) first = group;
    ++groups;
    if (copied || groups == kSumsGroups) Flush();
  }
  void Flush() {
    if (groups > 0) GroupSums<T>(scores, k, kp, first, dp, groups * kGroup, sums);
    groups = 0;
  }
};

// Rows [begin, end) for every parameter set: labels and nearest (S, n_rows) written in place;
// per set, counts (kp), sums (k * dp), log-likelihood (1) and distortion (1) into stats.
// scratch: SoftScratch values.
template <typename T>
int64_t SoftScratch(const SoftProblem<T>& p) {
  return kSumsGroups * kGroup * p.kp + kGroup * p.dp +
         (SumsByLanes(p.d, p.dp, p.k, p.kp) ? p.sets * p.d * p.kp : 0);
}

template <typename T>
void SoftChunk(const SoftProblem<T>& p, int64_t begin, int64_t end, int32_t* labels, T* nearest,
               T* stats, T* scratch) {
  const int64_t dp = p.dp, kp = p.kp, k = p.k, d = p.d;
  const int64_t set_size = kp + k * dp + 2;
  std::fill(stats, stats + p.sets * set_size, T(0));
  T* scores = scratch;
  T* buffer = scratch + kSumsGroups * kGroup * kp;
  std::fill(buffer, buffer + kGroup * dp, T(0));
  // Each set's sums transposed (d, kp), for GroupSumsByLanes; copied into stats at the end.
  T* sums_t = SumsByLanes(d, dp, k, kp) ? buffer + kGroup * dp : nullptr;
  if (sums_t != nullptr) std::fill(sums_t, sums_t + p.sets * d * kp, T(0));
  int32_t group_labels[kGroup];
  T group_nearest[kGroup], group_weight[kGroup];
  // Rows in slices of kSliceRows; within a slice, one parameter set after another, so a set's
  // means stay in the L1 cache over the slice's groups. Each set still sees its rows in order.
  for (int64_t g0 = begin; g0 < end; g0 += kSliceRows) {
    const int64_t slice_end = std::min(end, g0 + kSliceRows);
    for (int64_t s = 0; s < p.sets; ++s) {
      T* counts = stats + s * set_size;
      T* sums = counts + kp;
      T* log_lik = sums + k * dp;
      T* distortion = log_lik + 1;
      // Consecutive groups read in place share one GroupSums call over their rows (up to
      // kSumsGroups of them): the same multiply-adds in the same order as a call per group.
      SumsBatch<T> batch{scores, k, kp, dp, sums};
      for (int64_t g = g0; g < slice_end; g += kGroup) {
        const int64_t rows = std::min<int64_t>(kGroup, end - g);
        const T* group = LoadGroup<T>(p.x, p.d, dp, g, rows, buffer);
        const bool batched = sums_t == nullptr;
        if (batched && !batch.Follows(group)) batch.Flush();
        T* group_scores = batched ? batch.NextScores() : scores;
        AssignGroup<T>(group, p.d, dp, p.means_t + s * dp * kp, p.bias + s * kp,
                       p.means_padded + s * k * dp, k, kp, group_scores, group_labels,
                       group_nearest);
        for (int r = 0; r < kGroup; ++r) group_weight[r] = r < rows ? p.w[g + r] : T(0);
        SoftRows<T>(k, kp, rows, group_labels, group_nearest, group_weight, p.two_sigma2[s],
                    group_scores, counts, log_lik, distortion);
        if (batched) {
          batch.Add(group, group == buffer);
        } else {
          WithCount<kCopyMaxD>(d, [&](auto dc) {
            GroupSumsByLanes<T, decltype(dc)::value>(scores, kp, group, dp, sums_t + s * d * kp);
          });
        }
        for (int64_t r = 0; r < rows; ++r) {
          labels[s * p.n_rows + g + r] = group_labels[r];
          nearest[s * p.n_rows + g + r] = group_nearest[r];
        }
      }
      batch.Flush();
    }
  }
  for (int64_t s = 0; sums_t != nullptr && s < p.sets; ++s) {
    T* sums = stats + s * set_size + kp;
    const T* set_t = sums_t + s * d * kp;
    for (int64_t c = 0; c < k; ++c)
      for (int64_t j = 0; j < d; ++j) sums[c * dp + j] = set_t[j * kp + c];
  }
}

// The soft E-step of S parameter sets, means (sets, k, d) and sigma2 (sets), over x (n_blocks, b,
// d), into labels, nearest (sets, n_blocks, b), counts (sets, k), sums (sets, k, d), log_lik and
// distortion (sets); SoftAssign and the plain soft mode of AssignBounded.
template <typename T>
void RunSoft(ffi::ThreadPool& pool, int64_t n_blocks, int64_t b, int64_t rows, int64_t d,
             int64_t sets, int64_t k, const T* x, const T* w, const T* means, const T* sigma2s, int32_t* labels,
             T* nearest, T* counts, T* sums, T* log_lik, T* distortion) {
  constexpr int L = kLanes<T>;
  const int64_t kp = RoundUp(k, L), dp = RoundUp(d, L);
  const int64_t n_rows = n_blocks * b;
  // Sets share a pass over the rows so that each slice of rows is read once for all of them.
  // A set whose transposed means and sums pass kSharedSetBytes (a quarter of the 1 MiB L2 cache
  // of the Zen 4 and Zen 5 cores measured) shares nothing worth the cost of a shared pass: the
  // sets' means and sums together overflow the L2 cache, so each set is read from further out
  // for every group of rows anyway, and a unit of parallel work holding every set's chunk lasts
  // S times longer, each window of units waiting for its slowest. Such sets run one pass each,
  // in short units the threads balance (measured in docs/benchmarks.md, "Large sets in passes of
  // their own" and "Sets past a quarter of the L2 cache").
  if (sets > 1 && static_cast<int64_t>(sizeof(T)) * (dp * kp + k * dp) > kSharedSetBytes) {
    for (int64_t s = 0; s < sets; ++s)
      RunSoft<T>(pool, n_blocks, b, rows, d, 1, k, x, w, means + s * k * d, sigma2s + s,
                 labels + s * n_rows, nearest + s * n_rows, counts + s * k, sums + s * k * d,
                 log_lik + s, distortion + s);
    return;
  }
  std::vector<T> means_t(sets * dp * kp), bias(sets * kp), means_padded(sets * k * dp);
  std::vector<T> two_sigma2(sets);
  for (int64_t s = 0; s < sets; ++s) {
    PrepareMeans<T>(means + s * k * d, k, d, dp, kp, means_t.data() + s * dp * kp,
                    bias.data() + s * kp, means_padded.data() + s * k * dp);
    const T sigma2 = sigma2s[s];
    two_sigma2[s] = sigma2 > 0 ? 2 * sigma2 : T(0);  // 0: the hard limit (see SoftChunk)
  }
  const SoftProblem<T> problem{x, w, means_t.data(), bias.data(), means_padded.data(),
                               two_sigma2.data(), n_blocks * b, d, dp, k, kp, sets};
  const int64_t set_size = kp + k * dp + 2;
  LeftOut left_out;
  const std::vector<T> total = RunBlocks<T>(
      pool, n_blocks, b, rows, problem.x, problem.w, d, sets * set_size, SoftScratch(problem),
      &left_out,
      [&](int64_t begin, int64_t end, T* stats, T* scratch) {
        SoftChunk<T>(problem, begin, end, labels, nearest, stats, scratch);
      });
  for (int64_t s = 0; s < sets; ++s) {
    CopyRowZero(left_out, 1, labels + s * n_rows);
    CopyRowZero(left_out, 1, nearest + s * n_rows);
  }
  for (int64_t s = 0; s < sets; ++s) {
    const T* set = total.data() + s * set_size;
    std::copy(set, set + k, counts + s * k);
    for (int64_t c = 0; c < k; ++c)
      std::copy(set + kp + c * dp, set + kp + c * dp + d, sums + (s * k + c) * d);
    log_lik[s] = set[kp + k * dp];
    distortion[s] = set[kp + k * dp + 1];
  }
}

template <ffi::DataType DT>
ffi::Error SoftAssign(ffi::ThreadPool pool, ffi::Buffer<DT> x_buf, ffi::Buffer<DT> w_buf,
                      ffi::Buffer<DT> means_buf, ffi::Buffer<DT> sigma2_buf,
                      ffi::ResultBuffer<ffi::S32> labels_buf, ffi::ResultBuffer<DT> nearest_buf,
                      ffi::ResultBuffer<DT> counts_buf, ffi::ResultBuffer<DT> sums_buf,
                      ffi::ResultBuffer<DT> log_lik_buf, ffi::ResultBuffer<DT> distortion_buf) {
  const auto x_dims = x_buf.dimensions();
  const auto m_dims = means_buf.dimensions();
  const auto w_dims = w_buf.dimensions();
  if (!ValidBlocks(x_dims, w_dims) || m_dims.size() != 3 || m_dims[2] != x_dims[1] ||
      m_dims[1] < 1 || m_dims[1] >= (int64_t{1} << 24) ||
      static_cast<int64_t>(sigma2_buf.element_count()) != m_dims[0]) {
    return ffi::Error::InvalidArgument(
        "gmmlimit soft_assign: expected x (M, D), w (n, B), means (S, K, D) and sigma2 (S,), "
        "1 <= M <= n B, 1 <= K < 2^24");
  }
  RunSoft(pool, w_dims[0], w_dims[1], x_dims[0], x_dims[1], m_dims[0], m_dims[1],
          x_buf.typed_data(),
          w_buf.typed_data(), means_buf.typed_data(), sigma2_buf.typed_data(),
          labels_buf->typed_data(), nearest_buf->typed_data(), counts_buf->typed_data(),
          sums_buf->typed_data(), log_lik_buf->typed_data(), distortion_buf->typed_data());
  return ffi::Error::Success();
}

// ---------------------------------------------------------------------------------------------
// Hard E-step with bounds (Hamerly's test, with a bound per group of means as in Yinyang
// K-means): HardAssign's labels, distances and statistics, bit for bit, without the scores of
// the rows whose label provably cannot change.
//
// The means are cut into G groups of consecutive indices (group_size of them each, a multiple of
// the vector width). The caller keeps, per row, its label a from the previous pass (at means m')
// and, per group g, a lower bound l_g on the row's distance to every mean of g other than m'_a.
// With s_g the largest shift |m_j - m'_j| in group g, the triangle inequality gives
// |x - m_j| >= l_g - s_g for every j != a of g at the new means m; the exact distance to m_a is
// computed (it is the row's `nearest` either way). With l = min_g (l_g - s_g), a row keeps label a
// without its scores when
//     l^2 - |x - m_a|^2 > 2 E,   E = 2 (d + 4) eps (|x| + max_j |m_j|)^2,
// E bounding the rounding error of every score bias_j - 2 <x, m_j> as ScoreBlock computes it
// (Higham's gamma_{d+1} (|m_j|^2 + 2 |x| |m_j|), with room for the rounding of the test itself):
// every other computed score is then above a's, so HardAssign's first index of the minimum is a.
// The other rows are gathered into groups of kGroup rows and scored by AssignGroup, the code
// HardAssign runs (each score and distance depends on its own row alone), and get new bounds
// from their lowest score in each group of means (their own label's left out). The statistics
// are then summed over the chunk's rows in order, with the expressions of HardChunk. Bounds are
// computed in double and stored in the data's dtype rounded down; a bound of 0 (the first pass)
// or a label < 0 skips nothing.

//
// The bounds and their labels may be updated in place (lower_in == lower_out, labels_in ==
// labels_keep, as AssignBounded's callers alias them): a chunk reads a row's old label and bounds
// before it writes that row's new ones, and reads no other chunk's rows.

template <typename T>
struct BoundTest {
  const int32_t* labels_in;  // (rows,) labels of the previous pass; < 0: none
  const T* lower_in;         // (rows, groups) lower bounds at the previous means
  T* lower_out;              // (rows, groups) lower bounds at the current means
  int32_t* labels_keep;      // (rows,) the labels the new bounds refer to (a copy of labels)
  const double* shift;       // (groups,) the largest |m_j - m'_j| of each group, rounded up
  int64_t groups, group_size;
  double max_norm;               // max_j |m_j|, rounded up
  double score_slack;            // 2 (d + 4) eps of T
  std::atomic<int64_t>* scored;  // rows scored (not skipped), over all chunks
};

// A bound stored in T, rounded down (0 for a bound that is not positive).
template <typename T>
inline T BoundBelow(double value) {
  if (!(value > 0)) return T(0);
  if (std::isinf(value)) return std::numeric_limits<T>::infinity();
  return static_cast<T>(value * (1 - 2 * static_cast<double>(std::numeric_limits<T>::epsilon())));
}

// The smallest gap / (2 sigma2) at which the soft E-step's exponential is exactly 0 (past the
// logarithm of the smallest normal number, ExpNonPositive's cut), with a unit to spare.
template <typename T>
constexpr double kOneHotGap = 1.0 - ExpConstants<T>::kLower;

// Rows [begin, end) with the bound test.
// Hard (two_sigma2 = 0): HardChunk's outputs, bit for bit; stats: counts (k), sums (k * dp),
// distortion (1). A row is skipped when its label cannot change.
// Soft (two_sigma2 > 0, one parameter set): SoftChunk's outputs, bit for bit; stats: counts
// (kp), sums (k * dp), log-likelihood (1), distortion (1). A row is skipped when its
// responsibilities are exactly one-hot: every other mean's gap / (2 sigma2), as the soft E-step
// computes it, is past the exponential's underflow (kOneHotGap). The rows that are scored get
// their responsibilities as SoftRows computes them (kept, with their padded rows, in the chunk's
// buffers); then the statistics are summed over the chunk's rows in order: a skipped row adds
// its weight to its label's count and weight * x to its label's sums (what the product adds for
// a one-hot row: every other term is an exact 0), each run of scored rows goes through the
// product (a run of rows in order gives the product's own bits), and the log-likelihood terms
// (log of a one-hot row's total is 0) and distortions are added row by row.
// scratch: kGroup * (kp + 2 dp) values, and kChunk * (kp + dp + 1) more for soft chunks or
// k dp + L more for hard ones.
template <typename T>
void BoundedChunk(const HardProblem<T>& p, const BoundTest<T>& bt, T two_sigma2, int64_t begin,
                  int64_t end, int32_t* labels, T* nearest, T* stats, T* scratch) {
  constexpr int L = kLanes<T>;
  const int64_t dp = p.dp, kp = p.kp, k = p.k, d = p.d, groups = bt.groups;
  constexpr double kEps = std::numeric_limits<T>::epsilon();
  constexpr double kTiny = std::numeric_limits<T>::min();
  const double norm_slack = static_cast<double>(d + 2) * kEps;
  const bool soft = two_sigma2 > 0;
  T* counts = stats;
  T* sums = stats + (soft ? kp : k);
  T* log_lik = sums + k * dp;  // soft only
  T* distortion = soft ? log_lik + 1 : sums + k * dp;
  std::fill(stats, distortion + 1, T(0));
  T pending_weight[kGroup], pending_total[kGroup];
  T* scores = scratch;
  T* buffer = scratch + kGroup * kp;
  T* pending = buffer + kGroup * dp;  // rows to be scored, padded like a group
  std::fill(buffer, buffer + 2 * kGroup * dp, T(0));
  // Soft: the scored rows' responsibilities, padded rows and totals, in row order.
  T* soft_resp = pending + kGroup * dp;
  T* soft_x = soft_resp + kChunk * kp;
  T* soft_total = soft_x + kChunk * dp;
  int64_t n_soft = 0;
  bool skipped[kChunk];
  int64_t pending_row[kGroup];
  double pending_sq[kGroup], pending_norm[kGroup];
  int n_pending = 0;
  int64_t scored = 0;
  int32_t old_labels[kGroup], new_labels[kGroup];
  T old_nearest[kGroup], new_nearest[kGroup], group_sq[kGroup];

  auto slack_of = [&](double norm_up) {
    const double reach = norm_up + bt.max_norm;
    return bt.score_slack * reach * reach + 4 * static_cast<double>(d + 2) * kTiny;
  };
  // New bounds of the n scored rows of a group from their scores: per row and group of means,
  // the lowest score other than the label's (padded columns are +inf), turned into a distance
  // bound. The (row, group) vectors of lane-wise minima go L at a time through LaneMins.
  T best[kGroup * 16];  // (row, group) lowest scores; groups <= 16
  auto new_bounds = [&](T* rows_scores, const int32_t* row_labels, int n) {
    Vec<T> low[L];
    int filled = 0, done = 0;
    const int64_t entries = n * groups;
    for (int c = 0; c < n; ++c) {
      T* row = rows_scores + c * kp;
      const T own = row[row_labels[c]];
      row[row_labels[c]] = std::numeric_limits<T>::infinity();
      for (int64_t h = 0; h < groups; ++h) {
        const int64_t c0 = h * bt.group_size, c1 = std::min(kp, c0 + bt.group_size);
        Vec<T> v_low = Vec<T>{} + std::numeric_limits<T>::infinity();
        for (int64_t col = c0; col < c1; col += L) {
          const Vec<T> v = Load<T>(row + col);
          v_low = v < v_low ? v : v_low;
        }
        low[filled++] = v_low;
        if (filled == L) {
          LaneMins<T>(low, best + done);
          done += L;
          filled = 0;
        }
      }
      row[row_labels[c]] = own;
    }
    if (filled > 0) {
      T rest[L];
      for (int h = filled; h < L; ++h) low[h] = Vec<T>{} + std::numeric_limits<T>::infinity();
      LaneMins<T>(low, rest);
      std::copy(rest, rest + (entries - done), best + done);
    }
    for (int c = 0; c < n; ++c) {
      const double slack = slack_of(pending_norm[c]);
      const double sq_low = pending_sq[c];
      T* out = bt.lower_out + pending_row[c] * groups;
      for (int64_t h = 0; h < groups; ++h) {
        const T lowest = best[c * groups + h];
        double bound = std::numeric_limits<double>::infinity();  // no other mean in the group
        if (!std::isinf(lowest)) {
          const double sq = sq_low + static_cast<double>(lowest) - slack;
          bound = sq > 0 ? std::sqrt(sq) : 0.0;
        }
        out[h] = BoundBelow<T>(bound);
      }
    }
  };
  // A row's |x|^2 (as NearestRows sums it) rounded down and |x| rounded up, for its bounds.
  auto norm_bounds = [&](T sq, double* sq_low, double* norm_up) {
    *sq_low = static_cast<double>(sq) * (1 - norm_slack);
    *norm_up = std::sqrt(static_cast<double>(sq) * (1 + norm_slack));
  };
  // Scores the n_pending rows at `rows_at` (kGroup padded rows: the pending buffer, or a group
  // whose rows are all scored, read where it lies). norms_here: the rows' |x|^2 for their new
  // bounds come from the scores' own read of the rows (a group scored without the bound test).
  auto flush = [&](const T* rows_at, bool norms_here) {
    if (n_pending == 0) return;
    if (norms_here) {
      AssignGroup<T, true>(rows_at, d, dp, p.means_t, p.bias, p.means_padded, k, kp, scores,
                           new_labels, new_nearest, group_sq);
      for (int c = 0; c < n_pending; ++c)
        norm_bounds(group_sq[c], &pending_sq[c], &pending_norm[c]);
    } else {
      AssignGroup<T>(rows_at, d, dp, p.means_t, p.bias, p.means_padded, k, kp, scores,
                     new_labels, new_nearest);
    }
    for (int c = 0; c < n_pending; ++c) {
      const int64_t i = pending_row[c];
      labels[i] = new_labels[c];
      nearest[i] = new_nearest[c];
    }
    new_bounds(scores, new_labels, n_pending);
    if (soft) {
      for (int c = 0; c < kGroup; ++c) pending_weight[c] = c < n_pending ? p.w[pending_row[c]] : T(0);
      SoftResponsibilities<T>(k, kp, new_labels, pending_weight, two_sigma2, scores,
                              pending_total);
      std::copy(scores, scores + n_pending * kp, soft_resp + n_soft * kp);
      std::copy(rows_at, rows_at + n_pending * dp, soft_x + n_soft * dp);
      std::copy(pending_total, pending_total + n_pending, soft_total + n_soft);
      n_soft += n_pending;
    }
    scored += n_pending;
    n_pending = 0;
  };
  auto flush_pending = [&]() {
    if (n_pending == 0) return;
    std::fill(pending + n_pending * dp, pending + kGroup * dp, T(0));
    flush(pending, false);
  };
  // Hard: the statistics over the rows in order, with HardChunk's expressions (the same bits),
  // added up to `until` as soon as every row before it has its label (no row pending), so a
  // group's rows are summed while they are still in the cache; the sums aligned in scratch as
  // HardChunk's, then copied.
  T* aligned_sums = soft ? nullptr : AlignUp(pending + kGroup * dp);
  if (!soft) std::fill(aligned_sums, aligned_sums + k * dp, T(0));
  T chunk_distortion = 0;
  int64_t summed = begin;  // rows [begin, summed) are in the statistics
  auto add_rows = [&](int64_t until) {
    for (int64_t i = summed; i < until; ++i) {
      const int32_t label = labels[i];
      const T weight = p.w[i];
      AddWeightedRow<T>(aligned_sums + label * dp, p.x + i * d, weight, d);
      counts[label] += weight;
      chunk_distortion += weight * nearest[i];
    }
    summed = until;
  };

  // A full group scored where it lies, all its rows, the rows pending from earlier groups first.
  // sq_low, norm_up: its rows' |x|^2 and |x| bounds from the bound test; null for a group scored
  // without the test (they come from the scores' read of the rows).
  auto score_group = [&](int64_t g, const T* group, const double* sq_low, const double* norm_up) {
    flush_pending();
    for (int r = 0; r < kGroup; ++r) {
      pending_row[r] = g + r;
      if (soft) skipped[g + r - begin] = false;
    }
    const bool norms_here = sq_low == nullptr;
    if (!norms_here) {
      std::copy(sq_low, sq_low + kGroup, pending_sq);
      std::copy(norm_up, norm_up + kGroup, pending_norm);
    }
    n_pending = kGroup;
    flush(group, norms_here);
    if (!soft) add_rows(g + kGroup);
  };
  // Full groups scored without the bound test and its first read of every row: after a group
  // whose test let too few rows through to skip their scores (below), the next `untested`
  // groups are scored so, 1, 2, 4, ... up to kMaxUntested in a row, and again 1 after a group
  // the test did let rows through. Where the bounds skip nothing (Gaussian noise at D = 784)
  // the test then reads about one group in seven.
  constexpr int kMaxUntested = 8;
  int untested = 0, next_untested = 1;
  for (int64_t g = begin; g < end; g += kGroup) {
    const int64_t rows = std::min<int64_t>(kGroup, end - g);
    const T* group = LoadGroup<T>(p.x, d, dp, g, rows, buffer);
    if (rows == kGroup && untested > 0) {
      --untested;
      score_group(g, group, nullptr, nullptr);
      continue;
    }
    for (int r = 0; r < kGroup; ++r) {
      const int32_t a = r < rows ? bt.labels_in[g + r] : -1;
      old_labels[r] = (a >= 0 && a < k) ? a : 0;
    }
    // Each row's distance to its old label's mean and its |x|^2, from one read of the row. That
    // read is the row's first: a group of short rows asks for the next group's rows below, row by
    // row; a group of kSpreadTestGroupBytes or more (long rows) asks for them spread over this
    // read, a line of the next group's row r with each line of row r (NearestRows' kAhead, as
    // ScoreBlock asks for them in the plain pass), from the rows where they lie (a copied group's
    // buffer has none past it). Without it the test of long rows waited on memory. Measured
    // (session 45, benchmarks/tuning/compilers.py --spread 1 --bounded 0.01 --repeats 9 --loop 5,
    // Intel Xeon with AVX-512, GCC 12.2, one bounded pass with about a third of the rows scored,
    // ms, each build twice, without -> with): float32 (19531, 512, 64) 4.00 / 4.09 -> 3.87 / 3.79,
    // (12755, 784, 64) 5.20 / 5.52 -> 4.88 / 4.95, (12755, 784, 32) 3.67 / 3.68 -> 3.59 / 3.32,
    // (100000, 784, 64) 39.71 / 39.47 -> 37.00 / 37.38; float64 (--repeats 7 --loop 3) (39062, 256,
    // 64) 8.54 / 8.46 -> 7.66 / 7.63, (12755, 784, 64) 12.21 / 12.16 -> 11.84 / 12.20; the AVX2
    // build (12755, 784, 64) 6.57 / 6.66 -> 6.25 / 6.37. On Gaussian noise (--spread 0 --bounded
    // 0.05, every row scored, the test run on about one group in seven) level. The same bits (a
    // prefetch changes no value). Groups of exactly 32 KB (d = 256 float32, 128 float64) asked row
    // by row until session 46; spread (--spread 1 --bounded 0.01, ms, each build twice, row by row
    // -> spread): float32 (39062, 256, 16) 2.31 / 2.28 -> 2.04 / 1.97, (39062, 256, 64) 3.27 / 3.27
    // -> 3.17 / 3.07, (39062, 256, 256) 9.55 / 9.57 -> 9.56 / 9.21; float64 (--repeats 7) (78125,
    // 128, 64) 7.72 / 7.22 -> 6.36 / 6.54, (78125, 128, 16) 5.77 / 6.18 -> 4.52 / 4.46. Spread from
    // 16 KB (d = 128 float32, 64 float64) was level to 15 % faster ((78125, 128, 64) float32 3.17 /
    // 3.36 -> 3.26 / 3.16, float64 (156250, 64, 16) 5.59 / 5.68 -> 4.74 / 5.18) and from 8 KB
    // slower (session 45), so the spread requests start at 32 KB.
    const bool ask_row_by_row = kGroup * d * int64_t{sizeof(T)} < kSpreadTestGroupBytes;
    if (ask_row_by_row) {
      NearestRows<T, true>(group, dp, p.means_padded, old_labels, old_nearest, group_sq);
    } else {
      NearestRows<T, true, true>(group, dp, p.means_padded, old_labels, old_nearest, group_sq,
                                 p.x, (g + kGroup) * d, d);
    }
    // Which rows the bounds let through unscored (and, per row, |x|^2 and |x| for new bounds).
    bool keep[kGroup];
    double row_sq[kGroup], row_norm[kGroup];
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t i = g + r;
      const int32_t a = bt.labels_in[i];
      // The same row of the next group asked for into the L2 cache, line by line (as ScoreGroup
      // does): the bound test is each row's first read.
      if (ask_row_by_row)
        for (int64_t e = 0; e < d; e += kLineValues<T>) PrefetchAt<2>(p.x, (i + kGroup) * d + e);
      norm_bounds(group_sq[r], &row_sq[r], &row_norm[r]);
      keep[r] = false;
      if (a >= 0 && a < k) {
        const T* in = bt.lower_in + i * groups;
        double lower = std::numeric_limits<double>::infinity();
        for (int64_t h = 0; h < groups; ++h) {
          const double moved = static_cast<double>(in[h]) - bt.shift[h];
          if (!(moved >= lower)) lower = moved;  // a NaN shift makes the bound NaN: scored
        }
        if (std::isinf(lower) && lower > 0) {
          keep[r] = true;  // no other mean
        } else if (lower > 0) {
          const double near_up =
              static_cast<double>(old_nearest[r]) * (1 + (d + 4) * kEps) + d * kTiny;
          const double lower_sq = lower * lower;
          // The least gap |x - m_j|^2 - |x - m_a|^2 any other computed score can show.
          const double gap = lower_sq - near_up - 2 * slack_of(row_norm[r]) -
                             0x1p-50 * (lower_sq + near_up);
          keep[r] = soft ? gap * (1 - 8 * kEps) > kOneHotGap<T> * static_cast<double>(two_sigma2)
                         : gap > 0;
        }
      }
    }
    // A full group is scored where it lies, all its rows (a row the bounds let through gets the
    // same label and distance so, and tighter bounds), the rows pending from earlier groups
    // first, when the bounds let through none of its rows or so few that scoring them costs
    // less than copying the others into the pending group (a row's scores cost about k / 2 times
    // its copy). So where the bounds let few rows through (Gaussian noise) the rows after the
    // first such row do not all go through the copy: at (12755, 784, 16) that made a bounded
    // pass about 1.7x a plain one.
    int64_t n_keep = 0;
    for (int64_t r = 0; r < rows; ++r) n_keep += keep[r];
    if (rows == kGroup && n_keep * (k + 2) <= 2 * kGroup) {
      score_group(g, group, row_sq, row_norm);
      untested = next_untested;
      next_untested = std::min(2 * next_untested, kMaxUntested);
      continue;
    }
    next_untested = 1;
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t i = g + r;
      const T* xr = group + r * dp;
      if (keep[r]) {
        const int32_t a = bt.labels_in[i];
        labels[i] = a;
        nearest[i] = old_nearest[r];
        const T* in = bt.lower_in + i * groups;
        T* out = bt.lower_out + i * groups;
        for (int64_t h = 0; h < groups; ++h)
          out[h] = BoundBelow<T>(static_cast<double>(in[h]) - bt.shift[h]);
        if (soft) skipped[i - begin] = true;
      } else {
        if (soft) skipped[i - begin] = false;
        std::copy(xr, xr + dp, pending + n_pending * dp);
        pending_row[n_pending] = i;
        pending_sq[n_pending] = row_sq[r];
        pending_norm[n_pending] = row_norm[r];
        if (++n_pending == kGroup) flush_pending();
      }
    }
    if (!soft && n_pending == 0) add_rows(g + rows);
  }
  flush_pending();
  if (soft) {
    // The statistics over the rows in order (see above): the same bits as SoftChunk's. The
    // scored rows' totals become their logarithms (a one-hot row's is 0).
    LogsOf<T>(soft_total, n_soft, soft_total);
    int64_t run = 0, o = 0;  // the scored rows [run, o) not yet through the product
    for (int64_t i = begin; i < end; ++i) {
      const T weight = p.w[i];
      if (skipped[i - begin]) {
        if (o > run) GroupSums<T>(soft_resp + run * kp, k, kp, soft_x + run * dp, dp, o - run, sums);
        run = o;
        const int32_t a = labels[i];
        AddWeightedRow<T>(sums + a * dp, p.x + i * d, weight, d);
        counts[a] += weight;
        AddLogLik<T>(weight, T(0), nearest[i], two_sigma2, log_lik);
      } else {
        AddCounts<T>(soft_resp + o * kp, kp, counts);
        AddLogLik<T>(weight, soft_total[o], nearest[i], two_sigma2, log_lik);
        ++o;
      }
      *distortion += weight * nearest[i];
    }
    if (o > run) GroupSums<T>(soft_resp + run * kp, k, kp, soft_x + run * dp, dp, o - run, sums);
  } else {
    add_rows(end);
    std::copy(aligned_sums, aligned_sums + k * dp, sums);
    *distortion = chunk_distortion;
  }
  std::copy(labels + begin, labels + end, bt.labels_keep + begin);
  bt.scored->fetch_add(scored, std::memory_order_relaxed);
}

// AssignBounded's arguments: x (M, D) as ValidBlocks', w (n, B), means and old means (K, D), labels (n, B) and
// lower bounds (n, B, G), 1 <= G <= K < 2^24.
bool ValidBounded(const ffi::Span<const int64_t>& x_dims, const ffi::Span<const int64_t>& w_dims,
                  const ffi::Span<const int64_t>& m_dims, const ffi::Span<const int64_t>& o_dims,
                  const ffi::Span<const int64_t>& l_dims, const ffi::Span<const int64_t>& b_dims) {
  return ValidBlocks(x_dims, w_dims) && m_dims.size() == 2 && m_dims[1] == x_dims[1] &&
         m_dims[0] >= 1 && m_dims[0] < (int64_t{1} << 24) && o_dims.size() == 2 &&
         o_dims[0] == m_dims[0] && o_dims[1] == m_dims[1] && l_dims.size() == 2 &&
         l_dims[0] == w_dims[0] && l_dims[1] == w_dims[1] && b_dims.size() == 3 &&
         b_dims[0] == w_dims[0] && b_dims[1] == w_dims[1] && b_dims[2] >= 1 &&
         b_dims[2] <= m_dims[0];
}

// The bounded pass (BoundedChunk over all blocks, hard or soft by two_sigma2): the prepared means,
// the bound test's per-call quantities and the run over the blocks. The problem's statistics
// (stats_size values per unit, laid out as BoundedChunk's) are returned summed as RunBlocks sums
// them.
template <typename T>
void RunBounded(ffi::ThreadPool& pool, int64_t n_blocks, int64_t b, int64_t rows, int64_t d,
                int64_t k, int64_t groups, const T* x, const T* w, const T* means, const T* old_means,
                const int32_t* labels_in, const T* lower_in, T two_sigma2, int32_t* labels,
                T* nearest, T* lower_out, int32_t* labels_keep, int32_t* scored_out,
                std::vector<T>* total) {
  constexpr int L = kLanes<T>;
  const int64_t kp = RoundUp(k, L), dp = RoundUp(d, L);
  const int64_t group_size = RoundUp((k + groups - 1) / groups, L);
  std::vector<T> means_t(dp * kp), bias(kp), means_padded(k * dp);
  PrepareMeans<T>(means, k, d, dp, kp, means_t.data(), bias.data(), means_padded.data());
  // Shifts and norms in double, rounded up by more than their rounding error. A NaN shift or
  // norm (means that are not finite) fails every test: every row is scored.
  const double up = 1 + static_cast<double>(d + 4) * 0x1p-52;
  std::vector<double> shift(groups, 0.0);
  double max_norm = 0;
  for (int64_t c = 0; c < k; ++c) {
    double moved = 0, norm = 0;
    for (int64_t j = 0; j < d; ++j) {
      const double now = static_cast<double>(means[c * d + j]);
      const double diff = now - static_cast<double>(old_means[c * d + j]);
      moved += diff * diff;
      norm += now * now;
    }
    double& group_shift = shift[c / group_size];
    const double this_shift = std::sqrt(moved) * up;
    group_shift = this_shift <= group_shift ? group_shift : this_shift;
    const double this_norm = std::sqrt(norm) * up;
    max_norm = this_norm <= max_norm ? max_norm : this_norm;
  }
  if (!std::isfinite(max_norm)) max_norm = std::numeric_limits<double>::quiet_NaN();
  std::atomic<int64_t> scored{0};
  const BoundTest<T> test{labels_in,
                          lower_in,
                          lower_out,
                          labels_keep,
                          shift.data(),
                          groups,
                          group_size,
                          max_norm,
                          2 * static_cast<double>(d + 4) * std::numeric_limits<T>::epsilon(),
                          &scored};
  const HardProblem<T> problem{x, w, means_t.data(), bias.data(), means_padded.data(), d, dp, k, kp};
  const int64_t stats_size = two_sigma2 > 0 ? kp + k * dp + 2 : k + k * dp + 1;
  const int64_t soft_scratch = two_sigma2 > 0 ? kChunk * (kp + dp + 1) : k * dp + L;
  // The repeats of row 0 left out get row 0's bounds too: valid bounds for the same row.
  LeftOut left_out;
  *total = RunBlocks<T>(pool, n_blocks, b, rows, x, w, d, stats_size,
                        kGroup * (kp + 2 * dp) + soft_scratch, &left_out,
                        [&](int64_t begin, int64_t end, T* stats, T* scratch) {
                          BoundedChunk<T>(problem, test, two_sigma2, begin, end, labels, nearest,
                                          stats, scratch);
                        });
  CopyRowZero(left_out, 1, labels);
  CopyRowZero(left_out, 1, labels_keep);
  CopyRowZero(left_out, 1, nearest);
  CopyRowZero(left_out, groups, lower_out);
  // The rows left out count as scored, as they were when the bounded passes computed them
  // (most of the time: with row 0 unsettled): the fit's schedule (next_schedule) weighs the rows
  // the bounds skip against all rows, and padding counted as skipped would make a pass that
  // skips no real row look as if it paid (22 % of the rows at (12755, 784) in blocks of 4096).
  int64_t left_out_rows = 0;
  for (size_t u = 0; u < left_out.begin.size(); ++u)
    left_out_rows += left_out.end[u] - left_out.begin[u];
  *scored_out =
      static_cast<int32_t>(std::min<int64_t>(scored.load() + left_out_rows, INT32_MAX));
}

// What a call of AssignBounded does, chosen at run time (by the fit's schedule and sigma2), so a
// fit's loop calls one kernel whatever the pass and no conditional returns the bounds: XLA:CPU
// copies an array a conditional's branch passes through, and again into the loop's carry, every
// iteration (64 MB of bounds a pass at (1M, 64, 256)).
enum BoundedMode : int32_t {
  kHardBounded = 0,  // HardAssign's outputs with the bound test, new bounds and bound labels
  kSoftBounded = 1,  // SoftAssign's outputs for one set with the one-hot test, new bounds, labels
  kHardPlain = 2,    // HardAssign's outputs; the bounds and bound labels kept as they are
  kSoftPlain = 3,    // SoftAssign's outputs for one set; the bounds and bound labels kept
  kNothing = 4,      // nothing computed (the caller runs another pass): outputs 0, bounds kept
};

// One pass with Hamerly's bounds kept across calls: the mode (above) picks a bounded pass, the
// plain pass that keeps the bounds (valid at any later means, only looser), or none. The bounds
// and their labels are updated in place when the caller aliases them to the outputs (then the
// modes that keep them touch nothing), else copied.
//   args: x (M, D) (the blocks' first M rows, see RunBlocks), w (n, B), means (K, D), sigma2 ()
//         (> 0 for the soft modes), old means (K, D) the bounds refer to, mode () int32, bound
//         labels (n, B) int32 (< 0: none) and lower bounds (n, B, G)
//   rets: labels, nearest (n, B), counts (K), sums (K, D), log_lik (), distortion () (as
//         HardAssign's with log_lik 0, or SoftAssign's for one set), the new lower bounds
//         (n, B, G) and bound labels (n, B), and the rows scored against every mean () (the
//         bounded modes; 0 otherwise).
template <ffi::DataType DT>
ffi::Error AssignBounded(ffi::ThreadPool pool, ffi::Buffer<DT> x_buf, ffi::Buffer<DT> w_buf,
                         ffi::Buffer<DT> means_buf, ffi::Buffer<DT> sigma2_buf,
                         ffi::Buffer<DT> old_means_buf, ffi::Buffer<ffi::S32> mode_buf,
                         ffi::Buffer<ffi::S32> labels_in_buf, ffi::Buffer<DT> lower_in_buf,
                         ffi::ResultBuffer<ffi::S32> labels_buf, ffi::ResultBuffer<DT> nearest_buf,
                         ffi::ResultBuffer<DT> counts_buf, ffi::ResultBuffer<DT> sums_buf,
                         ffi::ResultBuffer<DT> log_lik_buf, ffi::ResultBuffer<DT> distortion_buf,
                         ffi::ResultBuffer<DT> lower_buf,
                         ffi::ResultBuffer<ffi::S32> bound_labels_buf,
                         ffi::ResultBuffer<ffi::S32> scored_buf) {
  using T = ffi::NativeType<DT>;
  constexpr int L = kLanes<T>;
  const auto x_dims = x_buf.dimensions();
  const auto m_dims = means_buf.dimensions();
  const auto b_dims = lower_in_buf.dimensions();
  if (!ValidBounded(x_dims, w_buf.dimensions(), m_dims, old_means_buf.dimensions(),
                    labels_in_buf.dimensions(), b_dims)) {
    return ffi::Error::InvalidArgument(
        "gmmlimit assign_bounded: expected x (M, D), w (n, B) (1 <= M <= n B), means and old "
        "means (K, D), labels (n, B) and lower bounds (n, B, G), 1 <= G <= K < 2^24");
  }
  const int32_t mode = mode_buf.element_count() == 1 ? mode_buf.typed_data()[0] : -1;
  const T sigma2 = sigma2_buf.element_count() == 1 ? sigma2_buf.typed_data()[0] : T(0);
  if (mode < kHardBounded || mode > kNothing) {
    return ffi::Error::InvalidArgument("gmmlimit assign_bounded: expected one mode in 0..4");
  }
  const bool soft = mode == kSoftBounded || mode == kSoftPlain;
  if (soft && !(sigma2 > 0)) {
    return ffi::Error::InvalidArgument(
        "gmmlimit assign_bounded: a soft mode needs one sigma2 > 0 (the hard limit is a hard "
        "mode)");
  }
  const auto w_dims = w_buf.dimensions();
  const int64_t n_blocks = w_dims[0], b = w_dims[1], in_memory = x_dims[0], d = x_dims[1];
  const int64_t k = m_dims[0], rows = n_blocks * b, groups = b_dims[2];
  const T* x = x_buf.typed_data();
  const T* w = w_buf.typed_data();
  const T* means = means_buf.typed_data();
  int32_t* labels = labels_buf->typed_data();
  T* nearest = nearest_buf->typed_data();
  T* counts = counts_buf->typed_data();
  T* sums = sums_buf->typed_data();
  T* log_lik = log_lik_buf->typed_data();
  T* distortion = distortion_buf->typed_data();
  T* lower = lower_buf->typed_data();
  int32_t* bound_labels = bound_labels_buf->typed_data();
  int32_t* scored = scored_buf->typed_data();
  *scored = 0;
  *log_lik = T(0);
  if (mode == kHardBounded || mode == kSoftBounded) {
    std::vector<T> total;
    RunBounded<T>(pool, n_blocks, b, in_memory, d, k, groups, x, w, means, old_means_buf.typed_data(),
                  labels_in_buf.typed_data(), lower_in_buf.typed_data(), soft ? 2 * sigma2 : T(0),
                  labels, nearest, lower, bound_labels, scored, &total);
    const int64_t kp = RoundUp(k, L), dp = RoundUp(d, L);
    const int64_t sums_at = soft ? kp : k;  // BoundedChunk's layout of the statistics
    std::copy(total.begin(), total.begin() + k, counts);
    for (int64_t c = 0; c < k; ++c)
      std::copy(total.begin() + sums_at + c * dp, total.begin() + sums_at + c * dp + d,
                sums + c * d);
    if (soft) *log_lik = total[sums_at + k * dp];
    *distortion = total[sums_at + k * dp + (soft ? 1 : 0)];
    return ffi::Error::Success();
  }
  // The bounds kept as they are: in place when aliased, else copied.
  if (lower != lower_in_buf.typed_data())
    std::copy(lower_in_buf.typed_data(), lower_in_buf.typed_data() + rows * groups, lower);
  if (bound_labels != labels_in_buf.typed_data())
    std::copy(labels_in_buf.typed_data(), labels_in_buf.typed_data() + rows, bound_labels);
  if (mode == kHardPlain) {
    RunHard<T>(pool, n_blocks, b, in_memory, d, k, x, w, means, labels, nearest, counts, sums,
               distortion);
  } else if (mode == kSoftPlain) {
    RunSoft<T>(pool, n_blocks, b, in_memory, d, 1, k, x, w, means, &sigma2, labels, nearest, counts, sums,
               log_lik, distortion);
  } else {
    std::fill(labels, labels + rows, 0);
    std::fill(nearest, nearest + rows, T(0));
    std::fill(counts, counts + k, T(0));
    std::fill(sums, sums + k * d, T(0));
    *distortion = T(0);
  }
  return ffi::Error::Success();
}

// ---------------------------------------------------------------------------------------------
// The fit loops' partition rule (no label changed since the last E-step) and the carried labels'
// update in one pass over the threads. XLA:CPU compared on one thread and then copied the E-step's
// labels into the loop's buffer on one thread: about 0.2 ms of a K-means iteration of 1.2 ms at
// (250000, 8, 5) (benchmarks/tuning/fit_overhead.py). With the previous labels' buffer aliased to
// the output, the new labels are compared and written over them in the same pass.

constexpr int64_t kCompareChunk = int64_t{1} << 16;  // labels per unit of parallel work

// stored[i] = labels[i] over [begin, end); 1 if any differed from stored[i] before, else 0.
// stored may be previous itself (aliased) or a fresh buffer; each index is read before written.
inline int32_t UpdateLabels(const int32_t* labels, const int32_t* previous, int32_t* stored,
                            int64_t begin, int64_t end) {
  uint32_t differences = 0;
  for (int64_t i = begin; i < end; ++i) {
    const int32_t label = labels[i];
    differences |= static_cast<uint32_t>(label) ^ static_cast<uint32_t>(previous[i]);
    stored[i] = label;
  }
  return differences != 0 ? 1 : 0;
}

// values (...) and logs (...) of one shape: logs = log(values) by LogsOf, the soft E-step's
// logarithm of its rows' totals, for tests of its accuracy against a correctly rounded one.
template <ffi::DataType DT>
ffi::Error LogValues(ffi::Buffer<DT> values_buf, ffi::ResultBuffer<DT> logs_buf) {
  const int64_t count = static_cast<int64_t>(values_buf.element_count());
  if (static_cast<int64_t>(logs_buf->element_count()) != count) {
    return ffi::Error::InvalidArgument("gmmlimit log: expected values and logs of one shape");
  }
  LogsOf(values_buf.typed_data(), count, logs_buf->typed_data());
  return ffi::Error::Success();
}

// labels and previous (..., n) int32, the same shape; stored (..., n): the labels (written over
// previous when XLA aliases the two); changed (...) int32: 1 where a row of n labels differs from
// previous anywhere, else 0.
ffi::Error LabelsUpdate(ffi::ThreadPool pool, ffi::Buffer<ffi::S32> labels_buf,
                        ffi::Buffer<ffi::S32> previous_buf, ffi::ResultBuffer<ffi::S32> stored_buf,
                        ffi::ResultBuffer<ffi::S32> changed_buf) {
  const auto dims = labels_buf.dimensions();
  const auto previous_dims = previous_buf.dimensions();
  bool same_shape = dims.size() >= 1 && previous_dims.size() == dims.size();
  for (size_t i = 0; same_shape && i < dims.size(); ++i) same_shape = dims[i] == previous_dims[i];
  const int64_t rows = static_cast<int64_t>(changed_buf->element_count());
  const int64_t n = same_shape ? dims[dims.size() - 1] : 0;
  const int64_t count = static_cast<int64_t>(labels_buf.element_count());
  if (!same_shape || rows * n != count ||
      static_cast<int64_t>(stored_buf->element_count()) != count) {
    return ffi::Error::InvalidArgument(
        "gmmlimit update_labels: expected labels and previous labels (..., n) of one shape, "
        "stored labels of that shape and changed (...)");
  }
  const int32_t* labels = labels_buf.typed_data();
  const int32_t* previous = previous_buf.typed_data();
  int32_t* stored = stored_buf->typed_data();
  int32_t* changed = changed_buf->typed_data();
  std::fill(changed, changed + rows, 0);
  if (n == 0) return ffi::Error::Success();
  const int64_t chunks_per_row = (n + kCompareChunk - 1) / kCompareChunk;
  RunUnits<int32_t>(
      pool, rows * chunks_per_row, 1, 0,
      [&](int64_t unit, int32_t* flag, int32_t*) {
        const int64_t row = unit / chunks_per_row, part = unit % chunks_per_row;
        const int64_t begin = part * kCompareChunk, end = std::min(n, begin + kCompareChunk);
        *flag = UpdateLabels(labels + row * n, previous + row * n, stored + row * n, begin, end);
      },
      [&](int64_t unit, const int32_t* flag) { changed[unit / chunks_per_row] |= *flag; });
  return ffi::Error::Success();
}

}  // namespace

#define GMMLIMIT_DEFINE_HARD(NAME, DT)                                 \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(NAME, HardAssign<DT>,                  \
                                ffi::Ffi::Bind()                       \
                                    .Ctx<ffi::ThreadPool>()            \
                                    .Arg<ffi::Buffer<DT>>()            \
                                    .Arg<ffi::Buffer<DT>>()            \
                                    .Arg<ffi::Buffer<DT>>()            \
                                    .Ret<ffi::Buffer<ffi::S32>>()      \
                                    .Ret<ffi::Buffer<DT>>()            \
                                    .Ret<ffi::Buffer<DT>>()            \
                                    .Ret<ffi::Buffer<DT>>()            \
                                    .Ret<ffi::Buffer<DT>>());

#define GMMLIMIT_DEFINE_SOFT(NAME, DT)                                 \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(NAME, SoftAssign<DT>,                  \
                                ffi::Ffi::Bind()                       \
                                    .Ctx<ffi::ThreadPool>()            \
                                    .Arg<ffi::Buffer<DT>>()            \
                                    .Arg<ffi::Buffer<DT>>()            \
                                    .Arg<ffi::Buffer<DT>>()            \
                                    .Arg<ffi::Buffer<DT>>()            \
                                    .Ret<ffi::Buffer<ffi::S32>>()      \
                                    .Ret<ffi::Buffer<DT>>()            \
                                    .Ret<ffi::Buffer<DT>>()            \
                                    .Ret<ffi::Buffer<DT>>()            \
                                    .Ret<ffi::Buffer<DT>>()            \
                                    .Ret<ffi::Buffer<DT>>());

#define GMMLIMIT_DEFINE_BOUNDED(NAME, DT)                              \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(NAME, AssignBounded<DT>,               \
                                ffi::Ffi::Bind()                       \
                                    .Ctx<ffi::ThreadPool>()            \
                                    .Arg<ffi::Buffer<DT>>()            \
                                    .Arg<ffi::Buffer<DT>>()            \
                                    .Arg<ffi::Buffer<DT>>()            \
                                    .Arg<ffi::Buffer<DT>>()            \
                                    .Arg<ffi::Buffer<DT>>()            \
                                    .Arg<ffi::Buffer<ffi::S32>>()      \
                                    .Arg<ffi::Buffer<ffi::S32>>()      \
                                    .Arg<ffi::Buffer<DT>>()            \
                                    .Ret<ffi::Buffer<ffi::S32>>()      \
                                    .Ret<ffi::Buffer<DT>>()            \
                                    .Ret<ffi::Buffer<DT>>()            \
                                    .Ret<ffi::Buffer<DT>>()            \
                                    .Ret<ffi::Buffer<DT>>()            \
                                    .Ret<ffi::Buffer<DT>>()            \
                                    .Ret<ffi::Buffer<DT>>()            \
                                    .Ret<ffi::Buffer<ffi::S32>>()      \
                                    .Ret<ffi::Buffer<ffi::S32>>());

GMMLIMIT_DEFINE_HARD(GmmlimitHardAssignF32, ffi::F32)
GMMLIMIT_DEFINE_HARD(GmmlimitHardAssignF64, ffi::F64)
GMMLIMIT_DEFINE_SOFT(GmmlimitSoftAssignF32, ffi::F32)
GMMLIMIT_DEFINE_SOFT(GmmlimitSoftAssignF64, ffi::F64)
GMMLIMIT_DEFINE_BOUNDED(GmmlimitAssignBoundedF32, ffi::F32)
GMMLIMIT_DEFINE_BOUNDED(GmmlimitAssignBoundedF64, ffi::F64)

XLA_FFI_DEFINE_HANDLER_SYMBOL(GmmlimitLogF32, LogValues<ffi::F32>,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(GmmlimitLogF64, LogValues<ffi::F64>,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F64>>()
                                  .Ret<ffi::Buffer<ffi::F64>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(GmmlimitUpdateLabels, LabelsUpdate,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>());
