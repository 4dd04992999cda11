// End-to-end test of the published sale page in a real (headless) Chromium against a running
// local runner: an admin creates, warms and publishes a one-item sale; Alice watches the
// countdown, buys, waits for her order and pays; Bob then finds it sold out.
// Run by scripts/e2e.sh, which starts the runner and provides BASE_URL (the API), PAGES_URL (the
// origin the published pages are served from: the runner's /p/ proxy to the S3 bucket, another
// origin than the API's, as CloudFront is in AWS), PAGES_S3_URL (the bucket's p/ prefix on
// LocalStack), ADMIN_TOKEN, USER_TOKEN and USER2_TOKEN. Screenshots of each step go to
// e2e/screenshots/.
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
const PAGES_URL = (process.env.PAGES_URL || BASE_URL).replace(/\/$/, '');
const PAGES_S3_URL = process.env.PAGES_S3_URL?.replace(/\/$/, '');
const ADMIN_TOKEN = env('ADMIN_TOKEN');
const USER_TOKEN = env('USER_TOKEN');
const USER2_TOKEN = env('USER2_TOKEN');
// How far ahead the sale starts: long enough to see the countdown, short enough to wait for.
const START_DELAY_MS = Number(process.env.START_DELAY_SECS || 6) * 1000;

const SHOTS = fileURLToPath(new URL('./screenshots/', import.meta.url));

let browser;
let pageUrl; // the published page, without a token
let aliceDone = false;

async function api(method, path, expectedStatus, body) {
  const res = await fetch(BASE_URL + path, {
    method,
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  assert.equal(res.status, expectedStatus, `${method} ${path} answered ${res.status}: ${text}`);
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    return text;
  }
}

// Waits until `selector` is visible and its text matches `pattern`; fails saying what it showed.
async function waitText(page, selector, pattern, timeout = 10_000) {
  try {
    await page.locator(selector, { hasText: pattern }).waitFor({ state: 'visible', timeout });
  } catch {
    const shown = await page.locator(selector).textContent({ timeout: 1000 }).catch(() => '(missing)');
    assert.fail(`${selector} did not show ${pattern} within ${timeout} ms; it shows ${JSON.stringify(shown)}`);
  }
}

async function shot(page, name) {
  await page.screenshot({ path: `${SHOTS}${name}`, fullPage: true });
}

// Fails the test on a script error, a failed request, an error answer for a static file, or any
// request to neither the pages' origin nor the API's (the page must fetch nothing from elsewhere).
function watch(page) {
  const problems = [];
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  // Chromium logs every 4xx answer to fetch() as "Failed to load resource"; those are expected
  // (a 404 while the order is being written, a 409 when sold out), and static files are checked below.
  page.on('console', (msg) => {
    if (msg.type() === 'error' && !msg.text().startsWith('Failed to load resource')) {
      problems.push(`console error: ${msg.text()}`);
    }
  });
  page.on('request', (req) => {
    const url = req.url();
    const ours = [`${BASE_URL}/`, `${PAGES_URL}/`, 'data:'].some((prefix) => url.startsWith(prefix));
    if (!ours) problems.push(`request off origin: ${url}`);
  });
  page.on('response', (res) => {
    const url = new URL(res.url());
    if (res.status() >= 400 && (url.pathname.startsWith('/static/') || url.pathname.startsWith('/p/'))) {
      problems.push(`${res.status()} for ${url.pathname}`);
    }
  });
  return problems;
}

async function openPage(token) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 800 }, locale: 'en-US' });
  const page = await context.newPage();
  const problems = watch(page);
  const res = await page.goto(`${pageUrl}?token=${encodeURIComponent(token)}`);
  assert.equal(res.status(), 200, `GET ${pageUrl} answered ${res.status()}`);
  return { context, page, problems };
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

