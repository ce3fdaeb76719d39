// ACME certificates from GET /api/v1/certificates: names, issuer, expiry, next renewal, last attempt and
// error, with a "Renew now" button per name. The section stays hidden when Velocity manages none.
import { el, poll, setText } from './dom.js';

const REFRESH_MS = 10000;

const day = (iso) => (iso ? new Date(iso).toISOString().replace('T', ' ').slice(0, 16) : '–');

export function loadCertificates(headers, change, say) {
  const section = document.getElementById('certs-section');
  const tbody = document.getElementById('certs-table').querySelector('tbody');

  const render = (certs) => {
    section.hidden = certs.length === 0;
    tbody.replaceChildren();
    for (const c of certs) {
      const tr = tbody.appendChild(el('tr'));
      tr.dataset.name = c.name;
      tr.dataset.status = c.status;
      tr.appendChild(el('td', 'name', c.name));
      tr.appendChild(el('td', 'status', c.status));
      tr.appendChild(el('td', 'issuer', c.issuer ?? '–'));
      tr.appendChild(el('td', 'expires', day(c.not_after)));
      tr.appendChild(el('td', 'renew-at', day(c.renew_at)));
      tr.appendChild(el('td', 'attempt', day(c.last_attempt)));
      const error = tr.appendChild(el('td', 'error', c.last_error ? `${c.last_error.kind}: ${c.last_error.message}` : '–'));
      if (c.last_error) error.title = `at ${c.last_error.at}, ${c.failures} failure(s) in a row`;
      const button = tr.appendChild(el('td', 'actions')).appendChild(el('button', 'renew', 'Renew now'));
      button.type = 'button';
      button.setAttribute('aria-label', `Renew the certificate of ${c.name} now`);
      button.addEventListener('click', async () => {
        button.disabled = true;
        setText(button, 'Renewing…');
        say(`${c.name}: renewing…`, 'info');
        const done = await change('POST', `/api/v1/certificates/${encodeURIComponent(c.name)}/renew`);
        if (done) {
          const error = done.certificates?.find((x) => x.last_error)?.last_error;
          say(
            done.renewed
              ? `${c.name}: renewed; new connections get the new certificate.`
              : `${c.name}: not renewed (${error?.kind}: ${error?.message}); the old certificate stays.`,
            done.renewed ? 'ok' : 'error',
          );
        }
        await refresh();
      });
    }
  };

  const refresh = poll('/api/v1/certificates', headers, (body) => render(Array.isArray(body?.certificates) ? body.certificates : []), REFRESH_MS);
}
