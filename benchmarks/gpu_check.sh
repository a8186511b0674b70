#!/usr/bin/env bash
# A lent GPU's checks, in one call that fits a short lease (docs/benchmarks.md, "On a GPU").
#
# From the repository root on the GPU machine, with the Python that has JAX's CUDA plugin:
#
#     OUT=<folder> GMMLIMIT_GIT_REV=<commit> bash benchmarks/gpu_check.sh
#
# Writes into a folder ($WORK, default a new temporary one), and packs it as $OUT/gpu_check.tgz
# at the end (the lent machine returns at most 8 files): machine.txt (the GPU and the versions),
# tests.log (the test suite on the GPU, one line per test, as far as its time limit reaches),
# run.json/.md (benchmarks/run.py at its default sizes, default blocks), blocks.json/.log
# (benchmarks/tuning/block_sizes.py: K-means, EM and an 8-lane sweep per iteration at blocks of
# 4096 rows and at the default block, gl.scale.default_block_size, shape by shape; session 34
# measured one block of all rows 1.6x to 15x faster than 4096 and a sweep paying ~58 us a tile)
# and grid.json/.md (the shape grid, K <= 64, default blocks; the JSON holds every shape
# finished, also when the grid is cut short). Each step has its own time limit (seconds, the
# variables below), so a slow one cannot take the others' time.
set -u
out=${WORK:-$(mktemp -d)}
py=${PYTHON:-python3}
mkdir -p "$out"
echo "results in $out"
trap '[ -n "${OUT:-}" ] && tar czf "$OUT/gpu_check.tgz" -C "$out" .' EXIT
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 MPLBACKEND=Agg XLA_PYTHON_CLIENT_PREALLOCATE=false
tests_s=${TESTS_S:-180} run_s=${RUN_S:-120} blocks_s=${BLOCKS_S:-120} grid_s=${GRID_S:-100}
step() { echo "== $(date -u +%T) $*"; }

step machine
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
  nproc
  $py -c "import jax, numpy, sklearn, optax; print('jax', jax.__version__, jax.devices(),
'numpy', numpy.__version__, 'sklearn', sklearn.__version__, 'optax', optax.__version__)"
  $py -c "import gmmlimit as gl, jax.numpy as jnp; r = gl.kmeans(jnp.arange(8.0).reshape(4, 2),
jnp.zeros((2, 2)).at[1].set(6.0)); print('kmeans on', r.means.devices(), r.labels)"
} 2>&1 | tee "$out/machine.txt"
[ "${PIPESTATUS[0]}" = 0 ] || { echo "the machine check failed: stopping"; exit 1; }

step "tests on the GPU (at most ${tests_s} s)"
# gmmlimit.experiments and gmmlimit.paper_figures (setup.py maps the folders): installed in place,
# or, where that cannot build offline, linked into this copy of the tree
if ! $py -m pip install -q --no-deps --no-build-isolation -e . >"$out/install.log" 2>&1; then
  for sub in experiments paper_figures; do [ -e "gmmlimit/$sub" ] || ln -s "../$sub" "gmmlimit/$sub"; done
  echo "install failed: linked gmmlimit/experiments and gmmlimit/paper_figures instead"
fi
timeout "$tests_s" $py -m pytest -n 8 -v -p no:cacheprovider --tb=short >"$out/tests.log" 2>&1
echo "pytest rc $?"
grep -cE "PASSED" "$out/tests.log" | sed 's/^/passed: /'
grep -E "FAILED|ERROR" "$out/tests.log" | head -30

step "benchmarks/run.py at its default sizes (at most ${run_s} s)"
timeout "$run_s" $py benchmarks/run.py --no-faiss --memory-size "" --anchor-repeats 1 \
  --gmm-iters 1 --out "$out/run.json" --md "$out/run.md" >"$out/run.log" 2>&1
echo "run.py rc $?"

step "the default block against 4096, and the sweep's tiles (at most ${blocks_s} s)"
timeout "$blocks_s" $py benchmarks/tuning/block_sizes.py "$out/blocks.json" --blocks 4096,auto \
  --budget-s $((blocks_s - 15)) >"$out/blocks.log" 2>&1
echo "blocks rc $?"

step "the grid, K <= 64, default blocks (at most ${grid_s} s)"
timeout "$grid_s" $py benchmarks/run.py --grid --grid-k 5,16,64 \
  --out "$out/grid.json" \
  --md "$out/grid.md" >"$out/grid.log" 2>&1
echo "grid rc $?"

step done
cat "$out/run.md" 2>/dev/null | grep -E "^\|" | cut -c1-150
cat "$out/blocks.log" 2>/dev/null
tail -n 4 "$out/grid.log"
