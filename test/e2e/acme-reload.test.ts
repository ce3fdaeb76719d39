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
import { certDir, createCa, issueCert } from '../support/certs.ts';
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

test('reload: acme added to an https listener that stays open is served there; removed, the files serve again', async (t) => {
  const lab = await acmeLab(t);
  if (!lab) return;
  const ca = createCa(certDir(t));
  const file = issueCert(ca, ['files.example.com']);
  const withAcme = acmeYaml(lab, { hosts: ['files.example.com', 'shop.example.com'], extra: ['hosts: [shop.example.com]'] }).replace(
    '    tls:\n',
    `    tls:\n      certificates: [{ cert: ${file.cert}, key: ${file.key} }]\n`,
  );
  const filesOnly = withAcme.replace(/^ {6}acme:\n(?: {8}.*\n)+/m, '');
  assert.doesNotMatch(filesOnly, /acme:/);
  const velocity = await startAcmeVelocity(t, filesOnly);
  assert.equal(await chainsTo(lab.httpsPort, 'files.example.com', ca.cert), true);

  const added = await velocity.reload(parseConfig(withAcme, 'reload.yaml').config);
  assert.equal(added.ok, true);
  assert.equal(added.restart_required, undefined, 'nothing waits for a restart');
  await waitUntil('the certificate from the CA served for the acme name', () => chainsTo(lab.httpsPort, 'shop.example.com', lab.pebble.issuingRoot), 90_000);

  const removed = await velocity.reload(parseConfig(filesOnly, 'reload.yaml').config);
  assert.equal(removed.ok, true);
  assert.equal(removed.restart_required, undefined);
  await waitUntil('no certificate from the CA once acme is gone', async () => !(await chainsTo(lab.httpsPort, 'shop.example.com', lab.pebble.issuingRoot)), 30_000);
});
