/**
 * A reference, not a product: the least a proxy built on node:http and undici can
 * do — no routing, guards, health, metrics, logs, retries or header rules; round
 * robin over the upstreams, streaming both ways. Velocity uses the same two parts,
 * so this is its ceiling on one event loop; the gap is what Velocity's features cost.
 *
 *   node bench/undici-floor.ts PORT http://UPSTREAM …
 */
import { createServer } from 'node:http';
import { type Dispatcher, Pool } from 'undici';

const [port, ...upstreams] = process.argv.slice(2);
const pools = upstreams.map((u) => new Pool(u, { pipelining: 1 }));
let next = 0;

createServer((req, res) => {
  const pool = pools[next++ % pools.length] as Pool;
  const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
  pool.dispatch(
    { method: req.method as Dispatcher.HttpMethod, path: req.url ?? '/', headers: req.rawHeaders, body: hasBody ? req : null },
    {
      // undici requires every hook of its handler API, even one with nothing to do.
      onRequestStart() {},
      onResponseStart(_c, status, headers) {
        res.writeHead(status, headers as Record<string, string>);
      },
      onResponseData(c, chunk) {
        if (!res.write(chunk)) {
          c.pause();
          res.once('drain', () => c.resume());
        }
      },
      onResponseEnd() {
        res.end();
      },
      onResponseError() {
        if (res.headersSent) res.destroy();
        else res.writeHead(502).end();
      },
    },
  );
}).listen(Number(port), '127.0.0.1', () => console.log(`undici floor proxy listening on ${port}`));
