import type { ChainableCommander, Redis } from 'ioredis';
import type { OnceName } from './once-marks.js';
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
   * The count* methods queue a count on `multi` that applies once per `name`, however often
   * the transaction runs: ioredis re-sends a transaction whose reply was lost when it reconnects,
   * so a transaction may run twice, and its writes must not count twice.
   */
  countReceived(multi: ChainableCommander, environmentId: string, count: number, name: OnceName): void;
  /** Impressions written into delivery jobs (or the staging buffer) for a destination. */
  countRouted(multi: ChainableCommander, destinationId: string, environmentId: string, count: number, name: OnceName): void;
  countSettled(multi: ChainableCommander, destinationId: string, environmentId: string, delivered: number, skipped: number, name: OnceName): void;
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
   * Runs `write` once per `name` however often it is called, for side effects that are not
   * counts (traffic stats): claimed before, released when `write` throws so a retry runs it again.
   * A crash in the middle leaves it claimed: such a write is lost, never doubled.
   */
  once(name: OnceName, write: () => Promise<void>): Promise<void>;
  /**
   * Whether the transaction that counted with `name` ran, asked once Redis answers again
   * (at most `waitMs`): for a caller whose reply was lost. False when it cannot tell.
   */
  wasCounted(name: OnceName, waitMs: number): Promise<boolean>;
  environments(): Promise<EnvironmentCounts[]>;
  destinations(): Promise<DestinationCounts[]>;
}

// Marks (fields of the id's once hash, stores/once-marks.ts) outlive any retry of the job they
// belong to (the delivery age bounds those). KEYS[1] once hash; ARGV[1] its ttl.
const recordRoutingScript = `
if redis.call('HSETNX', KEYS[1], 'l:done', '1') == 0 then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[2])
redis.call('HINCRBY', KEYS[2], 'routed', ARGV[3])
for i = 4, #ARGV, 2 do redis.call('HINCRBY', KEYS[2], 'dropped:' .. ARGV[i], ARGV[i + 1]) end
return 1`;

// Counts `field n` pairs into a hash (and its id into an index) unless the mark says this
// transaction already ran. KEYS[1] once hash, ARGV[1] the mark, ARGV[2] the hash's ttl.
const countOnceScript = `
if redis.call('HSETNX', KEYS[1], ARGV[1], '1') == 0 then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[3], ARGV[3])
for i = 4, #ARGV, 2 do redis.call('HINCRBY', KEYS[2], ARGV[i], ARGV[i + 1]) end
return 1`;

/** The ledger's marks in an id's once hash (the batch store has its own, `b:`). */
const ledgerMark = (mark: string) => `l:${mark}`;
const shareMark = (destinationId: string) => `l:share:${destinationId}`;

type CountOnce = { flagstreamCountOnce(...args: (string | number)[]): ChainableCommander };
type RecordRouting = { flagstreamRecordRouting(...args: (string | number)[]): Promise<number> };

const numberFields = (hash: Record<string, string>, field: string): number => Number(hash[field] ?? 0);

export function createLedgerStore(deps: { redis: Redis; keys: RedisKeys; markerTtlMs: number }): LedgerStore {
  const { redis, keys, markerTtlMs } = deps;
  const ttl = String(markerTtlMs);
  redis.defineCommand('flagstreamCountOnce', { numberOfKeys: 3, lua: countOnceScript });
  redis.defineCommand('flagstreamRecordRouting', { numberOfKeys: 3, lua: recordRoutingScript });
  const countOnce = (multi: ChainableCommander, name: OnceName, hash: string, index: string, member: string, counts: readonly (readonly [string, number])[]) => {
    const fields = counts.filter(([, n]) => n !== 0).flatMap(([field, n]) => [field, n]);
    if (fields.length > 0) (multi as ChainableCommander & CountOnce).flagstreamCountOnce(keys.onceMarks(name.id), hash, index, ledgerMark(name.mark), markerTtlMs, member, ...fields);
  };
  return {
    hashOf(scope) {
      return scope.destinationId === undefined ? keys.ledgerEnvironment(scope.environmentId) : keys.ledgerDestination(scope.destinationId);
    },
    countReceived(multi, environmentId, count, name) {
      countOnce(multi, name, keys.ledgerEnvironment(environmentId), keys.ledgerEnvironments, environmentId, [['received', count]]);
    },
    countRouted(multi, destinationId, environmentId, count, name) {
      multi.hset(keys.ledgerDestination(destinationId), { environmentId });
      countOnce(multi, name, keys.ledgerDestination(destinationId), keys.ledgerDestinations, destinationId, [['routed', count]]);
    },
    countSettled(multi, destinationId, environmentId, delivered, skipped, name) {
      if (delivered === 0 && skipped === 0) return;
      multi.hset(keys.ledgerDestination(destinationId), { environmentId });
      countOnce(multi, name, keys.ledgerDestination(destinationId), keys.ledgerDestinations, destinationId, [
        ['delivered', delivered],
        ['skipped', skipped],
      ]);
    },
    markDeliveryFinished(multi, jobId) {
      multi.hset(keys.onceMarks(jobId), { [ledgerMark('finished')]: '1' }).pexpire(keys.onceMarks(jobId), markerTtlMs);
    },
    async isDeliveryFinished(jobId) {
      return (await redis.hexists(keys.onceMarks(jobId), ledgerMark('finished'))) === 1;
    },
    markShareWritten(multi, routingJobId, destinationId) {
      multi.hset(keys.onceMarks(routingJobId), { [shareMark(destinationId)]: '1' }).pexpire(keys.onceMarks(routingJobId), markerTtlMs);
    },
    async sharesWritten(routingJobId) {
      // Bounded: the job's marks, a few plus one per destination of its environment.
      const marks = await redis.hkeys(keys.onceMarks(routingJobId));
      const prefix = shareMark('');
      return new Set(marks.filter((mark) => mark.startsWith(prefix)).map((mark) => mark.slice(prefix.length)));
    },
    async routingRecorded(routingJobId) {
      return (await redis.hexists(keys.onceMarks(routingJobId), ledgerMark('done'))) === 1;
    },
    async recordRouting(routingJobId, environmentId, routed, dropped) {
      const args = [ttl, environmentId, String(routed)];
      for (const [reason, count] of dropped) args.push(reason, String(count));
      const first = await (redis as Redis & RecordRouting).flagstreamRecordRouting(keys.onceMarks(routingJobId), keys.ledgerEnvironment(environmentId), keys.ledgerEnvironments, ...args);
      return first === 1;
    },
    async once(name, write) {
      const key = keys.onceMarks(name.id);
      const mark = ledgerMark(name.mark);
      const [[claimError, claimed] = [null, 0]] = (await redis.multi().hsetnx(key, mark, '1').pexpire(key, markerTtlMs).exec()) ?? [];
      if (claimError) throw claimError;
      if (claimed !== 1) return;
      try {
        await write();
      } catch (error) {
        await redis.hdel(key, mark).catch(() => undefined);
        throw error;
      }
    },
    async wasCounted(name, waitMs) {
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
      return redis.hexists(keys.onceMarks(name.id), ledgerMark(name.mark)).then(
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
