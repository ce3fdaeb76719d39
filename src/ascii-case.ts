/**
 * Header names compared in any ASCII case without a lower-cased copy of each (HTTP field names are
 * case-insensitive, RFC 9110 §5.1). Below src/proxy and src/middleware, so both use it.
 */

/** Whether `name` is `lower` (lower-case ASCII) in any ASCII case. */
export function equalsLower(name: string, lower: string): boolean {
  if (name.length !== lower.length) return false;
  for (let k = 0; k < name.length; k++) {
    const c = name.charCodeAt(k);
    const l = lower.charCodeAt(k);
    if (c !== l && (c < 0x41 || c > 0x5a || c + 0x20 !== l)) return false;
  }
  return true;
}
