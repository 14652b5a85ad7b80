import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { Worker } from 'bullmq';
import { createDestinationGuard } from '../delivery/destination-guard.js';
import { createHttpTransport } from '../delivery/http-transport.js';
import { createRateLimiter } from '../delivery/rate-limiter.js';
import { type DeliveryJobData, deliveryQueueName, type IngestJobData, ingestQueueName, promoteDelayed } from '../queues/queues.js';
import { DeliveryBatcher } from '../routing/delivery-batcher.js';
import { StagingBuffer } from '../routing/staging-buffer.js';
import { type AppContext, durationMs, type Stores } from '../runtime/app-context.js';
import { ByteBudget } from '../delivery/byte-budget.js';
import { createDeliveryFailureLog } from '../observability/delivery-failure-log.js';
import { createTailPublisher } from '../stores/live-tail-store.js';
import { createWorkerRegistry } from '../stores/worker-registry-store.js';
import { createDeliveryBackoff, createDeliveryProcessor } from './delivery-processor.js';
import { sweepFailedJobs } from './failed-job-sweeper.js';
import { createRouteProcessor } from './route-processor.js';

export interface WorkerOptions {
  readonly quickRetries?: number;
  readonly quickRetryMinDelayMs?: number;
  readonly random?: () => number;
  /** How often the staging buffer looks for due batches. */
  readonly stagingIntervalMs?: number;
  /** How often routing asks whether anyone watches the live tail (default 1 s). */
  readonly tailCheckIntervalMs?: number;
  /** Failed delivery attempts of a destination are logged at most once per this window, plus a summary (default 60 s). */
  readonly failureLogWindowMs?: number;
}

/** The workers of one partition of the data plane (FLAGSTREAM_REDIS_PARTITIONS). */
export interface PartitionWorkers {
  readonly partition: number;
  readonly routing: Worker<IngestJobData>;
  readonly delivery: Worker<DeliveryJobData>;
  readonly staging: StagingBuffer;
}

export interface RunningWorkers extends PartitionWorkers {
  /** Index = partition number; the fields of this object are partition 0's (all of them when not partitioned). */
  readonly partitions: readonly PartitionWorkers[];
  /** Deliveries still in flight `abortInFlightAfterMs` (default 10 s) after close begins are aborted (and retried later). */
  close(options?: { abortInFlightAfterMs?: number }): Promise<void>;
}

const userAgent = 'flagstream/0.1 (+https://github.com/flagstream/flagstream)';

/** `total` shared out over `parts`, at least 1 each (the first ones take the remainder). */
export function shareOut(total: number, parts: number, part: number): number {
  return Math.max(1, Math.floor(total / parts) + (part < total % parts ? 1 : 0));
}

/**
 * The worker role: one routing worker and one delivery worker per partition's queues, whatever the
 * number of destinations (isolation comes from per-destination delays, not a queue per
 * destination). The process's concurrency settings are shared out over the partitions.
 */
