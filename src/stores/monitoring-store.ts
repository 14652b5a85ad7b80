import { randomUUID } from 'node:crypto';
import type { ChainableCommander, Redis } from 'ioredis';
import { dayMs, hourMs, minuteMs, type TrafficSeries } from '../routing/traffic-series.js';
import type { RedisKeys } from './redis-keys.js';
import type { FlagTraffic } from './stats-store.js';

export interface MonitoringRetention {
  /** How long minute buckets are kept (FLAGSTREAM_MONITOR_MINUTES_RETENTION). */
  readonly minutesMs: number;
  /** How long hour buckets and daily unique keys are kept (FLAGSTREAM_MONITOR_HOURS_RETENTION). */
  readonly hoursMs: number;
}

/** Monthly tracked keys are kept this long after their month ends. */
export const mtkRetentionMs = 400 * dayMs;

export type Step = 'minute' | 'hour';

export interface UniqueKeys {
  /** treatment → distinct keys over all the days */
  readonly byTreatment: Map<string, number>;
  /** treatment → distinct keys per day, in day order */
  readonly byTreatmentPerDay: Map<string, number[]>;
  /** distinct keys over all the days and treatments */
  readonly all: number;
}

export interface MonitoringStore {
  readonly retention: MonitoringRetention;
  /**
   * Queues into `pipeline` (the stats pipeline of one routing job or ingest request) the
   * monitoring series and the month's tracked keys: a few commands per flag, minute, day and
   * treatment, argument lists cut into chunks of 1 000, never a command per impression.
   */
  writeIn(pipeline: ChainableCommander, environmentId: string, traffic: ReadonlyMap<string, FlagTraffic>, series: TrafficSeries | undefined): void;
  /** Flags with tracked impressions since `since` (epoch ms), by name, at most `limit`. */
  activeFlags(environmentId: string, since: number, limit: number): Promise<{ flags: string[]; total: number }>;
  treatments(environmentId: string, flag: string, since: number): Promise<string[]>;
  /** treatment → impressions per bucket from `first` to `last` (bucket numbers: epoch ms / step), inclusive. */
  counts(environmentId: string, flag: string, treatments: readonly string[], step: Step, first: number, last: number): Promise<Map<string, number[]>>;
  /** Distinct keys from day `firstDay` to `lastDay` (epoch days), inclusive, by PFCOUNT (PFMERGE beyond 200 HyperLogLogs). */
  uniqueKeys(environmentId: string, flag: string, treatments: readonly string[], firstDay: number, lastDay: number): Promise<UniqueKeys>;
  /** Monthly tracked keys of each month (`YYYY-MM`). */
  mtks(environmentId: string, months: readonly string[]): Promise<number[]>;
}

const argumentChunk = 1000;
const commandsPerPipeline = 200;
const keysPerCount = 200;

function* chunks<T>(values: readonly T[], size: number): Generator<T[]> {
  for (let start = 0; start < values.length; start += size) yield values.slice(start, start + size);
}

/** `2026-11` for an epoch ms, UTC. */
export function monthOf(epochMs: number): string {
  return new Date(epochMs).toISOString().slice(0, 7);
}

function monthEnd(epochMs: number): number {
  const date = new Date(epochMs);
  return Date.UTC(date.getUTCFullYear(), date.getUTCMonth() + 1, 1);
}

/** Splits a field `<bucket>:<treatment>` (the bucket is digits, so the first colon separates). */
function parseField(field: string): [number, string] | undefined {
  const colon = field.indexOf(':');
  if (colon <= 0) return undefined;
  return [Number(field.slice(0, colon)), field.slice(colon + 1)];
}

async function execChunked(redis: Redis, commands: readonly ((pipeline: ChainableCommander) => void)[]): Promise<unknown[]> {
  const results: unknown[] = [];
  for (const part of chunks(commands, commandsPerPipeline)) {
    const pipeline = redis.pipeline();
    for (const command of part) command(pipeline);
    for (const [error, value] of (await pipeline.exec()) ?? []) {
      if (error) throw error;
      results.push(value);
    }
  }
  return results;
}

