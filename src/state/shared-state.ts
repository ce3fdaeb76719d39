/**
 * State that every data-path thread must see exactly the same lives here, in
 * SharedArrayBuffers read and written with Atomics. One thread (the control
 * plane) allocates slots; any thread may update the counters in a slot.
 *
 * This folder is the only code that knows where a cell is: the rest of Velocity
 * reads and writes through the typed views made here (a server, a service, metric
 * cells, the local limiter table).
 *
 * Times and averages are Float64 cells written with plain stores: 8-byte aligned
 * stores do not tear on the 64-bit platforms Node supports, and each such cell
 * has one logical writer at a time (guarded by an Int32 state word).
 */
import { S, SERVER_FLOATS, SERVER_INTS, SERVICE_INTS, SF, type SlotArrays, V } from './layout.ts';
import { LIMITER_SLOT_BYTES } from './limiter-table.ts';
import { MetricCells } from './metric-cells.ts';
import { ServerCells } from './server-cells.ts';
import { ServiceCells } from './service-cells.ts';

/** How many BigInt64 metric cells a server slot, a service slot and the process hold. */
export interface MetricCellCounts {
  server: number;
  service: number;
  global: number;
}

export interface SharedStateBuffers {
  serverCapacity: number;
  serviceCapacity: number;
  maxThreads: number;
  metricCells: MetricCellCounts;
  serverInts: SharedArrayBuffer;
  serverFloats: SharedArrayBuffer;
  serviceInts: SharedArrayBuffer;
  threadInFlight: SharedArrayBuffer;
  serverMetrics: SharedArrayBuffer;
  serviceMetrics: SharedArrayBuffer;
  globalMetrics: SharedArrayBuffer;
  /** The local rate-limit table (see limiter-table.ts). */
  rateLimits: SharedArrayBuffer;
}

export interface SharedStateOptions {
  servers?: number;
  services?: number;
  threads?: number;
  rateLimitSlots?: number;
  /** Cells per scope, as the metric table asks (src/observe/metric-table.ts). */
  metricCells?: MetricCellCounts;
}

export class SharedState implements SlotArrays {
  readonly serverCapacity: number;
  readonly serviceCapacity: number;
  readonly maxThreads: number;
  /** @internal to src/state: the views below reach the cells through these. */
  readonly serverInts: Int32Array;
  readonly serverFloats: Float64Array;
  readonly serviceInts: Int32Array;
  /** In-flight per (thread, server) so a crashed thread's counts can be given back. */
  readonly threadInFlight: Int32Array;
  /** Counters and histograms by server slot, by service slot, and process-wide. */
  readonly serverMetrics: MetricCells;
  readonly serviceMetrics: MetricCells;
  readonly globalMetrics: MetricCells;
  readonly buffers: SharedStateBuffers;

  private readonly freeServerSlots: number[] = [];
  private readonly freeServiceSlots: number[] = [];

  constructor(buffers?: SharedStateBuffers, options: SharedStateOptions = {}) {
    const servers = options.servers ?? 4096;
    const services = options.services ?? 512;
    const threads = options.threads ?? 64;
    const cells = options.metricCells ?? { server: 24, service: 24, global: 16 };
    this.buffers = buffers ?? {
      serverCapacity: servers,
      serviceCapacity: services,
      maxThreads: threads,
      metricCells: cells,
      serverInts: new SharedArrayBuffer(servers * SERVER_INTS * 4),
      serverFloats: new SharedArrayBuffer(servers * SERVER_FLOATS * 8),
      serviceInts: new SharedArrayBuffer(services * SERVICE_INTS * 4),
      threadInFlight: new SharedArrayBuffer(threads * servers * 4),
      serverMetrics: new SharedArrayBuffer(servers * cells.server * 8),
      serviceMetrics: new SharedArrayBuffer(services * cells.service * 8),
      globalMetrics: new SharedArrayBuffer(cells.global * 8),
      rateLimits: new SharedArrayBuffer((options.rateLimitSlots ?? 65_536) * LIMITER_SLOT_BYTES),
    };
    this.serverCapacity = this.buffers.serverCapacity;
    this.serviceCapacity = this.buffers.serviceCapacity;
    this.maxThreads = this.buffers.maxThreads;
    this.serverInts = new Int32Array(this.buffers.serverInts);
    this.serverFloats = new Float64Array(this.buffers.serverFloats);
    this.serviceInts = new Int32Array(this.buffers.serviceInts);
    this.threadInFlight = new Int32Array(this.buffers.threadInFlight);
    this.serverMetrics = new MetricCells(this.buffers.serverMetrics, this.buffers.metricCells.server);
    this.serviceMetrics = new MetricCells(this.buffers.serviceMetrics, this.buffers.metricCells.service);
    this.globalMetrics = new MetricCells(this.buffers.globalMetrics, this.buffers.metricCells.global);
    if (!buffers) {
      for (let i = this.serverCapacity - 1; i >= 0; i--) this.freeServerSlots.push(i);
      for (let i = this.serviceCapacity - 1; i >= 0; i--) this.freeServiceSlots.push(i);
    }
  }

  /** The live state of a server slot, as `thread` counts its requests. */
  server(slot: number, thread = 0): ServerCells {
    return new ServerCells(this, slot, thread);
  }

  /** The live state of a service slot. */
  service(slot: number): ServiceCells {
    return new ServiceCells(this, slot);
  }

  /** Control plane only: a fresh server slot, zeroed and marked up. */
  allocateServer(now: number): number {
    const slot = this.freeServerSlots.pop();
    if (slot === undefined) throw new Error(`server capacity (${this.serverCapacity}) exhausted`);
    this.serverInts.fill(0, slot * SERVER_INTS, (slot + 1) * SERVER_INTS);
    this.serverFloats.fill(0, slot * SERVER_FLOATS, (slot + 1) * SERVER_FLOATS);
    this.serverMetrics.clear(slot);
    Atomics.store(this.serverInts, slot * SERVER_INTS + S.ACTIVE_UP, 1);
    this.serverFloats[slot * SERVER_FLOATS + SF.USABLE_SINCE] = now;
    return slot;
  }

  releaseServer(slot: number): void {
    this.freeServerSlots.push(slot);
  }

  allocateService(): number {
    const slot = this.freeServiceSlots.pop();
    if (slot === undefined) throw new Error(`service capacity (${this.serviceCapacity}) exhausted`);
    this.serviceInts.fill(0, slot * SERVICE_INTS, (slot + 1) * SERVICE_INTS);
    this.serviceMetrics.clear(slot);
    return slot;
  }

  releaseService(slot: number): void {
    this.freeServiceSlots.push(slot);
  }

  /** Requests `thread` has in flight on the server in `slot`. */
  threadInFlightOf(thread: number, slot: number): number {
    return Atomics.load(this.threadInFlight, thread * this.serverCapacity + slot);
  }

  /** Gives back the in-flight counts and spin locks a dead thread held. */
  releaseThread(thread: number): void {
    const base = thread * this.serverCapacity;
    for (let slot = 0; slot < this.serverCapacity; slot++) {
      const held = Atomics.exchange(this.threadInFlight, base + slot, 0);
      if (held !== 0) Atomics.sub(this.serverInts, slot * SERVER_INTS + S.IN_FLIGHT, held);
      Atomics.compareExchange(this.serverInts, slot * SERVER_INTS + S.LOCK, thread + 1, 0);
    }
    for (let slot = 0; slot < this.serviceCapacity; slot++) Atomics.compareExchange(this.serviceInts, slot * SERVICE_INTS + V.LOCK, thread + 1, 0);
  }
}