export function startWorkers(ctx: AppContext, options: WorkerOptions = {}): RunningWorkers {
  const { env, redis, keys } = ctx;
  const random = options.random ?? Math.random;
  const shutdown = new AbortController();
  const transport = createHttpTransport({ guard: createDestinationGuard(env.FLAGSTREAM_DESTINATION_ALLOWLIST.split(',')), userAgent });
  // A job whose worker died is taken over once its lock lapses (checked at the same interval).
  // BullMQ would fail a job stalled more than maxStalledCount times over its whole life (days of
  // retries), silently; the processors apply their own crash budget instead (FLAGSTREAM_MAX_JOB_CRASHES),
  // relative to the job's failed attempts, and dead-letter past it.
  const locking = { lockDuration: env.FLAGSTREAM_JOB_LOCK_MS, stalledInterval: env.FLAGSTREAM_JOB_LOCK_MS, maxStalledCount: 1_000_000 };
  const failureLog = createDeliveryFailureLog({ logger: ctx.logger, clock: ctx.clock, windowMs: options.failureLogWindowMs ?? 60_000 });
  const tail = createTailPublisher({ redis, keys, clock: ctx.clock, checkIntervalMs: options.tailCheckIntervalMs ?? 1000 });
  const count = ctx.partitions.length;
  // FLAGSTREAM_DELIVERY_MEMORY_BYTES bounds the process, whatever the number of partitions.
  const budget = new ByteBudget(env.FLAGSTREAM_DELIVERY_MEMORY_BYTES);

  const startPartition = (stores: Stores): PartitionWorkers & { batcher: DeliveryBatcher } => {
    const staging = new StagingBuffer({ redis, keys: stores.dataKeys, queue: stores.queues.delivery, config: () => ctx.config.current(), logger: ctx.logger, clock: ctx.clock });
    staging.start(options.stagingIntervalMs ?? 1000);
    const routingConcurrency = shareOut(env.FLAGSTREAM_ROUTING_CONCURRENCY, count, stores.partition);
    const batcher = new DeliveryBatcher(stores.queues.delivery, { maxWaitCapMs: env.FLAGSTREAM_BATCH_WAIT_CAP_MS, staging, ledger: stores.ledger, batches: stores.batches, maxHeldJobs: routingConcurrency });
    const routing = new Worker<IngestJobData>(
      ingestQueueName,
      createRouteProcessor({
        config: ctx.config,
        batcher,
        stats: stores.stats,
        ledger: stores.ledger,
        batches: stores.batches,
        deadLetters: stores.deadLetters,
        metrics: ctx.metrics,
        logger: ctx.logger,
        clock: ctx.clock,
        tail,
        maxJobCrashes: env.FLAGSTREAM_MAX_JOB_CRASHES,
      }),
      { connection: redis, prefix: stores.dataKeys.bullPrefix, concurrency: routingConcurrency, ...locking },
    );
    const delivery = new Worker<DeliveryJobData>(
      deliveryQueueName,
      createDeliveryProcessor({
        config: ctx.config,
        deadLetters: stores.deadLetters,
        ledger: stores.ledger,
        queue: stores.queues.delivery,
        health: stores.health,
        batches: stores.batches,
        rateLimiter: createRateLimiter({ redis, keys: stores.dataKeys }),
        platform: { http: transport },
        metrics: ctx.metrics,
        logger: ctx.logger,
        failureLog,
        clock: ctx.clock,
        random,
        maxDeliveryAgeMs: durationMs(env.FLAGSTREAM_MAX_DELIVERY_AGE, 'FLAGSTREAM_MAX_DELIVERY_AGE'),
        quickRetries: options.quickRetries ?? 2,
        quickRetryMinDelayMs: options.quickRetryMinDelayMs ?? 200,
        shutdownSignal: shutdown.signal,
        maxJobCrashes: env.FLAGSTREAM_MAX_JOB_CRASHES,
        budget,
      }),
      {
        connection: redis,
        prefix: stores.dataKeys.bullPrefix,
        concurrency: shareOut(env.FLAGSTREAM_DELIVERY_CONCURRENCY, count, stores.partition),
        ...locking,
        settings: { backoffStrategy: createDeliveryBackoff({ config: ctx.config, random }) },
      },
    );
    return { partition: stores.partition, routing, delivery, staging, batcher };
  };
  const partitions = ctx.partitions.map(startPartition);
  let closing = false;
  const restarts = new Map<Worker, NodeJS.Timeout>();
  for (const worker of partitions.flatMap((p) => [p.routing, p.delivery])) {
    worker.on('error', (error) => {
      if (!ctx.outages.absorb(error, `worker ${worker.name}`)) ctx.logger.error({ err: error, queue: worker.name }, 'worker error');
      // A run loop that failed (Redis gone while it was starting) stays stopped and the process
      // would keep running with no worker: start it again once Redis may be back.
      if (!closing && !worker.isRunning() && !restarts.has(worker)) {
        const restart = setTimeout(() => {
          restarts.delete(worker);
          if (!closing && !worker.isRunning()) worker.run().catch((failure: unknown) => worker.emit('error', failure as Error));
        }, 1_000);
        restarts.set(worker, restart);
      }
    });
    worker.on('failed', (job, error) => {
      // Expected for retries; a job that lands in the failed set for good is a bug worth a log line.
      if (job !== undefined && job.attemptsMade >= (job.opts.attempts ?? 1)) ctx.logger.error({ err: error, queue: worker.name, jobId: job.id }, 'job failed for good');
    });
  }
  // A destination enabled again (API, CLI or apply) gets its waiting work back at once.
  let previous = ctx.config.current();
  const stopWatching = ctx.config.onChange((snapshot) => {
    for (const [id, destination] of snapshot.destinations) {
      if (destination.destination.enabled && previous.destinations.get(id)?.destination.enabled === false) {
        promoteDelayed(ctx.partitionFor(destination.environmentId).queues.delivery, id).catch((error: unknown) => ctx.logger.warn({ err: error, destinationId: id }, 'could not release waiting work'));
      }
    }
    previous = snapshot;
  });
  const trim = setInterval(() => {
    for (const stores of ctx.partitions) stores.deadLetters.trim(ctx.clock()).catch((error: unknown) => ctx.logger.warn({ err: error, partition: stores.partition }, 'dead letter trim failed'));
  }, 3_600_000);
  trim.unref();
  const sweepFailed = () => {
    for (const stores of ctx.partitions) {
      sweepFailedJobs({ queues: stores.queues, deadLetters: stores.deadLetters, batches: stores.batches, logger: ctx.logger, clock: ctx.clock }).catch((error: unknown) =>
        ctx.logger.warn({ err: error, partition: stores.partition }, 'failed-job sweep failed; will retry'),
      );
    }
  };
  sweepFailed();
  const sweep = setInterval(sweepFailed, 60_000);
  sweep.unref();
  // Announced for /readyz: renewed every 10 s, lapses 30 s after the process stops renewing.
  const workerRegistry = createWorkerRegistry({ redis, keys, clock: ctx.clock });
  const self = { id: randomUUID(), host: hostname(), pid: process.pid, startedAt: new Date(ctx.clock()).toISOString() };
  const announce = () => void workerRegistry.announce(self, 30_000).catch((error: unknown) => ctx.logger.debug({ err: error }, 'worker announcement failed; will retry'));
  announce();
  const heartbeat = setInterval(announce, 10_000);
  heartbeat.unref();

  const first = partitions[0];
  if (first === undefined) throw new Error('no partition to work on');
  return {
    partition: first.partition,
    routing: first.routing,
    delivery: first.delivery,
    staging: first.staging,
    partitions: partitions.map(({ partition, routing, delivery, staging }) => ({ partition, routing, delivery, staging })),
    async close(closeOptions = {}) {
      closing = true;
      for (const restart of restarts.values()) clearTimeout(restart);
      // Counted from the start, wherever closing is when it fires.
      const force = setTimeout(() => shutdown.abort(), closeOptions.abortInFlightAfterMs ?? 10_000);
      clearInterval(trim);
      clearInterval(sweep);
      clearInterval(heartbeat);
      await workerRegistry.remove(self).catch(() => undefined);
      stopWatching();
      await Promise.all(partitions.map((p) => p.staging.stop()));
      // Routing first (its batcher flushes what it holds), then delivery; in-flight requests get aborted last.
      await Promise.all(
        partitions.map(async (p) => {
          await p.routing.close();
          await p.batcher.drain();
          await p.delivery.close();
        }),
      );
      clearTimeout(force);
      transport.close();
      failureLog.close();
    },
  };
}
