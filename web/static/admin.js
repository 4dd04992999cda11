// The admin console in the browser: products, activities (create, edit limits, warm up, publish,
// reconcile), orders, and a live view of one activity. A plain JavaScript module with no build
// step and no dependencies. It talks to one API (DESIGN.md "HTTP API"): this page's own origin
// by default, another one when `?api=<base URL>` or the API field names it (in AWS the page may
// be hosted apart from the API). The admin token is kept in sessionStorage, for this tab only.

const TOKEN_KEY = 'flash.admin.token';
const API_KEY = 'flash.admin.api';
const LIVE_EVERY_MS = 2000; // the live view's refresh
const LIVE_POINTS = 60; // readings the sales chart keeps
const REQUEST_TIMEOUT_MS = 15000;
const FIND_MAX_PAGES = 50; // pages of 100 activities scanned to find one by id

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------- storage

function session(fn) {
  try {
    return fn(window.sessionStorage);
  } catch {
    return null; // storage disabled: settings live as long as the page
  }
}

const state = {
  token: null,
  apiBase: '', // '' = this page's origin
  view: null,
  activities: new Map(), // id -> activity, from every list and write seen
};

// ---------------------------------------------------------------- formatting

const pad = (n, width = 2) => String(n).padStart(width, '0');

function money(cents) {
  if (!Number.isFinite(cents)) return '—';
  const sign = cents < 0 ? '-' : '';
  const abs = Math.abs(cents);
  return `${sign}$${Math.floor(abs / 100)}.${pad(abs % 100)}`;
}

// Dollars as typed ("19.99", "20", "0.5") to integer cents, without floating point; null if not money.
function dollarsToCents(text) {
  const m = /^\s*(\d{1,9})(?:[.,](\d{1,2}))?\s*$/.exec(text);
  if (!m) return null;
  return Number(m[1]) * 100 + Number((m[2] || '0').padEnd(2, '0'));
}

const WHEN = {
  year: 'numeric',
  month: 'short',
  day: 'numeric',
  hour: '2-digit',
  minute: '2-digit',
  second: '2-digit',
  timeZoneName: 'short',
};

function when(value) {
  if (value === null || value === undefined || value === '') return '—';
  const ms = typeof value === 'number' ? value : Date.parse(value);
  return Number.isFinite(ms) ? new Date(ms).toLocaleString(undefined, WHEN) : String(value);
}

function duration(ms) {
  if (!Number.isFinite(ms)) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  const mins = Math.floor(ms / 60000);
  return `${mins} min ${Math.round((ms % 60000) / 1000)} s`;
}

// A Date as RFC 3339 in this browser's time zone, with its offset: 2026-11-23T22:30:05+01:00.
function rfc3339Local(d) {
  const off = -d.getTimezoneOffset();
  const sign = off >= 0 ? '+' : '-';
  const abs = Math.abs(off);
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}` +
    `T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}` +
    `${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`
  );
}

// A datetime-local value ("YYYY-MM-DDTHH:MM" or with ":SS") as RFC 3339 with offset; null if empty or malformed.
function localInputToRfc3339(value) {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?$/.exec(value || '');
  if (!m) return null;
  const d = new Date(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +(m[6] || 0));
  return Number.isFinite(d.getTime()) ? rfc3339Local(d) : null;
}

// A Date as a datetime-local value (local time, whole seconds).
function toLocalInput(d) {
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}` +
    `T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`
  );
}

function say(el, text, kind = '') {
  el.textContent = text;
  el.dataset.kind = kind; // '', 'ok', 'error', 'busy'
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k.startsWith('data-')) node.setAttribute(k, v);
    else if (k in node && typeof v !== 'string') node[k] = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

// ---------------------------------------------------------------- API base and token

function normalizeBase(raw) {
  const text = (raw || '').trim();
  if (!text) return '';
  let url;
  try {
    url = new URL(text);
  } catch {
    return null;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return null;
  return (url.origin + url.pathname).replace(/\/+$/, '');
}

function apiRoot() {
  if (state.apiBase) return state.apiBase;
  const { protocol, origin } = window.location;
  return protocol === 'http:' || protocol === 'https:' ? origin : '';
}

const crossOrigin = () => Boolean(state.apiBase) && new URL(state.apiBase).origin !== window.location.origin;

// The JWT's claims, for display only (the API is what checks the token); null if it is not a JWT.
function claimsOf(token) {
  const part = (token || '').split('.')[1];
  if (!part) return null;
  try {
    const b64 = part.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(part.length / 4) * 4, '=');
    const json = decodeURIComponent(
      Array.from(atob(b64), (c) => `%${c.charCodeAt(0).toString(16).padStart(2, '0')}`).join(''),
    );
    const claims = JSON.parse(json);
    return claims && typeof claims === 'object' ? claims : null;
  } catch {
    return null;
  }
}

