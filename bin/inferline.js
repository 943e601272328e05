#!/usr/bin/env node
// The `inferline` command: register tsx's loader in this process, then run the TypeScript entry point.
// (`inferline start` forks its children with tsx's loader too; see packages/cli/src/commands/start.ts.)
//
// `inferline start` first fills tsx's transform cache in a short-lived process (transform-cache.js),
// so that none of the processes it starts keeps an esbuild service. `inferline warm-cache` is that
// step alone (the container image runs it at build time).
import { register } from 'tsx/esm/api';
import { warmTransformCache } from './transform-cache.js';

const command = process.argv[2];
if (command === 'warm-cache') process.exit(warmTransformCache({ force: true }));
if (command === 'start') warmTransformCache();
register();
await import('../packages/cli/src/main.ts');
