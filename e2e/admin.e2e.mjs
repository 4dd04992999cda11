// End-to-end test of the admin console (/static/admin.html) in a real (headless) Chromium
// against a running local runner. A sale is set up only through the console (product, activity,
// limits edited, warm-up, publish), bought by four buyers on its published page, and watched in
// the console's live view until the pipeline is quiet and the reconcile report balances. Error
// answers of both shapes (the functions' and API Gateway's) and a dead network must read as
// sentences on the page.
// Run by scripts/e2e.sh, which starts the runner and provides BASE_URL, ADMIN_TOKEN, USER_TOKEN,
// USER2_TOKEN and EXTRA_USER_TOKENS (space-separated). Screenshots go to e2e/screenshots/admin-*.png.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const env = (name) => {
  const value = process.env[name];
  assert.ok(value, `${name} must be set (scripts/e2e.sh sets it)`);
  return value;
};
const BASE_URL = env('BASE_URL').replace(/\/$/, '');
const ADMIN_TOKEN = env('ADMIN_TOKEN');
const USER_TOKEN = env('USER_TOKEN');
const USER2_TOKEN = env('USER2_TOKEN');
const EXTRA_TOKENS = env('EXTRA_USER_TOKENS').split(/\s+/).filter(Boolean);
// How far ahead the sale starts: time for the console to set it up and the buyers to arrive.
const START_DELAY_MS = Number(process.env.ADMIN_START_DELAY_SECS || 25) * 1000;
// The console's time zone in the main test: not UTC, with a half-hour offset, so the
// datetime-local to RFC 3339 conversion is seen to carry the offset.
const TIME_ZONE = 'Asia/Kolkata';

const SHOTS = fileURLToPath(new URL('./screenshots/', import.meta.url));
const CONSOLE = `${BASE_URL}/static/admin.html`;

let browser;

async function apiGet(path, token = ADMIN_TOKEN) {
  const res = await fetch(BASE_URL + path, { headers: { authorization: `Bearer ${token}` } });
  const text = await res.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = text;
  }
  return { status: res.status, body };
}

// Waits until `selector` is visible and its text matches `pattern`; fails saying what it showed.
async function waitText(page, selector, pattern, timeout = 10_000) {
  try {
    await page.locator(selector, { hasText: pattern }).first().waitFor({ state: 'visible', timeout });
  } catch {
    const shown = await page.locator(selector).first().textContent({ timeout: 1000 }).catch(() => '(missing)');
    assert.fail(`${selector} did not show ${pattern} within ${timeout} ms; it shows ${JSON.stringify(shown)}`);
  }
}

// Waits until `selector`'s whole text (trimmed) equals `expected`.
async function waitExact(page, selector, expected, timeout = 10_000) {
  const escaped = expected.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  await waitText(page, selector, new RegExp(`^\\s*${escaped}\\s*$`), timeout);
}

async function shot(page, name) {
  await page.screenshot({ path: `${SHOTS}${name}`, fullPage: true });
}

// Fails the test on a script error, an error answer for a static file, or any request that
// leaves the runner's origin (the console must fetch nothing from elsewhere).
function watch(page) {
  const problems = [];
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  // Chromium logs every 4xx answer to fetch() as "Failed to load resource"; this test asks for
  // some on purpose, and static files are checked below.
  page.on('console', (msg) => {
    if (msg.type() === 'error' && !msg.text().startsWith('Failed to load resource')) {
      problems.push(`console error: ${msg.text()}`);
    }
  });
  page.on('request', (req) => {
    const url = req.url();
    if (!url.startsWith(`${BASE_URL}/`) && !url.startsWith('data:')) problems.push(`request off origin: ${url}`);
  });
  page.on('response', (res) => {
    const url = new URL(res.url());
    if (res.status() >= 400 && (url.pathname.startsWith('/static/') || url.pathname.startsWith('/p/'))) {
      problems.push(`${res.status()} for ${url.pathname}`);
    }
  });
  return problems;
}

