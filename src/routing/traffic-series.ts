import type { Impression } from '../domain/impression.js';

export const minuteMs = 60_000;
export const hourMs = 3_600_000;
export const dayMs = 86_400_000;

/** An SDK clock this far ahead of our reception is wrong: its impressions are bucketed at reception. */
export const maxClockSkewMs = 5 * minuteMs;

/**
 * The monitoring series of one routing job, before it is written: tracked impressions per flag,
 * minute and treatment, and their keys per flag, UTC day and treatment. Tracking-off and dropped
 * impressions never enter it.
 */
export interface TrafficSeries {
  /** flag → epoch minute → treatment → impressions */
  readonly minutes: Map<string, Map<number, Map<string, number>>>;
  /** flag → epoch day → treatment → keys */
  readonly dailyKeys: Map<string, Map<number, Map<string, Set<string>>>>;
}

export function emptyTrafficSeries(): TrafficSeries {
  return { minutes: new Map(), dailyKeys: new Map() };
}

/**
 * When an impression counts in the series: its evaluation time (as Harness FME's monitoring
 * shows it), unless that is in the future beyond any plausible clock skew, then its reception.
 */
export function seriesTime(impression: Pick<Impression, 'time' | 'receptionTimestamp'>): number {
  return impression.time > impression.receptionTimestamp + maxClockSkewMs ? impression.receptionTimestamp : impression.time;
}

function child<K, V>(map: Map<K, V>, key: K, create: () => V): V {
  let value = map.get(key);
  if (value === undefined) {
    value = create();
    map.set(key, value);
  }
  return value;
}

/**
 * Fills a TrafficSeries impression by impression. Impressions come grouped (a Split SDK bulk
 * request is grouped by flag, and times are close), so the maps of the previous impression's
 * flag, minute and day are kept at hand: most impressions cost one count and one key added.
 */
export class TrafficSeriesBuilder {
  readonly series: TrafficSeries = emptyTrafficSeries();
  private minuteFlag: string | undefined;
  private minute = Number.NaN;
  private minuteCounts: Map<string, number> | undefined;
  private dayFlag: string | undefined;
  private day = Number.NaN;
  private dayKeys: Map<string, Set<string>> | undefined;

  add(impression: Impression): void {
    const at = seriesTime(impression);
    const { split, treatment } = impression;
    const minute = Math.floor(at / minuteMs);
    if (this.minuteCounts === undefined || minute !== this.minute || split !== this.minuteFlag) {
      this.minuteCounts = child(child(this.series.minutes, split, () => new Map<number, Map<string, number>>()), minute, () => new Map<string, number>());
      this.minute = minute;
      this.minuteFlag = split;
    }
    this.minuteCounts.set(treatment, (this.minuteCounts.get(treatment) ?? 0) + 1);
    const day = Math.floor(at / dayMs);
    if (this.dayKeys === undefined || day !== this.day || split !== this.dayFlag) {
      this.dayKeys = child(child(this.series.dailyKeys, split, () => new Map<number, Map<string, Set<string>>>()), day, () => new Map<string, Set<string>>());
      this.day = day;
      this.dayFlag = split;
    }
    child(this.dayKeys, treatment, () => new Set<string>()).add(impression.key);
  }
}
