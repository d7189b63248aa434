// The clinician's flows on the real app, worker and models: demo cohort to a
// recommendation with its evidence, what-if on the treatment grid, and a
// CSV with errors. Each saves a screenshot and proves from the network log
// that no request left 127.0.0.1 or carried patient values.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startServer, openBrowser, requestsCarrying, cancelRecommendation, outputDir, distDir, test_id as t } from './harness.mjs';

let server;
before(async () => { server = await startServer(); });
after(() => server?.stop());

async function openDemoCohort(page) {
  await page.goto(server.url);
  await page.locator(t('start-screen')).waitFor();
  await page.locator(t('start-demo')).click();
  await page.locator(t('patient-row')).first().waitFor({ timeout: 60_000 });
}

test('demo cohort to a recommendation with its simulated evidence, flags and the clinician\'s choice', async () => {
  const browser = await openBrowser();
  try {
    const { page, requestDetails } = browser;
    await openDemoCohort(page);
    assert.match(await page.locator(t('cohort-summary')).innerText(), /^demo\/icu-sepsis-demo\.csv: \d+ patients loaded/);
    // The world model ranks every patient by predicted risk once the models are ready.
    await page.locator(t('patient-sort')).selectOption('risk');
    await page.waitForFunction(() => [...document.querySelectorAll('[data-test="patient-risk"]')].every((td) => td.textContent.endsWith('%')), null, { timeout: 180_000 });
    const risks = (await page.locator(t('patient-risk')).allInnerTexts()).slice(0, 10).map(parseFloat);
    assert.deepEqual(risks, [...risks].sort((a, b) => b - a), 'highest predicted risk first');
    assert.ok(risks[0] > 0 && risks[0] <= 100);
    // Sorting by lowest MAP puts the lowest first.
    await page.locator(t('patient-sort')).selectOption('map');
    const maps = (await page.locator(t('patient-row') + ' td:nth-child(5)').allInnerTexts()).slice(0, 10).map(Number);
    assert.deepEqual(maps, [...maps].sort((a, b) => a - b), 'ascending MAP');
    const row = page.locator(t('patient-row')).first();
    const id = await row.getAttribute('data-patient');
    await page.locator(t('patient-search')).fill(id.slice(-4));
    assert.ok((await page.locator(t('patient-row')).count()) >= 1);
    await page.locator(`${t('patient-row')}[data-patient="${id}"] ${t('open-patient')}`).click();
    const screen = page.locator(t('patient-screen'));
    assert.equal(await screen.getAttribute('data-patient'), id);
    assert.equal(await page.locator(t('timeline') + ' svg').count(), 6, 'five charts and the treatment strip');
    assert.match(await page.locator(t('timeline') + ' svg').first().getAttribute('aria-label'), /^Mean arterial pressure over hours/);

    // The grid: all 25 treatments simulated, the clinician's choice marked, and its fan charts.
    await page.locator(t('survival-grid')).waitFor({ timeout: 180_000 });
    assert.equal(await page.locator(t('grid-cell')).count(), 25);
    assert.match(await page.locator(t('survival-grid') + ' caption').innerText(), /Ran on (CPU|WebGPU)/);
    assert.equal(await page.locator(t('fan-row')).count(), 1, 'the clinician\'s choice is drawn');
    // What-if: pick a cell, its simulated course appears; pick again, it goes.
    const cell = page.locator(`${t('grid-cell')}[data-action="4-0"]`);
    await cell.click();
    await page.locator(`${t('fan-row')}[data-action="4-0"]`).waitFor();
    assert.equal(await cell.getAttribute('aria-pressed'), 'true');
    assert.equal(await page.locator(`${t('fan-row')}[data-action="4-0"] svg`).count(), 5, 'a fan chart per key feature');

    // The loop, live.
    await page.locator(t('recommend')).click();
    await page.locator(t('agent-prescription')).waitFor({ timeout: 600_000 });
    assert.match(await page.locator(t('agent-prescription')).innerText(), /^fluid [0-4] \/ vasopressor [0-4]$/);
    assert.match(await page.locator(t('clinician-action')).innerText(), /^fluid [0-4] \/ vasopressor [0-4]$/);
    assert.ok((await page.locator(t('agent-simulation')).count()) >= 1, 'at least one simulation with its evidence');
    assert.match(await page.locator(t('agent-simulation')).first().innerText(), /^fluid [0-4] \/ vasopressor [0-4] simulated 4 h ahead: survival \d+ % \(± \d+ across the ensemble\), MAP \d+ \(\d+–\d+\) mmHg, flags [^;]*; 4-h values (drawn from \d+ logged transitions, survival reckoning the best supported treatment at each later step|forecast by the GRU ensemble)$/);
    assert.match(await page.locator(t('agent-timing')).innerText(), /tool calls, 0 rejected turns/);
    // What the agent read: the patient's course up to now, the clinicians' logged
    // practice (the shipped adapter reads it; computed in the worker), and what it was asked.
    const read = await page.locator(`${t('agent-observation')} pre`).textContent();
    assert.match(read, /\nnow \S+ .* \?\nClinicians gave(: vaso=\d fluid=\d x\d+(, vaso=\d fluid=\d x\d+)*| each treatment fewer than 20 times)\.\n/);
    assert.ok(read.endsWith('Simulate, then prescribe.'), read);
    // The prescription's course is drawn next to the clinician's.
    const prescribed = (await page.locator(t('agent-prescription')).innerText()).match(/fluid (\d) \/ vasopressor (\d)/);
    await page.locator(`${t('fan-row')}[data-action="${prescribed[1]}-${prescribed[2]}"]`).waitFor();
    await page.screenshot({ path: join(outputDir, 'recommendation.png'), fullPage: true });

    // Export: the trace as JSON, made in the page; the report under the print stylesheet.
    const [download] = await Promise.all([page.waitForEvent('download'), page.locator(t('export-json')).click()]);
    assert.match(download.suggestedFilename(), new RegExp(`^sepsisagent-${id}-step\\d+\\.json$`));
    assert.match(download.url(), /^blob:http:\/\/127\.0\.0\.1/, 'made locally');
    const exported = JSON.parse(readFileSync(await download.path(), 'utf8'));
    assert.equal(exported.patient, id);
    assert.match(exported.notice, /not a medical device/);
    assert.ok(exported.recommendation.trace.events.length >= 2 && exported.course.length >= 1);
    // Prescribed best: the thought after the simulation begins with the
    // survival of the best candidate simulated, ranked as the teacher ranks
    // (survival less the ensemble's spread and 0.05 per flag; the first of
    // equals), and the prescription is that candidate.
    const simulated = exported.recommendation.trace.events
      .filter((e) => e.kind === 'simulated')
      .flatMap((e) => e.candidates.map((c, i) => ({ action: c.action, survival: c.survival, score: c.survival - c.disagreement - 0.05 * e.flags[i].length })));
    const best = simulated.reduce((b, s) => (s.score > b.score + 1e-12 ? s : b));
    assert.match(await page.locator(t('agent-text')).textContent(), new RegExp(`Best: survival ${Math.round(100 * best.survival)}%,`));
    assert.deepEqual(exported.recommendation.trace.prescription, best.action, JSON.stringify(simulated));
    assert.equal(await page.locator(t('agent-prescription')).innerText(), `fluid ${best.action.fluid} / vasopressor ${best.action.vaso}`);
    await page.emulateMedia({ media: 'print' });
    assert.equal(await page.locator('nav.screens').isVisible(), false, 'print leaves out the navigation');
    assert.ok(await page.locator(t('recommendation')).isVisible());
    await page.pdf({ path: join(outputDir, 'recommendation-report.pdf') });
    await page.emulateMedia({ media: 'screen' });

    const values = [id, ...(await page.locator(t('values-table') + ' td').allInnerTexts()).filter((v) => v.length >= 3 && /\d/.test(v))];
    assert.deepEqual(requestsCarrying(requestDetails, values), [], 'no request left 127.0.0.1 or carried patient values');
  } finally {
    await browser.close();
  }
});

