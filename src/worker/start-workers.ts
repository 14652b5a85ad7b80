import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { Worker } from 'bullmq';
import { createDestinationGuard } from '../delivery/destination-guard.js';
import { createHttpTransport } from '../delivery/http-transport.js';
import { createRateLimiter } from '../delivery/rate-limiter.js';
import { type DeliveryJobData, deliveryQueueName, type IngestJobData, ingestQueueName, promoteDelayed } from '../queues/queues.js';
import { DeliveryBatcher } from '../routing/delivery-batcher.js';
import { StagingBuffer } from '../routing/staging-buffer.js';
import { type AppContext, durationMs } from '../runtime/app-context.js';
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

export interface RunningWorkers {
  readonly routing: Worker<IngestJobData>;
  readonly delivery: Worker<DeliveryJobData>;
  readonly staging: StagingBuffer;
  /** Deliveries still in flight `abortInFlightAfterMs` (default 10 s) after close begins are aborted (and retried later). */
  close(options?: { abortInFlightAfterMs?: number }): Promise<void>;
}

const userAgent = 'flagstream/0.1 (+https://github.com/flagstream/flagstream)';

/**
 * The worker role: one routing worker and one delivery worker per process, whatever the number
 * of destinations (isolation comes from per-destination delays, not a queue per destination).
 */
export function startWorkers(ctx: AppContext, options: WorkerOptions = {}): RunningWorkers {
  const { env, redis, keys } = ctx;
  const random = options.random ?? Math.random;
  const shutdown = new AbortController();
  const transport = createHttpTransport({ guard: createDestinationGuard(env.FLAGSTREAM_DESTINATION_ALLOWLIST.split(',')), userAgent });
  const staging = new StagingBuffer({ redis, keys, queue: ctx.queues.delivery, config: () => ctx.config.current(), logger: ctx.logger, clock: ctx.clock });
  staging.start(options.stagingIntervalMs ?? 1000);
  // A job whose worker died is taken over once its lock lapses (checked at the same interval).
  // BullMQ would fail a job stalled more than maxStalledCount times over its whole life (days of
  // retries), silently; the processors apply their own crash budget instead (FLAGSTREAM_MAX_JOB_CRASHES),
  // relative to the job's failed attempts, and dead-letter past it.
  const locking = { lockDuration: env.FLAGSTREAM_JOB_LOCK_MS, stalledInterval: env.FLAGSTREAM_JOB_LOCK_MS, maxStalledCount: 1_000_000 };
  const batcher = new DeliveryBatcher(ctx.queues.delivery, { maxWaitCapMs: env.FLAGSTREAM_BATCH_WAIT_CAP_MS, staging, ledger: ctx.ledger, batches: ctx.batches, maxHeldJobs: env.FLAGSTREAM_ROUTING_CONCURRENCY });

  const failureLog = createDeliveryFailureLog({ logger: ctx.logger, clock: ctx.clock, windowMs: options.failureLogWindowMs ?? 60_000 });

  const routing = new Worker<IngestJobData>(
    ingestQueueName,
    createRouteProcessor({
      config: ctx.config,
      batcher,
      stats: ctx.stats,
      ledger: ctx.ledger,
      batches: ctx.batches,
      deadLetters: ctx.deadLetters,
      metrics: ctx.metrics,
      logger: ctx.logger,
      clock: ctx.clock,
      tail: createTailPublisher({ redis, keys, clock: ctx.clock, checkIntervalMs: options.tailCheckIntervalMs ?? 1000 }),
      maxJobCrashes: env.FLAGSTREAM_MAX_JOB_CRASHES,
    }),
    { connection: redis, prefix: keys.bullPrefix, concurrency: env.FLAGSTREAM_ROUTING_CONCURRENCY, ...locking },
  );
  const delivery = new Worker<DeliveryJobData>(
    deliveryQueueName,
    createDeliveryProcessor({
      config: ctx.config,
      deadLetters: ctx.deadLetters,
      ledger: ctx.ledger,
      queue: ctx.queues.delivery,
      health: ctx.health,
      batches: ctx.batches,
      rateLimiter: createRateLimiter({ redis, keys }),
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
      memoryBytes: env.FLAGSTREAM_DELIVERY_MEMORY_BYTES,
    }),
    {
      connection: redis,
      prefix: keys.bullPrefix,
      concurrency: env.FLAGSTREAM_DELIVERY_CONCURRENCY,
      ...locking,
      settings: { backoffStrategy: createDeliveryBackoff({ config: ctx.config, random }) },
    },
  );
  let closing = false;
  const restarts = new Map<Worker, NodeJS.Timeout>();
  for (const worker of [routing, delivery]) {
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
        promoteDelayed(ctx.queues.delivery, id).catch((error: unknown) => ctx.logger.warn({ err: error, destinationId: id }, 'could not release waiting work'));
      }
    }
    previous = snapshot;
  });
  const trim = setInterval(() => {
    ctx.deadLetters.trim(ctx.clock()).catch((error: unknown) => ctx.logger.warn({ err: error }, 'dead letter trim failed'));
  }, 3_600_000);
  trim.unref();
  const sweepFailed = () => {
    sweepFailedJobs({ queues: ctx.queues, deadLetters: ctx.deadLetters, batches: ctx.batches, logger: ctx.logger, clock: ctx.clock }).catch((error: unknown) => ctx.logger.warn({ err: error }, 'failed-job sweep failed; will retry'));
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

  return {
    routing,
    delivery,
    staging,
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
      await staging.stop();
      // Routing first (its batcher flushes what it holds), then delivery; in-flight requests get aborted last.
      await routing.close();
      await batcher.drain();
      await delivery.close();
      clearTimeout(force);
      transport.close();
      failureLog.close();
    },
  };
}
