/** The node-http-proxy contender: round robin over the backends with keep-alive. */
import { Agent, createServer } from 'node:http';
import httpProxy from 'http-proxy';

const [port, ...targets] = process.argv.slice(2);
const agent = new Agent({ keepAlive: true, maxSockets: 256 });
const proxy = httpProxy.createProxyServer({ agent });
proxy.on('error', (_err, _req, res) => {
  if ('writeHead' in res && !res.headersSent) res.writeHead(502);
  res.end();
});
let next = 0;
createServer((req, res) => {
  const target = targets[next++ % targets.length] as string;
  proxy.web(req, res, { target });
}).listen(Number(port), '127.0.0.1', () => console.log(`node-http-proxy listening on ${port}`));