function describeToken() {
  const who = $('who');
  $('forget-token').hidden = !state.token;
  $('token-input').classList.remove('attention');
  if (!state.token) {
    say(who, 'No token yet: paste the admin token to start.');
    return;
  }
  const claims = claimsOf(state.token);
  if (!claims) {
    say(who, 'Token set (it does not look like a JWT; the API decides).');
    return;
  }
  const scopes = String(claims.scope ?? claims.scp ?? '')
    .replace(/[[\]]/g, ' ')
    .split(/[\s,]+/)
    .filter(Boolean);
  const parts = [`Token for ${claims.sub ?? 'an unnamed subject'}`];
  parts.push(scopes.length ? `scope ${scopes.join(' ')}` : 'no scope');
  let kind = 'ok';
  if (Number.isFinite(claims.exp)) {
    const exp = claims.exp * 1000;
    parts.push(exp < Date.now() ? `expired ${when(exp)}` : `expires ${when(exp)}`);
    if (exp < Date.now()) kind = 'error';
  }
  if (!scopes.some((s) => s === 'admin' || s.endsWith('/admin'))) kind = 'error';
  say(who, `${parts.join(' · ')}.`, kind);
}

// The API refused the token: say so where the token is entered.
function tokenRefused(message) {
  say($('who'), `The API refused this token: ${message}`, 'error');
  $('token-input').classList.add('attention');
}

// ---------------------------------------------------------------- requests

// An admin API call that did not succeed; `message` is a sentence for a person.
class ApiFailure extends Error {
  constructor(message, { status = 0, code = '', gateway = false, brief = message } = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.gateway = gateway;
    this.brief = brief; // the message without the general hint
  }
}

const GATEWAY_HINTS = {
  401: 'The admin token is missing, expired or not valid: paste a new one above.',
  403: 'This token does not carry the admin scope.',
  404: 'The API has no such route: check the API base URL (or the server is older than this console).',
  413: 'The request is too large for the API.',
  429: 'The API is throttling requests: wait a moment and try again.',
};

// Turns an error answer into a sentence. Two shapes (DESIGN.md): the functions'
// {"error":{"code","message"}} and API Gateway's own {"message":"Unauthorized"} and the like.
function failureOf(res, body, text) {
  const status = res.status;
  const retry = res.headers.get('retry-after');
  const retryText = retry ? ` Retry after ${retry} s.` : '';
  const err = body && typeof body === 'object' ? body.error : null;
  if (err && typeof err === 'object' && typeof err.message === 'string') {
    const code = typeof err.code === 'string' ? err.code : '';
    const hint = status === 401 || status === 403 ? ` ${GATEWAY_HINTS[status]}` : '';
    const brief = `${err.message} (HTTP ${status}${code ? `, ${code}` : ''}).`;
    return new ApiFailure(`${brief}${hint}${retryText}`, { status, code, brief });
  }
  if (body && typeof body === 'object' && typeof body.message === 'string') {
    const hint = GATEWAY_HINTS[status] ? ` ${GATEWAY_HINTS[status]}` : '';
    const brief = `${body.message} (HTTP ${status} from the API gateway).`;
    return new ApiFailure(`${brief}${hint}${retryText}`, { status, code: body.message, gateway: true, brief });
  }
  const snippet = (text || '').replace(/<[^>]*>/g, ' ').replace(/\s+/g, ' ').trim().slice(0, 160);
  const reason = res.statusText ? ` ${res.statusText}` : '';
  const message = snippet
    ? `The API answered HTTP ${status}${reason}: ${snippet}.${retryText}`
    : `The API answered HTTP ${status}${reason} with no explanation.${GATEWAY_HINTS[status] ? ` ${GATEWAY_HINTS[status]}` : ''}${retryText}`;
  return new ApiFailure(message, { status });
}

function unreachable(timedOut) {
  const where = apiRoot() || 'the API';
  if (timedOut) return new ApiFailure(`The API at ${where} did not answer within ${REQUEST_TIMEOUT_MS / 1000} s.`);
  const cors = crossOrigin() ? ' The API is on another origin: it must allow this page (CORS).' : '';
  return new ApiFailure(`Cannot reach the API at ${where}: check the address and the connection.${cors}`);
}

// One call to the API; resolves with the parsed body of a 2xx, rejects with an ApiFailure.
async function request(method, path, { body, auth = true, headers = {} } = {}) {
  const root = apiRoot();
  if (!root) throw new ApiFailure('Enter the API base URL above (this page is not served over HTTP).');
  if (auth && !state.token) throw new ApiFailure('Paste the admin token above first.');
  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, REQUEST_TIMEOUT_MS);
  let res;
  let text = '';
  try {
    res = await fetch(root + path, {
      method,
      cache: 'no-store',
      signal: controller.signal,
      headers: {
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
        ...(auth ? { authorization: `Bearer ${state.token}` } : {}),
        ...headers,
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    text = await res.text();
  } catch {
    throw unreachable(timedOut);
  } finally {
    clearTimeout(timer);
  }
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  if (res.ok) return parsed;
  const failure = failureOf(res, parsed, text);
  if (auth && failure.status === 401) tokenRefused(failure.message);
  throw failure;
}

const api = {
  get: (path, opts) => request('GET', path, opts),
  post: (path, body, opts = {}) => request('POST', path, { ...opts, body }),
  patch: (path, body, opts = {}) => request('PATCH', path, { ...opts, body }),
};

const query = (params) => {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== '' && v !== null && v !== undefined) q.set(k, String(v));
  return q.toString();
};

// An Idempotency-Key per form submission: a resubmit of the same form (a lost answer) reuses it;
// any edit of the form, or a success, starts a new one.
function randomKey() {
  if (window.crypto && typeof window.crypto.randomUUID === 'function') return window.crypto.randomUUID();
  const bytes = new Uint8Array(16);
  window.crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => pad(b.toString(16))).join('');
}