test('a CSV with errors names rows, columns and values, and keeps the valid patients', async () => {
  const browser = await openBrowser();
  try {
    const { page, requestDetails } = browser;
    await page.goto(server.url);
    await page.locator(t('nav-cohort')).click();
    // Two demo patients; the second one's MAP is made unreadable on its second row.
    const lines = readFileSync(join(distDir, 'demo', 'icu-sepsis-demo.csv'), 'utf8').trim().split('\n');
    const header = lines[0].split(',');
    const ids = [...new Set(lines.slice(1).map((l) => l.split(',')[0]))].slice(0, 2);
    const rows = lines.slice(1).filter((l) => ids.includes(l.split(',')[0]));
    const firstOfSecond = rows.findIndex((l) => l.startsWith(ids[1]));
    const broken = rows[firstOfSecond + 1].split(',');
    broken[header.indexOf('map')] = 'low';
    rows[firstOfSecond + 1] = broken.join(',');
    const brokenLine = firstOfSecond + 1 + 2; // the header is line 1
    const csv = [lines[0], ...rows].join('\n') + '\n';
    await page.locator(t('cohort-file')).setInputFiles({ name: 'ward-7.csv', mimeType: 'text/csv', buffer: Buffer.from(csv) });
    await page.locator(t('cohort-report')).waitFor({ timeout: 30_000 });
    assert.match(await page.locator(t('cohort-summary')).innerText(), /^ward-7\.csv: 1 patients loaded .* 1 patients set aside/);
    const problem = await page.locator(t('cohort-problem')).first().innerText();
    assert.match(problem, new RegExp(`^${brokenLine}\\s+map\\s+low\\s+`), problem);
    assert.deepEqual(await page.locator(t('patient-row')).evaluateAll((rs) => rs.map((r) => r.dataset.patient)), [ids[0]], 'the valid patient stays usable');
    await page.screenshot({ path: join(outputDir, 'cohort-errors.png'), fullPage: true });
    assert.deepEqual(requestsCarrying(requestDetails, ids), [], 'the file was not uploaded');
  } finally {
    await browser.close();
  }
});

