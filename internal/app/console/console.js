// ordermesh console: plain JavaScript, no build step, no library.
// Every value shown comes from the API with the admin token the operator
// signed in with; it is put in the page as text, never as HTML. The token
// itself lives in an HttpOnly cookie the gateway set at sign-in, out of
// this script's reach; the script holds only the session's CSRF token,
// in memory, for calls that change state.
'use strict';

const state = { csrf: '', abort: null };
const $ = (sel) => document.querySelector(sel);
const COMPENSATIONS = new Set(['order.cancelled', 'stock.released', 'stock.rejected', 'payment.failed', 'payment.voided', 'payment.refunded']);
const STATUSES = ['pending', 'confirmed', 'shipped', 'completed', 'cancelled'];
const REASONS = ['out_of_stock', 'payment_declined', 'timeout', 'customer_request', 'rejected'];

// h builds an element: h('td', {class: 'num'}, 'text', child, …).
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function say(msg) { $('#status').textContent = msg || ''; }

// apiPage is a GET of a list that pages with RFC 8288 Link headers: its
// items and the URL of the next (older) page, or '' on the last.
async function apiPage(path) {
  const res = await fetch(path, { credentials: 'same-origin' });
  const data = await res.json().catch(() => null);
  if (!res.ok) {
    const err = new Error(`GET ${path}: ${res.status} ${data && data.detail ? data.detail : res.statusText}`);
    err.status = res.status;
    throw err;
  }
  const m = /<([^>]+)>;\s*rel="next"/.exec(res.headers.get('Link') || '');
  return { items: data || [], next: m ? m[1] : '' };
}

async function api(method, path, body) {
  const opts = { method, headers: {}, credentials: 'same-origin' };
  if (method !== 'GET' && method !== 'HEAD') opts.headers['X-CSRF-Token'] = state.csrf;
  if (body !== undefined) { opts.headers['Content-Type'] = 'application/json'; opts.body = JSON.stringify(body); }
  const res = await fetch(path, opts);
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (!res.ok) {
    const detail = data && data.detail ? data.detail : (typeof data === 'string' ? data : res.statusText);
    const err = new Error(`${method} ${path}: ${res.status} ${detail}`);
    err.status = res.status;
    throw err;
  }
  return data;
}

// stream reads Server-Sent Events from path with the token (EventSource
// cannot send one), calling onEvent for each, and resumes after a drop
// with Last-Event-ID until signal aborts. onOpen, if given, is called
// each time the stream's headers arrive (from then on nothing is missed).
async function stream(path, onEvent, signal, onOpen) {
  let lastID = '';
  for (let failures = 0; !signal.aborted; ) {
    try {
      const headers = {};
      if (lastID) headers['Last-Event-ID'] = lastID;
      const res = await fetch(path, { headers, signal, credentials: 'same-origin' });
      if (res.status === 204) return;
      if (!res.ok) throw new Error(`${path}: ${res.status}`);
      failures = 0;
      if (onOpen) onOpen();
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i); buf = buf.slice(i + 2);
          const ev = { id: '', type: 'message', data: '' };
          for (const line of block.split('\n')) {
            if (line.startsWith('id: ')) ev.id = line.slice(4);
            else if (line.startsWith('event: ')) ev.type = line.slice(7);
            else if (line.startsWith('data: ')) ev.data += (ev.data ? '\n' : '') + line.slice(6);
          }
          if (ev.id) lastID = ev.id;
          if (ev.data) onEvent(ev);
        }
      }
    } catch (e) {
      if (signal.aborted) return;
      failures++;
      say(`live updates interrupted (${e.message}); reconnecting…`);
      await new Promise((r) => setTimeout(r, Math.min(5000, 250 * 2 ** failures)));
      say('');
    }
  }
}

const fmtTime = (t) => { const d = new Date(t); return isNaN(d) ? '' : d.toLocaleTimeString([], { hour12: false }) + '.' + String(d.getMilliseconds()).padStart(3, '0'); };
const pad = (n) => String(n).padStart(2, '0');
// fmtDateTime is the console's one date form: local date and time to the millisecond.
const fmtDateTime = (t) => { const d = new Date(t); return isNaN(d) ? '' : `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` + fmtTime(t); };
// clip shortens text to at most n characters at a word boundary, with an
// ellipsis when it cut something (the whole text is the cell's title).
const clip = (text, n) => { if (text.length <= n) return text; const cut = text.slice(0, n); const sp = cut.lastIndexOf(' '); return (sp > n / 2 ? cut.slice(0, sp) : cut) + '…'; };
const fmtAddress = (a) => a ? [a.name, a.line1, [a.postal_code, a.city].filter(Boolean).join(' '), a.country].filter(Boolean).join(', ') : '';
const shortID = (id) => (id || '').length > 13 ? id.slice(0, 8) + '…' + id.slice(-4) : id;
const fmtMoney = (cents, cur) => cents === undefined ? '' : (cents / 100).toFixed(2) + ' ' + (cur || '');
const chip = (text, cls) => h('span', { class: 'chip ' + (cls || '') }, text);
const statusChip = (s) => chip(s, 's-' + s);

