// The fleet from GET /api/v1/fleet (fleet mode only): every instance with its health, the
// config revision it runs (or the error that made it refuse a newer one) and its request and
// error rates, read through this one instance. The section stays hidden outside fleet mode.
import { clockTime, el, fmt, poll, setText } from './dom.js';

const REFRESH_MS = 2000;

export function loadFleet(headers) {
  const section = document.getElementById('fleet-section');
  const link = document.getElementById('fleet-etcd');
  const tbody = document.getElementById('fleet-table').querySelector('tbody');

  const render = (fleet) => {
    section.hidden = !fleet;
    if (!fleet) return;
    section.dataset.etcd = fleet.etcd.reachable ? 'reachable' : 'unreachable';
    setText(
      link,
      fleet.etcd.reachable
        ? `etcd reachable; this instance (${fleet.self}) runs revision ${fleet.revision ?? '–'}.`
        : `etcd unreachable since ${clockTime(fleet.etcd.since)} (${fleet.etcd.error ?? 'no answer'}): serving the last config, retrying; the list below is the last known one.`,
    );
    tbody.replaceChildren();
    for (const m of fleet.instances) {
      const tr = tbody.appendChild(el('tr'));
      tr.dataset.id = m.id;
      tr.dataset.config = m.config.ok ? 'ok' : 'refused';
      tr.appendChild(el('td', 'id', m.id === fleet.self ? `${m.id} (this one)` : m.id));
      tr.appendChild(el('td', 'health', m.health));
      const config = tr.appendChild(el('td', 'revision', m.config.ok ? (m.config.revision ?? '–') : `${m.config.revision ?? '–'} (refused a newer one)`));
      if (!m.config.ok) config.title = (m.config.errors ?? []).join('\n');
      tr.appendChild(el('td', 'rps', fmt(m.requests_per_second)));
      tr.appendChild(el('td', 'eps', fmt(m.errors_per_second)));
      tr.appendChild(el('td', 'version', m.version));
      tr.appendChild(el('td', 'listen', m.listen.join(', ')));
      tr.appendChild(el('td', 'reported', clockTime(m.reported_at)));
    }
  };

  poll('/api/v1/fleet', headers, render, REFRESH_MS);
}
