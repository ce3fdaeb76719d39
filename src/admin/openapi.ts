/** The OpenAPI 3.1 document, generated from the registered routes so it cannot drift from them. */
import { z } from 'zod';
import type { AdminRoute } from './router.ts';

const errorSchema = { type: 'object', properties: { error: { type: 'string' }, field: { type: 'string' } }, required: ['error'] };

export function openApiDocument(routes: readonly AdminRoute[], version: string): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of routes) {
    const path = route.path.replace(/:(\w+)/g, '{$1}');
    const params = [...route.path.matchAll(/:(\w+)/g)].map((m) => ({ name: m[1], in: 'path', required: true, schema: { type: 'string' } }));
    const responses: Record<string, unknown> = {
      [String(route.status ?? 200)]: { description: 'Success', content: { 'application/json': { schema: { type: 'object' } } } },
      '400': { description: 'Bad input; `field` names the field', content: { 'application/json': { schema: errorSchema } } },
      '401': { description: 'Missing or wrong bearer token', content: { 'application/json': { schema: errorSchema } } },
      '404': { description: 'No such service or server', content: { 'application/json': { schema: errorSchema } } },
    };
    if (route.mutates) responses['409'] = { description: 'Conflicts with the current state', content: { 'application/json': { schema: errorSchema } } };
    const operation: Record<string, unknown> = {
      operationId: `${route.method.toLowerCase()}${path.replace(/[{}]/g, '').replace(/[^a-zA-Z0-9]+(.)?/g, (_m, c: string | undefined) => (c ? c.toUpperCase() : ''))}`,
      summary: route.summary,
      ...(params.length ? { parameters: params } : {}),
      ...(route.mutates ? { security: [{ bearer: [] }] } : {}),
      responses,
    };
    if (route.body) {
      operation.requestBody = { required: true, content: { 'application/json': { schema: z.toJSONSchema(route.body, { io: 'input', unrepresentable: 'any' }) } } };
    }
    (paths[path] ??= {})[route.method.toLowerCase()] = operation;
  }
  return {
    openapi: '3.1.0',
    info: { title: 'Velocity admin API', version, description: 'Live state and runtime changes of a running Velocity. Changes need `Authorization: Bearer <admin.token>`.' },
    components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    paths,
  };
}

export function openApiRoute(routes: () => readonly AdminRoute[], version: string): AdminRoute {
  return {
    method: 'GET',
    path: '/api/v1/openapi.json',
    mutates: false,
    summary: 'This API described as OpenAPI 3.1',
    handle: () => openApiDocument(routes(), version),
  };
}
