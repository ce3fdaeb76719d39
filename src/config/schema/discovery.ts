/** Where a service's servers come from besides the static list: local processes, containers; and autoscaling. */
import { z } from 'zod';
import { nonNegativeInt, positiveDuration, positiveInt } from '../../config-fields.ts';

export const processSchema = z.strictObject({
  /** Program and arguments; `{port}` in an argument is replaced by the instance's port. */
  command: z.array(z.string().min(1)).min(1, 'expected the program and its arguments, e.g. ["node", "app.js"]'),
  /** Instances to run (the autoscaler changes this between its min and max). */
  instances: positiveInt().default(1),
  cwd: z.string().optional(),
  env: z.record(z.string(), z.string()).default({}),
  /** Host the processes listen on; PORT is chosen free for each instance. */
  host: z.string().default('127.0.0.1'),
  /** Time a new instance has to accept connections before it is restarted. */
  ready_timeout: positiveDuration().default(10_000),
  /** Grace between SIGTERM and SIGKILL when stopping an instance. */
  stop_timeout: positiveDuration().default(5_000),
  /** Restart backoff after a crash: base doubles per quick crash, up to max. */
  restart_backoff: z.strictObject({ base: positiveDuration().default(500), max: positiveDuration().default(30_000) }).prefault({}),
});

export type ProcessConfig = z.output<typeof processSchema>;

const targetSchema = z
  .strictObject({
    in_flight_per_server: z.number().positive().optional(),
    rps_per_server: z.number().positive().optional(),
    p95_latency: positiveDuration().optional(),
  })
  .refine((t) => Object.values(t).filter((v) => v !== undefined).length === 1, 'set exactly one of in_flight_per_server, rps_per_server, p95_latency');

export const autoscaleSchema = z
  .strictObject({
    min: positiveInt().default(1),
    max: positiveInt(),
    target: targetSchema,
    /** How often the metric is read and a decision made. */
    interval: positiveDuration().default(2_000),
    scale_up_cooldown: positiveDuration().default(10_000),
    scale_down_cooldown: positiveDuration().default(60_000),
    /** Scale down only to the highest count wanted during this window (no flapping). */
    stabilization_window: positiveDuration().default(30_000),
    /** Docker services: the container template new instances are made from. */
    container: z
      .strictObject({
        image: z.string().min(1),
        port: positiveInt(),
        env: z.record(z.string(), z.string()).default({}),
        labels: z.record(z.string(), z.string()).default({}),
        network: z.string().optional(),
        cmd: z.array(z.string()).optional(),
      })
      .optional(),
  })
  .refine((a) => a.min <= a.max, { message: 'min must not be greater than max', path: ['min'] });

export type AutoscaleConfig = z.output<typeof autoscaleSchema>;

/** `discovery:` at the top level: how to reach the container engine. */
export const dockerSchema = z.strictObject({
  /** unix:///var/run/docker.sock, tcp://host:2375; defaults to DOCKER_HOST, then the standard socket. */
  host: z.string().optional(),
  /** Label prefix containers opt in with. */
  label_prefix: z
    .string()
    .regex(/^[a-z0-9.-]+$/, 'lower-case letters, digits, . and - only')
    .default('velocity'),
  /** Default network whose address is used when a container sets no velocity.network label. */
  network: z.string().optional(),
  reconnect_backoff: z.strictObject({ base: positiveDuration().default(500), max: positiveDuration().default(15_000) }).prefault({}),
  /** Request timeout for engine API calls. */
  timeout: positiveDuration().default(5_000),
  /** Bound on containers followed at once. */
  max_containers: nonNegativeInt().default(1_000),
});

export type DockerConfig = z.output<typeof dockerSchema>;
