/**
 * The reload driver, one subsystem at a time: a changed section is applied live
 * (proved by the new behaviour), or the reload's result, its log line and the
 * dashboard snapshot name it as waiting for a restart.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { startBackend } from '../../src/backend/demo-backend.ts';
import { parseConfig } from '../../src/config/load.ts';
import type { Velocity } from '../../src/runtime/instance.ts';
import { captureLog } from '../proxy/log-capture.ts';
import { startOtlpReceiver } from '../support/otlp.ts';
import { eventually, get, startInProcess, testAgent } from '../support/velocity.ts';

const node = JSON.stringify(process.execPath);
const cli = JSON.stringify(fileURLToPath(new URL('../../src/cli.ts', import.meta.url)));

function tempDir(t: { after(fn: () => unknown): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'velocity-reload-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const read = (path: string) => {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
};

/** A backend in this process: these tests are about reloads, not about backends, and spawn no more than they must. */
async function backendIn(t: { after(fn: () => unknown): void }): Promise<{ url: string }> {
  const backend = await startBackend({ port: 0, name: 'b1' });
  t.after(() => backend.close());
  return { url: `http://127.0.0.1:${backend.port}` };
}

async function reloadYaml(velocity: Velocity, yaml: string) {
  return velocity.reload(parseConfig(yaml, 'reload.yaml').config);
}

async function adminGet(velocity: Velocity, path: string): Promise<{ status: number; body: string }> {
  const address = velocity.adminAddress;
  assert.ok(address);
  const res = await fetch(`http://127.0.0.1:${address.port}${path}`);
  return { status: res.status, body: await res.text() };
}

