/**
 * ACME failures that must never take Velocity down: a broken account key, a CA
 * that refuses the account (external account binding required), and two
 * instances sharing storage (one order, both serve it).
 */
import assert from 'node:assert/strict';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { request } from 'undici';
import { captureLog } from '../proxy/log-capture.ts';
import { freePort } from '../support/spawn.ts';
import {
  acmeLab,
  acmeYaml,
  assertOrderedOnceAndRenewedTogether,
  certificateStatus,
  metricValue,
  servedCertificate,
  startAcmeVelocity,
  waitForIssued,
  waitUntil,
} from './acme-support.ts';

const EAB_KID = 'kid-1';
const EAB_HMAC = 'zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W';

function accountKeyFile(storage: string, directory: string): string {
  const ca = new URL(directory);
  return join(storage, 'accounts', `${ca.hostname}-${ca.port}-dir`, 'account.key');
}

test('a bad account key is a clear log line and a metric; the listener serves the placeholder; removing the key recovers', async (t) => {
  const lab = await acmeLab(t);
  if (!lab) return;
  const keyFile = accountKeyFile(lab.storage, lab.pebble.directory);
  mkdirSync(join(keyFile, '..'), { recursive: true });
  writeFileSync(keyFile, '-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n', { mode: 0o600 });
  const log = captureLog('info');
  const velocity = await startAcmeVelocity(t, acmeYaml(lab), log.logger);

  await waitUntil('the account error', () => log.find(/not obtained \(account\)/).length > 0);
  const line = log.find(/not obtained \(account\)/)[0];
  assert.match(String(line?.msg), new RegExp(`the ACME account key ${keyFile.replace(/[.]/g, '\\.')} is not a valid PEM private key .*fix or remove it`));
  assert.match(String(line?.msg), /the placeholder certificate stays in use/);
  assert.ok((await metricValue(velocity, /^velocity_acme_errors_total\{kind="account"\}/)) >= 1);
  const entry = await certificateStatus(velocity, 'shop.example.com');
  assert.equal(entry.status, 'pending');
  assert.equal(entry.last_error?.kind, 'account');
  assert.match(String((await servedCertificate(lab.httpsPort, 'shop.example.com')).issuer.CN), /placeholder/);
  // Still serving plain HTTP too (the redirect), still answering the admin API: nothing crashed.
  const redirect = await request(`http://127.0.0.1:${lab.httpPort}/x`, { headers: { host: 'shop.example.com' } });
  await redirect.body.dump();
  assert.equal(redirect.statusCode, 308);

  // The operator removes the broken key: the next retry makes a new account and obtains the certificate.
  rmSync(keyFile);
  await waitForIssued(lab.httpsPort, 'shop.example.com');
});

test('a CA that refuses the account (external account binding required) is a clear log line and a metric; with eab it issues', async (t) => {
  const lab = await acmeLab(t, { eab: { [EAB_KID]: EAB_HMAC } });
  if (!lab) return;
  const log = captureLog('info');
  const refused = await startAcmeVelocity(t, acmeYaml(lab), log.logger);
  await waitUntil('the account refusal', () => log.find(/not obtained \(account\)/).length > 0).catch((err) => {
    throw new Error(
      `${err.message}: ${log
        .find(/not obtained/)
        .map((l) => l.msg)
        .join('\n')}`,
    );
  });
  assert.match(
    String(log.find(/not obtained \(account\)/)[0]?.msg),
    /the CA refused the account: .*externalAccountBinding.*\(set acme\.eab to the key id and HMAC key the CA gave you\)/,
  );
  assert.ok((await metricValue(refused, /^velocity_acme_errors_total\{kind="account"\}/)) >= 1);
  await refused.close();

  const httpsPort = await freePort();
  const storage = join(lab.storage, 'with-eab');
  await startAcmeVelocity(t, acmeYaml(lab, { storage, httpsPort, extra: [`eab: { kid: ${EAB_KID}, hmac: ${EAB_HMAC} }`] }));
  const cert = await waitForIssued(httpsPort, 'shop.example.com');
  assert.match(String(cert.issuer.CN), /Pebble Intermediate/);
});

test('two instances sharing storage order a name once and serve the same certificate; a renewal by one reaches the other', async (t) => {
  const lab = await acmeLab(t);
  if (!lab) return;
  // Instance B has its own ports; pebble validates at A's listeners, which answer B's challenges from the shared storage too.
  const [httpsB, httpB] = [await freePort(), await freePort()];
  const [a, b] = await Promise.all([startAcmeVelocity(t, acmeYaml(lab)), startAcmeVelocity(t, acmeYaml(lab, { httpsPort: httpsB, httpPort: httpB }))]);
  await assertOrderedOnceAndRenewedTogether(a, b, lab.httpsPort, httpsB);
});
