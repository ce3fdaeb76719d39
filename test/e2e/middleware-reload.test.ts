/** Middleware is reloadable, shown in the admin API's service view, runs a custom module, and works on an HTTP/2 listener — through the binary. */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { startEcho } from '../middleware/echo.ts';
import { eventually, get, startVelocityProcess, testAgent } from '../support/velocity.ts';

const MODULE = fileURLToPath(new URL('../../examples/custom-middleware.ts', import.meta.url));

function curlHead(args: string[]): Promise<string> {
  return new Promise((resolve) => execFile('curl', ['--silent', '--max-time', '20', '-D', '-', '-o', '/dev/null', ...args], (_err, stdout) => resolve(stdout)));
}

test('reloading swaps the middleware; the admin API shows each route with its middleware (no password hashes); HTTP/2 gets the same answers', async (t) => {
  const echo = await startEcho(t);
  const config = (version: string) => `listen: "127.0.0.1:0"
listeners: [{ type: http, listen: "127.0.0.1:0", http2: true }]
admin: { listen: "127.0.0.1:0" }
services:
  - name: api
    servers: [${echo.url}]
    middleware:
      - module: ${MODULE}
        options: { keys: { k-1: mobile } }
      - headers: { response: { set: { x-config: "${version}" } } }
    routes:
      - name: private
        paths: [/private]
        middleware:
          - basic_auth: { users: { alice: "$2a$10$/uaF/uaF/uaF/uaF/uaF/ud3F1gllu0o0DFRybVZzczxwG/rejnh6" } }
      - name: old
        paths: [/old]
        match: { methods: [GET] }
        middleware: [{ redirect: { regex: "^https?://[^/]+/old/(.*)$", to: "/new/$1", status: 307 } }]
`;
  const v = await startVelocityProcess(t, config('one'));
  const admin = Number((await v.logs.waitFor(/"admin":"127\.0\.0\.1:(\d+)"/))[1]);
  const h2 = Number([...v.logs.output().matchAll(/"kind":"http","address":"127\.0\.0\.1:(\d+)"/g)].map((m) => m[1]).find((p) => Number(p) !== v.port));
  const agent = testAgent(t);

  const ok = await get(agent, `${v.url}/x`, { headers: { 'x-api-key': 'k-1' } });
  assert.equal(ok.status, 200);
  assert.equal(ok.headers['x-config'], 'one');
  assert.equal(ok.headers['x-api-client'], 'mobile', 'the custom module ran');
  assert.equal((JSON.parse(ok.body) as { headers: Record<string, string> }).headers['x-api-key'], undefined);
  assert.equal((await get(agent, `${v.url}/x`)).status, 401, 'the custom module refuses an unknown key');

  const view = JSON.parse((await get(agent, `http://127.0.0.1:${admin}/api/v1/services/api`)).body) as {
    middleware: Record<string, unknown>[];
    routes: { name: string; paths: string[]; match: unknown; middleware: Record<string, { users?: unknown }>[] }[];
  };
  assert.deepEqual(view.middleware[0], { module: MODULE, options: { keys: { 'k-1': 'mobile' } } });
  assert.deepEqual(view.middleware[1], { headers: { request: { set: {}, add: {}, remove: [] }, response: { set: { 'x-config': 'one' }, add: {}, remove: [] } } });
  assert.deepEqual(
    view.routes.map((r) => [r.name, r.paths, r.match]),
    [
      ['private', ['/private'], null],
      ['old', ['/old'], { methods: ['GET'] }],
    ],
  );
  assert.deepEqual(view.routes[0]?.middleware[0]?.basic_auth?.users, ['alice'], 'user names only, never hashes');

  // HTTP/2 (h2c): the same middleware answers.
  const h2Private = await curlHead(['--http2-prior-knowledge', '-H', 'x-api-key: k-1', `http://127.0.0.1:${h2}/private`]);
  assert.match(h2Private, /^HTTP\/2 401/);
  assert.match(h2Private, /www-authenticate: Basic realm="Restricted"/i);
  const h2Old = await curlHead(['--http2-prior-knowledge', '-H', 'x-api-key: k-1', `http://127.0.0.1:${h2}/old/a?b=c`]);
  assert.match(h2Old, /^HTTP\/2 307/);
  assert.match(h2Old, /location: \/new\/a\?b=c/i);
  assert.match(h2Old, /x-config: one/i);

  writeFileSync(v.configFile, config('two').replace('k-1: mobile', 'k-2: partner'));
  v.child.kill('SIGHUP');
  await eventually(async () => (await get(agent, `${v.url}/x`, { headers: { 'x-api-key': 'k-2' } })).headers['x-config'] === 'two', 30_000, 'the reloaded middleware answers');
  assert.equal((await get(agent, `${v.url}/x`, { headers: { 'x-api-key': 'k-1' } })).status, 401, 'the old key is gone');
  const after = JSON.parse((await get(agent, `http://127.0.0.1:${admin}/api/v1/services/api`)).body) as {
    middleware: { headers?: { response: { set: Record<string, string> } } }[];
  };
  assert.equal(after.middleware[1]?.headers?.response.set['x-config'], 'two');
});
