import { randomUUID } from 'node:crypto';
import type { JobsOptions, Queue } from 'bullmq';
import type { ChainableCommander } from 'ioredis';
import type { Impression } from '../domain/impression.js';
import { addJobsTo, type DeliveryJobData, execAll, queueTransaction } from '../queues/queues.js';
import type { RuntimeDestination } from '../runtime/config-snapshot.js';
import type { LedgerStore } from '../stores/ledger-store.js';
import type { StagingBuffer } from './staging-buffer.js';

interface PendingBatch {
  items: Impression[];
  /** The routing jobs whose shares are in this batch: marked written together with it. */
  routingJobIds: Set<string>;
  environmentId: string;
  attempts: number;
  maxItems: number;
  /** The connector wants to wait longer than routing may hold jobs: hand over to the staging buffer. */
  staged: boolean;
  waiters: { resolve: () => void; reject: (error: unknown) => void }[];
  timer: NodeJS.Timeout | undefined;
}

/**
 * Coalesces the impressions that routing jobs send to each destination into delivery jobs of up
 * to the connector's batch size, waiting at most `maxWaitMs` (the smaller of the connector's
 * wait and the platform cap) for a batch to fill. A caller's promise resolves only once its
 * impressions sit durably in a delivery job, so the routing job is acknowledged after that and
 * a crash in between re-runs routing instead of losing anything (at-least-once). Connectors that
 * want longer waits than the cap (S3) get their share appended to the durable staging buffer.
 */
export class DeliveryBatcher {
  private readonly pending = new Map<string, PendingBatch>();
  private heldJobs = 0;

  constructor(
    private readonly queue: Queue<DeliveryJobData>,
    private readonly options: {
      maxWaitCapMs: number;
      staging: StagingBuffer;
      ledger: LedgerStore;
      /** The routing worker's concurrency: when that many jobs wait here, no job can come to fill a batch. */
      maxHeldJobs: number;
    },
  ) {}

  /**
   * Hands one routing job's shares to their destinations' batches; resolves once all of them are
   * durable, and rejects (with the first error) only after every share has settled, so a retry
   * of the job sees exactly which shares were written.
   */
  async addAll(shares: Iterable<readonly [RuntimeDestination, Impression[]]>, routingJobId: string): Promise<void> {
    const written = [...shares].map(([destination, items]) => this.add(destination, items, routingJobId));
    if (written.length === 0) return;
    this.heldJobs += 1;
    // Every routing slot is waiting on a batch: waiting longer cannot fill one, so write what there is.
    if (this.heldJobs >= this.options.maxHeldJobs) for (const [id, batch] of this.pending) void this.flush(id, batch.maxItems);
    let outcomes;
    try {
      outcomes = await Promise.allSettled(written);
    } finally {
      this.heldJobs -= 1;
    }
    for (const outcome of outcomes) if (outcome.status === 'rejected') throw outcome.reason;
  }

  private add(destination: RuntimeDestination, items: Impression[], routingJobId: string): Promise<void> {
    const id = destination.destination.id;
    const maxItems = destination.limits?.maxItemsPerRequest ?? 500;
    const maxWait = Math.min(destination.limits?.maxBatchWaitMs ?? 0, this.options.maxWaitCapMs);
    let batch = this.pending.get(id);
    if (batch === undefined) {
      batch = {
        items: [],
        routingJobIds: new Set(),
        environmentId: destination.environmentId,
        attempts: destination.destination.delivery.retrySchedule.length + 1,
        maxItems,
        staged: (destination.limits?.maxBatchWaitMs ?? 0) > this.options.maxWaitCapMs,
        waiters: [],
        timer: undefined,
      };
      this.pending.set(id, batch);
    }
    for (const item of items) batch.items.push(item);
    batch.routingJobIds.add(routingJobId);
    const promise = new Promise<void>((resolve, reject) => batch.waiters.push({ resolve, reject }));
    if (batch.items.length >= maxItems && !batch.staged) {
      this.flush(id, maxItems);
    } else if (batch.timer === undefined) {
      batch.timer = setTimeout(() => this.flush(id, maxItems), maxWait);
    }
    return promise;
  }

  /** Flushes everything now (shutdown). */
  async drain(): Promise<void> {
    const flushing = [...this.pending.keys()].map((id) => this.flush(id, Number.POSITIVE_INFINITY));
    await Promise.allSettled(flushing);
  }

  private flush(destinationId: string, maxItems: number): Promise<void> {
    const batch = this.pending.get(destinationId);
    if (batch === undefined) return Promise.resolve();
    this.pending.delete(destinationId);
    if (batch.timer !== undefined) clearTimeout(batch.timer);
    const settle = (written: Promise<unknown>) =>
      written.then(
        () => {
          for (const waiter of batch.waiters) waiter.resolve();
        },
        (error: unknown) => {
          for (const waiter of batch.waiters) waiter.reject(error);
        },
      );
    // The batch, its count in the ledger and the markers of its routing jobs: one transaction,
    // safe to run twice (a lost reply is re-sent): fixed job ids, a count applied once per flush.
    const flushId = randomUUID();
    const account = (multi: ChainableCommander) => {
      this.options.ledger.countRouted(multi, destinationId, batch.environmentId, batch.items.length, `routed:${flushId}`);
      for (const jobId of batch.routingJobIds) this.options.ledger.markShareWritten(multi, jobId, destinationId);
    };
    if (batch.staged) return settle(this.options.staging.stage(destinationId, batch.items, flushId, account));
    const size = Number.isFinite(maxItems) ? maxItems : batch.items.length;
    const jobs: { name: string; data: DeliveryJobData; opts: JobsOptions }[] = [];
    for (let start = 0, part = 0; start < batch.items.length; start += size, part += 1) {
      jobs.push({
        name: destinationId,
        data: { destinationId, environmentId: batch.environmentId, items: batch.items.slice(start, start + size) },
        opts: { jobId: `${flushId}-${part}`, attempts: batch.attempts, backoff: { type: 'destination' } },
      });
    }
    return settle(
      (async () => {
        const multi = await queueTransaction(this.queue);
        await addJobsTo(multi, this.queue, jobs);
        account(multi);
        await execAll(multi);
      })(),
    );
  }
}