function table(headers, rows, opts = {}) {
  return h('div', { class: 'scroll' }, h('table', { 'aria-label': opts.label },
    h('thead', {}, h('tr', {}, headers.map((c) => h('th', { class: c.cls, scope: 'col' }, c.label || c)))),
    h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: headers.length, class: 'muted' }, opts.empty || 'Nothing yet.')))));
}

function clickableRow(cells, go, label) {
  return h('tr', { class: 'clickable', tabindex: '0', 'aria-label': label, onclick: go, onkeydown: (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); go(); } } }, cells);
}

// ---- views ----

const views = {
  orders: viewOrders, order: viewOrder, dlq: viewDLQ, deadletter: viewDeadLetter, webhooks: viewWebhooks, health: viewHealth,
};

// ORDERS_KEPT bounds what the orders view holds in the tab.
const ORDERS_KEPT = 2000;

async function viewOrders(view, signal) {
  const orders = new Map();
  const filters = { status: '', customer: '', reason: '' };
  let next = '';
  const body = h('tbody');
  const count = h('span', { class: 'muted' });
  const older = h('button', { type: 'button', id: 'older', hidden: true, onclick: () => { older.disabled = true; loadPage(next).finally(() => { older.disabled = false; }); } }, 'Load older');
  const search = h('input', { id: 'search', placeholder: 'order id', 'aria-label': 'Order id' });
  let typing;
  const form = h('form', { class: 'filters', onsubmit: (e) => { e.preventDefault(); if (search.value.trim()) location.hash = '#/orders/' + encodeURIComponent(search.value.trim()); } },
    h('div', {}, h('label', { for: 'f-status' }, 'State'), h('select', { id: 'f-status', onchange: (e) => { filters.status = e.target.value; reload(); } }, h('option', { value: '' }, 'any'), STATUSES.map((s) => h('option', { value: s }, s)))),
    h('div', {}, h('label', { for: 'f-customer' }, 'Customer'), h('input', { id: 'f-customer', placeholder: 'exact id', oninput: (e) => { filters.customer = e.target.value.trim(); clearTimeout(typing); typing = setTimeout(reload, 300); } })),
    h('div', {}, h('label', { for: 'f-reason' }, 'Cancel reason'), h('select', { id: 'f-reason', onchange: (e) => { filters.reason = e.target.value; render(); } }, h('option', { value: '' }, 'any'), REASONS.map((r) => h('option', { value: r }, r)))),
    h('div', {}, h('label', { for: 'search' }, 'Find an order'), h('span', {}, search, ' ', h('button', { type: 'submit' }, 'Open'))));
  view.replaceChildren(h('h2', {}, 'Orders ', h('span', { class: 'muted' }, '(live)'), ' ', count), form,
    h('div', { class: 'scroll' }, h('table', { id: 'orders', 'aria-label': 'Orders' },
      h('thead', {}, h('tr', {}, ['Order', 'Customer', 'State', 'Amount', 'Last step', 'Placed'].map((c, i) => h('th', { scope: 'col', class: i >= 4 ? 'hide-narrow' : '' }, c)))), body)), older);

  const matches = (o) => (!filters.status || o.status === filters.status) && (!filters.customer || o.customer_id === filters.customer) &&
    (!filters.reason || o.cancel_reason === filters.reason);
  let pending = false;
  const fresh = new Set();
  // render draws the list in the next frame, once however many events
  // arrive before it; draw draws it now.
  function render() {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; draw(); });
  }
  function draw() {
    const rows = [];
    const list = [...orders.values()].sort((a, b) => (b.created_at || '').localeCompare(a.created_at || ''));
    for (const o of list) {
      if (!matches(o)) continue;
      const tr = clickableRow([
        h('td', { class: 'mono', title: o.id }, shortID(o.id)), h('td', {}, o.customer_id || ''),
        h('td', {}, statusChip(o.status), o.cancel_reason ? ' ' : '', o.cancel_reason ? chip(o.cancel_reason, 'comp') : ''),
        h('td', { class: 'num' }, fmtMoney(o.total_cents, o.currency)),
        h('td', { class: 'hide-narrow' }, o.last || ''), h('td', { class: 'hide-narrow' }, fmtDateTime(o.created_at))], () => { location.hash = '#/orders/' + o.id; }, 'Order ' + o.id);
      tr.dataset.order = o.id;
      tr.dataset.status = o.status;
      if (fresh.has(o.id)) tr.classList.add('fresh');
      rows.push(tr);
    }
    fresh.clear();
    body.replaceChildren(...(rows.length ? rows : [h('tr', {}, h('td', { colspan: 6, class: 'muted' }, 'No orders match.'))]));
    count.textContent = `${rows.length} shown`;
    older.hidden = !next;
  }
  // keep drops the oldest orders past ORDERS_KEPT.
  function keep() {
    if (orders.size <= ORDERS_KEPT) return;
    const list = [...orders.values()].sort((a, b) => (a.created_at || '').localeCompare(b.created_at || ''));
    for (const o of list.slice(0, orders.size - ORDERS_KEPT)) orders.delete(o.id);
  }
  function add(o) {
    if (orders.has(o.id)) return;
    orders.set(o.id, { id: o.id, customer_id: o.customer_id, status: o.status, cancel_reason: o.cancel_reason, created_at: o.created_at,
      total_cents: o.total_cents, currency: o.currency, last: (o.timeline || []).slice(-1).map((s) => s.type)[0] });
  }
  // The list comes from the server, filtered there (status, customer) and
  // paged with its Link header; the stream adds what happens from now on.
  // A page is drawn at once, before Load older is enabled again: drawn in
  // a later frame, its rows would move the button away from under a
  // second click, which would open an order instead.
  let generation = 0;
  async function loadPage(url) {
    const mine = generation;
    const page = await apiPage(url);
    if (mine !== generation || signal.aborted) return;
    for (const o of page.items) add(o);
    next = page.next;
    keep();
    draw();
  }
  function reload() {
    generation++;
    orders.clear();
    next = '';
    const q = new URLSearchParams({ limit: '100' });
    if (filters.status) q.set('status', filters.status);
    if (filters.customer) q.set('customer_id', filters.customer);
    return loadPage('/api/orders?' + q).catch((e) => { body.replaceChildren(h('tr', {}, h('td', { colspan: 6, class: 'error' }, e.message))); });
  }
  const live = stream('/api/admin/stream?from=now', (ev) => {
    let ce;
    try { ce = JSON.parse(ev.data); } catch { return; }
    const id = ce.subject, d = ce.data || {};
    if (!id || ce.type === 'product.updated' || ce.type === 'endpoint.disabled') return;
    let o = orders.get(id);
    if (!o) { if (ce.type !== 'order.placed') return; o = { id, status: 'pending', created_at: ce.time, total_cents: d.total_cents, currency: d.currency }; orders.set(id, o); keep(); }
    if (d.customer_id) o.customer_id = d.customer_id;
    o.last = ce.type;
    const to = { 'order.placed': 'pending', 'order.confirmed': 'confirmed', 'shipment.created': 'shipped', 'order.completed': 'completed', 'order.cancelled': 'cancelled' }[ce.type];
    if (to && !(o.status === 'completed' || o.status === 'cancelled')) o.status = to;
    if (ce.type === 'order.cancelled') o.cancel_reason = d.reason;
    fresh.add(id);
    render();
  }, signal, () => { view.dataset.live = 'true'; });
  await reload();
  await live;
}

