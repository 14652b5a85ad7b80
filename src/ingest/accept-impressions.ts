import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Impression } from '../domain/impression.js';
import { encodeStoredBatch } from '../domain/stored-batch.js';
import { AppError } from '../domain/errors.js';
import type { Metrics } from '../observability/metrics.js';
import { addJobsTo, execAll, queueTransaction, type Queues } from '../queues/queues.js';
import type { Partitioned } from '../runtime/partitioned-stores.js';
import type { LedgerStore } from '../stores/ledger-store.js';
import type { StoredBatchStore } from '../stores/stored-batch-store.js';

export type IngestSource = 'split_sdk' | 'split_webhook' | 'native';

/**
 * Accepting = validated (by the caller) + durably stored and enqueued, then answered. One request
 * becomes one stored batch (serialised once, here) and one small ingest job naming it, written
 * together: a request is enqueued whole or not at all.
 */
/** Where an environment's requests are stored and queued: its partition (FLAGSTREAM_REDIS_PARTITIONS). */
export interface IngestPartition {
  readonly queues: Queues;
  readonly ledger: LedgerStore;
  readonly batches: StoredBatchStore;
}

export function createIngestService(deps: { stores: Partitioned<IngestPartition>; redis: Redis; metrics: Metrics; backlogLimit: number; clock: () => number }) {
  let backlog = { waiting: 0, checkedAt: Number.NEGATIVE_INFINITY };

  const assertBacklogRoom = async (): Promise<void> => {
    const now = deps.clock();
    // One LLEN-like call per partition per half second at most, whatever the request rate; the limit is the deployment's.
    if (now - backlog.checkedAt > 500) {
      const waiting = await Promise.all(deps.stores.partitions.map((partition) => partition.queues.ingest.getWaitingCount()));
      backlog = { waiting: waiting.reduce((sum, n) => sum + n, 0), checkedAt: now };
    }
    if (backlog.waiting >= deps.backlogLimit) {
      throw new AppError('FLAGSTREAM_ERR_BACKLOG_FULL', `ingest backlog is full (${backlog.waiting} batches waiting); retry later`);
    }
  };

  return {
    async accept(environmentId: string, impressions: Impression[], source: IngestSource): Promise<number> {
      if (impressions.length === 0) return 0;
      // Commands would wait for the reconnect; a client is better told to retry now (SDKs retry once).
      if (deps.redis.status !== 'ready') throw new AppError('FLAGSTREAM_ERR_REDIS', 'the queue (Redis) is unreachable; nothing was accepted, retry later');
      await assertBacklogRoom();
      // The job and its count in the ledger are written together: received is exact. A fixed job
      // id and a count applied once keep it so when a lost reply makes ioredis run it twice.
      const jobId = randomUUID();
      const stored = encodeStoredBatch(impressions);
      const { queues, batches, ledger } = deps.stores.partitionFor(environmentId);
      const multi = await queueTransaction(queues.ingest);
      batches.writeIn(multi, jobId, stored);
      await addJobsTo(multi, queues.ingest, [{ name: 'impressions', data: { environmentId, batchId: jobId, count: impressions.length }, opts: { jobId } }]);
      ledger.countReceived(multi, environmentId, impressions.length, `received:${jobId}`);
      try {
        await execAll(multi);
      } catch (error) {
        // The reply may have been lost after the transaction ran (a dropped connection): its count
        // marker says whether it did. Accepted then; otherwise the client is told to retry.
        if (!(await ledger.wasCounted(`received:${jobId}`, 2_000))) throw error;
      }
      deps.metrics.impressionsReceived.inc({ source }, impressions.length);
      deps.metrics.ingestRequestImpressions.observe({ source }, impressions.length);
      return impressions.length;
    },
  };
}
export type IngestService = ReturnType<typeof createIngestService>;
