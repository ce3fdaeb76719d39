/**
 * The dashboard page and its assets (plain ES modules and one stylesheet), served
 * by the admin listener itself: no CDN, it works offline. The files live in the
 * top-level dashboard/ folder, found relative to this module: src/admin/dashboard/
 * and dist/admin/dashboard/ are both three levels below the package root. The
 * page is public; the data it shows comes from API routes with the usual auth.
 */
import type { Buffer } from 'node:buffer';
import { readFile } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';
import { AdminError, type AdminRoute } from '../router.ts';

const ROOT = new URL('../../../dashboard/', import.meta.url);

const TYPES: Record<string, string> = {
  'index.html': 'text/html; charset=utf-8',
  'app.js': 'text/javascript; charset=utf-8',
  'certificates.js': 'text/javascript; charset=utf-8',
  'charts.js': 'text/javascript; charset=utf-8',
  'dom.js': 'text/javascript; charset=utf-8',
  'fleet.js': 'text/javascript; charset=utf-8',
  'logs.js': 'text/javascript; charset=utf-8',
  'stream.js': 'text/javascript; charset=utf-8',
  'style.css': 'text/css; charset=utf-8',
};

/** Defence in depth: even if data slipped into markup, no inline or foreign script could run. */
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

export function staticRoutes(): AdminRoute[] {
  const cache = new Map<string, Buffer>();
  const serve = async (file: string, res: ServerResponse) => {
    let body = cache.get(file);
    if (!body) {
      body = await readFile(new URL(file, ROOT));
      cache.set(file, body);
    }
    res.statusCode = 200;
    res.setHeader('content-type', TYPES[file] as string);
    res.setHeader('content-length', body.length);
    res.setHeader('cache-control', 'no-cache');
    res.setHeader('x-content-type-options', 'nosniff');
    res.setHeader('content-security-policy', CSP);
    res.setHeader('referrer-policy', 'no-referrer');
    res.end(body);
    return undefined;
  };
  return [
    {
      method: 'GET',
      path: '/',
      mutates: false,
      public: true,
      summary: 'The live dashboard (an HTML page; its data comes from /api/v1/live and the API, with the usual auth)',
      handle: ({ res }) => serve('index.html', res),
    },
    {
      method: 'GET',
      path: '/dashboard/:file',
      mutates: false,
      public: true,
      summary: 'The dashboard’s scripts and stylesheet',
      handle: ({ params, res }) => {
        // Only the known files: the name never reaches the file system otherwise.
        const file = params.file as string;
        if (file === 'index.html' || !Object.hasOwn(TYPES, file)) throw new AdminError(404, `no dashboard file "${file}"`, 'file');
        return serve(file, res);
      },
    },
  ];
}
