/** `npm run bench -- --quick` runs end to end and writes its table and JSON (no timing is asserted). */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Row } from '../bench/lib.ts';
import { serviceUnavailable } from './support/require-service.ts';

test('the quick benchmark runs every contender in every scenario and writes a table and a JSON result', async (t) => {
  const script = fileURLToPath(new URL('../bench/run.ts', import.meta.url));
  const { code, out } = await new Promise<{ code: number | null; out: string }>((resolve) => {
    execFile(process.execPath, [script, '--quick'], { timeout: 170_000, maxBuffer: 8 * 1024 * 1024 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr }),
    );
  });
  if (code !== 0 && /is not installed/.test(out)) return serviceUnavailable(t, 'nginx/wrk', out.trim());
  assert.equal(code, 0, out);

  const file = /results: (.*bench-.*\.json)/.exec(out)?.[1];
  assert.ok(file, out);
  t.after(() => rmSync(file, { force: true }));
  const result = JSON.parse(readFileSync(file, 'utf8')) as { rows: Row[]; targets: { name: string; value: string }[]; runs: unknown[] };
  const contenders = (scenario: string) => result.rows.filter((r) => r.scenario === scenario).map((r) => r.contender);
  const proxies = ['direct', 'nginx', 'haproxy', 'node-http-proxy', 'velocity'];
  for (const scenario of ['GET c=50', 'GET c=256', 'GET 1MB c=10', 'POST 64KB c=20', 'GET c=1']) {
    for (const name of proxies) assert.ok(contenders(scenario).includes(name), `${scenario}: ${name} ran`);
  }
  for (const name of ['velocity+features', 'velocity workers=auto', 'undici floor (no features)', 'node http (no proxy)']) assert.ok(contenders('GET c=50').includes(name), name);

  for (const row of result.rows) {
    // Every contender served; Velocity and our own reference scripts without a single error (third-party
    // proxies may time out under wrk on a busy machine). An error count here means a broken contender.
    assert.ok(row.rps > 0, `${row.scenario} ${row.contender} served requests`);
    if (row.contender.startsWith('velocity') || row.contender.startsWith('undici floor') || row.contender.startsWith('node http'))
      assert.equal(row.errors, 0, `${row.scenario} ${row.contender} had errors`);
    assert.ok(row.p99 >= row.p50, `${row.scenario} ${row.contender}: p99 ≥ p50`);
    if (row.contender !== 'direct') {
      assert.ok(row.rssMb > 0 && row.cpuUs > 0, `${row.scenario} ${row.contender}: RSS and CPU measured`);
      // CPU per request comes with its split: user-space and kernel time (medians, so their sum is near the
      // total's median; either may be 0 in a one-second run, as /proc counts CPU in 10 ms ticks).
      assert.ok(row.userUs >= 0 && row.systemUs >= 0, `${row.scenario} ${row.contender}: user and system CPU measured`);
      assert.ok(Math.abs(row.userUs + row.systemUs - row.cpuUs) <= row.cpuUs * 0.5, `${row.scenario} ${row.contender}: user + system ≈ total`);
    }
  }
  assert.equal(result.rows.find((r) => r.scenario === 'GET c=50' && r.contender === 'nginx')?.vsNginx, 1);
  for (const target of ['features on: req/s × nginx', 'node-http-proxy', 'added latency at c=1', 'RSS per thread']) {
    assert.ok(
      result.targets.some((t) => t.name.includes(target)),
      target,
    );
  }
  // The same table is printed, in the form the README pastes.
  assert.match(out, /\| GET c=50 \| velocity \| \d+ \| [\d.]+ \| [\d.]+ \| 0 \| \d+ \| \d+ \| [\d.]+ \|/);
});
