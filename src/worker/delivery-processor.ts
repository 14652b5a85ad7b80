import { DelayedError, type Job, type MinimalJob } from 'bullmq';
import type { Logger } from 'pino';
import type { ConnectorPlatform, RejectCode } from '../connectors/connector.js';
import { deliverBatch, type RejectedItem } from '../delivery/deliver-batch.js';
import type { Impression } from '../domain/impression.js';
import type { Metrics } from '../observability/metrics.js';
import type { DeliveryFailureLog } from '../observability/delivery-failure-log.js';
import type { DeadLetter } from '../domain/dead-letter.js';
import { type DeliveryJobData, deliveryJobCount, execAll, queueTransaction } from '../queues/queues.js';
import type { StoredBatchStore } from '../stores/stored-batch-store.js';
import { type JobItems, jobDataFor, resolveJobItems, rowsByBatch } from './job-items.js';
import type { Queue } from 'bullmq';
import type { LedgerStore } from '../stores/ledger-store.js';
import type { RuntimeDestination } from '../runtime/config-snapshot.js';
import type { ConfigWatcher } from '../runtime/config-watcher.js';
import type { DeadLetterStore } from '../stores/dead-letter-store.js';
import type { HealthStore } from '../stores/health-store.js';
import { ByteBudget } from '../delivery/byte-budget.js';
import { DestinationSlots } from '../delivery/destination-slots.js';
import { countRows } from '../domain/stored-batch.js';
import type { RateLimiter } from '../delivery/rate-limiter.js';
import { onceName } from '../stores/once-marks.js';

/** Thrown to make BullMQ retry the job; the backoff strategy reads `retryAfterMs`. */
export class RetryDeliveryError extends Error {
  constructor(
    message: string,
    readonly retryAfterMs: number | undefined,
  ) {
    super(message);
    this.name = 'RetryDeliveryError';
  }
}

export interface DeliveryProcessorDeps {
  readonly config: ConfigWatcher;
  readonly deadLetters: DeadLetterStore;
  readonly ledger: LedgerStore;
  readonly batches: StoredBatchStore;
  readonly queue: Queue<DeliveryJobData>;
  readonly health: HealthStore;
  readonly rateLimiter: RateLimiter;
  readonly platform: ConnectorPlatform;
  readonly metrics: Metrics;
  readonly logger: Logger;
  /** One log line per failed attempt, rate-limited per destination. */
  readonly failureLog?: DeliveryFailureLog;
  readonly clock: () => number;
  readonly random: () => number;
  /** Past this age (since the job was created) a batch is dead-lettered instead of retried. */
  readonly maxDeliveryAgeMs: number;
  readonly quickRetries: number;
  readonly quickRetryMinDelayMs: number;
  /** Aborts requests in flight on shutdown. */
  readonly shutdownSignal: AbortSignal;
  /** Crashes of its worker a job may cause beyond its failed attempts before it is dead-lettered. */
  readonly maxJobCrashes: number;
  /** Bytes of impressions (as JSON) this process delivers at once (FLAGSTREAM_DELIVERY_MEMORY_BYTES). */
  readonly memoryBytes?: number;
  /** The process's budget, when several processors (one per partition) share it; else one of `memoryBytes`. */
  readonly budget?: ByteBudget;
}

/** Assumed size (JSON) of a row not read yet, and of an inline impression. */
const unknownRowBytes = 300;

type DeadLetterCode = DeadLetter['reason'];

/** What one attempt settled, written in one transaction (see `settle`). */
interface Settlement {
  readonly delivered: number;
  readonly skipped: number;
  readonly deadLetters: readonly { readonly items: readonly Impression[]; readonly code: DeadLetterCode; readonly error: { readonly message: string; readonly status?: number | undefined } }[];
  /** What stays in the job for a later attempt. */
  readonly remaining: readonly Impression[];
}

export interface DeliverySummary {
  readonly delivered: number;
  readonly skipped: number;
  readonly deadLettered: number;
}

interface CachedClient {
  readonly fingerprint: string;
  readonly client: unknown;
  readonly destination: RuntimeDestination;
}

/**
 * BullMQ adapter of the delivery core. A job ends *completed* once each of its impressions is
 * delivered, skipped or dead-lettered; what is still pending is written back into the job and
 * retried with the destination's backoff. Waiting on a paused, throttled or busy destination
 * moves only that job to the delayed set, so other destinations keep their workers.
 */
