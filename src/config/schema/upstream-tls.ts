/** TLS toward a service's https:// servers. */
import { z } from 'zod';
import { CertificateError, loadCaFile } from '../../certificates.ts';

export const filePath = (what: string) => z.string({ error: `expected the path of a ${what} file` }).min(1, `expected the path of a ${what} file`);

export const upstreamTlsSchema = z
  .strictObject({
    /** PEM bundle of the CAs that signed the servers' certificates; the system roots when absent. */
    ca: filePath('PEM CA').optional(),
    /** Name sent as SNI and checked against the server's certificate; the server's host by default. */
    server_name: z.string().min(1).optional(),
    /** Skip verification (labs only): logged as a warning. */
    insecure: z.boolean().default(false),
  })
  .superRefine((tls, ctx) => {
    if (tls.ca === undefined) return;
    try {
      loadCaFile(tls.ca);
    } catch (err) {
      if (!(err instanceof CertificateError)) throw err;
      ctx.addIssue({ code: 'custom', path: ['ca'], message: err.message });
    }
  });

export type UpstreamTlsConfig = z.output<typeof upstreamTlsSchema>;