function formKey(form) {
  if (!form.dataset.key) form.dataset.key = randomKey();
  return form.dataset.key;
}

// ---------------------------------------------------------------- paginated lists

function makeList({ noun, path, table, pager, per, msg, columns, row, params = () => ({}) }) {
  const tbody = table.querySelector('tbody');
  const st = { page: 1, total: 0, items: [], seq: 0 };
  const perPage = () => Number(per.value) || 10;
  const lastPage = () => Math.max(1, Math.ceil(st.total / perPage()));

  function renderPager() {
    const last = lastPage();
    pager.querySelector('.pager-text').textContent =
      `Page ${st.page} of ${last} · ${st.total} ${st.total === 1 ? noun.one : noun.many}`;
    pager.querySelector('[data-go="first"]').disabled = st.page <= 1;
    pager.querySelector('[data-go="prev"]').disabled = st.page <= 1;
    pager.querySelector('[data-go="next"]').disabled = st.page >= last;
    pager.querySelector('[data-go="last"]').disabled = st.page >= last;
  }

  function render() {
    tbody.replaceChildren();
    if (!st.items.length) {
      tbody.append(el('tr', {}, el('td', { colSpan: columns, class: 'empty', text: `No ${noun.many} here.` })));
    }
    for (const item of st.items) tbody.append(row(item));
    renderPager();
  }

  async function load(page = st.page) {
    const seq = ++st.seq;
    say(msg, `Loading ${noun.many}…`, 'busy');
    try {
      const body = await api.get(`${path}?${query({ ...params(), page: Math.max(1, page), per: perPage() })}`);
      if (seq !== st.seq) return;
      st.items = Array.isArray(body && body.items) ? body.items : [];
      st.page = Number(body && body.page) || page;
      st.total = Number(body && body.total) || 0;
      render();
      say(msg, '');
    } catch (e) {
      if (seq !== st.seq) return;
      say(msg, `Could not load the ${noun.many}: ${e.message}`, 'error');
    }
  }

  pager.addEventListener('click', (event) => {
    const go = event.target.closest('[data-go]');
    if (!go || go.disabled) return;
    const to = { first: 1, prev: st.page - 1, next: st.page + 1, last: lastPage() }[go.dataset.go];
    load(Math.max(1, to));
  });
  per.addEventListener('change', () => load(1));
  renderPager();
  return { load, st, lastPage, render, perPage };
}

// ---------------------------------------------------------------- products

const products = makeList({
  noun: { one: 'product', many: 'products' },
  path: '/admin/products',
  table: $('products-table'),
  pager: $('products-pager'),
  per: $('products-per'),
  msg: $('products-msg'),
  columns: 6,
  row: (p) => {
    const desc = String(p.description || '');
    const image = p.image_url
      ? el('a', { href: p.image_url, target: '_blank', rel: 'noopener noreferrer', text: 'image' })
      : '—';
    const start = el('button', {
      type: 'button',
      class: 'small',
      text: 'New activity',
      'aria-label': `New activity for product ${p.id}`,
    });
    start.addEventListener('click', () => {
      $('activity-product').value = p.id;
      window.location.hash = '#activities';
      setTimeout(() => $('activity-stock').focus(), 0);
    });
    return el(
      'tr',
      { 'data-id': p.id },
      el('td', { text: p.id }),
      el('td', { text: p.name }),
      el('td', { class: 'num', text: money(p.price_cents) }),
      el('td', { class: 'clip', title: desc, text: desc.length > 90 ? `${desc.slice(0, 90)}…` : desc }),
      el('td', {}, image),
      el('td', { class: 'row-actions' }, start),
    );
  },
});

$('products-refresh').addEventListener('click', () => products.load());

$('product-form').addEventListener('input', (e) => delete e.currentTarget.dataset.key);
$('product-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  const msg = $('product-form-msg');
  const cents = dollarsToCents($('product-price').value);
  if (cents === null) {
    say(msg, 'The price must be an amount in dollars with at most two decimals, for example 19.99.', 'error');
    $('product-price').focus();
    return;
  }
  const body = {
    name: $('product-name').value,
    description: $('product-description').value,
    price_cents: cents,
    image_url: $('product-image').value.trim(),
  };
  const button = $('product-create');
  button.disabled = true;
  say(msg, 'Creating the product…', 'busy');
  try {
    const made = await api.post('/admin/products', body, { headers: { 'idempotency-key': formKey(form) } });
    delete form.dataset.key;
    form.reset();
    say(msg, `Created product ${made.id}: ${made.name} (${money(made.price_cents)}).`, 'ok');
    $('activity-product').value = made.id;
    await products.load(Math.ceil((products.st.total + 1) / products.perPage()));
  } catch (e) {
    say(msg, `Could not create the product: ${e.message}`, 'error');
  } finally {
    button.disabled = false;
  }
});

// ---------------------------------------------------------------- activities

function saleStateAt(a, now = Date.now()) {
  const s = Date.parse(a.starts_at);
  const e = Date.parse(a.ends_at);
  if (!Number.isFinite(s) || !Number.isFinite(e)) return '';
  return now < s ? 'upcoming' : now < e ? 'open' : 'ended';
}

const STATE_WORDS = { upcoming: 'Upcoming', open: 'Open', ended: 'Ended' };
const stockWords = (stock) => (stock === -1 ? 'unlimited' : String(stock));
const limitsText = (a) =>
  `${a.rate_limit_per_sec} / ${a.burst} / ${a.per_user_per_min}${a.buckets > 1 ? ` · ${a.buckets} buckets` : ''}`;

