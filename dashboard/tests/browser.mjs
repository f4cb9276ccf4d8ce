// Browser test of the dashboard, driven by tests/browser.sh (which starts the server and
// the scratch database). Uses playwright-core with the system Chromium: never downloads one.
//
// env: DASHBOARD_URL, TEST_DB_URL (psql), EXPECT_REVENUE, NEW_SALES_SQL, NEW_SALES_CMD (run after it), EXPECT_REVENUE_AFTER,
//      SCREENSHOT_DIR, LOGIN_USER, LOGIN_PASSWORD, CHROMIUM (default /usr/bin/chromium)
import { chromium } from 'playwright-core';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { checkPages } from './pages.mjs';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`missing env ${k}`);
  return v;
};
const url = env('DASHBOARD_URL');
const dbUrl = env('TEST_DB_URL');
const expectRevenue = env('EXPECT_REVENUE');
const newSalesSql = env('NEW_SALES_SQL');
const expectAfter = env('EXPECT_REVENUE_AFTER');
const shotDir = env('SCREENSHOT_DIR');
const loginUser = env('LOGIN_USER');
const loginPassword = env('LOGIN_PASSWORD');
const t0 = Date.now();
const log = (...a) => console.log(`[browser ${((Date.now() - t0) / 1000).toFixed(1)}s]`, ...a);

