import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { type DeadLetter, DeadLetterSchema, type DeadLetterStatus, type DeadLetterSummary } from '../domain/dead-letter.js';
import { scrubCredentialPatterns } from '../observability/redact.js';
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
  /** Full records, impressions included; for a few (tests, one destination's recent failures). */
  list(query: DeadLetterQuery): Promise<DeadLetter[]>;
  /** Without the impressions: what lists show, cheap however large the dead letters are. */
  listSummaries(query: DeadLetterQuery): Promise<DeadLetterSummary[]>;
  /** Only the ids, newest first: replay and purge walk them one at a time. */
  listIds(query: DeadLetterQuery): Promise<string[]>;
  exists(id: string): Promise<boolean>;
  /** Marks a pending dead letter replayed; false when it was not pending (already replayed, or gone). */
  markReplayed(id: string, at: number): Promise<boolean>;
  remove(ids: readonly string[]): Promise<number>;
  /** Drops records older than the retention; returns how many. */
  trim(now: number): Promise<number>;
}

// One hash per dead letter: `record` (JSON, impressions included) and `summary` (JSON, without
// them) never change; `status` and `replayedAt` do, atomically.
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

  /**
   * Walks an index newest first in pages, reading only `fields` of each record; `pick` returns
   * undefined for a record that expired (its index entry is then dropped) and filters on status.
   */
  const scan = async <T>(query: DeadLetterQuery, fields: readonly string[], pick: (id: string, values: (string | null)[]) => T | undefined): Promise<T[]> => {
    const index = query.destinationId === undefined ? keys.deadLetterIndex : keys.deadLetterByDestination(query.destinationId);
    const ids = await redis.zrevrangebyscore(index, query.until ?? '+inf', query.since ?? '-inf');
    const statusAt = fields.indexOf('status');
    const found: T[] = [];
    const limit = query.limit ?? Number.POSITIVE_INFINITY;
    for (let start = 0; start < ids.length && found.length < limit; start += 500) {
      const page = ids.slice(start, start + 500);
      const pipeline = redis.pipeline();
      for (const id of page) pipeline.hmget(keys.deadLetter(id), ...fields);
      const results = (await pipeline.exec()) ?? [];
      const expired: string[] = [];
      page.forEach((id, position) => {
        const values = (results[position]?.[1] ?? []) as (string | null)[];
        const picked = values[statusAt] === null ? undefined : pick(id, values);
        if (picked === undefined) expired.push(id);
        else if ((query.status === undefined || (values[statusAt] ?? 'pending') === query.status) && found.length < limit) found.push(picked);
      });
      if (expired.length > 0) await redis.zrem(index, ...expired);
    }
    return found;
  };

  return {
    async record({ key, ...letter }) {
      const id = deadLetterId(key);
      const createdAt = clock();
      const itemKey = keys.deadLetter(id);
      // The delivery core already scrubbed the secrets it knows; this catches credentials by shape
      // (a plugin that declares no secretSettings, a message that quotes a header).
      const error = { ...letter.error, message: scrubCredentialPatterns(letter.error.message) };
      const record = { ...letter, error, createdAt };
      const pipeline = redis.pipeline();
      const { impressions, ...summary } = record;
      pipeline.hsetnx(itemKey, 'record', JSON.stringify(record));
      pipeline.hsetnx(itemKey, 'summary', JSON.stringify({ ...summary, impressionCount: impressions.length }));
      pipeline.hsetnx(itemKey, 'destinationId', letter.destinationId);
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
      const letters: DeadLetter[] = [];
      for (const id of await this.listIds(query)) {
        const letter = await this.get(id);
        if (letter !== undefined) letters.push(letter);
      }
      return letters;
    },
    async listSummaries(query) {
      return scan(query, ['summary', 'status', 'replayedAt'], (id, [summary, status, replayedAt]) =>
        summary === null || summary === undefined
          ? undefined
          : ({
              ...(JSON.parse(summary) as Omit<DeadLetterSummary, 'id' | 'status' | 'replayedAt'>),
              id,
              status: (status ?? 'pending') as DeadLetterStatus,
              ...(replayedAt === null || replayedAt === undefined ? {} : { replayedAt: Number(replayedAt) }),
            } satisfies DeadLetterSummary),
      );
    },
    async listIds(query) {
      return scan(query, ['status'], (id, [status]) => (status === null ? undefined : id));
    },
    async exists(id) {
      return (await redis.exists(keys.deadLetter(id))) === 1;
    },
    async markReplayed(id, at) {
      return (await redis.eval(markReplayedScript, 1, keys.deadLetter(id), String(at))) === 1;
    },
    async remove(ids) {
      let removed = 0;
      for (let start = 0; start < ids.length; start += 500) {
        const page = ids.slice(start, start + 500);
        const lookup = redis.pipeline();
        for (const id of page) lookup.hget(keys.deadLetter(id), 'destinationId');
        const destinations = (await lookup.exec()) ?? [];
        const pipeline = redis.pipeline();
        page.forEach((id, index) => {
          const destinationId = destinations[index]?.[1];
          pipeline.del(keys.deadLetter(id));
          pipeline.zrem(keys.deadLetterIndex, id);
          if (typeof destinationId === 'string') {
            pipeline.zrem(keys.deadLetterByDestination(destinationId), id);
            removed += 1;
          }
        });
        await pipeline.exec();
      }
      return removed;
    },
    async trim(now) {
      const cutoff = now - retentionMs;
      const old = await redis.zrangebyscore(keys.deadLetterIndex, '-inf', cutoff);
      return old.length === 0 ? 0 : this.remove(old);
    },
  };
}
