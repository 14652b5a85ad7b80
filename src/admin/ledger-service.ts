import type { Redis } from 'ioredis';
import { deliveryJobCount, ingestJobCount, tallyUnfinishedJobs, type Queues } from '../queues/queues.js';
import { countStaged } from '../routing/staging-buffer.js';
import type { LedgerStore } from '../stores/ledger-store.js';
import type { RedisKeys } from '../stores/redis-keys.js';

export interface DestinationLedger {
  readonly destinationId: string;
  readonly routed: number;
  readonly replayed: number;
  readonly delivered: number;
  readonly skipped: number;
  readonly deadLettered: number;
  /** In delivery jobs not finished yet, or in the staging buffer: measured, not counted. */
  readonly pending: number;
  /** routed + replayed − (delivered + skipped + deadLettered + pending); 0 when it balances. */
  readonly difference: number;
}

export interface EnvironmentLedger {
  readonly environmentId: string;
  readonly received: number;
  readonly replayed: number;
  readonly dropped: Record<string, number>;
  readonly routed: number;
  /** Impressions that could not be routed (dead letters of the `@routing` stage). */
  readonly deadLettered: number;
  /** In routing jobs not finished yet: measured, not counted. */
  readonly pending: number;
  /** received + replayed − (dropped + routed + deadLettered + pending); 0 when it balances. */
  readonly difference: number;
  readonly destinations: DestinationLedger[];
}

export interface LedgerReport {
  readonly balanced: boolean;
  readonly environments: EnvironmentLedger[];
}

/** What the ledger of one partition of the data plane is read from. */
export interface LedgerPartition {
  readonly redis: Redis;
  readonly dataKeys: RedisKeys;
  readonly ledger: LedgerStore;
  readonly queues: Queues;
}

/**
 * Where every accepted impression went, per environment and destination. The counters are exact
 * (see stores/ledger-store.ts); `pending` is read from the queues, so the report balances only
 * at a quiet moment, and a difference then means impressions went somewhere they should not.
 * A partitioned deployment's report is the union of its partitions' reports: an environment and
 * its destinations live in one partition, so nothing is counted in two.
 */
export function createLedgerService(deps: { partitions: readonly LedgerPartition[] }) {
  return {
    async report(filter: { environmentId?: string | undefined } = {}): Promise<LedgerReport> {
      const reports = await Promise.all(deps.partitions.map((partition) => partitionReport(partition, filter)));
      const environments = reports.flat().sort((a, b) => a.environmentId.localeCompare(b.environmentId));
      return { balanced: environments.every((e) => e.difference === 0 && e.destinations.every((d) => d.difference === 0)), environments };
    },
  };
}
export type LedgerService = ReturnType<typeof createLedgerService>;

async function partitionReport(partition: LedgerPartition, filter: { environmentId?: string | undefined }): Promise<EnvironmentLedger[]> {
  const [environments, destinations, routing, delivery, staged] = await Promise.all([
    partition.ledger.environments(),
    partition.ledger.destinations(),
    tallyUnfinishedJobs(partition.queues.ingest, (data) => [data.environmentId, ingestJobCount(data)]),
    tallyUnfinishedJobs(partition.queues.delivery, (data) => [data.destinationId, deliveryJobCount(data)]),
    countStaged(partition.redis, partition.dataKeys),
  ]);
  const ids = new Set([...environments.map((e) => e.environmentId), ...destinations.map((d) => d.environmentId), ...routing.keys()]);
  const report: EnvironmentLedger[] = [];
  for (const environmentId of [...ids].sort()) {
    if (filter.environmentId !== undefined && filter.environmentId !== environmentId) continue;
    const counts = environments.find((e) => e.environmentId === environmentId) ?? { received: 0, replayed: 0, routed: 0, deadLettered: 0, dropped: {} };
    const pending = routing.get(environmentId) ?? 0;
    const dropped = Object.values(counts.dropped).reduce((sum, n) => sum + n, 0);
    report.push({
      environmentId,
      received: counts.received,
      replayed: counts.replayed,
      dropped: counts.dropped,
      routed: counts.routed,
      deadLettered: counts.deadLettered,
      pending,
      difference: counts.received + counts.replayed - (dropped + counts.routed + counts.deadLettered + pending),
      destinations: destinations
        .filter((d) => d.environmentId === environmentId)
        .map((d) => {
          const destinationPending = (delivery.get(d.destinationId) ?? 0) + (staged.get(d.destinationId) ?? 0);
          return {
            destinationId: d.destinationId,
            routed: d.routed,
            replayed: d.replayed,
            delivered: d.delivered,
            skipped: d.skipped,
            deadLettered: d.deadLettered,
            pending: destinationPending,
            difference: d.routed + d.replayed - (d.delivered + d.skipped + d.deadLettered + destinationPending),
          };
        }),
    });
  }
  return report;
}
