/** Consistent hashing on a named cookie; requests without it use the fallback policy. */
import { z } from 'zod';
import { fallbackOption } from './consistent-hash.ts';
import type { PickRequest } from './policy.ts';

/** RFC 6265 cookie-name: a token (no separators, spaces or controls). */
export const cookieName = () =>
  z.string({ error: 'expected a cookie name' }).regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, "illegal characters for a cookie name (letters, digits and !#$%&'*+-.^_`|~ only)");

export const cookieHashOptions = z.strictObject({ cookie: cookieName(), fallback: fallbackOption });

export const cookieKey = (request: PickRequest, options: Record<string, unknown>): string | undefined => request.cookie(String(options.cookie)) || undefined;
