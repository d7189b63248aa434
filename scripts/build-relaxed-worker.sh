#!/usr/bin/env bash
# The worker's second build, for browsers with WebAssembly relaxed SIMD: the
# same Rust code compiled with +relaxed-simd, whose world-model matmuls use
# fused multiply-add (core/src/world_model/wasm_matmul.rs). The loader
# (public/worker_loader.js) picks it where the browser validates a
# relaxed-SIMD module and falls back to trunk's baseline build otherwise.
# Run after `trunk build --release` (it needs dist/worker.js): `make build`.
set -euo pipefail
cd "$(dirname "$0")/.."
dist=${1:-dist}
target=$(scripts/relaxed-simd.sh printenv CARGO_TARGET_DIR)
wasm=$target/wasm32-unknown-unknown/release/worker.wasm
optimised=$target/worker_relaxed_bg.wasm

scripts/relaxed-simd.sh cargo build --release --target wasm32-unknown-unknown -p sepsis-worker --bin worker

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
wasm-bindgen --target no-modules --no-typescript --out-dir "$tmp" --out-name worker "$wasm"
# Both wasm files run under trunk's one JS glue (dist/worker.js); glue
# generated from different code would call missing exports at run time.
if ! diff <(grep -v '^\s*//' "$tmp/worker.js") <(grep -v '^\s*//' "$dist/worker.js") >/dev/null; then
  echo "build-relaxed-worker: the relaxed-SIMD build's JS glue differs from $dist/worker.js (other than comments); the two builds must come from the same code" >&2
  exit 1
fi
# wasm-opt takes a minute: only when the build changed. -O2 as index.html
# explains for the baseline build.
if [ ! -f "$optimised" ] || [ "$wasm" -nt "$optimised" ]; then
  wasm-opt -O2 "$tmp/worker_bg.wasm" -o "$optimised.tmp"
  mv "$optimised.tmp" "$optimised"
fi
cp -f "$optimised" "$dist/worker_relaxed_bg.wasm"
echo "build-relaxed-worker: $dist/worker_relaxed_bg.wasm ($(stat -c %s "$dist/worker_relaxed_bg.wasm") bytes)"