export function createDeliveryProcessor(deps: DeliveryProcessorDeps) {
  const clients = new Map<string, CachedClient>();
  const slots = new DestinationSlots();
  const budget = deps.budget ?? new ByteBudget(deps.memoryBytes ?? 32 * 1024 * 1024);
  const jobBytes = (data: DeliveryJobData): number => {
    let bytes = (data.items?.length ?? 0) * unknownRowBytes;
    for (const [batchId, rows] of data.refs ?? []) bytes += countRows(rows) * (deps.batches.bytesPerRow(batchId) ?? unknownRowBytes);
    return Math.ceil(bytes);
  };

  const clientFor = (destination: RuntimeDestination): unknown => {
    const id = destination.destination.id;
    const cached = clients.get(id);
    if (cached !== undefined && cached.fingerprint === destination.settingsFingerprint) return cached.client;
    if (cached !== undefined) void cached.destination.connector?.closeClient?.(cached.client);
    const client = destination.connector?.createClient(destination.settings, deps.platform);
    clients.set(id, { fingerprint: destination.settingsFingerprint, client, destination });
    return client;
  };

  const jitter = (ms: number, spread = 0.2) => Math.round(ms * (1 - spread / 2 + deps.random() * spread));

  const delay = async (job: Job<DeliveryJobData>, token: string | undefined, waitMs: number): Promise<never> => {
    await job.moveToDelayed(deps.clock() + Math.max(1, Math.round(waitMs)), token);
    throw new DelayedError();
  };

  /**
   * Writes an attempt's result at once: its dead letters, its ledger counts and the job's data
   * cut down to what is still pending. A crash before this changes nothing (the attempt is re-run
   * on the same items); after it, a re-run sees only the pending items, so nothing is counted or
   * dead-lettered twice and nothing delivered is sent again.
   */
  const settle = async (job: Job<DeliveryJobData>, resolved: JobItems, result: Settlement): Promise<number> => {
    const { destinationId, environmentId } = job.data;
    const { items, origins, missing } = resolved;
    const deadLettered = result.deadLetters.reduce((sum, letter) => sum + letter.items.length, 0);
    const unchanged = result.remaining.length === items.length && result.remaining.every((item, index) => item === items[index]);
    if (unchanged && missing.size === 0 && deadLettered === 0 && result.delivered === 0 && result.skipped === 0) return 0;
    const now = deps.clock();
    const multi = await queueTransaction(deps.queue);
    for (const letter of result.deadLetters) {
      if (letter.items.length === 0) continue;
      deps.deadLetters.recordIn(multi, {
        // Same job and same impressions → same record.
        key: `${job.id ?? ''}:${letter.code}:${letter.items.map((i) => i.id).join(',')}`,
        destinationId,
        environmentId,
        connectorType: deps.config.current().destinations.get(destinationId)?.destination.type ?? 'unknown',
        reason: letter.code,
        error: { message: letter.error.message, ...(letter.error.status === undefined ? {} : { status: letter.error.status }) },
        impressions: [...letter.items],
        attempts: job.attemptsMade + 1,
        // The job is created when its batch is first ready to send (BullMQ resets processedOn on every attempt).
        firstAttemptAt: job.timestamp,
        lastAttemptAt: now,
      });
    }
    // Named by the job and its settlement count: the same transaction run twice counts once.
    const settlement = job.data.settlements ?? 0;
    deps.ledger.countSettled(multi, destinationId, environmentId, result.delivered, result.skipped, onceName(job.id ?? '', `settled:${settlement}`));
    const data: DeliveryJobData = { ...jobDataFor(job.data, result.remaining, origins), settlements: settlement + 1 };
    multi.hset(deps.queue.toKey(job.id ?? ''), { data: JSON.stringify(data) });
    // The rows settled here no longer need their stored batches (a batch nobody needs is deleted).
    const released = rowsByBatch(items, origins);
    for (const [batchId, count] of rowsByBatch(result.remaining, origins)) released.set(batchId, (released.get(batchId) ?? 0) - count);
    for (const [batchId, count] of missing) released.set(batchId, (released.get(batchId) ?? 0) + count);
    for (const [batchId, count] of released) if (count === 0) released.delete(batchId);
    deps.batches.releaseIn(multi, onceName(job.id ?? '', `settled:${settlement}`), released);
    if (result.remaining.length === 0) deps.ledger.markDeliveryFinished(multi, job.id ?? '');
    await execAll(multi);
    job.data = data;
    for (const letter of result.deadLetters) {
      if (letter.items.length === 0) continue;
      deps.metrics.deadLetters.inc({ destination: destinationId, reason: letter.code }, letter.items.length);
      deps.metrics.deliveryItems.inc({ destination: destinationId, outcome: 'dead_lettered' }, letter.items.length);
      deps.logger.warn({ destinationId, reason: letter.code, count: letter.items.length, error: letter.error.message, status: letter.error.status }, 'impressions dead-lettered');
    }
    return deadLettered;
  };

  /** The job's impressions; rows whose stored batch is gone are reported (they are released with the next settlement). */
  const resolve = async (job: Job<DeliveryJobData>): Promise<JobItems> => {
    const resolved = await resolveJobItems(deps.batches, job.data);
    if (resolved.missing.size > 0) {
      const lost = [...resolved.missing.values()].reduce((sum, n) => sum + n, 0);
      deps.logger.error({ destinationId: job.data.destinationId, jobId: job.id, lost }, 'stored batches of a delivery job are gone (past their retention); their impressions cannot be delivered');
    }
    return resolved;
  };

  /**
   * Waits on a paused or disabled destination, for as long as it takes. A job old enough that its
   * stored batches could expire first takes its impressions inline before it waits on.
   */
  const waitForDestination = async (job: Job<DeliveryJobData>, token: string | undefined, waitMs: number): Promise<never> => {
    if ((job.data.refs?.length ?? 0) > 0 && deps.clock() - job.timestamp >= deps.maxDeliveryAgeMs) {
      const resolved = await resolve(job);
      // Copies are not rows of a batch: the job keeps them inline, and its references are released.
      await settle(job, resolved, { delivered: 0, skipped: 0, deadLetters: [], remaining: resolved.items.map((item) => ({ ...item })) });
    }
    return delay(job, token, waitMs);
  };

  const deadLetterAll = async (job: Job<DeliveryJobData>, code: DeadLetterCode, message: string): Promise<DeliverySummary> => {
    const resolved = await resolve(job);
    const deadLettered = await settle(job, resolved, { delivered: 0, skipped: 0, deadLetters: [{ items: resolved.items, code, error: { message } }], remaining: [] });
    return { delivered: 0, skipped: 0, deadLettered };
  };

  const groupRejected = (rejected: readonly RejectedItem[]): Settlement['deadLetters'] => {
    const groups = new Map<string, { items: Impression[]; code: RejectCode; error: { message: string; status?: number | undefined } }>();
    for (const r of rejected) {
      const group = `${r.code}\u0000${r.status ?? ''}\u0000${r.reason}`;
      const existing = groups.get(group);
      if (existing === undefined) groups.set(group, { items: [r.item], code: r.code, error: { message: r.reason, status: r.status } });
      else existing.items.push(r.item);
    }
    return [...groups.values()];
  };

  const processJob = async (job: Job<DeliveryJobData>, token?: string): Promise<DeliverySummary> => {
    const { destinationId } = job.data;
    const count = deliveryJobCount(job.data);
    const now = deps.clock();
    // Added again by a re-sent transaction after it had finished: nothing left to do.
    if (count === 0 || (await deps.ledger.isDeliveryFinished(job.id ?? ''))) return { delivered: 0, skipped: 0, deadLettered: 0 };
    // A job that keeps killing its worker (each crash leaves it stalled, without a failed attempt)
    // must end too: past its budget it is dead-lettered before it can crash anything again.
    if (job.stalledCounter > deps.maxJobCrashes + job.attemptsMade) {
      return deadLetterAll(job, 'worker_crashed', `the job was in progress when its worker stopped ${job.stalledCounter} times`);
    }
    const destination = deps.config.current().destinations.get(destinationId);
    if (destination === undefined) return deadLetterAll(job, 'destination_deleted', `destination "${destinationId}" no longer exists`);
    const policy = destination.destination.delivery;

    // Work for a disabled or paused destination waits; it is never dropped. Resume and enable
    // promote waiting jobs at once, so these re-checks can be rare (cheap with big backlogs).
    if (!destination.destination.enabled) return waitForDestination(job, token, jitter(30_000));
    const health = await deps.health.current(destinationId);
    if (health.state === 'paused') return waitForDestination(job, token, jitter(60_000));
    if (health.state === 'open') {
      const probeAt = health.nextProbeAt ?? now;
      if (now < probeAt) return delay(job, token, probeAt - now + jitter(500, 1));
      if (!(await deps.health.acquireProbe(destinationId, policy.circuitBreakerCooldown))) return delay(job, token, jitter(policy.circuitBreakerCooldown));
    }

    if (destination.connector === undefined || destination.limits === undefined || destination.settingsError !== undefined) {
      // Settings stored by another version may not parse here: keep the work until they are fixed.
      throw new RetryDeliveryError(`destination "${destinationId}" is misconfigured: ${destination.settingsError ?? 'unknown'}`, undefined);
    }
    const limits = destination.limits;
    const concurrency = policy.maxConcurrentRequests ?? limits.maxConcurrentRequests;
    const requestsPerSecond = policy.requestsPerSecond ?? limits.requestsPerSecond;
    if (requestsPerSecond !== undefined) {
      const paced = await deps.rateLimiter.reserve(destinationId, Math.ceil(count / limits.maxItemsPerRequest), requestsPerSecond, now);
      if (paced > 0) return delay(job, token, paced + jitter(50, 1));
    }

    // Checked before the job's rows are read: a busy destination costs no decoding.
    if (!(await slots.acquire(destinationId, concurrency))) return delay(job, token, jitter(200, 1));
    const bytes = jobBytes(job.data);
    if (!(await budget.acquire(bytes, 1_000))) {
      slots.release(destinationId);
      return delay(job, token, jitter(500, 1));
    }
    let attempt;
    let resolved: JobItems;
    try {
      resolved = await resolve(job);
      attempt = await deliverBatch(
        resolved.items,
        {
          destinationId,
          connector: destination.connector,
          settings: destination.settings,
          limits,
          client: clientFor(destination),
          timeoutMs: limits.requestTimeoutMs ?? policy.timeout,
          maxConcurrentRequests: concurrency,
        },
        {
          now: deps.clock,
          signal: deps.shutdownSignal,
          quickRetries: deps.quickRetries,
          quickRetryMinDelayMs: deps.quickRetryMinDelayMs,
          jsonArray: resolved.jsonArray,
          onRequest: (outcome, seconds, itemCount) => {
            deps.metrics.deliveryRequests.inc({ destination: destinationId, outcome });
            deps.metrics.deliveryDuration.observe({ destination: destinationId }, seconds);
            deps.metrics.deliveryRequestItems.observe({ destination: destinationId }, itemCount);
          },
        },
      );
    } finally {
      budget.release(bytes);
      slots.release(destinationId);
    }

    deps.metrics.deliveryItems.inc({ destination: destinationId, outcome: 'delivered' }, attempt.delivered);
    observeLatency(deps.metrics, destinationId, attempt.deliveredItems, deps.clock());
    if (attempt.skipped > 0) deps.metrics.deliveryItems.inc({ destination: destinationId, outcome: 'skipped' }, attempt.skipped);
    const settled = { delivered: attempt.delivered, skipped: attempt.skipped };
    const rejected = groupRejected(attempt.rejected);
    const summary = (deadLettered: number) => ({ ...settled, deadLettered });

    if (attempt.pending.length === 0) {
      const deadLettered = await settle(job, resolved, { ...settled, deadLetters: rejected, remaining: [] });
      if (attempt.delivered > 0 || attempt.requests > 0) {
        await deps.health.recordSuccess(destinationId, deps.clock());
        deps.failureLog?.succeeded(destinationId);
      }
      return summary(deadLettered);
    }

    if (deps.shutdownSignal.aborted) {
      // Cut short by our own shutdown: not the destination's failure, and no attempt is used.
      const deadLettered = await settle(job, resolved, { ...settled, deadLetters: rejected, remaining: attempt.pending });
      deps.logger.info({ destinationId, pending: attempt.pending.length, deadLettered }, 'delivery interrupted by shutdown; handed back to the queue');
      return delay(job, token, 1_000);
    }

    const failure = attempt.lastFailure ?? { reason: 'unknown failure' };
    // Being throttled is the destination pacing us, not failing: it does not trip the breaker.
    if (!attempt.throttled) await deps.health.recordFailure(destinationId, deps.clock(), failure.reason, policy.circuitBreakerThreshold, policy.circuitBreakerCooldown);
    deps.metrics.deliveryItems.inc({ destination: destinationId, outcome: 'retried' }, attempt.pending.length);

    const age = deps.clock() - job.timestamp;
    if (age >= deps.maxDeliveryAgeMs) {
      const expired = { items: attempt.pending, code: 'max_age_exceeded' as const, error: { message: `still failing after ${Math.round(age / 1000)} s: ${failure.reason}`, status: failure.status } };
      return summary(await settle(job, resolved, { ...settled, deadLetters: [...rejected, expired], remaining: [] }));
    }
    const isLastAttempt = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
    if (isLastAttempt && !attempt.throttled) {
      const exhausted = { items: attempt.pending, code: 'retries_exhausted' as const, error: { message: failure.reason, status: failure.status } };
      return summary(await settle(job, resolved, { ...settled, deadLetters: [...rejected, exhausted], remaining: [] }));
    }

    // Only what is still pending is retried: delivered impressions are never sent twice.
    await settle(job, resolved, { ...settled, deadLetters: rejected, remaining: attempt.pending });
    const failed = { destinationId, reason: failure.reason, status: failure.status, attempt: job.attemptsMade + 1, pending: attempt.pending.length };
    if (attempt.throttled) {
      // Throttling is the destination asking us to slow down, not a failure: no attempt is consumed.
      const wait = attempt.retryAfterMs ?? jitter(policy.retrySchedule[Math.min(job.attemptsMade, policy.retrySchedule.length - 1)] ?? 5_000);
      deps.failureLog?.failed({ ...failed, nextTryAt: deps.clock() + wait, throttled: true });
      return delay(job, token, wait);
    }
    // The wait is decided here (the backoff strategy returns it) so that the log can tell it.
    const wait = attempt.retryAfterMs ?? retryDelayMs(policy.retrySchedule, job.attemptsMade + 1, deps.random);
    deps.failureLog?.failed({ ...failed, nextTryAt: deps.clock() + wait, throttled: false });
    throw new RetryDeliveryError(failure.reason, wait);
  };

  return async (job: Job<DeliveryJobData>, token?: string): Promise<DeliverySummary> => {
    try {
      return await processJob(job, token);
    } catch (error) {
      // A bug, a misconfiguration or Redis trouble: retried like a failed delivery, and on the
      // last attempt dead-lettered rather than left in BullMQ's failed set, where no one looks.
      if (error instanceof DelayedError || job.attemptsMade + 1 < (job.opts.attempts ?? 1)) throw error;
      const message = error instanceof Error ? error.message : String(error);
      deps.logger.error({ err: error, destinationId: job.data.destinationId, jobId: job.id }, 'delivery failed unexpectedly on its last attempt');
      return deadLetterAll(job, error instanceof RetryDeliveryError ? 'retries_exhausted' : 'internal_error', message);
    }
  };
}