function remember(a) {
  if (a && Number.isFinite(Number(a.id))) state.activities.set(Number(a.id), a);
  return a;
}

const activities = makeList({
  noun: { one: 'activity', many: 'activities' },
  path: '/admin/activities',
  table: $('activities-table'),
  pager: $('activities-pager'),
  per: $('activities-per'),
  msg: $('activities-msg'),
  columns: 7,
  row: (a) => {
    remember(a);
    const sale = saleStateAt(a);
    const action = (label, what, fn) => {
      const b = el('button', {
        type: 'button',
        class: 'small secondary',
        text: label,
        'data-action': what,
        'aria-label': `${label} activity ${a.id}`,
      });
      b.addEventListener('click', () => fn(a, b));
      return b;
    };
    return el(
      'tr',
      { 'data-id': a.id },
      el('td', { text: a.id }),
      el('td', { text: a.product_id }),
      el('td', { class: 'num', text: stockWords(a.stock) }),
      el('td', { class: 'window' }, el('span', { text: when(a.starts_at) }), el('span', { text: `– ${when(a.ends_at)}` })),
      el('td', {}, el('span', { class: 'pill', 'data-state': sale, text: STATE_WORDS[sale] || '—' })),
      el('td', { class: 'limits', text: limitsText(a) }),
      el(
        'td',
        { class: 'row-actions' },
        action('Edit limits', 'limits', openLimits),
        action('Warm up', 'warmup', warmUp),
        action('Publish', 'publish', publish),
        action('Reconcile', 'reconcile', showReconcile),
        action('Live', 'live', (x) => {
          window.location.hash = `#live/${x.id}`;
        }),
      ),
    );
  },
});

$('activities-refresh').addEventListener('click', () => activities.load());

function updateSentPreview(input, output) {
  const sent = localInputToRfc3339(input.value);
  output.textContent = sent ? `Sent as ${sent}` : '';
}

for (const [input, output] of [
  ['activity-starts', 'activity-starts-sent'],
  ['activity-ends', 'activity-ends-sent'],
]) {
  $(input).addEventListener('input', () => updateSentPreview($(input), $(output)));
}

function defaultWindow() {
  const start = new Date(Date.now() + 10 * 60000);
  start.setSeconds(0, 0);
  const end = new Date(start.getTime() + 3600000);
  $('activity-starts').value = toLocalInput(start);
  $('activity-ends').value = toLocalInput(end);
  updateSentPreview($('activity-starts'), $('activity-starts-sent'));
  updateSentPreview($('activity-ends'), $('activity-ends-sent'));
}

// A whole number typed in `input`, or null (after saying what is wrong in `msg`).
function wholeNumber(input, label, msg) {
  const text = input.value.trim();
  const n = Number(text);
  if (text === '' || !Number.isInteger(n)) {
    say(msg, `${label} must be a whole number.`, 'error');
    input.focus();
    return null;
  }
  return n;
}

$('activity-form').addEventListener('input', (e) => delete e.currentTarget.dataset.key);
$('activity-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  const msg = $('activity-form-msg');
  const fields = [
    ['product_id', 'activity-product', 'The product id'],
    ['stock', 'activity-stock', 'The stock'],
    ['rate_limit_per_sec', 'activity-rate', 'The rate limit'],
    ['burst', 'activity-burst', 'The burst'],
    ['per_user_per_min', 'activity-per-user', 'The per-user limit'],
    ['buckets', 'activity-buckets', 'The number of stock buckets'],
  ];
  const body = {};
  for (const [key, id, label] of fields) {
    const n = wholeNumber($(id), label, msg);
    if (n === null) return;
    body[key] = n;
  }
  // Only the format is checked here; whether the window makes sense is the API's to say.
  for (const [key, id, label] of [
    ['starts_at', 'activity-starts', 'when the activity starts'],
    ['ends_at', 'activity-ends', 'when the activity ends'],
  ]) {
    const sent = localInputToRfc3339($(id).value);
    if (!sent) {
      say(msg, `Enter ${label} (date and time).`, 'error');
      $(id).focus();
      return;
    }
    body[key] = sent;
  }
  const ordered = {
    product_id: body.product_id,
    stock: body.stock,
    starts_at: body.starts_at,
    ends_at: body.ends_at,
    rate_limit_per_sec: body.rate_limit_per_sec,
    burst: body.burst,
    per_user_per_min: body.per_user_per_min,
    buckets: body.buckets,
  };
  const button = $('activity-create');
  button.disabled = true;
  say(msg, 'Creating the activity…', 'busy');
  try {
    const made = remember(
      await api.post('/admin/activities', ordered, { headers: { 'idempotency-key': formKey(form) } }),
    );
    delete form.dataset.key;
    say(
      msg,
      `Created activity ${made.id} for product ${made.product_id}: stock ${stockWords(made.stock)}, ` +
        `${when(made.starts_at)} – ${when(made.ends_at)}. Warm it up and publish it below.`,
      'ok',
    );
    $('live-activity').value = made.id;
    $('orders-activity').value = made.id;
    await activities.load(Math.ceil((activities.st.total + 1) / activities.perPage()));
  } catch (e) {
    say(msg, `Could not create the activity: ${e.message}`, 'error');
  } finally {
    button.disabled = false;
  }
});

