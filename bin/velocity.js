#!/usr/bin/env node
// The published entry point. It imports nothing statically: static imports are hoisted and
// would load code that needs Node 24 before this check could say so in one sentence.
const found = process.versions.node;
if (Number(found.split('.')[0]) < 24) {
  console.error(`velocity needs Node.js 24 or newer (found ${found}); see README: Install`);
  process.exit(1);
}
// A server's process restarts itself with a small young generation before loading the rest (the CLI
// would do it too, after loading everything once).
if (process.argv[2] === 'start' || process.argv[2] === 'proxy') (await import('../dist/runtime/young-generation.js')).limitYoungGeneration();
await import('../dist/cli.js');
