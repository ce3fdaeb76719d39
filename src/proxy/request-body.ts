/**
 * What a request's body becomes for the upstream request: nothing, the pieces
 * it arrived in (small bodies, held so that retries can resend them), or the
 * client stream itself (large or unknown-length bodies, sent once). A chunked
 * HTTP/1.1 body goes on with its chunk framing as the client sent it: the
 * server gets the same chunks, and nothing decodes and encodes them again.
 */
import type { Buffer } from 'node:buffer';
import { VelocityError } from '../errors.ts';
import type { RequestRecord } from '../observe/events.ts';
import { hasHttp2BodyWithoutLength } from './http2.ts';
import type { ProxyRequest, RequestBody } from './proxy-message.ts';

/** A whole body held in memory, as the pieces it arrived in (written out with the head in one writev, no copy). */
export type HeldBody = readonly Buffer[];

/**
 * The body to send. Only holding waits; the other answers are immediate. `record.bytesIn`
 * counts the payload bytes actually read (chunked ones too), not what Content-Length says.
 * The caller reads none of it: a server speaking HTTP/1.1 gets a chunked body with its framing.
 */
export function requestBody(req: ProxyRequest, holdLimit: number, record: RequestRecord): HeldBody | RequestBody | null | Promise<HeldBody | VelocityError> {
  const length = req.headers['content-length'];
  const chunked = isChunked(req);
  if (!chunked && (length === undefined || length === '0')) return null;
  if (chunked || Number(length) > holdLimit) {
    if (chunked && req.passChunkFraming?.()) {
      req.pause();
      // The stream carries framing bytes: the payload count is the request's own.
      req.once('close', () => {
        record.bytesIn = req.payloadBytes ?? 0;
      });
      return req;
    }
    // Paused first: the counter must not start the flow; the forwarder resumes it when it sends.
    req.pause();
    req.on('data', (chunk: Buffer) => {
      record.bytesIn += chunk.length;
    });
    return req;
  }
  return holdBody(req).then((body) => {
    if (!(body instanceof VelocityError)) record.bytesIn = heldLength(body);
    return body;
  });
}

/** A body without a length: chunked (HTTP/1.1), or an HTTP/2 stream that did not end with its headers and gave none. */
function isChunked(req: ProxyRequest): boolean {
  return req.headers['transfer-encoding'] !== undefined || hasHttp2BodyWithoutLength(req);
}

/** Whether the request has a body to send (a GET without Content-Length has none). */
export function hasRequestBody(req: ProxyRequest): boolean {
  const length = req.headers['content-length'];
  return isChunked(req) || (length !== undefined && length !== '0');
}

export function heldLength(body: HeldBody): number {
  let length = 0;
  for (const piece of body) length += piece.length;
  return length;
}

/** Reads a whole (small) request body: chunk events, not an async iterator turn per chunk, and no copy. */
function holdBody(req: ProxyRequest): Promise<HeldBody | VelocityError> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const cutShort = () => resolve(new VelocityError('BAD_REQUEST', 'request body was cut short'));
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.once('end', () => {
      req.removeListener('error', cutShort);
      req.removeListener('close', onClose);
      resolve(chunks);
    });
    req.once('error', cutShort);
    // A client that goes away mid-body closes the request without 'end'.
    const onClose = () => {
      if (!req.complete) cutShort();
    };
    req.once('close', onClose);
  });
}
