/**
 * GET /api/v1/live: a server-sent-events stream with one dashboard snapshot a
 * second. The aggregator listens to request records only while someone watches:
 * with worker threads, records are forwarded to the main thread only while an
 * observer is attached, so an idle dashboard costs the data path nothing.
 */
import type { ServerResponse } from 'node:http';
import type { RequestObserver } from '../../observe/events.ts';
import type { Logger } from '../../observe/logger.ts';
import { emptyInterval, LiveAggregator } from '../dashboard/aggregator.ts';
import { buildSnapshot, type SnapshotDeps } from '../dashboard/snapshot.ts';
import type { AdminRoute } from '../router.ts';

export interface LiveDeps extends SnapshotDeps {
  observe(observer: RequestObserver): () => void;
  log: Logger;
  /** Snapshot period (ms); tests may shorten it. */
  intervalMs?: number;
}

/** A client this far behind (unsent bytes) is cut off rather than buffered for without end. */
const MAX_BACKLOG = 1024 * 1024;

export function liveRoutes(deps: LiveDeps): AdminRoute[] {
  const period = deps.intervalMs ?? 1000;
  const clients = new Set<ServerResponse>();
  let agg: LiveAggregator | undefined;
  let detach: (() => void) | undefined;
  let timer: NodeJS.Timeout | undefined;
  let last: string | undefined;

  /** State without rates: what a client sees before the first interval closes. */
  const freshSnapshot = () => buildSnapshot(deps, emptyInterval(), agg);
  const send = (res: ServerResponse, data: string) => res.write(`event: snapshot\ndata: ${data}\n\n`);
  const broadcast = () => {
    if (!agg) return;
    try {
      last = JSON.stringify(buildSnapshot(deps, agg.tick(), agg));
    } catch (err) {
      // A timer callback that threw would take the process down; a skipped snapshot is harmless.
      deps.log.error({ err }, 'dashboard snapshot failed');
      return;
    }
    for (const res of clients) {
      if (res.writableLength > MAX_BACKLOG) res.destroy();
      else send(res, last);
    }
  };
  const startWatching = () => {
    const a = new LiveAggregator();
    agg = a;
    detach = deps.observe((record) => a.add(record));
    timer = setInterval(broadcast, period);
    timer.unref();
  };
  const stopWatching = () => {
    clearInterval(timer);
    detach?.();
    agg = undefined;
    detach = undefined;
    last = undefined;
  };

  return [
    {
      method: 'GET',
      path: '/api/v1/live',
      mutates: false,
      summary:
        'With Accept: text/event-stream, a dashboard snapshot every second (rates, latency percentiles, server state, blocklist, reload status); otherwise one snapshot as JSON',
      handle: ({ req, res }) => {
        // Plain clients (curl, scripts, API crawlers) get one snapshot as JSON and the response ends;
        // the dashboard asks for the stream with Accept: text/event-stream.
        if (!req.headers.accept?.includes('text/event-stream')) return freshSnapshot();
        res.writeHead(200, {
          'content-type': 'text/event-stream; charset=utf-8',
          'cache-control': 'no-store',
          'x-accel-buffering': 'no',
        });
        res.flushHeaders();
        req.socket.setNoDelay(true);
        if (clients.size === 0) startWatching();
        clients.add(res);
        // A newcomer sees the state at once; the numbers fill in at the next tick.
        send(res, last ?? JSON.stringify(freshSnapshot()));
        res.on('close', () => {
          clients.delete(res);
          if (clients.size === 0) stopWatching();
        });
        return undefined;
      },
    },
  ];
}
