#!/usr/bin/env node
// The published entry point runs the compiled CLI.
import '../dist/cli.js';
