/**
 * Automatic HTTPS takes part in the reload driver: a name added to a service by a
 * reload is ordered from the CA (pebble) and served, with nothing waiting for a restart.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfig } from '../../src/config/load.ts';
import { acmeLab, acmeYaml, certificateStatus, startAcmeVelocity, waitForIssued } from './acme-support.ts';

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
