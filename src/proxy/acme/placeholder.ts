/**
 * The self-signed certificate a managed name is served with until its real one
 * arrives: clients see an untrusted certificate for a moment instead of a failed
 * handshake, and the listener opens at once whatever the CA does.
 */
import { Buffer } from 'node:buffer';
import { randomBytes, webcrypto } from 'node:crypto';
import type * as X509 from '@peculiar/x509';
import { optionalModule } from '../../optional-module.ts';

/** @peculiar/x509, loaded when a placeholder is first made (a name of an acme block is served). */
const loadX509 = optionalModule<typeof X509>('@peculiar/x509', 'placeholder certificates of automatic HTTPS');
let providerSet = false;
function x509Module(): typeof X509 {
  const x509 = loadX509();
  if (!providerSet) x509.cryptoProvider.set(webcrypto as never);
  providerSet = true;
  return x509;
}

const ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

/** A P-256 certificate for `names`, valid from an hour ago for `days`; PEM key and certificate. */
export async function selfSignedCertificate(names: readonly string[], commonName: string, days = 7): Promise<{ key: string; cert: string }> {
  const x509 = x509Module();
  const keys = await webcrypto.subtle.generateKey(ALGORITHM, true, ['sign', 'verify']);
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: `01${randomBytes(15).toString('hex')}`,
    name: `CN=${commonName.replace(/[,+="\\<>;#]/g, '')}`,
    notBefore: new Date(now - 3_600_000),
    notAfter: new Date(now + days * 86_400_000),
    signingAlgorithm: ALGORITHM,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.SubjectAlternativeNameExtension(names.map((value) => ({ type: 'dns' as const, value }))),
    ],
  });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)).toString('base64');
  const key = `-----BEGIN PRIVATE KEY-----\n${pkcs8.match(/.{1,64}/g)?.join('\n')}\n-----END PRIVATE KEY-----\n`;
  return { key, cert: cert.toString('pem') };
}
