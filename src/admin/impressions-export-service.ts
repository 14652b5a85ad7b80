import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { setTimeout as delay } from 'node:timers/promises';
import { z } from 'zod';
import { s3Columns, s3CsvRecord, type S3Settings } from '../connectors/s3/s3-connector.js';
import type { DestinationGuard } from '../delivery/destination-guard.js';
import { AppError } from '../domain/errors.js';
import type { Impression } from '../domain/impression.js';
import { addJobsTo, type DeliveryJobData, execAll, queueTransaction, type Queues } from '../queues/queues.js';
import { routeImpressions } from '../routing/route-impressions.js';
import type { ConfigSnapshot, RuntimeDestination } from '../runtime/config-snapshot.js';
import type { LedgerStore } from '../stores/ledger-store.js';
import { parseTimeBound } from './dead-letters-service.js';
import { type ArchivedRow, type ArchiveReader, archiveFormatOf, createS3ArchiveReader, impressionFromArchivedRow, readArchivedRow } from './impressions-archive.js';
import { onceName } from '../stores/once-marks.js';

const timeBound = z.union([z.string(), z.number().int().nonnegative()]);

/** What to read: the archive destination, filters (OR within a kind, AND across kinds) and a time range. */
export const ImpressionQueryInputSchema = z.object({
  from: z.string().min(1).describe('The s3 destination whose archive is read; its environment is the one queried'),
  flags: z.array(z.string().min(1)).default([]).describe('Only these flags (any of them)'),
  treatments: z.array(z.string().min(1)).default([]).describe('Only these treatments (any of them)'),
  keys: z.array(z.string().min(1)).default([]).describe('Only these keys (any of them)'),
  since: timeBound.describe('Impression time from (inclusive): ISO date, epoch ms, or a duration back from now (2h, 7d)'),
  until: timeBound.optional().describe('Impression time before (exclusive), same forms; default now'),
});
export type ImpressionQueryInput = z.input<typeof ImpressionQueryInputSchema>;

export const ExportFormatSchema = z.enum(['jsonl', 'csv']);
export type ExportFormat = z.infer<typeof ExportFormatSchema>;

/** `POST /admin/v1/impressions/export`. */
export const ImpressionsExportRequestSchema = ImpressionQueryInputSchema.extend({
  format: ExportFormatSchema.default('jsonl').describe('jsonl (one JSON object a line) or csv (RFC 4180, header row)'),
  dryRun: z.boolean().default(false).describe('Answer the counts (objects, rows read, matched per flag) as JSON instead of the rows'),
});
/** `POST /admin/v1/impressions/backfill`. */
export const ImpressionsBackfillRequestSchema = ImpressionQueryInputSchema.extend({
  to: z.string().min(1).describe('The destination to send the impressions to (same environment)'),
  dryRun: z.boolean().default(false).describe('Count what would be sent; enqueue nothing'),
});

/** A checked query: an s3 destination with valid settings, one environment, a time range. */
export interface ImpressionQuery {
  readonly from: string;
  readonly environmentId: string;
  readonly settings: S3Settings;
  readonly flags: ReadonlySet<string>;
  readonly treatments: ReadonlySet<string>;
  readonly keys: ReadonlySet<string>;
  readonly since: number;
  readonly until: number;
}

/** Counts of a scan, filled in as it goes. */
export interface ScanCounts {
  /** Partition folders listed (a whole day, or one hour at the range's ends). */
  partitions: number;
  objects: number;
  /** Objects under the partitions that are not files the connector writes (left alone). */
  otherObjects: number;
  rowsRead: number;
  rowsMatched: number;
  byFlag: Record<string, number>;
  /** Rows that are not valid archive rows (skipped), with the first few places. */
  unreadableRows: number;
  unreadableSamples: { key: string; row: number; problem: string }[];
}

export interface ScanProgress {
  /** Share of the time range done, 0..1. */
  readonly fraction: number;
  /** Where the scan is: the start of the partition being read. */
  readonly at: number;
  readonly counts: Readonly<ScanCounts>;
}

