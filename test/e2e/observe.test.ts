/** Access logs into SQLite and PostgreSQL, the query and stats APIs, and Prometheus metrics. */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { request } from 'undici';
import type { RequestRecord } from '../../src/observe/events.ts';
import { PostgresLogStore } from '../../src/observe/postgres-store.ts';
import { SqliteLogStore } from '../../src/observe/sqlite-store.ts';
import { computeStats } from '../../src/observe/stats.ts';
import { startPostgres } from '../support/postgres.ts';
import { delay, eventually, get, load, startBackends, startInProcess, testAgent } from '../support/velocity.ts';

const parsePrometheus = createRequire(import.meta.url)('parse-prometheus-text-format') as (text: string) => {
  name: string;
  type: string;
  metrics: { labels?: Record<string, string>; value?: string; buckets?: Record<string, string>; count?: string }[];
}[];

async function adminJson(port: number, path: string) {
  const res = await request(`http://127.0.0.1:${port}${path}`);
  return { status: res.statusCode, json: (await res.body.json()) as Record<string, unknown> & { entries: RequestRecord[]; groups: unknown[]; field?: string } };
}

const yaml = (servers: string[], logs: string) => `listen: "127.0.0.1:0"
admin: { listen: "127.0.0.1:0" }
${logs}
services:
  - name: shop
    hosts: [shop.test]
    servers: [${servers.join(', ')}]
    retries: { attempts: 1 }
  - name: quiet
    hosts: [quiet.test]
    access_log: false
    servers: [${servers.join(', ')}]
`;