// The result card of an action on one activity.
function resultCard(a) {
  const card = $('activity-result');
  card.hidden = false;
  card.dataset.activityId = a.id;
  $('activity-result-title').textContent = `Activity ${a.id} (product ${a.product_id})`;
  return card;
}

async function busy(button, fn) {
  button.disabled = true;
  try {
    return await fn();
  } finally {
    button.disabled = false;
  }
}

let limitsFor = null; // the activity whose limits the form edits

function openLimits(a) {
  limitsFor = a;
  const form = $('limits-form');
  form.hidden = false;
  $('limits-title').textContent = `Edit limits of activity ${a.id}`;
  $('limits-rate').value = a.rate_limit_per_sec;
  $('limits-burst').value = a.burst;
  $('limits-per-user').value = a.per_user_per_min;
  say($('limits-msg'), 'Only the values you change are sent.');
  form.scrollIntoView({ block: 'nearest' });
  $('limits-rate').focus();
}

$('limits-cancel').addEventListener('click', () => {
  $('limits-form').hidden = true;
  limitsFor = null;
});

$('limits-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const msg = $('limits-msg');
  const a = limitsFor;
  if (!a) return;
  const changes = {};
  for (const [key, id, label] of [
    ['rate_limit_per_sec', 'limits-rate', 'The rate limit'],
    ['burst', 'limits-burst', 'The burst'],
    ['per_user_per_min', 'limits-per-user', 'The per-user limit'],
  ]) {
    const n = wholeNumber($(id), label, msg);
    if (n === null) return;
    if (n !== a[key]) changes[key] = n;
  }
  if (!Object.keys(changes).length) {
    say(msg, 'Nothing changed.');
    return;
  }
  say(msg, 'Saving the limits…', 'busy');
  await busy($('limits-save'), async () => {
    try {
      const saved = await api.patch(`/admin/activities/${a.id}`, changes);
      const now = remember(saved && saved.id ? saved : { ...a, ...changes });
      limitsFor = now;
      say(
        msg,
        `Saved activity ${now.id}: ${now.rate_limit_per_sec} per second, burst ${now.burst}, ` +
          `${now.per_user_per_min} per user per minute.`,
        'ok',
      );
      await activities.load();
    } catch (e) {
      // No such route: a server older than this console (editing limits came later).
      const old = (e.status === 404 || e.status === 405) && e.code !== 'activity_not_found';
      const text = old ? `${e.brief} This API does not offer PATCH /admin/activities/{id} yet.` : e.message;
      say(msg, `Could not save the limits: ${text}`, 'error');
    }
  });
});

const WARM_WORDS = {
  written: 'loaded into Redis',
  refreshed: 'refreshed in Redis',
  deferred: 'deferred: another activity of this product is open or starts first; this one loads once that has ended',
};

async function warmUp(a, button) {
  resultCard(a);
  const msg = $('activity-action-msg');
  say(msg, `Warming up activity ${a.id}…`, 'busy');
  await busy(button, async () => {
    try {
      const w = await api.post(`/admin/activities/${a.id}/warmup`);
      const live = w.live_activity_id === a.id ? '' : ` (activity ${w.live_activity_id})`;
      say(
        msg,
        `Warmed up activity ${a.id}: ${WARM_WORDS[w.result] || w.result}. Product ${w.product_id} now reads${live} ` +
          `stock ${stockWords(w.stock)}, ${STATE_WORDS[w.state] || w.state}.`,
        'ok',
      );
    } catch (e) {
      say(msg, `Could not warm up activity ${a.id}: ${e.message}`, 'error');
    }
  });
}

async function publish(a, button) {
  resultCard(a);
  const msg = $('activity-action-msg');
  $('publish-result').hidden = true;
  say(msg, `Publishing the page of activity ${a.id}…`, 'busy');
  await busy(button, async () => {
    try {
      const p = await api.post(`/admin/activities/${a.id}/publish`);
      // The page is published beside the API that serves it (its script calls that origin).
      const href = new URL(p.url, `${apiRoot()}/`).href;
      const link = $('publish-link');
      link.href = href;
      link.textContent = href;
      $('publish-result').hidden = false;
      say(msg, `Published the sale page of activity ${p.activity_id}.`, 'ok');
    } catch (e) {
      say(msg, `Could not publish activity ${a.id}: ${e.message}`, 'error');
    }
  });
}

const REPORT_FIELDS = [
  ['initial', 'Initial stock', (v) => stockWords(v)],
  ['redis_stock', 'Stock in Redis', (v) => (v === null ? 'not loaded (warm it up)' : stockWords(v))],
  ['orders_pending_payment', 'Orders pending payment', String],
  ['orders_paid', 'Orders paid', String],
  ['orders_cancelled', 'Orders cancelled', String],
  ['outbox_pending', 'Outbox pending', String],
  ['dead_lettered', 'Dead-lettered (failed)', String],
  ['outbox_oldest_age_ms', 'Pipeline lag (oldest outbox entry)', (v) => (v === null ? 'none pending' : duration(v))],
  ['balanced', 'Balanced', (v) => (v ? 'Yes' : 'No')],
];

