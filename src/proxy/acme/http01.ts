/**
 * HTTP-01 answers on the plain-HTTP listeners (http, redirect, `listen`):
 * `/.well-known/acme-challenge/TOKEN` is answered before routing when a token
 * is in ACME storage (written by this instance or another sharing it); any other
 * request, and a token we don't hold, go on as usual (a service may do its own ACME).
 */
import type { Buffer } from 'node:buffer';
import type { RequestListener } from '../proxy-message.ts';
import { type AcmeStorage, keys } from './storage.ts';

export const HTTP01_PREFIX = '/.well-known/acme-challenge/';
/** RFC 8555 tokens are base64url. */
const TOKEN = /^[A-Za-z0-9_-]{1,256}$/;

export class Http01Answers {
  private storages: readonly AcmeStorage[] = [];

  /** The storages holding challenge answers (one per distinct acme `storage` of the config). */
  use(storages: readonly AcmeStorage[]): void {
    this.storages = storages;
  }

  get active(): boolean {
    return this.storages.length > 0;
  }

  /** `next` with challenge requests answered first. */
  wrap(next: RequestListener): RequestListener {
    return (req, res) => {
      const url = req.url ?? '';
      if (this.storages.length === 0 || !url.startsWith(HTTP01_PREFIX) || (req.method !== 'GET' && req.method !== 'HEAD')) return next(req, res);
      const token = url.slice(HTTP01_PREFIX.length);
      if (!TOKEN.test(token)) return next(req, res);
      this.find(token).then(
        (answer) => {
          if (answer === undefined) return next(req, res);
          res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': answer.length, 'cache-control': 'no-store' });
          res.end(req.method === 'HEAD' ? undefined : answer);
        },
        () => next(req, res),
      );
    };
  }

  private async find(token: string): Promise<Buffer | undefined> {
    for (const storage of this.storages) {
      const answer = await storage.read(keys.http01(token)).catch(() => undefined);
      if (answer) return answer;
    }
    return undefined;
  }
}