test('bedside entry rejects an implausible value inline, then opens the patient for a what-if and a short plan', async () => {
  const browser = await openBrowser();
  try {
    const { page, requestDetails } = browser;
    await page.goto(server.url);
    await page.locator(t('nav-bedside')).click();
    await page.locator(t('bedside-id')).fill('bed-12');
    for (const [key, earlier, now] of [['map', '66', '57'], ['hr', '104', '118'], ['lactate', '2.9', '4.4'], ['sofa', '7', '9']]) {
      await page.locator(t(`bedside-${key}-0`)).fill(earlier);
      await page.locator(t(`bedside-${key}-1`)).fill(now);
    }
    await page.locator(t('bedside-age_years-1')).fill('71');
    await page.locator(t('bedside-sex_male-1')).fill('0');
    await page.locator(t('bedside-fluid-0')).selectOption('2');
    // An implausible MAP is named inline and blocks opening.
    await page.locator(t('bedside-map-1')).fill('570');
    assert.equal(await page.locator(t('bedside-map-1')).getAttribute('aria-invalid'), 'true');
    assert.match(await page.locator('#bedside-map-1-error').innerText(), /^expected 10–250 mmHg$/);
    assert.ok(await page.locator(t('bedside-open')).isDisabled());
    await page.screenshot({ path: join(outputDir, 'bedside-rejected.png'), fullPage: true });
    await page.locator(t('bedside-map-1')).fill('57');
    await page.locator(t('bedside-open')).click();
    const screen = page.locator(t('patient-screen'));
    assert.equal(await screen.getAttribute('data-patient'), 'bed-12');
    assert.match(await screen.innerText(), /outcome: unknown \(still in care\)/);
    await page.locator(t('survival-grid')).waitFor({ timeout: 180_000 });
    await page.locator(`${t('grid-cell')}[data-action="2-1"]`).click();
    await page.locator(`${t('fan-row')}[data-action="2-1"]`).waitFor();
    // A short plan: a different treatment for each of the next three steps, simulated with its flags.
    for (const [i, [fluid, vaso]] of [[3, 0], [2, 1], [0, 1]].entries()) {
      await page.locator(t(`plan-step-${i}`)).selectOption(String(fluid * 5 + vaso));
    }
    await page.locator(t('plan-simulate')).click();
    const plan = page.locator(t('plan-result') + ' ' + t('fan-row'));
    await plan.waitFor({ timeout: 120_000 });
    assert.match(await plan.locator('h4').innerText(), /Plan \(fluid\/vasopressor per 4 h\): 3\/0 → 2\/1 → 0\/1, then held to 24 h$/);
    assert.equal(await plan.locator('svg').count(), 5, 'a fan chart per key feature');
    assert.match(await plan.locator('p').innerText(), /^Predicted survival [\d.]+ %, ensemble disagreement [\d.]+; (no guideline flags|guideline flags: \d+–\d+ h: .+)\./);
    assert.match(await plan.locator('p').innerText(), /(First 4 h drawn from \d+ logged transitions of patients in similar states given this treatment; later steps forecast by the GRU ensemble|Every step forecast by the GRU ensemble)\.$/, 'says where the course comes from');
    await page.screenshot({ path: join(outputDir, 'bedside-what-if.png'), fullPage: true });
    assert.deepEqual(requestsCarrying(requestDetails, ['bed-12', '118', '4.4']), [], 'nothing entered left the page');
  } finally {
    await browser.close();
  }
});

test('cancel during a patient\'s recommendation stops it; the page stays usable at 200% zoom', async () => {
  const browser = await openBrowser();
  try {
    const { page, requestDetails } = browser;
    await openDemoCohort(page);
    const id = await page.locator(t('patient-row')).first().getAttribute('data-patient');
    await page.locator(t('open-patient')).first().click();
    const ask = page.locator(t('recommend'));
    await page.waitForFunction(() => !document.querySelector('[data-test="recommend"]')?.disabled, null, { timeout: 180_000 });
    await ask.click();
    await page.waitForFunction(() => (document.querySelector('[data-test="agent-text"]')?.textContent ?? '').length > 0, null, { timeout: 180_000 });
    await cancelRecommendation(page, ask);
    // 200% zoom on a 1366x768 screen is a 683x384 CSS-pixel viewport: nothing scrolls sideways.
    await page.setViewportSize({ width: 683, height: 384 });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.ok(overflow <= 1, `horizontal overflow ${overflow}px at 200% zoom`);
    await page.screenshot({ path: join(outputDir, 'patient-zoom-200.png') });
    assert.deepEqual(requestsCarrying(requestDetails, [id]), []);
  } finally {
    await browser.close();
  }
});