function renderReport(dl, r) {
  dl.replaceChildren();
  for (const [key, label, fmt] of REPORT_FIELDS) {
    if (!(key in r)) continue; // outbox_oldest_age_ms: only servers that report it
    const value = r[key];
    const dd = el('dd', { 'data-field': key, text: fmt(value) });
    if (key === 'balanced') dd.dataset.kind = value ? 'ok' : 'error';
    dl.append(el('div', { class: 'report-row' }, el('dt', { text: label }), dd));
  }
  // A split sale: one row per stock bucket (its stock, units on their way out, its outbox).
  if (Array.isArray(r.buckets) && r.buckets.length > 1) {
    for (const b of r.buckets) {
      const text =
        `stock ${b.stock === null ? 'not loaded' : stockWords(b.stock)}, moving out ${b.moving_out}, ` +
        `outbox ${b.outbox_pending}`;
      dl.append(
        el(
          'div',
          { class: 'report-row' },
          el('dt', { text: `Bucket ${b.bucket}` }),
          el('dd', { 'data-field': `bucket-${b.bucket}`, text }),
        ),
      );
    }
  }
}

async function showReconcile(a, button) {
  resultCard(a);
  const msg = $('activity-action-msg');
  say(msg, `Reconciling activity ${a.id}…`, 'busy');
  await busy(button, async () => {
    try {
      const r = await api.get(`/admin/activities/${a.id}/reconcile`);
      renderReport($('reconcile-report'), r);
      $('reconcile-panel').hidden = false;
      say(
        msg,
        r.balanced
          ? `Activity ${a.id} is balanced: stock in Redis + open orders + outbox = initial stock.`
          : `Activity ${a.id} is not balanced (yet): see the report.`,
        r.balanced ? 'ok' : 'error',
      );
    } catch (e) {
      $('reconcile-panel').hidden = true;
      say(msg, `Could not reconcile activity ${a.id}: ${e.message}`, 'error');
    }
  });
}

// ---------------------------------------------------------------- orders

const ORDER_WORDS = {
  pending_payment: 'Pending payment',
  paid: 'Paid',
  cancelled: 'Cancelled',
  failed: 'Failed',
  processing: 'Processing',
};

const orders = makeList({
  noun: { one: 'order', many: 'orders' },
  path: '/admin/orders',
  table: $('orders-table'),
  pager: $('orders-pager'),
  per: $('orders-per'),
  msg: $('orders-msg'),
  columns: 10,
  params: () => ({ activity_id: $('orders-activity').value.trim(), status: $('orders-status').value }),
  row: (o) =>
    el(
      'tr',
      { 'data-id': o.id, 'data-receipt': o.receipt },
      el('td', { text: o.id }),
      el('td', { class: 'mono', text: o.receipt }),
      el('td', { text: o.activity_id }),
      el('td', { text: o.user_id }),
      el('td', {}, el('span', { class: 'pill', 'data-status': o.status, text: ORDER_WORDS[o.status] || o.status })),
      el('td', { class: 'num', text: money(o.price_cents) }),
      el('td', { text: when(o.created_at) }),
      el('td', { text: when(o.pay_by) }),
      el('td', { text: when(o.paid_at) }),
      el('td', { text: when(o.cancelled_at) }),
    ),
});

$('orders-filter').addEventListener('submit', (event) => {
  event.preventDefault();
  orders.load(1);
});

// ---------------------------------------------------------------- live view

let live = null; // the watched activity's state; null when not watching

// An activity by id: from what this page has seen, else by scanning the list from its end
// (ids ascend, so recent activities sit on the last pages).
async function findActivity(id) {
  if (state.activities.has(id)) return state.activities.get(id);
  const first = await api.get(`/admin/activities?${query({ page: 1, per: 100 })}`);
  (first.items || []).forEach(remember);
  if (state.activities.has(id)) return state.activities.get(id);
  const pages = Math.ceil((Number(first.total) || 0) / 100);
  for (let page = pages, n = 0; page > 1 && n < FIND_MAX_PAGES; page -= 1, n += 1) {
    const body = await api.get(`/admin/activities?${query({ page, per: 100 })}`);
    (body.items || []).forEach(remember);
    if (state.activities.has(id)) return state.activities.get(id);
  }
  return null;
}

function stopLive() {
  if (live) clearTimeout(live.timer);
  live = null;
  $('live-stop').hidden = true;
  $('live-watch').disabled = false;
}

async function startLive(id) {
  stopLive();
  const msg = $('live-msg');
  $('live-activity').value = id;
  if (!state.token) {
    say(msg, 'Paste the admin token above first.', 'error');
    return;
  }
  const me = { id, timer: 0, points: [], last: null, activity: null };
  live = me;
  $('live-stop').hidden = false;
  say(msg, `Looking up activity ${id}…`, 'busy');
  let a;
  try {
    a = await findActivity(id);
  } catch (e) {
    if (live === me) say(msg, `Could not look up activity ${id}: ${e.message}`, 'error');
    if (live === me) stopLive();
    return;
  }
  if (live !== me) return;
  if (!a) {
    say(msg, `There is no activity ${id}.`, 'error');
    stopLive();
    return;
  }
  me.activity = a;
  $('live-panel').hidden = false;
  $('live-heading').textContent =
    `Activity ${a.id} · product ${a.product_id} · stock ${stockWords(a.stock)} · ` +
    `${when(a.starts_at)} – ${when(a.ends_at)}`;
  for (const id2 of ['live-state', 'live-stock', 'live-sold', 'live-rate', 'live-outbox', 'live-lag', 'live-balanced',
    'live-pending', 'live-paid', 'live-cancelled', 'live-failed']) {
    $(id2).textContent = '…';
    delete $(id2).dataset.kind;
  }
  drawChart(me.points);
  say(msg, `Watching activity ${a.id}; refreshed every ${LIVE_EVERY_MS / 1000} s.`);
  refreshLive(me);
}

