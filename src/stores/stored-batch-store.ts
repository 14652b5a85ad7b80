import type { ChainableCommander, Redis } from 'ioredis';
import { decodeStoredBatch, type DecodedBatch } from '../domain/stored-batch.js';
import type { OnceName } from './once-marks.js';
import type { RedisKeys } from './redis-keys.js';

/*
 * A stored batch lives while references to its rows are outstanding. Ingest writes it with one
 * reference, the routing hold; each destination share written adds its rows; each settlement
 * (delivered, skipped, dead-lettered) takes its rows away; routing drops its hold once every share
 * is durable. At zero the batch is deleted. Adding and taking apply once per named transaction
 * (a re-sent transaction must not release a batch others still need); routing also sets an
 * expiry, the max delivery age plus a margin, so a leaked reference cannot keep a batch forever.
 */

// KEYS[1] the once hash (stores/once-marks.ts), then (batch, refs) pairs; ARGV[1] the mark,
// ARGV[2] the once hash's ttl, ARGV[3] batch ttl, ARGV[4..] rows per pair.
const retainScript = `
if redis.call('HSETNX', KEYS[1], ARGV[1], '1') == 0 then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
for i = 4, #ARGV do
  local batch = KEYS[(i - 4) * 2 + 2]
  local refs = KEYS[(i - 4) * 2 + 3]
  redis.call('INCRBY', refs, ARGV[i])
  redis.call('PEXPIRE', refs, ARGV[3])
  redis.call('PEXPIRE', batch, ARGV[3])
end
return 1`;

// KEYS[1] the once hash, then (batch, refs) pairs; ARGV[1] the mark, ARGV[2] the once hash's
// ttl, ARGV[3..] rows per pair.
const releaseScript = `
if redis.call('HSETNX', KEYS[1], ARGV[1], '1') == 0 then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
for i = 3, #ARGV do
  local batch = KEYS[(i - 3) * 2 + 2]
  local refs = KEYS[(i - 3) * 2 + 3]
  if redis.call('DECRBY', refs, ARGV[i]) <= 0 then redis.call('DEL', batch, refs) end
end
return 1`;

type ScriptCommands = {
  flagstreamRetainRows(...args: (string | number)[]): ChainableCommander;
  flagstreamReleaseRows(...args: (string | number)[]): ChainableCommander;
};

/** Batches per MGET: bounds one Redis reply. */
const loadPage = 100;

export interface StoredBatchStore {
  /** Queues on `multi` the batch and its routing hold. */
  writeIn(multi: ChainableCommander, batchId: string, stored: Buffer): void;
  /**
   * Stores a batch under a fixed id unless it is there already (with its routing hold): for
   * impressions that arrive inline (replays), so a retried routing job refers to the same rows.
   */
  writeOnce(batchId: string, stored: Buffer): Promise<void>;
  /** The batches that still exist, decoded; from the process's cache where it holds them. */
  load(batchIds: Iterable<string>): Promise<Map<string, DecodedBatch>>;
  /** Decoded bytes (JSON text) per row of a batch this process has read, else undefined: for budgeting before a read. */
  bytesPerRow(batchId: string): number | undefined;
  /** Queues on `multi`: `rows` more references per batch, once per `name`; the batches expire after the retention. */
  retainIn(multi: ChainableCommander, name: OnceName, rows: ReadonlyMap<string, number>): void;
  /** Queues on `multi`: `rows` fewer references per batch, once per `name`; a batch at zero is deleted. */
  releaseIn(multi: ChainableCommander, name: OnceName, rows: ReadonlyMap<string, number>): void;
  release(name: OnceName, rows: ReadonlyMap<string, number>): Promise<void>;
}

export function createStoredBatchStore(deps: {
  redis: Redis;
  keys: RedisKeys;
  /** How long a routed batch may live at most (max delivery age plus a margin). */
  retentionMs: number;
  /** Decoded batches kept in the process, by decoded bytes: the shares of one request are read once. */
  cacheBytes?: number;
}): StoredBatchStore {
  const { redis, keys, retentionMs } = deps;
  redis.defineCommand('flagstreamRetainRows', { lua: retainScript });
  redis.defineCommand('flagstreamReleaseRows', { lua: releaseScript });
  const cacheLimit = deps.cacheBytes ?? 16 * 1024 * 1024;
  const cache = new Map<string, DecodedBatch>();
  let cachedBytes = 0;

  const remember = (batchId: string, batch: DecodedBatch) => {
    cache.set(batchId, batch);
    cachedBytes += batch.bytes;
    // Oldest first (Map order); a batch read again is moved to the end.
    for (const [id, old] of cache) {
      if (cachedBytes <= cacheLimit) break;
      cache.delete(id);
      cachedBytes -= old.bytes;
    }
  };

  const scriptArgs = (name: OnceName, rows: ReadonlyMap<string, number>, ttls: number[]): (string | number)[] => {
    const keyList = [keys.onceMarks(name.id)];
    const counts: number[] = [];
    for (const [batchId, count] of rows) {
      keyList.push(keys.storedBatch(batchId), keys.storedBatchRefs(batchId));
      counts.push(count);
    }
    // The batch store's marks in the once hash: `b:` (the ledger's are `l:`).
    return [keyList.length, ...keyList, `b:${name.mark}`, ...ttls, ...counts];
  };

  const releaseIn = (multi: ChainableCommander, name: OnceName, rows: ReadonlyMap<string, number>) => {
    if (rows.size === 0) return;
    (multi as ChainableCommander & ScriptCommands).flagstreamReleaseRows(...scriptArgs(name, rows, [retentionMs]));
  };

  return {
    writeIn(multi, batchId, stored) {
      multi.set(keys.storedBatch(batchId), stored).set(keys.storedBatchRefs(batchId), '1');
    },

    async writeOnce(batchId, stored) {
      const results = await redis.multi().set(keys.storedBatch(batchId), stored, 'NX').set(keys.storedBatchRefs(batchId), '1', 'NX').exec();
      for (const [error] of results ?? []) if (error) throw error;
    },

    async load(batchIds) {
      const found = new Map<string, DecodedBatch>();
      const missing: string[] = [];
      for (const batchId of batchIds) {
        const cached = cache.get(batchId);
        if (cached === undefined) {
          missing.push(batchId);
          continue;
        }
        cache.delete(batchId);
        cache.set(batchId, cached);
        found.set(batchId, cached);
      }
      for (let start = 0; start < missing.length; start += loadPage) {
        const page = missing.slice(start, start + loadPage);
        const stored = await redis.mgetBuffer(page.map((batchId) => keys.storedBatch(batchId)));
        page.forEach((batchId, index) => {
          const bytes = stored[index];
          if (bytes === null || bytes === undefined) return;
          const batch = decodeStoredBatch(bytes);
          remember(batchId, batch);
          found.set(batchId, batch);
        });
      }
      return found;
    },

    bytesPerRow(batchId) {
      const batch = cache.get(batchId);
      return batch === undefined || batch.rows.length === 0 ? undefined : batch.bytes / batch.rows.length;
    },

    retainIn(multi, name, rows) {
      if (rows.size === 0) return;
      (multi as ChainableCommander & ScriptCommands).flagstreamRetainRows(...scriptArgs(name, rows, [retentionMs, retentionMs]));
    },

    releaseIn,

    async release(name, rows) {
      if (rows.size === 0) return;
      const multi = redis.multi();
      releaseIn(multi, name, rows);
      const results = await multi.exec();
      for (const [error] of results ?? []) if (error) throw error;
    },
  };
}
