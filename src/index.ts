/** Velocity's public API: start an instance from a config, validate configs, write policies. */

export type { BalancedServer, PickRequest, Policy, PolicyContext, PolicyFactory, SharedPolicyState } from './balancer/policy.ts';
export { loadConfigFile, parseConfig } from './config/load.ts';
export type { Config } from './config/schema/root.ts';
export type { ServerConfig, ServiceConfig } from './config/schema/service.ts';
export { ConfigError, type ConfigProblem, ERROR_CODES, type ErrorCode, formatProblem, VelocityError } from './errors.ts';
export type { BlockEntry, Blocklist, BlockSource } from './guard/blocklist.ts';
export type { Middleware, MiddlewareContext, MiddlewareFactory, MiddlewareRequest, Reply, RequestView, ResponseHead } from './middleware/middleware.ts';
export type { RequestObserver, RequestRecord } from './observe/events.ts';
export { createLogger, silentLogger } from './observe/logger.ts';
export { type ReloadResult, type StartOptions, start, type Velocity } from './runtime/instance.ts';
