import { runCli } from '../../src/cli/cli.js';

await runCli(process.argv);
