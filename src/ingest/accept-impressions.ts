import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Impression } from '../domain/impression.js';
import { encodeStoredBatch } from '../domain/stored-batch.js';
import { AppError } from '../domain/errors.js';
import type { Metrics } from '../observability/metrics.js';
import { addJobsTo, execAll, ingestJobBatchIds, queueTransaction, type Queues } from '../queues/queues.js';
import type { Partitioned } from '../runtime/partitioned-stores.js';
import type { LedgerStore } from '../stores/ledger-store.js';
import type { StoredBatchStore } from '../stores/stored-batch-store.js';
import { onceName } from '../stores/once-marks.js';

export type IngestSource = 'split_sdk' | 'split_webhook' | 'native';

/** The most requests, and impressions, one commit takes: bounds what one routing job reads. */
export const commitLimits = { requests: 16, impressions: 20_000 } as const;

/** Waiting ingest jobs whose sizes stand for the rest when the backlog is counted. */
const backlogSample = 20;

/**
 * Requests (stored batches) waiting to be routed: waiting jobs × the requests per job of the
 * newest few. The limit counts requests, a job holds a commit's worth, and reading every job
 * would cost a call each. While nothing is routed the figure stays put, so a full backlog stays
 * refused.
 */
async function waitingRequests(queues: Queues): Promise<number> {
  const jobs = await queues.ingest.getWaitingCount();
  if (jobs === 0) return 0;
  const newest = await queues.ingest.getWaiting(0, backlogSample - 1);
  if (newest.length === 0) return jobs;
  const requests = newest.reduce((sum, job) => sum + Math.max(1, ingestJobBatchIds(job.data).length), 0);
  return Math.round((jobs * requests) / newest.length);
}

/** A request stored and waiting for its commit. */
interface WaitingRequest {
  readonly batchId: string;
  readonly stored: Buffer;
  readonly count: number;
  readonly done: { resolve: () => void; reject: (error: unknown) => void };
}

/** Where an environment's requests are stored and queued: its partition (FLAGSTREAM_REDIS_PARTITIONS). */
export interface IngestPartition {
  readonly queues: Queues;
  readonly ledger: LedgerStore;
  readonly batches: StoredBatchStore;
}

/**
 * Accepting = validated (by the caller) + durably stored and enqueued, then answered. A request
 * becomes one stored batch (serialised once, here); it is answered once the transaction that
 * writes it, a routing hold on it and an ingest job naming it has run: a request is enqueued
 * whole or not at all.
 *
 * Group commit: an environment (so one partition) has at most one such transaction in flight;
 * the requests that arrive meanwhile go together in the next one, under one ingest job. One
 * request alone is written at once, as before; under load, several requests cost one
 * transaction, one job handed over by BullMQ and one routing pass instead of one each (Redis
 * commands and CPU per impression fall with the group's size).
 */
export function createIngestService(deps: { stores: Partitioned<IngestPartition>; redis: Redis; metrics: Metrics; backlogLimit: number; clock: () => number }) {
  let backlog = { waiting: 0, checkedAt: Number.NEGATIVE_INFINITY };
  /** Per environment: requests waiting for the commit after the one in flight. */
  const waiting = new Map<string, WaitingRequest[]>();

  const assertBacklogRoom = async (): Promise<void> => {
    const now = deps.clock();
    // Read per partition every half second at most, whatever the request rate; the limit is the deployment's.
    if (now - backlog.checkedAt > 500) {
      const waiting = await Promise.all(deps.stores.partitions.map((partition) => waitingRequests(partition.queues)));
      backlog = { waiting: waiting.reduce((sum, n) => sum + n, 0), checkedAt: now };
    }
    if (backlog.waiting >= deps.backlogLimit) {
      throw new AppError('FLAGSTREAM_ERR_BACKLOG_FULL', `ingest backlog is full (${backlog.waiting} batches waiting); retry later`);
    }
  };

  /** One transaction: the requests' batches with their holds, one ingest job naming them, the received count. */
  const commit = async (environmentId: string, requests: readonly WaitingRequest[]): Promise<void> => {
    // A fixed job id and a count applied once keep `received` exact when a lost reply makes
    // ioredis run the transaction twice.
    const jobId = randomUUID();
    const count = requests.reduce((sum, request) => sum + request.count, 0);
    const { queues, batches, ledger } = deps.stores.partitionFor(environmentId);
    const multi = await queueTransaction(queues.ingest);
    for (const request of requests) batches.writeIn(multi, request.batchId, request.stored);
    const batchIds = requests.map((request) => request.batchId);
    await addJobsTo(multi, queues.ingest, [{ name: 'impressions', data: { environmentId, batchIds, count }, opts: { jobId } }]);
    ledger.countReceived(multi, environmentId, count, onceName(jobId, 'received'));
    try {
      await execAll(multi);
    } catch (error) {
      // The reply may have been lost after the transaction ran (a dropped connection): its count
      // marker says whether it did. Accepted then; otherwise the clients are told to retry.
      if (!(await ledger.wasCounted(onceName(jobId, 'received'), 2_000))) throw error;
    }
  };

  /** Commits the environment's waiting requests, a group at a time, until none waits. */
  const commitWaiting = async (environmentId: string): Promise<void> => {
    for (let queue = waiting.get(environmentId); queue !== undefined && queue.length > 0; queue = waiting.get(environmentId)) {
      let take = 0;
      let impressions = 0;
      while (take < queue.length && take < commitLimits.requests && (take === 0 || impressions + (queue[take] as WaitingRequest).count <= commitLimits.impressions)) {
        impressions += (queue[take] as WaitingRequest).count;
        take += 1;
      }
      const group = queue.splice(0, take);
      try {
        await commit(environmentId, group);
        // Counted until the next look at the queue, so a burst cannot overshoot the limit in between.
        backlog.waiting += group.length;
        for (const request of group) request.done.resolve();
      } catch (error) {
        for (const request of group) request.done.reject(error);
      }
    }
    waiting.delete(environmentId);
  };

  return {
    async accept(environmentId: string, impressions: Impression[], source: IngestSource): Promise<number> {
      if (impressions.length === 0) return 0;
      // Commands would wait for the reconnect; a client is better told to retry now (SDKs retry once).
      if (deps.redis.status !== 'ready') throw new AppError('FLAGSTREAM_ERR_REDIS', 'the queue (Redis) is unreachable; nothing was accepted, retry later');
      await assertBacklogRoom();
      const stored = encodeStoredBatch(impressions);
      const committed = new Promise<void>((resolve, reject) => {
        const request: WaitingRequest = { batchId: randomUUID(), stored, count: impressions.length, done: { resolve, reject } };
        const queue = waiting.get(environmentId);
        if (queue !== undefined) {
          queue.push(request);
          return;
        }
        waiting.set(environmentId, [request]);
        void commitWaiting(environmentId);
      });
      await committed;
      deps.metrics.impressionsReceived.inc({ source }, impressions.length);
      deps.metrics.ingestRequestImpressions.observe({ source }, impressions.length);
      return impressions.length;
    },
  };
}
export type IngestService = ReturnType<typeof createIngestService>;
