import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import {
  type BackfillReport,
  createImpressionsExportService,
  type ExportFormat,
  type ExportReport,
  type ImpressionsExportService,
  type ScanProgress,
} from '../../admin/impressions-export-service.js';
import { createDestinationGuard } from '../../delivery/destination-guard.js';
import { AppError } from '../../domain/errors.js';
import { durationMs } from '../../runtime/app-context.js';
import { createLedgerStore } from '../../stores/ledger-store.js';
import { openSession } from '../connect.js';
import { printJson } from '../output.js';
import { createProgressBar } from '../progress-bar.js';

export interface ImpressionsExportOptions {
  from: string;
  flag?: string[];
  treatment?: string[];
  key?: string[];
  since: string;
  until?: string;
  format?: ExportFormat;
  output?: string;
  to?: string;
  dryRun?: boolean;
  json?: boolean;
}

const minute = (ms: number) => new Date(ms).toISOString().slice(0, 16).replace('T', ' ');
const number = (n: number) => n.toLocaleString('en-US');

function progressDetail(progress: ScanProgress, extra = ''): string {
  const { counts } = progress;
  return `${minute(progress.at)} · ${number(counts.objects)} objects · ${number(counts.rowsMatched)} rows${extra}`;
}

function printCounts(report: ExportReport | BackfillReport): void {
  const lines = [
    `archive:      ${report.from} (environment ${report.environmentId})`,
    `range:        ${new Date(report.since).toISOString()} → ${new Date(report.until).toISOString()}`,
    `read:         ${number(report.objects)} object(s) in ${number(report.partitions)} partition(s), ${number(report.rowsRead)} row(s)`,
    `matched:      ${number(report.rowsMatched)} row(s)`,
    ...Object.entries(report.byFlag)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([flag, n]) => `  ${flag}: ${number(n)}`),
  ];
  if ('to' in report) {
    lines.push(`${report.dryRun ? 'would send:' : 'sent:      '}   ${number(report.sent)} impression(s) to ${report.to} in ${number(report.jobs)} job(s)`);
    for (const [reason, n] of Object.entries(report.notSent)) lines.push(`  not sent (${reason}): ${number(n)}`);
  }
  if (report.unreadableRows > 0) {
    lines.push(`unreadable:   ${number(report.unreadableRows)} row(s) skipped`);
    for (const sample of report.unreadableSamples) lines.push(`  ${sample.key} row ${sample.row}: ${sample.problem}`);
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}

async function writeExport(service: ImpressionsExportService, query: ReturnType<ImpressionsExportService['resolveQuery']>, options: ImpressionsExportOptions): Promise<void> {
  // Rows printed on the terminal would be torn by a bar redrawn between them.
  const rowsOnTerminal = options.output === undefined && process.stdout.isTTY === true;
  const bar = createProgressBar(process.stderr, 'export', !rowsOnTerminal);
  const { stream, done } = service.exportStream(query, options.format ?? 'jsonl', (progress) => bar.update(progress.fraction, progressDetail(progress)));
  try {
    if (options.output === undefined) {
      try {
        await pipeline(stream, process.stdout);
      } catch (error) {
        // The reader went away (`| head`): that is where the export was meant to stop.
        if ((error as { code?: string }).code === 'EPIPE') return;
        throw error;
      }
    } else {
      // Written aside and renamed at the end: a failed export leaves no file that looks complete.
      const partial = `${options.output}.partial`;
      try {
        await pipeline(stream, createWriteStream(partial));
        await rename(partial, options.output);
      } catch (error) {
        await rm(partial, { force: true });
        throw error;
      }
    }
  } finally {
    bar.done();
  }
  const report = await done;
  const where = options.output === undefined ? '' : ` to ${options.output}`;
  const skipped = report.unreadableRows > 0 ? `; ${number(report.unreadableRows)} unreadable row(s) skipped, e.g. ${report.unreadableSamples[0]?.key} row ${report.unreadableSamples[0]?.row}: ${report.unreadableSamples[0]?.problem}` : '';
  process.stderr.write(`exported ${number(report.rowsMatched)} row(s)${where} from ${number(report.objects)} object(s) in ${number(report.partitions)} partition(s)${skipped}\n`);
}

/** `flagstream impressions export`: rows to stdout or a file; with --to, a backfill; with --dry-run, counts. */
export async function impressionsExport(options: ImpressionsExportOptions): Promise<void> {
  if (options.to !== undefined && (options.output !== undefined || options.format !== undefined)) {
    throw new AppError('FLAGSTREAM_ERR_VALIDATION', '--to sends the impressions to a destination: leave out --format and -o (or leave out --to to write a file)', { field: 'to' });
  }
  // The archive's credentials are needed to read it; plugins, for a backfill target of a plugin type.
  const session = await openSession({ secrets: true, plugins: [] });
  try {
    const { env, redis } = session;
    const snapshot = await session.snapshot();
    const service = createImpressionsExportService({
      config: () => snapshot,
      partitionFor: session.partitioned((keys, partition) => ({
        queues: session.queues(partition),
        ledger: createLedgerStore({ redis, keys, markerTtlMs: durationMs(env.FLAGSTREAM_MAX_DELIVERY_AGE, 'FLAGSTREAM_MAX_DELIVERY_AGE') + 86_400_000 }),
      })).partitionFor,
      guard: createDestinationGuard(env.FLAGSTREAM_DESTINATION_ALLOWLIST),
      clock: Date.now,
    });
    const query = service.resolveQuery({
      from: options.from,
      flags: options.flag ?? [],
      treatments: options.treatment ?? [],
      keys: options.key ?? [],
      since: options.since,
      ...(options.until === undefined ? {} : { until: options.until }),
    });
    if (options.to === undefined && !options.dryRun) return await writeExport(service, query, options);

    const bar = createProgressBar(process.stderr, options.to === undefined || options.dryRun ? 'count' : 'backfill');
    let fraction = 0;
    let report: ExportReport | BackfillReport;
    try {
      report =
        options.to === undefined
          ? await service.count(query, (progress) => bar.update(progress.fraction, progressDetail(progress)))
          : await service.backfill(query, {
              to: options.to,
              dryRun: options.dryRun === true,
              onEvent: (event) => {
                if (event.kind === 'progress') {
                  fraction = event.progress.fraction;
                  bar.update(fraction, progressDetail(event.progress, ` · ${number(event.sent)} sent`));
                } else bar.update(fraction, `waiting for the delivery backlog (${event.waitingJobs} jobs waiting, ${event.unfinishedJobs} of this backfill unfinished)`);
              },
            });
    } finally {
      bar.done();
    }
    if (options.json) printJson(report);
    else printCounts(report);
  } finally {
    await session.close();
  }
}
