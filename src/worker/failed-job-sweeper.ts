import { Job, type Queue } from 'bullmq';
import type { Logger } from 'pino';
import { routingStage } from '../domain/dead-letter.js';
import { type DeliveryJobData, execAll, type IngestJobData, queueTransaction, type Queues } from '../queues/queues.js';
import type { DeadLetterStore } from '../stores/dead-letter-store.js';

/** Jobs read per sweep and queue: a bounded read, however many failed. */
const pageSize = 50;

/**
 * The last line of "every failure ends": the processors settle every job themselves, so BullMQ's
 * failed sets stay empty unless something outside them failed a job (a lost lock, a BullMQ
 * error, a version that behaved differently). Each such job becomes a dead letter (its
 * impressions, reason `internal_error`, BullMQ's reason as the message) and leaves the failed
 * set in the same transaction, so nothing sits where no one looks.
 */
export async function sweepFailedJobs(deps: { queues: Queues; deadLetters: DeadLetterStore; logger: Logger; clock: () => number }): Promise<number> {
  let swept = 0;
  const sweep = async <T>(queue: Queue<T>, toLetter: (data: T) => { destinationId: string; environmentId: string; impressions: IngestJobData['impressions'] }) => {
    const ids = await queue.getRanges(['failed'], 0, pageSize - 1);
    for (const id of ids) {
      const job = await Job.fromId<T>(queue, id);
      if (job === undefined) continue;
      const letter = toLetter(job.data);
      const multi = await queueTransaction(queue);
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
  await sweep<IngestJobData>(deps.queues.ingest, (data) => ({ destinationId: routingStage, environmentId: data.environmentId, impressions: data.impressions }));
  await sweep<DeliveryJobData>(deps.queues.delivery, (data) => ({ destinationId: data.destinationId, environmentId: data.environmentId, impressions: data.items }));
  return swept;
}
