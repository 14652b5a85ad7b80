import { AppError } from '../domain/errors.js';
import { dayMs, hourMs, minuteMs } from '../routing/traffic-series.js';
import { monthOf, type MonitoringStore, type Step } from '../stores/monitoring-store.js';
import { parseTimeBound } from './dead-letters-service.js';

export interface MonitoringQuery {
  readonly environmentId: string;
  readonly flag?: string | undefined;
  /** ISO date, epoch ms or a duration back from now (`2h`, `7d`); default `1h`. */
  readonly since?: string | undefined;
  readonly until?: string | undefined;
  readonly step?: string | undefined;
  /** At most this many flags when no flag is named (default 100). */
  readonly limit?: string | number | undefined;
}

export interface TreatmentSeries {
  readonly treatment: string;
  /** Impressions per bucket, aligned with the report's `timestamps`. */
  readonly impressions: number[];
  readonly total: number;
  /** Distinct keys over the report's `days`. */
  readonly uniqueKeys: number;
  /** Distinct keys per day, aligned with the report's `days`. */
  readonly uniqueKeysPerDay: number[];
}

export interface FlagSeries {
  readonly flag: string;
  readonly total: number;
  /** Distinct keys over the report's `days`, all treatments together. */
  readonly uniqueKeys: number;
  readonly treatments: TreatmentSeries[];
}

export interface MonitoringReport {
  readonly environmentId: string;
  /** Start of the first bucket and the requested end, ISO 8601. */
  readonly since: string;
  readonly until: string;
  readonly step: Step;
  readonly stepSeconds: number;
  /** Epoch ms of each bucket's start. */
  readonly timestamps: number[];
  /** UTC days (`YYYY-MM-DD`) the unique-key counts cover: every day the range touches. */
  readonly days: string[];
  readonly flags: FlagSeries[];
  /** Flags with traffic in the range that `limit` left out. */
  readonly flagsOmitted: number;
  /** Monthly tracked keys of every month the range touches. */
  readonly mtks: { readonly month: string; readonly keys: number }[];
  readonly retention: { readonly minuteBucketsMs: number; readonly hourBucketsMs: number };
}

export interface MtkReport {
  readonly environmentId: string;
  readonly months: { readonly month: string; readonly keys: number }[];
}

/** Buckets in one answer at most (a week of minutes is 10 080). */
const maxBuckets = 50_000;

function monthsBetween(from: number, to: number): string[] {
  const months: string[] = [];
  const cursor = new Date(from);
  let at = Date.UTC(cursor.getUTCFullYear(), cursor.getUTCMonth(), 1);
  while (at <= to) {
    months.push(monthOf(at));
    const next = new Date(at);
    at = Date.UTC(next.getUTCFullYear(), next.getUTCMonth() + 1, 1);
  }
  return months;
}

