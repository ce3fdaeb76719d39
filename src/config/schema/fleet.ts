/**
 * `config_source`: where the shared part of the config lives when several instances act as
 * one fleet. The local file keeps what is per instance (listen addresses, admin, workers);
 * everything else comes from one YAML document in etcd that every instance watches.
 */
import { z } from 'zod';
import { positiveDuration, secret } from '../../config-fields.ts';

const etcdEndpoint = () =>
  z
    .string()
    .regex(/^(?:https?:\/\/)?[A-Za-z0-9.\-[\]:]+:\d+$/, 'expected HOST:PORT or http(s)://HOST:PORT, e.g. http://10.0.0.5:2379')
    .transform((e) => (/^https?:\/\//.test(e) ? e : `http://${e}`));

export const etcdSourceSchema = z.strictObject({
  /** Members of the etcd cluster; the client fails over between them. */
  endpoints: z.array(etcdEndpoint()).min(1, 'give at least one etcd endpoint'),
  /** Key prefix of this fleet: the config sits at PREFIX/config, instances under PREFIX/instances/. */
  prefix: z
    .string()
    .regex(/^\/[\w./-]*[^/]$/, 'a key prefix such as /velocity/prod (starts with /, no trailing /)')
    .default('/velocity'),
  /** This instance's name in the fleet; default HOST:ADMIN_PORT (or the first listener's port). */
  id: z
    .string()
    .regex(/^[\w.:-]+$/, 'letters, digits, _ . : - only')
    .optional(),
  /** TLS to etcd (https:// endpoints): PEM files for the CA and, for client certificates, cert and key. */
  tls: z
    .strictObject({ ca: z.string().min(1), cert: z.string().min(1).optional(), key: z.string().min(1).optional() })
    .refine((t) => (t.cert === undefined) === (t.key === undefined), 'cert and key go together')
    .optional(),
  /** etcd user and password (use ${ENV_VAR} for the password). */
  auth: z.strictObject({ username: z.string().min(1), password: secret(z.string()) }).optional(),
  /** Membership lease: an instance that stops renewing disappears from the fleet after this. */
  lease_ttl: positiveDuration()
    .refine((ms) => ms >= 2_000, 'at least 2s (etcd leases count in seconds)')
    .default(10_000),
  /** How often an instance refreshes its member record (request rate, errors, health). */
  report_interval: positiveDuration().default(5_000),
});

export const configSourceSchema = z.strictObject({
  /** Shared config in etcd (see Running a fleet). */
  etcd: etcdSourceSchema,
});

export type EtcdSourceConfig = z.output<typeof etcdSourceSchema>;
