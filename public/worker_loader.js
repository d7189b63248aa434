// Starts the app's worker (and, since they load this same file, its
// simulation helpers). Two builds of the same Rust code share one JS glue
// (worker.js): one with relaxed SIMD, whose world-model matmuls use fused
// multiply-add, and the baseline wasm SIMD build for browsers without it
// (scripts/build-relaxed-worker.sh). A browser that validates a relaxed-SIMD
// module gets the first; if that file fails to load or compile, the baseline.
importScripts('./worker.js');

// One function returning f32x4.relaxed_madd of three zero vectors.
const RELAXED_SIMD_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version 1
  0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, // types: () -> v128
  0x03, 0x02, 0x01, 0x00, // one function of that type
  0x0a, 0x3d, 0x01, 0x3b, 0x00, // code: one body of 59 bytes, no locals
  ...[0, 1, 2].flatMap(() => [0xfd, 0x0c, ...new Array(16).fill(0)]), // v128.const 0, three times
  0xfd, 0x85, 0x02, // f32x4.relaxed_madd
  0x0b, // end
]);
const BASELINE = './worker_bg.wasm';
const RELAXED = './worker_relaxed_bg.wasm';

if (WebAssembly.validate(RELAXED_SIMD_PROBE)) {
  wasm_bindgen({ module_or_path: RELAXED }).catch((error) => {
    console.warn(`the relaxed-SIMD worker did not start (${error}); starting the baseline build`);
    return wasm_bindgen({ module_or_path: BASELINE });
  });
} else {
  wasm_bindgen({ module_or_path: BASELINE });
}
