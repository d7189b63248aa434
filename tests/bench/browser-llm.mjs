// Browser benchmark of the agent's LLM (not a test: `make bench` runs it).
// It serves the release bundle, opens headless Chromium, starts the real
// worker (the app's own worker_loader.js) and talks the worker protocol to
// it directly: `MeasureLlm` for prefill and decode speed, then one
// `Recommend` per demo patient for the time from prompt to prescription,
// by the untrained llm-zero-shot-wm (constrained decoding) and by the
// trained agent the app uses. Prints one `BENCH {json}` line per
// figure for scripts/bench/report.py.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startServer, openBrowser, startWorkerClient, distDir } from '../e2e/harness.mjs';

const DEMO_PATIENTS = 3;
const DECODE_TOKENS = 32;

/** The first patients of the demo cohort as worker courses (schema order). */
function demoCourses() {
  const [header, ...rows] = readFileSync(join(distDir, 'demo', 'icu-sepsis-demo.csv'), 'utf8').trim().split('\n').map((l) => l.split(','));
  const first = header.indexOf('map');
  const last = header.indexOf('weight_kg');
  const [fluid, vaso] = [header.indexOf('fluid_level'), header.indexOf('vaso_level')];
  const byPatient = new Map();
  for (const row of rows) {
    const values = row.slice(first, last + 1).map((v) => (v === '' ? null : Number(v)));
    const step = { values, action: { fluid: Number(row[fluid]), vaso: Number(row[vaso]) } };
    byPatient.set(row[0], [...(byPatient.get(row[0]) ?? []), step]);
  }
  return [...byPatient.entries()].slice(0, DEMO_PATIENTS);
}

const server = await startServer();
const browser = await openBrowser();
try {
  const { page } = browser;
  await page.goto(server.url);
  await startWorkerClient(page);
  const results = await page.evaluate(async ({ patients, decodeTokens }) => {
    const { ask, terminate } = globalThis.workerClient;
    await ask({ type: 'LoadModels' }, 'ModelsReady');
    await ask({ type: 'MeasureLlm', decode_tokens: decodeTokens }, 'LlmSpeed'); // warm-up: builds the model and its prompts
    const speed = await ask({ type: 'MeasureLlm', decode_tokens: decodeTokens }, 'LlmSpeed');
    const decisions = [];
    // The untrained agent (the native benchmark's decision), then the trained
    // agent the app recommends with (its adapter loads on first use, so that
    // first call is repeated out of the figures).
    for (const [agent, name] of [['LlmZeroShotWm', 'llm-zero-shot-wm'], ['Agent', 'agent']]) {
      if (agent === 'Agent') await ask({ type: 'Recommend', course: patients[0][1], agent, seed: 1 }, 'Recommended');
      for (const [patient, course] of patients) {
        const started = performance.now();
        const done = await ask({ type: 'Recommend', course, agent, seed: 1 }, 'Recommended');
        decisions.push({ agent: name, patient, wall_ms: performance.now() - started, elapsed_ms: done.elapsed_ms, generated_tokens: done.generated_tokens,
          prompt_tokens: done.prompt_tokens, tool_calls: done.trace.tool_calls, fallback: done.trace.fallback !== null && done.trace.fallback !== undefined });
      }
    }
    terminate();
    return { speed, decisions };
  }, { patients: demoCourses(), decodeTokens: DECODE_TOKENS });
  const { speed, decisions } = results;
  const device = 'browser CPU (wasm SIMD, 1 thread)';
  console.log('BENCH ' + JSON.stringify({ engine: 'llm-wasm-cpu', device, threads: 1, kind: 'prefill', tokens: speed.prompt_tokens, ms: speed.prompt_ms, tokens_per_s: speed.prompt_tokens / (speed.prompt_ms / 1000) }));
  console.log('BENCH ' + JSON.stringify({ engine: 'llm-wasm-cpu', device, threads: 1, kind: 'decode', tokens: speed.decode_tokens, ms: speed.decode_ms, tokens_per_s: speed.decode_tokens / (speed.decode_ms / 1000) }));
  for (const d of decisions) {
    console.log('BENCH ' + JSON.stringify({ engine: 'llm-wasm-cpu', device, threads: 1, kind: 'decision', ...d }));
  }
} finally {
  await browser.close();
  server.stop();
}
