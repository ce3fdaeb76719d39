/** Certificate loading, SNI selection, expiry warnings and TLS config errors (real files made by openssl). */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { CertificateError, expiryWarning, loadCaFile, loadCertificate } from '../../src/certificates.ts';
import { parseConfig } from '../../src/config/load.ts';
import { ConfigError } from '../../src/errors.ts';
import { CertificateStore } from '../../src/proxy/tls.ts';
import { certDir, createCa, issueCert, issueExpiredCert } from '../support/certs.ts';

function tlsConfig(certificates: { cert: string; key: string; hosts?: string[]; default?: boolean }[]) {
  return { certificates: certificates.map((c) => ({ default: false, ...c })), min_version: 'TLSv1.2' as const, ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256', watch: false };
}

test('a certificate and its key load, with the DNS names of the certificate', (t) => {
  const ca = createCa(certDir(t));
  const cert = issueCert(ca, ['shop.test', '*.shop.test'], { rsa: true });
  const loaded = loadCertificate(cert);
  assert.deepEqual(loaded.names, ['shop.test', '*.shop.test']);
  assert.match(loaded.subject, /CN=shop\.test/);
  assert.ok(loaded.notAfter.getTime() > Date.now());
});

test('a missing certificate file is an error naming the file', (t) => {
  const dir = certDir(t);
  const ca = createCa(dir);
  const cert = issueCert(ca, ['a.test']);
  const missing = join(dir, 'nope.crt');
  assert.throws(
    () => loadCertificate({ cert: missing, key: cert.key }),
    (err: unknown) => err instanceof CertificateError && err.file === missing && err.message === `cannot read certificate file ${missing}: no such file`,
  );
});

test('a directory given as key file is an error naming it', (t) => {
  const dir = certDir(t);
  const cert = issueCert(createCa(dir), ['a.test']);
  const sub = join(dir, 'keys');
  mkdirSync(sub);
  assert.throws(() => loadCertificate({ cert: cert.cert, key: sub }), { message: `cannot read key file ${sub}: it is a directory` });
});

test('a certificate with the wrong key is refused, naming both files', (t) => {
  const ca = createCa(certDir(t));
  const a = issueCert(ca, ['a.test']);
  const b = issueCert(ca, ['b.test']);
  assert.throws(() => loadCertificate({ cert: a.cert, key: b.key }), {
    message: `certificate ${a.cert} and key ${b.key} do not match (the key is not the certificate's private key)`,
  });
});

test('files that are not PEM are refused with what was expected', (t) => {
  const dir = certDir(t);
  const a = issueCert(createCa(dir), ['a.test']);
  const junk = join(dir, 'junk.pem');
  writeFileSync(junk, 'not a certificate\n');
  assert.throws(() => loadCertificate({ cert: junk, key: a.key }), { message: `certificate file ${junk} holds no PEM certificate (-----BEGIN CERTIFICATE-----)` });
  assert.throws(
    () => loadCertificate({ cert: a.cert, key: junk }),
    (err: unknown) => err instanceof CertificateError && err.file === junk && /not a valid PEM private key/.test(err.message),
  );
  assert.throws(() => loadCaFile(junk), { message: `CA file ${junk} holds no PEM certificate (-----BEGIN CERTIFICATE-----)` });
});

test('SNI picks the exact name, then a one-label wildcard, then the default certificate', (t) => {
  const ca = createCa(certDir(t));
  const a = issueCert(ca, ['a.test']);
  const wild = issueCert(ca, ['*.b.test'], { file: 'wild-b' });
  const fallback = issueCert(ca, ['default.test']);
  const store = new CertificateStore(tlsConfig([{ ...a }, { ...wild }, { ...fallback, default: true }]));
  assert.equal(store.certificateFor('a.test')?.files.cert, a.cert);
  assert.equal(store.certificateFor('A.TEST')?.files.cert, a.cert, 'names are case-insensitive');
  assert.equal(store.certificateFor('x.b.test')?.files.cert, wild.cert);
  assert.equal(store.certificateFor('y.x.b.test')?.files.cert, fallback.cert, 'a wildcard covers one label only');
  assert.equal(store.certificateFor('unknown.test')?.files.cert, fallback.cert);
  assert.equal(store.certificateFor(undefined)?.files.cert, fallback.cert, 'no SNI gets the default');
});

test('without a default flag the first certificate is the default; hosts override the names in the certificate', (t) => {
  const ca = createCa(certDir(t));
  const a = issueCert(ca, ['a.test']);
  const b = issueCert(ca, ['b.test']);
  const store = new CertificateStore(tlsConfig([{ ...a }, { ...b, hosts: ['api.example'] }]));
  assert.equal(store.certificateFor('nothing.test')?.files.cert, a.cert);
  assert.equal(store.certificateFor('api.example')?.files.cert, b.cert);
  assert.equal(store.certificateFor('b.test')?.files.cert, a.cert, 'hosts replace the certificate names');
});

test('an expired certificate gives a warning; one valid for months gives none', (t) => {
  const ca = createCa(certDir(t));
  const expired = loadCertificate(issueExpiredCert(ca, ['old.test']));
  const fresh = loadCertificate(issueCert(ca, ['new.test']));
  assert.match(expiryWarning(expired, Date.now()) ?? '', /old\.test\) expired on .*; clients will reject it/);
  assert.equal(expiryWarning(fresh, Date.now()), undefined);
  assert.match(expiryWarning(fresh, fresh.notAfter.getTime() - 5 * 86_400_000) ?? '', /expires in 5 day\(s\)/);
});

