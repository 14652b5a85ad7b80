import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';

export const testRedisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

/** A unique key prefix per test, so tests never see each other's keys (BullMQ style). */
export function uniquePrefix(name = 'test'): string {
  return `fstest:${name}:${randomBytes(4).toString('hex')}`;
}

export function createTestRedis(url = testRedisUrl): Redis {
  const redis = new Redis(url, { maxRetriesPerRequest: null, retryStrategy: () => 100 });
  // Reconnection noise of tests that stop their Redis on purpose.
  redis.on('error', () => undefined);
  return redis;
}

export async function deleteKeys(redis: Redis, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length > 0) await redis.del(...keys);
  } while (cursor !== '0');
}
