/**
 * Automatic HTTPS against a real CA (pebble): certificates obtained through
 * HTTP-01 on Velocity's redirect listener and through TLS-ALPN-01 in its TLS
 * handshake, stored privately, served at once, and verified by openssl against
 * pebble's root.
 */
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { request } from 'undici';
import { captureLog } from '../proxy/log-capture.ts';
import { runCommand } from '../support/spawn.ts';
import { acmeLab, acmeYaml, adminApi, metricValue, servedCertificate, startAcmeVelocity, waitForIssued, waitUntil } from './acme-support.ts';

async function opensslVerifies(port: number, servername: string, root: string): Promise<{ ok: boolean; output: string }> {
  const r = await runCommand(
    'openssl',
    ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', servername, '-CAfile', root, '-verify_return_error', '-verify_hostname', servername],
    {
      input: '',
      timeoutMs: 30_000,
    },
  );
  return { ok: r.code === 0 && /Verify return code: 0 \(ok\)/.test(r.stdout), output: `${r.stdout}\n${r.stderr}` };
}

test('HTTP-01: pebble validates on the redirect listener; the certificate is served and its chain verifies against pebble’s root', async (t) => {
  const lab = await acmeLab(t);
  if (!lab) return;
  const log = captureLog('info');
  const started = Date.now();
  const velocity = await startAcmeVelocity(t, acmeYaml(lab, { challenges: ['http-01'] }), log.logger);
  const cert = await waitForIssued(lab.httpsPort, 'shop.example.com');
  const tookMs = Date.now() - started;
  assert.match(String(cert.issuer.CN), /Pebble Intermediate/);
  assert.match(cert.subjectaltname ?? '', /DNS:shop\.example\.com/);
  t.diagnostic(`start to a served certificate (HTTP-01): ${tookMs} ms`);

  const verified = await opensslVerifies(lab.httpsPort, 'shop.example.com', lab.pebble.issuingRoot);
  assert.ok(verified.ok, `openssl s_client -verify_return_error failed:\n${verified.output}`);

  // Account key and certificate on disk, readable by the owner only.
  const ca = new URL(lab.pebble.directory);
  const caDir = `${ca.hostname}-${ca.port}-dir`;
  for (const file of [join(lab.storage, 'accounts', caDir, 'account.key'), join(lab.storage, 'certificates', caDir, 'shop.example.com', 'shop.example.com.pem')])
    assert.equal(statSync(file).mode & 0o777, 0o600, `${file} is 0600`);

  const { body } = await adminApi(velocity, 'GET', '/api/v1/certificates');
  const entry = body.certificates.find((c) => c.name === 'shop.example.com');
  assert.ok(entry);
  assert.equal(entry.status, 'valid');
  assert.match(String(entry.issuer), /Pebble Intermediate/);
  assert.equal(entry.last_error, null);
  assert.ok(entry.last_attempt && entry.last_renewal && entry.not_after && entry.renew_at);
  assert.equal(await metricValue(velocity, /^velocity_acme_orders_total\{result="success"\}/), 1);
  assert.ok((await metricValue(velocity, /^velocity_acme_certificate_expiry_timestamp_seconds\{name="shop.example.com"\}/)) * 1000 > Date.now());
  assert.equal(log.find(/certificate for shop\.example\.com obtained from the CA; new connections get it now/).length, 1);

  // A challenge path with a token nobody holds goes on to the redirect, as any other request.
  const other = await request(`http://127.0.0.1:${lab.httpPort}/.well-known/acme-challenge/unknown-token`, { headers: { host: 'shop.example.com' } });
  await other.body.dump();
  assert.equal(other.statusCode, 308);
});

test('TLS-ALPN-01: pebble validates in the TLS handshake of the https listener alone; normal clients never see the challenge certificate', async (t) => {
  const lab = await acmeLab(t);
  if (!lab) return;
  const started = Date.now();
  await startAcmeVelocity(t, acmeYaml(lab, { challenges: ['tls-alpn-01'], redirect: false, hosts: ['api.example.com', 'www.example.com'] }));
  const [api, www] = await Promise.all([waitForIssued(lab.httpsPort, 'api.example.com'), waitForIssued(lab.httpsPort, 'www.example.com')]);
  t.diagnostic(`start to served certificates for two names (TLS-ALPN-01): ${Date.now() - started} ms`);
  assert.match(api.subjectaltname ?? '', /DNS:api\.example\.com/);
  assert.match(www.subjectaltname ?? '', /DNS:www\.example\.com/);
  for (const name of ['api.example.com', 'www.example.com']) {
    const verified = await opensslVerifies(lab.httpsPort, name, lab.pebble.issuingRoot);
    assert.ok(verified.ok, `openssl s_client -verify_return_error failed for ${name}:\n${verified.output}`);
  }
  // A name nobody manages gets the placeholder (no file certificates on this listener), not a failed handshake.
  const unknown = await servedCertificate(lab.httpsPort, 'unknown.example.com');
  assert.match(String(unknown.issuer.CN), /placeholder/);
});

test('with worker threads (workers: 2), the threads answer TLS-ALPN-01 and serve the certificate from storage', async (t) => {
  const lab = await acmeLab(t);
  if (!lab) return;
  await startAcmeVelocity(t, acmeYaml(lab, { challenges: ['tls-alpn-01'], redirect: false, workers: 2 }));
  const cert = await waitForIssued(lab.httpsPort, 'shop.example.com');
  // New connections spread over both threads: soon (each thread polls storage every second) every one serves it.
  await waitUntil('eight connections in a row served the issued certificate', async () => {
    for (let i = 0; i < 8; i++) if ((await servedCertificate(lab.httpsPort, 'shop.example.com')).serialNumber !== cert.serialNumber) return false;
    return true;
  });
  const verified = await opensslVerifies(lab.httpsPort, 'shop.example.com', lab.pebble.issuingRoot);
  assert.ok(verified.ok, verified.output);
});
