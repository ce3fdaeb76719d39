/**
 * The CA's rate limit (429, rateLimited) at renewal: pebble cannot be told to
 * rate-limit, so a real ACME proxy in front of it refuses one new order the way
 * Let's Encrypt does. Velocity keeps serving the old certificate, logs one line,
 * counts the error, and does not order again before the CA's Retry-After.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { captureLog } from '../proxy/log-capture.ts';
import { startAcmeProxy } from '../support/acme-proxy.ts';
import { acmeLab, acmeYaml, adminApi, certificateStatus, metricValue, servedCertificate, startAcmeVelocity, waitForIssued } from './acme-support.ts';

const RETRY_AFTER_S = 5;

test('a 429 from the CA at renewal: old certificate kept, one log line, a metric, and no new order before Retry-After', async (t) => {
  const lab = await acmeLab(t);
  if (!lab) return;
  const proxy = await startAcmeProxy(t, lab.pebble);
  const log = captureLog('info');
  // retry.base 300ms: without Retry-After the next attempt would come within a second or two.
  const velocity = await startAcmeVelocity(t, acmeYaml({ ...lab, pebble: { ...lab.pebble, directory: proxy.directory } }), log.logger);
  const old = await waitForIssued(lab.httpsPort, 'shop.example.com');
  assert.equal(proxy.orders.length, 1, 'the first certificate was ordered through the proxy');

  proxy.refuseNextOrder(RETRY_AFTER_S);
  const renewed = await adminApi(velocity, 'POST', '/api/v1/certificates/shop.example.com/renew');
  assert.equal(renewed.body.renewed, false, JSON.stringify(renewed.body));
  const entry = await certificateStatus(velocity, 'shop.example.com');
  assert.equal(entry.last_error?.kind, 'rate_limited');
  assert.match(String(entry.last_error?.message), /rate limited \(too many new orders recently \(test proxy\)\)/);
  assert.ok(
    Date.parse(String(entry.renew_at)) - Date.parse(String(entry.last_error?.at)) >= RETRY_AFTER_S * 1000,
    `next attempt ${entry.renew_at} honours Retry-After from ${entry.last_error?.at}`,
  );
  assert.equal((await servedCertificate(lab.httpsPort, 'shop.example.com')).serialNumber, old.serialNumber, 'the old certificate is still served');
  assert.equal(await metricValue(velocity, /^velocity_acme_errors_total\{kind="rate_limited"\}/), 1);

  // The forced renewal retries by itself once Retry-After has passed, and then gets its certificate.
  const fresh = await waitForIssued(lab.httpsPort, 'shop.example.com', { notSerial: old.serialNumber, timeoutMs: 90_000 });
  assert.notEqual(fresh.serialNumber, old.serialNumber);
  const [refused, retried] = proxy.orders.slice(1);
  assert.equal(refused?.refused, true);
  assert.ok(retried && refused && retried.at - refused.at >= RETRY_AFTER_S * 1000, `the next order came ${retried && refused ? retried.at - refused.at : '?'} ms after the 429`);
  const lines = log.find(/not obtained \(rate_limited\)/);
  assert.equal(lines.length, 1, 'one log line for the refusal');
  assert.match(String(lines[0]?.msg), /the current certificate \(valid until .*\) stays in use; next attempt in [5-9] s/);
  assert.equal(await metricValue(velocity, /^velocity_acme_errors_total\{kind="rate_limited"\}/), 1);
});
