/**
 * A real ACME CA on loopback for one test: Debian's `pebble` with
 * `pebble-challtestsrv` as its DNS (every name → 127.0.0.1), validating against
 * the ports Velocity's own listeners use. Stopped by PID at the end of the test.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { Agent, request } from 'undici';
import { certDir, createCa, issueCert } from './certs.ts';
import { serviceUnavailable } from './require-service.ts';
import { freePort, sleep } from './spawn.ts';
import { stopChild, watchOutput } from './velocity.ts';

export interface Pebble {
  /** The ACME directory URL. */
  readonly directory: string;
  /** PEM file of the CA that signed pebble's own API certificate (Velocity's `ca_root`). */
  readonly apiRoot: string;
  /** PEM file of the root that issued certificates chain to (fetched from pebble's management API). */
  readonly issuingRoot: string;
  readonly dir: string;
  /** Stops pebble (the CA goes down); the DNS stays. */
  stop(): Promise<void>;
  /** Starts pebble again on the same ports (a new root: pebble keeps no state). */
  start(): Promise<void>;
}

export interface PebbleOptions {
  /** Where the CA validates HTTP-01 (Velocity's plain-HTTP listener port). */
  httpPort: number;
  /** Where the CA validates TLS-ALPN-01 (Velocity's https listener port). */
  tlsPort: number;
  /** Certificate lifetime in seconds (pebble's default is about 5 years). */
  validitySeconds?: number;
  /** Refuse accounts without external account binding; these kid → base64url HMAC keys are accepted. */
  eab?: Record<string, string>;
}

function available(cmd: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = spawn(cmd, ['-h'], { stdio: 'ignore' });
    probe.once('error', () => resolve(false));
    probe.once('exit', () => resolve(true));
  });
}

/** A fetch that trusts pebble's API certificate. */
async function fetchText(url: string, caFile: string): Promise<string> {
  const dispatcher = new Agent({ connect: { ca: readFileSync(caFile) } });
  try {
    const res = await request(url, { dispatcher });
    const text = await res.body.text();
    if (res.statusCode !== 200) throw new Error(`${url}: ${res.statusCode} ${text}`);
    return text;
  } finally {
    await dispatcher.close();
  }
}

export async function startPebble(t: TestContext, options: PebbleOptions): Promise<Pebble | undefined> {
  if (!(await available('pebble')) || !(await available('pebble-challtestsrv'))) {
    serviceUnavailable(t, 'pebble', 'the pebble and pebble-challtestsrv commands are not installed (Debian package "pebble")');
    return undefined;
  }
  const dir = certDir(t);
  const ca = createCa(dir, 'Pebble API CA');
  const api = issueCert(ca, ['localhost', '127.0.0.1'], { file: 'pebble-api' });
  const [acmePort, mgmtPort, dnsPort, dnsMgmtPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const configFile = join(dir, 'pebble.json');
  writeFileSync(
    configFile,
    JSON.stringify({
      pebble: {
        listenAddress: `127.0.0.1:${acmePort}`,
        managementListenAddress: `127.0.0.1:${mgmtPort}`,
        certificate: api.cert,
        privateKey: api.key,
        httpPort: options.httpPort,
        tlsPort: options.tlsPort,
        ocspResponderURL: '',
        externalAccountBindingRequired: options.eab !== undefined,
        externalAccountMACKeys: options.eab ?? {},
        ...(options.validitySeconds ? { certificateValidityPeriod: options.validitySeconds } : {}),
      },
    }),
  );
  const dns = spawn(
    'pebble-challtestsrv',
    ['-dns01', `127.0.0.1:${dnsPort}`, '-http01', '', '-https01', '', '-tlsalpn01', '', '-management', `127.0.0.1:${dnsMgmtPort}`, '-defaultIPv4', '127.0.0.1', '-defaultIPv6', ''],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  t.after(() => stopChild(dns, 'SIGKILL'));
  let pebble: ChildProcess | undefined;
  const launch = async () => {
    const child = spawn('pebble', ['-config', configFile, '-dnsserver', `127.0.0.1:${dnsPort}`], {
      stdio: ['ignore', 'pipe', 'pipe'],
      // No random validation delays; authorizations are never reused (every order validates again).
      env: { ...process.env, PEBBLE_VA_NOSLEEP: '1', PEBBLE_AUTHZREUSE: '0', PEBBLE_WFE_NONCEREJECT: '0' },
    });
    pebble = child;
    await watchOutput(child).waitFor(/Listening on: 127\.0\.0\.1:\d+/, 30_000);
  };
  const stop = async () => {
    if (pebble) await stopChild(pebble, 'SIGKILL');
  };
  t.after(stop);
  try {
    await watchOutput(dns).waitFor(/Creating TCP and UDP DNS-01 challenge server on 127\.0\.0\.1|Starting management server/, 30_000);
    await launch();
  } catch (err) {
    serviceUnavailable(t, 'pebble', (err as Error).message);
    return undefined;
  }
  const issuingRoot = join(dir, 'pebble-issuing-root.pem');
  for (let i = 0; ; i++) {
    try {
      writeFileSync(issuingRoot, await fetchText(`https://127.0.0.1:${mgmtPort}/roots/0`, ca.cert));
      break;
    } catch (err) {
      if (i > 50) throw err;
      await sleep(100);
    }
  }
  return {
    directory: `https://127.0.0.1:${acmePort}/dir`,
    apiRoot: ca.cert,
    issuingRoot,
    dir,
    stop,
    start: launch,
  };
}