async function viewOrder(view, signal, id) {
  view.replaceChildren(h('h2', {}, 'Order ', h('span', { class: 'mono' }, id)), h('p', { class: 'muted' }, 'Loading…'));
  let o;
  try { o = await api('GET', '/api/orders/' + encodeURIComponent(id)); } catch (e) {
    view.replaceChildren(h('h2', {}, 'Order ', h('span', { class: 'mono' }, id)), h('p', { class: 'error' }, e.status === 404 ? 'No such order.' : e.message), h('p', {}, h('a', { href: '#/orders' }, 'Back to orders')));
    return;
  }
  const sagaBox = h('div'), ledgerBox = h('div'), noteBox = h('div'), hookBox = h('div');
  const head = h('dl', { class: 'kv' });
  view.replaceChildren(h('p', {}, h('a', { href: '#/orders' }, '← Orders')), h('h2', {}, 'Order ', h('span', { class: 'mono' }, id)), head,
    h('h3', {}, 'Saga'), sagaBox, h('h3', {}, 'Payment provider'), ledgerBox, h('h3', {}, 'Notifications'), noteBox, h('h3', {}, 'Webhook deliveries'), hookBox);
  let cancelArmed = false;
  async function refresh() {
    o = await api('GET', '/api/orders/' + encodeURIComponent(id));
    head.replaceChildren(
      h('dt', {}, 'State'), h('dd', { id: 'order-status' }, statusChip(o.status), o.cancel_reason ? ' ' : '', o.cancel_reason ? chip(o.cancel_reason, 'comp') : ''),
      h('dt', {}, 'Customer'), h('dd', {}, o.customer_id), h('dt', {}, 'Total'), h('dd', {}, fmtMoney(o.total_cents, o.currency)),
      h('dt', {}, 'Items'), h('dd', {}, (o.items || []).map((i) => `${i.quantity} × ${i.sku}`).join(', ')),
      h('dt', {}, 'Placed'), h('dd', {}, fmtDateTime(o.created_at)),
      h('dt', {}, 'Ship to'), h('dd', { id: 'order-address' }, fmtAddress(o.shipping_address)));
    const saga = await api('GET', `/api/admin/orders/${encodeURIComponent(id)}/saga?since=${encodeURIComponent(o.created_at)}`);
    const evs = saga.events || [];
    const shipped = evs.find((e) => e.type === 'shipment.created');
    if (shipped && shipped.data) {
      head.append(h('dt', {}, 'Shipment'), h('dd', { id: 'order-shipment' }, `${shipped.data.carrier} ${shipped.data.tracking}`, h('span', { class: 'muted' }, ` (${shipped.data.shipment_id}, ${fmtDateTime(shipped.time)})`)));
    }
    if (o.status === 'pending' || o.status === 'confirmed') {
      // Two clicks: the first says what cancelling does, the second does it.
      // (A refresh between the two keeps the first.)
      const confirmText = 'Confirm: cancel, release its stock, void or refund its payment';
      const cancel = h('button', { type: 'button', id: 'order-cancel', class: 'danger', onclick: async () => {
        if (!cancelArmed) {
          cancelArmed = true;
          cancel.textContent = confirmText;
          return;
        }
        cancel.disabled = true;
        await act(() => api('POST', `/api/orders/${encodeURIComponent(id)}/cancel`), 'Cancel requested.');
        refresh().catch((e) => say(e.message));
      } }, cancelArmed ? confirmText : 'Cancel order');
      head.append(h('dt', {}, ''), h('dd', {}, cancel));
    }
    sagaBox.replaceChildren(table(['Time', { label: '+ms', cls: 'num' }, 'Event', 'Service', { label: 'Trace', cls: 'hide-narrow' }], evs.map((e) => {
      const comp = COMPENSATIONS.has(e.type);
      const tr = h('tr', { 'data-type': e.type },
        h('td', {}, fmtDateTime(e.time)), h('td', { class: 'num' }, e.since_previous_ms ? '+' + e.since_previous_ms.toFixed(1) : ''),
        h('td', {}, chip(e.type, comp ? 'comp' : ''), comp ? h('span', { class: 'muted' }, ' compensation') : ''),
        h('td', {}, e.source), h('td', { class: 'hide-narrow mono' }, e.trace_id && saga.trace_url ? h('a', { href: saga.trace_url.replace('{trace_id}', e.trace_id), target: '_blank', rel: 'noopener' }, e.trace_id.slice(0, 8) + '…') : (e.trace_id ? e.trace_id.slice(0, 8) + '…' : '')));
      if (comp) tr.classList.add('compensation');
      return tr;
    }), { label: 'Saga events', empty: 'No events found in the broker for this order.' }), saga.truncated ? h('p', { class: 'muted' }, 'Only the first part of the broker was read; later events may be missing.') : '');
    const eventIDs = evs.map((e) => e.id).slice(0, 100);
    const [ledger, notes, deliveries, endpoints] = await Promise.all([
      api('GET', '/api/admin/psp/ledger?order_id=' + encodeURIComponent(id)).catch(() => null),
      api('GET', '/api/admin/notifications?order_id=' + encodeURIComponent(id)).catch(() => null),
      eventIDs.length ? api('GET', '/api/webhooks/deliveries?limit=500&event_id=' + encodeURIComponent(eventIDs.join(','))).catch(() => null) : [],
      api('GET', '/api/webhooks/endpoints').catch(() => [])]);
    ledgerBox.replaceChildren(ledger === null ? h('p', { class: 'muted' }, 'Not available.') : table(['Operation', { label: 'Amount', cls: 'num' }, 'Outcome', 'At'],
      ledger.map((l) => h('tr', {}, h('td', {}, l.op), h('td', { class: 'num' }, fmtMoney(l.amount_cents, l.currency)), h('td', {}, l.outcome, l.reason ? ` (${l.reason})` : ''), h('td', {}, fmtDateTime(l.at)))), { label: 'Provider ledger' }));
    noteBox.replaceChildren(notes === null ? h('p', { class: 'muted' }, 'Not available.') : table(['Type', 'Subject', 'At'],
      notes.map((n) => h('tr', {}, h('td', {}, n.type), h('td', {}, n.subject), h('td', {}, fmtDateTime(n.at)))), { label: 'Notifications' }));
    hookBox.replaceChildren(deliveries === null ? h('p', { class: 'muted' }, 'Not available.') : deliveryTable(deliveries, new Map(endpoints.map((ep) => [ep.id, ep])), refresh));
    return o;
  }
  await refresh();
  if (o.status !== 'completed' && o.status !== 'cancelled') {
    // The order's own event stream says when it changes.
    await stream(`/api/orders/${encodeURIComponent(id)}/events`, () => { refresh().catch((e) => say(e.message)); }, signal);
  }
}

