/**
 * Counter cells for metrics, one row per slot (a server, a service, or the one
 * process-wide row): BigInt64 so sums of microseconds never overflow. Every thread
 * adds; the admin listener reads. Which cell holds which metric is decided by the
 * metric table (src/observe/metric-table.ts), which also sizes the rows.
 */
export class MetricCells {
  private readonly cells: BigInt64Array;
  /** Cells per row. */
  readonly width: number;
  private readonly clearListeners: (() => void)[] = [];

  constructor(buffer: SharedArrayBuffer, width: number) {
    this.cells = new BigInt64Array(buffer);
    this.width = width;
  }

  add(row: number, cell: number, by: bigint): void {
    this.addAt(row * this.width + cell, by);
  }

  /** Adds to the cell at `index` = row × width + cell. */
  addAt(index: number, by: bigint): void {
    Atomics.add(this.cells, index, by);
  }

  load(row: number, cell: number): bigint {
    return Atomics.load(this.cells, row * this.width + cell);
  }

  /**
   * `listener` is told before a row is zeroed for a slot's new server or service: a thread holding additions
   * not in these cells yet adds them first, so that none of the old owner's counts lands on the new one.
   */
  beforeEachClear(listener: () => void): void {
    this.clearListeners.push(listener);
  }

  /** Zeroes a row for a slot given to a new server or service. */
  clear(row: number): void {
    for (const listener of this.clearListeners) listener();
    this.cells.fill(0n, row * this.width, (row + 1) * this.width);
  }
}
