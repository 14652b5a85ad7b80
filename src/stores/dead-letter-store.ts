import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { type DeadLetter, DeadLetterSchema, type DeadLetterStatus } from '../domain/dead-letter.js';
import type { RedisKeys } from './redis-keys.js';

export interface DeadLetterQuery {
  readonly destinationId?: string | undefined;
  readonly since?: number | undefined;
  readonly until?: number | undefined;
  readonly status?: DeadLetterStatus | undefined;
  readonly limit?: number | undefined;
}

export interface DeadLetterStore {
  /** Idempotent: the same batch dead-lettered twice (a crash before the ack) keeps one record. */
  record(letter: Omit<DeadLetter, 'status' | 'createdAt' | 'id'> & { key: string }): Promise<DeadLetter>;
  get(id: string): Promise<DeadLetter | undefined>;
  list(query: DeadLetterQuery): Promise<DeadLetter[]>;
  /** Marks a pending dead letter replayed; false when it was not pending (already replayed, or gone). */
  markReplayed(id: string, at: number): Promise<boolean>;
  remove(ids: readonly string[]): Promise<number>;
  /** Drops records older than the retention; returns how many. */
  trim(now: number): Promise<number>;
}

// One hash per dead letter: `record` (JSON) never changes; `status` and `replayedAt` do, atomically.
const markReplayedScript = `
if redis.call('HGET', KEYS[1], 'status') == 'pending' then
  redis.call('HSET', KEYS[1], 'status', 'replayed', 'replayedAt', ARGV[1])
  return 1
end
return 0`;

export function deadLetterId(key: string): string {
  return `dl_${createHash('sha256').update(key).digest('base64url').slice(0, 22)}`;
}

export function createDeadLetterStore(deps: { redis: Redis; keys: RedisKeys; retentionMs: number; clock?: () => number }): DeadLetterStore {
  const { redis, keys, retentionMs } = deps;
  const clock = deps.clock ?? Date.now;

  const decode = (id: string, hash: Record<string, string>): DeadLetter | undefined => {
    if (hash.record === undefined) return undefined;
    const record = JSON.parse(hash.record) as Record<string, unknown>;
    return DeadLetterSchema.parse({
      ...record,
      id,
      status: hash.status ?? 'pending',
      ...(hash.replayedAt === undefined ? {} : { replayedAt: Number(hash.replayedAt) }),
    });
  };

  return {
    async record({ key, ...letter }) {
      const id = deadLetterId(key);
      const createdAt = clock();
      const itemKey = keys.deadLetter(id);
      const record = { ...letter, createdAt };
      const pipeline = redis.pipeline();
      pipeline.hsetnx(itemKey, 'record', JSON.stringify(record));
      pipeline.hsetnx(itemKey, 'status', 'pending');
      pipeline.pexpire(itemKey, retentionMs);
      pipeline.zadd(keys.deadLetterIndex, 'NX', createdAt, id);
      pipeline.zadd(keys.deadLetterByDestination(letter.destinationId), 'NX', createdAt, id);
      await pipeline.exec();
      return { ...record, id, status: 'pending' };
    },
    async get(id) {
      const hash = await redis.hgetall(keys.deadLetter(id));
      return decode(id, hash);
    },
    async list(query) {
      const index = query.destinationId === undefined ? keys.deadLetterIndex : keys.deadLetterByDestination(query.destinationId);
      const ids = await redis.zrevrangebyscore(index, query.until ?? '+inf', query.since ?? '-inf');
      const found: DeadLetter[] = [];
      const limit = query.limit ?? Number.POSITIVE_INFINITY;
      for (let start = 0; start < ids.length && found.length < limit; start += 200) {
        const page = ids.slice(start, start + 200);
        const pipeline = redis.pipeline();
        for (const id of page) pipeline.hgetall(keys.deadLetter(id));
        const results = (await pipeline.exec()) ?? [];
        const expired: string[] = [];
        page.forEach((id, index) => {
          const letter = decode(id, (results[index]?.[1] ?? {}) as Record<string, string>);
          if (letter === undefined) expired.push(id);
          else if ((query.status === undefined || letter.status === query.status) && found.length < limit) found.push(letter);
        });
        if (expired.length > 0) await redis.zrem(index, ...expired);
      }
      return found;
    },
    async markReplayed(id, at) {
      return (await redis.eval(markReplayedScript, 1, keys.deadLetter(id), String(at))) === 1;
    },
    async remove(ids) {
      if (ids.length === 0) return 0;
      const letters = await Promise.all(ids.map((id) => this.get(id)));
      const pipeline = redis.pipeline();
      let removed = 0;
      ids.forEach((id, index) => {
        const letter = letters[index];
        pipeline.del(keys.deadLetter(id));
        pipeline.zrem(keys.deadLetterIndex, id);
        if (letter !== undefined) {
          pipeline.zrem(keys.deadLetterByDestination(letter.destinationId), id);
          removed += 1;
        }
      });
      await pipeline.exec();
      return removed;
    },
    async trim(now) {
      const cutoff = now - retentionMs;
      const old = await redis.zrangebyscore(keys.deadLetterIndex, '-inf', cutoff);
      return old.length === 0 ? 0 : this.remove(old);
    },
  };
}