// RECOVER_DAYS is how far back Recover reaches for undelivered deliveries.
const RECOVER_DAYS = 7;
const DELIVERY_HEADERS = ['Event', 'Endpoint', 'Status', 'Attempts', ''];

// deliveryWhy says why a delivery is not delivered, and when it is tried
// next: behind a disabled endpoint or an open breaker, or waiting its turn.
function deliveryWhy(d, ep) {
  const n = (d.attempts || []).length;
  if (d.status === 'failed') return `gave up after ${n} attempt${n === 1 ? '' : 's'}`;
  if (d.status !== 'pending') return '';
  const at = 'next attempt ' + fmtDateTime(d.next_attempt_at);
  if (ep && ep.disabled) return 'held: the endpoint is disabled';
  if (ep && ep.breaker === 'open') return `held: the endpoint's breaker is open (${n} failed); ${at}`;
  return n ? `retrying after ${n} failed; ${at}` : `not attempted yet; ${at}`;
}

function deliveryRow(d, eps, after) {
  const ep = eps.get(d.endpoint_id);
  const why = deliveryWhy(d, ep);
  return h('tr', { 'data-delivery': d.id, 'data-event': d.event_id, 'data-status': d.status },
    h('td', {}, d.event_type, h('br'), h('span', { class: 'mono muted' }, d.event_id)),
    h('td', { title: d.endpoint_id }, ep ? ep.url : h('span', { class: 'mono' }, d.endpoint_id)),
    h('td', {}, chip(d.status, d.status === 'delivered' ? 's-completed' : d.status === 'failed' ? 's-cancelled' : 's-pending'), why ? h('div', { class: 'muted why' }, why) : ''),
    h('td', {}, (d.attempts || []).map((a) => h('div', {}, `${fmtDateTime(a.at)} → ${a.status_code || a.error || 'no answer'} (${a.latency_ms} ms)`))),
    h('td', {}, d.status !== 'delivered' ? h('button', { type: 'button', class: 'secondary', onclick: async () => { await act(() => api('POST', `/api/webhooks/deliveries/${encodeURIComponent(d.id)}/retry`), 'Retry scheduled.'); after(); } }, 'Retry') : ''));
}