function stockTileText(s) {
  if (s.unlimited) return 'Unlimited';
  if (s.stock === 0) return 'Sold out';
  return `${s.stock} left`;
}

async function refreshLive(me) {
  if (live !== me) return;
  const a = me.activity;
  const [stock, report] = await Promise.allSettled([
    api.get(`/products/${a.product_id}/stock`, { auth: false }),
    api.get(`/admin/activities/${a.id}/reconcile`),
  ]);
  if (live !== me) return; // left the view meanwhile
  const problems = [];
  const at = Date.now();

  if (stock.status === 'fulfilled' && stock.value) {
    const s = stock.value;
    const other = s.activity_id && s.activity_id !== a.id ? ` (activity ${s.activity_id})` : '';
    $('live-state').textContent = `${STATE_WORDS[s.state] || s.state}${other}`;
    $('live-state').dataset.state = s.state || '';
    $('live-stock').textContent = stockTileText(s);
    $('live-stock').dataset.kind = !s.unlimited && s.stock === 0 ? 'error' : '';
  } else if (stock.status === 'rejected') {
    problems.push(`stock: ${stock.reason.message}`);
  }

  if (report.status === 'fulfilled' && report.value) {
    const r = report.value;
    const orderCount = r.orders_pending_payment + r.orders_paid + r.orders_cancelled + r.dead_lettered;
    // Sold = units taken from the stock (a cancelled order gives its unit back); with
    // unlimited stock there is no count down, so every purchase counts.
    const sold =
      r.initial >= 0 && Number.isFinite(r.redis_stock)
        ? r.initial - r.redis_stock
        : r.initial < 0
          ? orderCount + r.outbox_pending
          : null;
    $('live-sold').textContent = sold === null ? 'not loaded' : String(sold);
    $('live-pending').textContent = String(r.orders_pending_payment);
    $('live-paid').textContent = String(r.orders_paid);
    $('live-cancelled').textContent = String(r.orders_cancelled);
    $('live-failed').textContent = String(r.dead_lettered);
    $('live-outbox').textContent = String(r.outbox_pending);
    if ('outbox_oldest_age_ms' in r) {
      $('live-lag').textContent = r.outbox_oldest_age_ms === null ? 'none pending' : duration(r.outbox_oldest_age_ms);
    } else {
      $('live-lag').textContent = 'not reported';
    }
    $('live-balanced').textContent = r.balanced ? 'Yes' : 'No';
    $('live-balanced').dataset.kind = r.balanced ? 'ok' : 'error';

    if (sold !== null) {
      if (me.last) {
        const secs = (at - me.last.at) / 1000;
        const rate = secs > 0 ? Math.max(0, sold - me.last.sold) / secs : 0;
        me.points.push({ at, rate });
        if (me.points.length > LIVE_POINTS) me.points.splice(0, me.points.length - LIVE_POINTS);
        $('live-rate').textContent = `${rate.toFixed(1)} /s`;
      }
      me.last = { at, sold };
    }
    drawChart(me.points);
  } else if (report.status === 'rejected') {
    problems.push(`reconcile: ${report.reason.message}`);
  }

  $('live-updated').textContent = `· updated ${new Date(at).toLocaleTimeString()}`;
  if (problems.length) say($('live-msg'), `Refresh failed (retrying): ${problems.join(' ')}`, 'error');
  else say($('live-msg'), `Watching activity ${a.id}; refreshed every ${LIVE_EVERY_MS / 1000} s.`);
  if (document.visibilityState !== 'hidden') me.timer = setTimeout(() => refreshLive(me), LIVE_EVERY_MS);
}

// The sales-per-second chart: an inline SVG, newest reading at the right edge.
const SVG = 'http://www.w3.org/2000/svg';
function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

function niceCeil(x) {
  if (x <= 1) return 1;
  const mag = 10 ** Math.floor(Math.log10(x));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * mag >= x) return step * mag;
  return 10 * mag;
}

