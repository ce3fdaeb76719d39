#!/usr/bin/env node
// The published entry point. It imports nothing statically: static imports are hoisted and
// would load code that needs Node 24 before this check could say so in one sentence.
const found = process.versions.node;
if (Number(found.split('.')[0]) < 24) {
  console.error(`velocity needs Node.js 24 or newer (found ${found}); see README: Install`);
  process.exit(1);
}
await import('../dist/cli.js');
