/**
 * Header names that a server behind Velocity may read as a different header.
 * CGI-style environments (PHP, WSGI, Rack, many frameworks) fold `-` and `_`
 * into one character, so `Transfer_Encoding` and `Transfer-Encoding` can be the
 * same header to the server and two different ones to Velocity: a framing
 * disagreement, the root of request smuggling. nginx drops names with
 * underscores by default (`underscores_in_headers off`), Envoy can drop or
 * reject them (`headers_with_underscores_action`), Traefik can keep, delete or
 * reject them (`underscoreHeadersStrategy`).
 */
import { VelocityError } from '../errors.ts';

/** What to do with request header names that contain `_`. */
export type UnderscoreHeaders = 'drop' | 'reject' | 'allow';

/** Headers that decide framing and routing; a look-alike of one is never forwarded, whatever the mode. */
const FRAMING = new Set(['content-length', 'transfer-encoding', 'host', 'connection']);
const UNDERSCORE = 95;
const DOT = 46;

/** A name that reads as a framing header when `_` or `.` is taken for `-` (but is not one). */
export function isFramingLookAlike(lowerName: string): boolean {
  return !FRAMING.has(lowerName) && FRAMING.has(lowerName.replace(/[_.]/g, '-'));
}

/**
 * Applies the underscore policy to a request head, in place (raw list and parsed
 * headers alike, so every later reader sees the same names). Returns the refusal,
 * or undefined. Look-alikes of framing headers are dropped (refused under
 * `reject`) in every mode; with `allow`, other underscore names pass.
 */
export function applyHeaderNamePolicy(req: { rawHeaders: string[]; headers: Record<string, unknown> }, mode: UnderscoreHeaders): VelocityError | undefined {
  const raw = req.rawHeaders;
  let kept = -1;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    // Most names have neither character: one scan each, no lowercasing.
    let odd = false;
    for (let c = 0; c < name.length; c++) {
      const code = name.charCodeAt(c);
      if (code === UNDERSCORE || code === DOT) {
        odd = true;
        break;
      }
    }
    let drop = false;
    if (odd) {
      const lower = name.toLowerCase();
      const lookAlike = isFramingLookAlike(lower);
      const underscore = lower.includes('_');
      if (mode === 'reject' && (lookAlike || underscore))
        return new VelocityError('BAD_REQUEST', `header name ${JSON.stringify(name)} has an underscore or reads as a framing header`);
      drop = lookAlike || (underscore && mode === 'drop');
      if (drop) delete req.headers[lower];
    }
    if (drop) {
      if (kept < 0) kept = i;
    } else if (kept >= 0) {
      raw[kept] = name;
      raw[kept + 1] = raw[i + 1] as string;
      kept += 2;
    }
  }
  if (kept >= 0) raw.length = kept;
  return undefined;
}
