import { createHash } from 'node:crypto';
import type { ChainableCommander, Redis } from 'ioredis';
import { type DeadLetter, DeadLetterSchema, routingStage, type DeadLetterStatus, type DeadLetterSummary } from '../domain/dead-letter.js';
import { scrubCredentialPatterns } from '../observability/redact.js';
import type { RedisKeys } from './redis-keys.js';

export interface DeadLetterQuery {
  readonly destinationId?: string | undefined;
  readonly since?: number | undefined;
  readonly until?: number | undefined;
  readonly status?: DeadLetterStatus | undefined;
  readonly limit?: number | undefined;
}

export type NewDeadLetter = Omit<DeadLetter, 'status' | 'createdAt' | 'id'> & { key: string };

export interface DeadLetterStore {
  /**
   * Queues the record's writes on `multi` (with its count in `ledgerHash`), so a dead letter is
   * written together with the job update that removes its impressions from the job. Idempotent:
   * the same batch dead-lettered twice keeps one record and is counted once.
   */
  recordIn(multi: ChainableCommander, letter: NewDeadLetter): DeadLetter;
  /** recordIn on a transaction of its own. */
  record(letter: NewDeadLetter): Promise<DeadLetter>;
  get(id: string): Promise<DeadLetter | undefined>;
  /** Full records, impressions included; for a few (tests, one destination's recent failures). */
  list(query: DeadLetterQuery): Promise<DeadLetter[]>;
  /** Without the impressions: what lists show, cheap however large the dead letters are. */
  listSummaries(query: DeadLetterQuery): Promise<DeadLetterSummary[]>;
  /** Only the ids, newest first: replay and purge walk them one at a time. */
  listIds(query: DeadLetterQuery): Promise<string[]>;
  exists(id: string): Promise<boolean>;
  /**
   * Queues on `multi`: mark a pending dead letter replayed and count its impressions as replayed
   * (nothing when it is no longer pending). Its result in the EXEC is 1 or 0.
   */
  markReplayedIn(multi: ChainableCommander, letter: DeadLetter, at: number): void;
  remove(ids: readonly string[]): Promise<number>;
  /** Drops records older than the retention; returns how many. */
  trim(now: number): Promise<number>;
}

// One hash per dead letter: `record` (JSON, impressions included) and `summary` (JSON, without
// them) never change; `status` and `replayedAt` do, atomically. Each script counts in the ledger
// only when it changed something, so re-running it counts nothing twice.
const markReplayedScript = `
if redis.call('HGET', KEYS[1], 'status') == 'pending' then
  redis.call('HSET', KEYS[1], 'status', 'replayed', 'replayedAt', ARGV[1])
  redis.call('HINCRBY', KEYS[2], 'replayed', ARGV[2])
  return 1
end
return 0`;

const recordScript = `
if redis.call('HSETNX', KEYS[1], 'record', ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'summary', ARGV[2], 'destinationId', ARGV[3], 'status', 'pending')
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('ZADD', KEYS[2], 'NX', ARGV[4], ARGV[6])
redis.call('ZADD', KEYS[3], 'NX', ARGV[4], ARGV[6])
redis.call('HINCRBY', KEYS[4], 'deadLettered', ARGV[7])
return 1`;

type ScriptCommands = {
  flagstreamRecordDeadLetter(...args: (string | number)[]): ChainableCommander;
  flagstreamMarkReplayed(...args: (string | number)[]): ChainableCommander;
};

export function deadLetterId(key: string): string {
  return `dl_${createHash('sha256').update(key).digest('base64url').slice(0, 22)}`;
}

export function createDeadLetterStore(deps: { redis: Redis; keys: RedisKeys; retentionMs: number; clock?: () => number }): DeadLetterStore {
  const { redis, keys, retentionMs } = deps;
  const clock = deps.clock ?? Date.now;
  // Defined on the connection, so they run inside any MULTI made from it (BullMQ's included).
  redis.defineCommand('flagstreamRecordDeadLetter', { numberOfKeys: 4, lua: recordScript });
  redis.defineCommand('flagstreamMarkReplayed', { numberOfKeys: 2, lua: markReplayedScript });
  // Impressions that could not be routed count in their environment's ledger, the rest in their destination's.
  const ledgerHashOf = (letter: Pick<DeadLetter, 'destinationId' | 'environmentId'>): string =>
    letter.destinationId === routingStage ? keys.ledgerEnvironment(letter.environmentId) : keys.ledgerDestination(letter.destinationId);

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
    const statusAt = fields.indexOf('status');
    const found: T[] = [];
    const limit = query.limit ?? Number.POSITIVE_INFINITY;
    // Pages of ids, newest first: an outage's worth of dead letters is never read at once. Dead
    // letters arriving meanwhile shift a page down (an id read twice, harmless), never skip one.
    const until = query.until === undefined ? '+inf' : String(query.until);
    const since = query.since === undefined ? '-inf' : String(query.since);
    for (let offset = 0; found.length < limit; ) {
      const ids = await redis.zrevrangebyscore(index, until, since, 'LIMIT', offset, 500);
      if (ids.length === 0) break;
      const pipeline = redis.pipeline();
      for (const id of ids) pipeline.hmget(keys.deadLetter(id), ...fields);
      const results = (await pipeline.exec()) ?? [];
      const expired: string[] = [];
      ids.forEach((id, position) => {
        const values = (results[position]?.[1] ?? []) as (string | null)[];
        const picked = values[statusAt] === null ? undefined : pick(id, values);
        if (picked === undefined) expired.push(id);
        else if ((query.status === undefined || (values[statusAt] ?? 'pending') === query.status) && found.length < limit) found.push(picked);
      });
      // Expired entries leave the index, so the next page starts after the ones kept.
      if (expired.length > 0) await redis.zrem(index, ...expired);
      offset += ids.length - expired.length;
      if (ids.length < 500) break;
    }
    return found;
  };

  return {
    recordIn(multi, { key, ...letter }) {
      const id = deadLetterId(key);
      const createdAt = clock();
      // The delivery core already scrubbed the secrets it knows; this catches credentials by shape
      // (a plugin that declares no secretSettings, a message that quotes a header).
      const error = { ...letter.error, message: scrubCredentialPatterns(letter.error.message) };
      const record = { ...letter, error, createdAt };
      const { impressions, ...summary } = record;
      (multi as ChainableCommander & ScriptCommands).flagstreamRecordDeadLetter(
        keys.deadLetter(id),
        keys.deadLetterIndex,
        keys.deadLetterByDestination(letter.destinationId),
        ledgerHashOf(letter),
        JSON.stringify(record),
        JSON.stringify({ ...summary, impressionCount: impressions.length }),
        letter.destinationId,
        createdAt,
        retentionMs,
        id,
        impressions.length,
      );
      return { ...record, id, status: 'pending' };
    },
    async record(letter) {
      const multi = redis.multi();
      const recorded = this.recordIn(multi, letter);
      await multi.exec();
      return recorded;
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
    markReplayedIn(multi, letter, at) {
      (multi as ChainableCommander & ScriptCommands).flagstreamMarkReplayed(keys.deadLetter(letter.id), ledgerHashOf(letter), at, letter.impressions.length);
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
      let removed = 0;
      for (;;) {
        // Removing shrinks the range: always read its first page.
        const old = await redis.zrangebyscore(keys.deadLetterIndex, '-inf', cutoff, 'LIMIT', 0, 500);
        if (old.length === 0) return removed;
        removed += await this.remove(old);
        if (old.length < 500) return removed;
      }
    },
  };
}
