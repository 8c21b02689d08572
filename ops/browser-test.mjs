// The dashboard in headless Chromium (run by ops/browser-test.sh, which starts the servers).
// Every wait has a deadline; a failed expectation exits 1 with what was seen.
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

const require = createRequire(import.meta.url);
const { chromium } = require('playwright-core');
const BASE = process.env.BASE;
const OUT = process.env.OUT;
const TOKEN = process.env.OMS_API_TOKEN;

const t0 = Date.now();
const log = (m) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1)}s] ${m}`);
const fail = (m) => { console.error(`FAIL: ${m}`); process.exit(1); };

async function api(method, path, body) {
  const r = await fetch(BASE + path, {
    method,
    headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'text/csv' },
    body,
  });
  const json = await r.json();
  if (!r.ok) fail(`${method} ${path}: ${r.status} ${JSON.stringify(json)}`);
  return json;
}

async function until(what, ms, check) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    last = await check();
    if (last && last.ok) return last;
    await new Promise((r) => setTimeout(r, 200));
  }
  fail(`timed out after ${ms} ms waiting for ${what}; last: ${JSON.stringify(last)}`);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-dev-shm-usage'],
});
const context = await browser.newContext({ viewport: { width: 1440, height: 1000 }, deviceScaleFactor: 1 });
const page = await context.newPage();
const cspErrors = [];
page.on('console', (m) => { if (m.type() === 'error') cspErrors.push(m.text()); });
page.on('pageerror', (e) => cspErrors.push(String(e)));

// 1. Import through the API; open the page; wait for the figures.
const upload = await api('POST', '/api/imports?name=orders.csv&wait=true', readFileSync(`${OUT}/orders.csv`));
log(`imported ${upload.enqueued} orders (import ${upload.import_id})`);
await page.goto(BASE + '/');
await page.fill('#token', TOKEN);
await page.dispatchEvent('#token', 'change');
const done = await until('the import to finish', 90_000, async () => {
  const i = await api('GET', `/api/imports/${upload.import_id}`);
  return { ok: i.done, i };
});
// The read models are final once they count every completed order (they follow the commits).
const expected = (await until('the KPI read model to count every completed order', 20_000, async () => {
  const k = await api('GET', '/api/kpis/total');
  return { ok: k.order_count === done.i.completed, k };
})).k;
const stats = (await until('the order stats to count every ended order', 20_000, async () => {
  const st = await api('GET', '/api/orders/stats');
  return { ok: st.completed === done.i.completed && st.failed_total === done.i.failed_total, st };
})).st;
log(`import done: ${done.i.completed} completed, ${done.i.failed_total} failed; KPI total ${expected.order_count}`);
const fmt = new Intl.NumberFormat('en-US');
await until('the KPIs and the chart to show the import', 20_000, async () => {
  const shown = await page.textContent('#kpi-total-count');
  const chartCompleted = Number(await page.getAttribute('#chart', 'data-completed'));
  const chartFailed = Number(await page.getAttribute('#chart', 'data-failed'));
  return {
    ok: shown === fmt.format(expected.order_count) && chartCompleted === stats.completed
      && chartFailed === stats.failed_total,
    shown, chartCompleted, chartFailed,
  };
});
log('page shows the KPI total and the chart the completed and failed orders');
const board = await page.locator('#leaderboard tr').count();
if (board !== 10) fail(`leaderboard shows ${board} rows, not 10`);
await page.screenshot({ path: `${OUT}/dashboard-desktop.png`, fullPage: true });

// 2. Retry the dead letter from the page: its row goes. It is a row of the import above
//    (a row of an import MySQL does not have would be dead-lettered again at once).
execFileSync('redis-cli', ['-u', process.env.REDIS_URL, 'XADD', `${process.env.OMS_PREFIX}orders:dead`, '*',
  'import', String(upload.import_id), 'line', '100000', 'identity', 'browser-dead-1',
  'row', JSON.stringify({ id: 'browser-dead-1', ln: 100000, n: 'Dead Letter', e: 'dead@example.com',
    it: [{ s: 'SKU-000001', q: 1 }] }),
  'error', 'Lock wait timeout exceeded; try restarting transaction', 'attempts', '3',
  'consumer', 'browser-1', 'source_id', '1-0', 'failed_at', new Date().toISOString()],
  { stdio: ['ignore', 'ignore', 'inherit'] });
const row = page.locator('#dead tr[data-dead-id]');
await until('the dead letter to be listed', 10_000, async () => ({ ok: (await row.count()) === 1,
  count: await row.count() }));
await row.locator('button[data-retry]').click();
await until('the dead letter to leave the table', 10_000, async () => ({
  ok: (await row.count()) === 0, message: await page.textContent('#message'),
  updated: await page.textContent('#updated'),
}));
const failed = await api('GET', '/api/failed');
if (failed.total !== 0) fail(`dead letters left: ${failed.total}`);
log('retried the dead letter from the page');

// 3. Pause from the page; orders uploaded while paused are not processed; resume finishes.
await page.click('.switch');
await until('the page to say paused', 5_000, async () => ({
  ok: (await page.textContent('#queue-state')) === 'paused',
}));
const q = await api('GET', '/api/queue');
if (!q.paused) fail('the queue is not paused');
// Consumers see the flag at their next poll (250 ms; later on a loaded machine): wait
// until every one has stopped reading (idle in Redis's view) before uploading.
await until('every consumer to stop reading', 20_000, async () => {
  const s = await api('GET', '/api/queue');
  return { ok: s.consumers.length > 0 && s.consumers.every((c) => c.idle_ms >= 1000), consumers: s.consumers };
});
const more = await api('POST', '/api/imports?name=orders-paused.csv&wait=true', readFileSync(`${OUT}/orders-paused.csv`));
const before = await api('GET', `/api/imports/${more.import_id}`);
await new Promise((r) => setTimeout(r, 3000));
const after = await api('GET', `/api/imports/${more.import_id}`);
const terminal = (i) => i.completed + i.failed_total + i.duplicates + i.dead;
if (terminal(after) !== 0 || terminal(before) !== 0) fail(`orders processed while paused: ${terminal(after)}`);
log(`paused: ${more.enqueued} orders uploaded while paused, none processed in 3 s`);
await page.screenshot({ path: `${OUT}/dashboard-paused.png`, fullPage: false });
await page.click('.switch');
await until('the paused import to finish after resume', 60_000, async () => {
  const i = await api('GET', `/api/imports/${more.import_id}`);
  return { ok: i.done, terminal: terminal(i) };
});
await until('the page to say running', 5_000, async () => ({
  ok: (await page.textContent('#queue-state')) === 'running',
}));
log('resumed: the import finished');

// 4. Phone-sized screen.
const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true });
const small = await phone.newPage();
await small.goto(BASE + '/');
await small.waitForSelector('body[data-loaded="true"]', { timeout: 10_000 });
const overflow = await small.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
if (overflow > 1) fail(`the phone layout scrolls sideways by ${overflow}px`);
await small.screenshot({ path: `${OUT}/dashboard-phone.png`, fullPage: true });
await page.screenshot({ path: `${OUT}/dashboard-desktop-after.png`, fullPage: true });

// 5. Three hostile stream entries (a 4 MB customer name each) are dead-lettered: the
//    dead letters keep an excerpt, /api/failed answers 200, and the page shows every panel;
//    with one endpoint failing, the other panels still render.
const hostileRow = (n) => JSON.stringify([{ id: `hostile-${n}`, ln: 2, n: 'N'.repeat(4_000_000),
  e: 'hostile@example.com', it: [{ s: 'SKU-000001', q: 1 }] }]);
for (const n of [1, 2, 3]) {
  execFileSync('redis-cli', ['-u', process.env.REDIS_URL, '-x', 'XADD', `${process.env.OMS_PREFIX}orders`, '*',
    'v', '1', 'import', String(upload.import_id), 'rows'], { input: hostileRow(n), stdio: ['pipe', 'ignore', 'inherit'] });
}
const dead = await until('the three hostile entries to be dead-lettered', 60_000, async () => {
  const r = await fetch(BASE + '/api/failed', { headers: { Authorization: `Bearer ${TOKEN}` } });
  const body = r.ok ? await r.json() : { status: r.status };
  return { ok: r.status === 200 && body.total === 3, status: r.status, total: body.total, body };
});
const biggest = Math.max(...dead.body.dead_letters.map((d) => d.row.length));
if (biggest > 4096) fail(`a dead letter keeps ${biggest} characters of its row`);
log(`three 4 MB rows dead-lettered: /api/failed 200, rows kept as excerpts (${biggest} characters at most)`);
const fresh = await context.newPage();
// The injected 500 is logged by the browser as a failed load; anything else is an error.
fresh.on('console', (m) => { if (m.type() === 'error' && !/500/.test(m.text())) cspErrors.push(m.text()); });
fresh.on('pageerror', (e) => cspErrors.push(String(e)));
await fresh.route('**/api/leaderboard**', (route) => route.fulfill({
  status: 500, contentType: 'application/json', body: '{"error":"injected failure","code":"internal"}' }));
await fresh.goto(BASE + '/');
await fresh.waitForSelector('body[data-loaded="true"]', { timeout: 10_000 });
await until('every other panel to render beside the failing one', 10_000, async () => {
  const deadRows = await fresh.locator('#dead tr[data-dead-id]').count();
  const kpi = await fresh.textContent('#kpi-total-count');
  const queue = await fresh.textContent('#q-dead');
  const imports = await fresh.locator('#imports [data-import-id]').count();
  const failedPanel = await fresh.locator('section[data-error]').count();
  const total = await api('GET', '/api/kpis/total');
  return {
    ok: deadRows === 3 && kpi === fmt.format(total.order_count) && queue === '3' && imports > 0
      && failedPanel === 1,
    deadRows, kpi, queue, imports, failedPanel,
  };
});
await fresh.screenshot({ path: `${OUT}/dashboard-one-panel-failing.png`, fullPage: true });
log('with /api/leaderboard failing, the other panels render and the failing one says so');
if (cspErrors.length) fail(`console errors (CSP?): ${cspErrors.join(' | ')}`);
await browser.close();
log('screenshots: dashboard-desktop.png, dashboard-paused.png, dashboard-phone.png');
