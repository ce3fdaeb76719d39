/**
 * A small typed client for the Docker Engine API (1.41, which Docker 20.10+ and
 * Podman's Docker-compatible service both speak), over undici. undici is the
 * maintained HTTP client Velocity already uses; dockerode would bring ssh2 with a
 * native optional addon and gRPC, which Velocity does not need.
 */
import type { Buffer } from 'node:buffer';
import type { Dispatcher } from 'undici';
import { undiciClient } from '../optional-module.ts';

export interface ContainerSummary {
  Id: string;
  Names: string[];
  Image: string;
  State: string;
  Labels: Record<string, string>;
  Ports: { IP?: string; PrivatePort: number; PublicPort?: number; Type: string }[];
  NetworkSettings: { Networks: Record<string, { IPAddress?: string }> };
}

export class DockerApiError extends Error {
  readonly status: number | undefined;
  readonly code: string | undefined;

  constructor(message: string, status?: number, code?: string) {
    super(message);
    this.name = 'DockerApiError';
    this.status = status;
    this.code = code;
  }
}

const API = '/v1.41';

export class DockerClient {
  readonly endpoint: string;
  private readonly origin: string;
  private readonly dispatcher: Dispatcher;
  private readonly timeoutMs: number;
  /** The HTTP client, loaded when a config first has Docker discovery. */
  private readonly http = undiciClient();

  /** `host`: unix:///path/docker.sock or tcp://host:port; default DOCKER_HOST, then /var/run/docker.sock. */
  constructor(host: string | undefined, timeoutMs: number) {
    this.endpoint = host ?? process.env.DOCKER_HOST ?? 'unix:///var/run/docker.sock';
    this.timeoutMs = timeoutMs;
    if (this.endpoint.startsWith('unix://')) {
      this.origin = 'http://docker';
      this.dispatcher = new this.http.Agent({ connect: { socketPath: this.endpoint.slice('unix://'.length) }, keepAliveTimeout: 1_000 });
    } else if (this.endpoint.startsWith('tcp://') || this.endpoint.startsWith('http://')) {
      this.origin = `http://${this.endpoint.replace(/^(tcp|http):\/\//, '')}`;
      this.dispatcher = new this.http.Agent({ keepAliveTimeout: 1_000 });
    } else throw new DockerApiError(`unsupported Docker host "${this.endpoint}"; expected unix:///path or tcp://host:port`);
  }

  private async call<T>(method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown): Promise<T> {
    let res: Dispatcher.ResponseData;
    try {
      res = await this.http.request(`${this.origin}${API}${path}`, {
        method,
        dispatcher: this.dispatcher,
        headers: body === undefined ? {} : { 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
        headersTimeout: this.timeoutMs,
        bodyTimeout: this.timeoutMs,
      });
    } catch (err) {
      const code = (err as { code?: string }).code;
      const why = code === 'ENOENT' ? 'socket not found' : code === 'EACCES' ? 'permission denied' : code === 'ECONNREFUSED' ? 'connection refused' : (err as Error).message;
      throw new DockerApiError(`cannot reach the container engine at ${this.endpoint}: ${why}`, undefined, code);
    }
    const text = await res.body.text();
    if (res.statusCode >= 400) {
      let message = text;
      try {
        message = (JSON.parse(text) as { message?: string }).message ?? text;
      } catch {}
      throw new DockerApiError(`${method} ${path}: ${res.statusCode} ${message.trim()}`, res.statusCode);
    }
    return (text ? JSON.parse(text) : undefined) as T;
  }

  ping(): Promise<unknown> {
    return this.http.request(`${this.origin}/_ping`, { dispatcher: this.dispatcher, headersTimeout: this.timeoutMs }).then((r) => r.body.text());
  }

  listContainers(labelKey: string): Promise<ContainerSummary[]> {
    return this.call('GET', `/containers/json?filters=${encodeURIComponent(JSON.stringify({ label: [labelKey], status: ['running'] }))}`);
  }

  async createContainer(
    spec: { Image: string; Env: string[]; Labels: Record<string, string>; Cmd?: string[]; HostConfig?: Record<string, unknown> },
    name: string,
  ): Promise<string> {
    const created = await this.call<{ Id: string }>('POST', `/containers/create?name=${encodeURIComponent(name)}`, spec);
    return created.Id;
  }

  startContainer(id: string): Promise<unknown> {
    return this.call('POST', `/containers/${id}/start`);
  }

  stopContainer(id: string, seconds: number): Promise<unknown> {
    return this.call('POST', `/containers/${id}/stop?t=${seconds}`);
  }

  removeContainer(id: string): Promise<unknown> {
    return this.call('DELETE', `/containers/${id}?force=true`);
  }

  /**
   * Streams container events (JSON lines) until the stream ends or `signal` aborts.
   * Event names differ between Docker and Podman, so callers should treat any event
   * as "something changed" rather than switch on names.
   */
  async events(onEvent: (event: { Action?: string; status?: string; id?: string }) => void, signal: AbortSignal): Promise<void> {
    // Container events only; not filtered by label, which Podman's compatible API does not apply to events.
    const filters = encodeURIComponent(JSON.stringify({ type: ['container'] }));
    const res = await this.http.request(`${this.origin}${API}/events?filters=${filters}`, { dispatcher: this.dispatcher, signal, headersTimeout: this.timeoutMs, bodyTimeout: 0 });
    if (res.statusCode >= 400) throw new DockerApiError(`events: ${res.statusCode} ${await res.body.text()}`, res.statusCode);
    let buffered = '';
    for await (const chunk of res.body) {
      buffered += (chunk as Buffer).toString();
      let nl = buffered.indexOf('\n');
      while (nl >= 0) {
        const line = buffered.slice(0, nl).trim();
        buffered = buffered.slice(nl + 1);
        if (line) {
          try {
            onEvent(JSON.parse(line));
          } catch {}
        }
        nl = buffered.indexOf('\n');
      }
    }
  }

  close(): Promise<void> {
    return this.dispatcher.close();
  }
}
