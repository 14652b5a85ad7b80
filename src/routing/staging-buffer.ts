import { randomUUID } from 'node:crypto';
import type { Queue } from 'bullmq';
import type { ChainableCommander, Redis } from 'ioredis';
import type { Logger } from 'pino';
import { decodeRows, type RoutingView } from '../domain/stored-batch.js';
import { addJobsTo, type DeliveryJobData, execAll, queueTransaction } from '../queues/queues.js';
import type { ConfigSnapshot } from '../runtime/config-snapshot.js';
import type { RedisKeys } from '../stores/redis-keys.js';
import { mergeView, type RowsBundle, splitRefs } from './delivery-batcher.js';

/** One append to a destination's staging list: references, not impressions. */
interface StagedChunk {
  readonly e: string;
  readonly r: RowsBundle['refs'];
  readonly v: RoutingView;
  readonly n: number;
}

// Moves a destination's staged items aside under a claim key, atomically, so one process flushes them.
const claimScript = `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('RENAME', KEYS[1], KEYS[3])
redis.call('HSET', KEYS[3] .. ':meta', 'destinationId', ARGV[2])
redis.call('DEL', KEYS[2])
redis.call('ZADD', KEYS[4], ARGV[1], ARGV[3])
return 1`;

const stageScript = `
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', 86400000) == false then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[3], 'count', ARGV[2])
redis.call('HSETNX', KEYS[3], 'firstAt', ARGV[3])
redis.call('SADD', KEYS[4], ARGV[4])
return 1`;

const forgetIfEmptyScript = `
if redis.call('EXISTS', KEYS[1]) == 0 then return redis.call('SREM', KEYS[2], ARGV[1]) end
return 0`;

/** A claim older than this was left by a process that died mid-flush: another process finishes it. */
const abandonedClaimMs = 60_000;

/**
 * Durable batching for connectors that want bigger, slower batches than routing may hold in
 * memory (S3: 50 000 rows or 5 minutes). Routing appends each destination's share to a Redis
 * list and acknowledges; a flusher in every worker process turns a list into delivery jobs once
 * it is full or old enough. Each flush claims the list atomically and derives its job ids from
 * the claim, so a process dying mid-flush leaves a claim another process completes: nothing is
 * lost, and since a claim's jobs are queued in the same transaction that ends the claim, a batch
 * is never queued twice.
 */
export class StagingBuffer {
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;

  constructor(
    private readonly deps: {
      redis: Redis;
      keys: RedisKeys;
      queue: Queue<DeliveryJobData>;
      config: () => ConfigSnapshot;
      logger: Logger;
      clock: () => number;
    },
  ) {
    deps.redis.defineCommand('flagstreamStage', { numberOfKeys: 4, lua: stageScript });
  }

  /**
   * Appends a bundle of references once per `appendId` (a transaction re-sent after a lost reply
   * appends nothing more); `alsoIn` adds the caller's own commands (ledger counts, the references
   * held in the batch store) to the same transaction.
   */
  async stage(destinationId: string, bundle: RowsBundle, appendId: string, alsoIn?: (multi: ChainableCommander) => void): Promise<void> {
    const { redis, keys, clock } = this.deps;
    const multi = redis.multi();
    (multi as ChainableCommander & { flagstreamStage(...args: (string | number)[]): ChainableCommander }).flagstreamStage(
      keys.stagingAppended(appendId),
      keys.stagingList(destinationId),
      keys.stagingMeta(destinationId),
      keys.stagingIndex,
      JSON.stringify({ e: bundle.environmentId, r: bundle.refs, v: bundle.view, n: bundle.count } satisfies StagedChunk),
      bundle.count,
      clock(),
      destinationId,
    );
    alsoIn?.(multi);
    await execAll(multi);
  }

  start(intervalMs = 1000): void {
    this.timer = setInterval(() => {
      this.flushing ??= this.flushDue()
        .then(() => undefined)
        .catch((error: unknown) => this.deps.logger.warn({ err: error }, 'staging flush failed; will retry'))
        .finally(() => (this.flushing = undefined));
    }, intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer);
    await this.flushing;
  }

