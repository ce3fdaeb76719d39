// Recent access-log entries from GET /api/v1/logs with the form's filters.
// Without a log store the API answers 409; the panel then says so and stops polling.
import { clockTime, el, setText } from './dom.js';

const REFRESH_MS = 5000;
const FIELDS = ['service', 'server', 'status', 'path', 'client'];

export function loadLogs(headers) {
  const form = document.getElementById('logs-form');
  const table = document.getElementById('logs-table');
  const note = document.getElementById('logs-note');
  const tbody = table.querySelector('tbody');
  let timer;

  const refresh = async () => {
    clearTimeout(timer);
    const query = new URLSearchParams({ limit: '25' });
    const data = new FormData(form);
    for (const f of FIELDS) {
      const v = String(data.get(f) ?? '').trim();
      if (v) query.set(f, v);
    }
    let res;
    let body;
    try {
      res = await fetch(`/api/v1/logs?${query}`, { headers: headers(), cache: 'no-store' });
      body = await res.json().catch(() => ({}));
    } catch {
      setText(note, 'Could not reach Velocity; retrying.');
      timer = setTimeout(refresh, REFRESH_MS);
      return;
    }
    if (res.status === 409) {
      table.hidden = true;
      setText(note, 'No log store is configured (add logs: to the config to keep access-log entries here).');
      return;
    }
    if (!res.ok) {
      setText(note, res.status === 401 ? 'The admin token is needed to read the logs.' : `Logs: ${body.error ?? res.status}`);
    } else {
      fill(body.entries ?? []);
      setText(note, body.entries?.length ? '' : 'No entries match.');
    }
    if (!document.hidden) timer = setTimeout(refresh, REFRESH_MS);
  };

  const fill = (entries) => {
    table.hidden = entries.length === 0;
    tbody.replaceChildren();
    for (const e of entries) {
      const tr = tbody.appendChild(el('tr'));
      if (e.status >= 500) tr.className = 'bad';
      for (const [cls, v] of [
        ['', clockTime(e.time)],
        ['num', e.status],
        ['', e.method],
        ['mono path', e.path],
        ['', e.service ?? '–'],
        ['', e.server ?? '–'],
        ['num', Math.round(e.totalMs ?? e.total_ms ?? 0)],
        ['mono', e.clientIp ?? e.client_ip ?? ''],
      ])
        tr.appendChild(el('td', cls, v));
    }
  };

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    refresh();
  });
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) refresh();
  });
  refresh();
}
