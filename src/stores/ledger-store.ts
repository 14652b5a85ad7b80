import type { ChainableCommander, Redis } from 'ioredis';
import type { RedisKeys } from './redis-keys.js';

/**
 * Exact counters of where every accepted impression went. Each count is written in the same
 * MULTI (or Lua script) as the work it counts — the ingest job, the delivery job, the settled
 * job, the dead letter — so a crash at any point leaves counts and work consistent, and a stage
 * re-run after a crash or an error counts nothing twice.
 *
 *   per environment:  received + replayed = dropped + routed + deadLettered + pending
 *   per destination:  routed + replayed   = delivered + skipped + deadLettered + pending
 *
 * `pending` is not a counter: it is measured from the queues (see admin/ledger-service.ts), so a
 * lost job shows up as a difference instead of being balanced away.
 */
export interface EnvironmentCounts {
  readonly environmentId: string;
  readonly received: number;
  readonly replayed: number;
  readonly routed: number;
  readonly deadLettered: number;
  readonly dropped: Record<string, number>;
}

export interface DestinationCounts {
  readonly destinationId: string;
  readonly environmentId: string;
  readonly routed: number;
  readonly replayed: number;
  readonly delivered: number;
  readonly skipped: number;
  readonly deadLettered: number;
}

/** Which ledger a dead letter or a replay counts in: a destination's, or (routing) an environment's. */
export type LedgerScope = { readonly destinationId: string; readonly environmentId: string } | { readonly environmentId: string; readonly destinationId?: undefined };

// Commands added to a shared MULTI use hset's object form: BullMQ's transaction wrapper takes only that.
export interface LedgerStore {
  /** The hash a dead letter or replay of `scope` counts in. */
  hashOf(scope: LedgerScope): string;
  /*
   * The count* methods queue a count on `multi` that applies once per `onceKey`, however often
   * the transaction runs: ioredis re-sends a transaction whose reply was lost when it reconnects,
   * so a transaction may run twice, and its writes must not count twice.
   */
  countReceived(multi: ChainableCommander, environmentId: string, count: number, onceKey: string): void;
  /** Impressions written into delivery jobs (or the staging buffer) for a destination. */
  countRouted(multi: ChainableCommander, destinationId: string, environmentId: string, count: number, onceKey: string): void;
  countSettled(multi: ChainableCommander, destinationId: string, environmentId: string, delivered: number, skipped: number, onceKey: string): void;
  /**
   * Marks a delivery job finished (in its last settlement), so that the job, added again by a
   * re-sent transaction after it completed and was removed, does nothing.
   */
  markDeliveryFinished(multi: ChainableCommander, jobId: string): void;
  isDeliveryFinished(jobId: string): Promise<boolean>;
  /** Remembers that a routing job's share for a destination is durable, so its retries skip it. */
  markShareWritten(multi: ChainableCommander, routingJobId: string, destinationId: string): void;
  sharesWritten(routingJobId: string): Promise<Set<string>>;
  /**
   * Counts a routing job's outcome once, whatever its retries: false when an earlier run of the
   * same job already did (its side effects, e.g. traffic stats, must then not be repeated).
   */
  recordRouting(routingJobId: string, environmentId: string, routed: number, dropped: ReadonlyMap<string, number>): Promise<boolean>;
  /** Whether a routing job's outcome was recorded (it finished routing once). */
  routingRecorded(routingJobId: string): Promise<boolean>;
  /**
   * Runs `write` once per `onceKey` however often it is called, for side effects that are not
   * counts (traffic stats): claimed before, released when `write` throws so a retry runs it again.
   * A crash in the middle leaves it claimed: such a write is lost, never doubled.
   */
  once(onceKey: string, write: () => Promise<void>): Promise<void>;
  /**
   * Whether the transaction that counted with `onceKey` ran, asked once Redis answers again
   * (at most `waitMs`): for a caller whose reply was lost. False when it cannot tell.
   */
  wasCounted(onceKey: string, waitMs: number): Promise<boolean>;
  environments(): Promise<EnvironmentCounts[]>;
  destinations(): Promise<DestinationCounts[]>;
}

// Markers outlive any retry of the job they belong to (the delivery age bounds those).
const recordRoutingScript = `
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) == false then return 0 end
redis.call('SADD', KEYS[3], ARGV[2])
redis.call('HINCRBY', KEYS[2], 'routed', ARGV[3])
for i = 4, #ARGV, 2 do redis.call('HINCRBY', KEYS[2], 'dropped:' .. ARGV[i], ARGV[i + 1]) end
return 1`;

// Counts `field n` pairs into a hash (and its id into an index) unless the marker says this
// transaction already ran.
const countOnceScript = `
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) == false then return 0 end
redis.call('SADD', KEYS[3], ARGV[2])
for i = 3, #ARGV, 2 do redis.call('HINCRBY', KEYS[2], ARGV[i], ARGV[i + 1]) end
return 1`;

type CountOnce = { flagstreamCountOnce(...args: (string | number)[]): ChainableCommander };
type RecordRouting = { flagstreamRecordRouting(...args: (string | number)[]): Promise<number> };

const numberFields = (hash: Record<string, string>, field: string): number => Number(hash[field] ?? 0);

