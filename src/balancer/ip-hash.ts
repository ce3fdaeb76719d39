/** Consistent hashing on the client IP (after trusted-proxy resolution); no address known → the fallback policy. */
import type { PickRequest } from './policy.ts';

export const ipKey = (request: PickRequest): string | undefined => request.clientIp || undefined;
