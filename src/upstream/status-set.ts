/**
 * A set of HTTP statuses (a service's retries.retry_on) as a table indexed by status, for the lookup every
 * response head makes: a byte load where a Set's hash lookup showed in perf under the response parser
 * (~8 samples in 7,176: its buckets and entries are out of cache by the time a head arrives).
 */
const STATUS_LIMIT = 1000;

export class StatusSet {
  private readonly table = new Uint8Array(STATUS_LIMIT);

  constructor(statuses: Iterable<number>) {
    for (const status of statuses) if (Number.isInteger(status) && status >= 0 && status < STATUS_LIMIT) this.table[status] = 1;
  }

  /** Whether `status` is in the set (a status outside 0–999 never is). */
  has(status: number): boolean {
    return this.table[status] === 1;
  }
}
