/**
 * A request of Velocity's own to one server of a service (mirror copies, error
 * pages from a service): the server is taken through the service's policy and
 * counted while the request runs, like any other, and always given back (a lease).
 */
import { Buffer } from 'node:buffer';
import type { Dispatcher } from 'undici';
import type { PickRequest } from '../balancer/policy.ts';
import { undiciClient } from '../optional-module.ts';
import type { MiddlewareContext } from './middleware.ts';

export interface Subrequest {
  method: string;
  path: string;
  headers: Record<string, string> | string[];
  body: Buffer | null;
  timeout: number;
  /** The largest answer body read; more is dropped. 0 discards it. */
  maxBody: number;
}

export interface SubrequestAnswer {
  status: number;
  headers: Dispatcher.ResponseData['headers'];
  body: Buffer;
}

/** The answer, or an Error saying why there is none (no server, refused, timed out). */
export async function sendToService(context: MiddlewareContext, serviceName: string, pick: PickRequest, sub: Subrequest): Promise<SubrequestAnswer | Error> {
  const service = context.service(serviceName);
  if (!service) return new Error(`no service named "${serviceName}"`);
  const lease = service.acquire(pick, undefined);
  if (!lease) return new Error(`no available server in service "${serviceName}"`);
  const signal = AbortSignal.timeout(sub.timeout);
  try {
    const answer = await undiciClient().request(`${lease.server.url}${sub.path}`, {
      method: sub.method as Dispatcher.HttpMethod,
      headers: sub.headers,
      body: sub.body,
      dispatcher: context.http,
      signal,
      headersTimeout: sub.timeout,
      bodyTimeout: sub.timeout,
    });
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of answer.body as AsyncIterable<Buffer>) {
      if (size >= sub.maxBody) continue;
      chunks.push(chunk.subarray(0, sub.maxBody - size));
      size += chunk.length;
    }
    return { status: answer.statusCode, headers: answer.headers, body: Buffer.concat(chunks) };
  } catch (err) {
    return signal.aborted ? new Error(`no answer within ${sub.timeout} ms`) : (err as Error);
  } finally {
    // Says nothing about the server's health: a shadow's or a page service's failures are not counted.
    lease.end();
  }
}
