#!/usr/bin/env node
// The `inferline` command: register tsx's loader in this process, then run the TypeScript entry point.
// (`inferline start` forks its children with tsx's loader too; see packages/cli/src/commands/start.ts.)
import { register } from 'tsx/esm/api';

register();
await import('../packages/cli/src/main.ts');