export function createMonitoringStore(deps: { redis: Redis; keys: RedisKeys; clock: () => number; retention: MonitoringRetention }): MonitoringStore {
  const { redis, keys, clock, retention } = deps;

  const countUnion = async (hyperLogLogs: readonly string[]): Promise<number> => {
    if (hyperLogLogs.length === 0) return 0;
    if (hyperLogLogs.length <= keysPerCount) return redis.pfcount(...hyperLogLogs);
    const scratch = keys.monitorScratch(randomUUID());
    const pipeline = redis.pipeline();
    for (const part of chunks(hyperLogLogs, keysPerCount)) pipeline.pfmerge(scratch, ...part);
    pipeline.pexpire(scratch, 60_000).pfcount(scratch).del(scratch);
    const results = (await pipeline.exec()) ?? [];
    const counted = results.at(-2);
    if (counted?.[0]) throw counted[0];
    return Number(counted?.[1] ?? 0);
  };

  return {
    retention,

    writeIn(pipeline, environmentId, traffic, series) {
      const now = clock();
      // Monthly tracked keys: every evaluation's key (tracked, tracking-off, /keys/ss|cs), by month of reception.
      const allKeys = new Set<string>();
      for (const flagTraffic of traffic.values()) for (const key of flagTraffic.keys) allKeys.add(key);
      if (allKeys.size > 0) {
        const mtkKey = keys.mtk(environmentId, monthOf(now));
        for (const part of chunks([...allKeys], argumentChunk)) pipeline.pfadd(mtkKey, ...part);
        pipeline.pexpireat(mtkKey, monthEnd(now) + mtkRetentionMs);
      }
      if (series === undefined) return;

      const minutesUntil = (day: number) => (day + 1) * dayMs + retention.minutesMs;
      const hoursUntil = (day: number) => (day + 1) * dayMs + retention.hoursMs;
      const activeFlags = new Map<string, number>();
      for (const [flag, minutes] of series.minutes) {
        const hours = new Map<number, Map<number, Map<string, number>>>(); // day → hour → treatment → n
        const lastSeen = new Map<string, number>();
        const touchedMinuteDays = new Set<number>();
        for (const [minute, treatments] of minutes) {
          const at = minute * minuteMs;
          const day = Math.floor(at / dayMs);
          // Older than what is kept: writing it would only recreate an expired bucket.
          if (hoursUntil(day) <= now) continue;
          const keepMinutes = minutesUntil(day) > now;
          const hour = Math.floor(at / hourMs);
          let byHour = hours.get(day);
          if (byHour === undefined) hours.set(day, (byHour = new Map()));
          let hourTreatments = byHour.get(hour);
          if (hourTreatments === undefined) byHour.set(hour, (hourTreatments = new Map()));
          for (const [treatment, n] of treatments) {
            if (keepMinutes) pipeline.hincrby(keys.monitorMinutes(environmentId, flag, day), `${minute}:${treatment}`, n);
            hourTreatments.set(treatment, (hourTreatments.get(treatment) ?? 0) + n);
            lastSeen.set(treatment, Math.max(lastSeen.get(treatment) ?? 0, at));
          }
          if (keepMinutes) touchedMinuteDays.add(day);
        }
        for (const day of touchedMinuteDays) pipeline.pexpireat(keys.monitorMinutes(environmentId, flag, day), minutesUntil(day));
        for (const [day, byHour] of hours) {
          const hash = keys.monitorHours(environmentId, flag, day);
          for (const [hour, treatments] of byHour) for (const [treatment, n] of treatments) pipeline.hincrby(hash, `${hour}:${treatment}`, n);
          pipeline.pexpireat(hash, hoursUntil(day));
        }
        if (lastSeen.size === 0) continue;
        const treatmentIndex = keys.monitorTreatments(environmentId, flag);
        for (const [treatment, at] of lastSeen) pipeline.zadd(treatmentIndex, 'GT', at, treatment);
        pipeline.zremrangebyscore(treatmentIndex, '-inf', now - retention.hoursMs - dayMs).pexpire(treatmentIndex, retention.hoursMs + dayMs);
        activeFlags.set(flag, Math.max(...lastSeen.values()));
      }
      for (const [flag, days] of series.dailyKeys) {
        for (const [day, treatments] of days) {
          if (hoursUntil(day) <= now) continue;
          for (const [treatment, dayKeys] of treatments) {
            const hll = keys.monitorKeys(environmentId, flag, day, treatment);
            for (const part of chunks([...dayKeys], argumentChunk)) pipeline.pfadd(hll, ...part);
            pipeline.pexpireat(hll, hoursUntil(day));
          }
        }
      }
      if (activeFlags.size > 0) {
        const flagIndex = keys.monitorFlags(environmentId);
        for (const [flag, at] of activeFlags) pipeline.zadd(flagIndex, 'GT', at, flag);
        pipeline.zremrangebyscore(flagIndex, '-inf', now - retention.hoursMs - dayMs).pexpire(flagIndex, retention.hoursMs + dayMs);
      }
    },

    async activeFlags(environmentId, since, limit) {
      const index = keys.monitorFlags(environmentId);
      const from = Math.floor(since / minuteMs) * minuteMs;
      const [total, flags] = await Promise.all([redis.zcount(index, from, '+inf'), redis.zrangebyscore(index, from, '+inf')]);
      // The index holds one member per flag seen in the hour retention: small, and read once per query.
      return { flags: flags.sort().slice(0, limit), total };
    },

    async treatments(environmentId, flag, since) {
      const from = Math.floor(since / minuteMs) * minuteMs;
      return (await redis.zrangebyscore(keys.monitorTreatments(environmentId, flag), from, '+inf')).sort();
    },

    async counts(environmentId, flag, treatments, step, first, last) {
      const length = last - first + 1;
      const result = new Map<string, number[]>();
      const series = (treatment: string): number[] => {
        let values = result.get(treatment);
        if (values === undefined) result.set(treatment, (values = new Array<number>(length).fill(0)));
        return values;
      };
      for (const treatment of treatments) series(treatment);
      const stepMs = step === 'minute' ? minuteMs : hourMs;
      const perDay = dayMs / stepMs;
      const firstDay = Math.floor((first * stepMs) / dayMs);
      const lastDay = Math.floor((last * stepMs) / dayMs);
      const commands: ((pipeline: ChainableCommander) => void)[] = [];
      const reads: ({ kind: 'all' } | { kind: 'fields'; fields: [number, string][] })[] = [];
      for (let day = firstDay; day <= lastDay; day += 1) {
        const hash = step === 'minute' ? keys.monitorMinutes(environmentId, flag, day) : keys.monitorHours(environmentId, flag, day);
        const from = Math.max(first, day * perDay);
        const to = Math.min(last, (day + 1) * perDay - 1);
        const wanted = (to - from + 1) * treatments.length;
        // A short range reads its fields only; a long one the whole day's hash (bounded: one day).
        if (wanted > 0 && wanted <= argumentChunk) {
          const fields: [number, string][] = [];
          for (let bucket = from; bucket <= to; bucket += 1) for (const treatment of treatments) fields.push([bucket, treatment]);
          reads.push({ kind: 'fields', fields });
          commands.push((pipeline) => pipeline.hmget(hash, ...fields.map(([bucket, treatment]) => `${bucket}:${treatment}`)));
        } else {
          reads.push({ kind: 'all' });
          commands.push((pipeline) => pipeline.hgetall(hash));
        }
      }
      const results = await execChunked(redis, commands);
      results.forEach((value, index) => {
        const read = reads[index];
        if (read === undefined) return;
        if (read.kind === 'fields') {
          const values = value as (string | null)[];
          read.fields.forEach(([bucket, treatment], i) => {
            const n = values[i];
            if (n !== null && n !== undefined) series(treatment)[bucket - first] = Number(n);
          });
          return;
        }
        for (const [field, n] of Object.entries(value as Record<string, string>)) {
          const parsed = parseField(field);
          if (parsed === undefined) continue;
          const [bucket, treatment] = parsed;
          if (bucket < first || bucket > last) continue;
          series(treatment)[bucket - first] = Number(n);
        }
      });
      return result;
    },

    async uniqueKeys(environmentId, flag, treatments, firstDay, lastDay) {
      const days: number[] = [];
      for (let day = firstDay; day <= lastDay; day += 1) days.push(day);
      const hll = (day: number, treatment: string) => keys.monitorKeys(environmentId, flag, day, treatment);
      const commands: ((pipeline: ChainableCommander) => void)[] = [];
      for (const treatment of treatments) for (const day of days) commands.push((pipeline) => pipeline.pfcount(hll(day, treatment)));
      const daily = (await execChunked(redis, commands)).map(Number);
      const byTreatment = new Map<string, number>();
      const byTreatmentPerDay = new Map<string, number[]>();
      for (const [index, treatment] of treatments.entries()) {
        const perDay = daily.slice(index * days.length, (index + 1) * days.length);
        byTreatmentPerDay.set(treatment, perDay);
        byTreatment.set(treatment, days.length === 1 ? (perDay[0] ?? 0) : await countUnion(days.map((day) => hll(day, treatment))));
      }
      const all = treatments.length === 1 ? (byTreatment.get(treatments[0] as string) ?? 0) : await countUnion(treatments.flatMap((treatment) => days.map((day) => hll(day, treatment))));
      return { byTreatment, byTreatmentPerDay, all };
    },

    async mtks(environmentId, months) {
      if (months.length === 0) return [];
      const commands = months.map((month) => (pipeline: ChainableCommander) => pipeline.pfcount(keys.mtk(environmentId, month)));
      return (await execChunked(redis, commands)).map(Number);
    },
  };
}
