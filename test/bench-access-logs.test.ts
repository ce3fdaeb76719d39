/**
 * The benchmark gives every contender that has an access log one, to a file (issue 17: nginx's JSON
 * log, HAProxy's httplog, Fastify's pino request log, Velocity's JSON log), and @fastify/http-proxy
 * is a working contender. No timing is asserted.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { BenchContext, type Contender, has, startFastifyProxy, startHaproxy, startNginxBackends, startNginxProxy, startVelocity, withFeatures } from '../bench/lib.ts';
import { serviceUnavailable } from './support/require-service.ts';
import { eventually } from './support/velocity.ts';

const REQUESTS = 20;

test('every benchmark contender with an access log writes a line per request to its file', async (t) => {
  const missing = ['nginx', 'haproxy'].filter((tool) => !has(tool));
  if (missing.length) return serviceUnavailable(t, missing.join(', '), `${missing.join(', ')} not installed`);
  const ctx = new BenchContext();
  t.after(() => ctx.cleanup());
  const { upstreams } = await startNginxBackends(ctx);
  const contenders: [Contender, string][] = await Promise.all([
    startNginxProxy(ctx, upstreams).then((c): [Contender, string] => [c, 'nginx-access.log']),
    startHaproxy(ctx, upstreams).then((c): [Contender, string] => [c, 'haproxy-access.log']),
    startFastifyProxy(ctx, upstreams).then((c): [Contender, string] => [c, 'fastify-access.log']),
    startVelocity(ctx, 'velocity+features', upstreams, { ...withFeatures(ctx), startMs: 120_000 }).then((c): [Contender, string] => [c, 'access.log']),
  ]);
  for (const [contender] of contenders) {
    for (let i = 0; i < REQUESTS; i++) {
      const res = await fetch(`http://127.0.0.1:${contender.port}/logged-${i}`);
      assert.equal(res.status, 200, `${contender.name} proxied request ${i}`);
      assert.match(await res.text(), /./, `${contender.name} passed the backend's body on`);
    }
  }
  // Each writes on its own schedule (nginx flushes its 64 KiB buffer every second, Velocity every 100 ms).
  for (const [contender, file] of contenders) {
    const path = join(ctx.dir, file);
    const lines = () =>
      existsSync(path)
        ? readFileSync(path, 'utf8')
            .split('\n')
            .filter((l) => l.includes('/logged-'))
        : [];
    await eventually(() => lines().length >= REQUESTS, 60_000, `${contender.name} logged ${REQUESTS} requests to ${file}`);
    for (let i = 0; i < REQUESTS; i++)
      assert.ok(
        lines().some((l) => l.includes(`/logged-${i}`)),
        `${contender.name}: /logged-${i} in ${file}`,
      );
  }
});