export interface ExportReport extends ScanCounts {
  readonly from: string;
  readonly environmentId: string;
  readonly since: number;
  readonly until: number;
}

export interface BackfillReport extends ExportReport {
  readonly to: string;
  readonly dryRun: boolean;
  /** Impressions enqueued for the destination (or that would be). */
  readonly sent: number;
  readonly jobs: number;
  /** Matched but not for this destination today: its flag's tracking is off, the flag is unknown and dropped, or the destination's filters exclude it. */
  readonly notSent: Record<string, number>;
}

export type BackfillEvent =
  | { readonly kind: 'progress'; readonly progress: ScanProgress; readonly sent: number }
  | { readonly kind: 'waiting'; readonly waitingJobs: number; readonly unfinishedJobs: number };

export interface BackfillLimits {
  /** Most impressions per delivery job (also capped by the destination's batch size). */
  readonly batchSize: number;
  /** Pause while the delivery queue holds this many waiting jobs (all destinations): live traffic goes first. */
  readonly maxWaitingJobs: number;
  /** Pause while this many of the backfill's own jobs are unfinished (a slow or failing destination). */
  readonly maxUnfinishedJobs: number;
  readonly pollIntervalMs: number;
  /** Give up when the backlog has not moved for this long. */
  readonly stallTimeoutMs: number;
}

const defaultLimits: BackfillLimits = { batchSize: 1000, maxWaitingJobs: 500, maxUnfinishedJobs: 20, pollIntervalMs: 250, stallTimeoutMs: 600_000 };

const iso = (ms: number) => new Date(ms).toISOString();

function emptyCounts(): ScanCounts {
  return { partitions: 0, objects: 0, otherObjects: 0, rowsRead: 0, rowsMatched: 0, byFlag: {}, unreadableRows: 0, unreadableSamples: [] };
}

/** Output lines of a format; CSV starts with its header. */
export function exportHeader(format: ExportFormat): string {
  return format === 'csv' ? `${s3Columns.join(',')}\r\n` : '';
}
export function exportLine(row: ArchivedRow, format: ExportFormat): string {
  return format === 'csv' ? `${s3CsvRecord(row)}\r\n` : `${JSON.stringify(row)}\n`;
}

/** Lines are gathered into chunks of about this size: one write per chunk, not per row. */
const chunkBytes = 64 * 1024;

/**
 * Impressions export and backfill, shared by the admin API and the CLI. A query names an s3
 * destination (its archive, its environment), filters and a time range; the scan lists only the
 * partitions of that range, reads one object at a time as a stream, and yields matching rows as
 * they come, so memory stays flat whatever the range. Backfill sends the matching impressions
 * (original ids) through the delivery core to a destination of the same environment.
 */
