// Browser checks of the pages after login (driven by browser.mjs, same browser and page).
// Every figure checked here is computed from the warehouse with psql, not hard-coded.
import { execFileSync } from 'node:child_process';
import path from 'node:path';

const sql = (dbUrl, q) =>
  execFileSync('psql', [dbUrl, '-X', '-q', '-t', '-A', '-v', 'ON_ERROR_STOP=1', '-c', q], { encoding: 'utf8' }).trim();

// "1,234.50" -> "1234.50"
const plain = (s) => (s || '').replace(/,/g, '').trim();

async function panelCells(page, panel, col) {
  return page.$$eval(`[data-panel="${panel}"] table.data tbody td[data-col="${col}"]`, (tds) => tds.map((t) => t.textContent.trim()));
}

// The panel's cells once they read `want` (a client-side navigation refetches the data after
// the URL changed), or what they read after 10 s.
async function waitCells(page, panel, col, want) {
  const sel = `[data-panel="${panel}"] table.data tbody td[data-col="${col}"]`;
  try {
    await page.waitForFunction(
      ([s, w]) => Array.from(document.querySelectorAll(s)).map((t) => t.textContent.trim()).join(',') === w,
      [sel, want],
      { timeout: 10000, polling: 100 },
    );
  } catch (_) {
    // fall through: the caller reports what is shown
  }
  return (await panelCells(page, panel, col)).join(',');
}

async function waitPage(page, title) {
  await page.waitForSelector(`main[data-page="${title}"][data-hydrated="true"]`, { timeout: 20000 });
  const err = await page.$('[data-testid="page-error"]');
  if (err) throw new Error(`${title}: ${await err.textContent()}`);
}

