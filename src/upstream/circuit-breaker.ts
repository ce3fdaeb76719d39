/** Circuit breaker per server. State lives in the server's shared slot. */
import { S, SF } from '../runtime/shared-state.ts';
import { CIRCUIT_CLOSED, type UpstreamServer } from './server.ts';

/** Whether the circuit lets a request through now (closed, or open long enough to try). */
export function circuitAdmits(server: UpstreamServer, now: number): boolean {
  const state = server.int(S.CB_STATE);
  if (state === CIRCUIT_CLOSED) return true;
  return now >= server.float(SF.CB_OPEN_UNTIL);
}