export function createImpressionsExportService(deps: {
  config: () => ConfigSnapshot;
  /** The queues and ledger of an environment's partition (FLAGSTREAM_REDIS_PARTITIONS), for backfills. */
  partitionFor: (environmentId: string) => { readonly queues: Pick<Queues, 'delivery'>; readonly ledger: LedgerStore };
  guard: DestinationGuard;
  clock: () => number;
  openArchive?: (settings: S3Settings) => ArchiveReader;
  limits?: Partial<BackfillLimits>;
}) {
  const limits: BackfillLimits = { ...defaultLimits, ...deps.limits };
  const openArchive = deps.openArchive ?? ((settings: S3Settings) => createS3ArchiveReader(settings, { guard: deps.guard }));

  function resolveQuery(input: ImpressionQueryInput): ImpressionQuery {
    const parsed = ImpressionQueryInputSchema.safeParse(input);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const field = issue?.path.join('.') || 'query';
      throw new AppError('FLAGSTREAM_ERR_VALIDATION', `${field}: ${issue?.message ?? 'invalid'}`, { field });
    }
    const query = parsed.data;
    const now = deps.clock();
    const bound = (value: string | number | undefined, field: string) => (typeof value === 'number' ? value : parseTimeBound(value, now, field));
    const since = bound(query.since, 'since');
    if (since === undefined) throw new AppError('FLAGSTREAM_ERR_VALIDATION', 'since: say from when (an ISO date, epoch ms, or a duration back from now such as 24h)', { field: 'since' });
    const until = bound(query.until, 'until') ?? now;
    if (until <= since) throw new AppError('FLAGSTREAM_ERR_VALIDATION', `until (${iso(until)}) must be after since (${iso(since)})`, { field: 'until' });
    const destination = deps.config().destinations.get(query.from);
    if (destination === undefined) throw new AppError('FLAGSTREAM_ERR_NOT_FOUND', `no destination "${query.from}"`, { field: 'from' });
    if (destination.destination.type !== 's3') {
      throw new AppError('FLAGSTREAM_ERR_VALIDATION', `destination "${query.from}" is a ${destination.destination.type} destination; export reads the archive of an s3 destination`, { field: 'from' });
    }
    if (destination.settings === undefined) {
      throw new AppError('FLAGSTREAM_ERR_VALIDATION', `destination "${query.from}" is misconfigured: ${destination.settingsError ?? 'invalid settings'}`, { field: 'from' });
    }
    return {
      from: query.from,
      environmentId: destination.environmentId,
      settings: destination.settings as S3Settings,
      flags: new Set(query.flags),
      treatments: new Set(query.treatments),
      keys: new Set(query.keys),
      since,
      until,
    };
  }

  const matches = (query: ImpressionQuery, row: ArchivedRow): boolean =>
    row.timestamp >= query.since &&
    row.timestamp < query.until &&
    row.environmentId === query.environmentId &&
    (query.flags.size === 0 || query.flags.has(row.splitName)) &&
    (query.treatments.size === 0 || query.treatments.has(row.treatment)) &&
    (query.keys.size === 0 || query.keys.has(row.key));

  /** Matching rows, in partition order (oldest hour first; within an hour, object by object). */
  async function* scan(query: ImpressionQuery, counts: ScanCounts, onProgress?: (progress: ScanProgress) => void): AsyncGenerator<ArchivedRow> {
    const archive = openArchive(query.settings);
    const span = query.until - query.since;
    const report = (at: number) => onProgress?.({ fraction: Math.min(1, Math.max(0, (at - query.since) / span)), at, counts });
    try {
      for await (const partition of archive.partitions(query.environmentId, query.since, query.until)) {
        counts.partitions += 1;
        report(partition.from);
        for await (const object of archive.objects(partition)) {
          if (archiveFormatOf(object.key) === undefined) {
            counts.otherObjects += 1;
            continue;
          }
          counts.objects += 1;
          let index = 0;
          for await (const raw of archive.rows(object)) {
            index += 1;
            counts.rowsRead += 1;
            const read = readArchivedRow(raw);
            if ('problem' in read) {
              counts.unreadableRows += 1;
              if (counts.unreadableSamples.length < 10) counts.unreadableSamples.push({ key: object.key, row: index, problem: read.problem });
              continue;
            }
            if (!matches(query, read.row)) continue;
            counts.rowsMatched += 1;
            counts.byFlag[read.row.splitName] = (counts.byFlag[read.row.splitName] ?? 0) + 1;
            yield read.row;
          }
          report(partition.from);
        }
        report(partition.to);
      }
      report(query.until);
    } finally {
      archive.close();
    }
  }

  const reportOf = (query: ImpressionQuery, counts: ScanCounts): ExportReport => ({ from: query.from, environmentId: query.environmentId, since: query.since, until: query.until, ...counts });

  /** The export as text chunks (header first for CSV); `done` resolves with the report once the stream ends. */
  function exportStream(query: ImpressionQuery, format: ExportFormat, onProgress?: (progress: ScanProgress) => void): { stream: Readable; done: Promise<ExportReport> } {
    const counts = emptyCounts();
    let finish: (report: ExportReport) => void = () => undefined;
    let fail: (error: unknown) => void = () => undefined;
    const done = new Promise<ExportReport>((resolve, reject) => {
      finish = resolve;
      fail = reject;
    });
    // A caller that only reads the stream sees its errors there.
    done.catch(() => undefined);
    async function* chunks(): AsyncGenerator<string> {
      try {
        let chunk = exportHeader(format);
        for await (const row of scan(query, counts, onProgress)) {
          chunk += exportLine(row, format);
          if (chunk.length >= chunkBytes) {
            yield chunk;
            chunk = '';
          }
        }
        if (chunk !== '') yield chunk;
        finish(reportOf(query, counts));
      } catch (error) {
        fail(error);
        throw error;
      }
    }
    return { stream: Readable.from(chunks(), { objectMode: false }), done };
  }

  /** Counts only: what an export would write. */
  async function count(query: ImpressionQuery, onProgress?: (progress: ScanProgress) => void): Promise<ExportReport> {
    const counts = emptyCounts();
    for await (const _row of scan(query, counts, onProgress)) {
      // counted by the scan
    }
    return reportOf(query, counts);
  }

  function resolveTarget(query: ImpressionQuery, to: string): RuntimeDestination {
    const target = deps.config().destinations.get(to);
    if (target === undefined) throw new AppError('FLAGSTREAM_ERR_NOT_FOUND', `no destination "${to}"`, { field: 'to' });
    if (to === query.from) throw new AppError('FLAGSTREAM_ERR_VALIDATION', `"${to}" is the archive being read; backfill it into another destination`, { field: 'to' });
    if (target.environmentId !== query.environmentId) {
      throw new AppError(
        'FLAGSTREAM_ERR_VALIDATION',
        `destination "${to}" is in environment "${target.environmentId}", but "${query.from}" archives environment "${query.environmentId}": a backfill only goes to a destination of the same environment (impressions keep their environment)`,
        { field: 'to' },
      );
    }
    if (!target.destination.enabled) throw new AppError('FLAGSTREAM_ERR_VALIDATION', `destination "${to}" is disabled; enable it first`, { field: 'to' });
    if (target.connector === undefined || target.limits === undefined || target.settingsError !== undefined) {
      throw new AppError('FLAGSTREAM_ERR_VALIDATION', `destination "${to}" is misconfigured: ${target.settingsError ?? 'unknown connector'}`, { field: 'to' });
    }
    return target;
  }

  /**
   * Sends the query's impressions to `to` as delivery jobs of bounded size, each queued in one
   * transaction with its ledger count, behind live traffic (lower priority), never faster than
   * the backlog drains. What goes is what live routing would send that destination today:
   * the flag's tracking switch, the environment's labels setting and the destination's filters apply.
   */
  async function backfill(query: ImpressionQuery, options: { to: string; dryRun?: boolean; onEvent?: (event: BackfillEvent) => void }): Promise<BackfillReport> {
    const target = resolveTarget(query, options.to);
    const dryRun = options.dryRun === true;
    const environment = deps.config().environments.get(query.environmentId);
    if (environment === undefined) throw new AppError('FLAGSTREAM_ERR_NOT_FOUND', `no environment "${query.environmentId}"`, { field: 'from' });
    // Routing with the target as the environment's only destination: its decision, for this destination alone.
    const routing = { ...environment, destinations: [target] };
    const batchSize = Math.max(1, Math.min(limits.batchSize, target.limits?.maxItemsPerRequest ?? limits.batchSize));
    const attempts = target.destination.delivery.retrySchedule.length + 1;
    const runId = `${deps.clock().toString(36)}${randomBytes(4).toString('hex')}`;
    const partition = deps.partitionFor(query.environmentId);
    const queue = partition.queues.delivery;
    const counts = emptyCounts();
    const notSent: Record<string, number> = {};
    const unfinished: string[] = [];
    let sent = 0;
    let jobs = 0;
    let incoming: Impression[] = [];
    let outgoing: Impression[] = [];
    /** Where a re-run should start to miss nothing: the partition of the oldest impression not yet queued. */
    let resumeFrom = query.since;
    let scanAt = query.since;

    const countNotSent = (reason: string, n: number) => {
      if (n > 0) notSent[reason] = (notSent[reason] ?? 0) + n;
    };

    const waitForRoom = async (): Promise<void> => {
      let stalledSince = Date.now();
      let lastUnfinished = Number.POSITIVE_INFINITY;
      for (;;) {
        const [queueCounts, states] = await Promise.all([
          queue.getJobCounts('wait', 'prioritized'),
          // Bounded: at most maxUnfinishedJobs ids. A job is removed when it completes.
          Promise.all(unfinished.map(async (id) => (await queue.client).hmget(queue.toKey(id), 'name', 'finishedOn'))),
        ]);
        // Gone (completed and removed) or finished (failed): no longer holding back the backfill.
        const stillOpen = unfinished.filter((_, index) => typeof states[index]?.[0] === 'string' && states[index]?.[1] === null);
        unfinished.splice(0, unfinished.length, ...stillOpen);
        const waitingJobs = (queueCounts.wait ?? 0) + (queueCounts.prioritized ?? 0);
        if (waitingJobs < limits.maxWaitingJobs && unfinished.length < limits.maxUnfinishedJobs) return;
        if (unfinished.length < lastUnfinished) stalledSince = Date.now();
        lastUnfinished = unfinished.length;
        options.onEvent?.({ kind: 'waiting', waitingJobs, unfinishedJobs: unfinished.length });
        if (Date.now() - stalledSince > limits.stallTimeoutMs) {
          throw new AppError(
            'FLAGSTREAM_ERR_BACKLOG_FULL',
            `backfill stopped: the delivery backlog did not move for ${limits.stallTimeoutMs / 1000} s (${waitingJobs} jobs waiting, ${unfinished.length} of this backfill unfinished; are the workers running, is "${options.to}" healthy?). ` +
              `${sent} impression(s) in ${jobs} job(s) were queued and will be delivered or dead-lettered; to send the rest, run it again with --since ${iso(resumeFrom)} (destinations deduplicate by impression id)`,
          );
        }
        await delay(limits.pollIntervalMs);
      }
    };

    const enqueue = async (items: Impression[]): Promise<void> => {
      await waitForRoom();
      jobs += 1;
      const jobId = `backfill-${runId}-${jobs}`;
      const multi = await queueTransaction(queue);
      const data: DeliveryJobData = { destinationId: options.to, environmentId: query.environmentId, items };
      await addJobsTo(multi, queue, [{ name: options.to, data, opts: { jobId, attempts, backoff: { type: 'destination' }, priority: 10 } }]);
      partition.ledger.countRouted(multi, options.to, query.environmentId, items.length, onceName(jobId, 'routed'));
      await execAll(multi);
      unfinished.push(jobId);
      sent += items.length;
    };

    const route = () => {
      const result = routeImpressions(routing, incoming, undefined, { collect: true });
      const forTarget = result.byDestination.get(target) ?? [];
      for (const [reason, n] of result.dropped) countNotSent(reason, n);
      countNotSent('filtered', result.routed - forTarget.length);
      for (const impression of forTarget) outgoing.push(impression);
      incoming = [];
    };

    const flush = async (all: boolean): Promise<void> => {
      while (outgoing.length >= batchSize || (all && outgoing.length > 0)) {
        const items = outgoing.slice(0, batchSize);
        outgoing = outgoing.slice(items.length);
        if (dryRun) sent += items.length;
        else await enqueue(items);
      }
      if (outgoing.length === 0 && incoming.length === 0) resumeFrom = scanAt;
    };

    const onProgress = (progress: ScanProgress) => {
      scanAt = progress.at;
      options.onEvent?.({ kind: 'progress', progress, sent });
    };
    for await (const row of scan(query, counts, onProgress)) {
      incoming.push(impressionFromArchivedRow(row));
      if (incoming.length >= batchSize) {
        route();
        await flush(false);
      }
    }
    route();
    await flush(true);
    return { ...reportOf(query, counts), to: options.to, dryRun, sent, jobs: dryRun ? Math.ceil(sent / batchSize) : jobs, notSent };
  }

  return { resolveQuery, exportStream, count, backfill };
}
export type ImpressionsExportService = ReturnType<typeof createImpressionsExportService>;
