import { DelayedError, type Job, type MinimalJob } from 'bullmq';
import type { Logger } from 'pino';
import type { ConnectorPlatform, RejectCode } from '../connectors/connector.js';
import { deliverBatch, type RejectedItem } from '../delivery/deliver-batch.js';
import type { Impression } from '../domain/impression.js';
import type { Metrics } from '../observability/metrics.js';
import type { DeliveryJobData } from '../queues/queues.js';
import type { RuntimeDestination } from '../runtime/config-snapshot.js';
import type { ConfigWatcher } from '../runtime/config-watcher.js';
import type { DeadLetterStore } from '../stores/dead-letter-store.js';
import type { HealthStore } from '../stores/health-store.js';
import { DestinationSlots } from '../delivery/destination-slots.js';
import type { RateLimiter } from '../delivery/rate-limiter.js';

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
  readonly health: HealthStore;
  readonly rateLimiter: RateLimiter;
  readonly platform: ConnectorPlatform;
  readonly metrics: Metrics;
  readonly logger: Logger;
  readonly clock: () => number;
  readonly random: () => number;
  /** Past this age (since the job was created) a batch is dead-lettered instead of retried. */
  readonly maxDeliveryAgeMs: number;
  readonly quickRetries: number;
  readonly quickRetryMinDelayMs: number;
  /** Aborts requests in flight on shutdown. */
  readonly shutdownSignal: AbortSignal;
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

  const deadLetter = async (job: Job<DeliveryJobData>, items: readonly Impression[], code: RejectCode, error: { message: string; status?: number | undefined }): Promise<number> => {
    if (items.length === 0) return 0;
    const { destinationId, environmentId } = job.data;
    const now = deps.clock();
    await deps.deadLetters.record({
      // Same job and same impressions → same record, so a crash before the ack writes it once.
      key: `${job.id ?? ''}:${code}:${items.map((i) => i.id).join(',')}`,
      destinationId,
      environmentId,
      connectorType: deps.config.current().destinations.get(destinationId)?.destination.type ?? 'unknown',
      reason: code,
      error: { message: error.message, ...(error.status === undefined ? {} : { status: error.status }) },
      impressions: [...items],
      attempts: job.attemptsMade + 1,
      // The job is created when its batch is first ready to send (BullMQ resets processedOn on every attempt).
      firstAttemptAt: job.timestamp,
      lastAttemptAt: now,
    });
    deps.metrics.deadLetters.inc({ destination: destinationId, reason: code }, items.length);
    deps.metrics.deliveryItems.inc({ destination: destinationId, outcome: 'dead_lettered' }, items.length);
    deps.logger.warn({ destinationId, reason: code, count: items.length, error: error.message, status: error.status }, 'impressions dead-lettered');
    return items.length;
  };

  const deadLetterRejected = async (job: Job<DeliveryJobData>, rejected: readonly RejectedItem[]): Promise<number> => {
    const groups = new Map<string, RejectedItem[]>();
    for (const r of rejected) {
      const group = `${r.code}\u0000${r.status ?? ''}\u0000${r.reason}`;
      groups.set(group, [...(groups.get(group) ?? []), r]);
    }
    let count = 0;
    for (const group of groups.values()) {
      const first = group[0] as RejectedItem;
      count += await deadLetter(job, group.map((r) => r.item), first.code, { message: first.reason, status: first.status });
    }
    return count;
  };

  const processJob = async (job: Job<DeliveryJobData>, token?: string): Promise<DeliverySummary> => {
    const { destinationId, items } = job.data;
    const now = deps.clock();
    const destination = deps.config.current().destinations.get(destinationId);
    if (destination === undefined) {
      const dead = await deadLetter(job, items, 'destination_deleted', { message: `destination "${destinationId}" no longer exists` });
      return { delivered: 0, skipped: 0, deadLettered: dead };
    }
    const policy = destination.destination.delivery;

    // Work for a disabled or paused destination waits; it is never dropped. Resume and enable
    // promote waiting jobs at once, so these re-checks can be rare (cheap with big backlogs).
    if (!destination.destination.enabled) return delay(job, token, jitter(30_000));
    const health = await deps.health.get(destinationId);
    if (health.state === 'paused') return delay(job, token, jitter(60_000));
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
      const wait = await deps.rateLimiter.reserve(destinationId, Math.ceil(items.length / limits.maxItemsPerRequest), requestsPerSecond, now);
      if (wait > 0) return delay(job, token, wait + jitter(50, 1));
    }

    if (!(await slots.acquire(destinationId, concurrency))) return delay(job, token, jitter(200, 1));
    let settlement;
    try {
      settlement = await deliverBatch(
        items,
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
          onRequest: (outcome, seconds) => {
            deps.metrics.deliveryRequests.inc({ destination: destinationId, outcome });
            deps.metrics.deliveryDuration.observe({ destination: destinationId }, seconds);
          },
        },
      );
    } finally {
      slots.release(destinationId);
    }

    deps.metrics.deliveryItems.inc({ destination: destinationId, outcome: 'delivered' }, settlement.delivered);
    if (settlement.skipped > 0) deps.metrics.deliveryItems.inc({ destination: destinationId, outcome: 'skipped' }, settlement.skipped);
    let deadLettered = await deadLetterRejected(job, settlement.rejected);
    const summary = () => ({ delivered: settlement.delivered, skipped: settlement.skipped, deadLettered });

    if (settlement.pending.length === 0) {
      if (settlement.delivered > 0 || settlement.requests > 0) await deps.health.recordSuccess(destinationId, deps.clock());
      return summary();
    }

    const failure = settlement.lastFailure ?? { reason: 'unknown failure' };
    // Being throttled is the destination pacing us, not failing: it does not trip the breaker.
    if (!settlement.throttled) await deps.health.recordFailure(destinationId, deps.clock(), failure.reason, policy.circuitBreakerThreshold, policy.circuitBreakerCooldown);
    deps.metrics.deliveryItems.inc({ destination: destinationId, outcome: 'retried' }, settlement.pending.length);

    const age = deps.clock() - job.timestamp;
    if (age >= deps.maxDeliveryAgeMs) {
      deadLettered += await deadLetter(job, settlement.pending, 'max_age_exceeded', { message: `still failing after ${Math.round(age / 1000)} s: ${failure.reason}`, status: failure.status });
      return summary();
    }
    const isLastAttempt = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
    if (isLastAttempt && !settlement.throttled) {
      deadLettered += await deadLetter(job, settlement.pending, 'retries_exhausted', { message: failure.reason, status: failure.status });
      return summary();
    }

    // Only what is still pending is retried: delivered impressions are never sent twice.
    if (settlement.pending.length !== items.length) await job.updateData({ ...job.data, items: settlement.pending });
    if (settlement.throttled) {
      // Throttling is the destination asking us to slow down, not a failure: no attempt is consumed.
      const wait = settlement.retryAfterMs ?? jitter(policy.retrySchedule[Math.min(job.attemptsMade, policy.retrySchedule.length - 1)] ?? 5_000);
      return delay(job, token, wait);
    }
    throw new RetryDeliveryError(failure.reason, settlement.retryAfterMs);
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
      const code = error instanceof RetryDeliveryError ? 'retries_exhausted' : 'internal_error';
      const deadLettered = await deadLetter(job, job.data.items, code, { message });
      return { delivered: 0, skipped: 0, deadLettered };
    }
  };
}

/** BullMQ backoff strategy `destination`: Retry-After when the destination gave one, else its schedule. */
export function createDeliveryBackoff(deps: { config: ConfigWatcher; random: () => number }) {
  return (attemptsMade: number, _type?: string, error?: Error, job?: MinimalJob): number => {
    if (error instanceof RetryDeliveryError && error.retryAfterMs !== undefined) return error.retryAfterMs;
    const destinationId = (job?.data as DeliveryJobData | undefined)?.destinationId;
    const schedule = destinationId === undefined ? undefined : deps.config.current().destinations.get(destinationId)?.destination.delivery.retrySchedule;
    const steps = schedule ?? [5_000];
    const base = steps[Math.min(Math.max(attemptsMade - 1, 0), steps.length - 1)] ?? 5_000;
    // ±10 % so that batches failed together do not retry together.
    return Math.round(base * (0.9 + deps.random() * 0.2));
  };
}