function deliveryTable(ds, eps, after) {
  return table(DELIVERY_HEADERS, ds.map((d) => deliveryRow(d, eps, after)), { label: 'Webhook deliveries', empty: 'No deliveries.' });
}

// act runs f and says done (or done(f's result)), or f's error.
async function act(f, done) {
  try { const r = await f(); say(typeof done === 'function' ? done(r) : done); setTimeout(() => say(''), 3000); } catch (e) { say(e.message); }
}

async function viewDLQ(view) {
  const { dead_letters: dls } = await api('GET', '/api/admin/dlq');
  const confirmBox = h('div');
  const purge = () => {
    const input = h('input', { id: 'purge-confirm', 'aria-label': 'Type purge to confirm' });
    confirmBox.replaceChildren(h('form', { class: 'filters', onsubmit: async (e) => {
      e.preventDefault();
      if (input.value !== 'purge') { say('Type purge to confirm.'); return; }
      await act(() => api('DELETE', '/api/admin/dlq?confirm=purge'), 'Purged.'); route();
    } }, h('div', {}, h('label', { for: 'purge-confirm' }, `Deletes ${dls.length} dead letters for good. Type purge to confirm.`), input), h('button', { type: 'submit', class: 'danger' }, 'Purge')));
    input.focus();
  };
  view.replaceChildren(h('h2', {}, 'Dead letters ', h('span', { class: 'muted' }, `(${dls.length})`)),
    h('p', {}, h('button', { type: 'button', id: 'replay-all', disabled: !dls.length, onclick: async () => { await act(() => api('POST', '/api/admin/dlq/replay'), 'Replayed every dead letter.'); route(); } }, 'Replay all'), ' ',
      h('button', { type: 'button', class: 'danger', disabled: !dls.length, onclick: purge }, 'Purge…')), confirmBox,
    table(['Id', 'Consumer', 'Type', 'Error', { label: 'At', cls: 'hide-narrow' }], dls.map((d) => clickableRow([
      h('td', { class: 'mono' }, d.id), h('td', {}, d.consumer), h('td', {}, d.type), h('td', { title: d.error || '' }, clip(d.error || '', 200)), h('td', { class: 'hide-narrow' }, fmtDateTime(d.dead_lettered_at))],
    () => { location.hash = '#/dlq/' + d.id; }, 'Dead letter ' + d.id)), { label: 'Dead letters', empty: 'No dead letters.' }));
}

