/**
 * Renewal with a real CA (pebble): `renew now` under load drops no request and
 * new connections get the new certificate at once; a short-lived certificate
 * renews by itself at two thirds of its lifetime; the CA down keeps the old
 * certificate, retries with growing backoff and recovers; an expiry warning is a
 * metric and a log line.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { Agent, request } from 'undici';
import { captureLog } from '../proxy/log-capture.ts';
import { startBackendProcess } from '../support/velocity.ts';
import { acmeLab, acmeYaml, adminApi, certificateStatus, metricValue, servedCertificate, startAcmeVelocity, waitForIssued, waitUntil } from './acme-support.ts';

test('renew now under bounded load: no request fails, and new connections get the new certificate at once', async (t) => {
  const lab = await acmeLab(t);
  if (!lab) return;
  const backend = await startBackendProcess(t, 'shop');
  const velocity = await startAcmeVelocity(t, acmeYaml(lab, { backend: backend.port }));
  const first = await waitForIssued(lab.httpsPort, 'shop.example.com');
  const ca = readFileSync(lab.pebble.issuingRoot);

  // Four clients; each opens a fresh verified connection every 10 requests. Bounded in requests and time.
  const MAX_REQUESTS = 3000;
  const deadline = Date.now() + 60_000;
  let sent = 0;
  let failed = 0;
  const errors: string[] = [];
  let stop = false;
  const client = async () => {
    while (!stop && sent < MAX_REQUESTS && Date.now() < deadline) {
      const agent = new Agent({ connect: { servername: 'shop.example.com', ca } });
      try {
        for (let i = 0; i < 10 && !stop; i++) {
          sent++;
          try {
            const res = await request(`https://127.0.0.1:${lab.httpsPort}/`, { dispatcher: agent, headers: { host: 'shop.example.com' } });
            await res.body.dump();
            if (res.statusCode !== 200) throw new Error(`status ${res.statusCode}`);
          } catch (err) {
            failed++;
            if (errors.length < 5) errors.push((err as Error).message);
          }
        }
      } finally {
        await agent.close();
      }
    }
  };
  const load = Promise.all([client(), client(), client(), client()]);
  await waitUntil('some load before the renewal', () => sent >= 40);
  const renewed = await adminApi(velocity, 'POST', '/api/v1/certificates/shop.example.com/renew');
  assert.equal(renewed.status, 200);
  assert.equal(renewed.body.renewed, true, JSON.stringify(renewed.body));
  const second = await waitForIssued(lab.httpsPort, 'shop.example.com', { notSerial: first.serialNumber, timeoutMs: 30_000 });
  assert.notEqual(second.serialNumber, first.serialNumber);
  assert.equal(renewed.body.certificates[0]?.serial?.toUpperCase(), second.serialNumber.toUpperCase(), 'the API reports the certificate now served');
  const atRenewal = sent;
  await waitUntil('load after the renewal', () => sent >= atRenewal + 40 || sent >= MAX_REQUESTS || Date.now() >= deadline);
  stop = true;
  await load;
  assert.equal(failed, 0, `${failed} of ${sent} requests failed: ${errors.join('; ')}`);
  t.diagnostic(`${sent} requests across the renewal, none failed`);
  assert.equal(await metricValue(velocity, /^velocity_acme_orders_total\{result="success"\}/), 2);
});

test('the CA down at renewal: the old certificate stays, retries back off, and the renewal succeeds when the CA returns', async (t) => {
  const lab = await acmeLab(t);
  if (!lab) return;
  const log = captureLog('info');
  const velocity = await startAcmeVelocity(t, acmeYaml(lab), log.logger);
  const first = await waitForIssued(lab.httpsPort, 'shop.example.com');

  await lab.pebble.stop();
  const renewed = await adminApi(velocity, 'POST', '/api/v1/certificates/shop.example.com/renew');
  assert.equal(renewed.status, 200);
  assert.equal(renewed.body.renewed, false);
  const status = renewed.body.certificates[0];
  assert.equal(status?.last_error?.kind, 'ca_unreachable');
  assert.match(String(status.last_error?.message), /cannot reach the CA at https:\/\/127\.0\.0\.1:\d+: ECONNREFUSED/);
  assert.equal(status.status, 'valid');
  assert.equal((await servedCertificate(lab.httpsPort, 'shop.example.com')).serialNumber, first.serialNumber, 'the old certificate is still served');

  // Retries on their own, each wait at least as long as the one before (base 300ms, max 2s, jitter in the upper half).
  await waitUntil('three failed attempts', () => log.find(/not obtained \(ca_unreachable\)/).length >= 3, 60_000).catch((err) => {
    throw new Error(`${err.message}; log: ${JSON.stringify(log.lines.slice(-8))}`);
  });
  const failures = log.find(/not obtained \(ca_unreachable\)/);
  const waits = failures.map((l) => Number(l.retryInMs));
  assert.ok(waits[1]! >= waits[0]! && waits[2]! >= waits[1]!, `backoff grows: ${waits.join(', ')}`);
  assert.ok(
    waits.every((w) => w <= 2000),
    `backoff capped at retry.max: ${waits.join(', ')}`,
  );
  assert.match(String(failures[0]?.msg), /the current certificate \(valid until .+\) stays in use; next attempt in \d+ s/);
  assert.ok((await metricValue(velocity, /^velocity_acme_errors_total\{kind="ca_unreachable"\}/)) >= 3);
  assert.ok((await metricValue(velocity, /^velocity_acme_orders_total\{result="failure"\}/)) >= 3);
  assert.equal((await servedCertificate(lab.httpsPort, 'shop.example.com')).serialNumber, first.serialNumber);

  await lab.pebble.start();
  const second = await waitForIssued(lab.httpsPort, 'shop.example.com', { notSerial: first.serialNumber, timeoutMs: 60_000 });
  assert.match(String(second.issuer.CN), /Pebble Intermediate/);
  const after = await certificateStatus(velocity, 'shop.example.com');
  assert.equal(after.last_error, null);
  assert.equal(after.failures, 0);
});

test('a short-lived certificate renews by itself at two thirds of its lifetime; unrenewed near expiry it raises the warning metric and log line', async (t) => {
  const lab = await acmeLab(t, { validitySeconds: 15 });
  if (!lab) return;
  const log = captureLog('info');
  const velocity = await startAcmeVelocity(t, acmeYaml(lab), log.logger);
  const first = await waitForIssued(lab.httpsPort, 'shop.example.com');
  const c = await certificateStatus(velocity, 'shop.example.com');
  const notBefore = Date.parse(String(c.not_before));
  const notAfter = Date.parse(String(c.not_after));
  t.diagnostic(`pebble issued ${c.not_before} → ${c.not_after}`);
  assert.ok(Math.abs(Date.parse(String(c.renew_at)) - (notBefore + ((notAfter - notBefore) * 2) / 3)) < 1, 'renewal is scheduled two thirds into the lifetime');

  // No renew now: the schedule alone renews it.
  const second = await waitForIssued(lab.httpsPort, 'shop.example.com', { notSerial: first.serialNumber, timeoutMs: 60_000 });
  assert.ok(second.serialNumber);
  assert.equal(await metricValue(velocity, /^velocity_acme_certificate_expiring\{name="shop.example.com"\}/), 0);

  // Now the CA goes away: the next renewal fails until the certificate is close to expiry.
  await lab.pebble.stop();
  await waitUntil('the expiry warning metric', async () => (await metricValue(velocity, /^velocity_acme_certificate_expiring\{name="shop.example.com"\}/)) === 1, 60_000);
  await waitUntil('the expiry warning log line', () => log.find(/ACME certificate for shop\.example\.com (expires in .* and is not renewed yet|expired on)/).length > 0, 30_000);
});
