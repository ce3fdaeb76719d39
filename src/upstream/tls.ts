/**
 * TLS toward https:// servers: the connect options a service's settings give
 * (CA file read once per config), and what a failed handshake means.
 */
import type { Buffer } from 'node:buffer';
import type { ConnectionOptions } from 'node:tls';
import { loadCaFile } from '../certificates.ts';
import type { UpstreamTlsConfig } from '../config/schema/upstream-tls.ts';
import type { Logger } from '../observe/logger.ts';

export interface UpstreamTlsOptions {
  rejectUnauthorized: boolean;
  ca?: Buffer;
  servername?: string;
}

const cache = new WeakMap<UpstreamTlsConfig, UpstreamTlsOptions>();

/**
 * Connect options for a service's TLS settings. The CA file was checked when the
 * config was validated; it is read once per config object (a reload reads it again).
 */
export function upstreamTlsOptions(config: UpstreamTlsConfig): UpstreamTlsOptions {
  let options = cache.get(config);
  if (!options) {
    options = { rejectUnauthorized: !config.insecure };
    if (config.ca !== undefined) options.ca = loadCaFile(config.ca);
    if (config.server_name !== undefined) options.servername = config.server_name;
    cache.set(config, options);
  }
  return options;
}

/** Options for node:tls / https when connecting to `host`: SNI is only sent for names, never IP addresses. */
export function tlsConnectOptions(options: UpstreamTlsOptions, host: string): ConnectionOptions {
  const servername = options.servername ?? (isIp(host) ? undefined : host);
  return { rejectUnauthorized: options.rejectUnauthorized, ca: options.ca, servername };
}

function isIp(host: string): boolean {
  return /^\d+\.\d+\.\d+\.\d+$/.test(host) || host.includes(':');
}

/** OpenSSL verification results and Node's TLS errors: the server could not be trusted or spoke no TLS. */
const CERTIFICATE_ERRORS = new Set([
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'CERT_SIGNATURE_FAILURE',
  'HOSTNAME_MISMATCH',
  'INVALID_CA',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** Whether an upstream error is a TLS handshake or verification failure (no request byte was sent). */
export function isTlsFailure(code: unknown): boolean {
  // Not every error's code is a string: a DOMException (an aborted or timed-out signal) has a number.
  return typeof code === 'string' && (CERTIFICATE_ERRORS.has(code) || code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_'));
}

const lastWarned = new Map<string, number>();
const WARN_EVERY_MS = 10_000;

/** Logs a server's TLS failure with what to do about it, at most every 10 s per server. */
export function warnTlsFailure(log: Logger, service: string, server: { id: string; url: string }, error: Error & { code?: string }, now = Date.now()): void {
  const key = `${service}/${server.id}`;
  if (now - (lastWarned.get(key) ?? 0) < WARN_EVERY_MS) return;
  lastWarned.set(key, now);
  log.warn(
    { service, server: server.id, url: server.url, code: error.code, reason: error.message },
    `TLS with ${server.url} failed (${error.code ?? 'handshake error'}: ${error.message}); answering 502. Trust its CA with tls.ca, set tls.server_name if the certificate names another host, or (labs only) tls.insecure: true`,
  );
}

const insecureWarned = new WeakSet<UpstreamTlsConfig>();

/** Logs once per config that a service does not verify its servers' certificates. */
export function warnIfInsecure(log: Logger, service: string, config: UpstreamTlsConfig): void {
  if (!config.insecure || insecureWarned.has(config)) return;
  insecureWarned.add(config);
  log.warn({ service }, `service ${service}: TLS certificates of its servers are NOT verified (tls.insecure: true); use this in labs only`);
}