describe('reload applies live', () => {
  test('access log: a new output path receives the next lines, in the new format; the old file gets none', async (t) => {
    const dir = tempDir(t);
    const backend = await backendIn(t);
    const yaml = (output: string, format: string) => `listen: "127.0.0.1:0"
admin: { enabled: false }
access_log: { output: ${JSON.stringify(output)}, format: ${format} }
services:
  - name: app
    servers: [${backend.url}]
`;
    const first = join(dir, 'first.log');
    const second = join(dir, 'second.log');
    const velocity = await startInProcess(t, yaml(first, 'json'));
    const agent = testAgent(t);
    const url = `http://127.0.0.1:${velocity.address.port}`;
    assert.equal((await get(agent, `${url}/before`)).status, 200);
    await eventually(() => read(first).includes('/before'), 5_000, 'the first file has the first request');

    const result = await reloadYaml(velocity, yaml(second, 'common'));
    assert.equal(result.ok, true);
    assert.equal(result.restart_required, undefined, 'nothing waits for a restart');
    assert.equal((await get(agent, `${url}/after`)).status, 200);
    await eventually(() => read(second).includes('"GET /after HTTP/1.1" 200'), 5_000, 'the new file has the next request in common format');
    assert.equal(read(first).includes('/after'), false, 'the old file got no line after the reload');
  });

  test('access log: a path that cannot be opened refuses the reload and the old log keeps going', async (t) => {
    const dir = tempDir(t);
    const backend = await backendIn(t);
    const yaml = (output: string) => `listen: "127.0.0.1:0"
admin: { enabled: false }
access_log: { output: ${JSON.stringify(output)} }
services:
  - name: app
    servers: [${backend.url}]
`;
    const good = join(dir, 'good.log');
    const velocity = await startInProcess(t, yaml(good));
    const result = await reloadYaml(velocity, yaml(join(dir, 'no-such-dir', 'x.log')));
    assert.equal(result.ok, false);
    assert.match(result.errors?.join() ?? '', /cannot open the access log/);
    assert.equal((await get(testAgent(t), `http://127.0.0.1:${velocity.address.port}/still`)).status, 200);
    await eventually(() => read(good).includes('/still'), 5_000, 'the old file still receives lines');
  });

  test('log store: a store added by a reload receives the next requests', async (t) => {
    const backend = await backendIn(t);
    const yaml = (logs: string) => `listen: "127.0.0.1:0"
admin: { listen: "127.0.0.1:0" }
${logs}
services:
  - name: app
    servers: [${backend.url}]
`;
    const velocity = await startInProcess(t, yaml(''));
    assert.equal((await adminGet(velocity, '/api/v1/logs')).status, 409, 'no store yet');
    const result = await reloadYaml(velocity, yaml('logs: { store: memory, flush_interval: 100ms }'));
    assert.equal(result.ok, true);
    assert.equal(result.restart_required, undefined);
    assert.equal((await get(testAgent(t), `http://127.0.0.1:${velocity.address.port}/stored`)).status, 200);
    await eventually(async () => (await adminGet(velocity, '/api/v1/logs?path=/stored')).body.includes('/stored'), 5_000, 'the new store has the request');
  });

  test('metrics: turning them off and on again by reload', async (t) => {
    const backend = await backendIn(t);
    const yaml = (enabled: boolean) => `listen: "127.0.0.1:0"
admin: { listen: "127.0.0.1:0" }
metrics: { enabled: ${enabled} }
services:
  - name: app
    servers: [${backend.url}]
`;
    const velocity = await startInProcess(t, yaml(true));
    const agent = testAgent(t);
    const url = `http://127.0.0.1:${velocity.address.port}/`;
    const served = async () => {
      const text = (await adminGet(velocity, '/metrics')).body;
      const line = text.split('\n').find((l) => l.startsWith('velocity_requests_total{') && l.includes('code="2xx"'));
      return Number(line?.split(' ').pop() ?? Number.NaN);
    };
    await get(agent, url);
    assert.equal(await served(), 1);
    assert.equal((await reloadYaml(velocity, yaml(false))).ok, true);
    assert.equal((await adminGet(velocity, '/metrics')).status, 404);
    await get(agent, url);
    assert.equal((await reloadYaml(velocity, yaml(true))).ok, true);
    await get(agent, url);
    assert.equal(await served(), 2, 'the request served while metrics were off was not counted');
  });

  test('tracing: an OTLP endpoint added by reload receives the spans of the next request; propagation follows too', async (t) => {
    const collector = await startOtlpReceiver(t);
    const seen: (string | undefined)[] = [];
    const server = createServer((req, res) => {
      seen.push(req.headers.traceparent as string | undefined);
      res.end('ok');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const yaml = (tracing: string) => `listen: "127.0.0.1:0"
admin: { enabled: false }
tracing: ${tracing}
services:
  - name: app
    servers: [http://127.0.0.1:${(server.address() as AddressInfo).port}]
`;
    const velocity = await startInProcess(t, yaml('{ propagate: false }'));
    const agent = testAgent(t);
    const url = `http://127.0.0.1:${velocity.address.port}/`;
    assert.equal((await get(agent, `${url}before`)).status, 200);
    assert.equal(seen.at(-1), undefined, 'no traceparent while propagation is off');

    const result = await reloadYaml(velocity, yaml(`{ propagate: true, otlp: { endpoint: ${JSON.stringify(collector.endpoint)}, flush_interval: 100ms } }`));
    assert.equal(result.ok, true);
    assert.equal(result.restart_required, undefined);
    assert.equal((await get(agent, `${url}after`)).status, 200);
    assert.match(seen.at(-1) ?? '', /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/, 'the server is told the trace');
    await eventually(() => collector.spans.some((s) => s.attributes['url.path'] === '/after'), 30_000, 'the new collector gets the request span');
    assert.equal(
      collector.spans.some((s) => s.attributes['url.path'] === '/before'),
      false,
      'the request before the reload had no exporter',
    );
  });

  test('guards: an IP filter added by reload refuses the next request', async (t) => {
    const backend = await backendIn(t);
    const yaml = (filter: string) => `listen: "127.0.0.1:0"
admin: { enabled: false }
${filter}
services:
  - name: app
    servers: [${backend.url}]
`;
    const velocity = await startInProcess(t, yaml(''));
    const agent = testAgent(t);
    const url = `http://127.0.0.1:${velocity.address.port}/`;
    assert.equal((await get(agent, url)).status, 200);
    assert.equal((await reloadYaml(velocity, yaml('ip_filter: { deny: [127.0.0.0/8] }'))).ok, true);
    assert.equal((await get(agent, url)).status, 403);
  });

  test('admin: a new token is the one asked for at once', async (t) => {
    const backend = await backendIn(t);
    const yaml = (token: string) => `listen: "127.0.0.1:0"
admin: { listen: "127.0.0.1:0", token: ${token} }
services:
  - name: app
    servers: [${backend.url}]
`;
    const velocity = await startInProcess(t, yaml('old-token-0123456789'));
    const address = velocity.adminAddress;
    assert.ok(address);
    const block = (token: string) =>
      fetch(`http://127.0.0.1:${address.port}/api/v1/blocklist`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ cidr: '203.0.113.9' }),
      }).then((r) => r.status);
    assert.equal((await reloadYaml(velocity, yaml('new-token-0123456789'))).restart_required, undefined);
    assert.equal(await block('old-token-0123456789'), 401);
    assert.equal(await block('new-token-0123456789'), 201);
  });

  test('discovery: a changed process provider is restarted with its new settings', async (t) => {
    const yaml = (name: string) => `listen: "127.0.0.1:0"
admin: { enabled: false }
services:
  - name: app
    process:
      command: [${node}, ${cli}, backend, --name, ${name}]
      instances: 1
      stop_timeout: 2s
    drain_timeout: 2s
`;
    const velocity = await startInProcess(t, yaml('first'));
    const agent = testAgent(t);
    const url = `http://127.0.0.1:${velocity.address.port}/`;
    await eventually(async () => (await get(agent, url)).headers['x-backend'] === 'first', 60_000, 'the first process answers');
    const result = await reloadYaml(velocity, yaml('second'));
    assert.equal(result.ok, true);
    assert.equal(result.restart_required, undefined);
    await eventually(async () => (await get(agent, url)).headers['x-backend'] === 'second', 60_000, 'the process started with the new settings answers');
    await eventually(() => velocity.controlPlane.servers('app').length === 1, 10_000, 'the old process was removed');
  });

  test('autoscale: a new target is what the autoscaler decides by', async (t) => {
    const yaml = (target: number) => `listen: "127.0.0.1:0"
admin: { listen: "127.0.0.1:0" }
services:
  - name: app
    process:
      command: [${node}, ${cli}, backend]
      instances: 1
      stop_timeout: 2s
    autoscale: { min: 1, max: 2, target: { in_flight_per_server: ${target} }, interval: 100ms }
`;
    const velocity = await startInProcess(t, yaml(5));
    const latestTarget = async () => {
      const body = JSON.parse((await adminGet(velocity, '/api/v1/autoscale/app')).body) as { decisions?: { target: number }[] };
      return body.decisions?.at(-1)?.target;
    };
    await eventually(async () => (await latestTarget()) === 5, 20_000, 'the autoscaler decides by the first target');
    assert.equal((await reloadYaml(velocity, yaml(7))).ok, true);
    await eventually(async () => (await latestTarget()) === 7, 10_000, 'the autoscaler decides by the new target');
  });
});

