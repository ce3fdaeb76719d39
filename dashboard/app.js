// The Velocity dashboard: renders /api/v1/live snapshots, keeps the last few
// minutes for the charts, and sends changes through the admin API with the token
// the user typed (kept in sessionStorage only, so it dies with the tab).

import { loadCertificates } from './certificates.js';
import { drawChart } from './charts.js';
import { clockTime, el, fillStats, fmt, pct, setText } from './dom.js';
import { loadFleet } from './fleet.js';
import { loadLogs } from './logs.js';
import { runStream } from './stream.js';

/** Snapshots kept per service: five minutes at one a second. */
const SLOTS = 300;
const MIN_SLOTS = 60;
const TOKEN_KEY = 'velocity-admin-token';

const $ = (id) => document.getElementById(id);
const status = $('status');
const message = $('message');
const services = $('services');
const history = new Map();
const sections = new Map();
/** Overview sums over the kept window. */
const totals = [];
let latest;

// ---- token and API calls ----

let token = sessionStorage.getItem(TOKEN_KEY) ?? '';
let tokenWaiters = [];

function authHeaders() {
  return token ? { authorization: `Bearer ${token}` } : {};
}

function showTokenState() {
  $('token-forget').hidden = !token;
  $('token-input').placeholder = token ? 'token set for this tab' : 'needed for changes';
}

function setToken(value) {
  token = value;
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
  showTokenState();
  for (const resolve of tokenWaiters) resolve();
  tokenWaiters = [];
}

function say(text, kind = 'info') {
  message.hidden = !text;
  message.dataset.kind = kind;
  setText(message, text);
}

function askForToken(text) {
  say(text, 'error');
  $('token-input').focus();
}

