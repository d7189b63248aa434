// The newcomer's path, timed (not a test: `make bench` runs it). A fresh
// browser profile (nothing cached: the models download from the local
// server) opens the app and clicks what a newcomer clicks: "Open the demo
// cohort", the first patient, "Ask the agent", until the prescription with
// its evidence is on screen. Prints one `BENCH {json}` line per run for
// scripts/bench/report.py.
import { startServer, openBrowser, test_id as t } from '../e2e/harness.mjs';

const RUNS = 3;

const server = await startServer();
try {
  for (let run = 1; run <= RUNS; run++) {
    const browser = await openBrowser();
    try {
      const { page } = browser;
      const start = Date.now();
      const since = () => Date.now() - start;
      await page.goto(server.url);
      await page.locator(t('start-demo')).click();
      await page.locator(t('open-patient')).first().click();
      const patientMs = since();
      const ask = page.locator(t('recommend'));
      await page.waitForFunction(() => !document.querySelector('[data-test="recommend"]')?.disabled, null, { timeout: 300_000 });
      const modelsMs = since();
      await ask.click();
      await page.locator(t('agent-prescription')).waitFor({ timeout: 300_000 });
      const row = { engine: 'newcomer-path', device: 'headless Chromium, fresh profile', run, patient_ms: patientMs, models_ready_ms: modelsMs, prescription_ms: since() };
      console.log(`BENCH ${JSON.stringify(row)}`);
    } finally {
      await browser.close();
    }
  }
} finally {
  server.stop();
}