describe('reload names what waits for a restart', () => {
  test('workers, client limits, the state store and the admin address: in the result, the log and the dashboard snapshot', async (t) => {
    const backend = await backendIn(t);
    const captured = captureLog('info');
    const yaml = (change: boolean) => `listen: "127.0.0.1:0"
admin: { listen: "127.0.0.1:0" }
workers: ${change ? 2 : 1}
client: { header_timeout: ${change ? '7s' : '10s'} }
state: { local_table_size: ${change ? 2048 : 1024} }
services:
  - name: app
    servers: [${backend.url}]
`;
    const velocity = await startInProcess(t, yaml(false), { logger: captured.logger });
    const result = await reloadYaml(velocity, yaml(true));
    assert.equal(result.ok, true, 'the rest of the reload applies');
    assert.deepEqual(result.restart_required, ['workers', 'client', 'state']);
    const line = captured.find(/take effect on restart/)[0];
    assert.deepEqual(line?.restart_required, ['workers', 'client', 'state']);
    const snapshot = JSON.parse((await adminGet(velocity, '/api/v1/live')).body) as { reload: { last: { restart_required?: string[] } } };
    assert.deepEqual(snapshot.reload.last.restart_required, ['workers', 'client', 'state']);
    // Reloading the same config again changes nothing further: still the same fields differ from what runs.
    assert.equal((await velocity.reload(velocity.config)).restart_required, undefined);
  });

  test('an admin listener moved by reload keeps its old address until restart and says so', async (t) => {
    const backend = await backendIn(t);
    const yaml = (port: number) => `listen: "127.0.0.1:0"
admin: { listen: "127.0.0.1:${port}" }
services:
  - name: app
    servers: [${backend.url}]
`;
    const velocity = await startInProcess(t, yaml(0));
    const before = velocity.adminAddress?.port;
    const result = await reloadYaml(velocity, yaml(1));
    assert.deepEqual(result.restart_required, ['admin.listen']);
    assert.equal((await adminGet(velocity, '/api/v1/config/reload')).status, 200);
    assert.equal(velocity.adminAddress?.port, before);
  });
});
