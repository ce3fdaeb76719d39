/**
 * node:http2, loaded when first used: by an HTTP/2 listener (`http2: true`), a pool of HTTP/2
 * connections to servers, or a gRPC health check. Loading it builds Node's HTTP/2 JavaScript
 * and sets up its nghttp2 binding — about 0.5 MB of heap and 1–4 MB of resident memory in every
 * process and thread — which a config that speaks only HTTP/1.1 never uses. Types are still
 * imported from node:http2 directly (erased when compiled).
 */
import { optionalModule } from './optional-module.ts';

/** node:http2, loaded on the first call. */
export const http2 = optionalModule<typeof import('node:http2')>('node:http2', 'HTTP/2 (listeners, HTTP/2 servers, gRPC health checks)');
