import type { Redis } from 'ioredis';
import type { RedisKeys } from './redis-keys.js';

export interface WorkerProcess {
  readonly id: string;
  readonly host: string;
  readonly pid: number;
  readonly startedAt: string;
}

/**
 * Worker processes announce themselves in one sorted set scored by expiry, renewed every few
 * seconds, so `/readyz` can say whether anything is routing and delivering (one bounded read).
 */
export interface WorkerRegistry {
  announce(worker: WorkerProcess, ttlMs: number): Promise<void>;
  remove(worker: WorkerProcess): Promise<void>;
  /** Workers whose announcement has not lapsed, at most `limit`. */
  alive(limit?: number): Promise<{ count: number; workers: WorkerProcess[] }>;
}

export function createWorkerRegistry(deps: { redis: Redis; keys: RedisKeys; clock: () => number }): WorkerRegistry {
  const { redis, keys, clock } = deps;
  return {
    async announce(worker, ttlMs) {
      await redis.multi().zremrangebyscore(keys.workerProcesses, '-inf', clock()).zadd(keys.workerProcesses, clock() + ttlMs, JSON.stringify(worker)).exec();
    },
    async remove(worker) {
      await redis.zrem(keys.workerProcesses, JSON.stringify(worker));
    },
    async alive(limit = 20) {
      const now = clock();
      const [count, members] = await Promise.all([redis.zcount(keys.workerProcesses, now, '+inf'), redis.zrangebyscore(keys.workerProcesses, now, '+inf', 'LIMIT', 0, limit)]);
      const workers: WorkerProcess[] = [];
      for (const member of members) {
        try {
          workers.push(JSON.parse(member) as WorkerProcess);
        } catch {
          // not one of ours
        }
      }
      return { count, workers };
    },
  };
}
