// The worker's loader (public/worker_loader.js) picks a build by asking V8
// to validate a small relaxed-SIMD module. Run the real file in node's V8
// with relaxed SIMD off and on (node 20 has it behind a flag), the wasm glue
// stubbed, and see which wasm file it starts. The browser side is in
// simulation.test.mjs (Chromium picks the relaxed build; a failed load falls back).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const LOADER = fileURLToPath(new URL('../../public/worker_loader.js', import.meta.url));

/** The wasm files the loader asks the glue for, in order, when `failing` fails to load. */
function startsWith(v8Flag, failing = '') {
  const script = `
    const vm = require('node:vm');
    const asked = [];
    const wasm_bindgen = ({ module_or_path }) => {
      asked.push(module_or_path);
      return module_or_path === ${JSON.stringify(failing)} ? Promise.reject(new Error('404')) : Promise.resolve();
    };
    const console = { warn: () => {} };
    vm.runInNewContext(require('node:fs').readFileSync(${JSON.stringify(LOADER)}, 'utf8'),
      { WebAssembly, console, wasm_bindgen, importScripts: () => {} });
    setTimeout(() => process.stdout.write(JSON.stringify(asked)), 10);`;
  return JSON.parse(execFileSync(process.execPath, [v8Flag, '-e', script], { encoding: 'utf8' }));
}

test('without relaxed SIMD the loader starts the baseline build', () => {
  assert.deepEqual(startsWith('--no-experimental-wasm-relaxed-simd'), ['./worker_bg.wasm']);
});

test('with relaxed SIMD it starts the relaxed build, and the baseline if that fails to load', () => {
  assert.deepEqual(startsWith('--experimental-wasm-relaxed-simd'), ['./worker_relaxed_bg.wasm']);
  assert.deepEqual(startsWith('--experimental-wasm-relaxed-simd', './worker_relaxed_bg.wasm'), ['./worker_relaxed_bg.wasm', './worker_bg.wasm']);
});
