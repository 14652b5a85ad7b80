import type { Redis } from 'ioredis';
import type { RedisKeys } from '../stores/redis-keys.js';

/** Requests-per-second pacing per destination, shared by all processes (fixed one-second windows in Redis). */
export interface RateLimiter {
  /** Reserves `requests` in the current window; returns 0, or how long to wait for the next window. */
  reserve(destinationId: string, requests: number, perSecond: number, now: number): Promise<number>;
}

export function createRateLimiter(deps: { redis: Redis; keys: RedisKeys }): RateLimiter {
  return {
    async reserve(destinationId, requests, perSecond, now) {
      const window = Math.floor(now / 1000);
      const key = deps.keys.rateWindow(destinationId, window);
      const [[, used]] = (await deps.redis.multi().incrby(key, requests).pexpire(key, 2000).exec()) as [[unknown, number], unknown];
      // A batch bigger than the rate still goes through alone in a fresh window.
      if (used <= perSecond || used === requests) return 0;
      await deps.redis.decrby(key, requests);
      return (window + 1) * 1000 - now;
    },
  };
}
