/** Sticky-session cookies: opaque, unforgeable names for servers, and the attributes operators configure. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { stickySchema } from '../../src/config/schema/sticky.ts';
import { stickySecret, stickySetCookie, stickyTarget, stickyToken } from '../../src/upstream/sticky.ts';

const servers = ['10.0.0.1:8080', '10.0.0.2:8080', 'api-3'].map((id) => ({ id }));
const sticky = (fields: Record<string, unknown> = {}) => stickySchema.parse(fields);

describe('sticky cookie value', () => {
  test('names each server by an opaque 22-character token that does not contain its address', () => {
    const secret = stickySecret('shop', sticky());
    const tokens = servers.map((s) => stickyToken(s, secret));
    assert.equal(new Set(tokens).size, servers.length);
    for (const [i, token] of tokens.entries()) {
      assert.match(token, /^[A-Za-z0-9_-]{22}$/);
      assert.ok(!token.includes('10.0') && !token.includes('8080') && !token.includes('api'));
      assert.equal(stickyTarget(servers, token, secret), servers[i]);
    }
  });

  test('is the same on every instance with the same config, and differs per service and per secret', () => {
    const a = stickyToken({ id: 'api-3' }, stickySecret('shop', sticky()));
    assert.equal(stickyToken({ id: 'api-3' }, stickySecret('shop', sticky())), a, 'a fresh process derives the same token');
    assert.notEqual(stickyToken({ id: 'api-3' }, stickySecret('blog', sticky())), a);
    assert.notEqual(stickyToken({ id: 'api-3' }, stickySecret('shop', sticky({ secret: 'sixteen-chars-secret' }))), a);
  });

  test('a forged, malformed or stale cookie names no server (the policy then picks afresh)', () => {
    const secret = stickySecret('shop', sticky({ secret: 'sixteen-chars-secret' }));
    fc.assert(
      fc.property(fc.string({ maxLength: 40 }), (value) => {
        const target = stickyTarget(servers, value, secret);
        if (target) assert.equal(value, stickyToken(target, secret));
      }),
      { numRuns: 500 },
    );
    for (const value of [undefined, '', 'AAAAAAAAAAAAAAAAAAAAAA', '10.0.0.1:8080', `${stickyToken(servers[0] as { id: string }, secret)}x`]) {
      assert.equal(stickyTarget(servers, value, secret), undefined, String(value));
    }
    // Signed with another secret (rotated), or naming a server that was removed: stale.
    assert.equal(stickyTarget(servers, stickyToken(servers[0] as { id: string }, 'another-secret-of-16'), secret), undefined);
    assert.equal(stickyTarget(servers.slice(1), stickyToken(servers[0] as { id: string }, secret), secret), undefined);
  });
});

describe('sticky Set-Cookie attributes', () => {
  test('defaults: a session cookie on /, HttpOnly, SameSite=Lax, Secure only over TLS', () => {
    assert.equal(stickySetCookie(sticky(), 'tok', false), 'velocity_sticky=tok; Path=/; SameSite=Lax; HttpOnly');
    assert.equal(stickySetCookie(sticky(), 'tok', true), 'velocity_sticky=tok; Path=/; SameSite=Lax; HttpOnly; Secure');
  });

  test('name, path, ttl (Max-Age), HttpOnly, Secure and SameSite follow the config', () => {
    assert.equal(
      stickySetCookie(sticky({ cookie: 'srv', path: '/app', ttl: '1h', http_only: false, secure: true, same_site: 'Strict' }), 'tok', false),
      'srv=tok; Path=/app; SameSite=Strict; Max-Age=3600; Secure',
    );
    assert.equal(stickySetCookie(sticky({ secure: false }), 'tok', true), 'velocity_sticky=tok; Path=/; SameSite=Lax; HttpOnly');
  });

  test('SameSite=None always carries Secure (browsers drop it otherwise)', () => {
    assert.match(stickySetCookie(sticky({ same_site: 'None', secure: false }), 'tok', false), /; Secure$/);
  });

  test('a cookie name with illegal characters, or a short secret, is refused', () => {
    for (const bad of [{ cookie: 'a b' }, { cookie: 'a;b' }, { cookie: 'a=b' }, { cookie: '' }, { secret: 'short' }]) {
      assert.equal(stickySchema.safeParse(bad).success, false, JSON.stringify(bad));
    }
  });
});
