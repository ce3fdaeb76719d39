/**
 * Where ACME state lives — the account key, certificates, challenge answers —
 * and the lock that makes instances sharing it order a name once. The file
 * implementation serves one machine or a shared directory (NFS and the like);
 * redis-storage.ts serves a fleet; stores.ts picks one for a config.
 */
import type { Buffer } from 'node:buffer';
import { randomBytes, X509Certificate } from 'node:crypto';
import { mkdir, open, readFile, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** A held lock: `end()` releases it exactly once. */
export interface StorageLock {
  end(): Promise<void>;
}

export interface AcmeStorage {
  /** Where it is, for log lines and the API. */
  readonly description: string;
  read(key: string): Promise<Buffer | undefined>;
  /** Replaces the value whole: readers see the old or the new one, never a mix. Readable by the owner only. */
  write(key: string, value: string | Buffer): Promise<void>;
  remove(key: string): Promise<void>;
  /** A value that changes whenever `key` is written (for cheap polling), or undefined when absent. */
  stamp(key: string): Promise<string | undefined>;
  /** Waits (up to `waitMs`) for the named lock; held locks are kept alive until ended, dead holders' locks expire after `ttlMs`. */
  lock(name: string, options?: { waitMs?: number; ttlMs?: number }): Promise<StorageLock>;
}

export class LockTimeoutError extends Error {
  constructor(name: string, holder: string, waitMs: number) {
    super(`lock ${name} still held by ${holder} after ${Math.round(waitMs / 1000)} s`);
    this.name = 'LockTimeoutError';
  }
}

/** Keys are relative paths of safe segments: nothing from a request can climb out of the directory. */
const KEY = /^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)*$/;

/** A key checked: relative paths of safe segments only. */
export function storageKey(key: string): string {
  if (!KEY.test(key) || key.split('/').some((s) => s === '.' || s === '..')) throw new Error(`invalid storage key ${JSON.stringify(key)}`);
  return key;
}