test('a buyer watches the countdown, buys the last item and pays for it', { timeout: 120_000 }, async () => {
  const product = await api('POST', '/admin/products', 201, {
    name: 'Last-one Espresso Grinder',
    description: 'Conical burrs, 40 settings. One unit only at this price.',
    price_cents: 1999,
    image_url: '',
  });
  assert.ok(product.id, `product has an id: ${JSON.stringify(product)}`);

  // Whole seconds, so the page shows the same instant the admin chose.
  const startsAt = new Date(Math.ceil((Date.now() + START_DELAY_MS) / 1000) * 1000);
  const endsAt = new Date(startsAt.getTime() + 3600_000);
  const activity = await api('POST', '/admin/activities', 201, {
    product_id: product.id,
    stock: 1,
    starts_at: startsAt.toISOString().replace('.000Z', 'Z'),
    ends_at: endsAt.toISOString().replace('.000Z', 'Z'),
    rate_limit_per_sec: 1000,
    burst: 1000,
    per_user_per_min: 20,
  });
  assert.ok(activity.id, `activity has an id: ${JSON.stringify(activity)}`);

  await api('POST', `/admin/activities/${activity.id}/warmup`, 200);
  const published = await api('POST', `/admin/activities/${activity.id}/publish`, 200);
  assert.equal(published.url, `/p/${product.id}.html`);
  pageUrl = PAGES_URL + published.url;

  // The page served is the one in the bucket, and it calls the API at its own origin.
  const served = await fetch(pageUrl);
  assert.equal(served.status, 200, `GET ${pageUrl} answered ${served.status}`);
  assert.match(served.headers.get('content-type') || '', /^text\/html/);
  const html = await served.text();
  if (PAGES_S3_URL) {
    const stored = await fetch(`${PAGES_S3_URL}/${product.id}.html`);
    assert.equal(stored.status, 200, `the page is in the bucket (${PAGES_S3_URL})`);
    assert.equal(await stored.text(), html, 'the runner serves the page as stored in S3');
  }
  assert.ok(html.includes(`data-api-url="${BASE_URL}"`), 'the page names the API it calls');

  const { context, page, problems } = await openPage(USER_TOKEN);

  // The template was filled in.
  await waitText(page, 'h1', 'Last-one Espresso Grinder');
  await waitText(page, '#price', '19.99');
  assert.equal(await page.locator('#sale').getAttribute('data-product-id'), String(product.id));
  assert.equal(await page.locator('#sale').getAttribute('data-activity-id'), String(activity.id));
  if (PAGES_URL !== BASE_URL) {
    assert.notEqual(new URL(page.url()).origin, new URL(BASE_URL).origin, 'the page and the API are two origins');
  }
  assert.ok(!page.url().includes('token='), `the token is taken out of the address bar: ${page.url()}`);
  assert.ok(await page.locator('#token-form').isHidden(), 'no token prompt when the URL brought one');

  // Before the start: a countdown, and no buying.
  await waitText(page, '#countdown', /Starts in \d\d:\d\d:\d\d/);
  await waitText(page, '#state', 'Upcoming');
  assert.ok(await page.locator('#buy').isDisabled(), 'buy is disabled before the sale opens');
  await shot(page, '1-countdown.png');

  // The sale opens on its own.
  const untilOpen = Math.max(0, startsAt.getTime() - Date.now()) + 15_000;
  await waitText(page, '#state', 'Open', untilOpen);
  await waitText(page, '#stock', '1 left');
  await page.locator('#buy:enabled').waitFor({ timeout: 5000 });
  await shot(page, '2-open.png');

  // Buy, and lose the answer on its way back: the server sold the unit, the page never heard.
  // The page asks again; the repeated buy answers 409 already_bought with the receipt, and the
  // page follows that order (a lost 202 is recoverable).
  let buys = 0;
  await page.route('**/buy', async (route) => {
    buys += 1;
    if (buys === 1) {
      await route.fetch();
      await route.abort('connectionreset');
    } else {
      await route.continue();
    }
  });
  await page.locator('#buy').click();
  await waitText(page, '#outcome', /Receipt \d+-\d+-/, 15_000);
  const outcome = await page.locator('#outcome').textContent();
  assert.match(outcome, new RegExp(`Receipt ${activity.id}-${product.id}-`), `outcome names the receipt: ${outcome}`);
  assert.equal(buys, 2, 'the lost buy was asked again, once');
  assert.ok(await page.locator('#buy').isDisabled(), 'buy is disabled after a successful buy');
  await shot(page, '3-queued.png');

  // The order is written and awaits payment.
  await waitText(page, '#order-status', 'Pending payment', 30_000);
  await page.locator('#pay').waitFor({ state: 'visible', timeout: 5000 });

  // A reload resumes the order view (the receipt is kept in localStorage).
  await page.reload();
  await waitText(page, '#order-status', 'Pending payment', 15_000);
  await page.locator('#pay').waitFor({ state: 'visible', timeout: 5000 });
  assert.ok(await page.locator('#buy').isDisabled(), 'buy stays disabled after a reload');
  await shot(page, '4-pending-payment.png');

  await page.locator('#pay').click();
  await waitText(page, '#order-status', /^Paid$/);
  assert.ok(await page.locator('#pay').isHidden(), 'the pay button goes away once paid');
  await shot(page, '5-paid.png');

  assert.deepEqual(problems, [], 'the page loaded and ran cleanly');
  await context.close();
  aliceDone = true;
});

test('a second buyer finds the sale sold out', { timeout: 60_000 }, async (t) => {
  if (!aliceDone) {
    t.skip('needs the sale the first test sold out');
    return;
  }
  const { context, page, problems } = await openPage(USER2_TOKEN);

  await waitText(page, '#state', 'Open');
  await waitText(page, '#stock', 'Sold out');
  const buy = page.locator('#buy');
  if (await buy.isEnabled()) {
    await buy.click();
    await waitText(page, '#outcome', 'Sold out');
  } else {
    assert.ok(await buy.isDisabled(), 'buy is disabled when sold out');
  }
  await shot(page, '6-sold-out.png');

  assert.deepEqual(problems, [], 'the page loaded and ran cleanly');
  await context.close();
});
