import { Job, type JobsOptions, Queue } from 'bullmq';
import type { ChainableCommander, Redis } from 'ioredis';
import type { Impression } from '../domain/impression.js';
import { countRows, type RoutingView, type StoredRowsRef } from '../domain/stored-batch.js';
import type { RedisKeys } from '../stores/redis-keys.js';

/**
 * Two BullMQ queues carry all work. A job always stands for a batch of impressions, never one:
 * BullMQ costs several Redis round trips per job, so batching is what makes throughput. Jobs
 * carry references to stored batches (domain/stored-batch.ts), not the impressions themselves.
 */
export const ingestQueueName = 'ingest';
export const deliveryQueueName = 'delivery';

/**
 * Accepted requests of one environment: their stored batches (the requests one ingest commit
 * wrote together, see ingest/accept-impressions.ts), or (replays of `@routing` dead letters)
 * impressions inline.
 */
export interface IngestJobData {
  readonly environmentId: string;
  readonly batchIds?: readonly string[];
  /** One stored batch: jobs written before commits were grouped. */
  readonly batchId?: string;
  readonly count?: number;
  readonly impressions?: Impression[];
}

export function ingestJobCount(data: IngestJobData): number {
  return data.impressions?.length ?? data.count ?? 0;
}

/** The stored batches an ingest job stands for, in order. */
export function ingestJobBatchIds(data: IngestJobData): readonly string[] {
  return data.batchIds ?? (data.batchId === undefined ? [] : [data.batchId]);
}

/**
 * Impressions bound for one destination: rows of stored batches (`refs`, with the routing `view`
 * to read them with) and, for replays and backfills, impressions inline (`items`). Rewritten to
 * the still-pending ones after a partial attempt.
 */
export interface DeliveryJobData {
  readonly destinationId: string;
  readonly environmentId: string;
  readonly items?: Impression[];
  readonly refs?: readonly StoredRowsRef[];
  readonly view?: RoutingView;
  /** Epoch ms of the first attempt: bounds retries by age as well as count. */
  readonly firstAttemptAt?: number;
  /** Set on jobs created by a replay: the dead letter they came from. */
  readonly replayOf?: string;
  /** How many attempts settled something so far: names each settlement, so it counts once. */
  readonly settlements?: number;
}

export function deliveryJobCount(data: DeliveryJobData): number {
  let count = data.items?.length ?? 0;
  for (const [, rows] of data.refs ?? []) count += countRows(rows);
  return count;
}

export interface Queues {
  readonly ingest: Queue<IngestJobData>;
  readonly delivery: Queue<DeliveryJobData>;
  close(): Promise<void>;
}

export function createQueues(connection: Redis, keys: RedisKeys): Queues {
  const common = { connection, prefix: keys.bullPrefix };
  const ingest = new Queue<IngestJobData>(ingestQueueName, {
    ...common,
    defaultJobOptions: {
      // Routing only fails on Redis trouble; retry it for a long while rather than lose anything.
      attempts: 50,
      backoff: { type: 'exponential', delay: 1000 },
      removeOnComplete: true,
      removeOnFail: false,
    },
  });
  const delivery = new Queue<DeliveryJobData>(deliveryQueueName, {
    ...common,
    defaultJobOptions: { removeOnComplete: true, removeOnFail: false },
  });
  return {
    ingest,
    delivery,
    async close() {
      await Promise.all([ingest.close(), delivery.close()]);
    },
  };
}

export interface JobToAdd<T> {
  readonly name: string;
  readonly data: T;
  readonly opts?: JobsOptions;
}

/**
 * A MULTI on the queue's connection, where BullMQ's job scripts and flagstream's own commands
 * (ledger counts, markers) can be queued together and applied all or nothing.
 */
export async function queueTransaction<T>(queue: Queue<T>): Promise<ChainableCommander> {
  // BullMQ wraps our ioredis connection; its multi() is an ioredis MULTI that also runs BullMQ's scripts.
  return (await queue.client).multi() as unknown as ChainableCommander;
}

