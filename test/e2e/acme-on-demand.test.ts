/**
 * On-demand TLS (Caddy's term) against a real CA: a name no config lists is
 * obtained at its first handshake when the `ask` endpoint approves it, within
 * the on-demand rate; a refused name gets the placeholder and no order.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { captureLog } from '../proxy/log-capture.ts';
import { acmeLab, acmeYaml, metricValue, servedCertificate, startAcmeVelocity, waitUntil } from './acme-support.ts';

test('on-demand TLS: an approved name is obtained during its first handshake; refused names and names past the rate get the placeholder', async (t) => {
  const lab = await acmeLab(t);
  if (!lab) return;
  const asked: string[] = [];
  const ask = createServer((req, res) => {
    const domain = new URL(req.url ?? '/', 'http://x').searchParams.get('domain') ?? '';
    asked.push(domain);
    res.writeHead(domain.endsWith('.customers.example.com') ? 200 : 403).end();
  });
  await new Promise<void>((r) => ask.listen(0, '127.0.0.1', r));
  t.after(() => ask.close());
  const askUrl = `http://127.0.0.1:${(ask.address() as AddressInfo).port}/check`;
  const log = captureLog('info');
  const velocity = await startAcmeVelocity(t, acmeYaml(lab, { challenges: ['tls-alpn-01', 'http-01'], extra: [`on_demand: { ask: "${askUrl}", rate: 1/m }`] }), log.logger);

  // The first handshake for an approved name waits for the order and gets the real certificate.
  const first = await servedCertificate(lab.httpsPort, 'a.customers.example.com');
  assert.match(String(first.issuer.CN), /Pebble Intermediate/);
  assert.match(first.subjectaltname ?? '', /DNS:a\.customers\.example\.com/);
  assert.deepEqual(asked, ['a.customers.example.com']);
  // Later handshakes are served from memory: no second question, no second order.
  assert.equal((await servedCertificate(lab.httpsPort, 'a.customers.example.com')).serialNumber, first.serialNumber);
  assert.equal(asked.length, 1);

  // Refused by the endpoint: the placeholder, and the refusal is remembered (one question for two handshakes).
  assert.match(String((await servedCertificate(lab.httpsPort, 'evil.example.com')).issuer.CN), /placeholder/);
  assert.match(String((await servedCertificate(lab.httpsPort, 'evil.example.com')).issuer.CN), /placeholder/);
  assert.equal(asked.filter((d) => d === 'evil.example.com').length, 1);

  // Approved, but the on-demand rate (1 per minute) is used up: the placeholder and a log line.
  assert.match(String((await servedCertificate(lab.httpsPort, 'b.customers.example.com')).issuer.CN), /placeholder/);
  await waitUntil('the rate log line', () => log.find(/on-demand TLS: rate reached/).length > 0);
  // Orders: the configured name and the one on-demand name.
  await waitUntil('both orders', async () => (await metricValue(velocity, /^velocity_acme_orders_total\{result="success"\}/)) === 2);
});
