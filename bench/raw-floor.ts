/**
 * A reference, not a proxy anyone should run: about the least a Node proxy on raw `net` sockets can
 * do for a small keep-alive GET — find the head's end with indexOf, pick an upstream round robin, send
 * a fixed head on a pooled upstream socket, read a Content-Length response and write it back in one
 * write. No validation, no bodies from the client, no chunked responses, no errors handled beyond
 * staying up. It shows what one Node event loop costs per proxied request before any feature: set it
 * beside nginx with wrk and compare CPU per request (docs/performance.md, "What holds the CPU back").
 *
 *   node bench/raw-floor.ts PORT http://UPSTREAM …      then: wrk -t1 -c50 -d3 http://127.0.0.1:PORT/
 */
import { connect, createServer, type Socket } from 'node:net';

const [port, ...upstreams] = process.argv.slice(2);
const targets = upstreams.map((u) => new URL(u));
const idle = targets.map((): Socket[] => []);
let next = 0;

function withUpstream(index: number, use: (socket: Socket) => void): void {
  const pooled = idle[index]?.pop();
  if (pooled) {
    use(pooled);
    return;
  }
  const target = targets[index] as URL;
  const socket = connect({ host: target.hostname, port: Number(target.port), noDelay: true });
  socket.on('error', () => socket.destroy());
  socket.once('connect', () => use(socket));
}

createServer((client) => {
  client.setNoDelay(true);
  client.on('error', () => client.destroy());
  let pending: Buffer | undefined;
  client.on('data', (chunk: Buffer) => {
    pending = pending ? Buffer.concat([pending, chunk]) : chunk;
    const end = pending.indexOf('\r\n\r\n');
    if (end < 0) return;
    const head = pending.toString('latin1', 0, end);
    pending = end + 4 < pending.length ? pending.subarray(end + 4) : undefined;
    const path = head.slice(head.indexOf(' ') + 1, head.indexOf(' ', head.indexOf(' ') + 1));
    const index = next++ % targets.length;
    withUpstream(index, (upstream) => {
      let response: Buffer | undefined;
      const onData = (data: Buffer): void => {
        response = response ? Buffer.concat([response, data]) : data;
        const headEnd = response.indexOf('\r\n\r\n');
        if (headEnd < 0) return;
        const length = Number(/content-length: *(\d+)/i.exec(response.toString('latin1', 0, headEnd))?.[1] ?? 0);
        if (response.length < headEnd + 4 + length) return;
        upstream.removeListener('data', onData);
        client.write(`HTTP/1.1 200 OK\r\ncontent-length: ${length}\r\ncontent-type: text/plain\r\n\r\n${response.toString('latin1', headEnd + 4, headEnd + 4 + length)}`, 'latin1');
        idle[index]?.push(upstream);
      };
      upstream.on('data', onData);
      upstream.write(`GET ${path} HTTP/1.1\r\nhost: ${(targets[index] as URL).host}\r\nx-forwarded-for: 127.0.0.1\r\n\r\n`, 'latin1');
    });
  });
}).listen(Number(port), '127.0.0.1');
