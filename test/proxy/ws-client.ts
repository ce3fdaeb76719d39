/** A WebSocket client (the `ws` package) with promise helpers for tests. */
import WebSocket from 'ws';

export class UnexpectedResponse extends Error {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;

  constructor(status: number, headers: Record<string, string | string[] | undefined>) {
    super(`the server answered the upgrade with ${status}`);
    this.status = status;
    this.headers = headers;
  }
}

/** Opens a WebSocket; rejects with UnexpectedResponse when the answer is not 101. */
export function openWs(url: string, options: WebSocket.ClientOptions = {}): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { handshakeTimeout: 10_000, ...options });
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_req, res) => {
      reject(new UnexpectedResponse(res.statusCode ?? 0, res.headers));
      res.resume();
      ws.terminate();
    });
    ws.once('error', reject);
  });
}

/** Sends a text message and resolves with the next text message received. */
export function exchange(ws: WebSocket, text: string, timeoutMs = 5_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer to "${text}" within ${timeoutMs}ms`)), timeoutMs);
    ws.once('message', (data) => {
      clearTimeout(timer);
      resolve(data.toString());
    });
    ws.send(text);
  });
}

/** Resolves when the socket is closed (by either side). */
export function closed(ws: WebSocket): Promise<number> {
  if (ws.readyState === WebSocket.CLOSED) return Promise.resolve(ws.readyState);
  return new Promise((resolve) => ws.once('close', (code) => resolve(code)));
}

/** The backend name in an echo reply `NAME:text`. */
export const servedBy = (reply: string) => reply.slice(0, reply.indexOf(':'));
