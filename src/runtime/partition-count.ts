import type { Redis } from 'ioredis';
import { AppError } from '../domain/errors.js';
import { deploymentPrefix, redisKeys } from '../stores/redis-keys.js';

const noMigration =
  'moving environments between partitions needs a migration that does not exist: keep the number a deployment was started with (or start a new deployment under another FLAGSTREAM_REDIS_PREFIX)';

/**
 * FLAGSTREAM_REDIS_PARTITIONS is fixed for a deployment's life: a changed count would look for
 * each environment's data in another partition. The first process records the count
 * (`config:partitions`); a process started with another one is refused. `record: false` (the CLI)
 * only compares. A deployment from before the setting (no count recorded, data written
 * unpartitioned) may start with 1 only.
 */
export async function checkPartitionCount(redis: Redis, prefix: string, partitions: number, options: { record: boolean }): Promise<void> {
  const unpartitioned = redisKeys(deploymentPrefix(prefix, redis.isCluster));
  const refuse = (stored: string) =>
    new AppError(
      'FLAGSTREAM_ERR_CONFIG',
      `FLAGSTREAM_REDIS_PARTITIONS is ${partitions}, but the deployment "${prefix}" was started with ${stored} (recorded in ${unpartitioned.configPartitions}); ${noMigration}`,
      { field: 'FLAGSTREAM_REDIS_PARTITIONS' },
    );
  let stored = await redis.get(unpartitioned.configPartitions);
  if (stored === null) {
    if (!options.record) return;
    if (partitions > 1 && (await redis.scard(unpartitioned.ledgerEnvironments)) > 0) throw refuse('1 (its data predates the setting and is not partitioned)');
    // NX: of two processes starting at once with different counts, the second is refused.
    if ((await redis.set(unpartitioned.configPartitions, String(partitions), 'NX')) === 'OK') return;
    stored = await redis.get(unpartitioned.configPartitions);
  }
  if (stored !== null && Number(stored) !== partitions) throw refuse(stored);
}
