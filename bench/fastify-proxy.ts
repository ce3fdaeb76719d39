/**
 * The @fastify/http-proxy contender (the Node proxy people pick today), with
 * Fastify's own request log (pino) written to a file, as an operator runs it.
 * @fastify/http-proxy forwards to one upstream: the first one given.
 *
 *   node bench/fastify-proxy.ts PORT ACCESS_LOG http://UPSTREAM …
 */
import proxy from '@fastify/http-proxy';
import Fastify from 'fastify';

const [port, logFile, upstream] = process.argv.slice(2);
const app = Fastify({ logger: { level: 'info', file: logFile } });
await app.register(proxy, { upstream: upstream as string });
await app.listen({ port: Number(port), host: '127.0.0.1' });
