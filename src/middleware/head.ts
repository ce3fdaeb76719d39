/** Flat header lists (name, value, name, value…) as response heads and replies carry them. */

/** The first value of `name` (lowercase) in a flat list. */
export function headerValue(list: readonly string[], name: string): string | undefined {
  for (let i = 0; i < list.length; i += 2) if ((list[i] as string).toLowerCase() === name) return list[i + 1];
  return undefined;
}

export function removeHeader(list: string[], name: string): void {
  for (let i = list.length - 2; i >= 0; i -= 2) if ((list[i] as string).toLowerCase() === name) list.splice(i, 2);
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

const PLACEHOLDER = /\$\{(client_ip|request_id|host|method|path|scheme)\}/g;

/** A value with placeholders, compiled once: constant text costs nothing per request. */
export function template(text: string): (req: PlaceholderSource) => string {
  if (!text.includes('${')) return () => text;
  return (req) =>
    text.replace(PLACEHOLDER, (_m, name: string) => {
      switch (name) {
        case 'client_ip':
          return req.clientIp;
        case 'request_id':
          return req.requestId;
        case 'host':
          return req.host;
        case 'method':
          return req.method;
        case 'path':
          return req.url;
        default:
          return req.proto;
      }
    });
}

/** A copy of a flat list without the named (lowercase) headers. */
export function withoutHeaders(list: readonly string[], names: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < list.length; i += 2) if (!names.includes((list[i] as string).toLowerCase())) out.push(list[i] as string, list[i + 1] as string);
  return out;
}