/** BullMQ backoff strategy `destination`: Retry-After when the destination gave one, else its schedule. */
export function createDeliveryBackoff(deps: { config: ConfigWatcher; random: () => number }) {
  return (attemptsMade: number, _type?: string, error?: Error, job?: MinimalJob): number => {
    if (error instanceof RetryDeliveryError && error.retryAfterMs !== undefined) return error.retryAfterMs;
    const destinationId = (job?.data as DeliveryJobData | undefined)?.destinationId;
    const schedule = destinationId === undefined ? undefined : deps.config.current().destinations.get(destinationId)?.destination.delivery.retrySchedule;
    return retryDelayMs(schedule ?? [5_000], attemptsMade, deps.random);
  };
}

/** The wait after the `attemptsMade`-th failed attempt: the schedule's step, ±10 % so that batches failed together do not retry together. */
export function retryDelayMs(schedule: readonly number[], attemptsMade: number, random: () => number): number {
  const base = schedule[Math.min(Math.max(attemptsMade - 1, 0), schedule.length - 1)] ?? 5_000;
  return Math.round(base * (0.9 + random() * 0.2));
}

/** Ingest-to-delivery latency of each delivered impression (one observation per impression, no Redis call). */
function observeLatency(metrics: Metrics, destinationId: string, delivered: readonly Impression[], now: number): void {
  if (delivered.length === 0) return;
  const histogram = metrics.deliveryLatency.labels({ destination: destinationId });
  for (const item of delivered) histogram.observe(Math.max(0, now - item.receptionTimestamp) / 1000);
}
