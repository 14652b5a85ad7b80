import type { Redis } from 'ioredis';
import type { RedisKeys } from './redis-keys.js';

/**
 * Per-destination health, shared by every worker process through Redis:
 * `healthy`; `open` (the circuit breaker tripped after consecutive failed attempts: work waits
 * and one probe at a time retries it after a cooldown); `paused` (by an operator: work waits).
 */
export type HealthState = 'healthy' | 'open' | 'paused';

export interface DestinationHealth {
  readonly destinationId: string;
  readonly state: HealthState;
  readonly consecutiveFailures: number;
  /** Why it is open or paused. */
  readonly reason: string | undefined;
  readonly lastError: string | undefined;
  readonly lastErrorAt: number | undefined;
  readonly lastSuccessAt: number | undefined;
  readonly since: number | undefined;
  /** When an open circuit lets the next probe through. */
  readonly nextProbeAt: number | undefined;
}

export interface HealthStore {
  get(destinationId: string): Promise<DestinationHealth>;
  /** `get` as this process last read it, if at most `cacheMs` ago: for the delivery hot path. */
  current(destinationId: string): Promise<DestinationHealth>;
  list(): Promise<DestinationHealth[]>;
  recordSuccess(destinationId: string, now: number): Promise<DestinationHealth['state']>;
  /** Counts a failed attempt; opens the circuit at `threshold`. Returns the state after it. */
  recordFailure(destinationId: string, now: number, error: string, threshold: number, cooldownMs: number): Promise<HealthState>;
  pause(destinationId: string, now: number, reason: string): Promise<void>;
  resume(destinationId: string, now: number): Promise<void>;
  /** One probe at a time per open destination, across processes. */
  acquireProbe(destinationId: string, ttlMs: number): Promise<boolean>;
  forget(destinationId: string): Promise<void>;
}

const recordFailureScript = `
local failures = redis.call('HINCRBY', KEYS[1], 'consecutiveFailures', 1)
redis.call('HSET', KEYS[1], 'lastError', ARGV[2], 'lastErrorAt', ARGV[1])
local state = redis.call('HGET', KEYS[1], 'state') or 'healthy'
if state == 'paused' then return state end
if failures >= tonumber(ARGV[3]) then
  if state ~= 'open' then
    redis.call('HSET', KEYS[1], 'since', ARGV[1], 'reason', 'circuit opened after ' .. failures .. ' consecutive failed attempts')
  end
  redis.call('HSET', KEYS[1], 'state', 'open', 'nextProbeAt', tonumber(ARGV[1]) + tonumber(ARGV[4]))
  redis.call('SADD', KEYS[2], ARGV[5])
  return 'open'
end
return state`;

const recordSuccessScript = `
redis.call('HSET', KEYS[1], 'consecutiveFailures', 0, 'lastSuccessAt', ARGV[1])
local state = redis.call('HGET', KEYS[1], 'state') or 'healthy'
if state == 'open' then
  redis.call('HSET', KEYS[1], 'state', 'healthy', 'since', ARGV[1])
  redis.call('HDEL', KEYS[1], 'reason', 'nextProbeAt')
  return 'healthy'
end
return state`;

type HealthScripts = {
  flagstreamRecordSuccess(...args: string[]): Promise<unknown>;
  flagstreamRecordFailure(...args: string[]): Promise<unknown>;
};

function decode(destinationId: string, hash: Record<string, string>): DestinationHealth {
  const num = (value: string | undefined) => (value === undefined ? undefined : Number(value));
  return {
    destinationId,
    state: (hash.state as HealthState | undefined) ?? 'healthy',
    consecutiveFailures: Number(hash.consecutiveFailures ?? 0),
    reason: hash.reason,
    lastError: hash.lastError,
    lastErrorAt: num(hash.lastErrorAt),
    lastSuccessAt: num(hash.lastSuccessAt),
    since: num(hash.since),
    nextProbeAt: num(hash.nextProbeAt),
  };
}

/** What an operator's pause or resume publishes on the configuration channel, so every process drops its cached health. */
export const healthNoticePrefix = 'health:';

