import type { Job } from 'bullmq';
import type { Logger } from 'pino';
import { routingStage } from '../domain/dead-letter.js';
import type { Impression } from '../domain/impression.js';
import { encodeStoredBatch, impressionsOf } from '../domain/stored-batch.js';
import type { Metrics } from '../observability/metrics.js';
import { ingestJobBatchIds, type IngestJobData } from '../queues/queues.js';
import type { DeliveryBatcher } from '../routing/delivery-batcher.js';
import { TailCollector } from '../routing/live-tail.js';
import { routeImpressions } from '../routing/route-impressions.js';
import type { ConfigWatcher } from '../runtime/config-watcher.js';
import type { DeadLetterStore } from '../stores/dead-letter-store.js';
import type { LedgerStore } from '../stores/ledger-store.js';
import type { TailPublisher } from '../stores/live-tail-store.js';
import type { StatsStore } from '../stores/stats-store.js';
import type { StoredBatchStore } from '../stores/stored-batch-store.js';
import { onceName } from '../stores/once-marks.js';

export interface RouteSummary {
  readonly routed: number;
  readonly dropped: number;
  readonly destinations: number;
  readonly deadLettered?: number;
}

/** The impressions of an ingest job's stored batches, one batch after another. */
interface LoadedBatches {
  readonly batchIds: readonly string[];
  /** Index in `impressions` of each batch's first row. */
  readonly starts: readonly number[];
  readonly impressions: Impression[];
}

/** Rows of the job's impressions (ascending) as rows of each stored batch. */
function rowsPerStoredBatch(loaded: LoadedBatches, rows: readonly number[]): [batchId: string, rows: number[]][] {
  const refs: [string, number[]][] = [];
  let part = -1;
  for (const row of rows) {
    let moved = false;
    while (part + 1 < loaded.starts.length && (loaded.starts[part + 1] as number) <= row) {
      part += 1;
      moved = true;
    }
    if (moved) refs.push([loaded.batchIds[part] as string, []]);
    (refs[refs.length - 1] as [string, number[]])[1].push(row - (loaded.starts[part] as number));
  }
  return refs;
}

export interface RouteProcessorDeps {
  readonly config: ConfigWatcher;
  readonly batcher: DeliveryBatcher;
  readonly stats: StatsStore;
  readonly ledger: LedgerStore;
  readonly batches: StoredBatchStore;
  readonly deadLetters: DeadLetterStore;
  readonly metrics: Metrics;
  readonly logger: Logger;
  readonly clock: () => number;
  /** The live tail: asked (cached) whether anyone watches; published to only then. */
  readonly tail?: TailPublisher;
  /** Crashes of its worker a job may cause beyond its failed attempts before it is dead-lettered. */
  readonly maxJobCrashes: number;
}

/**
 * BullMQ adapter of the routing stage: route, hand each destination its share, record traffic.
 * Idempotent across its own retries: a destination whose share of this job is already durable
 * (marked in the same transaction that wrote it) is skipped, and the job's counts and traffic
 * are recorded once. A job that keeps failing or crashing its worker ends as a dead letter of
 * the `@routing` stage, which a replay routes again.
 */
