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
    liveTailChannel: `${prefix}:tail`,
  };
}
export type RedisKeys = ReturnType<typeof redisKeys>;
