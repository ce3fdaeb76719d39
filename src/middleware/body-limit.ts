/**
 * Request body size limit (nginx client_max_body_size, Caddy request_body
 * max_size, Traefik Buffering maxRequestBodyBytes) → 413. A declared
 * Content-Length over the limit is refused before a byte is read; a body of
 * unknown length (chunked) is read into memory up to the limit, so the server
 * never sees a partial body.
 */
import { z } from 'zod';
import { size } from '../config-fields.ts';
import type { Middleware, Reply } from './middleware.ts';

export const bodyLimitOptions = z.strictObject({ max: size() });

const TOO_LARGE: Reply = { status: 413, code: 'PAYLOAD_TOO_LARGE', headers: ['content-type', 'text/plain; charset=utf-8', 'connection', 'close'], body: '413 Payload too large\n' };

export function bodyLimit({ max }: z.output<typeof bodyLimitOptions>): Middleware {
  return {
    async request(req) {
      if (!req.hasBody) return undefined;
      if (req.bodyLength !== undefined) return req.bodyLength > max ? TOO_LARGE : undefined;
      return (await req.bufferBody(max)) ? undefined : TOO_LARGE;
    },
  };
}
