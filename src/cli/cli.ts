import { Command, InvalidArgumentError, Option } from 'commander';
import { type ApplyCommandOptions, applyCommand, exportCommand, statsCommand } from './commands/config-commands.js';
import { connectorsCommand, destinationsTest } from './commands/connector-commands.js';
import { dlqList, dlqPurge, dlqReplay, dlqShow } from './commands/dead-letter-commands.js';
import { destinationsPause, destinationsResume, destinationsStatus } from './commands/destination-commands.js';
import { impressionsExport } from './commands/impressions-commands.js';
import { ledgerCommand } from './commands/ledger-command.js';
import { monitorCommand } from './commands/monitor-command.js';
import { receiveCommand } from './commands/receive.js';
import { type Role, serve } from './commands/serve.js';
import { tailCommand } from './commands/tail-command.js';
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
    .option('--prune', 'remove environments, flags and destinations the file no longer names (asks first; --yes without a terminal)')
    .option('--dry-run', 'print the changes, field by field, without applying them')
    .option('-y, --yes', 'confirm what --prune deletes without asking')
    .option('--if-empty', 'apply only when nothing is configured yet (seeding); otherwise check the file and change nothing')
    .option('--json', 'machine-readable output')
    .action((options: ApplyCommandOptions) => applyCommand(options));

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

  program
    .command('ledger')
    .description('where every accepted impression went: received = dropped + routed, routed = delivered + skipped + dead-lettered + pending')
    .option('--environment <id>', 'only this environment')
    .option('--json', 'machine-readable output')
    .action((options: { json?: boolean; environment?: string }) => ledgerCommand(options));

  program
    .command('monitor')
    .description('impressions per treatment over time, unique keys and MTKs of an environment (tracked impressions only)')
    .argument('<environment>', 'environment id')
    .argument('[flag]', 'only this flag')
    .option('--since <time>', 'ISO date, epoch ms, or a duration back from now (default 1h)')
    .option('--until <time>', 'same forms as --since (default now)')
    .addOption(new Option('--step <step>', 'bucket size (default: minute for a day or less within the minute retention, else hour)').choices(['minute', 'hour']))
    .option('--json', 'machine-readable output')
    .action((environment: string, flag: string | undefined, options: { since?: string; until?: string; step?: string; json?: boolean }) => monitorCommand(environment, flag, options));

  program
    .command('tail')
    .description('impressions as they are routed: tracked or dropped (and why), and their destinations (through the admin API: FLAGSTREAM_ADMIN_URL, ADMIN_TOKEN)')
    .argument('<environment>', 'environment id')
    .option('--flag <flag>', 'only this flag')
    .option('--treatment <treatment>', 'only this treatment')
    .option('--key <key>', 'only this key')
    .option('--json', 'one JSON object per line')
    .action((environment: string, options: { flag?: string; treatment?: string; key?: string; json?: boolean }) => tailCommand(environment, options));

  const dlq = program.command('dlq').description('inspect, replay and purge dead letters');
  let purge: Command | undefined;
  dlq
    .command('list')
    .description('list dead letters, newest first')
    .option('--destination <id>', 'only this destination')
    .option('--since <time>', 'ISO date, epoch ms, or a duration back from now (2h, 7d)')
    .option('--until <time>', 'same forms as --since')
    .option('--status <status>', 'pending or replayed')
    .option('--limit <n>', 'at most this many', (v) => Number(v))
    .option('--json', 'machine-readable output')
    .action((options) => dlqList(options));
  dlq
    .command('show')
    .description('one dead letter with its impressions and last error')
    .argument('<id>')
    .option('--json', 'machine-readable output')
    .action((id: string, options: { json?: boolean }) => dlqShow(id, options));
  for (const [name, description, run] of [
    ['replay', 're-queue dead-lettered impressions (same ids) for delivery; safe to run twice', dlqReplay],
    ['purge', 'delete dead letters', dlqPurge],
  ] as const) {
    dlq
      .command(name)
      .description(description)
      .argument('[ids...]', 'dead letter ids')
      .option('--destination <id>', 'every dead letter of this destination')
      .option('--since <time>', 'with --destination or --all: only those created since')
      .option('--until <time>', 'with --destination or --all: only those created before')
      .option('--status <status>', 'pending or replayed (replay: pending only)')
      .option('--all', 'every dead letter')
      .option('--dry-run', 'say what would happen, do nothing')
      .option('--json', 'machine-readable output')
      .action((ids: string[], options) => run(ids, options));
    if (name === 'purge') purge = dlq.commands.at(-1);
  }
  purge?.option('-y, --yes', 'confirm the deletion without asking (required without a terminal)');

  const collect = (value: string, previous: string[] = []) => [...previous, value];
  program
    .command('impressions')
    .description('query the impressions archive of an s3 destination: export them, or backfill a destination')
    .command('export')
    .description('impressions of the archive (environment of --from) by flag, treatment, key and time, as JSON lines or CSV; with --to, sent to a destination instead')
    .requiredOption('--from <destination>', 'the s3 destination whose archive is read')
    .option('--flag <name>', 'only this flag (repeat for several: any of them)', collect)
    .option('--treatment <name>', 'only this treatment (repeatable)', collect)
    .option('--key <key>', 'only this key (repeatable)', collect)
    .requiredOption('--since <time>', 'impression time from: ISO date, epoch ms, or a duration back from now (2h, 7d)')
    .option('--until <time>', 'impression time before (same forms; default now)')
    .addOption(new Option('--format <format>', 'output format (default jsonl)').choices(['jsonl', 'csv']))
    .option('-o, --output <file>', 'write to this file instead of stdout')
    .option('--to <destination>', 'backfill: send the impressions (original ids) through the delivery core to this destination of the same environment')
    .option('--dry-run', 'print counts (objects, rows matched, per flag; with --to, what would be sent) and write nothing')
    .option('--json', 'counts as JSON (with --to or --dry-run)')
    .action((options) => impressionsExport(options));

  const destinations = program.command('destinations').description('destination health and checks: status, pause, resume, test');
  destinations
    .command('status')
    .alias('list')
    .description('state of every destination (or one): healthy, open (circuit breaker) or paused, and why')
    .argument('[id]')
    .option('--json', 'machine-readable output')
    .action((id: string | undefined, options: { json?: boolean }) => destinationsStatus(id, options));
  destinations
    .command('pause')
    .description('pause a destination: its impressions wait, nothing is dropped')
    .argument('<id>')
    .option('--reason <text>', 'shown in status')
    .option('--json', 'machine-readable output')
    .action((id: string, options: { reason?: string; json?: boolean }) => destinationsPause(id, options));
  destinations
    .command('resume')
    .description('resume a paused (or circuit-open) destination and release its waiting work')
    .argument('<id>')
    .option('--json', 'machine-readable output')
    .action((id: string, options: { json?: boolean }) => destinationsResume(id, options));

  destinations
    .command('test')
    .description('send one clearly marked test impression to a destination and print its answer (exit 1 unless delivered)')
    .argument('<id>')
    .option('--json', 'machine-readable output')
    .action((id: string, options: { json?: boolean }) => destinationsTest(id, options));

  program
    .command('connectors')
    .description('every connector with its settings (JSON Schema), limits and regions')
    .option('--json', 'machine-readable output')
    .action((options: { json?: boolean }) => connectorsCommand(options));

  program
    .command('receive')
    .description("a local receiver for flagstream's webhooks: verifies signatures, rejects stale and replayed deliveries, prints each")
    .requiredOption('--secret <whsec>', 'the destination secret, whsec_<base64>')
    .option('-p, --port <port>', 'port to listen on', port, 9000)
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--json', 'print one JSON line per delivery')
    .action((options: { port: number; host: string; secret: string; json?: boolean }) => receiveCommand(options));

  return program;
}

/** Commands that keep running until stopped; every other one ends when its work is done. */
const longRunning = new Set(['serve', 'receive']);

export async function runCli(argv: readonly string[]): Promise<void> {
  const debug = process.env.FLAGSTREAM_LOG_LEVEL === 'debug' || process.env.FLAGSTREAM_LOG_LEVEL === 'trace';
  const fail = (error: unknown) => {
    process.exitCode = reportCliError(error, { debug });
    // Whatever a failure left open (a half-built context, a socket) must not keep the process alive.
    setTimeout(() => process.exit(), 2000).unref();
  };
  process.on('unhandledRejection', (error) => {
    fail(error);
    process.exit();
  });
  const program = buildCli();
  try {
    await program.parseAsync([...argv]);
    const command = argv[2];
    if (command !== undefined && !longRunning.has(command)) setTimeout(() => process.exit(), 2000).unref();
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (typeof code === 'string' && code.startsWith('commander.')) {
      // commander printed the message already; help and version are not errors.
      process.exitCode = code === 'commander.helpDisplayed' || code === 'commander.version' || code === 'commander.help' ? 0 : 2;
      return;
    }
    fail(error);
  }
}
