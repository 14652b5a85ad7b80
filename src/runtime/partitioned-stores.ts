import type { MonitoringStore } from '../stores/monitoring-store.js';
import type { StatsStore } from '../stores/stats-store.js';

/** Stores of each partition (index = partition number) and the partition of an environment. */
export interface Partitioned<T> {
  readonly partitions: readonly T[];
  partitionFor(environmentId: string): T;
}

function first<T>(stores: Partitioned<T>): T {
  const store = stores.partitions[0];
  if (store === undefined) throw new Error('no partition');
  return store;
}

/**
 * One StatsStore over every partition: an environment's stats are in its partition. The SDK
 * counters (`stats:counters`) belong to no environment; partition 0 keeps them.
 */
export function statsAcross(stores: Partitioned<{ readonly stats: StatsStore }>): StatsStore {
  return {
    record: (environmentId, traffic, series) => stores.partitionFor(environmentId).stats.record(environmentId, traffic, series),
    increment: (counter, by) => first(stores).stats.increment(counter, by),
    flagStats: (environmentId) => stores.partitionFor(environmentId).stats.flagStats(environmentId),
    counters: () => first(stores).stats.counters(),
  };
}

/** One MonitoringStore over every partition: each query is about one environment, read in its partition. */
export function monitoringAcross(stores: Partitioned<{ readonly monitoring: MonitoringStore }>): MonitoringStore {
  const of = (environmentId: string) => stores.partitionFor(environmentId).monitoring;
  return {
    retention: first(stores).monitoring.retention,
    writeIn: (pipeline, environmentId, traffic, series) => of(environmentId).writeIn(pipeline, environmentId, traffic, series),
    activeFlags: (environmentId, since, limit) => of(environmentId).activeFlags(environmentId, since, limit),
    treatments: (environmentId, flag, since) => of(environmentId).treatments(environmentId, flag, since),
    counts: (environmentId, flag, treatments, step, firstBucket, last) => of(environmentId).counts(environmentId, flag, treatments, step, firstBucket, last),
    uniqueKeys: (environmentId, flag, treatments, firstDay, lastDay) => of(environmentId).uniqueKeys(environmentId, flag, treatments, firstDay, lastDay),
    mtks: (environmentId, months) => of(environmentId).mtks(environmentId, months),
  };
}
