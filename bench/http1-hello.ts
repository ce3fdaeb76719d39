/**
 * A reference, not a proxy: Velocity's own HTTP/1.1 server (src/proxy/http1)
 * answering the backends' 21-byte body itself — the server's cost alone, to
 * set beside node:http doing the same (bench/node-hello.ts).
 */
import { createServer } from 'node:net';
import { Http1Server } from '../src/proxy/http1/server.ts';
import { SMALL_BODY } from './lib.ts';

const port = Number(process.argv[2]);
const body = Buffer.from(SMALL_BODY);
const http1 = new Http1Server(
  { header_timeout: 10_000, body_timeout: 60_000, keepalive_timeout: 5_000, max_header_size: 16 * 1024, max_connections: 0, underscore_headers: 'drop', abort_on_close: true },
  {
    onRequest: (_req, res) => {
      res.writeHead(200, undefined, ['content-length', String(body.length)]);
      res.end(body);
    },
    wantsUpgrade: () => false,
    onUpgrade: (_req, _res, socket) => socket.destroy(),
  },
);
createServer({ allowHalfOpen: true, noDelay: true }, (socket) => http1.accept(socket)).listen(port, '127.0.0.1', () =>
  console.log(`velocity http1 reference listening on ${port}`),
);
