/**
 * What the forwarder writes an upstream answer into: the part of a client
 * response it needs, and nothing of node:http. node:http's ServerResponse, the
 * HTTP/2 compatibility response and Velocity's own HTTP/1.1 response all fit it,
 * so one forwarder serves every listener.
 *
 * The contract:
 * - `writeHead` is called once, with the status, the reason phrase (undefined
 *   for HTTP/2, which has none) and a flat header list `name, value, name, value`
 *   in which a repeated name (Set-Cookie) stays repeated. Hop-by-hop headers are
 *   already removed; the response frames the body itself: it keeps a
 *   Content-Length it is given, and otherwise chunks (HTTP/1.1) or closes
 *   (HTTP/1.0) as its protocol requires.
 * - `write(chunk)` returns false when the client is slow; the forwarder then
 *   pauses the server's socket until `'drain'`.
 * - `'close'` is emitted once when the response ended or the client went away;
 *   `destroyed` is true once the client can no longer be written to.
 * - `shouldKeepAlive = false` before `writeHead` asks for `Connection: close`
 *   (a close-delimited upstream body, a draining listener); HTTP/2 ignores it.
 */
import type { ResponseHead } from '../upstream/response-parser.ts';

export interface ClientResponse {
  readonly headersSent: boolean;
  readonly destroyed: boolean;
  readonly writableFinished: boolean;
  /**
   * Bytes given to `write()` not yet handed to the OS. 0 means no chunk given to `write()` is still
   * referenced, so the forwarder may read the next one into the same buffer; leave it undefined
   * when unsure (a transform that keeps chunks), and every read gets a new buffer.
   */
  readonly writableLength?: number;
  statusCode: number;
  /** HTTP/1.x only: whether the client connection stays open after this response. */
  shouldKeepAlive?: boolean;
  /** The request this answers; the forwarder reads only its HTTP version. */
  readonly req?: { readonly httpVersionMajor: number };

  writeHead(statusCode: number, statusMessage: string | undefined, headers: string[]): unknown;
  write(chunk: Uint8Array): boolean;
  /**
   * Whether `write()` of `length` bytes now copies them before it returns and keeps no reference to them
   * (Velocity's HTTP/1.1 response: the first body bytes, when few, leave with the head from a buffer of
   * its own). Optional: without it every chunk is taken to be kept.
   */
  copiesWrite?(length: number): boolean;
  end(): unknown;
  destroy(error?: Error): unknown;

  /**
   * An interim (1xx) response before the final one. Optional: node:http's
   * responses have none, and get only 103 Early Hints through `writeEarlyHints`
   * (they answer `Expect: 100-continue` themselves).
   */
  writeInformational?(statusCode: number, headers: string[]): void;
  writeEarlyHints?(hints: Record<string, string | string[]>): void;
  /**
   * Asked before `writeHead` for an upstream body that is chunked: true when the response will take
   * `write()`s that carry the chunk framing already (sizes, CRLFs, the last chunk and final CRLF)
   * and send them unchanged — an HTTP/1.1 client, no transform between. Optional: the others decode.
   */
  passChunkFraming?(): boolean;
  /**
   * `writeHead` for a server's answer as the upstream parser read it (its end-to-end lines as the server
   * wrote them, its header list with the hop-by-hop headers still in, values already checked); `extra`
   * is a flat list of headers Velocity adds. Optional: the others get `writeHead` with the list made by
   * responseHeadersFromRaw. Lets Velocity's HTTP/1.1 response pass the server's lines on without a string per field.
   */
  writeUpstreamHead?(head: ResponseHead, extra: readonly string[] | undefined): void;

  on(event: 'close' | 'drain', listener: () => void): unknown;
  once(event: 'close' | 'drain', listener: () => void): unknown;
  removeListener(event: 'close' | 'drain', listener: () => void): unknown;
}
