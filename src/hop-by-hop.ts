/**
 * Hop-by-hop header fields (RFC 9110 §7.6.1) plus ones a proxy must not pass on, lower case. Declared here,
 * below both: the proxy drops them in either direction, and the upstream response parser tells which lines
 * of a server's head can be passed to the client as they are.
 */
export const HOP_BY_HOP: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'http2-settings',
  // Answered by Velocity's own server (100 Continue when the body is read); the server gets the body outright.
  'expect',
]);