describe('log store', () => {
  test('N requests through Velocity give N rows with the right fields in SQLite, and the same answers from PostgreSQL', async (t) => {
    const backends = await startBackends(t, 2);
    const dir = mkdtempSync(join(tmpdir(), 'velocity-logs-'));
    const velocity = await startInProcess(
      t,
      yaml(
        backends.map((b) => b.url),
        `logs: { store: sqlite, path: ${join(dir, 'logs.db')}, flush_interval: 100ms }`,
      ),
    );
    const admin = velocity.adminAddress?.port as number;
    const url = `http://127.0.0.1:${velocity.address.port}`;
    const agent = testAgent(t);
    const records: RequestRecord[] = [];
    velocity.observe((r) => records.push(r));
    const N = 60;
    for (let i = 0; i < N; i++) {
      const path = i % 10 === 0 ? '/status/503' : `/item/${i}?q=${i}`;
      await get(agent, `${url}${path}`, { headers: { host: 'shop.test', 'user-agent': 'observe-test', 'x-request-id': `req-${i}` } });
    }
    for (let i = 0; i < 5; i++) await get(agent, `${url}/`, { headers: { host: 'quiet.test' } });
    await eventually(async () => (await adminJson(admin, '/api/v1/logs?limit=1000')).json.entries.length === N, 30_000, 'all rows written');
    const { entries } = (await adminJson(admin, '/api/v1/logs?limit=1000')).json;
    assert.ok(
      entries.every((e) => e.service === 'shop'),
      'access_log: false keeps the quiet service out',
    );
    const first = entries.find((e) => e.requestId === 'req-1');
    assert.ok(first);
    assert.equal(first.method, 'GET');
    assert.equal(first.host, 'shop.test');
    assert.equal(first.path, '/item/1?q=1');
    assert.equal(first.status, 200);
    assert.equal(first.clientIp, '127.0.0.1');
    assert.equal(first.userAgent, 'observe-test');
    assert.equal(first.protocol, 'HTTP/1.1');
    assert.match(String(first.server), /^127\.0\.0\.1:\d+$/);
    assert.ok(first.totalMs > 0 && (first.upstreamMs ?? 0) > 0 && first.bytesOut > 0);
    const errors = (await adminJson(admin, '/api/v1/logs?status=5xx&limit=1000')).json.entries;
    assert.equal(errors.length, 6);
    // Pagination with a cursor walks every row exactly once.
    const seen = new Set<string>();
    let cursor: unknown = null;
    do {
      const page = (await adminJson(admin, `/api/v1/logs?limit=7${cursor ? `&cursor=${cursor}` : ''}`)).json;
      for (const e of page.entries) seen.add(e.requestId);
      cursor = page.next_cursor;
    } while (cursor);
    assert.equal(seen.size, N);
    const stats = (await adminJson(admin, '/api/v1/stats?group_by=status')).json.groups as { key: string; count: number }[];
    assert.deepEqual(
      stats.map((g) => [g.key, g.count]),
      [
        ['200', 54],
        ['503', 6],
      ],
    );

    // The same records in PostgreSQL answer the same queries and stats.
    const pg = await startPostgres(t);
    if (!pg) return;
    const sqlite = new SqliteLogStore(join(dir, 'copy.db'));
    const postgres = new PostgresLogStore(pg.url);
    await sqlite.init();
    await postgres.init();
    t.after(() => Promise.all([sqlite.close(), postgres.close()]));
    const shopRecords = records.filter((r) => r.service === 'shop');
    // A refused retry's reason is kept as a column like every other field.
    const refused = shopRecords.findIndex((r) => r.status === 503);
    shopRecords[refused] = { ...(shopRecords[refused] as RequestRecord), retryDenied: 'budget' };
    await sqlite.write(shopRecords);
    await postgres.write(shopRecords);
    for (const q of [{ limit: 1000 }, { limit: 5, status: { min: 500, max: 599 } }, { limit: 1000, path: '/item/1' }, { limit: 3, cursor: 40 }]) {
      const a = (await sqlite.query(q)).map(({ id, ...r }) => ({ id, ...r }));
      const b = (await postgres.query(q)).map(({ id, ...r }) => ({ id, ...r }));
      assert.deepEqual(b, a, JSON.stringify(q));
    }
    for (const store of [sqlite, postgres]) {
      const kept = (await store.query({ limit: 1000 })).filter((r) => r.retryDenied === 'budget');
      assert.deepEqual(
        kept.map((r) => r.requestId),
        [shopRecords[refused]?.requestId],
        store.kind,
      );
    }
    for (const by of ['service', 'server', 'status', 'minute'] as const) {
      assert.deepEqual(computeStats(await postgres.statRows({}, 10_000), by), computeStats(await sqlite.statRows({}, 10_000), by), by);
    }
  });

  test('PostgreSQL stopped under load: zero client errors, drops counted, rows resume after restart', async (t) => {
    const pg = await startPostgres(t);
    if (!pg) return;
    const backends = await startBackends(t, 2);
    const velocity = await startInProcess(
      t,
      yaml(
        backends.map((b) => b.url),
        `logs: { store: postgres, url: "${pg.url}", flush_interval: 100ms, buffer: 50, batch: 20 }`,
      ),
    );
    const admin = velocity.adminAddress?.port as number;
    const url = `http://127.0.0.1:${velocity.address.port}/`;
    const agent = testAgent(t);
    const failures: number[] = [];
    const send = (count = 150) =>
      load(count, 5, async () => {
        const r = await get(agent, url, { headers: { host: 'shop.test' } });
        if (r.status !== 200) failures.push(r.status);
      });
    const rows = async () => (await adminJson(admin, '/api/v1/logs?limit=1000')).json.entries?.length ?? 0;
    // Requests every one of which must be logged go in rounds smaller than the buffer (50), each
    // written before the next: a database slower than the requests (its first writes, or just after
    // a restart) could otherwise make the buffer drop some, which is right but not what is tested here.
    const sendLogged = async (from: number, what: string) => {
      for (let round = 1; round <= 5; round++) {
        await send(30);
        await eventually(async () => (await rows()) === from + 30 * round, 30_000, `${what} (round ${round})`);
      }
    };
    await sendLogged(0, 'first rows written');
    await pg.stop();
    await send();
    const metrics = async () => (await (await request(`http://127.0.0.1:${admin}/metrics`)).body.text()).match(/velocity_log_entries_dropped_total (\d+)/)?.[1];
    await eventually(async () => Number(await metrics()) >= 100, 5_000, 'drops counted while the database is down');
    assert.equal((await adminJson(admin, '/api/v1/logs')).status, 500, 'queries fail while the database is down');
    await pg.start();
    // The buffered entries that survived (at most the buffer, 50) are written once the database is back …
    await eventually(async () => (await rows()) > 150, 30_000, 'writes resume after the restart');
    // Settled: no new row for longer than the longest retry backoff (5 s), so a batch still being
    // retried after a failed first write is not taken for the final count.
    let resumed = await rows();
    await eventually(
      async () => {
        await delay(6_000);
        const now = await rows();
        const settled = now === resumed;
        resumed = now;
        return settled;
      },
      120_000,
      'the buffered rows are all written',
    );
    assert.ok(resumed <= 150 + 50, 'what did not fit the buffer was dropped (and counted)');
    // … and new requests are logged again, every one.
    await sendLogged(resumed, 'rows of new requests are written');
    assert.deepEqual(failures, [], 'no client saw an error');
  });

  test('query parameters out of range get 400 naming the field', async (t) => {
    const backends = await startBackends(t, 1);
    const velocity = await startInProcess(t, yaml([backends[0]?.url as string], 'logs: { store: memory }'));
    const admin = velocity.adminAddress?.port as number;
    for (const [query, field] of [
      ['limit=0', 'limit'],
      ['limit=5000', 'limit'],
      ['status=6xx', 'status'],
      ['since=yesterday', 'since'],
      ['cursor=-1', 'cursor'],
      ['colour=red', 'colour'],
    ]) {
      const r = await adminJson(admin, `/api/v1/logs?${query}`);
      assert.deepEqual([r.status, r.json.field], [400, field], query);
    }
    const bad = await adminJson(admin, '/api/v1/stats?group_by=colour');
    assert.deepEqual([bad.status, bad.json.field], [400, 'group_by']);
  });
});