/** A change through the admin API. Returns the JSON answer, or undefined after showing why it failed. */
async function change(method, path, body) {
  if (!token) {
    askForToken('Enter the admin token first (top right); nothing was changed.');
    return undefined;
  }
  let res;
  try {
    res = await fetch(path, {
      method,
      headers: { ...authHeaders(), ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
  } catch {
    say('Velocity did not answer; nothing was changed.', 'error');
    return undefined;
  }
  const answer = await res.json().catch(() => ({}));
  if (res.status === 401) {
    setToken('');
    askForToken('The admin token was refused (401: wrong or missing token). Nothing was changed; enter the right token.');
    return undefined;
  }
  if (!res.ok) {
    say(`Refused (${res.status}): ${answer.error ?? res.statusText}`, 'error');
    return undefined;
  }
  return answer;
}

$('token-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const input = $('token-input');
  if (!input.value) return;
  setToken(input.value.trim());
  input.value = '';
  say('Token kept for this tab only; it is checked on your first change.', 'info');
});
$('token-forget').addEventListener('click', () => {
  setToken('');
  say('Token forgotten.', 'info');
});
showTokenState();

// ---- rendering ----

function record(name, s) {
  let h = history.get(name);
  if (!h) history.set(name, (h = []));
  h.push({ rps: s.rps, err: s.error_rate * 100, p50: s.p50_ms, p95: s.p95_ms, p99: s.p99_ms });
  if (h.length > SLOTS) h.shift();
  return h;
}

function sectionFor(name) {
  let view = sections.get(name);
  if (view) return view;
  const node = $('service-template').content.firstElementChild.cloneNode(true);
  node.dataset.service = name;
  setText(node.querySelector('.service-name'), `Service ${name}`);
  view = { node, rows: new Map(), tbody: node.querySelector('tbody'), stats: node.querySelector('.stats') };
  for (const svg of node.querySelectorAll('svg')) svg.setAttribute('aria-label', `${svg.dataset.chart} chart for ${name}`);
  sections.set(name, view);
  services.appendChild(node);
  return view;
}

function renderService(s) {
  const view = sectionFor(s.name);
  const h = record(s.name, s);
  fillStats(view.stats, [
    ['Requests/s', fmt(s.rps)],
    ['5xx', pct(s.error_rate)],
    ['p50', `${fmt(s.p50_ms)} ms`],
    ['p95', `${fmt(s.p95_ms)} ms`],
    ['p99', `${fmt(s.p99_ms)} ms`],
    ['Queued', fmt(s.queue_length, 0)],
    ['Rate-limited/s', fmt(s.rate_limited, 0)],
    ['Denied/s', fmt(s.denied, 0)],
  ]);
  // The x axis grows with the history, from one minute up to the five kept.
  const slots = Math.min(SLOTS, Math.max(MIN_SLOTS, h.length));
  const chart = (kind, series) => {
    const svg = view.node.querySelector(`svg[data-chart="${kind}"]`);
    const top = drawChart(svg, series, slots);
    setText(svg.parentElement.querySelector('.axis'), `max ${fmt(top)} · last ${slots < 120 ? `${slots} s` : `${Math.round(slots / 60)} min`}`);
  };
  chart('rps', [h.map((p) => p.rps)]);
  chart('err', [h.map((p) => p.err)]);
  chart('lat', [h.map((p) => p.p50), h.map((p) => p.p95), h.map((p) => p.p99)]);
  view.node.querySelector('.no-servers').hidden = s.servers.length > 0;
  view.node.querySelector('table').hidden = s.servers.length === 0;
  const seen = new Set();
  for (const server of s.servers) {
    seen.add(server.id);
    renderServer(view, s.name, server);
  }
  for (const [id, row] of view.rows) {
    if (!seen.has(id)) {
      row.tr.remove();
      view.rows.delete(id);
    }
  }
}

function serverRow(view, service, id) {
  const tr = el('tr');
  tr.dataset.server = id;
  const cells = {};
  for (const key of ['name', 'state', 'health', 'circuit', 'weight', 'inflight', 'share', 'errors', 'actions']) cells[key] = tr.appendChild(el('td', key));
  const name = cells.name.appendChild(el('strong', 'id', id));
  name.title = id;
  cells.url = cells.name.appendChild(el('span', 'url muted'));
  // The share of traffic as text and as a bar (the bar is decoration; the text is what screen readers get).
  cells.shareText = cells.share.appendChild(el('span', 'share-text'));
  const bar = cells.share.appendChild(el('span', 'bar'));
  bar.setAttribute('aria-hidden', 'true');
  cells.shareFill = bar.appendChild(el('span', 'fill'));
  const toggle = cells.actions.appendChild(el('button', 'toggle', 'Drain'));
  toggle.type = 'button';
  const weightLabel = cells.actions.appendChild(el('label', 'weight-set'));
  weightLabel.appendChild(el('span', 'sr', `Weight for ${id}`));
  const weight = weightLabel.appendChild(el('input'));
  Object.assign(weight, { type: 'number', min: '1', step: '1', inputMode: 'numeric' });
  const setWeight = cells.actions.appendChild(el('button', 'set-weight', 'Set weight'));
  setWeight.type = 'button';
  const path = `/api/v1/services/${encodeURIComponent(service)}/servers/${encodeURIComponent(id)}`;
  toggle.addEventListener('click', async () => {
    const next = toggle.dataset.next;
    const done = await change('PATCH', path, { state: next });
    if (done) say(`${id}: ${next === 'draining' ? 'draining (no new requests)' : 'enabled'}.`, 'ok');
  });
  // Enter in the weight field sets it, as a form would.
  weight.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') setWeight.click();
  });
  setWeight.addEventListener('click', async () => {
    const n = Number(weight.value);
    if (!Number.isInteger(n) || n < 1) return say('A weight is a whole number of 1 or more.', 'error');
    const done = await change('PATCH', path, { weight: n });
    if (done) say(`${id}: weight ${done.weight}.`, 'ok');
  });
  const row = { tr, cells, toggle, weight, setWeight };
  view.rows.set(id, row);
  view.tbody.appendChild(tr);
  return row;
}

function renderServer(view, service, s) {
  const row = view.rows.get(s.id) ?? serverRow(view, service, s.id);
  const { cells } = row;
  const healthy = s.health.active === 'up' && s.health.passive === 'ok';
  row.tr.dataset.health = healthy ? 'up' : 'down';
  row.tr.dataset.state = s.state;
  setText(cells.url, s.url);
  setText(cells.state, s.state);
  setText(cells.health, `${s.health.active === 'up' ? '● up' : '✕ down'}${s.health.passive === 'ejected' ? ' · ejected' : ''}`);
  setText(cells.circuit, s.circuit);
  setText(cells.weight, `${s.weight} (eff. ${fmt(s.effective_weight, 2)})`);
  setText(cells.inflight, s.in_flight);
  setText(cells.shareText, pct(s.share));
  cells.shareFill.style.width = `${Math.min(100, Math.max(0, s.share * 100)).toFixed(1)}%`;
  setText(cells.errors, s.errors_recent);
  cells.errors.title = s.last_error ? `last: ${s.last_error.status} ${s.last_error.code ?? ''} at ${clockTime(s.last_error.at)}` : '';
  const draining = s.state !== 'enabled';
  row.toggle.dataset.next = draining ? 'enabled' : 'draining';
  setText(row.toggle, draining ? 'Enable' : 'Drain');
  row.toggle.setAttribute('aria-label', `${draining ? 'Enable' : 'Drain'} ${s.id}`);
  row.toggle.disabled = s.state === 'removing';
  // Never overwrite what the user is typing, nor what they tabbed to its button to set.
  if (document.activeElement !== row.weight && document.activeElement !== row.setWeight) row.weight.value = String(s.weight);
}

