// A simulation's rows split across helper workers (worker/src/pool.rs)
// must give the very simulation one worker gives: the real worker, driven
// over its protocol, runs the benchmark's full sweep both ways.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, openBrowser, startWorkerClient, foreignRequests } from './harness.mjs';

let server;
before(async () => { server = await startServer(); });
after(() => server?.stop());

test('a sweep split across helper workers equals the sweep on one worker', async () => {
  const browser = await openBrowser();
  try {
    const { page, requests } = browser;
    await page.goto(server.url);
    await startWorkerClient(page);
    const measured = await page.evaluate(async () => {
      const { ask, terminate } = globalThis.workerClient;
      await ask({ type: 'LoadModels' }, 'ModelsReady');
      const speed = await ask({ type: 'MeasureSimulation', helpers: 2, repeats: 1 }, 'SimulationSpeed');
      terminate();
      return speed;
    });
    assert.equal(measured.helpers, 2);
    assert.equal(measured.one_worker_ms.length, 1);
    assert.equal(measured.pool_ms.length, 1);
    assert.equal(measured.max_difference, 0, 'the same simulation to the last bit');
    assert.deepEqual(foreignRequests(requests), [], 'nothing left 127.0.0.1');
  } finally {
    await browser.close();
  }
});