/** Monitoring as Harness FME shows it (traffic per treatment, unique keys, MTKs), for the admin API and the CLI. */
export function createMonitoringService(deps: { store: MonitoringStore; environmentExists: (environmentId: string) => Promise<boolean>; clock: () => number }) {
  const { store } = deps;
  const { minutesMs, hoursMs } = store.retention;

  const requireEnvironment = async (environmentId: string) => {
    if (!(await deps.environmentExists(environmentId))) throw new AppError('FLAGSTREAM_ERR_NOT_FOUND', `no environment "${environmentId}"`, { field: 'environmentId' });
  };

  return {
    async series(query: MonitoringQuery): Promise<MonitoringReport> {
      await requireEnvironment(query.environmentId);
      const now = deps.clock();
      const since = parseTimeBound(query.since, now, 'since') ?? now - hourMs;
      const until = parseTimeBound(query.until, now, 'until') ?? now;
      if (since >= until) throw new AppError('FLAGSTREAM_ERR_VALIDATION', 'since: must be before until', { field: 'since' });
      if (query.step !== undefined && query.step !== 'minute' && query.step !== 'hour') throw new AppError('FLAGSTREAM_ERR_VALIDATION', 'step: expected minute or hour', { field: 'step' });
      const limit = query.limit === undefined ? 100 : Number(query.limit);
      if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new AppError('FLAGSTREAM_ERR_VALIDATION', 'limit: expected an integer from 1 to 1000', { field: 'limit' });
      // Minutes while they are kept and the range is a day or less; hours otherwise.
      const step: Step = (query.step as Step | undefined) ?? (since >= now - minutesMs && until - since <= dayMs ? 'minute' : 'hour');
      const kept = step === 'minute' ? minutesMs : hoursMs;
      if (since < now - kept) {
        const hint = step === 'minute' && since >= now - hoursMs ? '; use step=hour' : '';
        throw new AppError('FLAGSTREAM_ERR_VALIDATION', `since: ${step} buckets are kept ${Math.round(kept / dayMs)} day(s) (FLAGSTREAM_MONITOR_${step === 'minute' ? 'MINUTES' : 'HOURS'}_RETENTION)${hint}`, { field: 'since' });
      }
      const stepMs = step === 'minute' ? minuteMs : hourMs;
      const first = Math.floor(since / stepMs);
      const last = Math.floor((until - 1) / stepMs);
      if (last - first + 1 > maxBuckets) throw new AppError('FLAGSTREAM_ERR_VALIDATION', `since: the range has more than ${maxBuckets} ${step} buckets; use a shorter range or step=hour`, { field: 'since' });
      const timestamps: number[] = [];
      for (let bucket = first; bucket <= last; bucket += 1) timestamps.push(bucket * stepMs);
      const firstDay = Math.floor((first * stepMs) / dayMs);
      const lastDay = Math.floor((until - 1) / dayMs);
      const days: string[] = [];
      for (let day = firstDay; day <= lastDay; day += 1) days.push(new Date(day * dayMs).toISOString().slice(0, 10));

      let flagNames: string[];
      let flagsOmitted = 0;
      if (query.flag !== undefined && query.flag !== '') {
        flagNames = [query.flag];
      } else {
        const active = await store.activeFlags(query.environmentId, first * stepMs, limit);
        flagNames = active.flags;
        flagsOmitted = Math.max(0, active.total - active.flags.length);
      }
      const flags: FlagSeries[] = [];
      for (const flag of flagNames) {
        const known = await store.treatments(query.environmentId, flag, first * stepMs);
        const counts = await store.counts(query.environmentId, flag, known, step, first, last);
        const treatments = [...counts.keys()].sort();
        const unique = await store.uniqueKeys(query.environmentId, flag, treatments, firstDay, lastDay);
        const series = treatments.map((treatment): TreatmentSeries => {
          const impressions = counts.get(treatment) ?? [];
          return {
            treatment,
            impressions,
            total: impressions.reduce((sum, n) => sum + n, 0),
            uniqueKeys: unique.byTreatment.get(treatment) ?? 0,
            uniqueKeysPerDay: unique.byTreatmentPerDay.get(treatment) ?? days.map(() => 0),
          };
        });
        flags.push({ flag, total: series.reduce((sum, t) => sum + t.total, 0), uniqueKeys: unique.all, treatments: series });
      }
      const months = monthsBetween(first * stepMs, until - 1);
      const mtkCounts = await store.mtks(query.environmentId, months);
      return {
        environmentId: query.environmentId,
        since: new Date(first * stepMs).toISOString(),
        until: new Date(until).toISOString(),
        step,
        stepSeconds: stepMs / 1000,
        timestamps,
        days,
        flags,
        flagsOmitted,
        mtks: months.map((month, index) => ({ month, keys: mtkCounts[index] ?? 0 })),
        retention: { minuteBucketsMs: minutesMs, hourBucketsMs: hoursMs },
      };
    },

    /** The last `months` months (this one included), oldest first. */
    async mtks(environmentId: string, monthsText?: string | number): Promise<MtkReport> {
      await requireEnvironment(environmentId);
      const count = monthsText === undefined ? 12 : Number(monthsText);
      if (!Number.isInteger(count) || count < 1 || count > 13) throw new AppError('FLAGSTREAM_ERR_VALIDATION', 'months: expected an integer from 1 to 13 (MTKs are kept 13 months)', { field: 'months' });
      const now = new Date(deps.clock());
      const months: string[] = [];
      for (let back = count - 1; back >= 0; back -= 1) months.push(monthOf(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - back, 1)));
      const keys = await store.mtks(environmentId, months);
      return { environmentId, months: months.map((month, index) => ({ month, keys: keys[index] ?? 0 })) };
    },
  };
}
export type MonitoringService = ReturnType<typeof createMonitoringService>;
