/**
 * What stops a request's tries early — the client went away, the total timeout passed — and the
 * per-try timeout, without an AbortController per request (an EventTarget with listeners added and
 * removed on every try showed in perf). The AbortSignal the queue wait listens to is made only when a
 * request actually waits in the queue.
 */

/** A try in flight (the forwarder's attempt), told to stop. */
export interface AbortableTry {
  abort(reason: Error & { code?: string }): void;
}

export class RequestAbort {
  /** Why the request was aborted; undefined while it was not. */
  reason: (Error & { code?: string }) | undefined;
  /** The try in flight: it hears an abort of the request, and its own per-try timeout. */
  private current: AbortableTry | undefined;
  private controller: AbortController | undefined;

  get aborted(): boolean {
    return this.reason !== undefined;
  }

  /** Aborts the request: the try in flight stops, and no other starts. */
  abort(reason: Error & { code?: string }): void {
    if (this.reason) return;
    this.reason = reason;
    this.current?.abort(reason);
    this.controller?.abort(reason);
  }

  /** `attempt` is the try in flight from now on. */
  startTry(attempt: AbortableTry): void {
    this.current = attempt;
  }

  /** `attempt` settled: a later abort or per-try timeout is not its business. */
  endTry(attempt: AbortableTry): void {
    if (this.current === attempt) this.current = undefined;
  }

  /** The per-try timeout passed: the try in flight stops; the request may go on with another. */
  abortTry(reason: Error & { code?: string }): void {
    this.current?.abort(reason);
  }

  /** For a wait in the queue, the one step that listens for aborts through a signal. */
  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.reason) this.controller.abort(this.reason);
    }
    return this.controller.signal;
  }
}

function attemptTimeout(what: string): Error & { code: string } {
  return Object.assign(new Error(what), { code: 'VELOCITY_ATTEMPT_TIMEOUT' });
}

/** The total timeout passed (the thread's deadline sweep found it): the request stops. */
export function abortOnTotalTimeout(abort: RequestAbort): void {
  abort.abort(attemptTimeout('total timeout'));
}

/** Stops the try in flight only: the request may go on with another try. */
export function abortTryOnTimeout(abort: RequestAbort): void {
  abort.abortTry(attemptTimeout('per-try timeout'));
}
