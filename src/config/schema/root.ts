/** The whole config file. Sections for later features plug in here. */
import { z } from 'zod';
import { listenAddress, nonNegativeInt, positiveDuration, positiveInt, size } from './common.ts';
import { serviceKnobsSchema } from './resilience.ts';
import { serviceSchema } from './service.ts';

export const clientSchema = z.strictObject({
  /** Time a client has to send the complete request head (slowloris guard) → 408. */
  header_timeout: positiveDuration().default(10_000),
  /** Time for the whole request body to arrive → 408. */
  body_timeout: positiveDuration().default(60_000),
  /** Idle keep-alive connections are closed after this. */
  keepalive_timeout: positiveDuration().default(5_000),
  /** Largest request head (request line + headers) → 431. */
  max_header_size: size().default(16 * 1024),
  /** Open client connections per listener (per thread); more are refused. 0 = unlimited. */
  max_connections: nonNegativeInt().default(10_000),
});

export const adminSchema = z.strictObject({
  enabled: z.boolean().default(true),
  listen: listenAddress().default({ host: '127.0.0.1', port: 9090 }),
  /** Bearer token for changes (and for everything when not on loopback). Use ${ENV_VAR}. */
  token: z.string().min(16, 'an admin token must be at least 16 characters').optional(),
});

export const configSchema = z.strictObject({
  listen: z.union([listenAddress().transform((a) => [a]), z.array(listenAddress()).min(1)]).default([{ host: '0.0.0.0', port: 8000 }]),
  /** Event-loop threads for the data path: a number, or `auto` for one per core. */
  workers: z.union([z.literal('auto'), positiveInt()], { error: 'expected "auto" or a whole number ≥ 1' }).default(1),
  /** Time in-flight requests get to finish on SIGTERM/SIGINT before connections are cut. */
  shutdown_timeout: positiveDuration().default(30_000),
  client: clientSchema.prefault({}),
  admin: adminSchema.prefault({}),
  /** Values for every service that doesn't set its own. */
  defaults: z.looseObject({}).default({}),
  services: z.array(serviceSchema).min(1, 'at least one service is needed'),
});

/**
 * Names that must be unique within a list. Checked on the raw input, beside the
 * schema, so a duplicate is reported even when other fields have errors too.
 */
export function duplicateNames(raw: unknown): { path: (string | number)[]; message: string }[] {
  const services = (raw as { services?: unknown })?.services;
  if (!Array.isArray(services)) return [];
  const seen = new Map<string, number>();
  const found: { path: (string | number)[]; message: string }[] = [];
  services.forEach((service, i) => {
    const name = (service as { name?: unknown })?.name;
    if (typeof name !== 'string') return;
    const first = seen.get(name);
    if (first !== undefined) found.push({ path: ['services', i, 'name'], message: `duplicate service name "${name}" (first at services[${first}])` });
    else seen.set(name, i);
  });
  return found;
}

/** Validates a top-level `defaults` block alone so its errors point at it, not at each service. */
export const defaultsSchema = serviceKnobsSchema.partial();

export type Config = z.output<typeof configSchema>;
export type ClientConfig = Config['client'];