const problems = [];
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
let ok = false;
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console error: ${m.text()}`);
  });
  page.on('response', (r) => {
    if (r.status() >= 400 && !r.url().endsWith('/favicon.ico')) problems.push(`HTTP ${r.status()} ${r.url()}`);
  });
  // ERR_ABORTED is a request the browser cancelled itself because the page navigated away
  // (a favicon or a refresh still in flight when a link is followed): not a failure.
  page.on('requestfailed', (r) => {
    const why = r.failure()?.errorText || '';
    if (!why.includes('ERR_ABORTED')) problems.push(`request failed: ${r.url()} ${why}`);
  });
  let navigations = 0;
  page.on('framenavigated', (f) => {
    if (f === page.mainFrame()) navigations += 1;
  });

  // Without a session the page sends us to the login form, which brings us back.
  await page.goto(url, { waitUntil: 'load' });
  if (!page.url().includes('/login?next=/')) throw new Error(`without a session ${url} went to ${page.url()}`);
  await page.screenshot({ path: path.join(shotDir, 'login.png') });
  await page.fill('input[name="username"]', loginUser);
  await page.fill('input[name="password"]', 'not the password');
  await page.click('button[type="submit"]');
  const refused = (await page.textContent('[data-testid="login-error"]'))?.trim();
  if (refused !== 'Wrong username or password.') throw new Error(`a wrong password shows ${JSON.stringify(refused)}`);
  // The refused attempt answered 401 on purpose: not a problem of the page.
  problems.length = 0;
  await page.fill('input[name="username"]', loginUser);
  await page.fill('input[name="password"]', loginPassword);
  const [resp] = await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.click('button[type="submit"]')]);
  if (!resp || resp.status() !== 200 || new URL(page.url()).pathname !== '/') throw new Error(`after login: ${page.url()} ${resp && resp.status()}`);
  const user = (await page.textContent('[data-testid="user"]'))?.trim();
  if (!user?.startsWith(loginUser)) throw new Error(`the header shows user ${JSON.stringify(user)}`);
  log(`signed in as ${user}`);
  navigations = 1;
  const h1 = (await page.textContent('h1'))?.trim();
  if (h1 !== 'Sales overview') throw new Error(`header is ${JSON.stringify(h1)}`);

  const revenue = page.locator('[data-kpi="revenue"] .kpi-value');
  const shown = (await revenue.textContent())?.trim();
  if (shown !== expectRevenue) throw new Error(`revenue card shows ${JSON.stringify(shown)}, expected ${expectRevenue}`);
  log(`server-rendered revenue ${shown}`);
  for (const kpi of ['orders', 'customers', 'avg_basket']) {
    const v = (await page.textContent(`[data-kpi="${kpi}"] .kpi-value`))?.trim();
    if (!v) throw new Error(`KPI ${kpi} is empty`);
  }
  // Last 30 days against the 30 days before: every test sale is recent, none before.
  const recent = (await page.textContent('[data-kpi="revenue_30d"] .kpi-value'))?.trim();
  if (recent !== expectRevenue) throw new Error(`30-day revenue card shows ${JSON.stringify(recent)}, expected ${expectRevenue}`);
  const recentOrders = (await page.textContent('[data-kpi="orders_30d"] .kpi-value'))?.trim();
  const allOrders = (await page.textContent('[data-kpi="orders"] .kpi-value'))?.trim();
  if (recentOrders !== allOrders) throw new Error(`30-day orders ${recentOrders} differ from all orders ${allOrders}`);
  const delta = (await page.textContent('[data-kpi="revenue_30d"] [data-testid="delta"]'))?.trim();
  if (delta !== 'new') throw new Error(`30-day revenue change shows ${JSON.stringify(delta)}, expected "new" (nothing in the 30 days before)`);
  log(`30-day cards ${recent} / ${recentOrders} orders, change ${delta}`);
  if ((await page.locator('svg.chart path.forecast').count()) !== 1) throw new Error('the chart has no forecast path');
  const d = await page.getAttribute('svg.chart path.line', 'd');
  if (!d || !/^M[\d.]+,[\d.]+( L[\d.]+,[\d.]+)+$/.test(d)) throw new Error(`chart line path is ${JSON.stringify(d)}`);
  const rows = await page.locator('table.countries tbody tr').count();
  if (rows < 1) throw new Error('revenue by country table is empty');
  log(`chart path ok (${d.split(' ').length} points), ${rows} country row(s)`);

  await page.waitForSelector('main[data-hydrated="true"]', { timeout: 20000 });
  log('hydrated');
  await page.evaluate(() => {
    window.__sameDocument = true;
  });
  const updatedBefore = await page.textContent('[data-testid="last-updated"]');

  execFileSync('psql', [dbUrl, '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-c', newSalesSql], { stdio: 'inherit' });
  // Gold is kept by transform: bring it in line with the new silver rows.
  if (process.env.NEW_SALES_CMD) execFileSync('sh', ['-c', process.env.NEW_SALES_CMD], { stdio: 'inherit' });
  log('inserted more sales');
  const started = Date.now();
  await page.waitForFunction(
    (exp) => document.querySelector('[data-kpi="revenue"] .kpi-value')?.textContent.trim() === exp,
    expectAfter,
    { timeout: 10000, polling: 100 },
  );
  log(`revenue card now ${expectAfter} after ${Date.now() - started} ms`);
  const recentAfter = (await page.textContent('[data-kpi="revenue_30d"] .kpi-value'))?.trim();
  if (recentAfter !== expectAfter) throw new Error(`30-day revenue card shows ${JSON.stringify(recentAfter)} after the update, expected ${expectAfter}`);
  const same = await page.evaluate(() => window.__sameDocument === true);
  if (!same || navigations !== 1) throw new Error(`the page reloaded (navigations=${navigations})`);
  const updatedAfter = await page.textContent('[data-testid="last-updated"]');
  log(`last updated ${updatedBefore} -> ${updatedAfter}`);

  await page.waitForTimeout(300); // let the chart settle before the picture
  const shot = path.join(shotDir, 'overview.png');
  await page.screenshot({ path: shot, fullPage: true });
  log(`screenshot ${shot}`);
  await checkPages(page, { url, dbUrl, shotDir, log });
  if (problems.length === 0) ok = true;
} catch (e) {
  problems.push(`failure: ${e.message}`);
} finally {
  await browser.close();
}
for (const p of problems) console.error(`  - ${p}`);
process.exit(ok ? 0 : 1);
