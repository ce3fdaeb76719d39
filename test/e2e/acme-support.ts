/** Shared steps of the ACME tests: Velocity with `tls.acme` in front of pebble, and TLS probes of what it serves. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { connect, type PeerCertificate } from 'node:tls';
import { request } from 'undici';
import type { Logger } from '../../src/observe/logger.ts';
import type { CertificateStatus } from '../../src/proxy/acme/manager.ts';
import type { Velocity } from '../../src/runtime/instance.ts';
import { type Pebble, type PebbleOptions, startPebble } from '../support/pebble.ts';
import { freePort, sleep } from '../support/spawn.ts';
import { startInProcess } from '../support/velocity.ts';

export const TOKEN = 'acme-test-token-0123456789';

export interface AcmeLab {
  pebble: Pebble;
  httpPort: number;
  httpsPort: number;
  storage: string;
}

/** Free ports for Velocity's listeners, pebble pointed at them, and a storage directory. */
export async function acmeLab(t: TestContext, options: Omit<PebbleOptions, 'httpPort' | 'tlsPort'> = {}): Promise<AcmeLab | undefined> {
  const [httpPort, httpsPort] = [await freePort(), await freePort()];
  const pebble = await startPebble(t, { httpPort, tlsPort: httpsPort, ...options });
  if (!pebble) return undefined;
  const storage = mkdtempSync(join(tmpdir(), 'velocity-acme-'));
  t.after(() => rmSync(storage, { recursive: true, force: true }));
  return { pebble, httpPort, httpsPort, storage };
}

export interface AcmeYaml {
  hosts?: string[];
  challenges?: string[];
  redirect?: boolean;
  backend?: number;
  /** Extra lines inside `acme:` (indented by the caller-free helper). */
  extra?: string[];
  storage?: string;
  httpsPort?: number;
  httpPort?: number;
  /** Data-path threads (`workers`). */
  workers?: number;
}

export function acmeYaml(lab: AcmeLab, o: AcmeYaml = {}): string {
  const hosts = o.hosts ?? ['shop.example.com'];
  return `
listeners:
  - type: https
    listen: 127.0.0.1:${o.httpsPort ?? lab.httpsPort}
    tls:
      acme:
        email: ops@example.com
        ca: ${lab.pebble.directory}
        ca_root: ${lab.pebble.apiRoot}
        storage: ${o.storage ?? lab.storage}
        challenges: [${(o.challenges ?? ['http-01']).join(', ')}]
        retry: { base: 300ms, max: 2s }
${(o.extra ?? []).map((l) => `        ${l}`).join('\n')}
${o.redirect === false ? '' : `  - type: redirect\n    listen: 127.0.0.1:${o.httpPort ?? lab.httpPort}`}
admin: { listen: "127.0.0.1:0", token: ${TOKEN} }
workers: ${o.workers ?? 1}
services:
  - name: shop
    hosts: [${hosts.join(', ')}]
    servers: [${o.backend ? `http://127.0.0.1:${o.backend}` : ''}]
`;
}

export async function startAcmeVelocity(t: TestContext, yaml: string, logger?: Logger): Promise<Velocity> {
  return startInProcess(t, yaml, logger ? { logger } : {});
}

/** The certificate served for `servername` (not verified: the placeholder is self-signed). */
export function servedCertificate(port: number, servername: string): Promise<PeerCertificate> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, servername, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] }, () => {
      const cert = socket.getPeerCertificate(true);
      socket.end();
      resolve(cert);
    });
    socket.once('error', reject);
    socket.setTimeout(10_000, () => socket.destroy(new Error('TLS handshake timed out')));
  });
}

/** Waits (bounded) until `servername` is served a certificate whose issuer is not the placeholder, or other than `notSerial`. */
export async function waitForIssued(port: number, servername: string, options: { notSerial?: string; timeoutMs?: number } = {}): Promise<PeerCertificate> {
  const until = Date.now() + (options.timeoutMs ?? 90_000);
  let last: PeerCertificate | undefined;
  for (;;) {
    last = await servedCertificate(port, servername).catch(() => undefined);
    if (last && !/placeholder/i.test(String(last.issuer?.CN)) && last.serialNumber !== options.notSerial) return last;
    if (Date.now() > until) throw new Error(`no issued certificate for ${servername} within the bound; last served: ${last?.issuer?.CN ?? 'nothing'} ${last?.serialNumber ?? ''}`);
    await sleep(200);
  }
}

async function admin(velocity: Velocity, method: string, path: string): Promise<{ status: number; text: string }> {
  const res = await request(`http://127.0.0.1:${velocity.adminAddress?.port}${path}`, { method: method as 'GET', headers: { authorization: `Bearer ${TOKEN}` } });
  return { status: res.statusCode, text: await res.body.text() };
}

/** The certificates API (`/api/v1/certificates…`). */
export async function adminApi(velocity: Velocity, method: string, path: string): Promise<{ status: number; body: { certificates: CertificateStatus[]; renewed?: boolean } }> {
  const { status, text } = await admin(velocity, method, path);
  return { status, body: JSON.parse(text) };
}

export async function metricValue(velocity: Velocity, line: RegExp): Promise<number> {
  const { text } = await admin(velocity, 'GET', '/metrics');
  const m = text.split('\n').find((l) => line.test(l));
  return m ? Number(m.split(' ').pop()) : Number.NaN;
}

export async function waitUntil(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 60_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** One name's entry in the certificates API (fails the test when absent). */
export async function certificateStatus(velocity: Velocity, name: string): Promise<CertificateStatus> {
  const { body } = await adminApi(velocity, 'GET', `/api/v1/certificates/${name}`);
  const entry = body.certificates[0];
  if (!entry) throw new Error(`no certificate entry for ${name}`);
  return entry;
}

/**
 * Two instances sharing storage: both serve one certificate from one order, and a
 * `renew now` on the second reaches the first through storage (one more order).
 */
export async function assertOrderedOnceAndRenewedTogether(a: Velocity, b: Velocity, httpsA: number, httpsB: number, name = 'shop.example.com'): Promise<void> {
  const [certA, certB] = await Promise.all([waitForIssued(httpsA, name), waitForIssued(httpsB, name)]);
  assert.equal(certA.serialNumber, certB.serialNumber, 'both serve the one certificate');
  const orders = async () => (await metricValue(a, /^velocity_acme_orders_total\{result="success"\}/)) + (await metricValue(b, /^velocity_acme_orders_total\{result="success"\}/));
  assert.equal(await orders(), 1, 'one order between the two instances');

  const renewed = await adminApi(b, 'POST', `/api/v1/certificates/${name}/renew`);
  assert.equal(renewed.body.renewed, true, JSON.stringify(renewed.body));
  const [newA, newB] = await Promise.all([
    waitForIssued(httpsA, name, { notSerial: certA.serialNumber, timeoutMs: 60_000 }),
    waitForIssued(httpsB, name, { notSerial: certA.serialNumber, timeoutMs: 60_000 }),
  ]);
  assert.equal(newA.serialNumber, newB.serialNumber, 'the instance that did not renew serves the renewed certificate from storage');
  assert.equal(await orders(), 2);
}
