import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { startServer, openBrowser, foreignRequests, outputDir, distDir, test_id as t } from './harness.mjs';

const MODEL = 'SmolLM2-135M-Instruct.Q8_0.gguf';
const modelFile = `[data-test="model-file"][data-file="${MODEL}"]`;
let server;
before(async () => { server = await startServer(); });
after(() => server?.stop());

test('without WebGPU the worker starts, chooses the CPU path and says why', async () => {
  const browser = await openBrowser();
  try {
    const { page } = browser;
    await page.goto(server.url);
    await page.locator(t('privacy')).getByText('Patient data stays on this device').waitFor();
    await page.locator(t('worker-status')).getByText('ready').waitFor({ state: 'attached' });
    const backend = page.locator(t('backend'));
    await backend.waitFor();
    assert.equal(await backend.getAttribute('data-backend'), 'cpu');
    // This Chromium validates relaxed SIMD, so the loader starts that build.
    assert.equal((await backend.innerText()).trim(), 'CPU (wasm relaxed SIMD)');
    assert.match(await page.locator(t('backend-reason')).innerText(), /navigator\.gpu|no adapter/);
  } finally {
    await browser.close();
  }
});

test('with --enable-unsafe-webgpu the WebGPU path is chosen and its kernel matches the CPU', async () => {
  const browser = await openBrowser({ webgpu: true });
  try {
    const { page } = browser;
    await page.goto(server.url);
    const backend = page.locator(t('backend'));
    await backend.waitFor({ timeout: 60_000 });
    assert.equal(await backend.getAttribute('data-backend'), 'webgpu', await page.locator(t('backend-reason')).innerText());
    assert.match(await backend.innerText(), /^WebGPU \(.+\)$/);
    const check = page.locator(t('kernel-check'));
    assert.equal(await check.getAttribute('data-passed'), 'true');
    assert.match(await check.innerText(), /match/);
    assert.equal(await page.locator(t('adapter-fallback')).innerText(), 'yes'); // SwiftShader
  } finally {
    await browser.close();
  }
});

test('the model downloads with progress, is verified, and the next load reads it from the cache', async () => {
  const browser = await openBrowser();
  try {
    const { page, requests } = browser;
    // Record every progress value the UI shows, however briefly.
    await page.addInitScript(() => {
      window.__progressSeen = [];
      new MutationObserver(() => {
        const bar = document.querySelector('[data-test="model-progress"]');
        if (bar) window.__progressSeen.push([Number(bar.value), Number(bar.max)]);
      }).observe(document, { subtree: true, childList: true, attributes: true });
    });
    await page.goto(server.url);
    await page.locator(t('model-status') + '[data-state="ready"]').waitFor({ timeout: 120_000 });
    const file = page.locator(modelFile);
    assert.equal(await file.getAttribute('data-source'), 'downloaded');
    assert.match(await file.innerText(), /llama, 30 blocks/);
    const seen = await page.evaluate(() => window.__progressSeen);
    assert.ok(seen.some(([value, max]) => value > 0 && value < max), `partial progress shown: ${JSON.stringify(seen.slice(0, 5))}`);
    const modelRequests = () => requests.filter((url) => url.includes('/models/') && !url.endsWith('/models/manifest.json'));
    const manifest = JSON.parse(readFileSync(join(distDir, 'models', 'manifest.json'), 'utf8'));
    assert.deepEqual(
      modelRequests().map((url) => url.split('/').pop()).sort(),
      manifest.files.map((f) => f.name).sort(),
      'every manifest file fetched exactly once on the first visit',
    );
    assert.equal(await page.locator(t('model-file')).count(), manifest.files.length, 'every file listed as verified');
    await page.screenshot({ path: join(outputDir, 'main-screen.png'), fullPage: true });

    requests.length = 0;
    await page.reload();
    await page.locator(t('model-status') + '[data-state="ready"]').waitFor({ timeout: 120_000 });
    assert.equal(await page.locator(modelFile).getAttribute('data-source'), 'from cache');
    assert.equal(await page.locator(t('model-file') + '[data-source="downloaded"]').count(), 0, 'every file from the cache');
    assert.deepEqual(modelRequests(), [], 'no model file requested on the second load');
    assert.ok(requests.some((url) => url.endsWith('/models/manifest.json')), 'the log does see worker requests');
  } finally {
    await browser.close();
  }
});

test('a tampered model file is rejected with a visible error and never used', async () => {
  // A second site whose model file has one byte flipped, as a corrupted mirror would serve it.
  const tampered = tamperedSite();
  const tamperedServer = await startServer(tampered);
  const browser = await openBrowser();
  try {
    const { page } = browser;
    await page.goto(tamperedServer.url);
    const status = page.locator(t('model-status') + '[data-state="failed"]');
    await status.waitFor({ timeout: 120_000 });
    assert.match(await status.innerText(), /SHA-256 mismatch/);
    assert.equal(await page.locator(t('error') + '[data-kind="ModelVerification"]').count(), 1);
    assert.equal(await page.locator(modelFile).count(), 0, 'the tampered model is not listed as verified');
    await page.screenshot({ path: join(outputDir, 'tampered-model.png'), fullPage: true });
  } finally {
    await browser.close();
    tamperedServer.stop();
    rmSync(tampered, { recursive: true, force: true });
  }
});

/** A copy of dist/ (links) whose model file differs from the manifest by one byte. */
function tamperedSite() {
  const site = mkdtempSync(join(tmpdir(), 'sepsis-tampered-'));
  for (const entry of readdirSync(distDir)) {
    if (entry !== 'models') symlinkSync(join(distDir, entry), join(site, entry));
  }
  mkdirSync(join(site, 'models'));
  for (const entry of readdirSync(join(distDir, 'models'))) {
    if (entry !== MODEL) symlinkSync(join(distDir, 'models', entry), join(site, 'models', entry));
  }
  const model = readFileSync(join(distDir, 'models', MODEL));
  model[model.length >> 1] ^= 0xff;
  writeFileSync(join(site, 'models', MODEL), model);
  return site;
}

test('a worker panic arrives as a typed error and the worker is restarted', async () => {
  const browser = await openBrowser();
  try {
    const { page } = browser;
    await page.goto(server.url);
    await page.locator(t('worker-status')).getByText('ready').waitFor({ state: 'attached' });
    await page.locator(t('diagnostics') + ' summary').click();
    await page.locator(t('crash-drill')).click();
    await page.locator(t('restart-notice')).waitFor();
    assert.match(await page.locator(t('restart-notice')).innerText(), /panicked: .*diagnostic panic/);
    assert.equal(await page.locator(t('error') + '[data-kind="Panic"]').count(), 1);
    await page.locator(t('worker-status')).getByText('ready').waitFor();
    assert.equal(await page.locator(t('restart-count')).innerText(), '1');
    await page.locator(t('backend')).waitFor(); // the restarted worker works
  } finally {
    await browser.close();
  }
});

test('a whole session makes no request to any host but 127.0.0.1', async () => {
  const browser = await openBrowser({ webgpu: true });
  try {
    const { page, requests } = browser;
    await page.goto(server.url);
    await page.locator(t('model-status') + '[data-state="ready"]').waitFor({ timeout: 120_000 });
    await page.reload();
    await page.locator(t('model-status') + '[data-state="ready"]').waitFor({ timeout: 120_000 });
    writeFileSync(join(outputDir, 'network-log.json'), JSON.stringify(requests, null, 2));
    assert.ok(requests.length > 5, `requests were recorded (${requests.length})`);
    assert.deepEqual(foreignRequests(requests), []);
  } finally {
    await browser.close();
  }
});