/**
 * `cacheMs`: how long a process trusts the health it read (delivery asks before every job). Its
 * own writes and the notice of a pause or resume elsewhere invalidate it at once; a circuit
 * opened by another process is seen within `cacheMs` at the latest.
 */
/** Health as a process last read it, by destination: one per process, shared by its health stores. */
export type HealthCache = Map<string, { health: DestinationHealth; readAt: number }>;

export function createHealthStore(deps: { redis: Redis; keys: RedisKeys; cacheMs?: number; clock?: () => number; cache?: HealthCache }): HealthStore {
  const { redis, keys } = deps;
  const cacheMs = deps.cacheMs ?? 1_000;
  const clock = deps.clock ?? Date.now;
  // Shared with the process's other health store, so an operator's pause through the API's
  // connection takes effect in this process's delivery at once, before any notice arrives.
  const cache: HealthCache = deps.cache ?? new Map();
  redis.defineCommand('flagstreamRecordSuccess', { numberOfKeys: 1, lua: recordSuccessScript });
  redis.defineCommand('flagstreamRecordFailure', { numberOfKeys: 2, lua: recordFailureScript });
  const notify = (destinationId: string) => redis.publish(keys.configChannel, `${healthNoticePrefix}${destinationId}`);
  return {
    async get(destinationId) {
      const readAt = clock();
      const health = decode(destinationId, await redis.hgetall(keys.destinationHealth(destinationId)));
      cache.set(destinationId, { health, readAt });
      return health;
    },
    async current(destinationId) {
      const cached = cache.get(destinationId);
      if (cached !== undefined && clock() - cached.readAt < cacheMs) return cached.health;
      return this.get(destinationId);
    },
    async list() {
      const ids = (await redis.smembers(keys.destinationHealthIndex)).sort();
      return Promise.all(ids.map((id) => this.get(id)));
    },
    async recordSuccess(destinationId, now) {
      // Most successes find nothing to reset: known from the cache when it is fresh and clean.
      const cached = cache.get(destinationId);
      if (cached !== undefined && clock() - cached.readAt < cacheMs && cached.health.state === 'healthy' && cached.health.consecutiveFailures === 0) return 'healthy';
      const key = keys.destinationHealth(destinationId);
      const [state, failures] = await redis.hmget(key, 'state', 'consecutiveFailures');
      if ((state === null || state === 'healthy') && (failures === null || failures === '0')) return 'healthy';
      cache.delete(destinationId);
      return (await (redis as Redis & HealthScripts).flagstreamRecordSuccess(key, String(now))) as HealthState;
    },
    async recordFailure(destinationId, now, error, threshold, cooldownMs) {
      cache.delete(destinationId);
      return (await (redis as Redis & HealthScripts).flagstreamRecordFailure(
        keys.destinationHealth(destinationId),
        keys.destinationHealthIndex,
        String(now),
        error.slice(0, 500),
        String(threshold),
        String(cooldownMs),
        destinationId,
      )) as HealthState;
    },
    async pause(destinationId, now, reason) {
      cache.delete(destinationId);
      await redis
        .multi()
        .hset(keys.destinationHealth(destinationId), 'state', 'paused', 'since', String(now), 'reason', reason)
        .hdel(keys.destinationHealth(destinationId), 'nextProbeAt')
        .sadd(keys.destinationHealthIndex, destinationId)
        .exec();
      await notify(destinationId);
    },
    async resume(destinationId, now) {
      await redis
        .multi()
        .hset(keys.destinationHealth(destinationId), 'state', 'healthy', 'since', String(now), 'consecutiveFailures', '0')
        .hdel(keys.destinationHealth(destinationId), 'reason', 'nextProbeAt')
        .del(keys.destinationProbe(destinationId))
        .exec();
      cache.delete(destinationId);
      await notify(destinationId);
    },
    async acquireProbe(destinationId, ttlMs) {
      return (await redis.set(keys.destinationProbe(destinationId), '1', 'PX', Math.max(1, Math.round(ttlMs)), 'NX')) === 'OK';
    },
    async forget(destinationId) {
      cache.delete(destinationId);
      await redis.multi().del(keys.destinationHealth(destinationId), keys.destinationProbe(destinationId)).srem(keys.destinationHealthIndex, destinationId).exec();
    },
  };
}
