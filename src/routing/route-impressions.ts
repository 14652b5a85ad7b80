import type { Impression } from '../domain/impression.js';
import { applyView, type RoutingView } from '../domain/stored-batch.js';
import type { RuntimeDestination, RuntimeEnvironment } from '../runtime/config-snapshot.js';
import { emptyFlagTraffic, type FlagTraffic } from '../stores/stats-store.js';
import type { RoutingDecision } from './live-tail.js';
import { type TrafficSeries, TrafficSeriesBuilder } from './traffic-series.js';

export type DropReason = 'tracking_off' | 'unknown_flag' | 'unknown_environment';

export interface RoutingResult {
  /** Only with `collect`: destination → the impressions it gets, as it gets them */
  readonly byDestination: Map<RuntimeDestination, Impression[]>;
  /** destination → the positions (in the input) of the impressions it gets */
  readonly rowsByDestination: Map<RuntimeDestination, number[]>;
  /** How the destinations' impressions differ from the input (labels, traffic types): read rows through it. */
  readonly view: RoutingView;
  readonly dropped: Map<DropReason, number>;
  readonly traffic: Map<string, FlagTraffic>;
  /** Tracked impressions per minute and treatment, keys per day and treatment (monitoring). */
  readonly series: TrafficSeries;
  readonly routed: number;
}

/** Called once per impression with what routing decided, only while someone watches the live tail. */
export type RoutingObserver = (impression: Impression, decision: RoutingDecision) => void;

/**
 * The routing stage, pure: enforce the track-impressions toggle (older SDKs ignore it), strip
 * labels where the environment disables them, count traffic per treatment and unique keys, and
 * pick the destinations whose filters match. Nothing is dropped without being counted.
 */
export function routeImpressions(environment: RuntimeEnvironment, impressions: readonly Impression[], observe?: RoutingObserver, options: { collect?: boolean } = {}): RoutingResult {
  const collect = options.collect ?? false;
  const byDestination = new Map<RuntimeDestination, Impression[]>();
  const rowsByDestination = new Map<RuntimeDestination, number[]>();
  const trafficTypes: Record<string, readonly [string, string?]> = {};
  const dropped = new Map<DropReason, number>();
  const traffic = new Map<string, FlagTraffic>();
  const series = new TrafficSeriesBuilder();
  const enabled = environment.destinations.filter((d) => d.destination.enabled);
  const { labelsEnabled, unknownFlags } = environment.environment;
  let routed = 0;

  for (let row = 0; row < impressions.length; row += 1) {
    const original = impressions[row] as Impression;
    const flag = environment.flags.get(original.split);
    let flagTraffic = traffic.get(original.split);
    if (flagTraffic === undefined) {
      flagTraffic = emptyFlagTraffic();
      traffic.set(original.split, flagTraffic);
    }
    // Unique keys count every evaluation, tracked or not, as Split's own MTK count does.
    flagTraffic.keys.add(original.key);
    const reason: DropReason | undefined = flag === undefined ? (unknownFlags === 'drop' ? 'unknown_flag' : undefined) : flag.trackImpressions ? undefined : 'tracking_off';
    if (reason !== undefined) {
      dropped.set(reason, (dropped.get(reason) ?? 0) + 1);
      flagTraffic.dropped.set(reason, (flagTraffic.dropped.get(reason) ?? 0) + 1);
      observe?.(original, { dropped: reason });
      continue;
    }
    flagTraffic.treatments.set(original.treatment, (flagTraffic.treatments.get(original.treatment) ?? 0) + 1);
    series.add(original);
    let trafficType: readonly [string, string?] | undefined;
    if (flag !== undefined) {
      trafficType = trafficTypes[original.split] ??= flag.trafficTypeId === undefined ? [flag.trafficType] : [flag.trafficType, flag.trafficTypeId];
    }
    // The impression as destinations will get it is built only for whoever reads it (live tail, export).
    const trafficTypeName = original.trafficTypeName ?? trafficType?.[0];
    const impression = observe !== undefined || collect ? applyView(original, labelsEnabled, trafficType) : original;
    routed += 1;
    const chosen: string[] | undefined = observe === undefined ? undefined : [];
    for (const destination of enabled) {
      if (!destination.matches(original.split, trafficTypeName)) continue;
      if (collect) {
        let list = byDestination.get(destination);
        if (list === undefined) {
          list = [];
          byDestination.set(destination, list);
        }
        list.push(impression);
      }
      let rows = rowsByDestination.get(destination);
      if (rows === undefined) {
        rows = [];
        rowsByDestination.set(destination, rows);
      }
      rows.push(row);
      chosen?.push(destination.destination.id);
    }
    if (chosen !== undefined) observe?.(impression, { destinations: chosen });
  }
  return { byDestination, rowsByDestination, view: { labels: labelsEnabled, trafficTypes }, dropped, traffic, series: series.series, routed };
}