  /** Flushes every destination whose staged items are due (or all, with `force`), and finishes abandoned claims. */
  async flushDue(force = false): Promise<number> {
    const { redis, keys, clock } = this.deps;
    const now = clock();
    let jobs = 0;
    for (const destinationId of await redis.smembers(keys.stagingIndex)) {
      const [count, firstAt] = await redis.hmget(keys.stagingMeta(destinationId), 'count', 'firstAt');
      if (count === null) {
        // Atomically: an append landing between the read above and this would otherwise lose its index entry.
        await redis.eval(forgetIfEmptyScript, 2, keys.stagingMeta(destinationId), keys.stagingIndex, destinationId);
        continue;
      }
      const destination = this.deps.config().destinations.get(destinationId);
      const limits = destination?.limits;
      const due =
        force || limits === undefined || Number(count) >= limits.maxItemsPerRequest || now - Number(firstAt ?? now) >= limits.maxBatchWaitMs;
      if (!due) continue;
      const claimId = randomUUID();
      const claimed = await redis.eval(claimScript, 4, keys.stagingList(destinationId), keys.stagingMeta(destinationId), keys.stagingClaimed(claimId), keys.stagingClaimedIndex, String(now), destinationId, claimId);
      if (claimed === 1) jobs += await this.enqueueClaim(claimId);
    }
    for (const claimId of await redis.zrangebyscore(keys.stagingClaimedIndex, '-inf', now - abandonedClaimMs)) jobs += await this.enqueueClaim(claimId);
    return jobs;
  }

  private async enqueueClaim(claimId: string): Promise<number> {
    const { redis, keys, queue } = this.deps;
    const claimKey = keys.stagingClaimed(claimId);
    const destinationId = await redis.hget(`${claimKey}:meta`, 'destinationId');
    const chunks = await redis.lrange(claimKey, 0, -1);
    if (destinationId === null || chunks.length === 0) {
      await redis.multi().del(claimKey, `${claimKey}:meta`).zrem(keys.stagingClaimedIndex, claimId).exec();
      return 0;
    }
    const refs = new Map<string, number[]>();
    let view: RoutingView | undefined;
    let count = 0;
    let stagedEnvironmentId = '';
    for (const chunk of chunks) {
      const staged = JSON.parse(chunk) as StagedChunk;
      stagedEnvironmentId = staged.e;
      for (const [batchId, rows] of staged.r) {
        const list = refs.get(batchId);
        if (list === undefined) refs.set(batchId, decodeRows(rows));
        else for (const row of decodeRows(rows)) list.push(row);
      }
      view = mergeView(view, staged.v);
      count += staged.n;
    }
    const destination = this.deps.config().destinations.get(destinationId);
    const size = Math.max(1, destination?.limits?.maxItemsPerRequest ?? count);
    const attempts = (destination?.destination.delivery.retrySchedule.length ?? 7) + 1;
    const environmentId = destination?.environmentId ?? stagedEnvironmentId;
    const jobs: { name: string; data: DeliveryJobData; opts: { jobId: string; attempts: number; backoff: { type: string } } }[] = splitRefs(refs, size).map((part, index) => ({
      name: destinationId,
      data: { destinationId, environmentId, refs: part.refs, view: view ?? { labels: true, trafficTypes: {} } },
      opts: { jobId: `staged-${claimId}-${index}`, attempts, backoff: { type: 'destination' } },
    }));
    // The jobs and the end of the claim in one transaction: a claim is never queued twice.
    const multi = await queueTransaction(queue);
    await addJobsTo(multi, queue, jobs);
    multi.del(claimKey, `${claimKey}:meta`).zrem(keys.stagingClaimedIndex, claimId);
    await execAll(multi);
    return jobs.length;
  }
}

/** Impressions waiting in the staging buffer per destination, claims included (for the ledger). */
export async function countStaged(redis: Redis, keys: RedisKeys): Promise<Map<string, number>> {
  const totals = new Map<string, number>();
  const add = (destinationId: string, count: number) => totals.set(destinationId, (totals.get(destinationId) ?? 0) + count);
  for (const destinationId of await redis.smembers(keys.stagingIndex)) {
    const count = await redis.hget(keys.stagingMeta(destinationId), 'count');
    if (count !== null) add(destinationId, Number(count));
  }
  for (const claimId of await redis.zrange(keys.stagingClaimedIndex, 0, -1)) {
    const claimKey = keys.stagingClaimed(claimId);
    const destinationId = await redis.hget(`${claimKey}:meta`, 'destinationId');
    if (destinationId === null) continue;
    const page = 100;
    for (let start = 0; ; start += page) {
      const chunks = await redis.lrange(claimKey, start, start + page - 1);
      for (const chunk of chunks) add(destinationId, (JSON.parse(chunk) as StagedChunk).n);
      if (chunks.length < page) break;
    }
  }
  return totals;
}
