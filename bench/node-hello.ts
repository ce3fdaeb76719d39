/**
 * A reference, not a proxy: node:http answering the backends' 21-byte body itself.
 * What one Node event loop can serve at all on this machine bounds what any
 * Node proxy (two HTTP exchanges per request) can do.
 */
import { createServer } from 'node:http';
import { SMALL_BODY } from './lib.ts';

const port = Number(process.argv[2]);
createServer((_req, res) => {
  res.setHeader('content-length', SMALL_BODY.length);
  res.end(SMALL_BODY);
}).listen(port, '127.0.0.1', () => console.log(`node http reference listening on ${port}`));
