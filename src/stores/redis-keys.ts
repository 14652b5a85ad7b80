import { crc32 } from 'node:zlib';

/**
 * The prefix of every key of the deployment named `prefix` (FLAGSTREAM_REDIS_PREFIX). On a Redis
 * Cluster it is a hash tag, `{flagstream}`: flagstream writes BullMQ's keys and its own in one
 * MULTI or Lua script, which a cluster accepts only when all their keys hash to one slot, and a
 * tag makes every key hash as the tag does. A single Redis keeps the plain prefix (the key names
 * of existing deployments do not change).
 */
export function deploymentPrefix(prefix: string, cluster: boolean): string {
  return cluster ? `{${prefix}}` : prefix;
}

/** The keys of the deployment `prefix` on `redis` (a Cluster's are hash-tagged, see `deploymentPrefix`). */
export function deploymentKeys(prefix: string, redis: { readonly isCluster: boolean }) {
  return redisKeys(deploymentPrefix(prefix, redis.isCluster));
}

/**
 * The partition of an environment's data among `partitions` (FLAGSTREAM_REDIS_PARTITIONS): CRC32 of
 * its id, stable across processes and versions. Every transaction is about one environment, so
 * taking all its keys from that environment's partition keeps each one on one cluster slot.
 */
export function partitionOf(environmentId: string, partitions: number): number {
  return partitions <= 1 ? 0 : crc32(environmentId) % partitions;
}

/**
 * The prefix of partition `partition`'s data-plane keys. Not partitioned (`partitions` = 1): the
 * deployment's prefix, so key names stay as they were. Partitioned: a hash tag of its own,
 * `{flagstream:p<k>}`, on a single Redis too (harmless there, and the same names everywhere).
 */
export function partitionPrefix(prefix: string, cluster: boolean, partition: number, partitions: number): string {
  return partitions <= 1 ? deploymentPrefix(prefix, cluster) : `{${prefix}:p${partition}}`;
}

/** The keys of each partition of the deployment `prefix` (index = partition number); control-plane keys are the same in each. */
export function partitionedKeys(prefix: string, redis: { readonly isCluster: boolean }, partitions: number): RedisKeys[] {
  const control = deploymentPrefix(prefix, redis.isCluster);
  return Array.from({ length: Math.max(1, partitions) }, (_, partition) => redisKeys(control, partitionPrefix(prefix, redis.isCluster, partition, partitions)));
}

/**
 * Every Redis key flagstream writes, in one place. `prefix` isolates deployments (and tests) and
 * names the control-plane keys (configuration, plugins, workers, live tail); `data` names the
 * data-plane keys (queues, batches, ledger, dead letters, staging, health, rate, stats,
 * monitoring) of one partition: the prefix itself when the deployment is not partitioned.
 */
export function redisKeys(prefix: string, data: string = prefix) {
  return {
    configPartitions: `${prefix}:config:partitions`,
    bullPrefix: `${data}:q`,
    configEnvironments: `${prefix}:config:environments`,
    configVersion: `${prefix}:config:version`,
    configPlugins: `${prefix}:config:plugins`,
    configChannel: `${prefix}:config:changed`,
    statsFlag: (environmentId: string, flag: string) => `${data}:stats:${environmentId}:flag:${flag}`,
    statsFlagKeys: (environmentId: string, flag: string) => `${data}:stats:${environmentId}:keys:${flag}`,
    statsFlagsIndex: (environmentId: string) => `${data}:stats:${environmentId}:flags`,
    statsCounters: `${data}:stats:counters`,
    deadLetter: (id: string) => `${data}:dlq:item:${id}`,
    deadLetterIndex: `${data}:dlq:index`,
    deadLetterByDestination: (destinationId: string) => `${data}:dlq:destination:${destinationId}`,
    destinationHealth: (destinationId: string) => `${data}:health:${destinationId}`,
    destinationHealthIndex: `${data}:health:index`,
    destinationProbe: (destinationId: string) => `${data}:health:${destinationId}:probe`,
    rateWindow: (destinationId: string, window: number) => `${data}:rate:${destinationId}:${window}`,
    stagingIndex: `${data}:staging:index`,
    stagingList: (destinationId: string) => `${data}:staging:${destinationId}:items`,
    stagingMeta: (destinationId: string) => `${data}:staging:${destinationId}:meta`,
    stagingClaimed: (claimId: string) => `${data}:staging:claimed:${claimId}`,
    stagingClaimedIndex: `${data}:staging:claimed`,
    stagingAppended: (appendId: string) => `${data}:staging:appended:${appendId}`,
    /** Every once-mark of a job, flush or ingest commit (stores/once-marks.ts). */
    onceMarks: (id: string) => `${data}:once:${id}`,
    /** An accepted request, stored once (see domain/stored-batch.ts), and how many references to its rows are outstanding. */
    storedBatch: (batchId: string) => `${data}:batch:${batchId}`,
    storedBatchRefs: (batchId: string) => `${data}:batch:${batchId}:refs`,
    /** Pub/sub channel of an environment's live tail (one message per routing job, only while watched). */
    liveTailChannel: (environmentId: string) => `${prefix}:tail:${environmentId}`,
    liveTailViewers: `${prefix}:tail:viewers`,
    monitorFlags: (environmentId: string) => `${data}:mon:${environmentId}:flags`,
    monitorTreatments: (environmentId: string, flag: string) => `${data}:mon:${environmentId}:flag:${flag}:treatments`,
    monitorMinutes: (environmentId: string, flag: string, day: number) => `${data}:mon:${environmentId}:flag:${flag}:m:${day}`,
    monitorHours: (environmentId: string, flag: string, day: number) => `${data}:mon:${environmentId}:flag:${flag}:h:${day}`,
    monitorKeys: (environmentId: string, flag: string, day: number, treatment: string) => `${data}:mon:${environmentId}:flag:${flag}:k:${day}:${treatment}`,
    monitorScratch: (id: string) => `${data}:mon:scratch:${id}`,
    mtk: (environmentId: string, month: string) => `${data}:mtk:${environmentId}:${month}`,
    workerProcesses: `${prefix}:workers`,
    ledgerEnvironments: `${data}:ledger:environments`,
    ledgerEnvironment: (environmentId: string) => `${data}:ledger:environment:${environmentId}`,
    ledgerDestinations: `${data}:ledger:destinations`,
    ledgerDestination: (destinationId: string) => `${data}:ledger:destination:${destinationId}`,
  };
}
export type RedisKeys = ReturnType<typeof redisKeys>;
