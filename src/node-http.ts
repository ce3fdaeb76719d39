/**
 * node:http's values, taken through `require`. An ES import of node:http (even of one
 * name) builds the module's namespace, which reads its lazy WebSocket, CloseEvent and
 * MessageEvent getters and so loads Node's bundled copy of undici: about 14 MB of
 * resident memory in every thread, for classes Velocity never uses. Types are still
 * imported from node:http directly (erased when compiled).
 */
import { createRequire } from 'node:module';

const http = createRequire(import.meta.url)('node:http') as typeof import('node:http');

export const { METHODS, STATUS_CODES, createServer, request } = http;
