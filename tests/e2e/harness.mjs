// Shared end-to-end plumbing: serve the release bundle on 127.0.0.1, launch
// Debian's Chromium through playwright-core with a fresh profile, and record
// every request the page and its worker make.
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const outputDir = join(root, 'test-output', 'e2e');
export const distDir = join(root, 'dist');
mkdirSync(outputDir, { recursive: true });

/** Start scripts/serve.py on a free port; resolves to { url, stop }. */
export function startServer(dir = distDir) {
  return new Promise((resolveServer, reject) => {
    const child = spawn('python3', [join(root, 'scripts', 'serve.py'), '--dir', dir, '--port', '0', '--quiet'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    child.once('error', reject);
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (text) => {
      const match = text.match(/http:\/\/127\.0\.0\.1:(\d+)\//);
      if (match) resolveServer({ url: match[0], stop: () => child.kill() });
    });
    child.once('exit', (code) => reject(new Error(`server exited with ${code}`)));
  });
}

const BASE_FLAGS = [
  '--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

/**
 * A browser with a fresh profile. `webgpu` adds --enable-unsafe-webgpu
 * (SwiftShader in headless Chromium). Returns { context, page, requests, close };
 * `requests` lists every URL requested by the page or its workers.
 */
export async function openBrowser({ webgpu = false, profile } = {}) {
  const userDataDir = profile ?? mkdtempSync(join(tmpdir(), 'sepsis-e2e-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: webgpu ? [...BASE_FLAGS, '--enable-unsafe-webgpu'] : BASE_FLAGS,
    viewport: { width: 1366, height: 768 },
  });
  const requests = [];
  // Method and body too, so tests can show no request carries patient values.
  const requestDetails = [];
  context.on('request', (request) => {
    requests.push(request.url());
    requestDetails.push({ url: request.url(), method: request.method(), body: request.postData() ?? '' });
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const consoleErrors = [];
  page.on('console', (msg) => { if (msg.type() === 'error') consoleErrors.push(msg.text()); });
  return {
    context, page, requests, requestDetails, consoleErrors, userDataDir,
    close: async ({ keepProfile = false } = {}) => {
      await context.close();
      if (!keepProfile && !profile) rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}

/**
 * Start the real worker (the bundle's /worker_loader.js) in `page` and give
 * the page `globalThis.workerClient`: `ask(body, answer)` posts a request and
 * resolves to the body of its `answer` event (rejects on its `Error`);
 * `terminate()` stops the worker. Resolves once the worker is `Ready`. For
 * scripts that talk the worker protocol directly (benchmarks, protocol
 * tests); works on any page of the server's origin.
 */
export async function startWorkerClient(page) {
  await page.evaluate(async () => {
    const worker = new Worker('/worker_loader.js');
    let nextId = 1;
    const waiting = new Map();
    const ready = new Promise((resolve) => {
      worker.onmessage = ({ data }) => {
        if (data.body.type === 'Ready') return resolve();
        const entry = waiting.get(data.id);
        if (!entry) return;
        if (data.body.type === 'Error') entry.reject(new Error(data.body.message));
        else if (data.body.type === entry.answer) entry.resolve(data.body);
      };
    });
    const ask = (body, answer) => new Promise((resolve, reject) => {
      const id = nextId++;
      waiting.set(id, { resolve, reject, answer });
      worker.postMessage({ id, body });
    });
    globalThis.workerClient = { ask, terminate: () => worker.terminate() };
    await ready;
  });
}

/** Hosts other than the local server that appear in a request log. */
export function foreignRequests(requests) {
  return requests.filter((url) => {
    const { protocol, hostname } = new URL(url);
    if (protocol === 'data:' || protocol === 'blob:') return false;
    return hostname !== '127.0.0.1';
  });
}

/**
 * Requests that could carry patient data off the page: anything not a GET
 * to 127.0.0.1, and any request whose URL or body contains one of `values`.
 */
export function requestsCarrying(requestDetails, values) {
  return requestDetails.filter(({ url, method, body }) => {
    const { protocol, hostname } = new URL(url);
    if (protocol === 'data:' || protocol === 'blob:') return false;
    // Numbers are looked for in the query and body only: asset paths carry
    // content hashes whose digits could match by chance.
    const { search } = new URL(url);
    const carries = (v) => body.includes(v) || (/^[\d.]+$/.test(v) ? search.includes(v) : url.includes(v));
    return hostname !== '127.0.0.1' || method !== 'GET' || values.some(carries);
  });
}

export const test_id = (name) => `[data-test="${name}"]`;

/**
 * Cancel the agent's running decision and check that it stopped: the notice
 * appears, no prescription and no further text arrive, and `ask` (the
 * button that started it) works again.
 */
export async function cancelRecommendation(page, ask) {
  await page.locator(test_id('cancel-recommendation')).click();
  await page.locator(test_id('agent-cancelled')).waitFor({ timeout: 10_000 });
  const textAtCancel = await page.locator(test_id('agent-text')).innerText();
  await page.waitForTimeout(2_000);
  assert.equal(await page.locator(test_id('agent-prescription')).count(), 0, 'no prescription after cancel');
  assert.equal(await page.locator(test_id('agent-text')).innerText(), textAtCancel, 'no text after cancel');
  assert.ok(await ask.isEnabled(), 'the agent can be asked again');
}