/** Queues jobs inside `multi` (see queueTransaction); they exist once the caller's EXEC succeeds. */
export async function addJobsTo<T>(multi: ChainableCommander, queue: Queue<T>, jobs: readonly JobToAdd<T>[]): Promise<void> {
  for (const { name, data, opts } of jobs) {
    // Queue.add merges the queue's defaults the same way.
    const job = new Job<T>(queue, name, data, { ...queue.defaultJobOptions, ...opts }, opts?.jobId);
    // addJob only queues a command on a transaction; BullMQ's own addBulk passes a pipeline the same way.
    await job.addJob(multi as unknown as Parameters<Job['addJob']>[0], { parentKey: job.parentKey, parentDependenciesKey: job.parentKey ? `${job.parentKey}:dependencies` : '' });
  }
}

/** Runs a MULTI and throws the first command error (ioredis reports them per command). */
export async function execAll(multi: ChainableCommander): Promise<unknown[]> {
  const results = await multi.exec();
  if (results === null) throw new Error('Redis transaction aborted');
  for (const [error] of results) if (error) throw error;
  return results.map(([, value]) => value);
}

/**
 * Moves a destination's delayed jobs back to waiting, so resuming (or enabling) takes effect now.
 * Reads only job ids and names while scanning (a long outage can leave many large jobs delayed),
 * and loads one job at a time to promote it.
 */
export async function promoteDelayed(queue: Queue<DeliveryJobData>, destinationId: string): Promise<number> {
  // createQueues hands BullMQ a plain ioredis connection, never a cluster.
  const client = (await queue.client) as unknown as Redis;
  const delayedKey = queue.keys.delayed ?? queue.toKey('delayed');
  const matching: string[] = [];
  const page = 1000;
  for (let start = 0; ; start += page) {
    const ids = await client.zrange(delayedKey, start, start + page - 1);
    if (ids.length === 0) break;
    const pipeline = client.pipeline();
    for (const id of ids) pipeline.hget(queue.toKey(id), 'name');
    const names = (await pipeline.exec()) ?? [];
    ids.forEach((id, index) => {
      if (names[index]?.[1] === destinationId) matching.push(id);
    });
    if (ids.length < page) break;
  }
  let promoted = 0;
  for (const id of matching) {
    const job = await Job.fromId<DeliveryJobData>(queue, id);
    // A job may have started or moved meanwhile; that is fine.
    await job?.promote().then(
      () => (promoted += 1),
      () => undefined,
    );
  }
  return promoted;
}

/** States in which a job still holds work to do. */
const unfinishedStates = ['wait', 'paused', 'prioritized', 'delayed', 'active', 'waiting-children'] as const;

/**
 * Sums `count(job data)` per `group(job data)` over every unfinished job of a queue, reading
 * bounded pages of job data. For the ledger: exact at a quiet moment, approximate while jobs move.
 */
export async function tallyUnfinishedJobs<T>(queue: Queue<T>, tally: (data: T) => readonly [group: string, count: number]): Promise<Map<string, number>> {
  const client = (await queue.client) as unknown as Redis;
  const totals = new Map<string, number>();
  const page = 200;
  for (const state of unfinishedStates) {
    for (let start = 0; ; start += page) {
      const ids = await queue.getRanges([state], start, start + page - 1, true);
      if (ids.length === 0) break;
      const pipeline = client.pipeline();
      for (const id of ids) pipeline.hget(queue.toKey(id), 'data');
      for (const [, raw] of (await pipeline.exec()) ?? []) {
        if (typeof raw !== 'string') continue;
        const [group, count] = tally(JSON.parse(raw) as T);
        totals.set(group, (totals.get(group) ?? 0) + count);
      }
      if (ids.length < page) break;
    }
  }
  return totals;
}
