// The cohort report on the real app, worker and models: the planner over the
// whole demo cohort (checked against the CSV itself and against the native
// `sepsis report` on the same file), its plots, JSON export and print; the
// trained agent over one patient; cancel during a report. Each saves a
// screenshot and checks the network log.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { startServer, openBrowser, requestsCarrying, outputDir, distDir, test_id as t } from './harness.mjs';

const root = join(import.meta.dirname, '..', '..');
const demoFile = join(distDir, 'demo', 'icu-sepsis-demo.csv');

let server;
before(async () => { server = await startServer(); });
after(() => server?.stop());

/** Patients of the demo CSV in file order: id, steps, outcome. */
function demoPatients() {
  const [header, ...lines] = readFileSync(demoFile, 'utf8').trim().split('\n');
  const column = header.split(',').indexOf('outcome');
  const patients = new Map();
  for (const line of lines) {
    const cells = line.split(',');
    const p = patients.get(cells[0]) ?? { id: cells[0], steps: 0, outcome: '' };
    p.steps += 1;
    p.outcome ||= cells[column];
    patients.set(cells[0], p);
  }
  return [...patients.values()];
}

async function openReport(page) {
  await page.goto(server.url);
  await page.locator(t('start-demo')).click();
  await page.locator(t('patient-row')).first().waitFor({ timeout: 60_000 });
  await page.locator(t('nav-report')).click();
  await page.locator(t('report-screen')).waitFor();
  await page.waitForFunction(() => !document.querySelector('[data-test="report-run"]')?.disabled, null, { timeout: 180_000 });
}

test('the cohort report: the planner over the demo cohort against the clinicians, as natively, with plots, export and print', async () => {
  const patients = demoPatients();
  const browser = await openBrowser();
  try {
    const { page, requestDetails } = browser;
    await openReport(page);
    assert.equal(await page.locator(t('report-decider')).inputValue(), 'planner');
    assert.equal(await page.locator(t('report-patients')).inputValue(), String(patients.length), 'the planner reports on every patient');
    await page.locator(t('report-run')).click();
    await page.locator(t('report-progress')).waitFor();
    await page.locator(t('report-result')).waitFor({ timeout: 300_000 });
    const steps = patients.reduce((n, p) => n + p.steps, 0);
    assert.match(await page.locator(t('report-summary')).innerText(), new RegExp(`^${patients.length} patients, ${steps} decisions in \\d+ states; computed on this device in [\\d.]+ s\\.$`));
    // The clinicians' value is what the file says happened to its patients.
    const survived = patients.filter((p) => p.outcome === 'survived').length / patients.length;
    assert.match(await page.locator(t('report-clinicians-survival')).innerText(), new RegExp(`^${(100 * survived).toFixed(1)} % \\(`));
    assert.match(await page.locator(t('report-result') + ' svg').first().getAttribute('aria-label'), /^Survival: clinicians observed, policy estimated: Clinicians \(observed\) [\d.]+ %/);
    for (const table of ['report-actions-clinicians', 'report-actions-policy']) {
      const shares = (await page.locator(`${t(table)} td.share`).allInnerTexts()).map(Number);
      assert.equal(shares.length, 25);
      assert.ok(Math.abs(shares.reduce((a, b) => a + b, 0) - 100) <= 13, `${table}: rounded shares add up to about 100 (${shares})`);
    }
    await page.screenshot({ path: join(outputDir, 'cohort-report.png'), fullPage: true });

    // Export: JSON made in the page, the same figures as the native CLI on the same file.
    const [download] = await Promise.all([page.waitForEvent('download'), page.locator(t('report-export-json')).click()]);
    assert.equal(download.suggestedFilename(), 'cohort-report.json');
    assert.match(download.url(), /^blob:http:\/\/127\.0\.0\.1/, 'made locally');
    const { report, notice } = JSON.parse(readFileSync(await download.path(), 'utf8'));
    assert.match(notice, /not a medical device/);
    const native = JSON.parse(execFileSync(join(root, 'target', 'release', 'sepsis'), ['report', '--cohort', demoFile, '--json'], { cwd: root, encoding: 'utf8' }));
    assert.equal(report.decisions, steps);
    assert.deepEqual(report.clinicians, native.clinicians, 'the clinicians\' figures are the same computation on the same data');
    assert.deepEqual(report.clinicians_survival, native.clinicians_survival, 'same bootstrap, same seed');
    // The planner's choices may differ where two treatments tie to float precision (wasm vs native arithmetic).
    const differing = report.policy_stats.actions.reduce((n, c, a) => n + Math.abs(c - native.policy_stats.actions[a]), 0) / 2;
    assert.ok(differing <= 0.01 * steps, `${differing} of ${steps} planner decisions differ from native`);
    assert.ok(Math.abs(report.ope.wis.estimate - native.ope.wis.estimate) < 0.02, `WIS ${report.ope.wis.estimate} vs native ${native.ope.wis.estimate}`);
    const wis = report.ope.wis;
    assert.ok(wis.low <= wis.estimate && wis.estimate <= wis.high && wis.low >= 0 && wis.high <= 1, JSON.stringify(wis));

    await page.emulateMedia({ media: 'print' });
    assert.equal(await page.locator('nav.screens').isVisible(), false, 'print leaves out the navigation');
    assert.equal(await page.locator(t('report-run')).isVisible(), false, 'and the controls');
    assert.ok(await page.locator(t('report-result')).isVisible());
    await page.pdf({ path: join(outputDir, 'cohort-report.pdf') });
    await page.emulateMedia({ media: 'screen' });
    // 200% zoom on a 1366x768 screen: nothing scrolls sideways.
    await page.setViewportSize({ width: 683, height: 384 });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.ok(overflow <= 1, `horizontal overflow ${overflow}px at 200% zoom`);
    assert.deepEqual(requestsCarrying(requestDetails, patients.slice(0, 20).map((p) => p.id)), [], 'no request left 127.0.0.1 or carried patient values');
  } finally {
    await browser.close();
  }
});

