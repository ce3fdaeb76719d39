// The live stream over fetch (not EventSource, which cannot send an
// Authorization header). A stream that errors, ends, or goes quiet for longer
// than WATCHDOG_MS is dropped and opened again with exponential backoff.

const WATCHDOG_MS = 5000;
const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 8000;

/**
 * Runs forever. `handlers`: snapshot(data), connected(), disconnected(retryMs),
 * unauthorized() → Promise that resolves when a new token may help.
 */
export async function runStream(url, headers, handlers) {
  let delay = FIRST_DELAY_MS;
  for (;;) {
    const ctrl = new AbortController();
    let watchdog;
    const arm = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => ctrl.abort(), WATCHDOG_MS);
    };
    try {
      arm();
      const res = await fetch(url, { headers: { accept: 'text/event-stream', ...headers() }, signal: ctrl.signal, cache: 'no-store' });
      if (res.status === 401) {
        clearTimeout(watchdog);
        await handlers.unauthorized();
        continue;
      }
      if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        arm();
        buffer += value;
        for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
          const data = parseEvent(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
          if (data === undefined) continue;
          if (delay !== 0) handlers.connected();
          delay = 0;
          handlers.snapshot(data);
        }
      }
    } catch {
      // Dropped, refused or timed out: all the same to the user, shown below.
    }
    clearTimeout(watchdog);
    ctrl.abort();
    delay = Math.min(MAX_DELAY_MS, Math.max(FIRST_DELAY_MS, delay * 2));
    // Jitter so many open dashboards do not reconnect in lockstep after a restart.
    const wait = Math.round(delay * (0.8 + Math.random() * 0.4));
    handlers.disconnected(wait);
    await new Promise((r) => setTimeout(r, wait));
  }
}

/** The JSON of an SSE event's data lines, or undefined for comments and bad data. */
function parseEvent(block) {
  const data = block
    .split('\n')
    .filter((line) => line.startsWith('data:'))
    .map((line) => line.slice(5).trimStart())
    .join('\n');
  if (!data) return undefined;
  try {
    return JSON.parse(data);
  } catch {
    return undefined;
  }
}
