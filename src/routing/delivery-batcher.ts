import { randomUUID } from 'node:crypto';
import type { JobsOptions, Queue } from 'bullmq';
import type { ChainableCommander } from 'ioredis';
import { encodeRows, type RoutingView, type StoredRowsRef } from '../domain/stored-batch.js';
import { addJobsTo, type DeliveryJobData, execAll, queueTransaction } from '../queues/queues.js';
import type { RuntimeDestination } from '../runtime/config-snapshot.js';
import type { LedgerStore } from '../stores/ledger-store.js';
import type { StoredBatchStore } from '../stores/stored-batch-store.js';
import type { StagingBuffer } from './staging-buffer.js';
import { onceName } from '../stores/once-marks.js';

/**
 * One routing job's share for one destination: rows of its stored batches, read through `view`.
 * Added whole to one pending batch, so it is written in one transaction with its job's marker.
 */
export interface Share {
  readonly refs: readonly (readonly [batchId: string, rows: readonly number[]])[];
  readonly view: RoutingView;
}

/** References to rows of stored batches, bound for one destination: what delivery jobs and the staging buffer carry. */
export interface RowsBundle {
  readonly environmentId: string;
  readonly refs: StoredRowsRef[];
  readonly view: RoutingView;
  readonly count: number;
}

/** Rows per stored batch of a bundle: what its references hold in the batch store. */
export function rowsPerBatch(refs: readonly (readonly [string, number])[]): Map<string, number> {
  const rows = new Map<string, number>();
  for (const [batchId, count] of refs) rows.set(batchId, (rows.get(batchId) ?? 0) + count);
  return rows;
}

/** Cuts references into parts of at most `size` rows each, in order. */
export function splitRefs(refs: ReadonlyMap<string, readonly number[]>, size: number): { refs: StoredRowsRef[]; counts: [string, number][]; count: number }[] {
  const parts: { refs: StoredRowsRef[]; counts: [string, number][]; count: number }[] = [];
  let current: { refs: StoredRowsRef[]; counts: [string, number][]; count: number } = { refs: [], counts: [], count: 0 };
  for (const [batchId, rows] of refs) {
    for (let start = 0; start < rows.length; ) {
      const take = Math.min(size - current.count, rows.length - start);
      current.refs.push([batchId, encodeRows(rows.slice(start, start + take))]);
      current.counts.push([batchId, take]);
      current.count += take;
      start += take;
      if (current.count >= size) {
        parts.push(current);
        current = { refs: [], counts: [], count: 0 };
      }
    }
  }
  if (current.count > 0) parts.push(current);
  return parts;
}

/** The views of shares gathered into one job: the latest label setting, every flag's traffic type. */
export function mergeView(into: RoutingView | undefined, view: RoutingView): RoutingView {
  if (into === undefined) return view;
  return { labels: view.labels, trafficTypes: { ...into.trafficTypes, ...view.trafficTypes } };
}

interface PendingBatch {
  /** batch id → rows, in the order they came */
  refs: Map<string, number[]>;
  count: number;
  view: RoutingView | undefined;
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
      batches: StoredBatchStore;
      /** The routing worker's concurrency: when that many jobs wait here, no job can come to fill a batch. */
      maxHeldJobs: number;
    },
  ) {}

  /**
   * Hands one routing job's shares to their destinations' batches; resolves once all of them are
   * durable, and rejects (with the first error) only after every share has settled, so a retry
   * of the job sees exactly which shares were written.
   */
  async addAll(shares: Iterable<readonly [RuntimeDestination, Share]>, routingJobId: string): Promise<void> {
    const written = [...shares].map(([destination, share]) => this.add(destination, share, routingJobId));
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

  private add(destination: RuntimeDestination, share: Share, routingJobId: string): Promise<void> {
    const id = destination.destination.id;
    const maxItems = destination.limits?.maxItemsPerRequest ?? 500;
    const maxWait = Math.min(destination.limits?.maxBatchWaitMs ?? 0, this.options.maxWaitCapMs);
    let batch = this.pending.get(id);
    if (batch === undefined) {
      batch = {
        refs: new Map(),
        count: 0,
        view: undefined,
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
    for (const [batchId, shareRows] of share.refs) {
      const rows = batch.refs.get(batchId);
      if (rows === undefined) batch.refs.set(batchId, [...shareRows]);
      else for (const row of shareRows) rows.push(row);
      batch.count += shareRows.length;
    }
    batch.view = mergeView(batch.view, share.view);
    batch.routingJobIds.add(routingJobId);
    const promise = new Promise<void>((resolve, reject) => batch.waiters.push({ resolve, reject }));
    if (batch.count >= maxItems && !batch.staged) {
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
    // The batch, its count in the ledger, its references to the stored batches and the markers of
    // its routing jobs: one transaction, safe to run twice (a lost reply is re-sent): fixed job
    // ids, a count and references applied once per flush.
    const flushId = randomUUID();
    const view = batch.view ?? { labels: true, trafficTypes: {} };
    const account = (multi: ChainableCommander) => {
      this.options.ledger.countRouted(multi, destinationId, batch.environmentId, batch.count, onceName(flushId, 'routed'));
      this.options.batches.retainIn(multi, onceName(flushId, 'routed'), rowsPerBatch([...batch.refs].map(([batchId, rows]) => [batchId, rows.length])));
      for (const jobId of batch.routingJobIds) this.options.ledger.markShareWritten(multi, jobId, destinationId);
    };
    if (batch.staged) {
      const refs = [...batch.refs].map(([batchId, rows]): StoredRowsRef => [batchId, encodeRows(rows)]);
      return settle(this.options.staging.stage(destinationId, { environmentId: batch.environmentId, refs, view, count: batch.count }, flushId, account));
    }
    const size = Number.isFinite(maxItems) ? maxItems : batch.count;
    const jobs: { name: string; data: DeliveryJobData; opts: JobsOptions }[] = splitRefs(batch.refs, size).map((part, index) => ({
      name: destinationId,
      data: { destinationId, environmentId: batch.environmentId, refs: part.refs, view },
      opts: { jobId: `${flushId}-${index}`, attempts: batch.attempts, backoff: { type: 'destination' } },
    }));
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