/** The owner of the process's locks: host, pid and a random part (two instances in one process differ too). */
export function lockOwner(): string {
  return `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
}

/**
 * Tries `take` until it returns the lock, every 250–500 ms (at random, so waiters
 * do not retry in step), for up to `waitMs`; then throws LockTimeoutError naming
 * the holder `holder` reports.
 */
export async function waitForLock<T>(name: string, waitMs: number, take: () => Promise<T | undefined>, holder: () => Promise<string | undefined>): Promise<T> {
  const giveUp = Date.now() + waitMs;
  for (;;) {
    const taken = await take();
    if (taken !== undefined) return taken;
    if (Date.now() >= giveUp) throw new LockTimeoutError(name, (await holder().catch(() => undefined)) ?? 'another instance', waitMs);
    await sleep(250 + Math.random() * 250);
  }
}

/**
 * A lock just taken: released once by `end()`; with `keepAlive`, refreshed every
 * third of its TTL while held. Both only touch the lock while this owner holds
 * it; their failures are ignored (it then expires).
 */
export function heldLock(release: () => Promise<unknown>, keepAlive?: { ttlMs: number; refresh(): Promise<unknown> }): StorageLock {
  const timer = keepAlive && setInterval(() => void keepAlive.refresh().catch(() => undefined), keepAlive.ttlMs / 3);
  timer?.unref();
  let ended = false;
  return {
    end: async () => {
      if (ended) return;
      ended = true;
      clearInterval(timer);
      await release().catch(() => undefined);
    },
  };
}

export class FileStorage implements AcmeStorage {
  readonly root: string;
  readonly description: string;

  constructor(dir: string) {
    this.root = resolve(dir);
    this.description = this.root;
  }

  path(key: string): string {
    return join(this.root, storageKey(key));
  }

  async read(key: string): Promise<Buffer | undefined> {
    try {
      return await readFile(this.path(key));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  /** Write to a temp file in the same directory (0600), fsync, then rename over the target: atomic on POSIX. */
  async write(key: string, value: string | Buffer): Promise<void> {
    const file = this.path(key);
    await mkdir(dirname(file), { recursive: true, mode: 0o700 });
    const temp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    const handle = await open(temp, 'wx', 0o600);
    try {
      await handle.writeFile(value);
      await handle.sync();
    } finally {
      await handle.close();
    }
    try {
      await rename(temp, file);
    } catch (err) {
      await rm(temp, { force: true });
      throw err;
    }
  }

  async remove(key: string): Promise<void> {
    await rm(this.path(key), { force: true });
  }

  async stamp(key: string): Promise<string | undefined> {
    try {
      const s = await stat(this.path(key));
      return `${s.ino}:${s.mtimeMs}:${s.size}`;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  /**
   * A lock file created exclusively (O_EXCL), holding its owner and expiry. The
   * holder rewrites it every third of the TTL; a file past its expiry belongs to
   * a holder that died and is taken over.
   */
  async lock(name: string, options: { waitMs?: number; ttlMs?: number } = {}): Promise<StorageLock> {
    const waitMs = options.waitMs ?? 15 * 60_000;
    const ttlMs = options.ttlMs ?? 60_000;
    const file = this.path(`locks/${name}.lock`);
    await mkdir(dirname(file), { recursive: true, mode: 0o700 });
    const owner = lockOwner();
    const body = () => JSON.stringify({ owner, expires: Date.now() + ttlMs });
    await waitForLock(
      name,
      waitMs,
      async () => {
        try {
          await writeFile(file, body(), { flag: 'wx', mode: 0o600 });
          return true;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        }
        const held = await this.readLock(file);
        if (held && held.expires < Date.now()) {
          // Expired: remove it only if it is still the one we read (another waiter may have taken it over); taken at the next try.
          const again = await this.readLock(file);
          if (again && again.owner === held.owner && again.expires === held.expires) await unlink(file).catch(() => undefined);
        }
        return undefined;
      },
      async () => (await this.readLock(file))?.owner,
    );
    return heldLock(
      async () => {
        if ((await this.readLock(file))?.owner === owner) await unlink(file);
      },
      {
        ttlMs,
        refresh: async () => {
          if ((await this.readLock(file))?.owner === owner) await this.write(`locks/${name}.lock`, body());
        },
      },
    );
  }

  private async readLock(file: string): Promise<{ owner: string; expires: number } | undefined> {
    try {
      const parsed = JSON.parse(await readFile(file, 'utf8')) as { owner?: unknown; expires?: unknown };
      return typeof parsed.owner === 'string' && typeof parsed.expires === 'number' ? { owner: parsed.owner, expires: parsed.expires } : { owner: '?', expires: 0 };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      // A lock file caught half-written (or garbage): treat as held briefly, then expired.
      return { owner: 'unreadable lock file', expires: Date.now() + 1_000 };
    }
  }
}

/** Storage keys, in one place: per CA (its directory URL), so two CAs never mix accounts or certificates. */
export function caKey(directoryUrl: string): string {
  const url = new URL(directoryUrl);
  return `${url.hostname}${url.port ? `-${url.port}` : ''}${url.pathname}`.replace(/[^A-Za-z0-9.-]+/g, '-').replace(/-+$/, '');
}

export const keys = {
  accountKey: (ca: string) => `accounts/${ca}/account.key`,
  accountUrl: (ca: string) => `accounts/${ca}/account.json`,
  /** The chain (leaf first) and then the private key, in one file: written in one step, never a new key beside an old chain. */
  certificate: (ca: string, name: string) => `certificates/${ca}/${name}/${name}.pem`,
  /** Rewritten after every new certificate: what serving threads and other instances poll. */
  updated: (ca: string) => `certificates/${ca}/updated`,
  http01: (token: string) => `challenges/http-01/${token}`,
  tlsAlpn01: (name: string) => `challenges/tls-alpn-01/${name}.pem`,
  lock: (ca: string, name: string) => `${ca}--${name}`,
};

/** A certificate as storage keeps it: chain then key in one file. */
export interface StoredCertificate {
  readonly bundle: Buffer;
  /** PEM chain, leaf first. */
  readonly cert: string;
  readonly key: string;
  readonly leaf: X509Certificate;
}

/** Splits a PEM bundle into its private key and certificate chain; undefined when either is missing. */
export function splitBundle(pem: string): { key: string; cert: string } | undefined {
  const key = /-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]+?-----END [A-Z ]*PRIVATE KEY-----/.exec(pem)?.[0];
  const cert = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)?.join('\n');
  return key && cert ? { key, cert: `${cert}\n` } : undefined;
}

export function joinBundle(cert: string, key: string): string {
  return `${cert.trim()}\n${key.trim()}\n`;
}

/** The stored certificate of `name`, or undefined when there is none; throws when the file is unusable. */
export async function readCertificate(storage: AcmeStorage, ca: string, name: string): Promise<StoredCertificate | undefined> {
  const bundle = await storage.read(keys.certificate(ca, name));
  if (!bundle) return undefined;
  const parts = splitBundle(bundle.toString());
  if (!parts) throw new Error(`${storage.description}/${keys.certificate(ca, name)} does not hold a certificate and a private key`);
  return { bundle, ...parts, leaf: new X509Certificate(parts.cert) };
}
