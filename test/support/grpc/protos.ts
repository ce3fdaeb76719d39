/** The test protos, loaded with @grpc/proto-loader as an application would. */
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';

const here = (file: string) => fileURLToPath(new URL(file, import.meta.url));
const options = { keepCase: true, longs: Number, enums: String, defaults: true };

// biome-ignore lint/suspicious/noExplicitAny: generated service constructors are untyped
type Loaded = any;

export function loadEcho(): Loaded {
  return (grpc.loadPackageDefinition(loadSync(here('./echo.proto'), options)) as Loaded).velocity.test;
}

export function loadHealth(): Loaded {
  return (grpc.loadPackageDefinition(loadSync(here('./health.proto'), options)) as Loaded).grpc.health.v1;
}
