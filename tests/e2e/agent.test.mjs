import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startServer, openBrowser, foreignRequests, cancelRecommendation, outputDir, test_id as t } from './harness.mjs';

let server;
before(async () => { server = await startServer(); });
after(() => server?.stop());

/** Open the app, wait for its models, and ask the agent about the reference patient. */
async function askTheAgent(page) {
  await page.goto(server.url);
  await page.locator(t('model-status') + '[data-state="ready"]').waitFor({ timeout: 180_000 });
  await page.locator(t('nav-checks')).click();
  await page.locator(t('recommend-reference')).click();
}

test('the agent streams its text in the worker, simulates, and ends with a prescription and its flags', async () => {
  const browser = await openBrowser();
  try {
    const { page, requests } = browser;
    await askTheAgent(page);
    // Text arrives while the decision is still running.
    await page.waitForFunction(() => {
      const text = document.querySelector('[data-test="agent-text"]')?.textContent ?? '';
      return text.length > 0 && !document.querySelector('[data-test="agent-prescription"]');
    }, null, { timeout: 180_000 });
    const prescription = page.locator(t('agent-prescription'));
    await prescription.waitFor({ timeout: 600_000 });
    assert.match(await prescription.innerText(), /^Prescription: vaso=[0-4] fluid=[0-4]/);
    if ((await prescription.getAttribute('data-fallback')) === 'true') {
      assert.match(await prescription.innerText(), /safe default, because: no valid prescription after 10 turns/);
    }
    // Propose, simulate, refine: at least one simulation with its evidence.
    assert.match(await page.locator(t('agent-step')).first().innerText(), /^Simulated: vaso=[0-4] fluid=[0-4] → survival \d+ %/);
    const timing = await page.locator(t('agent-timing')).innerText();
    const [, chosen, , calls, rejected] = timing.match(/^(\d+) tokens chosen by the model, (\d+) read, (\d+) tool calls, (\d+) rejected turns, [\d.]+ s\.$/).map(Number);
    assert.ok(chosen > 0 && calls >= 2, timing);
    assert.equal(rejected, 0, 'constrained decoding writes only valid calls');
    assert.deepEqual(foreignRequests(requests), [], 'nothing left 127.0.0.1');
    await page.locator(t('agent-check')).screenshot({ path: join(outputDir, 'agent-check.png') });
  } finally {
    await browser.close();
  }
});

test('cancel stops a running recommendation before its prescription', async () => {
  const browser = await openBrowser();
  try {
    const { page, requests } = browser;
    await askTheAgent(page);
    await page.waitForFunction(() => (document.querySelector('[data-test="agent-text"]')?.textContent ?? '').length > 0, null, { timeout: 180_000 });
    await cancelRecommendation(page, page.locator(t('recommend-reference')));
    assert.deepEqual(foreignRequests(requests), [], 'nothing left 127.0.0.1');
    await page.locator(t('agent-check')).screenshot({ path: join(outputDir, 'agent-cancelled.png') });
  } finally {
    await browser.close();
  }
});
