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

/** Every Redis key flagstream writes, in one place. `prefix` isolates deployments (and tests). */
export function redisKeys(prefix: string) {
  return {
    bullPrefix: `${prefix}:q`,
    configEnvironments: `${prefix}:config:environments`,
    configVersion: `${prefix}:config:version`,
    configPlugins: `${prefix}:config:plugins`,
    configChannel: `${prefix}:config:changed`,
    statsFlag: (environmentId: string, flag: string) => `${prefix}:stats:${environmentId}:flag:${flag}`,
    statsFlagKeys: (environmentId: string, flag: string) => `${prefix}:stats:${environmentId}:keys:${flag}`,
    statsFlagsIndex: (environmentId: string) => `${prefix}:stats:${environmentId}:flags`,
    statsCounters: `${prefix}:stats:counters`,
    deadLetter: (id: string) => `${prefix}:dlq:item:${id}`,
    deadLetterIndex: `${prefix}:dlq:index`,
    deadLetterByDestination: (destinationId: string) => `${prefix}:dlq:destination:${destinationId}`,
    destinationHealth: (destinationId: string) => `${prefix}:health:${destinationId}`,
    destinationHealthIndex: `${prefix}:health:index`,
    destinationProbe: (destinationId: string) => `${prefix}:health:${destinationId}:probe`,
    rateWindow: (destinationId: string, window: number) => `${prefix}:rate:${destinationId}:${window}`,
    stagingIndex: `${prefix}:staging:index`,
    stagingList: (destinationId: string) => `${prefix}:staging:${destinationId}:items`,
    stagingMeta: (destinationId: string) => `${prefix}:staging:${destinationId}:meta`,
    stagingClaimed: (claimId: string) => `${prefix}:staging:claimed:${claimId}`,
    stagingClaimedIndex: `${prefix}:staging:claimed`,
    stagingAppended: (appendId: string) => `${prefix}:staging:appended:${appendId}`,
    deliveryFinished: (jobId: string) => `${prefix}:delivery:finished:${jobId}`,
    /** An accepted request, stored once (see domain/stored-batch.ts), and how many references to its rows are outstanding. */
    storedBatch: (batchId: string) => `${prefix}:batch:${batchId}`,
    storedBatchRefs: (batchId: string) => `${prefix}:batch:${batchId}:refs`,
    storedBatchOnce: (onceKey: string) => `${prefix}:batch:once:${onceKey}`,
    /** Pub/sub channel of an environment's live tail (one message per routing job, only while watched). */
    liveTailChannel: (environmentId: string) => `${prefix}:tail:${environmentId}`,
    liveTailViewers: `${prefix}:tail:viewers`,
    monitorFlags: (environmentId: string) => `${prefix}:mon:${environmentId}:flags`,
    monitorTreatments: (environmentId: string, flag: string) => `${prefix}:mon:${environmentId}:flag:${flag}:treatments`,
    monitorMinutes: (environmentId: string, flag: string, day: number) => `${prefix}:mon:${environmentId}:flag:${flag}:m:${day}`,
    monitorHours: (environmentId: string, flag: string, day: number) => `${prefix}:mon:${environmentId}:flag:${flag}:h:${day}`,
    monitorKeys: (environmentId: string, flag: string, day: number, treatment: string) => `${prefix}:mon:${environmentId}:flag:${flag}:k:${day}:${treatment}`,
    monitorScratch: (id: string) => `${prefix}:mon:scratch:${id}`,
    mtk: (environmentId: string, month: string) => `${prefix}:mtk:${environmentId}:${month}`,
    workerProcesses: `${prefix}:workers`,
    ledgerEnvironments: `${prefix}:ledger:environments`,
    ledgerEnvironment: (environmentId: string) => `${prefix}:ledger:environment:${environmentId}`,
    ledgerDestinations: `${prefix}:ledger:destinations`,
    ledgerDestination: (destinationId: string) => `${prefix}:ledger:destination:${destinationId}`,
    ledgerRoutingShares: (routingJobId: string) => `${prefix}:ledger:routing:${routingJobId}:shares`,
    ledgerRoutingDone: (routingJobId: string) => `${prefix}:ledger:routing:${routingJobId}:done`,
    ledgerOnce: (onceKey: string) => `${prefix}:ledger:once:${onceKey}`,
  };
}
export type RedisKeys = ReturnType<typeof redisKeys>;
