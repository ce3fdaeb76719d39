/**
 * The gRPC server of the gRPC bench: node:http2 answering every unary call with
 * the request's message and grpc-status 0, with none of a framework's cost, so
 * the bench measures the proxies rather than the server.
 */
import { createServer } from 'node:http2';

const port = Number(process.argv[2]);
const server = createServer({ settings: { maxConcurrentStreams: 1000 } });
server.on('stream', (stream) => {
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  stream.on('end', () => {
    // A call the client reset after sending it all (h2load cancels its streams in flight at the end of
    // a run): respond() would throw on the destroyed stream and end the backend, and with it the bench.
    if (stream.destroyed || stream.closed) return;
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
    stream.end(Buffer.concat(chunks));
  });
  stream.on('error', () => undefined);
});
server.listen(port, '127.0.0.1', () => console.log(`grpc bench backend listening on ${port}`));