describe('access log output', () => {
  test('an access log file that cannot be opened refuses the start with a clear error; a reachable one gets JSON lines', async (t) => {
    const [b] = await startBackends(t, 1);
    await assert.rejects(
      startInProcess(
        t,
        `listen: "127.0.0.1:0"\nadmin: { enabled: false }\naccess_log: { output: /nonexistent-dir/access.log }\nservices:\n  - name: a\n    servers: [${b?.url}]\n`,
      ),
      /cannot open the access log \/nonexistent-dir\/access\.log: ENOENT.*\(access_log\.output\)/,
    );
    const file = join(mkdtempSync(join(tmpdir(), 'velocity-access-')), 'access.log');
    const velocity = await startInProcess(
      t,
      `listen: "127.0.0.1:0"\nadmin: { enabled: false }\naccess_log: { output: ${file}, format: json }\nservices:\n  - name: a\n    servers: [${b?.url}]\n`,
    );
    const agent = testAgent(t);
    for (let i = 0; i < 3; i++) await get(agent, `http://127.0.0.1:${velocity.address.port}/x?i=${i}`);
    const { readFileSync } = await import('node:fs');
    await eventually(() => readFileSync(file, 'utf8').trim().split('\n').length === 3, 2_000, 'three lines written');
    const line = JSON.parse(readFileSync(file, 'utf8').split('\n')[2] as string);
    assert.equal(line.path, '/x?i=2');
    assert.equal(line.status, 200);
    assert.match(line.time, /^\d{4}-\d\d-\d\dT/);
  });
});

describe('Prometheus metrics', () => {
  test('/metrics parses as the text format and its counters match the requests sent', async (t) => {
    const backends = await startBackends(t, 2);
    const velocity = await startInProcess(
      t,
      yaml(
        backends.map((b) => b.url),
        '',
      ),
    );
    const admin = velocity.adminAddress?.port as number;
    const url = `http://127.0.0.1:${velocity.address.port}`;
    const agent = testAgent(t);
    for (let i = 0; i < 30; i++) await get(agent, `${url}/`, { headers: { host: 'shop.test' } });
    for (let i = 0; i < 4; i++) await get(agent, `${url}/status/404`, { headers: { host: 'shop.test' } });
    for (let i = 0; i < 3; i++) await get(agent, `${url}/`, { headers: { host: 'nowhere.test' } });
    const text = await (await request(`http://127.0.0.1:${admin}/metrics`)).body.text();
    const families = parsePrometheus(text);
    const family = (name: string) => families.find((f) => f.name === name);
    const sum = (name: string, labels: Record<string, string>) =>
      (family(name)?.metrics ?? []).filter((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v)).reduce((n, m) => n + Number(m.value), 0);
    assert.equal(family('velocity_requests_total')?.type, 'COUNTER');
    assert.equal(sum('velocity_requests_total', { service: 'shop', code: '2xx' }), 30);
    assert.equal(sum('velocity_requests_total', { service: 'shop', code: '4xx' }), 4);
    assert.equal(sum('velocity_unrouted_requests_total', {}), 3);
    const hist = family('velocity_request_duration_seconds');
    assert.equal(hist?.type, 'HISTOGRAM');
    // This parser keeps no labels on histogram series, so the per-service count is read from the text.
    assert.match(text, /^velocity_request_duration_seconds_count\{service="shop"\} 34$/m);
    assert.match(text, /^velocity_request_duration_seconds_bucket\{service="shop",le="\+Inf"\} 34$/m);
    assert.equal(sum('velocity_server_up', { service: 'shop' }), 2);
    assert.equal(sum('velocity_circuit_state', { service: 'shop', state: 'closed' }), 2);
    for (const f of families) assert.match(f.name, /^velocity_[a-z_]+$/);
    assert.doesNotMatch(text, /nowhere\.test|\/status\//, 'no hosts or paths as labels');
  });
});
