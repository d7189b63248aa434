#!/usr/bin/env bash
# `make bench`: the world model's full candidate sweep (25 candidates x 5
# members x 16 samples x 6 steps) natively with candle (criterion, 1 and 2
# threads), in PyTorch on the CPU (same weights, architecture and batch; 1 and
# 2 threads), and in headless Chromium (candle wasm CPU; WebGPU when an
# adapter exists; the app's real worker alone and with its simulation helpers); then the agent's LLM (prefill, decode, a whole decision)
# natively (criterion, 1 and 2 threads) and in headless Chromium through the
# real worker (needs `make build`'s dist/); the newcomer's clicks from the
# start screen to a prescription in a fresh profile; all in one run; writes
# docs/benchmarks.md.
# PyTorch is installed into .cache/bench-venv for this benchmark only.
set -euo pipefail
cd "$(dirname "$0")/.."
out=.cache/bench
mkdir -p "$out"
results="$out/results.jsonl"
: > "$results"

echo "== native candle (criterion)"
for threads in 1 2; do
  RAYON_NUM_THREADS=$threads cargo bench -q -p sepsis-core --bench simulate -- --noplot
  estimates=$(ls -d target/criterion/world-model/full-sweep_candle-cpu_${threads}-threads/new/estimates.json)
  python3 - "$estimates" "$threads" >> "$results" <<'PY'
import json, sys
median_ns = json.load(open(sys.argv[1]))["median"]["point_estimate"]
ms = median_ns / 1e6
print(json.dumps({"engine": "candle-native-cpu", "device": "native CPU", "threads": int(sys.argv[2]),
                  "sweep_ms": ms, "patient_steps_per_s": 25 * 5 * 16 * 6 / (ms / 1000)}))
PY
done

echo "== PyTorch CPU"
venv=.cache/bench-venv
if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "torch==2.15.0" numpy
fi
"$venv/bin/python" scripts/bench/pytorch_world_model.py --threads 1 2 >> "$results"

echo "== headless Chromium: the worker's baseline build, then its relaxed-SIMD build (scripts/build-relaxed-worker.sh)"
for build in baseline relaxed; do
  flags=()
  if [ "$build" = relaxed ]; then
    flags=(scripts/relaxed-simd.sh)
  fi
  "${flags[@]}" env WASM_BINDGEN_TEST_TIMEOUT=600 CHROMEDRIVER=${CHROMEDRIVER:-/usr/bin/chromedriver} cargo test --release \
    --target wasm32-unknown-unknown -p sepsis-worker --features browser-bench --test bench_in_worker -- --nocapture 2>&1 \
    | tee "$out/browser-$build.log" | sed -n 's/.*BENCH //p' >> "$results"
done

echo "== the app's worker in headless Chromium, each build: a sweep alone and with helper workers (needs dist/)"
node tests/bench/browser-simulation.mjs | tee "$out/browser-simulation.log" | sed -n 's/^BENCH //p' >> "$results"

echo "== LLM native (criterion)"
rm -rf target/criterion/llm
for threads in 1 2; do
  RAYON_NUM_THREADS=$threads cargo bench -q -p sepsis-core --bench llm -- --noplot
  python3 - "$threads" >> "$results" <<'PY'
import glob, json, sys
threads = int(sys.argv[1])
for path in sorted(glob.glob(f"target/criterion/llm/*/new/estimates.json")):
    bench = json.load(open(path.replace("estimates.json", "benchmark.json")))
    kind, size, th = bench["function_id"].split("/")
    if th != f"{threads}-threads":
        continue
    ms = json.load(open(path))["median"]["point_estimate"] / 1e6
    row = {"engine": "llm-native-cpu", "device": "native CPU", "threads": threads, "kind": kind, "ms": ms}
    if kind in ("prefill", "decode"):
        row["tokens"] = int(size.split("-")[0])
        row["tokens_per_s"] = row["tokens"] / (ms / 1000)
    else:
        row["agent"] = size
    print(json.dumps(row))
PY
done

echo "== LLM in headless Chromium (the real worker)"
node tests/bench/browser-llm.mjs | tee "$out/browser-llm.log" | sed -n 's/^BENCH //p' >> "$results"

echo "== the newcomer's path in headless Chromium (fresh profile: open, demo cohort, first patient, a prescription)"
node tests/bench/browser-newcomer.mjs | tee "$out/browser-newcomer.log" | sed -n 's/^BENCH //p' >> "$results"

python3 scripts/bench/report.py "$results" docs/benchmarks.md
echo "wrote docs/benchmarks.md"