function drawChart(points) {
  const W = 640;
  const H = 180;
  const L = 44; // room for the y labels
  const R = 8;
  const T = 10;
  const B = 24;
  const peak = points.reduce((m, p) => Math.max(m, p.rate), 0);
  const now = points.length ? points[points.length - 1].rate : 0;
  const top = niceCeil(peak);
  const x = (i) => L + ((W - L - R) * (LIVE_POINTS - points.length + i)) / (LIVE_POINTS - 1);
  const y = (v) => T + (H - T - B) * (1 - v / top);

  const label = points.length
    ? `Sales per second over the last ${points.length} readings: now ${now.toFixed(1)}, peak ${peak.toFixed(1)}.`
    : 'Sales per second: collecting the first readings.';
  const root = svg('svg', {
    viewBox: `0 0 ${W} ${H}`,
    role: 'img',
    'aria-label': label,
    class: 'spark',
    'data-points': points.length,
    'data-peak': peak.toFixed(3),
    'data-now': now.toFixed(3),
  });
  root.append(svg('title', {}, label));
  for (const v of [0, top / 2, top]) {
    root.append(svg('line', { x1: L, x2: W - R, y1: y(v), y2: y(v), class: v === 0 ? 'axis' : 'grid' }));
    root.append(svg('text', { x: L - 6, y: y(v) + 4, 'text-anchor': 'end', class: 'tick' }, Number(v.toFixed(2))));
  }
  root.append(svg('text', { x: L, y: H - 6, class: 'tick' }, `${Math.round((LIVE_POINTS * LIVE_EVERY_MS) / 1000)} s ago`));
  root.append(svg('text', { x: W - R, y: H - 6, 'text-anchor': 'end', class: 'tick' }, 'now'));
  if (points.length) {
    const coords = points.map((p, i) => `${x(i).toFixed(1)},${y(p.rate).toFixed(1)}`);
    const area = `M${x(0).toFixed(1)},${y(0)} L${coords.join(' L')} L${x(points.length - 1).toFixed(1)},${y(0)} Z`;
    root.append(svg('path', { d: area, class: 'area' }));
    root.append(svg('polyline', { points: coords.join(' '), class: 'line' }));
    const last = points.length - 1;
    root.append(svg('circle', { cx: x(last), cy: y(points[last].rate), r: 3.5, class: 'dot' }));
  } else {
    root.append(svg('text', { x: (L + W) / 2, y: H / 2, 'text-anchor': 'middle', class: 'tick' }, 'Collecting…'));
  }
  $('live-chart').replaceChildren(root);
  $('live-window').textContent = String(points.length);
}

$('live-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const id = Number($('live-activity').value);
  if (!Number.isInteger(id) || id < 1) {
    say($('live-msg'), 'The activity id must be a positive whole number.', 'error');
    return;
  }
  if (window.location.hash === `#live/${id}`) startLive(id);
  else window.location.hash = `#live/${id}`;
});

$('live-stop').addEventListener('click', () => {
  stopLive();
  say($('live-msg'), 'Stopped.');
  if (window.location.hash !== '#live') window.history.replaceState(null, '', '#live');
});

// Hidden tab: no refreshing; back: refresh at once.
document.addEventListener('visibilitychange', () => {
  if (!live || !live.activity) return;
  clearTimeout(live.timer);
  if (document.visibilityState === 'visible') refreshLive(live);
});

// ---------------------------------------------------------------- views

const VIEWS = ['products', 'activities', 'orders', 'live'];

function route() {
  const [name, arg] = window.location.hash.replace(/^#/, '').split('/');
  const view = VIEWS.includes(name) ? name : 'products';
  const changed = view !== state.view;
  if (changed && state.view === 'live') stopLive(); // leaving the live view stops its refresh
  state.view = view;
  for (const v of VIEWS) $(`view-${v}`).hidden = v !== view;
  for (const a of document.querySelectorAll('.tabs a')) {
    if (a.dataset.view === view) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  document.title = `${view[0].toUpperCase()}${view.slice(1)} · Admin console · Flash sale`;
  loadView(view, arg);
}

function loadView(view, arg) {
  if (!state.token) {
    const where = { products: 'products-msg', activities: 'activities-msg', orders: 'orders-msg', live: 'live-msg' }[view];
    say($(where), 'Paste the admin token above to start.');
    return;
  }
  if (view === 'products') products.load();
  else if (view === 'activities') activities.load();
  else if (view === 'orders') orders.load();
  else if (view === 'live') {
    const id = Number(arg);
    if (Number.isInteger(id) && id > 0) {
      if (!live || live.id !== id) startLive(id);
    } else {
      stopLive();
    }
  }
}

window.addEventListener('hashchange', route);

// ---------------------------------------------------------------- connecting

function setToken(token) {
  state.token = token || null;
  session((s) => (token ? s.setItem(TOKEN_KEY, token) : s.removeItem(TOKEN_KEY)));
  describeToken();
}

$('connect-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const base = normalizeBase($('api-base').value);
  if (base === null) {
    say($('who'), 'The API base URL must be an http:// or https:// address, or empty for this origin.', 'error');
    $('api-base').focus();
    return;
  }
  state.apiBase = base;
  $('api-base').value = base;
  session((s) => (base ? s.setItem(API_KEY, base) : s.removeItem(API_KEY)));
  const token = $('token-input').value.trim();
  if (token) {
    $('token-input').value = '';
    setToken(token);
  } else if (!state.token) {
    say($('who'), 'Paste the admin token first.', 'error');
    $('token-input').focus();
    return;
  } else {
    describeToken();
  }
  stopLive();
  route();
});

$('forget-token').addEventListener('click', () => {
  setToken(null);
  stopLive();
  $('token-input').focus();
});

// ---------------------------------------------------------------- start

function start() {
  const url = new URL(window.location.href);
  const fromUrl = url.searchParams.get('api');
  if (fromUrl !== null) {
    const base = normalizeBase(fromUrl);
    if (base !== null) session((s) => (base ? s.setItem(API_KEY, base) : s.removeItem(API_KEY)));
  }
  const base = normalizeBase(session((s) => s.getItem(API_KEY)) || '');
  state.apiBase = base || '';
  $('api-base').value = state.apiBase;
  $('api-base').placeholder = apiRoot() || 'https://api.example.com';
  state.token = session((s) => s.getItem(TOKEN_KEY));
  describeToken();
  defaultWindow();
  drawChart([]);
  route();
}

start();
