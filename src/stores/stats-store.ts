import type { Redis } from 'ioredis';
import type { TrafficSeries } from '../routing/traffic-series.js';
import type { MonitoringStore } from './monitoring-store.js';
import type { RedisKeys } from './redis-keys.js';

/** Traffic per flag: what routing passed (per treatment), what SDKs only counted, and unique keys. */
export interface FlagTraffic {
  /** treatment → impressions that passed routing */
  readonly treatments: Map<string, number>;
  /** impressions dropped at routing, by reason */
  readonly dropped: Map<string, number>;
  readonly keys: Set<string>;
  /** evaluations SDKs reported through /testImpressions/count */
  counted: number;
}

export function emptyFlagTraffic(): FlagTraffic {
  return { treatments: new Map(), dropped: new Map(), keys: new Set(), counted: 0 };
}

export interface FlagStats {
  readonly flag: string;
  readonly impressions: number;
  readonly treatments: Record<string, number>;
  readonly dropped: Record<string, number>;
  readonly counted: number;
  readonly uniqueKeys: number;
}

export interface StatsStore {
  /**
   * One pipeline per call, whatever the number of impressions: lifetime stats, the monitoring
   * series (when routing gives them) and the month's tracked keys.
   */
  record(environmentId: string, traffic: ReadonlyMap<string, FlagTraffic>, series?: TrafficSeries): Promise<void>;
  increment(counter: string, by?: number): Promise<void>;
  flagStats(environmentId: string): Promise<FlagStats[]>;
  counters(): Promise<Record<string, number>>;
}

const chunkSize = 1000;

function* chunks<T>(values: readonly T[]): Generator<T[]> {
  for (let start = 0; start < values.length; start += chunkSize) yield values.slice(start, start + chunkSize);
}

export function createStatsStore(deps: { redis: Redis; keys: RedisKeys; monitoring?: MonitoringStore }): StatsStore {
  const { redis, keys } = deps;
  return {
    async record(environmentId, traffic, series) {
      if (traffic.size === 0) return;
      const pipeline = redis.pipeline();
      // Every argument list is cut into bounded chunks: a request may carry 100 000+ keys.
      for (const flags of chunks([...traffic.keys()])) pipeline.sadd(keys.statsFlagsIndex(environmentId), ...flags);
      for (const [flag, t] of traffic) {
        const hash = keys.statsFlag(environmentId, flag);
        let passed = 0;
        for (const [treatment, n] of t.treatments) {
          pipeline.hincrby(hash, `t:${treatment}`, n);
          passed += n;
        }
        if (passed > 0) pipeline.hincrby(hash, 'impressions', passed);
        for (const [reason, n] of t.dropped) pipeline.hincrby(hash, `dropped:${reason}`, n);
        if (t.counted > 0) pipeline.hincrby(hash, 'counted', t.counted);
        for (const part of chunks([...t.keys])) pipeline.pfadd(keys.statsFlagKeys(environmentId, flag), ...part);
      }
      deps.monitoring?.writeIn(pipeline, environmentId, traffic, series);
      await pipeline.exec();
    },
    async increment(counter, by = 1) {
      await redis.hincrby(keys.statsCounters, counter, by);
    },
    async flagStats(environmentId) {
      const flags = (await redis.smembers(keys.statsFlagsIndex(environmentId))).sort();
      if (flags.length === 0) return [];
      const pipeline = redis.pipeline();
      for (const flag of flags) {
        pipeline.hgetall(keys.statsFlag(environmentId, flag));
        pipeline.pfcount(keys.statsFlagKeys(environmentId, flag));
      }
      const results = (await pipeline.exec()) ?? [];
      return flags.map((flag, index) => {
        const hash = (results[index * 2]?.[1] ?? {}) as Record<string, string>;
        const uniqueKeys = Number(results[index * 2 + 1]?.[1] ?? 0);
        const treatments: Record<string, number> = {};
        const dropped: Record<string, number> = {};
        for (const [field, value] of Object.entries(hash)) {
          if (field.startsWith('t:')) treatments[field.slice(2)] = Number(value);
          else if (field.startsWith('dropped:')) dropped[field.slice(8)] = Number(value);
        }
        return { flag, impressions: Number(hash.impressions ?? 0), treatments, dropped, counted: Number(hash.counted ?? 0), uniqueKeys };
      });
    },
    async counters() {
      const raw = await redis.hgetall(keys.statsCounters);
      return Object.fromEntries(Object.entries(raw).map(([k, v]) => [k, Number(v)]));
    },
  };
}
