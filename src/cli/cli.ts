import { Command, InvalidArgumentError, Option } from 'commander';
import { applyCommand, exportCommand, statsCommand } from './commands/config-commands.js';
import { type Role, serve } from './commands/serve.js';
import { reportCliError } from './output.js';

function port(value: string): number {
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed < 0 || parsed > 65535) throw new InvalidArgumentError('expected a port number');
  return parsed;
}

export function buildCli(): Command {
  const program = new Command('flagstream')
    .description('Fan-out platform for feature-flag impressions')
    .version('0.1.0')
    .showHelpAfterError()
    .exitOverride();

  program
    .command('serve')
    .description('run the API and the workers (or one role)')
    .addOption(new Option('--role <role>', 'what this process runs').choices(['all', 'api', 'worker']).default('all'))
    .option('-c, --config <file>', 'YAML configuration applied at start (default: $FLAGSTREAM_CONFIG)')
    .option('-p, --port <port>', 'HTTP port (default: $PORT or 8080)', port)
    .action((options: { role: Role; config?: string; port?: number }) => serve(options));

  program
    .command('apply')
    .description('validate a configuration file, then upsert it (idempotent)')
    .requiredOption('-f, --file <file>', 'YAML configuration')
    .option('--prune', 'remove environments, flags and destinations the file no longer names')
    .option('--dry-run', 'print the changes without applying them')
    .option('--json', 'machine-readable output')
    .action((options: { file: string; prune?: boolean; dryRun?: boolean; json?: boolean }) => applyCommand(options));

  program
    .command('export')
    .description('print the current configuration as YAML, secrets redacted')
    .option('--json', 'print JSON instead of YAML')
    .action((options: { json?: boolean }) => exportCommand(options));

  program
    .command('stats')
    .description('traffic per flag of an environment: treatments, unique keys, drops')
    .argument('<environment>', 'environment id')
    .option('--json', 'machine-readable output')
    .action((environment: string, options: { json?: boolean }) => statsCommand(environment, options));

  return program;
}

export async function runCli(argv: readonly string[]): Promise<void> {
  const program = buildCli();
  try {
    await program.parseAsync([...argv]);
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (typeof code === 'string' && code.startsWith('commander.')) {
      // commander printed the message already; help and version are not errors.
      process.exitCode = code === 'commander.helpDisplayed' || code === 'commander.version' || code === 'commander.help' ? 0 : 2;
      return;
    }
    process.exitCode = reportCliError(error);
  }
}
