import { Job, type Queue } from 'bullmq';
import type { Logger } from 'pino';
import type { ChainableCommander } from 'ioredis';
import { routingStage } from '../domain/dead-letter.js';
import type { Impression } from '../domain/impression.js';
import { impressionsOf } from '../domain/stored-batch.js';
import { type DeliveryJobData, execAll, ingestJobBatchIds, type IngestJobData, queueTransaction, type Queues } from '../queues/queues.js';
import type { DeadLetterStore } from '../stores/dead-letter-store.js';
import type { StoredBatchStore } from '../stores/stored-batch-store.js';
import { resolveJobItems, rowsByBatch } from './job-items.js';
import { onceName } from '../stores/once-marks.js';

interface SweptLetter {
  readonly destinationId: string;
  readonly environmentId: string;
  readonly impressions: Impression[];
  /** Queues the release of the job's references to stored batches (once per job). */
  readonly release: (multi: ChainableCommander) => void;
}

/** Jobs read per sweep and queue: a bounded read, however many failed. */
const pageSize = 50;

/**
 * The last line of "every failure ends": the processors settle every job themselves, so BullMQ's
 * failed sets stay empty unless something outside them failed a job (a lost lock, a BullMQ
 * error, a version that behaved differently). Each such job becomes a dead letter (its
 * impressions, reason `internal_error`, BullMQ's reason as the message) and leaves the failed
 * set in the same transaction, so nothing sits where no one looks.
 */
export async function sweepFailedJobs(deps: { queues: Queues; deadLetters: DeadLetterStore; batches: StoredBatchStore; logger: Logger; clock: () => number }): Promise<number> {
  let swept = 0;
  const sweep = async <T>(queue: Queue<T>, toLetter: (data: T, jobId: string) => Promise<SweptLetter>) => {
    const ids = await queue.getRanges(['failed'], 0, pageSize - 1);
    for (const id of ids) {
      const job = await Job.fromId<T>(queue, id);
      if (job === undefined) continue;
      const { release, ...letter } = await toLetter(job.data, id);
      const multi = await queueTransaction(queue);
      release(multi);
      if (letter.impressions.length > 0) {
        deps.deadLetters.recordIn(multi, {
          key: `failed:${queue.name}:${id}`,
          ...letter,
          connectorType: letter.destinationId === routingStage ? 'routing' : 'unknown',
          reason: 'internal_error',
          error: { message: `left in the ${queue.name} queue's failed set: ${job.failedReason || 'no reason given'}` },
          attempts: job.attemptsMade,
          firstAttemptAt: job.timestamp,
          lastAttemptAt: deps.clock(),
        });
      }
      multi.zrem(queue.keys.failed ?? queue.toKey('failed'), id).del(queue.toKey(id), queue.toKey(`${id}:logs`));
      await execAll(multi);
      deps.logger.error({ queue: queue.name, jobId: id, reason: job.failedReason, count: letter.impressions.length }, 'a job had failed outside flagstream; dead-lettered');
      swept += 1;
    }
  };
  await sweep<IngestJobData>(deps.queues.ingest, async (data, jobId) => {
    const batchIds = ingestJobBatchIds(data);
    const loaded = await deps.batches.load(batchIds);
    const impressions = data.impressions ?? batchIds.flatMap((batchId) => {
      const batch = loaded.get(batchId);
      return batch === undefined ? [] : impressionsOf(batch);
    });
    const release = (multi: ChainableCommander) => {
      if (batchIds.length > 0) deps.batches.releaseIn(multi, onceName(jobId, 'hold'), new Map(batchIds.map((batchId) => [batchId, 1])));
    };
    return { destinationId: routingStage, environmentId: data.environmentId, impressions, release };
  });
  await sweep<DeliveryJobData>(deps.queues.delivery, async (data, jobId) => {
    const { items, origins, missing } = await resolveJobItems(deps.batches, data);
    const released = rowsByBatch(items, origins);
    for (const [batchId, count] of missing) released.set(batchId, (released.get(batchId) ?? 0) + count);
    return { destinationId: data.destinationId, environmentId: data.environmentId, impressions: items, release: (multi) => deps.batches.releaseIn(multi, onceName(jobId, 'swept'), released) };
  });
  return swept;
}
