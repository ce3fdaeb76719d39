/** Consistent hashing on the client IP (after trusted-proxy resolution). */
import type { PickRequest } from './policy.ts';

export const ipKey = (request: PickRequest): string => request.clientIp;
