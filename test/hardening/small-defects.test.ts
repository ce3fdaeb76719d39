/**
 * #22 point 6: a bare 0 duration is "none" and a present-but-wrong value is
 * never called missing; a health check that times out says so; an access-log
 * record never shows more time with servers than in total.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { request } from 'undici';
import { parseConfig } from '../../src/config/load.ts';
import { ConfigError } from '../../src/errors.ts';
import type { RequestRecord } from '../../src/observe/events.ts';
import { captureLog } from '../proxy/log-capture.ts';
import { startSilentServer } from '../support/silent-server.ts';
import { delay, eventually, startBackends, startInProcess } from '../support/velocity.ts';

const service = (extra: string) => `services:\n  - name: api\n    servers: ["http://127.0.0.1:1"]\n${extra}`;

function problems(yaml: string): string {
  try {
    parseConfig(yaml, 'v.yaml');
  } catch (err) {
    if (err instanceof ConfigError) return err.message;
    throw err;
  }
  return '';
}

test('a bare 0 for total and per_try_timeout means none, as the README documents', () => {
  const { config } = parseConfig(service('    timeouts: { total: 0 }\n    retries: { per_try_timeout: 0 }\n'), 'v.yaml');
  assert.equal(config.services[0]?.timeouts.total, 0);
  assert.equal(config.services[0]?.retries.per_try_timeout, 0);
});

test('a present value of the wrong kind is named, never reported as a missing field', () => {
  const cases: [string, RegExp][] = [
    ['    timeouts: { connect: 5 }\n', /v\.yaml:4:\d+: services\[0\]\.timeouts\.connect: .*needs a unit/],
    ['    timeouts: { connect: 0 }\n', /services\[0\]\.timeouts\.connect: must be greater than 0/],
    ['    timeouts: { idle: true }\n', /services\[0\]\.timeouts\.idle: expected a duration .*; got the boolean true/],
    ['    timeouts: { idle: }\n', /services\[0\]\.timeouts\.idle: expected a duration .*; got an empty value/],
    ['    retries: { attempts: "three" }\n', /services\[0\]\.retries\.attempts: expected a whole number; got the text "three"/],
  ];
  for (const [extra, expected] of cases) {
    const message = problems(service(extra));
    assert.match(message, expected);
    assert.doesNotMatch(message, /missing/, message);
  }
  // A field that is really absent still says so.
  assert.match(problems('services:\n  - servers: ["http://127.0.0.1:1"]\n'), /services\[0\]\.name: required field is missing/);
});

test('a health check that gets no answer in time fails with a timeout reason, not an internal error', async (t) => {
  // Accepts connections and never answers: a frozen server.
  const port = await startSilentServer(t);
  const log = captureLog('info');
  await startInProcess(
    t,
    `listen: "127.0.0.1:0"\nadmin: { enabled: false }\nservices:\n  - name: api\n    servers: ["http://127.0.0.1:${port}"]\n    health: { type: http, path: /health, interval: 200ms, timeout: 200ms, unhealthy_threshold: 1, start_healthy: true }\n`,
    { logger: log.logger },
  );
  await eventually(() => log.find(/failed active health checks/).length > 0, 20_000, 'the frozen server is marked down');
  const reason = String(log.find(/failed active health checks/)[0]?.reason);
  assert.match(reason, /no answer within 200ms/);
  assert.doesNotMatch(reason, /is not a function|TypeError/);
});

test('an access-log record never shows more time with servers (upstreamMs) than in total (totalMs)', async (t) => {
  const [backend] = await startBackends(t, 1);
  const velocity = await startInProcess(t, `listen: "127.0.0.1:0"\nadmin: { enabled: false }\nservices:\n  - name: api\n    servers: [${backend?.url}]\n`);
  const records: RequestRecord[] = [];
  // An observer that keeps the record (as a batching log store does) and takes a while (as on a loaded machine):
  // a record emitted before the data path has finished with it would be changed afterwards.
  velocity.dataPlane.observers.add((r) => {
    records.push(r);
    const until = performance.now() + 20;
    while (performance.now() < until) {}
  });
  for (let i = 0; i < 5; i++) {
    const res = await request(`http://127.0.0.1:${velocity.address.port}/r${i}`);
    assert.equal(res.statusCode, 200);
    await res.body.dump();
  }
  await eventually(() => records.length === 5, 20_000, 'every request is recorded');
  await delay(200);
  for (const r of records) {
    assert.ok(r.upstreamMs !== undefined && r.upstreamMs <= r.totalMs, `upstreamMs ${r.upstreamMs} ≤ totalMs ${r.totalMs}`);
  }
});
