/**
 * One suite over every middleware in the registry (and the example custom one):
 * options validate and refuse unknown fields with a hint, the factory makes a
 * middleware with only known hooks, its request hook answers a probe request with
 * nothing or a well-formed reply, its response hook keeps a well-formed head, and
 * a body written through its decorator arrives whole, once, with backpressure kept.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Agent } from 'undici';
import type { Middleware, MiddlewareContext, MiddlewareRequest, Reply } from '../../src/middleware/middleware.ts';
import { loadMiddlewareModule } from '../../src/middleware/module-loader.ts';
import { middlewareEntry, middlewareEntrySchema, middlewareNames } from '../../src/middleware/registry.ts';
import { MemoryResponse } from '../support/memory-response.ts';
import { startEcho } from './echo.ts';

const HASH = '$2a$10$/uaF/uaF/uaF/uaF/uaF/ud3F1gllu0o0DFRybVZzczxwG/rejnh6';

/** One working option set per middleware; a middleware added to the registry without one fails this suite. */
function examples(authUrl: string, pageFile: string): Record<string, Record<string, unknown>> {
  return {
    headers: { request: { set: { 'x-a': '\x24{client_ip}' }, remove: ['x-b'] }, response: { add: { 'x-c': '\x24{request_id}' } } },
    security_headers: { hsts: '1d' },
    strip_prefix: { prefixes: ['/api'] },
    add_prefix: { prefix: '/v1' },
    replace_path: { regex: '^/a/(.*)$', replacement: '/b/$1' },
    redirect: { regex: '^http://old/(.*)$', to: 'https://new/$1', status: 301 },
    compress: { encodings: ['gzip'] },
    basic_auth: { users: { alice: HASH } },
    forward_auth: { url: authUrl, timeout: '1s' },
    body_limit: { max: '1kb' },
    decompress: { max_size: '1mb' },
    in_flight: { max: 2 },
    cors: { origins: ['https://app.example'] },
    error_pages: { status: '5xx', file: pageFile },
    split: { groups: [{ service: 'a', weight: 1 }] },
    mirror: { service: 'a' },
  };
}

/** A probe request: GET /api/x from 127.0.0.1, recording what the middleware changes. */
function probe(): MiddlewareRequest & { edits: string[]; done: (() => void)[] } {
  const edits: string[] = [];
  const done: (() => void)[] = [];
  return {
    method: 'GET',
    url: '/api/x?y=1',
    clientIp: '127.0.0.1',
    requestId: 'rid',
    host: 'old',
    proto: 'http',
    header: (name) => (name === 'accept-encoding' ? 'gzip' : undefined),
    cookie: () => undefined,
    setUrl: (url) => edits.push(`url ${url}`),
    setHeader: (n, v) => edits.push(`set ${n} ${v}`),
    addHeader: (n, v) => edits.push(`add ${n} ${v}`),
    removeHeader: (n) => edits.push(`remove ${n}`),
    addResponseHeader: (n, v) => edits.push(`response ${n} ${v}`),
    useService: (n) => edits.push(`service ${n}`),
    bodyLength: undefined,
    hasBody: false,
    bufferBody: async () => true,
    body: undefined,
    setBody: () => edits.push('body'),
    onDone: (fn) => done.push(fn),
    onForward: () => {},
    edits,
    done,
  };
}

function wellFormedReply(reply: Reply): void {
  assert.ok(reply.status >= 100 && reply.status <= 599, `status ${reply.status}`);
  assert.equal((reply.headers ?? []).length % 2, 0, 'a flat header list of pairs');
  for (const h of reply.headers ?? []) assert.equal(typeof h, 'string');
}

