/** Consistent hashing on the request path (with the query string when `query: true`). */
import { z } from 'zod';
import { fallbackOption } from './consistent-hash.ts';
import type { PickRequest } from './policy.ts';

export const urlHashOptions = z.strictObject({ query: z.boolean().default(false), fallback: fallbackOption });

export const urlKey = (request: PickRequest, options: Record<string, unknown>): string => (options.query ? request.url : (request.url.split('?')[0] ?? request.url));
