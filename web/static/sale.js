// The sale page in the browser: countdown, live stock, buying with client-side throttling,
// following the order and paying. Plain JavaScript with no build step; it talks only to the
// API (the routes of DESIGN.md "HTTP API") at the page's data-api-url, which publishing fills
// in from PUBLIC_API_URL: empty for the origin that served the page, else another origin that
// allows this one (CORS on the HttpApi).
'use strict';

(() => {
  const STOCK_EVERY_MS = 2000;
  const ORDER_EVERY_MS = 1000; // the first order poll; each next one waits 1.5 x longer
  const ORDER_MAX_EVERY_MS = 10000;
  // The server rate-limits too; this only spares it the clicks of an impatient thumb.
  const BUY_COOLDOWN_MS = 2000;
  const TOKEN_KEY = 'flash.token';
  // The receipt survives a reload: a buyer whose 202 was lost (or who reloads) resumes the order.
  const receiptKey = (productId) => `flash.receipt.${productId}`;
  const STATE_WORDS = { upcoming: 'Upcoming', open: 'Open', ended: 'Ended' };
  const ORDER_WORDS = {
    processing: 'Processing…',
    pending_payment: 'Pending payment',
    paid: 'Paid',
    cancelled: 'Cancelled',
    failed: 'Failed',
  };

  const $ = (id) => document.getElementById(id);
  const root = $('sale');
  const productId = Number(root.dataset.productId);
  const API = (root.dataset.apiUrl || '').replace(/\/+$/, '');

  const sale = {
    state: null, // 'upcoming' | 'open' | 'ended' as the server last said; null before its first answer
    stock: null,
    unlimited: false,
    stockError: null,
    startsAt: Date.parse(root.dataset.startsAt),
    endsAt: Date.parse(root.dataset.endsAt),
    token: null,
    buying: false, // a POST /buy is in flight
    coolUntil: 0, // no new buy before this time (ms since the epoch)
    receipt: null,
    orderWait: 1000, // the next order poll's wait (backoff)
    orderTimer: 0,
  };

  // ---- formatting ----

  const pad = (n) => String(n).padStart(2, '0');

  function hms(ms) {
    const total = Math.max(0, Math.ceil(ms / 1000));
    const days = Math.floor(total / 86400);
    const clock = `${pad(Math.floor((total % 86400) / 3600))}:${pad(Math.floor((total % 3600) / 60))}:${pad(total % 60)}`;
    return days ? `${days}d ${clock}` : clock;
  }

  const when = (ms) => new Date(ms).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'medium' });

  function say(text) {
    $('outcome').textContent = text;
  }

  // Two shapes: the functions' {"error": {"code", "message"}}, and API Gateway's own
  // {"message": "Unauthorized"} (401, 403, 404, 413, 429), which an HTTP API cannot customise.
  const GATEWAY_CODES = { 401: 'unauthenticated', 403: 'forbidden', 404: 'not_found', 413: 'payload_too_large', 429: 'rate_limited' };
  const GATEWAY_WORDS = {
    401: 'Your token was not accepted.',
    403: 'This token may not do that.',
    404: 'Not found.',
    413: 'The request is too large.',
    429: 'Too many requests — please wait a moment.',
  };

  function errorOf(res, body) {
    const err = body && body.error;
    if (err && err.code) return { code: err.code, message: err.message || err.code };
    if (body && typeof body.message === 'string' && GATEWAY_CODES[res.status]) {
      return { code: GATEWAY_CODES[res.status], message: GATEWAY_WORDS[res.status] };
    }
    return { code: '', message: `Something went wrong (HTTP ${res.status}). Please try again.` };
  }

  async function readJson(res) {
    try {
      return await res.json();
    } catch {
      return null;
    }
  }

  // ---- token ----

  function store(fn) {
    try {
      return fn(window.localStorage);
    } catch {
      return null; // storage disabled: the token lives only as long as the page
    }
  }

  function loadToken() {
    const url = new URL(window.location.href);
    const fromUrl = url.searchParams.get('token');
    if (!fromUrl) return store((s) => s.getItem(TOKEN_KEY));
    store((s) => s.setItem(TOKEN_KEY, fromUrl));
    // Keep the token out of the address bar, the history and anything copied from it.
    url.searchParams.delete('token');
    try {
      window.history.replaceState(null, '', url.pathname + url.search + url.hash);
    } catch {
      /* some origins (file://) refuse; harmless */
    }
    return fromUrl;
  }

  function setToken(token) {
    sale.token = token || null;
    store((s) => (token ? s.setItem(TOKEN_KEY, token) : s.removeItem(TOKEN_KEY)));
    render();
  }

  const auth = () => ({ authorization: `Bearer ${sale.token}` });

  // ---- the receipt ----

  function keepReceipt(receipt) {
    sale.receipt = receipt || null;
    store((s) => (receipt ? s.setItem(receiptKey(productId), receipt) : s.removeItem(receiptKey(productId))));
  }

  // Follows an order: the one just bought, or one this browser bought before.
  function followOrder(receipt, text) {
    keepReceipt(receipt);
    say(text);
    showOrder('processing');
    sale.orderWait = ORDER_EVERY_MS;
    pollOrder();
  }

  // ---- rendering ----

  function countdownText(now) {
    if (sale.state === 'ended') return 'Sale ended';
    if (sale.state === 'open') return `Ends in ${hms(sale.endsAt - now)}`;
    if (!Number.isFinite(sale.startsAt)) return '';
    if (now < sale.startsAt) return `Starts in ${hms(sale.startsAt - now)}`;
    return 'Starting…'; // our clock says it started; the server has not said so yet
  }

  function stockText() {
    if (sale.stock === null) return sale.stockError || 'Checking stock…';
    if (sale.unlimited) return 'Unlimited';
    if (sale.stock === 0) return 'Sold out';
    return `${sale.stock} left`;
  }

  function render() {
    const now = Date.now();
    const soldOut = !sale.unlimited && sale.stock === 0;
    root.dataset.state = sale.state || '';

    const state = $('state');
    state.dataset.state = sale.state || '';
    state.textContent = STATE_WORDS[sale.state] || '…';
    $('countdown').textContent = countdownText(now);
    $('stock').textContent = stockText();
    $('stock').classList.toggle('sold-out', soldOut);
    $('stock').classList.toggle('stale', sale.stock === null);

    const buy = $('buy');
    buy.disabled = !(
      sale.state === 'open' &&
      sale.stock !== null &&
      !soldOut &&
      sale.token &&
      !sale.buying &&
      now >= sale.coolUntil &&
      !sale.receipt
    );
    buy.textContent = sale.buying
      ? 'Buying…'
      : sale.receipt
        ? 'Ordered'
        : soldOut
          ? 'Sold out'
          : sale.state === 'ended'
            ? 'Sale ended'
            : sale.state === 'upcoming'
              ? 'Not open yet'
              : 'Buy now';

    $('token-form').hidden = Boolean(sale.token);
  }

  // ---- stock ----

  let stockBusy = false;
  let stockAskedAt = 0;

  async function refreshStock() {
    if (stockBusy) return;
    stockBusy = true;
    stockAskedAt = Date.now();
    try {
      const res = await fetch(`${API}/products/${productId}/stock`, { cache: 'no-store' });
      const body = await readJson(res);
      if (res.ok && body) {
        sale.state = body.state;
        sale.stock = body.stock;
        sale.unlimited = Boolean(body.unlimited);
        sale.stockError = null;
        // The server's window wins over the one baked into the page (an admin may move it).
        const starts = Date.parse(body.starts_at);
        const ends = Date.parse(body.ends_at);
        if (Number.isFinite(starts)) sale.startsAt = starts;
        if (Number.isFinite(ends)) sale.endsAt = ends;
      } else {
        sale.stockError = errorOf(res, body).message;
      }
    } catch {
      sale.stockError = 'Cannot reach the shop — retrying…';
    } finally {
      stockBusy = false;
      render();
    }
  }

  function tick() {
    const now = Date.now();
    // When our clock crosses a boundary, ask at once rather than waiting for the next poll.
    const boundary =
      (sale.state === 'upcoming' && now >= sale.startsAt) || (sale.state === 'open' && now >= sale.endsAt);
    if (boundary && now - stockAskedAt >= 500) refreshStock();
    render();
  }

  // ---- buying ----

  // A buy whose answer never arrived is sent again: POST /buy is safe to retry (a repeat gets
  // 409 already_bought with the receipt), so a lost 202 still leads to the order.
  const BUY_RETRIES = 3;

  async function buy(_event, attempt = 0) {
    if (sale.buying || !sale.token || sale.receipt) return;
    if (attempt === 0 && Date.now() < sale.coolUntil) return;
    sale.buying = true;
    sale.coolUntil = Date.now() + BUY_COOLDOWN_MS;
    say(attempt === 0 ? 'Sending your order…' : 'Checking your order…');
    render();
    try {
      // A resend (the first answer never came) asks past the server's short-lived answers
      // (`no-cache`): only Redis knows whether the first one bought, and then its receipt.
      const fresh = attempt > 0 ? { 'cache-control': 'no-cache' } : {};
      const res = await fetch(`${API}/buy`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...fresh, ...auth() },
        body: JSON.stringify({ product_id: productId }),
      });
      const body = await readJson(res);
      if (res.status === 202 && body && body.receipt) {
        followOrder(body.receipt, `You're in! Receipt ${body.receipt}. Waiting for your order…`);
      } else {
        buyFailed(res, body);
      }
    } catch {
      if (attempt < BUY_RETRIES) {
        say('Could not reach the shop — trying again…');
        setTimeout(() => buy(null, attempt + 1), 1000 * (attempt + 1));
      } else {
        say('Could not reach the shop. Check your connection and try again.');
      }
    } finally {
      sale.buying = false;
      render();
    }
  }

  function buyFailed(res, body) {
    const { code, message } = errorOf(res, body);
    switch (code) {
      case 'sold_out':
        sale.stock = 0;
        sale.unlimited = false;
        say('Sold out');
        break;
      case 'already_bought': {
        // A repeated buy (the first answer was lost): the error carries the existing receipt.
        const receipt = body && body.error && body.error.receipt;
        if (receipt) followOrder(receipt, `You already bought this. Receipt ${receipt}.`);
        else say('You already bought this');
        break;
      }
      case 'rate_limited': {
        const secs = Math.max(1, Math.ceil(Number(res.headers.get('retry-after')) || 1));
        sale.coolUntil = Math.max(sale.coolUntil, Date.now() + secs * 1000);
        say(`Too many tries — wait ${secs} s`);
        break;
      }
      case 'sale_not_open':
        say(sale.state === 'ended' ? 'The sale has ended' : 'The sale is not open yet');
        refreshStock();
        break;
      case 'unauthenticated':
        setToken(null);
        say('Your token was not accepted. Paste a new one.');
        break;
      default:
        say(message);
    }
  }

  // ---- the order ----

  function showOrder(status, payBy) {
    $('order').hidden = false;
    let text = ORDER_WORDS[status] || status;
    const deadline = Date.parse(payBy);
    if (status === 'pending_payment' && Number.isFinite(deadline)) {
      text += ` — pay by ${new Date(deadline).toLocaleTimeString()}`;
    }
    const el = $('order-status');
    el.textContent = text;
    el.dataset.status = status;
    $('pay').hidden = status !== 'pending_payment';
  }

  // Polls while the order is `processing`, with backoff (1 s, 1.5 s, ... at most 10 s). Once it
  // awaits payment nothing changes until the buyer pays (this page hears that answer itself)
  // or `pay_by` passes: one more look just after `pay_by` (then, while it still reads pending,
  // 5 s doubling to a minute). Paid, cancelled and failed are final. A failed request is
  // retried with the processing backoff.
  async function pollOrder() {
    clearTimeout(sale.orderTimer);
    let status = null;
    let payBy = NaN;
    try {
      const res = await fetch(`${API}/orders/${encodeURIComponent(sale.receipt)}`, { cache: 'no-store', headers: auth() });
      const body = await readJson(res);
      if (res.ok && body && body.status) {
        status = body.status;
        payBy = Date.parse(body.pay_by);
        showOrder(status, body.pay_by);
        if (status !== 'processing') say(`You're in! Receipt ${sale.receipt}.`);
      } else if (res.status === 401 || res.status === 403) {
        say(errorOf(res, body).message);
        return;
      } else if (res.status === 404) {
        // Not this user's order (another token on this browser): forget it.
        keepReceipt(null);
        $('order').hidden = true;
        say('');
        render();
        return;
      }
    } catch {
      /* retried below */
    }
    if (status === null || status === 'processing') {
      const wait = sale.orderWait || ORDER_EVERY_MS;
      sale.orderWait = Math.min(ORDER_MAX_EVERY_MS, wait * 1.5);
      sale.orderTimer = setTimeout(pollOrder, wait);
    } else if (status === 'pending_payment' && Number.isFinite(payBy)) {
      // Before pay_by: one look just after it. After it (the cancellation is on its way: the
      // timeout message, or the sweep a minute later): 5 s, doubling, at most a minute.
      const late = Date.now() >= payBy;
      sale.orderWait = late ? Math.min(60000, Math.max(5000, sale.orderWait * 2)) : ORDER_EVERY_MS;
      sale.orderTimer = setTimeout(pollOrder, late ? sale.orderWait : payBy - Date.now() + 5000);
    }
  }

  async function pay() {
    const button = $('pay');
    if (button.disabled) return;
    button.disabled = true;
    try {
      const res = await fetch(`${API}/orders/${encodeURIComponent(sale.receipt)}/pay`, { method: 'POST', headers: auth() });
      const body = await readJson(res);
      if (res.ok) {
        clearTimeout(sale.orderTimer); // paid is final: nothing more to look at
        showOrder('paid');
        return;
      }
      const { code, message } = errorOf(res, body);
      if (code === 'order_cancelled') {
        showOrder('cancelled');
        say('Too late: the payment window closed and the order was cancelled.');
      } else if (code === 'order_not_ready') {
        say('Your order is not ready yet. Try again in a moment.');
      } else {
        say(message);
      }
    } catch {
      say('Could not reach the shop. Check your connection and try again.');
    } finally {
      button.disabled = false;
    }
  }

  // ---- start ----

  function showImageFallback() {
    root.querySelector('.media').classList.add('no-image');
  }

  const img = $('product-image');
  img.addEventListener('error', showImageFallback);
  if (img.getAttribute('src') && img.complete && img.naturalWidth === 0) showImageFallback();

  if (Number.isFinite(sale.startsAt)) $('starts-at').textContent = when(sale.startsAt);
  if (Number.isFinite(sale.endsAt)) $('ends-at').textContent = when(sale.endsAt);

  $('buy').addEventListener('click', buy);
  $('pay').addEventListener('click', pay);
  $('token-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const value = $('token-input').value.trim();
    if (value) {
      $('token-input').value = '';
      setToken(value);
      say('');
    }
  });

  sale.token = loadToken();
  const kept = store((s) => s.getItem(receiptKey(productId)));
  if (kept && sale.token) followOrder(kept, `Receipt ${kept}.`);
  render();
  refreshStock();
  setInterval(refreshStock, STOCK_EVERY_MS);
  setInterval(tick, 250);
})();
