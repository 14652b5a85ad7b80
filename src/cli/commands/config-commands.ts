import { createConfigService, deletionKey } from '../../admin/config-service.js';
import { type ConfigFile, loadConfigFile, pluginsOf, withLines } from '../../admin/load-config-file.js';
import { createDestinationGuard } from '../../delivery/destination-guard.js';
import { AppError } from '../../domain/errors.js';
import { createStatsStore } from '../../stores/stats-store.js';
import { statsAcross } from '../../runtime/partitioned-stores.js';
import { openSession } from '../connect.js';
import { confirm, printChanges, printJson, printTable } from '../output.js';

/** Validation problems of a file carry its lines. */
export function locate(file: ConfigFile) {
  return (error: unknown): never => {
    throw error instanceof AppError ? withLines(error, file) : error;
  };
}

export interface ApplyCommandOptions {
  file: string;
  prune?: boolean;
  dryRun?: boolean;
  json?: boolean;
  yes?: boolean;
  ifEmpty?: boolean;
}

/** `flagstream apply -f FILE [--prune [--yes]] [--dry-run] [--if-empty] [--json]` */
export async function applyCommand(options: ApplyCommandOptions): Promise<void> {
  const file = await loadConfigFile(options.file);
  const session = await openSession({ secrets: true, plugins: pluginsOf(file.data) });
  try {
    const service = createConfigService({ store: session.configStore, registry: session.registry, destinationGuard: createDestinationGuard(session.env.FLAGSTREAM_DESTINATION_ALLOWLIST) });
    const apply = (dryRun: boolean, allowedDeletions?: readonly string[]) =>
      service
        .apply(file.data, { prune: options.prune === true, dryRun, inputProblems: file.problems, ifEmpty: options.ifEmpty === true, ...(allowedDeletions ? { allowedDeletions } : {}) })
        .catch(locate(file));
    let allowedDeletions: string[] | undefined;
    if (options.prune && !options.dryRun) {
      const planned = await apply(true);
      const deletions = planned.filter((change) => change.action === 'delete');
      if (deletions.length > 0) {
        printChanges(deletions, process.stderr);
        await confirm(`apply --prune deletes the ${deletions.length} item(s) above`, { yes: options.yes });
        allowedDeletions = deletions.map(deletionKey);
      }
    }
    const changes = await apply(options.dryRun === true, allowedDeletions);
    if (options.json) return printJson({ dryRun: options.dryRun === true, changes });
    if (changes.length === 0) {
      process.stdout.write(`${options.file}: no changes${options.ifEmpty ? ' (applied only to an empty configuration)' : ''}\n`);
      return;
    }
    printChanges(changes);
    process.stdout.write(options.dryRun ? `${changes.length} change(s) would be applied (dry run)\n` : `${changes.length} change(s) applied\n`);
  } finally {
    await session.close();
  }
}

/** `flagstream export [--json]`: the current configuration, secrets redacted (so the key is not needed). */
export async function exportCommand(options: { json?: boolean }): Promise<void> {
  const session = await openSession({ secrets: false, plugins: [] });
  try {
    const service = createConfigService({ store: session.configStore, registry: session.registry, destinationGuard: createDestinationGuard(session.env.FLAGSTREAM_DESTINATION_ALLOWLIST) });
    if (options.json) printJson(await service.exportConfiguration());
    else process.stdout.write(await service.exportYaml());
  } finally {
    await session.close();
  }
}

/** `flagstream stats ENV [--json]`: traffic per flag and treatment, unique keys, drops. */
export async function statsCommand(environmentId: string, options: { json?: boolean }): Promise<void> {
  const session = await openSession({ secrets: false, plugins: false });
  try {
    await createConfigService({ store: session.configStore, registry: session.registry, destinationGuard: createDestinationGuard(session.env.FLAGSTREAM_DESTINATION_ALLOWLIST) }).assertEnvironment(environmentId);
    const flags = await statsAcross(session.partitioned((keys) => ({ stats: createStatsStore({ redis: session.redis, keys }) }))).flagStats(environmentId);
    if (options.json) return printJson({ environmentId, flags });
    printTable(
      flags.map((f) => ({
        flag: f.flag,
        impressions: f.impressions,
        treatments: Object.entries(f.treatments).map(([t, n]) => `${t}=${n}`).join(' '),
        dropped: Object.entries(f.dropped).map(([r, n]) => `${r}=${n}`).join(' '),
        counted: f.counted,
        uniqueKeys: f.uniqueKeys,
      })),
      ['flag', 'impressions', 'treatments', 'dropped', 'counted', 'uniqueKeys'],
    );
  } finally {
    await session.close();
  }
}
