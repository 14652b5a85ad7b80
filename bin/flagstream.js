#!/usr/bin/env node
// The CLI is compiled to dist/ by `npm ci` (the prepare script).
import { runCli } from '../dist/cli/cli.js';

await runCli(process.argv);
