/** GET /metrics (Prometheus), GET /api/v1/logs and GET /api/v1/stats. */

import type { LogQuery, LogStore } from '../../observe/log-store.ts';
import { computeStats, type GroupBy } from '../../observe/stats.ts';
import { parseStatusRange } from '../../units.ts';
import { AdminError, type AdminRoute } from '../router.ts';

/** Epoch ms from an ISO date, epoch ms, or a relative `-15m` / `-1h`. */
function parseTime(value: string, field: string): number {
  const rel = /^-(\d+)(s|m|h|d)$/.exec(value);
  if (rel) return Date.now() - Number(rel[1]) * { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[rel[2] as 's'];
  const n = /^\d+$/.test(value) ? Number(value) : Date.parse(value);
  if (!Number.isFinite(n)) throw new AdminError(400, `${field}: expected an ISO date, epoch milliseconds or a relative time like -15m`, field);
  return n;
}

function filterFrom(query: URLSearchParams): Omit<LogQuery, 'limit' | 'cursor'> {
  const known = new Set(['service', 'server', 'status', 'since', 'until', 'path', 'client', 'trace_id', 'limit', 'cursor', 'group_by']);
  for (const key of query.keys()) if (!known.has(key)) throw new AdminError(400, `unknown query parameter "${key}"`, key);
  const f: Omit<LogQuery, 'limit' | 'cursor'> = {};
  const service = query.get('service');
  if (service) f.service = service;
  const server = query.get('server');
  if (server) f.server = server;
  const status = query.get('status');
  if (status) {
    const range = parseStatusRange(status);
    if (!range) throw new AdminError(400, 'status: expected e.g. 200, 5xx or 400-499', 'status');
    f.status = range;
  }
  const since = query.get('since');
  if (since) f.since = parseTime(since, 'since');
  const until = query.get('until');
  if (until) f.until = parseTime(until, 'until');
  if (f.since !== undefined && f.until !== undefined && f.since > f.until) throw new AdminError(400, 'since is after until', 'since');
  const path = query.get('path');
  if (path) f.path = path;
  const client = query.get('client');
  if (client) f.client = client;
  const traceId = query.get('trace_id');
  if (traceId) {
    if (!/^[0-9a-f]{32}$/.test(traceId)) throw new AdminError(400, 'trace_id: expected 32 lowercase hex digits', 'trace_id');
    f.traceId = traceId;
  }
  return f;
}

function integer(query: URLSearchParams, field: string, min: number, max: number, fallback: number | undefined): number | undefined {
  const raw = query.get(field);
  if (raw === null || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) throw new AdminError(400, `${field}: expected a whole number from ${min} to ${max}`, field);
  return n;
}

const GROUPS: GroupBy[] = ['service', 'server', 'status', 'minute'];

export function observeRoutes(deps: { metrics(): string | undefined; store(): LogStore | undefined }): AdminRoute[] {
  const store = () => {
    const s = deps.store();
    if (!s) throw new AdminError(409, 'no log store is configured (set logs: in the config)');
    return s;
  };
  return [
    {
      method: 'GET',
      path: '/metrics',
      mutates: false,
      summary: 'Prometheus metrics (text exposition format)',
      handle: ({ res }) => {
        const text = deps.metrics();
        if (text === undefined) throw new AdminError(404, 'metrics are disabled (metrics.enabled: false)');
        res.setHeader('content-type', 'text/plain; version=0.0.4; charset=utf-8');
        res.end(text);
        return undefined;
      },
    },
    {
      method: 'GET',
      path: '/api/v1/logs',
      mutates: false,
      summary: 'Access-log entries, newest first: ?service=&server=&status=5xx&since=&until=&path=&client=&trace_id=&limit=&cursor=',
      handle: async ({ query }) => {
        const filter = filterFrom(query);
        const limit = integer(query, 'limit', 1, 1000, 100) as number;
        const cursor = integer(query, 'cursor', 1, Number.MAX_SAFE_INTEGER, undefined);
        const rows = await store().query({ ...filter, limit, ...(cursor !== undefined ? { cursor } : {}) });
        return { entries: rows, next_cursor: rows.length === limit ? rows[rows.length - 1]?.id : null };
      },
    },
    {
      method: 'GET',
      path: '/api/v1/stats',
      mutates: false,
      summary: 'Counts, error rate and p50/p95/p99 latency: ?since=&until=&service=&group_by=service|server|status|minute',
      handle: async ({ query }) => {
        const filter = filterFrom(query);
        const by = (query.get('group_by') ?? 'service') as GroupBy;
        if (!GROUPS.includes(by)) throw new AdminError(400, `group_by: expected one of ${GROUPS.join(', ')}`, 'group_by');
        const cap = 200_000;
        const rows = await store().statRows(filter, cap);
        return { group_by: by, truncated: rows.length === cap, groups: computeStats(rows, by) };
      },
    },
  ];
}
