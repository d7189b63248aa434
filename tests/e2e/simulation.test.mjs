import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startServer, openBrowser, foreignRequests, outputDir, test_id as t } from './harness.mjs';

let server;
before(async () => { server = await startServer(); });
after(() => server?.stop());

/** " across N workers" as the app says it: one helper worker per further core, at most 7 (worker/src/pool.rs). */
async function across(page) {
  const workers = Math.min(await page.evaluate(() => navigator.hardwareConcurrency), 8);
  return workers > 1 ? ` across ${workers} workers` : '';
}

/** Run the world-model check and return what the page shows. */
async function simulateReference(page) {
  await page.goto(server.url);
  await page.locator(t('model-status') + '[data-state="ready"]').waitFor({ timeout: 120_000 });
  await page.locator(t('backend')).waitFor({ timeout: 60_000 });
  await page.locator(t('nav-checks')).click();
  await page.locator(t('simulate-reference')).click();
  await page.locator(t('simulation-backend')).waitFor({ timeout: 120_000 });
  const survival = await page.locator(t('simulation-survival')).allInnerTexts();
  return { backend: await page.locator(t('simulation-backend')).innerText(), survival };
}

for (const webgpu of [false, true]) {
  const path = webgpu ? 'WebGPU' : 'CPU';
  test(`the worker simulates the reference patient on the ${path} path`, async () => {
    const browser = await openBrowser({ webgpu });
    try {
      const { page, requests } = browser;
      const shown = await simulateReference(page);
      if (webgpu) {
        assert.match(shown.backend, /^Ran on WebGPU in \d+ ms\.$/);
      } else {
        // This Chromium has relaxed SIMD, so the worker and its helpers run
        // that build (public/worker_loader.js).
        assert.match(shown.backend, new RegExp(`^Ran on CPU \\(wasm relaxed SIMD\\)${await across(page)} in \\d+ ms\\.$`));
      }
      assert.equal(shown.survival.length, 3, 'one row per candidate');
      for (const text of shown.survival) {
        const value = Number(text.replace(' %', ''));
        assert.ok(value > 0 && value < 100, `survival ${text}`);
      }
      assert.deepEqual(foreignRequests(requests), [], 'nothing left 127.0.0.1');
      await page.locator(t('simulation-check')).screenshot({ path: join(outputDir, `simulation-${path.toLowerCase()}.png`) });
    } finally {
      await browser.close();
    }
  });
}

test('where the relaxed-SIMD build cannot load, the worker and its helpers run the baseline build', async () => {
  const browser = await openBrowser();
  try {
    const { context, page, requests } = browser;
    // As a proxy or an old deployment that lacks the file would.
    await context.route('**/worker_relaxed_bg.wasm', (route) => route.abort());
    const shown = await simulateReference(page);
    assert.match(shown.backend, new RegExp(`^Ran on CPU \\(wasm SIMD\\)${await across(page)} in \\d+ ms\\.$`));
    assert.equal(shown.survival.length, 3, 'one row per candidate');
    assert.ok(requests.some((url) => url.endsWith('/worker_relaxed_bg.wasm')), 'the loader tried the relaxed build first');
    assert.ok(requests.some((url) => url.endsWith('/worker_bg.wasm')), 'then loaded the baseline build');
  } finally {
    await browser.close();
  }
});
