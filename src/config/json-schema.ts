/**
 * The config file's JSON Schema, derived from the zod schema that validates it (one source of
 * truth). It describes the file as written — before defaults, units and `${ENV}` are applied —
 * so editors can complete and check it; `velocity validate` remains the full check (files,
 * policy modules, cross-field rules).
 */
import { z } from 'zod';
import { middlewareEntryJsonSchema, middlewareEntrySchema } from '../middleware/registry.ts';
import { configSchema, defaultsSchema } from './schema/root.ts';

type JsonSchema = Record<string, unknown>;

const toJson = (schema: z.ZodType): JsonSchema => {
  const { $schema: _drop, ...rest } = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any', target: 'draft-2020-12', override: dropZodFormats }) as JsonSchema;
  return rest;
};

/** zod writes `format: starts_with` beside the pattern that says the same; it is no JSON Schema format. */
function dropZodFormats({ jsonSchema, zodSchema }: { jsonSchema: JsonSchema; zodSchema: unknown }): void {
  if (jsonSchema.format === 'starts_with') delete jsonSchema.format;
  // A middleware entry is checked against its registry entry's options (see middleware/registry.ts).
  if (zodSchema === middlewareEntrySchema) {
    for (const key of Object.keys(jsonSchema)) delete jsonSchema[key];
    Object.assign(jsonSchema, middlewareEntryJsonSchema());
  }
}

export function configJsonSchema(version: string): JsonSchema {
  const root = toJson(configSchema);
  const properties = root.properties as Record<string, JsonSchema>;
  // `defaults` holds any service knob, each optional; the zod side checks it on its own (see load.ts).
  properties.defaults = { ...toJson(defaultsSchema), description: 'Values for every service that does not set its own (timeouts, retries, health, …).' };
  return {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    title: `Velocity ${version} configuration`,
    description: 'One YAML file: listeners, services and their servers. Check a file with `velocity validate --config FILE`; every field is in docs/configuration.md.',
    ...root,
  };
}
