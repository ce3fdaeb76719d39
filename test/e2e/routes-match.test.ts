/** Routing on more than host and path, through the binary: conditions, precedence, shadow warnings and config errors at file:line:column. */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { BIN, get, startBackends, startVelocityProcess, testAgent } from '../support/velocity.ts';

/** A route that names itself in an x-route response header. */
const tag = (name: string) => `middleware: [{ headers: { response: { set: { x-route: ${name} } } } }]`;

function validate(t: { after(fn: () => void): void }, yaml: string): Promise<{ code: number; out: string; file: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'velocity-validate-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'velocity.yaml');
  writeFileSync(file, yaml);
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, 'validate', '--config', file], (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr, file });
    });
  });
}

describe('route matching', () => {
  test('method, header (exact, present, regex), query, client IP and path regex each pick their route; more conditions first, then file order', async (t) => {
    const [b] = await startBackends(t, 1);
    const velocity = await startVelocityProcess(
      t,
      `listen: "127.0.0.1:0"
admin: { enabled: false }
services:
  - name: app
    servers: [${b?.url}]
    routes:
      - { name: post, paths: [/api], match: { methods: [POST] }, ${tag('post')} }
      - { name: staging, paths: [/api], match: { headers: { X-Env: staging } }, ${tag('staging')} }
      - { name: debug, paths: [/api], match: { headers: { x-debug: { present: true } } }, ${tag('debug')} }
      - { name: user, paths: [/api], match: { headers: { x-user: { regex: "^u[0-9]+$" } } }, ${tag('user')} }
      - { name: v2, paths: [/api], match: { query: { v: "2" } }, ${tag('v2')} }
      - { name: office, paths: [/api], match: { client_ip: [10.0.0.0/8] }, ${tag('office')} }
      - { name: local, paths: [/local], match: { client_ip: [127.0.0.0/8, "::1"] }, ${tag('local')} }
      - { name: item, paths: [/items], match: { path_regex: "^/items/[0-9]+$" }, ${tag('item')} }
      - { name: post-staging, paths: [/api], match: { methods: [POST], headers: { x-env: staging } }, ${tag('post-staging')} }
`,
    );
    const agent = testAgent(t);
    const route = async (path: string, init: { method?: string; headers?: Record<string, string> } = {}) => {
      const res = await get(agent, `${velocity.url}${path}`, init);
      assert.equal(res.status, 200, `${path}: ${res.body}`);
      return res.headers['x-route'] ?? 'default';
    };
    assert.equal(await route('/api/x'), 'default');
    assert.equal(await route('/api/x', { method: 'POST' }), 'post');
    assert.equal(await route('/api/x', { headers: { 'x-env': 'staging' } }), 'staging');
    assert.equal(await route('/api/x', { headers: { 'x-env': 'Staging' } }), 'default', 'an exact header value is case-sensitive');
    assert.equal(await route('/api/x', { headers: { 'x-debug': '' } }), 'debug');
    assert.equal(await route('/api/x', { headers: { 'x-user': 'u42' } }), 'user');
    assert.equal(await route('/api/x', { headers: { 'x-user': 'admin' } }), 'default');
    assert.equal(await route('/api/x?a=1&v=2'), 'v2');
    assert.equal(await route('/api/x?v=22'), 'default');
    assert.equal(await route('/local/x'), 'local', 'the client is 127.0.0.1');
    assert.equal(await route('/items/12'), 'item');
    assert.equal(await route('/items/12/edit'), 'default');
    // Two conditions beat one, though written later.
    assert.equal(await route('/api/x', { method: 'POST', headers: { 'x-env': 'staging' } }), 'post-staging');
    // Equal rank: the first in the file (staging before debug).
    assert.equal(await route('/api/x', { headers: { 'x-env': 'staging', 'x-debug': '1' } }), 'staging');
  });

  test('a service-level match narrows the service; a request no route takes is 404', async (t) => {
    const [b] = await startBackends(t, 1);
    const velocity = await startVelocityProcess(
      t,
      `listen: "127.0.0.1:0"
admin: { enabled: false }
services:
  - name: admin
    paths: [/admin]
    match: { headers: { x-admin-token: { present: true } }, methods: [GET, post] }
    servers: [${b?.url}]
    ${tag('admin')}
`,
    );
    const agent = testAgent(t);
    assert.equal((await get(agent, `${velocity.url}/admin`, { headers: { 'x-admin-token': 't' } })).headers['x-route'], 'admin');
    const refused = await get(agent, `${velocity.url}/admin`);
    assert.equal(refused.status, 404);
    assert.equal(refused.headers['x-velocity-error'], 'NO_ROUTE');
    assert.equal((await get(agent, `${velocity.url}/admin`, { method: 'DELETE', headers: { 'x-admin-token': 't' } })).status, 404);
  });

  test('velocity validate warns about a route an earlier one shadows, at its line, and still passes', async (t) => {
    const r = await validate(
      t,
      `services:
  - name: app
    servers: [http://127.0.0.1:9]
    routes:
      - { paths: [/api], match: { methods: [GET, POST] } }
      - { paths: [/api], match: { methods: [GET] } }
      - { paths: [/api], match: { methods: [GET], headers: { x-a: "1" } } }
`,
    );
    assert.equal(r.code, 0, r.out);
    const warnings = r.out.split('\n').filter((l) => l.startsWith('warning:'));
    assert.equal(warnings.length, 1, r.out);
    assert.match(
      warnings[0] as string,
      new RegExp(`^warning: ${r.file}:6:9: services\\[0\\]\\.routes\\[1\\]: route app/1 can never match host \\* path /api: route app/0 comes first`),
    );
  });

  test('a bad regex, an unknown middleware, a plain-text password and an unknown service are errors at file:line:column', async (t) => {
    const r = await validate(
      t,
      `services:
  - name: app
    servers: [http://127.0.0.1:9]
    match:
      path_regex: "^/items/(["
    middleware:
      - strip_prefx: { prefixes: [/api] }
      - basic_auth:
          users: { alice: hunter2 }
      - split: { groups: [{ service: canary, weight: 5 }, { service: app, weight: 95 }] }
      - replace_path: { regex: "(?<x", replacement: /y }
`,
    );
    assert.equal(r.code, 1);
    const f = r.file;
    assert.match(r.out, new RegExp(`${f}:5:19: services\\[0\\]\\.match\\.path_regex: not a valid regular expression`));
    assert.match(r.out, new RegExp(`${f}:7:22: services\\[0\\]\\.middleware\\[0\\]\\.strip_prefx: unknown middleware "strip_prefx"; did you mean "strip_prefix"\\?`));
    assert.match(r.out, new RegExp(`${f}:9:27: services\\[0\\]\\.middleware\\[1\\]\\.basic_auth\\.users\\.alice: expected a bcrypt .* plain-text passwords are refused`));
    assert.match(r.out, new RegExp(`${f}:11:32: services\\[0\\]\\.middleware\\[3\\]\\.replace_path\\.regex: not a valid regular expression`));
    // Schema errors stop before the load-time checks; the unknown service is reported once the rest is right.
    const second = await validate(
      t,
      `services:
  - name: app
    servers: [http://127.0.0.1:9]
    middleware:
      - split: { groups: [{ service: canary, weight: 5 }, { service: app, weight: 95 }] }
`,
    );
    assert.equal(second.code, 1);
    assert.match(second.out, new RegExp(`${second.file}:5:16: services\\[0\\]\\.middleware\\[0\\]\\.split: no service named "canary"`));
  });
});
