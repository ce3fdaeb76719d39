/**
 * `tls.acme` in the config: defaults, errors at their line and column, and every
 * YAML block of docs/automatic-https.md accepted by the real loader (not only
 * the JSON Schema: cross-field checks and file checks too).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseConfig } from '../../src/config/load.ts';
import { LETS_ENCRYPT_DIRECTORY } from '../../src/config/schema/acme.ts';
import { ConfigError, type ConfigProblem } from '../../src/errors.ts';

function problems(yaml: string): ConfigProblem[] {
  try {
    parseConfig(yaml, 'acme.yaml');
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    return [...err.problems];
  }
  assert.fail('expected the config to be refused');
}

const base = (acme: string, hosts = '[shop.example.com]') => `listeners:
  - type: https
    listen: ":8443"
    tls:
      acme:
${acme}
services:
  - { name: shop, hosts: ${hosts}, servers: ["http://127.0.0.1:3000"] }
`;

describe('tls.acme config', () => {
  test('an acme block with only an email means Let’s Encrypt, both challenges, ECDSA, the services’ hosts', () => {
    const { config } = parseConfig(base('        email: ops@example.com'), 'acme.yaml');
    const listener = config.listeners[0];
    assert.equal(listener?.type, 'https');
    const acme = listener?.type === 'https' ? listener.tls.acme : undefined;
    assert.equal(acme?.ca, LETS_ENCRYPT_DIRECTORY);
    assert.deepEqual(acme?.challenges, ['http-01', 'tls-alpn-01']);
    assert.equal(acme?.key_type, 'ecdsa');
    assert.deepEqual(acme?.retry, { base: 60_000, max: 86_400_000 });
    assert.deepEqual(listener?.type === 'https' ? listener.tls.certificates : undefined, []);
  });

  test('an unknown challenge type is refused at its line and column', () => {
    const [p] = problems(base('        challenges: [http-01, dns-01]'));
    assert.equal(p?.path, 'listeners[0].tls.acme.challenges[1]');
    assert.equal(p?.line, 6);
    assert.equal(p?.column, 31);
    assert.match(String(p?.message), /expected http-01 or tls-alpn-01/);
  });

  test('a wildcard host is refused: it needs DNS-01', () => {
    const [p] = problems(base('        hosts: ["*.example.com"]'));
    assert.equal(p?.path, 'listeners[0].tls.acme.hosts[0]');
    assert.equal(p?.line, 6);
    assert.match(String(p?.message), /exact host name.*DNS-01/);
  });

  test('an acme block with no name to obtain (services on "*" only) is refused at the block', () => {
    const [p] = problems(base('        email: ops@example.com', '["*"]'));
    assert.equal(p?.path, 'listeners[0].tls.acme');
    assert.equal(p?.line, 6);
    assert.match(String(p?.message), /no host to obtain a certificate for/);
  });

  test('storage in Redis or etcd needs the state section on Redis or config_source, and is refused at the storage field without it', () => {
    const [p] = problems(base('        storage: { redis: {} }'));
    assert.deepEqual([p?.path, p?.line, p?.column], ['listeners[0].tls.acme.storage', 6, 18]);
    assert.match(String(p?.message), /set state\.store to redis/);
    const { config } = parseConfig(`${base('        storage: { redis: {} }')}state: { store: redis, url: "redis://127.0.0.1:6379" }\n`, 'acme.yaml');
    const listener = config.listeners[0];
    assert.deepEqual(listener?.type === 'https' ? listener.tls.acme?.storage : undefined, { redis: { prefix: 'velocity:acme:' } });
    const [bad] = problems(base('        storage: { consul: {} }'));
    assert.deepEqual([bad?.path, bad?.message], ['listeners[0].tls.acme.storage.consul', 'unknown field "consul"; expected one of redis, etcd']);
    const [etcd] = problems(base('        storage: { etcd: {} }'));
    assert.deepEqual([etcd?.path, etcd?.line], ['listeners[0].tls.acme.storage', 6]);
    assert.match(String(etcd?.message), /storage in etcd uses the etcd of config_source/);
    const [prefix] = problems(base('        storage: { etcd: { prefix: acme } }'));
    assert.equal(prefix?.path, 'listeners[0].tls.acme.storage.etcd.prefix');
    const [neither] = problems(base('        storage: {}'));
    assert.match(String(neither?.message), /name one of redis or etcd/);
    const [number] = problems(base('        storage: 5'));
    assert.match(String(number?.message), /directory path, \{ redis: \{\} \} for the Redis of the state section, or \{ etcd: \{\} \}/);
  });

  test('a bad CA URL, email, EAB key and missing ca_root file are each refused with their field', () => {
    const found = problems(
      base('        ca: "ftp://ca.example/dir"\n        email: not-an-email\n        eab: { kid: k1, hmac: "not base64!" }\n        ca_root: /nonexistent/root.pem'),
    );
    const byPath = new Map(found.map((p) => [p.path, p]));
    assert.match(String(byPath.get('listeners[0].tls.acme.ca')?.message), /https:\/\/ URL of an ACME directory/);
    assert.match(String(byPath.get('listeners[0].tls.acme.email')?.message), /email address/);
    assert.match(String(byPath.get('listeners[0].tls.acme.eab.hmac')?.message), /base64url/);
    assert.match(String(byPath.get('listeners[0].tls.acme.ca_root')?.message), /no such file/);
    assert.equal(byPath.get('listeners[0].tls.acme.email')?.line, 7);
  });

  test('an https listener needs certificate files or acme', () => {
    const p = problems(`listeners:
  - type: https
    listen: ":8443"
    tls: {}
services:
  - { name: shop, servers: ["http://127.0.0.1:3000"] }
`).find((x) => x.path === 'listeners[0].tls.certificates');
    assert.match(String(p?.message), /at least one certificate is needed \(or acme/);
  });

  test('every YAML block of docs/automatic-https.md loads', () => {
    const file = fileURLToPath(new URL('../../docs/automatic-https.md', import.meta.url));
    const blocks = readFileSync(file, 'utf8')
      .split(/^```yaml\n/m)
      .slice(1)
      .map((rest) => rest.split(/^```/m)[0] as string);
    assert.ok(blocks.length >= 4, `found ${blocks.length} blocks`);
    process.env.ZEROSSL_KID ??= 'kid-example';
    process.env.ZEROSSL_HMAC ??= 'aGVsbG8td29ybGQ';
    for (const [i, yaml] of blocks.entries()) {
      try {
        parseConfig(yaml, `docs/automatic-https.md block ${i + 1}`);
      } catch (err) {
        assert.fail(err instanceof ConfigError ? err.problems.map((p) => `${p.file}:${p.line}:${p.column}: ${p.path}: ${p.message}`).join('\n') : String(err));
      }
    }
  });
});
