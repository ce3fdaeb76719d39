/**
 * Header rules (nginx proxy_set_header / add_header, Traefik Headers, Caddy header):
 * set, add and remove on the request toward the server and on the response, with
 * ${client_ip}, ${request_id}, ${host}, ${method}, ${path} and ${scheme} in values.
 */
import { z } from 'zod';
import { removeHeader, setHeader, template } from './head.ts';
import type { Middleware } from './middleware.ts';

const headerName = z
  .string()
  .regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, 'expected a header name')
  .transform((n) => n.toLowerCase());
const headerText = z.string().regex(/^[^\r\n\0]*$/, 'a header value without line breaks');

const rulesSchema = z.strictObject({
  /** Replaces any value of these headers. */
  set: z.record(headerName, headerText).default({}),
  /** Adds a value beside existing ones. */
  add: z.record(headerName, headerText).default({}),
  remove: z.array(headerName).default([]),
});

export const headersOptions = z.strictObject({
  request: rulesSchema.prefault({}),
  response: rulesSchema.prefault({}),
});

type Rules = z.output<typeof rulesSchema>;
type Op = { kind: 'set' | 'add'; name: string; value: ReturnType<typeof template> } | { kind: 'remove'; name: string };

/** Removals first, then sets, then adds: the order a reader expects from one block. */
function compile(rules: Rules): Op[] {
  return [
    ...rules.remove.map((name): Op => ({ kind: 'remove', name })),
    ...Object.entries(rules.set).map(([name, value]): Op => ({ kind: 'set', name, value: template(value) })),
    ...Object.entries(rules.add).map(([name, value]): Op => ({ kind: 'add', name, value: template(value) })),
  ];
}

export function headers(o: z.output<typeof headersOptions>): Middleware {
  const request = compile(o.request);
  const response = compile(o.response);
  const middleware: Middleware = {};
  if (request.length > 0)
    middleware.request = (req) => {
      for (const op of request) {
        if (op.kind === 'remove') req.removeHeader(op.name);
        else if (op.kind === 'set') req.setHeader(op.name, op.value(req));
        else req.addHeader(op.name, op.value(req));
      }
      return undefined;
    };
  if (response.length > 0)
    middleware.response = (req, head) => {
      for (const op of response) {
        if (op.kind === 'remove') removeHeader(head.headers, op.name);
        else if (op.kind === 'set') setHeader(head.headers, op.name, op.value(req));
        else head.headers.push(op.name, op.value(req));
      }
    };
  return middleware;
}
