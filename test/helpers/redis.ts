import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { createRedisClient, masterNodes } from '../../src/runtime/redis-client.js';
import { deploymentPrefix } from '../../src/stores/redis-keys.js';

export const testRedisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

/** A unique key prefix per test, so tests never see each other's keys (BullMQ style). */
export function uniquePrefix(name = 'test'): string {
  return `fstest:${name}:${randomBytes(4).toString('hex')}`;
}

/** A connection to `url` (a Cluster for a `redis+cluster://` URL, as flagstream makes it). */
export function createTestRedis(url = testRedisUrl): Redis {
  const redis = createRedisClient(url, { maxRetriesPerRequest: null, retryStrategy: () => 100 });
  // Reconnection noise of tests that stop their Redis on purpose.
  redis.on('error', () => undefined);
  return redis;
}

/** Calls `onPage` with the keys matching `pattern`, page by page, on each master of a Cluster (SCAN reads one node). */
export async function scanKeys(redis: Redis, pattern: string, onPage: (node: Redis, keys: string[]) => Promise<unknown>): Promise<void> {
  for (const node of masterNodes(redis)) {
    let cursor = '0';
    do {
      const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) await onPage(node, keys);
    } while (cursor !== '0');
  }
}

/** Deletes the keys of the deployment `prefix` (hash-tagged on a Cluster), its partitions' included. */
export async function deleteKeys(redis: Redis, prefix: string): Promise<void> {
  // On a Cluster one DEL per key: a multi-key DEL must stay within one slot.
  // Partitions' keys (FLAGSTREAM_REDIS_PARTITIONS > 1) too: `{<prefix>:p<k>}:…`.
  for (const pattern of [`${deploymentPrefix(prefix, redis.isCluster)}:*`, `{${prefix}:p*}:*`]) {
    await scanKeys(redis, pattern, (node, keys) => (redis.isCluster ? Promise.all(keys.map((key) => node.del(key))) : node.del(...keys)));
  }
}
