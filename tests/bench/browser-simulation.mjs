// Browser benchmark of the world model's full sweep with its rows split
// across helper workers (not a test: `make bench` runs it). The real worker
// (the app's worker_loader.js, release bundle) answers `MeasureSimulation`:
// the sweep on this worker alone and with `HELPERS` helpers, alternately,
// after a warm-up of each; prints one `BENCH {json}` line for
// scripts/bench/report.py. One helper per further core: 1 on this 2-core
// machine. Twice: as this Chromium loads it (the relaxed-SIMD build), and
// with that file blocked, so the loader falls back to the baseline build.
import { availableParallelism } from 'node:os';
import { startServer, openBrowser, startWorkerClient } from '../e2e/harness.mjs';

const HELPERS = Math.max(1, Math.min(4, availableParallelism() - 1));
const REPEATS = 10;

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

const server = await startServer();
try {
  for (const blockRelaxed of [false, true]) await measure(blockRelaxed);
} finally {
  server.stop();
}

async function measure(blockRelaxed) {
  const browser = await openBrowser();
  try {
    const { context, page } = browser;
    if (blockRelaxed) await context.route('**/worker_relaxed_bg.wasm', (route) => route.abort());
    // A page of the same origin that is not the app: the app would start its
    // own worker and compete for the cores being measured.
    await page.goto(`${server.url}/style.css`);
    await startWorkerClient(page);
    const { backend, speed } = await page.evaluate(async ({ helpers, repeats }) => {
      const { ask, terminate } = globalThis.workerClient;
      const backend = await ask({ type: 'ProbeBackend' }, 'Backend');
      await ask({ type: 'LoadModels' }, 'ModelsReady');
      const speed = await ask({ type: 'MeasureSimulation', helpers, repeats }, 'SimulationSpeed');
      terminate();
      return { backend, speed };
    }, { helpers: HELPERS, repeats: REPEATS });
    if (speed.max_difference !== 0) throw new Error(`the helpers' sweep differs from one worker's by ${speed.max_difference}`);
    // Which build the loader started, as the worker reports it.
    const build = backend.chosen === 'CpuRelaxedSimd' ? 'relaxed SIMD' : 'SIMD';
    const engine = build === 'relaxed SIMD' ? 'candle-wasm-cpu-app-relaxed' : 'candle-wasm-cpu-app';
    const workers = speed.helpers + 1;
    const row = (threads, times, device) => {
      const ms = median(times);
      console.log('BENCH ' + JSON.stringify({ engine, device, threads, sweep_ms: ms, patient_steps_per_s: 12000 / (ms / 1000), iterations: times.length }));
    };
    row(1, speed.one_worker_ms, `browser CPU (wasm ${build}), the app's worker alone`);
    row(workers, speed.pool_ms, `browser CPU (wasm ${build}), the app's worker + ${speed.helpers} helper worker(s)`);
  } finally {
    await browser.close();
  }
}
