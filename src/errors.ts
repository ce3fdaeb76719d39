/**
 * Every error Velocity produces itself, with a stable code. Codes appear in the
 * `x-velocity-error` response header, in access logs and in metrics labels, so
 * they are declared here once and never renamed.
 */
export const ERROR_CODES = {
  BAD_REQUEST: { status: 400, message: 'Bad request' },
  AUTH_REQUIRED: { status: 401, message: 'Authentication required' },
  IP_DENIED: { status: 403, message: 'Forbidden' },
  NO_ROUTE: { status: 404, message: 'No service for this host and path' },
  CLIENT_TIMEOUT: { status: 408, message: 'Request timeout' },
  PAYLOAD_TOO_LARGE: { status: 413, message: 'Payload too large' },
  URI_TOO_LONG: { status: 414, message: 'URI too long' },
  RATE_LIMITED: { status: 429, message: 'Too many requests' },
  IN_FLIGHT_LIMIT: { status: 429, message: 'Too many requests in progress' },
  HEADERS_TOO_LARGE: { status: 431, message: 'Request header fields too large' },
  UPSTREAM_CONNECT_FAILED: { status: 502, message: 'Bad gateway' },
  UPSTREAM_RESET: { status: 502, message: 'Bad gateway' },
  UPSTREAM_BAD_RESPONSE: { status: 502, message: 'Bad gateway' },
  UPSTREAM_TLS_FAILED: { status: 502, message: 'Bad gateway' },
  NO_HEALTHY_SERVER: { status: 503, message: 'No server available' },
  QUEUE_FULL: { status: 503, message: 'Service busy' },
  QUEUE_TIMEOUT: { status: 503, message: 'Service busy' },
  SHUTTING_DOWN: { status: 503, message: 'Shutting down' },
  AUTH_UNAVAILABLE: { status: 503, message: 'Authentication service unavailable' },
  UPSTREAM_TIMEOUT: { status: 504, message: 'Gateway timeout' },
  HTTP_VERSION_NOT_SUPPORTED: { status: 505, message: 'HTTP version not supported' },
  INTERNAL: { status: 500, message: 'Internal error' },
  MIDDLEWARE_FAILED: { status: 500, message: 'Internal error' },
} as const satisfies Record<string, { status: number; message: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

/** An error on the data path that ends in a response Velocity writes itself. */
export class VelocityError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  /** Seconds for a Retry-After header, when the condition is expected to pass. */
  readonly retryAfter: number | undefined;

  constructor(code: ErrorCode, detail?: string, options?: { cause?: unknown; retryAfter?: number }) {
    super(detail ?? ERROR_CODES[code].message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'VelocityError';
    this.code = code;
    this.status = ERROR_CODES[code].status;
    this.retryAfter = options?.retryAfter;
  }
}

/** A position in a config file, 1-based. */
export interface SourcePosition {
  file: string;
  line: number;
  column: number;
}

/** One problem in a config file; `format()` gives `FILE:LINE:COL: field.path: message`. */
export interface ConfigProblem extends SourcePosition {
  path: string;
  message: string;
}

export function formatProblem(p: ConfigProblem): string {
  return `${p.file}:${p.line}:${p.column}: ${p.path || '(root)'}: ${p.message}`;
}

/** A config that cannot be used. Carries every problem found, not only the first. */
export class ConfigError extends Error {
  readonly problems: readonly ConfigProblem[];
  /** Fleet mode: the etcd revision of the shared config that was refused. */
  readonly revision: number | undefined;

  constructor(problems: readonly ConfigProblem[], options: { revision?: number | undefined } = {}) {
    super(problems.map(formatProblem).join('\n'));
    this.name = 'ConfigError';
    this.problems = problems;
    this.revision = options.revision;
  }
}
