#!/usr/bin/env bash
# `make bench-gpu`, on a machine with a real GPU and a Vulkan driver: the
# world model's full candidate sweep on our WGSL kernels through wgpu's
# Vulkan backend (the browser's WebGPU path, its kernels and launches,
# without the browser; worker/benches/gpu_simulate.rs, which first checks the
# GPU's sweep against the CPU's), candle on the same machine's CPU (all
# threads and 1), and PyTorch on CUDA and on the CPU (same weights,
# architecture and batch); all in one run; writes docs/benchmarks-gpu.md.
#
# GPU_BENCH names a prebuilt gpu_simulate binary for a machine without Rust
# (`cargo bench -p sepsis-worker --bench gpu_simulate --no-run` prints its
# path); PYTHON a Python with torch built for CUDA (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
out=.cache/bench-gpu
mkdir -p "$out"
results="$out/results.jsonl"
: > "$results"
export CRITERION_HOME="$PWD/$out/criterion"
rm -rf "$CRITERION_HOME"
export SEPSIS_WORLD_MODEL="$PWD/public/models/world-model"

bench() {
  if [ -n "${GPU_BENCH:-}" ]; then "$GPU_BENCH" --bench --noplot "$@"; else cargo bench -q -p sepsis-worker --bench gpu_simulate -- --noplot "$@"; fi
}

echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores" | tee "$out/gpu.log"
echo "== WGSL kernels through wgpu/Vulkan, and candle on this CPU"
bench 2>&1 | tee -a "$out/gpu.log"
echo "== candle on one thread"
RAYON_NUM_THREADS=1 bench candle-cpu 2>&1 | tee -a "$out/gpu.log"
python3 - "$CRITERION_HOME" >> "$results" <<'PY'
import glob, json, sys
for path in sorted(glob.glob(f"{sys.argv[1]}/world-model-gpu/*/new/estimates.json")):
    function = json.load(open(path.replace("estimates.json", "benchmark.json")))["function_id"]
    ms = json.load(open(path))["median"]["point_estimate"] / 1e6
    _, engine, *threads = function.split("/")
    row = {"engine": {"wgpu-vulkan": "wgsl-vulkan"}.get(engine, "candle-native-cpu"),
           "threads": int(threads[0].split("-")[0]) if threads else 1, "sweep_ms": ms,
           "patient_steps_per_s": 25 * 5 * 16 * 6 / (ms / 1000)}
    print(json.dumps(row))
PY

python=${PYTHON:-python3}
echo "== PyTorch on CUDA"
"$python" scripts/bench/pytorch_world_model.py --device cuda --threads 1 --iterations 50 | tee -a "$results"
echo "== PyTorch on the CPU"
"$python" scripts/bench/pytorch_world_model.py --threads 1 "$(nproc)" | tee -a "$results"

python3 scripts/bench/report_gpu.py "$results" "$out/gpu.log" docs/benchmarks-gpu.md
echo "wrote docs/benchmarks-gpu.md"
