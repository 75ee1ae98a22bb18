import assert from 'node:assert/strict';
import { ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
/**
 * Debian's chromium. CI installs it and sets TEMPERED_MPC_REQUIRE_CHROMIUM (.ci/run), so there a
 * missing browser fails this test; elsewhere (`npm test` on a fresh machine) it is skipped with the reason.
 */
const CHROMIUM = process.env.TEMPERED_MPC_CHROMIUM ?? '/usr/bin/chromium';
const REQUIRED = process.env.TEMPERED_MPC_REQUIRE_CHROMIUM === '1';
/** Without these Chromium reaches for the network (updates, sync, field trials). */
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];

describe('dashboard in Chromium (playwright-core), during a lockstep run', function () {
  let run: ChildProcess | undefined;
  after(() => run?.kill());

  it('plots update, a parameter set through the panel is applied, pause works, and a screenshot lands in the run\'s folder', async function () {
    if (!existsSync(CHROMIUM)) {
      const reason = `no Chromium at ${CHROMIUM}: install Debian's chromium (bash .ci/install-chromium.sh), or set TEMPERED_MPC_CHROMIUM`;
      assert.ok(!REQUIRED, reason);
      console.log(`      skipped: ${reason}`);
      this.skip();
    }
    const out = mkdtempSync(join(tmpdir(), 'tmpc-dashboard-'));
    run = spawn(process.execPath, [CLI, 'run', '--system', 'pendulum', '--params', fileURLToPath(new URL('../../launch/config/pendulum.yaml', import.meta.url)),
      '--planner', 'mppi', '--x0', '0,0', '--lockstep', '--duration', '600', '--serve', '--port', '0', '--out', out], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    const address = await new Promise<string>((resolve, reject) => {
      run!.stderr!.on('data', (d) => {
        stderr += d;
        const m = /telemetry: (http:\/\/[^ ]+) /.exec(stderr);
        if (m) resolve(m[1]);
      });
      run!.once('exit', () => reject(new Error(`the run ended before serving: ${stderr}`)));
    });
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS });
    try {
      const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      await page.goto(address);
      await page.waitForFunction(() => (window as unknown as { dashboard: { statusFrames: number } }).dashboard.statusFrames > 30, undefined, { timeout: 60000 });
      // the charts hold data: the state chart's series have points
      const points = await page.evaluate(() => document.querySelectorAll('.chart canvas').length);
      assert.ok(points >= 6, `${points} charts drawn`);
      assert.match(await page.textContent('#status') ?? '', /tick \d+/);
      // the planner's own charts, as its registry entry declares them, fed by the status's named series
      const titles = await page.evaluate(() => [...document.querySelectorAll('.chart h3')].map((h) => h.textContent));
      assert.ok(titles.includes('MPPI: sample cost spread of the last iteration, per plan') && titles.includes('MPPI: sampling std per control at the first step'), titles.join(' | '));
      assert.deepEqual(await page.evaluate(() => (window as unknown as { dashboard: { series: string[] } }).dashboard.series), ['cost_spread', 'sigma']);

      // a parameter through the panel: type, commit, see it applied
      const field = page.locator('.param[data-key="mppi.temperature"] input[type=number]');
      await field.fill('0.05');
      await field.dispatchEvent('change');
      await page.locator('.param[data-key="mppi.temperature"] .applied').waitFor({ timeout: 10000 });
      const values = await (await fetch(`${address}/params`)).json() as { values: Record<string, unknown> };
      assert.equal(values.values['mppi.temperature'], 0.05);
      // a refused value shows the server's reason inline
      await field.fill('-1');
      await field.dispatchEvent('change');
      await page.locator('.param[data-key="mppi.temperature"] .error').waitFor({ timeout: 10000 });
      assert.match(await page.textContent('.param[data-key="mppi.temperature"] .error') ?? '', /mppi\.temperature must be > 0/);

      // pause holds the run; resume lets it go on
      await page.click('#pause');
      await page.waitForFunction(() => document.querySelector('#pause')!.textContent === 'resume');
      const held = await (await fetch(`${address}/status`)).json() as { counters: { ticks: number } };
      await new Promise((r) => setTimeout(r, 500));
      const still = await (await fetch(`${address}/status`)).json() as { counters: { ticks: number } };
      assert.ok(still.counters.ticks - held.counters.ticks <= 1, 'paused');
      await page.click('#pause');
      await page.waitForFunction(() => document.querySelector('#pause')!.textContent === 'pause');

      const shot = join(out, 'dashboard.png');
      await page.screenshot({ path: shot, fullPage: true });
      assert.ok(statSync(shot).size > 10000);
      assert.deepEqual(errors, [], 'no errors on the page');
    } finally {
      await browser.close();
    }
  });
});
