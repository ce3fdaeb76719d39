/**
 * Certificate and key files loaded and checked, with errors that name the file at
 * fault. A leaf: the config validates listener and upstream TLS with it, and TLS
 * termination (proxy/tls.ts) serves what it loads.
 */
import type { Buffer } from 'node:buffer';
import { createPrivateKey, type KeyObject, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';

/** A certificate or key file that cannot be used, with the file named. */
export class CertificateError extends Error {
  readonly file: string;

  constructor(file: string, message: string) {
    super(message);
    this.name = 'CertificateError';
    this.file = file;
  }
}

/** Warn this long before a certificate expires (the window in which ACME clients renew). */
export const EXPIRY_WARNING_MS = 30 * 86_400_000;

export interface CertificateFiles {
  cert: string;
  key: string;
}

export interface LoadedCertificate {
  readonly files: CertificateFiles;
  /** Lower-case DNS names it serves (from `hosts`, else its subjectAltName, else its CN). */
  readonly names: readonly string[];
  readonly subject: string;
  readonly notAfter: Date;
  readonly pem: { cert: Buffer; key: Buffer };
}

function readPem(file: string, what: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a directory' : code === 'EACCES' ? 'permission denied' : (err as Error).message;
    throw new CertificateError(file, `cannot read ${what} file ${file}: ${why}`);
  }
}

/** Reads a PEM bundle of CA certificates (for verifying servers); throws CertificateError. */
export function loadCaFile(file: string): Buffer {
  const pem = readPem(file, 'CA');
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new CertificateError(file, `CA file ${file} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
  try {
    new X509Certificate(pem);
  } catch (err) {
    throw new CertificateError(file, `CA file ${file} is not a valid PEM certificate: ${(err as Error).message}`);
  }
  return pem;
}

/** The DNS names a certificate is valid for: subjectAltName DNS entries, else the subject CN. */
export function certificateNames(x509: X509Certificate): string[] {
  const names: string[] = [];
  for (const entry of (x509.subjectAltName ?? '').split(',')) {
    const m = /^\s*DNS:(.+)$/.exec(entry);
    if (m) names.push((m[1] as string).trim().toLowerCase());
  }
  if (names.length === 0) {
    const cn = /(?:^|\n)CN=([^\n]+)/.exec(x509.subject);
    if (cn) names.push((cn[1] as string).trim().toLowerCase());
  }
  return names;
}

/**
 * Loads a certificate and its private key and checks they belong together.
 * Throws CertificateError naming the file at fault.
 */
export function loadCertificate(files: CertificateFiles, hosts?: readonly string[]): LoadedCertificate {
  const cert = readPem(files.cert, 'certificate');
  const key = readPem(files.key, 'key');
  if (!cert.includes('-----BEGIN CERTIFICATE-----')) {
    throw new CertificateError(files.cert, `certificate file ${files.cert} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
  }
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch (err) {
    throw new CertificateError(files.cert, `certificate file ${files.cert} is not a valid PEM certificate: ${(err as Error).message}`);
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(key);
  } catch (err) {
    const encrypted = key.includes('ENCRYPTED');
    throw new CertificateError(
      files.key,
      encrypted ? `key file ${files.key} is encrypted; Velocity needs an unencrypted key` : `key file ${files.key} is not a valid PEM private key: ${(err as Error).message}`,
    );
  }
  if (!x509.checkPrivateKey(privateKey)) {
    throw new CertificateError(files.key, `certificate ${files.cert} and key ${files.key} do not match (the key is not the certificate's private key)`);
  }
  return {
    files,
    names: hosts && hosts.length > 0 ? hosts.map((h) => h.toLowerCase()) : certificateNames(x509),
    subject: x509.subject.replace(/\n/g, ', '),
    notAfter: new Date(x509.validTo),
    pem: { cert, key },
  };
}

/** A warning for a certificate that has expired or expires soon, or undefined. */
export function expiryWarning(cert: LoadedCertificate, now: number): string | undefined {
  const left = cert.notAfter.getTime() - now;
  if (left <= 0) return `certificate ${cert.files.cert} (${cert.names.join(', ')}) expired on ${cert.notAfter.toISOString()}; clients will reject it`;
  if (left <= EXPIRY_WARNING_MS)
    return `certificate ${cert.files.cert} (${cert.names.join(', ')}) expires in ${Math.ceil(left / 86_400_000)} day(s), on ${cert.notAfter.toISOString()}`;
  return undefined;
}
