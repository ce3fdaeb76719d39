/**
 * Automatic HTTPS takes part in the reload driver: a name added to a service by a
 * reload is ordered from the CA (pebble) and served, and a changed CA issues the
 * next certificate, with nothing waiting for a restart.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { connect } from 'node:tls';
import { parseConfig } from '../../src/config/load.ts';
import { startPebble } from '../support/pebble.ts';
import { acmeLab, acmeYaml, certificateStatus, startAcmeVelocity, waitForIssued, waitUntil } from './acme-support.ts';

/** Whether the certificate served for `servername` verifies against the root in `rootFile` (its chain leads there). */
function chainsTo(port: number, servername: string, rootFile: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port, servername, ca: readFileSync(rootFile), ALPNProtocols: ['http/1.1'] }, () => {
      socket.end();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
    socket.setTimeout(10_000, () => socket.destroy(new Error('TLS handshake timed out')));
  });
}

test('reload: a host added to a service with an acme listener gets its certificate without a restart', async (t) => {
  const lab = await acmeLab(t);
  if (!lab) return;
  const velocity = await startAcmeVelocity(t, acmeYaml(lab, { hosts: ['shop.example.com'] }));
  await waitForIssued(lab.httpsPort, 'shop.example.com');

  const result = await velocity.reload(parseConfig(acmeYaml(lab, { hosts: ['shop.example.com', 'new.example.com'] }), 'reload.yaml').config);
  assert.equal(result.ok, true);
  assert.equal(result.restart_required, undefined, 'nothing waits for a restart');
  const cert = await waitForIssued(lab.httpsPort, 'new.example.com');
  assert.match(cert.subjectaltname ?? '', /DNS:new\.example\.com/);
  assert.equal((await certificateStatus(velocity, 'new.example.com')).status, 'valid');
});

test('reload: a changed ACME CA issues the next certificate, served by the listener that stayed open', async (t) => {
  const lab = await acmeLab(t);
  if (!lab) return;
  // A second CA validating against the same listeners: another root, another directory URL.
  const other = await startPebble(t, { httpPort: lab.httpPort, tlsPort: lab.httpsPort });
  if (!other) return;
  const velocity = await startAcmeVelocity(t, acmeYaml(lab));
  const first = await waitForIssued(lab.httpsPort, 'shop.example.com');
  assert.equal(await chainsTo(lab.httpsPort, 'shop.example.com', lab.pebble.issuingRoot), true, 'the first certificate comes from the first CA');

  const result = await velocity.reload(parseConfig(acmeYaml({ ...lab, pebble: other }), 'reload.yaml').config);
  assert.equal(result.ok, true);
  assert.equal(result.restart_required, undefined, 'nothing waits for a restart');
  await waitUntil('a certificate from the new CA', () => chainsTo(lab.httpsPort, 'shop.example.com', other.issuingRoot), 90_000);
  const second = await waitForIssued(lab.httpsPort, 'shop.example.com', { notSerial: first.serialNumber });
  assert.notEqual(second.fingerprint256, first.fingerprint256);
  const status = await certificateStatus(velocity, 'shop.example.com');
  assert.equal(status.ca, other.directory);
  assert.equal(status.status, 'valid');
});