export function createLedgerStore(deps: { redis: Redis; keys: RedisKeys; markerTtlMs: number }): LedgerStore {
  const { redis, keys, markerTtlMs } = deps;
  const ttl = String(markerTtlMs);
  redis.defineCommand('flagstreamCountOnce', { numberOfKeys: 3, lua: countOnceScript });
  redis.defineCommand('flagstreamRecordRouting', { numberOfKeys: 3, lua: recordRoutingScript });
  const countOnce = (multi: ChainableCommander, onceKey: string, hash: string, index: string, member: string, counts: readonly (readonly [string, number])[]) => {
    const fields = counts.filter(([, n]) => n !== 0).flatMap(([field, n]) => [field, n]);
    if (fields.length > 0) (multi as ChainableCommander & CountOnce).flagstreamCountOnce(keys.ledgerOnce(onceKey), hash, index, markerTtlMs, member, ...fields);
  };
  return {
    hashOf(scope) {
      return scope.destinationId === undefined ? keys.ledgerEnvironment(scope.environmentId) : keys.ledgerDestination(scope.destinationId);
    },
    countReceived(multi, environmentId, count, onceKey) {
      countOnce(multi, onceKey, keys.ledgerEnvironment(environmentId), keys.ledgerEnvironments, environmentId, [['received', count]]);
    },
    countRouted(multi, destinationId, environmentId, count, onceKey) {
      multi.hset(keys.ledgerDestination(destinationId), { environmentId });
      countOnce(multi, onceKey, keys.ledgerDestination(destinationId), keys.ledgerDestinations, destinationId, [['routed', count]]);
    },
    countSettled(multi, destinationId, environmentId, delivered, skipped, onceKey) {
      if (delivered === 0 && skipped === 0) return;
      multi.hset(keys.ledgerDestination(destinationId), { environmentId });
      countOnce(multi, onceKey, keys.ledgerDestination(destinationId), keys.ledgerDestinations, destinationId, [
        ['delivered', delivered],
        ['skipped', skipped],
      ]);
    },
    markDeliveryFinished(multi, jobId) {
      multi.set(keys.deliveryFinished(jobId), '1', 'PX', markerTtlMs);
    },
    async isDeliveryFinished(jobId) {
      return (await redis.exists(keys.deliveryFinished(jobId))) === 1;
    },
    markShareWritten(multi, routingJobId, destinationId) {
      multi.sadd(keys.ledgerRoutingShares(routingJobId), destinationId).pexpire(keys.ledgerRoutingShares(routingJobId), markerTtlMs);
    },
    async sharesWritten(routingJobId) {
      // Bounded: at most the environment's destinations.
      return new Set(await redis.smembers(keys.ledgerRoutingShares(routingJobId)));
    },
    async routingRecorded(routingJobId) {
      return (await redis.exists(keys.ledgerRoutingDone(routingJobId))) === 1;
    },
    async recordRouting(routingJobId, environmentId, routed, dropped) {
      const args = [ttl, environmentId, String(routed)];
      for (const [reason, count] of dropped) args.push(reason, String(count));
      const first = await (redis as Redis & RecordRouting).flagstreamRecordRouting(keys.ledgerRoutingDone(routingJobId), keys.ledgerEnvironment(environmentId), keys.ledgerEnvironments, ...args);
      return first === 1;
    },
    async once(onceKey, write) {
      const key = keys.ledgerOnce(onceKey);
      if ((await redis.set(key, '1', 'PX', markerTtlMs, 'NX')) !== 'OK') return;
      try {
        await write();
      } catch (error) {
        await redis.del(key).catch(() => undefined);
        throw error;
      }
    },
    async wasCounted(onceKey, waitMs) {
      if (redis.status !== 'ready') {
        await new Promise<void>((resolve) => {
          const done = () => {
            clearTimeout(timer);
            redis.off('ready', done);
            resolve();
          };
          const timer = setTimeout(done, waitMs);
          redis.once('ready', done);
        });
      }
      return redis.exists(keys.ledgerOnce(onceKey)).then(
        (found) => found === 1,
        () => false,
      );
    },
    async environments() {
      const ids = (await redis.smembers(keys.ledgerEnvironments)).sort();
      const result: EnvironmentCounts[] = [];
      for (const environmentId of ids) {
        const hash = await redis.hgetall(keys.ledgerEnvironment(environmentId));
        const dropped: Record<string, number> = {};
        for (const [field, value] of Object.entries(hash)) if (field.startsWith('dropped:')) dropped[field.slice('dropped:'.length)] = Number(value);
        result.push({
          environmentId,
          received: numberFields(hash, 'received'),
          replayed: numberFields(hash, 'replayed'),
          routed: numberFields(hash, 'routed'),
          deadLettered: numberFields(hash, 'deadLettered'),
          dropped,
        });
      }
      return result;
    },
    async destinations() {
      const ids = (await redis.smembers(keys.ledgerDestinations)).sort();
      const result: DestinationCounts[] = [];
      for (const destinationId of ids) {
        const hash = await redis.hgetall(keys.ledgerDestination(destinationId));
        result.push({
          destinationId,
          environmentId: hash.environmentId ?? '',
          routed: numberFields(hash, 'routed'),
          replayed: numberFields(hash, 'replayed'),
          delivered: numberFields(hash, 'delivered'),
          skipped: numberFields(hash, 'skipped'),
          deadLettered: numberFields(hash, 'deadLettered'),
        });
      }
      return result;
    },
  };
}
