import { createConfigService } from '../../admin/config-service.js';
import { createDestinationGuard } from '../../delivery/destination-guard.js';
import { loadConfigFile, pluginsOf } from '../../admin/load-config-file.js';
import { openSession } from '../connect.js';
import { printJson, printTable } from '../output.js';

/** `flagstream apply -f FILE [--prune] [--dry-run] [--json]` */
export async function applyCommand(options: { file: string; prune?: boolean; dryRun?: boolean; json?: boolean }): Promise<void> {
  const raw = await loadConfigFile(options.file);
  const session = await openSession({ serving: false, logLevel: 'warn', plugins: pluginsOf(raw) });
  try {
    const service = createConfigService({ store: session.ctx.configStore, registry: session.ctx.registry, destinationGuard: createDestinationGuard(session.env.FLAGSTREAM_DESTINATION_ALLOWLIST) });
    const changes = await service.apply(raw, { prune: options.prune === true, dryRun: options.dryRun === true });
    if (options.json) return printJson({ dryRun: options.dryRun === true, changes });
    if (changes.length === 0) {
      process.stdout.write(`${options.file}: no changes\n`);
      return;
    }
    const sign = { create: '+', update: '~', delete: '-' } as const;
    for (const change of changes) {
      const name = change.kind === 'plugin' ? change.id : change.kind === 'environment' ? change.environmentId : `${change.environmentId}/${change.id}`;
      process.stdout.write(`${sign[change.action]} ${change.kind} ${name}\n`);
    }
    process.stdout.write(options.dryRun ? `${changes.length} change(s) would be applied (dry run)\n` : `${changes.length} change(s) applied\n`);
  } finally {
    await session.close();
  }
}

/** `flagstream export [--json]`: the current configuration, secrets redacted. */
export async function exportCommand(options: { json?: boolean }): Promise<void> {
  const session = await openSession({ serving: false, logLevel: 'warn' });
  try {
    const service = createConfigService({ store: session.ctx.configStore, registry: session.ctx.registry, destinationGuard: createDestinationGuard(session.env.FLAGSTREAM_DESTINATION_ALLOWLIST) });
    if (options.json) printJson(await service.exportConfiguration());
    else process.stdout.write(await service.exportYaml());
  } finally {
    await session.close();
  }
}

/** `flagstream stats ENV [--json]`: traffic per flag and treatment, unique keys, drops. */
export async function statsCommand(environmentId: string, options: { json?: boolean }): Promise<void> {
  const session = await openSession({ serving: false, logLevel: 'warn' });
  try {
    const flags = await session.ctx.stats.flagStats(environmentId);
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
