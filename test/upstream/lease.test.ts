/** Leases on their own, over a real service runtime and shared state: each end releases, wakes and records exactly once. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseConfig } from '../../src/config/load.ts';
import { silentLogger } from '../../src/observe/logger.ts';
import { CIRCUIT_HALF_OPEN, CIRCUIT_OPEN } from '../../src/state/server-cells.ts';
import { SharedState } from '../../src/state/shared-state.ts';
import type { AttemptOutcome } from '../../src/upstream/attempt.ts';
import { ControlPlane } from '../../src/upstream/control-plane.ts';
import type { UpstreamChange } from '../../src/upstream/outcome.ts';
import { policyLoader, ServiceRuntime } from '../../src/upstream/service.ts';

const request = { clientIp: '127.0.0.1', method: 'GET', url: '/', header: () => undefined, cookie: () => undefined };
const ok: AttemptOutcome = { kind: 'response', status: 200, bytesOut: 10, firstByteMs: 1, complete: true };
const refused: AttemptOutcome = {
  kind: 'failed',
  code: 'UPSTREAM_CONNECT_FAILED',
  error: Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }),
  responseStarted: false,
  requestSent: false,
};
const clientGone: AttemptOutcome = {
  kind: 'failed',
  code: 'UPSTREAM_RESET',
  error: Object.assign(new Error('client closed the connection'), { code: 'VELOCITY_CLIENT_GONE' }),
  responseStarted: true,
  requestSent: true,
};

function setup(t: { after(fn: () => unknown): void }, extra = '') {
  const { config } = parseConfig(`listen: "127.0.0.1:0"\nservices:\n  - name: app\n    servers: [{ url: "http://127.0.0.1:9100", max_connections: 1 }]\n${extra}`, 'lease.yaml');
  const state = new SharedState(undefined, { servers: 8, services: 2, threads: 2 });
  const control = new ControlPlane(state, silentLogger());
  t.after(() => control.close());
  const spec = control.applyConfig(config).services[0];
  assert.ok(spec);
  const changes: UpstreamChange[] = [];
  const tlsFailures: Error[] = [];
  const service = new ServiceRuntime(spec, state, 0, undefined, policyLoader(process.cwd()), {
    upstreamChange: (c) => changes.push(c),
    tlsFailure: (_service, _server, err) => tlsFailures.push(err),
  });
  const server = service.servers[0];
  assert.ok(server);
  return { service, server, changes, tlsFailures };
}

describe('lease', () => {
  test('end gives the server back, wakes the queue and records the outcome once; a second end does nothing', (t) => {
    const { service, server } = setup(t);
    const lease = service.acquire(request, undefined);
    assert.ok(lease);
    assert.equal(server.inFlight, 1);
    assert.equal(service.acquire(request, undefined), undefined, 'max_connections 1: the server is held');
    // A request queued for the service (on any thread): the release must wake it.
    assert.ok(service.cells.tryEnqueue(1));
    const releases = service.cells.releases;
    lease.end(ok, 5);
    assert.equal(server.inFlight, 0);
    assert.equal(server.requests, 1);
    assert.equal(service.cells.releases, releases + 1, 'queued requests were woken');
    assert.equal(server.ewma, 5);
    lease.end(refused, 50);
    lease.end();
    assert.equal(server.inFlight, 0, 'not released twice');
    assert.equal(server.requests, 1, 'not recorded twice');
    assert.equal(server.failures, 0, 'the second outcome was ignored');
    assert.equal(service.cells.releases, releases + 1, 'not woken twice');
    assert.equal(lease.isEnded, true);
  });

  test('record reports a tunnel’s outcome while the server stays held; end then only gives it back', (t) => {
    const { service, server } = setup(t);
    const lease = service.acquire(request, undefined);
    assert.ok(lease);
    lease.record(ok, 2);
    lease.record(refused, 2);
    assert.equal(server.requests, 1);
    assert.equal(server.failures, 0);
    assert.equal(server.inFlight, 1, 'still held');
    lease.end(refused);
    assert.equal(server.inFlight, 0);
    assert.equal(server.failures, 0, 'the outcome was recorded already');
  });

  test('a failed attempt counts against passive health and the breaker; a client that left does not', (t) => {
    const { service, server, changes } = setup(t, '    circuit_breaker: { consecutive_failures: 2 }\n    passive_health: { enabled: false }\n');
    service.acquire(request, undefined)?.end(clientGone);
    assert.equal(server.failures, 0);
    service.acquire(request, undefined)?.end(refused);
    service.acquire(request, undefined)?.end(refused);
    assert.equal(server.failures, 2);
    assert.equal(server.circuitState, CIRCUIT_OPEN);
    assert.deepEqual(
      changes.map((c) => c.kind),
      ['circuit'],
    );
  });

  test('a TLS failure is told to the thread as well', (t) => {
    const { service, tlsFailures } = setup(t);
    const error = Object.assign(new Error('self-signed certificate'), { code: 'DEPTH_ZERO_SELF_SIGNED_CERT' });
    service.acquire(request, undefined)?.end({ kind: 'failed', code: 'UPSTREAM_TLS_FAILED', error, responseStarted: false, requestSent: false });
    assert.deepEqual(tlsFailures, [error]);
  });

  test('a lease ended without an outcome gives back its half-open trial and counts nothing', (t) => {
    const { service, server } = setup(t, '    circuit_breaker: { consecutive_failures: 1, open_duration: 1ms, half_open_requests: 1 }\n');
    service.acquire(request, undefined)?.end(refused);
    assert.equal(server.circuitState, CIRCUIT_OPEN);
    const until = server.circuitOpenUntil;
    while (Date.now() < until + 2) {
      // The open duration is 1 ms.
    }
    const trial = service.acquire(request, undefined);
    assert.ok(trial, 'the open duration passed: a trial is let through');
    assert.equal(server.circuitState, CIRCUIT_HALF_OPEN);
    assert.equal(server.circuitTrials, 1);
    const requests = server.requests;
    trial.end();
    assert.equal(server.circuitTrials, 0, 'the trial token is back');
    assert.equal(server.requests, requests);
    assert.ok(service.acquire(request, undefined), 'another trial may go');
  });

  test('the server is given back even when recording the outcome throws', (t) => {
    const { service, server, changes } = setup(t, '    circuit_breaker: { consecutive_failures: 1 }\n');
    changes.push = () => {
      throw new Error('an observer failed');
    };
    const lease = service.acquire(request, undefined);
    assert.ok(lease);
    assert.throws(() => lease.end(refused), /an observer failed/);
    assert.equal(server.inFlight, 0);
    lease.end(refused);
    assert.equal(server.failures, 1);
  });

  test('a sticky acquire of a full server is refused and takes nothing', (t) => {
    const { service, server } = setup(t);
    const held = service.acquireSpecific(server);
    assert.ok(held);
    assert.equal(service.acquireSpecific(server), undefined);
    assert.equal(server.inFlight, 1);
    held.end(ok);
    assert.equal(server.inFlight, 0);
  });
});