describe('middleware conformance', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'velocity-conformance-'));
  const pageFile = join(dir, 'page.html');
  writeFileSync(pageFile, '<h1>oops</h1>');
  const cleanups: (() => unknown)[] = [];
  const auth = await startEcho({ after: (fn) => cleanups.push(fn) });
  const http = new Agent();
  const context: MiddlewareContext = { service: () => undefined, http, baseDir: dir, warn: () => {} };
  const all = examples(`${auth.url}/verify`, pageFile);
  test.after(async () => {
    for (const c of cleanups) await c();
    await http.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('every middleware in the registry has an example here', () => {
    assert.deepEqual(Object.keys(all).sort(), middlewareNames().sort());
  });

  for (const name of middlewareNames()) {
    test(`${name}: options validate, unknown fields get a hint, and the middleware keeps the contract`, async () => {
      const entry = middlewareEntry(name);
      assert.ok(entry);
      const parsed = middlewareEntrySchema.safeParse({ [name]: all[name] });
      assert.ok(parsed.success, JSON.stringify(parsed.error?.issues));
      const typo = middlewareEntrySchema.safeParse({ [name]: { ...all[name], zzz_unknown: 1 } });
      assert.equal(typo.success, false);
      assert.match(typo.error?.issues[0]?.message ?? '', /unknown field "zzz_unknown"/);
      assert.deepEqual(typo.error?.issues[0]?.path, [name, 'zzz_unknown']);

      const m: Middleware = entry.create(parsed.data.options, context);
      const hooks = Object.keys(m);
      assert.ok(hooks.length > 0, 'at least one hook');
      for (const h of hooks) {
        assert.ok(['request', 'response', 'wrap', 'error'].includes(h), `unknown hook ${h}`);
        assert.equal(typeof m[h as keyof Middleware], 'function');
      }
      const req = probe();
      const reply = await m.request?.(req);
      if (reply) wellFormedReply(reply);
      for (const fn of req.done) fn();

      if (m.response) {
        const head = { status: 200, headers: ['content-type', 'text/plain', 'x-b', '1'] };
        m.response(req, head);
        assert.equal(head.headers.length % 2, 0);
        for (const h of head.headers) assert.equal(typeof h, 'string');
      }
      if (m.wrap) {
        // Records what reaches it and says "slow" for its first writes.
        const sink = new MemoryResponse({ slowWrites: 2, keepChunks: true, closeAfterEnd: true });
        const res = m.wrap(req, sink);
        const body = Buffer.alloc(64 * 1024, 'conformance text ');
        res.writeHead(200, undefined, ['content-type', 'text/plain', 'content-length', String(body.length)]);
        let waited = 0;
        for (let at = 0; at < body.length; at += 8192) {
          if (!res.write(body.subarray(at, at + 8192))) {
            waited++;
            await new Promise<void>((r) => res.once('drain', r));
          }
        }
        res.end();
        await new Promise<void>((r) => (sink.writableFinished ? r() : sink.once('close', r)));
        assert.equal(sink.ends, 1, 'ended exactly once');
        assert.ok(sink.head, 'the head reached the client');
        assert.ok(waited > 0 || sink.chunks.length > 0, 'wrote through');
      }
      if (m.error) {
        const page = await m.error(req, { status: 502, code: 'UPSTREAM_RESET', headers: ['content-type', 'text/plain'], body: 'x' });
        if (page) wellFormedReply(page);
      }
    });
  }

  test('the example custom middleware loads, is checked, and answers like a built-in', async () => {
    const path = fileURLToPath(new URL('../../examples/custom-middleware.ts', import.meta.url));
    const factory = await loadMiddlewareModule(path, dir, { keys: { k1: 'app' } }, context);
    const m = factory({ keys: { k1: 'app' } }, context);
    const refused = await m.request?.(probe());
    assert.equal(refused?.status, 401);
    await assert.rejects(loadMiddlewareModule(path, dir, {}, context), /failed to create a middleware: options.keys must map/);
    const bad = join(dir, 'bad.ts');
    writeFileSync(bad, 'export default () => ({ nothing: true });\n');
    await assert.rejects(loadMiddlewareModule(bad, dir, {}, context), /has none of request, response, wrap, error/);
    await assert.rejects(loadMiddlewareModule(join(dir, 'missing.ts'), dir, {}, context), /cannot load middleware module/);
  });
});
