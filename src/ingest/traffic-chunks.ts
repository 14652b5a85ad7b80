import { emptyFlagTraffic, type FlagTraffic } from '../stores/stats-store.js';

/** Most flags and unique keys per stats write: each becomes arguments of one Redis command (SADD, PFADD). */
export const maxTrafficPerWrite = 1000;

/**
 * Cuts SDK traffic (counts and unique keys per flag, as /testImpressions/count and /keys/ss|cs
 * report it) into pieces of at most `limit` flags and `limit` keys, so that no write spreads a
 * request's worth of keys into one call: 200 000 keys in one call overflow the call stack, and
 * one Redis command that size blocks Redis. Counts go with a flag's first piece only, so the
 * pieces add up to the whole. Unique keys are a HyperLogLog: written in pieces (or again, after
 * a retry) each still counts once.
 */
export function* trafficChunks(traffic: ReadonlyMap<string, FlagTraffic>, limit = maxTrafficPerWrite): Generator<Map<string, FlagTraffic>> {
  let chunk = new Map<string, FlagTraffic>();
  let chunkKeys = 0;
  for (const [flag, part] of flagParts(traffic, limit)) {
    if (chunk.has(flag) || chunk.size >= limit || chunkKeys + part.keys.size > limit) {
      yield chunk;
      chunk = new Map();
      chunkKeys = 0;
    }
    chunk.set(flag, part);
    chunkKeys += part.keys.size;
  }
  if (chunk.size > 0) yield chunk;
}

/** Each flag's traffic as parts of at most `limit` keys; the first part carries its counts. */
function* flagParts(traffic: ReadonlyMap<string, FlagTraffic>, limit: number): Generator<[string, FlagTraffic]> {
  for (const [flag, whole] of traffic) {
    if (whole.keys.size <= limit) {
      yield [flag, whole];
      continue;
    }
    let part: FlagTraffic = { ...emptyFlagTraffic(), treatments: whole.treatments, dropped: whole.dropped, counted: whole.counted };
    for (const key of whole.keys) {
      if (part.keys.size === limit) {
        yield [flag, part];
        part = emptyFlagTraffic();
      }
      part.keys.add(key);
    }
    yield [flag, part];
  }
}