async function openConsole(options = {}, query = '') {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'en-US', ...options });
  const page = await context.newPage();
  const problems = watch(page);
  const res = await page.goto(CONSOLE + query);
  assert.equal(res.status(), 200, `GET ${CONSOLE} answered ${res.status()}`);
  return { context, page, problems };
}

async function connect(page, token) {
  await page.locator('#token-input').fill(token);
  await page.locator('#connect').click();
}

// The datetime-local value (the browser's own time zone) for an instant, as a person would type it.
function localInput(page, ms) {
  return page.evaluate((at) => {
    const d = new Date(at);
    const p = (n) => String(n).padStart(2, '0');
    const base = `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
    // Chromium writes whole minutes without ":00"; Playwright's fill wants the value it will read back.
    return d.getSeconds() ? `${base}:${p(d.getSeconds())}` : base;
  }, ms);
}

// The message the API itself gives for a request with this token (either shape).
async function apiMessage(path, token) {
  const { status, body } = await apiGet(path, token);
  const message = body && typeof body === 'object' ? (body.error ? body.error.message : body.message) : null;
  assert.ok(message, `${path} with this token answered ${status} with a message: ${JSON.stringify(body)}`);
  return { status, message };
}

before(async () => {
  await mkdir(SHOTS, { recursive: true });
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
});

after(async () => {
  await browser?.close();
});

test('errors read as sentences: a wrong token, a missing scope, the gateway shape, no network', { timeout: 60_000 }, async () => {
  const { context, page, problems } = await openConsole();
  await waitText(page, '#who', 'No token yet');
  assert.ok(await page.locator('#view-products').isVisible(), 'the products view is shown first');

  // A token the gateway cannot validate: the API's own 401 answer is shown, whichever shape it has.
  const bad = await apiMessage('/admin/products', 'not-a-valid-token');
  assert.equal(bad.status, 401);
  await connect(page, 'not-a-valid-token');
  await waitText(page, '#products-msg', `Could not load the products: ${bad.message}`);
  await waitText(page, '#products-msg', /HTTP 401/);
  await waitText(page, '#products-msg', /token is missing, expired or not valid/);
  await waitText(page, '#who', `The API refused this token: ${bad.message}`);
  assert.equal(await page.locator('#products-msg').getAttribute('role'), 'status');
  await shot(page, 'admin-wrong-token.png');

  // A valid token without the admin scope: 403.
  const plain = await apiMessage('/admin/products', USER_TOKEN);
  assert.equal(plain.status, 403);
  await connect(page, USER_TOKEN);
  await waitText(page, '#who', /no scope/);
  await waitText(page, '#products-msg', plain.message);
  await waitText(page, '#products-msg', /HTTP 403.*admin scope/);

  // With the admin token the list loads.
  await connect(page, ADMIN_TOKEN);
  await waitText(page, '#who', /Token for e2e-admin · scope admin/);
  await page.waitForFunction(() => document.getElementById('products-msg').textContent === '', null, { timeout: 10_000 });
  await waitText(page, '#products-pager .pager-text', /Page 1 of \d+ · \d+ products?/);
  assert.ok((await page.locator('#products-table tbody tr').count()) >= 1, 'the list (or its empty row) is shown');

  // API Gateway's own bodies, exactly as AWS sends them (the local runner may not make each).
  const gateway = [
    [401, 'Unauthorized', { 'www-authenticate': 'Bearer' }, /Unauthorized \(HTTP 401 from the API gateway\)\. The admin token is missing/],
    [403, 'Forbidden', {}, /Forbidden \(HTTP 403 from the API gateway\)\. This token does not carry the admin scope/],
    [404, 'Not Found', {}, /Not Found \(HTTP 404 from the API gateway\)\. The API has no such route/],
    [429, 'Too Many Requests', { 'retry-after': '2' }, /Too Many Requests \(HTTP 429 from the API gateway\).*Retry after 2 s/],
    [413, 'Request Entity Too Large', {}, /Request Entity Too Large \(HTTP 413 from the API gateway\)/],
  ];
  for (const [status, message, headers, shown] of gateway) {
    await page.route(`${BASE_URL}/admin/products?*`, (route) =>
      route.fulfill({ status, headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify({ message }) }),
    );
    await page.locator('#products-refresh').click();
    await waitText(page, '#products-msg', shown);
    if (status === 401) await shot(page, 'admin-gateway-unauthorized.png');
    await page.unroute(`${BASE_URL}/admin/products?*`);
  }

  // A body that is not JSON at all (a proxy's HTML page).
  await page.route(`${BASE_URL}/admin/products?*`, (route) =>
    route.fulfill({ status: 502, contentType: 'text/html', body: '<html><body><h1>502 Bad Gateway</h1></body></html>' }),
  );
  await page.locator('#products-refresh').click();
  await waitText(page, '#products-msg', /HTTP 502.*502 Bad Gateway/);
  await page.unroute(`${BASE_URL}/admin/products?*`);

  // No network at all.
  await page.route(`${BASE_URL}/admin/products?*`, (route) => route.abort('internetdisconnected'));
  await page.locator('#products-refresh').click();
  await waitText(page, '#products-msg', `Could not load the products: Cannot reach the API at ${BASE_URL}`);
  await shot(page, 'admin-network-error.png');
  await page.unroute(`${BASE_URL}/admin/products?*`);

  await page.locator('#products-refresh').click();
  await page.waitForFunction(() => document.getElementById('products-msg').textContent === '', null, { timeout: 10_000 });
  await waitText(page, '#products-pager .pager-text', /products?$/);

  // The live view of an activity that does not exist says so (a deep link to #live/<id>).
  await page.goto(`${CONSOLE}#live/999999999`);
  await waitText(page, '#live-msg', /There is no activity 999999999/);

  assert.deepEqual(problems, [], 'the console loaded and ran cleanly');
  await context.close();
});

test('a sale set up only through the console, bought on its page, watched live to the end', { timeout: 240_000 }, async () => {
  assert.ok(EXTRA_TOKENS.length >= 2, `EXTRA_USER_TOKENS holds at least two tokens (it holds ${EXTRA_TOKENS.length})`);
  // The console on its own path, with the API named explicitly (?api=), as when hosted elsewhere.
  const { context, page, problems } = await openConsole({ timezoneId: TIME_ZONE }, `?api=${encodeURIComponent(BASE_URL)}`);
  assert.equal(await page.locator('#api-base').inputValue(), BASE_URL, '?api= fills the API field');
  await connect(page, ADMIN_TOKEN);
  await waitText(page, '#who', /Token for e2e-admin · scope admin · expires/);

  // ---- a product ----
  const name = `Console Kettle ${Date.now()}`;
  await page.locator('#product-name').fill(name);
  await page.locator('#product-description').fill('Gooseneck, 0.9 l, set up from the admin console.');
  await page.locator('#product-price').fill('12.50');
  await page.locator('#product-create').click();
  await waitText(page, '#product-form-msg', /Created product \d+: Console Kettle \d+ \(\$12\.50\)\./);
  const productId = Number((await page.locator('#product-form-msg').textContent()).match(/Created product (\d+)/)[1]);
  const productRow = page.locator(`#products-table tbody tr[data-id="${productId}"]`);
  await productRow.waitFor({ timeout: 5000 });
  assert.match(await productRow.textContent(), new RegExp(`${name}.*\\$12\\.50`));
  await waitText(page, '#products-pager .pager-text', /Page (\d+) of \1 · \d+ products?/); // the last page shows the new one
  await shot(page, 'admin-products.png');

  // ---- an activity: first one that ends before it starts (the API says why not) ----
  await productRow.getByRole('button', { name: `New activity for product ${productId}` }).click();
  await page.locator('#view-activities').waitFor({ state: 'visible' });
  assert.equal(await page.locator('#activity-product').inputValue(), String(productId), 'the product id is filled in');
  const startsAt = Math.ceil((Date.now() + START_DELAY_MS) / 1000) * 1000;
  await page.locator('#activity-stock').fill('5');
  await page.locator('#activity-starts').fill(await localInput(page, startsAt));
  await page.locator('#activity-ends').fill(await localInput(page, startsAt - 60_000));
  await page.locator('#activity-rate').fill('100');
  await page.locator('#activity-burst').fill('100');
  await page.locator('#activity-per-user').fill('5');
  await page.locator('#activity-create').click();
  await waitText(page, '#activity-form-msg', 'Could not create the activity: ends_at must be after starts_at (HTTP 400, invalid_request).');
  assert.equal(await page.locator('#activity-form-msg').getAttribute('data-kind'), 'error');
  await shot(page, 'admin-bad-input.png');

  // ---- then a right one: 5 units, starting in a few seconds ----
  const endsAt = startsAt + 3600_000;
  await page.locator('#activity-ends').fill(await localInput(page, endsAt));
  // What is sent carries the browser's offset (+05:30), and names the same instants.
  const sentStart = (await page.locator('#activity-starts-sent').textContent()).replace('Sent as ', '');
  assert.match(sentStart, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+05:30$/, `starts_at is RFC 3339 with the offset: ${sentStart}`);
  assert.equal(Date.parse(sentStart), startsAt);
  await page.locator('#activity-create').click();
  await waitText(page, '#activity-form-msg', /Created activity \d+ for product \d+: stock 5,/);
  const activityId = Number((await page.locator('#activity-form-msg').textContent()).match(/Created activity (\d+)/)[1]);
  const row = page.locator(`#activities-table tbody tr[data-id="${activityId}"]`);
  await row.waitFor({ timeout: 5000 });
  await waitText(page, `#activities-table tbody tr[data-id="${activityId}"] .limits`, '100 / 100 / 5');
  await waitText(page, `#activities-table tbody tr[data-id="${activityId}"] .pill`, 'Upcoming');
  // The API stored the instants the admin chose.
  const listed = await apiGet('/admin/activities?per=100&page=1');
  const pages = Math.ceil(listed.body.total / 100);
  const lastPage = pages > 1 ? (await apiGet(`/admin/activities?per=100&page=${pages}`)).body : listed.body;
  const stored = lastPage.items.find((a) => a.id === activityId);
  assert.ok(stored, `activity ${activityId} is listed by the API`);
  assert.equal(Date.parse(stored.starts_at), startsAt);
  assert.equal(Date.parse(stored.ends_at), endsAt);
  assert.equal(stored.product_id, productId);

  // ---- edit its limits (only what changed is sent) ----
  let patchBody = null;
  page.on('request', (req) => {
    if (req.method() === 'PATCH') patchBody = req.postDataJSON();
  });
  await row.getByRole('button', { name: `Edit limits activity ${activityId}` }).click();
  await page.locator('#limits-form').waitFor({ state: 'visible' });
  await waitText(page, '#limits-title', `Edit limits of activity ${activityId}`);
  assert.equal(await page.locator('#limits-rate').inputValue(), '100');
  await page.locator('#limits-rate').fill('40');
  await page.locator('#limits-burst').fill('20');
  await page.locator('#limits-save').click();
  await waitText(page, '#limits-msg', `Saved activity ${activityId}: 40 per second, burst 20, 5 per user per minute.`);
  assert.deepEqual(patchBody, { rate_limit_per_sec: 40, burst: 20 }, 'the PATCH carried only the changed limits');
  await waitText(page, `#activities-table tbody tr[data-id="${activityId}"] .limits`, '40 / 20 / 5');
  await page.locator('#limits-per-user').fill('3');
  await page.locator('#limits-save').click();
  await waitText(page, '#limits-msg', `Saved activity ${activityId}: 40 per second, burst 20, 3 per user per minute.`);
  assert.deepEqual(patchBody, { per_user_per_min: 3 });
  await waitText(page, `#activities-table tbody tr[data-id="${activityId}"] .limits`, '40 / 20 / 3');
  await shot(page, 'admin-limits.png');
  await page.locator('#limits-cancel').click();

  // ---- warm up, publish ----
  await row.getByRole('button', { name: `Warm up activity ${activityId}` }).click();
  await waitText(page, '#activity-action-msg', new RegExp(`Warmed up activity ${activityId}: (loaded into|refreshed in) Redis\\. Product ${productId} now reads stock 5, Upcoming\\.`));
  await row.getByRole('button', { name: `Publish activity ${activityId}` }).click();
  await waitText(page, '#activity-action-msg', `Published the sale page of activity ${activityId}.`);
  const link = page.locator('#publish-link');
  await link.waitFor({ state: 'visible' });
  const saleUrl = await link.getAttribute('href');
  assert.equal(saleUrl, `${BASE_URL}/p/${productId}.html`);
  assert.equal(await link.textContent(), saleUrl);
  await row.getByRole('button', { name: `Reconcile activity ${activityId}` }).click();
  await waitExact(page, '#reconcile-report [data-field="initial"]', '5');
  await waitExact(page, '#reconcile-report [data-field="redis_stock"]', '5');
  await waitExact(page, '#reconcile-report [data-field="balanced"]', 'Yes');
  await shot(page, 'admin-published.png');

  // ---- the live view, before the sale opens ----
  await row.getByRole('button', { name: `Live activity ${activityId}` }).click();
  await page.waitForURL(/#live\/\d+$/);
  await page.locator('#view-live').waitFor({ state: 'visible' });
  await waitExact(page, '#live-state', 'Upcoming');
  await waitExact(page, '#live-stock', '5 left');
  await waitExact(page, '#live-sold', '0');
  await waitExact(page, '#live-balanced', 'Yes');
  await waitText(page, '#live-heading', `Activity ${activityId} · product ${productId} · stock 5`);

  // ---- four buyers on the published page ----
  const tokens = [USER_TOKEN, USER2_TOKEN, ...EXTRA_TOKENS.slice(0, 2)];
  const buyers = [];
  for (const token of tokens) {
    const ctx = await browser.newContext({ viewport: { width: 900, height: 800 }, locale: 'en-US' });
    const p = await ctx.newPage();
    const buyerProblems = watch(p);
    const res = await p.goto(`${saleUrl}?token=${encodeURIComponent(token)}`);
    assert.equal(res.status(), 200);
    await waitText(p, 'h1', name);
    buyers.push({ ctx, page: p, problems: buyerProblems });
  }
  assert.ok(Date.now() < startsAt, 'the buyers arrived before the sale opened (raise ADMIN_START_DELAY_SECS if not)');
  await shot(page, 'admin-live-before.png');

  const untilOpen = Math.max(0, startsAt - Date.now()) + 15_000;
  await Promise.all(buyers.map((b) => b.page.locator('#buy:enabled').waitFor({ timeout: untilOpen })));
  await waitExact(page, '#live-state', 'Open', 10_000);
  await Promise.all(buyers.map((b) => b.page.locator('#buy').click()));
  await Promise.all(buyers.map((b) => waitText(b.page, '#order-status', 'Pending payment', 30_000)));
  // Two of them pay.
  for (const b of buyers.slice(0, 2)) {
    await b.page.locator('#pay').click();
    await waitText(b.page, '#order-status', /^Paid$/);
  }
  for (const [i, b] of buyers.entries()) {
    assert.deepEqual(b.problems, [], `buyer ${i + 1}'s page ran cleanly`);
    await b.ctx.close();
  }

  // ---- the live view shows the sale to its end ----
  await waitExact(page, '#live-sold', '4', 20_000);
  await waitExact(page, '#live-stock', '1 left', 20_000);
  await waitExact(page, '#live-pending', '2', 20_000);
  await waitExact(page, '#live-paid', '2', 20_000);
  await waitExact(page, '#live-cancelled', '0');
  await waitExact(page, '#live-failed', '0');
  await waitExact(page, '#live-outbox', '0', 20_000);
  await waitExact(page, '#live-balanced', 'Yes', 20_000);
  const reported = await apiGet(`/admin/activities/${activityId}/reconcile`);
  if ('outbox_oldest_age_ms' in reported.body) {
    // Quiet pipeline: nothing is waiting in the outbox.
    await waitText(page, '#live-lag', /^(none pending|\d+ ms|\d+\.\d s)$/, 10_000);
  } else {
    await waitExact(page, '#live-lag', 'not reported');
  }
  // The chart saw the sales: at least two readings, a peak above zero, drawn as a line.
  const chart = page.locator('#live-chart svg');
  await page.waitForFunction(() => Number(document.querySelector('#live-chart svg')?.dataset.points) >= 3);
  const peak = Number(await chart.getAttribute('data-peak'));
  assert.ok(peak > 0, `the sales chart has a peak above zero (${peak})`);
  assert.match(await chart.getAttribute('aria-label'), /^Sales per second over the last \d+ readings: now \d+\.\d, peak [1-9]/);
  assert.equal(await chart.locator('polyline').count(), 1);
  await waitText(page, '#live-msg', `Watching activity ${activityId}`);
  await shot(page, 'admin-live.png');

  // ---- leaving the view stops the refresh ----
  const polls = [];
  const countPolls = (req) => {
    const path = new URL(req.url()).pathname;
    if (path.endsWith('/reconcile') || path.endsWith('/stock')) polls.push(path);
  };
  page.on('request', countPolls);
  await page.getByRole('link', { name: 'Orders' }).click();
  await page.locator('#view-orders').waitFor({ state: 'visible' });
  const leftAt = polls.length; // a refresh already in flight may land
  await page.waitForTimeout(5000);
  assert.equal(polls.length, leftAt, `no live refresh after leaving the view (saw ${polls.slice(leftAt).join(', ')})`);
  page.off('request', countPolls);

  // ---- orders, filtered and paginated ----
  await page.locator('#orders-activity').fill(String(activityId));
  await page.locator('#orders-status').selectOption('paid');
  await page.locator('#orders-apply').click();
  await waitText(page, '#orders-pager .pager-text', 'Page 1 of 1 · 2 orders');
  const paidRows = page.locator('#orders-table tbody tr');
  assert.equal(await paidRows.count(), 2);
  for (const text of await paidRows.allTextContents()) {
    assert.match(text, new RegExp(`${activityId}-${productId}-.*Paid`), `a paid order of this sale: ${text}`);
  }
  await page.locator('#orders-status').selectOption('');
  await page.locator('#orders-per').selectOption('1');
  await page.locator('#orders-apply').click();
  await waitText(page, '#orders-pager .pager-text', 'Page 1 of 4 · 4 orders');
  await page.locator('#orders-pager [data-go="next"]').click();
  await waitText(page, '#orders-pager .pager-text', 'Page 2 of 4 · 4 orders');
  await page.locator('#orders-pager [data-go="last"]').click();
  await waitText(page, '#orders-pager .pager-text', 'Page 4 of 4 · 4 orders');
  assert.ok(await page.locator('#orders-pager [data-go="next"]').isDisabled(), 'no next page after the last');
  await page.locator('#orders-per').selectOption('20');
  await waitText(page, '#orders-pager .pager-text', 'Page 1 of 1 · 4 orders');
  const statuses = (await page.locator('#orders-table tbody .pill').allTextContents()).sort();
  assert.deepEqual(statuses, ['Paid', 'Paid', 'Pending payment', 'Pending payment']);
  await shot(page, 'admin-orders.png');

  // ---- the reconcile report balances ----
  await page.getByRole('link', { name: 'Activities' }).click();
  const again = page.locator(`#activities-table tbody tr[data-id="${activityId}"]`);
  await again.waitFor({ timeout: 5000 });
  await waitText(page, `#activities-table tbody tr[data-id="${activityId}"] .pill`, 'Open');
  await again.getByRole('button', { name: `Reconcile activity ${activityId}` }).click();
  await waitText(page, '#activity-action-msg', `Activity ${activityId} is balanced`);
  await waitExact(page, '#reconcile-report [data-field="initial"]', '5');
  await waitExact(page, '#reconcile-report [data-field="redis_stock"]', '1');
  await waitExact(page, '#reconcile-report [data-field="orders_pending_payment"]', '2');
  await waitExact(page, '#reconcile-report [data-field="orders_paid"]', '2');
  await waitExact(page, '#reconcile-report [data-field="outbox_pending"]', '0');
  await waitExact(page, '#reconcile-report [data-field="balanced"]', 'Yes');
  await shot(page, 'admin-reconcile.png');

  assert.deepEqual(problems, [], 'the console loaded and ran cleanly');
  await context.close();
});
