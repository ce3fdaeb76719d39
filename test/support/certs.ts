/**
 * Test certificates made by the openssl command (Debian's OpenSSL 3): a CA and
 * server certificates it signs — valid, expired, or from another (untrusted) CA —
 * in a temp directory removed after the test.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';

export interface TestCa {
  readonly name: string;
  readonly dir: string;
  /** PEM file of the CA certificate (what clients and Velocity trust). */
  readonly cert: string;
  readonly key: string;
  readonly config: string;
}

export interface TestCert {
  /** PEM certificate file. */
  readonly cert: string;
  /** PEM private key file. */
  readonly key: string;
  readonly names: readonly string[];
}

function openssl(args: string[], cwd?: string): void {
  try {
    execFileSync('openssl', args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: Buffer };
    if (e.code === 'ENOENT') throw new Error('the openssl command is not installed (Debian package "openssl"); TLS tests need it to make certificates');
    throw new Error(`openssl ${args.join(' ')} failed: ${e.stderr?.toString() ?? e.message}`);
  }
}

/** A temp directory for certificates, removed when the test ends. */
export function certDir(t: Pick<TestContext, 'after'>): string {
  const dir = mkdtempSync(join(tmpdir(), 'velocity-certs-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

let serial = 0;

/** A self-signed CA able to sign server certificates (openssl ca, so dates can lie in the past). */
export function createCa(dir: string, name = 'Velocity Test CA'): TestCa {
  const base = join(dir, name.replace(/\W+/g, '-').toLowerCase());
  const cert = `${base}.crt`;
  const key = `${base}.key`;
  const config = `${base}.cnf`;
  writeFileSync(`${base}.index`, '');
  writeFileSync(`${base}.serial`, `${(Date.now() * 1000 + ++serial).toString(16).padStart(16, '0')}\n`);
  writeFileSync(
    config,
    [
      '[ ca ]',
      'default_ca = test_ca',
      '[ test_ca ]',
      `database = ${base}.index`,
      `new_certs_dir = ${dir}`,
      `serial = ${base}.serial`,
      'default_md = sha256',
      'policy = any',
      'copy_extensions = copy',
      'unique_subject = no',
      '[ any ]',
      'commonName = supplied',
      '',
    ].join('\n'),
  );
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert, '-days', '30', '-subj', `/CN=${name}`]);
  return { name, dir, cert, key, config };
}

export interface IssueOptions {
  /** Validity window; defaults to from an hour ago for 30 days. Dates as YYYYMMDDHHMMSSZ. */
  startDate?: string;
  endDate?: string;
  /** RSA-2048 instead of the default EC P-256 key. */
  rsa?: boolean;
  /** File name stem; defaults to the first name. */
  file?: string;
}

const opensslDate = (d: Date) => `${d.toISOString().replace(/[-:T]/g, '').slice(0, 14)}Z`;

/** A server certificate for `names` (first one is the CN; all are DNS subjectAltNames) signed by `ca`. */
export function issueCert(ca: TestCa, names: readonly string[], options: IssueOptions = {}): TestCert {
  const stem = join(ca.dir, (options.file ?? names[0] ?? 'server').replace(/[^\w.-]+/g, '_'));
  const key = `${stem}.key`;
  const csr = `${stem}.csr`;
  const cert = `${stem}.crt`;
  const keyArgs = options.rsa ? ['-newkey', 'rsa:2048'] : ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'];
  const san = names.map((n) => (/^[\d.]+$/.test(n) ? `IP:${n}` : `DNS:${n}`)).join(',');
  openssl(['req', '-new', ...keyArgs, '-nodes', '-keyout', key, '-out', csr, '-subj', `/CN=${names[0]}`, '-addext', `subjectAltName=${san}`]);
  const now = Date.now();
  openssl([
    'ca',
    '-batch',
    '-notext',
    '-config',
    ca.config,
    '-cert',
    ca.cert,
    '-keyfile',
    ca.key,
    '-in',
    csr,
    '-out',
    cert,
    '-startdate',
    options.startDate ?? opensslDate(new Date(now - 3_600_000)),
    '-enddate',
    options.endDate ?? opensslDate(new Date(now + 90 * 86_400_000)),
  ]);
  return { cert, key, names };
}

/** A certificate that expired yesterday. */
export function issueExpiredCert(ca: TestCa, names: readonly string[], file?: string): TestCert {
  const now = Date.now();
  return issueCert(ca, names, { startDate: opensslDate(new Date(now - 10 * 86_400_000)), endDate: opensslDate(new Date(now - 86_400_000)), file });
}
