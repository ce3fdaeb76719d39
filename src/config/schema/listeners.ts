/**
 * Listener types beyond the plain `listen` addresses (HTTPS with SNI, h2c,
 * HTTP→HTTPS redirects) and the TLS settings Velocity uses toward servers.
 */
import { z } from 'zod';
import { CertificateError, loadCertificate } from '../../certificates.ts';
import { duration, listenAddress } from '../../config-fields.ts';
import { acmeSchema } from './acme.ts';
import { hostPattern } from './service.ts';
import { filePath } from './upstream-tls.ts';

/**
 * Mozilla's "intermediate" TLS 1.2 cipher list (forward secrecy and AEAD only).
 * TLS 1.3 suites are not configured by this string; OpenSSL's defaults apply.
 */
export const DEFAULT_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
  'DHE-RSA-AES128-GCM-SHA256',
  'DHE-RSA-AES256-GCM-SHA384',
  'DHE-RSA-CHACHA20-POLY1305',
].join(':');

export const certificateSchema = z
  .strictObject({
    /** PEM certificate (chain: leaf first, then intermediates). */
    cert: filePath('PEM certificate'),
    /** PEM private key (unencrypted). */
    key: filePath('PEM private key'),
    /** SNI names it serves; by default the DNS names in the certificate itself. */
    hosts: z.array(hostPattern).optional(),
    /** Served when the client's name matches no certificate, or it sends none. The first certificate otherwise. */
    default: z.boolean().default(false),
  })
  .superRefine((c, ctx) => {
    try {
      loadCertificate({ cert: c.cert, key: c.key });
    } catch (err) {
      if (!(err instanceof CertificateError)) throw err;
      ctx.addIssue({ code: 'custom', path: [err.file === c.key && err.file !== c.cert ? 'key' : 'cert'], message: err.message });
    }
  });

export const tlsSchema = z
  .strictObject({
    /** Certificate files; may be empty when `acme` obtains the certificates. */
    certificates: z.array(certificateSchema).default([]),
    /** Certificates from an ACME CA, obtained and renewed automatically (see docs/automatic-https.md). */
    acme: acmeSchema.optional(),
    min_version: z.enum(['TLSv1.2', 'TLSv1.3'], { error: 'expected TLSv1.2 or TLSv1.3' }).default('TLSv1.2'),
    /** OpenSSL cipher list for TLS 1.2. */
    ciphers: z.string().min(1).default(DEFAULT_CIPHERS),
    /** Reload the certificate files when they change on disk. */
    watch: z.boolean().default(true),
  })
  .superRefine((tls, ctx) => {
    if (tls.certificates.length === 0 && !tls.acme)
      ctx.addIssue({ code: 'custom', path: ['certificates'], message: 'at least one certificate is needed (or acme, to obtain them)' });
    const defaults = tls.certificates.flatMap((c, i) => (c.default ? [i] : []));
    for (const i of defaults.slice(1))
      ctx.addIssue({ code: 'custom', path: ['certificates', i, 'default'], message: `only one certificate can be the default (certificates[${defaults[0]}] already is)` });
  });

const ONE_YEAR = 365 * 86_400_000;

const hstsObject = z.strictObject({
  max_age: duration().default(ONE_YEAR),
  include_subdomains: z.boolean().default(false),
  preload: z.boolean().default(false),
});

/** `hsts: true` (one year), or `hsts: { max_age, include_subdomains, preload }`. */
export const hstsSchema = z.union([z.boolean().transform((on) => (on ? hstsObject.parse({}) : undefined)), hstsObject], {
  error: 'expected true/false or { max_age, include_subdomains, preload }',
});

export const httpListenerSchema = z.strictObject({
  type: z.literal('http'),
  listen: listenAddress(),
  /** Also accept HTTP/2 without TLS (h2c, "prior knowledge"), beside HTTP/1.1 on the same port. */
  http2: z.boolean().default(false),
});

export const httpsListenerSchema = z.strictObject({
  type: z.literal('https'),
  listen: listenAddress(),
  tls: tlsSchema,
  /** Offer HTTP/2 by ALPN (clients without it use HTTP/1.1). */
  http2: z.boolean().default(true),
  /** Strict-Transport-Security on every response; off unless set. */
  hsts: hstsSchema.optional(),
});

export const redirectListenerSchema = z.strictObject({
  type: z.literal('redirect'),
  listen: listenAddress(),
  /** 308 keeps the method and body; 301 is what old clients know best. */
  status: z.union([z.literal(301), z.literal(302), z.literal(307), z.literal(308)], { error: 'expected 301, 302, 307 or 308' }).default(308),
  /** HTTPS port to send clients to; by default the first https listener's port (omitted from the URL when 443). */
  port: z.number().int().min(1).max(65535).optional(),
});

export const listenerSchema = z.discriminatedUnion('type', [httpListenerSchema, httpsListenerSchema, redirectListenerSchema], {
  error: 'expected a listener with type http, https or redirect',
});

export type TlsConfig = z.output<typeof tlsSchema>;
export type HstsConfig = z.output<typeof hstsObject>;
export type ListenerConfig = z.output<typeof listenerSchema>;
export type HttpsListenerConfig = z.output<typeof httpsListenerSchema>;