test('the trained agent reports on one patient; a running report can be cancelled', async () => {
  const [first] = demoPatients();
  const browser = await openBrowser();
  try {
    const { page, requestDetails } = browser;
    await openReport(page);
    await page.locator(t('report-decider')).selectOption('agent-no-sim');
    assert.equal(await page.locator(t('report-patients')).inputValue(), '5', 'an LLM agent starts with a few patients');
    // A count the cohort cannot give is named inline and blocks the run.
    await page.locator(t('report-patients')).fill('900');
    assert.equal(await page.locator(t('report-patients')).getAttribute('aria-invalid'), 'true');
    assert.equal(await page.locator(t('report-patients-error')).innerText(), 'expected a whole number from 1 to 200');
    assert.ok(await page.locator(t('report-run')).isDisabled());
    await page.locator(t('report-patients')).fill('1');
    await page.locator(t('report-run')).click();
    await page.locator(t('report-result')).waitFor({ timeout: 300_000 });
    assert.match(await page.locator(t('report-result') + ' h3').innerText(), /^Trained agent \(no simulation\) vs the clinicians$/);
    assert.match(await page.locator(t('report-summary')).innerText(), new RegExp(`^1 patients, ${first.steps} decisions in \\d+ states`));

    // Cancel: the agent with simulation over five patients, stopped after its first decision.
    await page.locator(t('report-decider')).selectOption('agent');
    await page.locator(t('report-run')).click();
    await page.waitForFunction(() => /Deciding: [1-9]\d* of/.test(document.querySelector('[data-test="report-progress"]')?.textContent ?? ''), null, { timeout: 300_000 });
    await page.locator(t('report-cancel')).click();
    await page.waitForFunction(() => /^Cancelled after \d+ of \d+ decisions\.$/.test(document.querySelector('[data-test="report-progress"]')?.textContent.trim() ?? ''), null, { timeout: 30_000 });
    await page.waitForTimeout(2_000);
    assert.equal(await page.locator(t('report-result')).count(), 0, 'no report after cancel');
    assert.ok(await page.locator(t('report-run')).isEnabled(), 'a report can be run again');
    await page.screenshot({ path: join(outputDir, 'cohort-report-cancelled.png'), fullPage: true });
    assert.deepEqual(requestsCarrying(requestDetails, [first.id]), []);
  } finally {
    await browser.close();
  }
});