function renderBlocklist(list) {
  const table = $('block-table');
  const tbody = table.querySelector('tbody');
  table.hidden = list.count === 0;
  setText($('block-empty'), list.count === 0 ? 'No blocked addresses.' : list.count > list.entries.length ? `Showing ${list.entries.length} of ${list.count}.` : '');
  const key = JSON.stringify(list.entries);
  if (tbody.dataset.key === key) return;
  const focused = document.activeElement?.dataset?.cidr;
  tbody.dataset.key = key;
  tbody.replaceChildren();
  for (const e of list.entries) {
    const tr = tbody.appendChild(el('tr'));
    tr.appendChild(el('td', 'mono', e.cidr));
    tr.appendChild(el('td', '', e.reason));
    tr.appendChild(el('td', '', e.source));
    tr.appendChild(el('td', '', e.expires_at ? clockTime(e.expires_at) : 'never'));
    const button = tr.appendChild(el('td')).appendChild(el('button', '', 'Unblock'));
    button.type = 'button';
    button.dataset.cidr = e.cidr;
    button.setAttribute('aria-label', `Unblock ${e.cidr}`);
    button.addEventListener('click', async () => {
      if (await change('DELETE', `/api/v1/blocklist/${encodeURIComponent(e.cidr)}`)) say(`${e.cidr} unblocked.`, 'ok');
    });
    if (focused === e.cidr) button.focus();
  }
}

function render(snap) {
  latest = snap;
  totals.push({ limited: snap.rate_limited, denied: snap.denied, unrouted: snap.unrouted });
  if (totals.length > SLOTS) totals.shift();
  const sum = (k) => totals.reduce((a, t) => a + t[k], 0);
  const rps = snap.services.reduce((a, s) => a + s.rps, 0);
  const reload = snap.reload.last;
  fillStats($('overview'), [
    ['Requests/s', fmt(rps)],
    ['Services', snap.services.length],
    ['Rate-limited (5 min)', sum('limited')],
    ['Denied (5 min)', sum('denied')],
    ['Unrouted (5 min)', sum('unrouted')],
    ['Blocked addresses', snap.blocklist.count],
    ['Config version', snap.reload.version],
    ['Last reload', reload ? `${reload.ok ? 'ok' : 'FAILED'} at ${clockTime(reload.at)}${reload.errors ? `: ${reload.errors.join('; ')}` : ''}` : 'none yet'],
    ['Restart required for', reload?.restart_required ? reload.restart_required.join(', ') : 'nothing'],
  ]);
  const names = new Set(snap.services.map((s) => s.name));
  for (const [name, view] of sections) {
    if (!names.has(name)) {
      view.node.remove();
      sections.delete(name);
      history.delete(name);
    }
  }
  for (const s of snap.services) renderService(s);
  renderBlocklist(snap.blocklist);
  setText(status, `live · ${clockTime(snap.at)}`);
}

// ---- blocklist form and stream ----

$('block-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const form = e.currentTarget;
  const data = new FormData(form);
  const body = { cidr: String(data.get('cidr')).trim() };
  if (data.get('ttl')) body.ttl = String(data.get('ttl')).trim();
  if (data.get('reason')) body.reason = String(data.get('reason'));
  const added = await change('POST', '/api/v1/blocklist', body);
  if (added) {
    say(`${added.cidr} blocked.`, 'ok');
    form.reset();
  }
});

loadLogs(authHeaders);
loadCertificates(authHeaders, change, say);
loadFleet(authHeaders);

runStream('/api/v1/live', authHeaders, {
  snapshot: render,
  connected() {
    document.body.dataset.connection = 'live';
  },
  disconnected(ms) {
    document.body.dataset.connection = 'down';
    setText(status, `disconnected — retrying in ${Math.ceil(ms / 1000)} s`);
  },
  unauthorized() {
    document.body.dataset.connection = 'auth';
    setText(status, 'the admin listener needs the token to show data');
    if (token) setToken('');
    askForToken(latest ? 'The admin token was refused (401). Enter the right token.' : 'This admin listener needs the admin token even to read. Enter it above.');
    return new Promise((resolve) => tokenWaiters.push(resolve));
  },
});