test('TLS config errors point at the file, line and column of the bad field', (t) => {
  const dir = certDir(t);
  const ca = createCa(dir);
  const a = issueCert(ca, ['a.test']);
  const b = issueCert(ca, ['b.test']);
  const yaml = [
    'listeners:',
    '  - type: https',
    '    listen: 127.0.0.1:0',
    '    tls:',
    '      certificates:',
    `        - cert: ${join(dir, 'missing.crt')}`,
    `          key: ${a.key}`,
    `        - cert: ${a.cert}`,
    `          key: ${b.key}`,
    '      min_version: TLSv1.1',
    'services:',
    '  - name: web',
    '    tls: { ca: /nonexistent/ca.pem }',
    '    servers: [https://127.0.0.1:9443]',
  ].join('\n');
  const err = (() => {
    try {
      parseConfig(yaml, 'tls.yaml');
    } catch (e) {
      return e as ConfigError;
    }
    assert.fail('expected a ConfigError');
  })();
  assert.ok(err instanceof ConfigError);
  const lines = err.message.split('\n');
  assert.ok(lines.includes(`tls.yaml:6:17: listeners[0].tls.certificates[0].cert: cannot read certificate file ${join(dir, 'missing.crt')}: no such file`), err.message);
  assert.ok(
    lines.includes(`tls.yaml:9:16: listeners[0].tls.certificates[1].key: certificate ${a.cert} and key ${b.key} do not match (the key is not the certificate's private key)`),
    err.message,
  );
  assert.ok(lines.includes('tls.yaml:10:20: listeners[0].tls.min_version: expected TLSv1.2 or TLSv1.3'), err.message);
  assert.ok(lines.includes('tls.yaml:13:16: services[0].tls.ca: cannot read CA file /nonexistent/ca.pem: no such file'), err.message);
});

test('an unknown listener type and a second default certificate are config errors', (t) => {
  const ca = createCa(certDir(t));
  const a = issueCert(ca, ['a.test']);
  const yaml = (listener: string) => `listeners:\n${listener}\nservices:\n  - name: web\n    servers: [http://127.0.0.1:9001]\n`;
  assert.throws(
    () => parseConfig(yaml('  - type: quic\n    listen: 127.0.0.1:0'), 'x.yaml'),
    /x\.yaml:2:11: listeners\[0\]\.type: expected a listener with type http, https or redirect/,
  );
  const twoDefaults = `  - type: https\n    listen: 127.0.0.1:0\n    tls:\n      certificates:\n        - { cert: ${a.cert}, key: ${a.key}, default: true }\n        - { cert: ${a.cert}, key: ${a.key}, default: true }`;
  assert.throws(
    () => parseConfig(yaml(twoDefaults), 'x.yaml'),
    /listeners\[0\]\.tls\.certificates\[1\]\.default: only one certificate can be the default \(certificates\[0\] already is\)/,
  );
});

test('two listeners on one port are a config error naming both', () => {
  const yaml =
    'listen: 0.0.0.0:8080\nlisteners:\n  - { type: redirect, listen: "127.0.0.1:8080" }\nservices:\n  - name: db\n    mode: tcp\n    listen: 127.0.0.1:8080\n    servers: [tcp://127.0.0.1:5432]\n';
  assert.throws(
    () => parseConfig(yaml, 'x.yaml'),
    (err: unknown) => {
      const message = (err as Error).message;
      assert.match(message, /x\.yaml:3:\d+: listeners\[0\]\.listen: port 8080 is already used by listen\[0\]/);
      assert.match(message, /x\.yaml:7:13: services\[0\]\.listen: port 8080 is already used by listen\[0\]/);
      return true;
    },
  );
});

test('the CA file of a service is read as PEM', (t) => {
  const ca = createCa(certDir(t));
  assert.equal(loadCaFile(ca.cert).toString(), readFileSync(ca.cert, 'utf8'));
});
