/** Flat header lists (name, value, name, value…) as response heads and replies carry them. */

import { equalsLower } from '../ascii-case.ts';

/** The first value of `name` (lowercase) in a flat list. */
export function headerValue(list: readonly string[], name: string): string | undefined {
  for (let i = 0; i < list.length; i += 2) if (equalsLower(list[i] as string, name)) return list[i + 1];
  return undefined;
}

/** Removes every `name` (lowercase) from a flat list. */
export function removeHeader(list: string[], name: string): void {
  for (let i = list.length - 2; i >= 0; i -= 2) if (equalsLower(list[i] as string, name)) list.splice(i, 2);
}

export function setHeader(list: string[], name: string, value: string): void {
  removeHeader(list, name);
  list.push(name, value);
}

/** Adds `token` to a comma list header (Vary) unless it is already there. */
export function addToken(list: string[], name: string, token: string): void {
  const current = headerValue(list, name);
  if (current === undefined) return void list.push(name, token);
  if (current.split(',').some((t) => t.trim().toLowerCase() === token.toLowerCase() || t.trim() === '*')) return;
  setHeader(list, name, `${current}, ${token}`);
}

/** Request values a header rule or redirect target may hold: ${client_ip}, ${request_id}, ${host}… */
export const REQUEST_PLACEHOLDERS = ['client_ip', 'request_id', 'host', 'method', 'path', 'scheme'] as const;

interface PlaceholderSource {
  readonly clientIp: string;
  readonly requestId: string;
  readonly host: string;
  readonly method: string;
  readonly url: string;
  readonly proto: string;
}

type Placeholder = (typeof REQUEST_PLACEHOLDERS)[number];

/** `${name}` for each of REQUEST_PLACEHOLDERS. */
const PLACEHOLDER = new RegExp(`\\$\\{(${REQUEST_PLACEHOLDERS.join('|')})\\}`, 'g');

/** The request value a placeholder stands for. */
const VALUE_OF: Record<Placeholder, (req: PlaceholderSource) => string> = {
  client_ip: (req) => req.clientIp,
  request_id: (req) => req.requestId,
  host: (req) => req.host,
  method: (req) => req.method,
  path: (req) => req.url,
  scheme: (req) => req.proto,
};

/**
 * A value with placeholders, compiled once into its constant text and the values between: constant text
 * costs nothing per request, a value that is one placeholder (`${client_ip}`) is that request value, and
 * others are joined from their pieces (no pattern matched per request).
 */
export function template(text: string): (req: PlaceholderSource) => string {
  const literals: string[] = [];
  const values: ((req: PlaceholderSource) => string)[] = [];
  let from = 0;
  for (const m of text.matchAll(PLACEHOLDER)) {
    literals.push(text.slice(from, m.index));
    values.push(VALUE_OF[m[1] as Placeholder]);
    from = m.index + m[0].length;
  }
  const last = text.slice(from);
  const only = values[0];
  if (only === undefined) return () => text;
  if (values.length === 1 && literals[0] === '' && last === '') return only;
  return (req) => {
    let out = '';
    for (let i = 0; i < values.length; i++) out += (literals[i] as string) + (values[i] as (req: PlaceholderSource) => string)(req);
    return out + last;
  };
}

/** A copy of a flat list without the named (lowercase) headers, matched in any case. */
export function withoutHeaders(list: readonly string[], names: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < list.length; i += 2) if (!isNamed(list[i] as string, names)) out.push(list[i] as string, list[i + 1] as string);
  return out;
}

/** Whether `name` is one of the lower-case `names`, in any case (no lower-cased copy). */
function isNamed(name: string, names: readonly string[]): boolean {
  for (let k = 0; k < names.length; k++) if (equalsLower(name, names[k] as string)) return true;
  return false;
}