async function viewDeadLetter(view, signal, id) {
  const { dead_letter: d, data } = await api('GET', '/api/admin/dlq/' + encodeURIComponent(id));
  view.replaceChildren(h('p', {}, h('a', { href: '#/dlq' }, '← Dead letters')), h('h2', {}, 'Dead letter ', d.id),
    h('dl', { class: 'kv' }, h('dt', {}, 'Error'), h('dd', { class: 'error', id: 'dl-error' }, d.error), h('dt', {}, 'Consumer'), h('dd', {}, d.consumer),
      h('dt', {}, 'Event'), h('dd', {}, d.type, ' ', h('span', { class: 'mono' }, d.event_id)),
      h('dt', {}, 'Origin'), h('dd', { class: 'mono' }, `${d.original_stream} #${d.original_stream_seq} (${d.original_subject})`),
      h('dt', {}, 'Deliveries'), h('dd', {}, d.deliveries), h('dt', {}, 'Dead-lettered'), h('dd', {}, new Date(d.dead_lettered_at).toLocaleString())),
    h('p', {}, h('button', { type: 'button', id: 'replay', onclick: async () => { await act(() => api('POST', `/api/admin/dlq/${d.id}/replay`), `Dead letter ${d.id} replayed.`); location.hash = '#/dlq'; } }, 'Replay')),
    h('h3', {}, 'Headers'), table(['Header', 'Value'], Object.entries(d.headers || {}).sort().map(([k, v]) => h('tr', {}, h('td', { class: 'mono' }, k), h('td', { class: 'mono' }, v))), { label: 'Headers' }),
    h('h3', {}, 'Payload'), h('pre', { id: 'dl-payload' }, typeof data === 'string' ? data : JSON.stringify(data, null, 2)));
}

async function viewWebhooks(view, signal) {
  const endpoints = await api('GET', '/api/webhooks/endpoints');
  const eps = new Map(endpoints.map((ep) => [ep.id, ep]));
  const again = () => viewWebhooks(view, signal);
  const secret = h('p', { role: 'alert', id: 'wh-secret' });
  const url = h('input', { id: 'wh-url', type: 'url', required: true, placeholder: 'https://shop.example/hooks' });
  const types = h('input', { id: 'wh-types', placeholder: 'order.completed, order.cancelled' });
  const desc = h('input', { id: 'wh-desc', placeholder: 'what it is for', maxlength: 200 });
  const create = h('form', { class: 'filters', onsubmit: async (e) => {
    e.preventDefault();
    try {
      const ep = await api('POST', '/api/webhooks/endpoints', { url: url.value, description: desc.value, event_types: types.value.split(',').map((s) => s.trim()).filter(Boolean) });
      await again();
      $('#wh-secret').textContent = `Created ${ep.id}. Its signing secret, shown once: ${ep.secret}`;
    } catch (err) { secret.textContent = err.message; secret.className = 'error'; }
  } }, h('div', {}, h('label', { for: 'wh-url' }, 'Endpoint URL'), url), h('div', {}, h('label', { for: 'wh-types' }, 'Event types (comma-separated)'), types),
  h('div', {}, h('label', { for: 'wh-desc' }, 'Description'), desc), h('button', { type: 'submit' }, 'Create endpoint'));
  const endpointRow = (ep) => h('tr', { 'data-endpoint': ep.id },
    h('td', {}, ep.url, h('br'), h('span', { class: 'mono muted' }, ep.id), ep.description ? h('div', { class: 'muted' }, ep.description) : ''),
    h('td', {}, (ep.event_types || []).join(', ') || 'every type'),
    h('td', { class: 'wh-state' }, ep.disabled ? chip('disabled', 's-cancelled') : chip('enabled', 's-completed'),
      ep.breaker && ep.breaker !== 'closed' ? [' ', chip('breaker ' + ep.breaker, 's-cancelled')] : '',
      ep.disabled_reason ? h('div', { class: 'muted' }, ep.disabled_reason) : ''),
    h('td', {}, h('button', { type: 'button', class: 'secondary', onclick: async () => { await act(() => api('PATCH', `/api/webhooks/endpoints/${ep.id}`, { disabled: !ep.disabled }), ep.disabled ? 'Enabled.' : 'Disabled.'); again(); } }, ep.disabled ? 'Enable' : 'Disable'), ' ',
      h('button', { type: 'button', class: 'secondary', onclick: async () => { try { const r = await api('POST', `/api/webhooks/endpoints/${ep.id}/rotate-secret`); $('#wh-secret').textContent = `New secret for ${ep.id}, shown once: ${r.secret}`; } catch (e) { say(e.message); } } }, 'Rotate secret'), ' ',
      h('button', { type: 'button', class: 'secondary', onclick: async () => {
        const since = new Date(Date.now() - RECOVER_DAYS * 864e5).toISOString().replace(/\.\d+Z$/, 'Z');
        await act(() => api('POST', `/api/webhooks/endpoints/${ep.id}/recover?since=${encodeURIComponent(since)}`),
          (r) => `Sending ${r.recovered} again (${r.failed} failed, ${r.waiting} waiting, last ${RECOVER_DAYS} days).`);
        again();
      } }, 'Recover')));

  // Deliveries: filtered and paged by the server, 50 at a time.
  const filters = { status: '', endpoint: '' };
  const body = h('tbody');
  let next = '';
  const older = h('button', { type: 'button', id: 'wh-older', hidden: true, onclick: () => { older.disabled = true; page(next).finally(() => { older.disabled = false; }); } }, 'Load older');
  async function page(path) {
    const p = await apiPage(path);
    if (signal.aborted) return;
    body.append(...p.items.map((d) => deliveryRow(d, eps, again)));
    if (!body.children.length) body.append(h('tr', {}, h('td', { colspan: 5, class: 'muted' }, 'No deliveries match.')));
    next = p.next;
    older.hidden = !next;
  }
  function reload() {
    body.replaceChildren();
    const q = new URLSearchParams({ limit: '50' });
    if (filters.status) q.set('status', filters.status);
    if (filters.endpoint) q.set('endpoint_id', filters.endpoint);
    return page('/api/webhooks/deliveries?' + q).catch((e) => body.replaceChildren(h('tr', {}, h('td', { colspan: 5, class: 'error' }, e.message))));
  }
  const deliveryFilters = h('div', { class: 'filters' },
    h('div', {}, h('label', { for: 'wh-f-status' }, 'Status'), h('select', { id: 'wh-f-status', onchange: (e) => { filters.status = e.target.value; reload(); } },
      ['', 'pending', 'delivered', 'failed'].map((v) => h('option', { value: v }, v || 'any')))),
    h('div', {}, h('label', { for: 'wh-f-endpoint' }, 'Endpoint'), h('select', { id: 'wh-f-endpoint', onchange: (e) => { filters.endpoint = e.target.value; reload(); } },
      h('option', { value: '' }, 'any'), endpoints.map((ep) => h('option', { value: ep.id }, ep.url)))));
  view.replaceChildren(h('h2', {}, 'Webhooks'), create, secret,
    h('h3', {}, 'Endpoints'), table(['Endpoint', 'Types', 'State', ''], endpoints.map(endpointRow), { label: 'Endpoints', empty: 'No endpoints.' }),
    h('h3', {}, 'Deliveries'), deliveryFilters,
    h('div', { class: 'scroll' }, h('table', { id: 'deliveries', 'aria-label': 'Webhook deliveries' },
      h('thead', {}, h('tr', {}, DELIVERY_HEADERS.map((c) => h('th', { scope: 'col' }, c)))), body)), older);
  await reload();
}

