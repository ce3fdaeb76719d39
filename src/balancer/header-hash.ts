/** Consistent hashing on a named request header; requests without it use the fallback policy. */
import { z } from 'zod';
import { fallbackOption } from './consistent-hash.ts';
import type { PickRequest } from './policy.ts';

export const headerHashOptions = z.strictObject({
  header: z.string({ error: 'header-hash needs header: the name of the header to hash' }).regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, 'not a valid header name'),
  fallback: fallbackOption,
});

export const headerKey = (request: PickRequest, options: Record<string, unknown>): string | undefined => request.header(String(options.header)) || undefined;
