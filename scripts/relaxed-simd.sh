#!/usr/bin/env bash
# Run a command (cargo) for the worker's relaxed-SIMD build: wasm compiled
# with +relaxed-simd (fused multiply-add in core/src/world_model/wasm_matmul.rs),
# in its own target directory, since other RUSTFLAGS in target/ would rebuild
# every dependency each time the two builds alternate. Used by
# scripts/build-relaxed-worker.sh, scripts/test-all.sh and scripts/bench.sh.
# The variable replaces .cargo/config.toml's wasm rustflags (+simd128).
export CARGO_TARGET_DIR=target/relaxed
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="-C target-feature=+simd128,+relaxed-simd"
exec "$@"
