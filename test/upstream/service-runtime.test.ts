/** What a service runtime keeps for the requests it serves: its pool settings made once, its retry statuses as a table. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfig } from '../../src/config/load.ts';
import { silentLogger } from '../../src/observe/logger.ts';
import { SharedState } from '../../src/state/shared-state.ts';
import { ControlPlane } from '../../src/upstream/control-plane.ts';
import { policyLoader, ServiceRuntime } from '../../src/upstream/service.ts';
import { StatusSet } from '../../src/upstream/status-set.ts';

const CONFIG = `listen: "127.0.0.1:0"
services:
  - name: app
    servers: ["https://127.0.0.1:9443"]
    timeouts: { connect: 1234ms }
    tls: { insecure: true, server_name: backend.test }
    retries: { retry_on: [502, 503] }
`;

test('pool options: one object per service runtime, with its connect timeout and TLS settings; a reload makes new ones', (t) => {
  const state = new SharedState(undefined, { servers: 4, services: 2, threads: 1 });
  const control = new ControlPlane(state, silentLogger());
  t.after(() => control.close());
  const spec = control.applyConfig(parseConfig(CONFIG, 'service-runtime.yaml').config).services[0];
  assert.ok(spec);
  const events = { upstreamChange: () => {}, tlsFailure: () => {} };
  const service = new ServiceRuntime(spec, state, 0, undefined, policyLoader(process.cwd()), events);
  const http1 = service.poolOptions();
  assert.equal(service.poolOptions(), http1, 'the same object for every request: its pools are found again, not made again');
  assert.equal(http1.connectTimeout, 1234);
  assert.deepEqual(http1.tls, { rejectUnauthorized: false, servername: 'backend.test' });
  const h2 = service.h2Options();
  assert.equal(service.h2Options(), h2);
  assert.equal(h2.connectTimeout, 1234);
  assert.equal(h2.tls, http1.tls);
  const reloaded = new ServiceRuntime(spec, state, 0, service, policyLoader(process.cwd()), events);
  assert.notEqual(reloaded.poolOptions(), http1, 'a reloaded service starts new pools, as before');
  assert.ok(reloaded.retryStatuses.has(503) && !reloaded.retryStatuses.has(500));
});

test('StatusSet: the statuses given and no others, whatever is asked', () => {
  const statuses = new StatusSet([500, 502, 599, 1000, -1, 2.5]);
  for (const status of [500, 502, 599]) assert.equal(statuses.has(status), true, String(status));
  for (const status of [0, 200, 501, 503, 598, 600, 999, 1000, -1, 2.5, Number.NaN, 1e9]) assert.equal(statuses.has(status), false, String(status));
});
