/**
 * GET /api/v1/config never shows a secret: every field the schema marks secret
 * (the ACME EAB HMAC key, the sticky secret, OTLP export headers, the admin token,
 * Redis and etcd passwords) is shown as set, and the list of those fields is the
 * schema's own, so a secret added there is covered here too.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { request } from 'undici';
import { configJsonSchema } from '../../src/config/json-schema.ts';
import { configSecretPaths, secretPaths, withoutSecrets } from '../../src/config/secrets.ts';
import { startInProcess } from '../support/velocity.ts';

const TOKEN = 'admin-token-0123456789-secret';
const HMAC = 'ZWFiLWhtYWMta2V5LXNlY3JldA';
const STICKY = 'sticky-secret-0123456789abcdef';
const OTLP_KEY = 'Bearer otlp-api-key-secret';

test('GET /api/v1/config shows the ACME EAB key, sticky secret, OTLP headers and admin token as set, never their values', async (t) => {
  const storage = mkdtempSync(join(tmpdir(), 'velocity-acme-secrets-'));
  t.after(() => rmSync(storage, { recursive: true, force: true }));
  const velocity = await startInProcess(
    t,
    `listeners:
  - type: https
    listen: 127.0.0.1:0
    tls:
      acme:
        email: ops@example.com
        ca: https://127.0.0.1:9/dir
        storage: ${storage}
        eab: { kid: key-id-1, hmac: ${HMAC} }
        retry: { base: 30s, max: 60s }
admin: { listen: "127.0.0.1:0", token: ${TOKEN} }
tracing:
  otlp: { endpoint: "http://127.0.0.1:9/v1/traces", headers: { authorization: "${OTLP_KEY}" } }
services:
  - name: shop
    hosts: [shop.example.com]
    servers: []
    sticky: { secret: ${STICKY} }
`,
  );
  const res = await request(`http://127.0.0.1:${velocity.adminAddress?.port}/api/v1/config`, { headers: { authorization: `Bearer ${TOKEN}` } });
  const text = await res.body.text();
  assert.equal(res.statusCode, 200, text);
  for (const secret of [TOKEN, HMAC, STICKY, OTLP_KEY]) assert.ok(!text.includes(secret), `the answer shows ${secret}`);
  const { config } = JSON.parse(text);
  assert.equal(config.listeners[0].tls.acme.eab.hmac, '(set)');
  assert.equal(config.listeners[0].tls.acme.eab.kid, 'key-id-1', 'what is not secret is shown');
  assert.equal(config.services[0].sticky.secret, '(set)');
  assert.equal(config.tracing.otlp.headers.authorization, '(set)');
  assert.equal(config.admin.token, '(set)');
});

test('the secret fields are the ones the schema marks, passwords included', () => {
  const paths = configSecretPaths().map((p) => p.join('.'));
  for (const field of [
    'admin.token',
    'state.password',
    'state.sentinel_password',
    'config_source.etcd.auth.password',
    'listeners.*.tls.acme.eab.hmac',
    'services.*.sticky.secret',
    'tracing.otlp.headers.*',
  ])
    assert.ok(paths.includes(field), `${field} is declared secret (found: ${paths.join(', ')})`);
  // Derived from the same JSON Schema `velocity schema` writes: editors see them as writeOnly too.
  assert.deepEqual(secretPaths(configJsonSchema('test')), configSecretPaths());
  const shown = withoutSecrets({ state: { password: 'pw', url: 'redis://x' }, config_source: { etcd: { auth: { username: 'u', password: 'p' } } } });
  assert.deepEqual(shown, { state: { password: '(set)', url: 'redis://x' }, config_source: { etcd: { auth: { username: 'u', password: '(set)' } } } });
});
