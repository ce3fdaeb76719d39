/**
 * A tiny real ACME proxy in front of pebble (which cannot be told to rate-limit):
 * every request is passed to pebble as it came (Host kept, so pebble's URLs and
 * its JWS url check name the proxy), except that it can be armed to answer the
 * next new-order request itself with 429 and a rateLimited problem, as Let's
 * Encrypt does. It serves pebble's own API certificate, so a client trusting
 * pebble trusts it too. Records when each new-order request arrived.
 */
import { readFileSync } from 'node:fs';
import { createServer, request } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import type { Pebble } from './pebble.ts';

export interface AcmeProxy {
  /** The directory URL through the proxy. */
  readonly directory: string;
  /** Answer the next new-order request with 429 and `Retry-After: retryAfterS`. */
  refuseNextOrder(retryAfterS: number): void;
  /** Every new-order request: when it arrived (ms since epoch) and whether it was refused. */
  readonly orders: { at: number; refused: boolean }[];
}

export async function startAcmeProxy(t: TestContext, pebble: Pebble): Promise<AcmeProxy> {
  const config = JSON.parse(readFileSync(join(pebble.dir, 'pebble.json'), 'utf8')) as { pebble: { certificate: string; privateKey: string } };
  const upstream = new URL(pebble.directory);
  const ca = readFileSync(pebble.apiRoot);
  let newOrderPath = '/order-plz';
  let refuse: number | undefined;
  const orders: { at: number; refused: boolean }[] = [];
  const server = createServer({ cert: readFileSync(config.pebble.certificate), key: readFileSync(config.pebble.privateKey) }, (req, res) => {
    if (req.method === 'POST' && req.url === newOrderPath) {
      const refused = refuse !== undefined;
      orders.push({ at: Date.now(), refused });
      if (refuse !== undefined) {
        const retryAfter = refuse;
        refuse = undefined;
        req.resume();
        res.writeHead(429, { 'content-type': 'application/problem+json', 'retry-after': String(retryAfter) });
        res.end(JSON.stringify({ type: 'urn:ietf:params:acme:error:rateLimited', detail: 'too many new orders recently (test proxy)', status: 429 }));
        return;
      }
    }
    const forward = request({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers, ca, servername: 'localhost' }, (answer) => {
      const chunks: Buffer[] = [];
      answer.on('data', (c: Buffer) => chunks.push(c));
      answer.on('end', () => {
        const body = Buffer.concat(chunks);
        // Learn the new-order path from the directory (pebble's is /order-plz).
        if (req.url === upstream.pathname && answer.statusCode === 200) newOrderPath = new URL(JSON.parse(body.toString()).newOrder).pathname;
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        res.end(body);
      });
    });
    forward.on('error', (err) => {
      res.writeHead(502);
      res.end(String(err));
    });
    req.pipe(forward);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  const { port } = server.address() as AddressInfo;
  return {
    directory: `https://127.0.0.1:${port}${upstream.pathname}`,
    refuseNextOrder(retryAfterS) {
      refuse = retryAfterS;
    },
    orders,
  };
}