export async function checkPages(page, { url, dbUrl, shotDir, log }) {
  const base = url.replace(/\/$/, '');
  const shot = async (name) => {
    await page.waitForTimeout(150);
    await page.screenshot({ path: path.join(shotDir, `${name}.png`), fullPage: true });
  };

  // Navigation by the menu (client-side), then the sales figures per country.
  await page.click('nav a[data-nav="Sales"]');
  await waitPage(page, 'Sales');
  await shot('sales');
  const countries = await panelCells(page, 'by_country', 'country');
  const revenues = (await panelCells(page, 'by_country', 'revenue')).map(plain);
  const expected = sql(dbUrl, `SELECT string_agg(country || '=' || r::text, ',' ORDER BY r DESC, country)
      FROM (SELECT c.country, sum(s.amount) AS r FROM silver.sales s JOIN silver.customers c USING (customer_id) GROUP BY 1) t`);
  const shown = countries.map((c, i) => `${c}=${revenues[i]}`).join(',');
  if (shown !== expected) throw new Error(`revenue by country shows ${shown}, the warehouse says ${expected}`);
  log(`sales by country matches the warehouse: ${shown}`);

  // Filter: country (typed in the bar), then the URL carries it.
  await page.fill('[data-testid="filter-country"]', 'France');
  await page.click('[data-testid="apply"]');
  await page.waitForURL(/country=France/, { timeout: 10000 });
  await waitPage(page, 'Sales');
  const fr = await waitCells(page, 'by_country', 'country', 'France');
  if (fr !== 'France') throw new Error(`with country=France the country table shows ${fr}`);
  const frRevenue = plain((await panelCells(page, 'by_country', 'revenue'))[0]);
  const frExpected = sql(dbUrl, `SELECT sum(s.amount)::text FROM silver.sales s JOIN silver.customers c USING (customer_id) WHERE c.country = 'France'`);
  if (frRevenue !== frExpected) throw new Error(`France shows ${frRevenue}, the warehouse says ${frExpected}`);
  const trendFr = (await panelCells(page, 'trend', 'revenue')).map(plain).reduce((a, b) => a + Number(b), 0).toFixed(2);
  if (trendFr !== frExpected) throw new Error(`France trend sums to ${trendFr}, expected ${frExpected}`);
  log(`country filter: France ${frRevenue} in both panels`);

  // Date range: custom from/to, figures from the warehouse for the same days.
  const from = sql(dbUrl, `SELECT (current_date - 13)::text`);
  const to = sql(dbUrl, `SELECT (current_date - 2)::text`);
  await page.goto(`${base}/sales?preset=custom&from=${from}&to=${to}&grain=day`);
  await waitPage(page, 'Sales');
  const days = await panelCells(page, 'trend', 'period_start');
  const dayRevenue = (await panelCells(page, 'trend', 'revenue')).map(plain);
  const expectedDays = sql(dbUrl, `SELECT string_agg(sale_date::text || '=' || r, ',' ORDER BY sale_date DESC) FROM
      (SELECT sale_date, sum(amount)::text AS r FROM silver.sales WHERE sale_date BETWEEN '${from}' AND '${to}' GROUP BY 1) t`);
  const shownDays = days.map((d, i) => `${d}=${dayRevenue[i]}`).join(',');
  if (shownDays !== expectedDays) throw new Error(`days ${from}..${to} show ${shownDays}, expected ${expectedDays}`);
  const resolved = await page.textContent('[data-testid="range"]');
  if (!resolved.includes(from) || !resolved.includes(to)) throw new Error(`range line says ${resolved}`);
  log(`date filter: ${shownDays}`);

  // The URL round-trips: a reload shows the same state; back returns to France.
  await page.reload();
  await waitPage(page, 'Sales');
  if ((await page.inputValue('input[name="from"]')) !== from) throw new Error('from lost on reload');
  if ((await panelCells(page, 'trend', 'period_start')).join(',') !== days.join(',')) throw new Error('days changed on reload');
  await page.goBack();
  await page.waitForURL(/country=France/, { timeout: 10000 });
  await waitPage(page, 'Sales');
  if ((await page.inputValue('[data-testid="filter-country"]')) !== 'France') throw new Error('back did not restore the country');
  log('URL round-trip and back button ok');

  // Cross-filtering: click a country in the unfiltered table.
  await page.goto(`${base}/sales`);
  await waitPage(page, 'Sales');
  await page.click('[data-panel="by_country"] td[data-col="country"] a >> text=Germany');
  await page.waitForURL(/country=Germany/, { timeout: 10000 });
  await waitPage(page, 'Sales');
  log('cross-filter by click ok');

  // CSV export holds the same rows as the table.
  await page.goto(`${base}/sales`);
  await waitPage(page, 'Sales');
  const href = await page.getAttribute('[data-panel="by_country"] [data-testid="export"]', 'href');
  const csv = await (await page.request.get(base + href)).text();
  const lines = csv.trim().split('\n');
  if (lines[0] !== 'country,revenue,orders,lines') throw new Error(`CSV header ${lines[0]}`);
  const csvRows = lines.slice(1).map((l) => l.split(',').slice(0, 2).join('='));
  if (csvRows.join(',') !== expected) throw new Error(`CSV rows ${csvRows.join(',')} differ from the table ${expected}`);
  log(`CSV export equals the table (${csvRows.length} rows)`);

  // Drill-through to the lines behind the figure.
  await page.click('[data-panel="by_country"] [data-testid="drill"]');
  await waitPage(page, 'Sale lines');
  const lineCount = (await panelCells(page, 'lines', 'sale_id')).length;
  const expectedLines = sql(dbUrl, 'SELECT count(*) FROM silver.sales');
  if (String(lineCount) !== expectedLines) throw new Error(`drill-through shows ${lineCount} lines, the warehouse has ${expectedLines}`);
  await shot('lines');
  log(`drill-through: ${lineCount} lines`);

  // Every other page renders with data and without errors.
  for (const [pathname, title, panel] of [
    ['/products', 'Products', 'top'],
    ['/products/P1', 'Product', 'trend'],
    ['/customers', 'Customers', 'ltv'],
    ['/customers/C1', 'Customer', 'orders'],
    ['/employees', 'Employees', 'ranking'],
    ['/live', 'Live', 'web_usage'],
    ['/pipeline', 'Pipeline', 'freshness'],
  ]) {
    await page.goto(base + pathname);
    await waitPage(page, title);
    await page.waitForSelector(`[data-panel="${panel}"]`, { timeout: 10000 });
    await shot(title.toLowerCase().replace(/ /g, '-'));
    log(`${pathname}: ok`);
  }
  await page.goto(`${base}/products`);
  await waitPage(page, 'Products');
  const topShown = (await panelCells(page, 'top', 'product_key')).join(',');
  const topExpected = sql(dbUrl, `SELECT string_agg(product_id, ',' ORDER BY r DESC, product_id) FROM (SELECT product_id, sum(amount) r FROM silver.sales GROUP BY 1) t`);
  if (topShown !== topExpected) throw new Error(`top products ${topShown}, expected ${topExpected}`);
  log(`top products ${topShown}`);

  // Sign out: the pages refuse again.
  await page.click('[data-testid="logout"]');
  await page.waitForURL(/\/login/, { timeout: 10000 });
  const again = await page.goto(`${base}/pipeline`);
  if (!page.url().includes('/login?next=/pipeline')) throw new Error(`after logout /pipeline went to ${page.url()} (${again?.status()})`);
  log('logout ok; pages refuse without a session');
}
