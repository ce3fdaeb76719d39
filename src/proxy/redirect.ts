/** The HTTP→HTTPS redirect listener's answer: the same host and path, on the HTTPS port. */
import { Buffer } from 'node:buffer';
import type { RequestListener } from './proxy-message.ts';

/** A host name, IPv4 address or bracketed IPv6 address, with an optional port. */
const HOST = /^(\[[0-9a-f:.]+\]|[a-z0-9._-]+)(:\d{1,5})?$/i;

export function redirectToHttps(status: 301 | 302 | 307 | 308, httpsPort: () => number): RequestListener {
  return (req, res) => {
    const m = HOST.exec(req.headers.host ?? '');
    if (!m) {
      res.writeHead(400, { 'content-type': 'text/plain; charset=utf-8', connection: 'close' });
      res.end('400 Bad request: no valid Host header to redirect to\n');
      return;
    }
    const port = httpsPort();
    const location = `https://${(m[1] as string).toLowerCase()}${port === 443 ? '' : `:${port}`}${req.url?.startsWith('/') ? req.url : '/'}`;
    const body = `Redirecting to ${location}\n`;
    res.writeHead(status, { location, 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  };
}