export function createRouteProcessor(deps: RouteProcessorDeps) {
  /**
   * The job's stored batches and their impressions, one after another (`starts`: where each
   * batch's rows begin). Impressions that came inline (replays) are stored first, under an id of
   * the job, so every share refers to rows of a stored batch. Undefined when a batch is gone,
   * which it only is once everything it held has settled.
   */
  const load = async (job: Job<IngestJobData>): Promise<LoadedBatches | undefined> => {
    const { impressions } = job.data;
    if (impressions !== undefined) {
      const inlineId = `inline-${job.id ?? ''}`;
      await deps.batches.writeOnce(inlineId, encodeStoredBatch(impressions));
      return { batchIds: [inlineId], starts: [0], impressions };
    }
    const batchIds = ingestJobBatchIds(job.data);
    const loaded = await deps.batches.load(batchIds);
    const all: Impression[] = [];
    const starts: number[] = [];
    for (const batchId of batchIds) {
      const batch = loaded.get(batchId);
      if (batch === undefined) return undefined;
      starts.push(all.length);
      for (const impression of impressionsOf(batch)) all.push(impression);
    }
    return { batchIds, starts, impressions: all };
  };

  /** The routing holds on the batches go once every share holds its own references (or none is left to write). */
  const releaseHolds = (jobId: string, batchIds: readonly string[]) => deps.batches.release(onceName(jobId, 'hold'), new Map(batchIds.map((batchId) => [batchId, 1])));

  const deadLetter = async (job: Job<IngestJobData>, reason: 'worker_crashed' | 'internal_error', message: string): Promise<RouteSummary> => {
    const { environmentId } = job.data;
    // Its outcome is recorded only once every share is durable: all that was left was to let go
    // of the batch (a worker killed after that point). Nothing to dead-letter, nothing lost.
    if (await deps.ledger.routingRecorded(job.id ?? '')) {
      await releaseHolds(job.id ?? '', job.data.impressions === undefined ? ingestJobBatchIds(job.data) : [`inline-${job.id ?? ''}`]);
      return { routed: 0, dropped: 0, destinations: 0 };
    }
    const loaded = await load(job);
    const impressions = loaded?.impressions ?? [];
    const now = deps.clock();
    await deps.deadLetters.record({
      key: `routing:${job.id ?? ''}:${reason}`,
      destinationId: routingStage,
      environmentId,
      connectorType: 'routing',
      reason,
      error: { message },
      impressions,
      attempts: job.attemptsMade + 1,
      firstAttemptAt: job.timestamp,
      lastAttemptAt: now,
    });
    if (loaded !== undefined) await releaseHolds(job.id ?? '', loaded.batchIds);
    deps.metrics.deadLetters.inc({ destination: routingStage, reason }, impressions.length);
    deps.logger.error({ environmentId, jobId: job.id, reason, count: impressions.length, error: message }, 'impressions could not be routed; dead-lettered for replay');
    return { routed: 0, dropped: 0, destinations: 0, deadLettered: impressions.length };
  };

  const route = async (job: Job<IngestJobData>): Promise<RouteSummary> => {
    const { environmentId } = job.data;
    const jobId = job.id ?? '';
    const loaded = await load(job);
    if (loaded === undefined) {
      // Its batch is released only after this job was recorded: the job was added again by a
      // transaction re-sent after it had finished.
      if (await deps.ledger.routingRecorded(jobId)) return { routed: 0, dropped: 0, destinations: 0 };
      throw new Error(`a stored batch of routing job ${jobId} (${ingestJobBatchIds(job.data).join(', ')}) is missing`);
    }
    const { batchIds, impressions } = loaded;
    const environment = deps.config.current().environments.get(environmentId);
    if (environment === undefined) {
      // The environment was deleted after the impressions were accepted.
      if (await deps.ledger.recordRouting(jobId, environmentId, 0, new Map([['unknown_environment', impressions.length]]))) {
        deps.metrics.impressionsDropped.inc({ reason: 'unknown_environment' }, impressions.length);
        deps.logger.warn({ environmentId, count: impressions.length }, 'impressions of a deleted environment dropped');
      }
      await releaseHolds(jobId, batchIds);
      return { routed: 0, dropped: impressions.length, destinations: 0 };
    }
    const viewers = (await deps.tail?.viewers(environmentId)) ?? [];
    const tail = viewers.length === 0 ? undefined : new TailCollector(environmentId, viewers, new Date(deps.clock()).toISOString());
    const result = routeImpressions(environment, impressions, tail?.observe);
    const written = await deps.ledger.sharesWritten(jobId);
    const shares = [...result.rowsByDestination]
      .filter(([destination]) => !written.has(destination.destination.id))
      .map(([destination, rows]) => [destination, { refs: rowsPerStoredBatch(loaded, rows), view: result.view }] as const);
    await deps.batcher.addAll(shares, jobId);
    // Once per job: a crash in the middle loses this job's traffic stats, never its impressions.
    await deps.ledger.once(onceName(jobId, 'stats'), () => deps.stats.record(environmentId, result.traffic, result.series));
    if (tail !== undefined && !tail.isEmpty) {
      // One message per job, after its shares are durable; a lost message costs a viewer a line, never routing.
      deps.tail?.publish(environmentId, tail.message()).catch((error: unknown) => deps.logger.debug({ err: error, environmentId }, 'live tail message not published'));
    }
    let dropped = 0;
    for (const count of result.dropped.values()) dropped += count;
    if (await deps.ledger.recordRouting(jobId, environmentId, result.routed, result.dropped)) {
      for (const [reason, count] of result.dropped) deps.metrics.impressionsDropped.inc({ reason }, count);
      deps.metrics.impressionsRouted.inc(result.routed);
    }
    await releaseHolds(jobId, batchIds);
    return { routed: result.routed, dropped, destinations: result.byDestination.size };
  };

  return async (job: Job<IngestJobData>): Promise<RouteSummary> => {
    if (job.stalledCounter > deps.maxJobCrashes + job.attemptsMade) {
      return deadLetter(job, 'worker_crashed', `the job was in progress when its worker stopped ${job.stalledCounter} times`);
    }
    try {
      return await route(job);
    } catch (error) {
      // Routing fails only on Redis trouble or a bug: retried, and on the last attempt kept as a
      // dead letter instead of being left in BullMQ's failed set.
      if (job.attemptsMade + 1 < (job.opts.attempts ?? 1)) throw error;
      return deadLetter(job, 'internal_error', error instanceof Error ? error.message : String(error));
    }
  };
}