async function viewHealth(view, signal) {
  const samples = [];
  const box = h('div');
  view.replaceChildren(h('h2', {}, 'Health'), box);
  const breakerName = (v) => ['closed', 'half-open', 'open'][v] || String(v);
  const spark = (vals) => {
    if (vals.length < 2) return h('p', { class: 'muted' }, 'Collecting…');
    const max = Math.max(...vals, 1e-9), w = 300, hgt = 48;
    const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
    svg.setAttribute('viewBox', `0 0 ${w} ${hgt}`); svg.setAttribute('class', 'spark'); svg.setAttribute('role', 'img');
    const pl = document.createElementNS('http://www.w3.org/2000/svg', 'polyline');
    pl.setAttribute('points', vals.map((v, i) => `${(i / (vals.length - 1)) * w},${hgt - (v / max) * (hgt - 4) - 2}`).join(' '));
    svg.append(pl);
    return svg;
  };
  async function tick() {
    const s = await api('GET', '/api/admin/health');
    samples.push(s);
    while (samples.length > 61) samples.shift();
    const rates = [], lats = [];
    for (let i = 1; i < samples.length; i++) {
      const a = samples[i - 1], b = samples[i];
      const dt = (new Date(b.at) - new Date(a.at)) / 1000;
      const fin = (x) => Object.values(x.orders_finished || {}).reduce((p, q) => p + q, 0);
      rates.push(dt > 0 ? (fin(b) - fin(a)) / dt : 0);
      const ca = (a.order_duration || {}).completed || { count: 0, sum_seconds: 0 }, cb = (b.order_duration || {}).completed || { count: 0, sum_seconds: 0 };
      lats.push(cb.count > ca.count ? (cb.sum_seconds - ca.sum_seconds) / (cb.count - ca.count) * 1000 : 0);
    }
    // A card that needs attention is marked, and links to where to act.
    const card = (k, v, id, alert, href) => h('div', { class: 'card' + (alert ? ' alert' : '') }, h('div', { class: 'k' }, k),
      h('div', { class: 'v', id }, href && alert ? h('a', { href }, String(v)) : v));
    const pending = s.consumer_pending || {}, ackp = s.consumer_ack_pending || {};
    const breakers = Object.entries(s.breakers || {});
    const hooksOpen = s.webhook_breakers_open ?? 0;
    if (hooksOpen > 0) breakers.push([`webhook endpoints (${hooksOpen})`, 2]);
    box.replaceChildren(
      h('div', { class: 'cards' },
        card('Orders finished /s', rates.length ? rates[rates.length - 1].toFixed(1) : '…', 'h-rate'),
        card('Mean completion (ms)', lats.length ? lats[lats.length - 1].toFixed(1) : '…', 'h-latency'),
        card('Dead letters', s.dead_letters ?? 0, 'h-dlq', s.dead_letters > 0, '#/dlq'),
        card('Webhook endpoints with an open breaker', hooksOpen, 'h-webhooks', hooksOpen > 0, '#/webhooks'),
        card('Open breakers', breakers.filter(([, v]) => v !== 0).length, 'h-breakers', breakers.some(([, v]) => v !== 0))),
      h('div', { class: 'cards' }, h('div', { class: 'card' }, h('div', { class: 'k' }, 'Orders finished /s, last 5 min'), spark(rates)),
        h('div', { class: 'card' }, h('div', { class: 'k' }, 'Mean completion ms, last 5 min'), spark(lats))),
      h('h3', {}, 'Consumers'), table(['Consumer', { label: 'Pending (lag)', cls: 'num' }, { label: 'Ack pending', cls: 'num' }],
        Object.keys(pending).sort().map((c) => h('tr', {}, h('td', {}, c), h('td', { class: 'num' }, pending[c]), h('td', { class: 'num' }, ackp[c] ?? 0))), { label: 'Consumers' }),
      h('h3', {}, 'Outboxes'), table(['Service', { label: 'Backlog', cls: 'num' }, { label: 'Oldest unsent (s)', cls: 'num' }],
        Object.keys(s.outbox_backlog || {}).sort().map((k) => h('tr', {}, h('td', {}, k), h('td', { class: 'num' }, s.outbox_backlog[k]), h('td', { class: 'num' }, (s.outbox_oldest_unsent_seconds[k] || 0).toFixed(1)))), { label: 'Outboxes' }),
      h('h3', {}, 'Breakers'), table(['Breaker', 'State'], breakers.map(([k, v]) => h('tr', { class: v !== 0 ? 'alert' : '', 'data-breaker': k },
        h('td', {}, k.startsWith('webhook') ? h('a', { href: '#/webhooks' }, k) : k), h('td', {}, v === 0 ? breakerName(v) : chip(breakerName(v), 's-cancelled')))), { label: 'Breakers', empty: 'No breakers in this process.' }));
  }
  while (!signal.aborted) {
    await tick();
    await new Promise((r) => {
      const t = setTimeout(r, 5000);
      signal.addEventListener('abort', () => { clearTimeout(t); r(); }, { once: true });
    });
  }
}

// ---- routing and sign-in ----

async function route() {
  if (state.abort) state.abort.abort();
  const view = $('#view');
  delete view.dataset.live; // the new view's stream, if any, says when it is open
  if (!state.csrf) {
    $('#signin').hidden = false; $('#nav').hidden = true; view.replaceChildren();
    $('#token').focus();
    return;
  }
  $('#signin').hidden = true; $('#nav').hidden = false;
  const parts = (location.hash.replace(/^#\/?/, '') || 'orders').split('/').map(decodeURIComponent);
  let name = parts[0], arg = parts[1];
  if (name === 'orders' && arg) name = 'order';
  if (name === 'dlq' && arg) name = 'deadletter';
  if (!views[name]) name = 'orders';
  for (const a of document.querySelectorAll('#nav a')) a.toggleAttribute('aria-current', a.getAttribute('href') === '#/' + parts[0]);
  if (document.querySelector('#nav a[aria-current]')) document.querySelector('#nav a[aria-current]').setAttribute('aria-current', 'page');
  const ctl = new AbortController();
  state.abort = ctl;
  try {
    await views[name](view, ctl.signal, arg);
  } catch (e) {
    if (ctl.signal.aborted) return;
    if (e.status === 401 || e.status === 403) { signOut('That token cannot read this: the console needs an admin token or API key.'); return; }
    view.replaceChildren(h('p', { class: 'error' }, e.message));
  }
}

function signOut(why) {
  const csrf = state.csrf;
  state.csrf = '';
  fetch('/console/session', { method: 'DELETE', headers: { 'X-CSRF-Token': csrf }, credentials: 'same-origin' }).catch(() => {});
  $('#signin-error').textContent = why || '';
  route();
}

// session asks the gateway for this browser's console session (its
// HttpOnly cookie) and keeps its CSRF token; false when there is none.
async function session(method, body) {
  const opts = { method, credentials: 'same-origin', headers: {} };
  if (body) { opts.headers['Content-Type'] = 'application/json'; opts.body = JSON.stringify(body); }
  const res = await fetch('/console/session', opts);
  if (!res.ok) {
    const p = await res.json().catch(() => ({}));
    const err = new Error(p.detail || res.statusText);
    err.status = res.status;
    throw err;
  }
  state.csrf = (await res.json()).csrf;
}

document.addEventListener('DOMContentLoaded', async () => {
  $('#signin-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      await session('POST', { token: $('#token').value.trim() });
      $('#token').value = '';
      $('#signin-error').textContent = '';
      route();
    } catch (err) {
      state.csrf = '';
      $('#signin-error').textContent = err.status === 403
        ? 'Not signed in: the console needs an admin token or admin API key (a customer\'s gets no data).'
        : err.status === 401 ? 'Not signed in: ' + err.message : err.message;
    }
  });
  $('#signout').addEventListener('click', () => signOut(''));
  window.addEventListener('hashchange', route);
  await session('GET').catch(() => {});
  route();
});
