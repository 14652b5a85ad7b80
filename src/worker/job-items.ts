import type { Impression } from '../domain/impression.js';
import { ImpressionJsonWriter } from '../domain/impression-json.js';
import { type DecodedBatch, decodeRows, encodeRows, impressionAt, type StoredRowsRef } from '../domain/stored-batch.js';
import type { DeliveryJobData } from '../queues/queues.js';
import type { StoredBatchStore } from '../stores/stored-batch-store.js';

/** A delivery job's impressions, read from its stored batches, and where each came from. */
export interface JobItems {
  readonly items: Impression[];
  /** Impressions read from a stored batch → [batch id, row]; inline ones are absent. */
  readonly origins: Map<Impression, readonly [string, number]>;
  /** Rows whose batch is gone (it outlived its retention): they cannot be sent. */
  readonly missing: Map<string, number>;
  /**
   * Some of `items` as a JSON array, `Buffer.from(JSON.stringify(items))` byte for byte: rows
   * written straight from their stored batch (no JSON.stringify of the impression built from
   * them), inline impressions through JSON.stringify.
   */
  jsonArray(items: readonly Impression[]): Buffer;
}

const rowsPerSlice = 5_000;

export async function resolveJobItems(batches: StoredBatchStore, data: DeliveryJobData): Promise<JobItems> {
  const items: Impression[] = [...(data.items ?? [])];
  const origins = new Map<Impression, readonly [string, number]>();
  const missing = new Map<string, number>();
  const refs = data.refs ?? [];
  let loaded = new Map<string, DecodedBatch>();
  const jsonArray = (some: readonly Impression[]): Buffer => {
    // Sized for a typical impression (about 300 bytes of JSON), so that it seldom grows.
    const writer = new ImpressionJsonWriter(Math.max(1024, some.length * 384));
    writer.byte(openBracket);
    some.forEach((item, index) => {
      if (index > 0) writer.byte(comma);
      const origin = origins.get(item);
      const batch = origin === undefined ? undefined : loaded.get(origin[0]);
      if (origin === undefined || batch === undefined || !writer.row(batch, origin[1], data.view)) writer.text(JSON.stringify(item));
    });
    writer.byte(closeBracket);
    return writer.take();
  };
  if (refs.length === 0) return { items, origins, missing, jsonArray };
  loaded = await batches.load(refs.map(([batchId]) => batchId));
  let built = 0;
  for (const [batchId, rows] of refs) {
    const batch = loaded.get(batchId);
    for (const row of decodeRows(rows)) {
      // A 50 000-row job (S3) is built in slices, so other destinations' work runs in between.
      if (++built % rowsPerSlice === 0) await new Promise<void>((resolve) => setImmediate(resolve));
      const item = batch === undefined ? undefined : impressionAt(batch, row, data.view);
      if (item === undefined) {
        missing.set(batchId, (missing.get(batchId) ?? 0) + 1);
        continue;
      }
      items.push(item);
      origins.set(item, [batchId, row]);
    }
  }
  return { items, origins, missing, jsonArray };
}

const [openBracket, comma, closeBracket] = [0x5b, 0x2c, 0x5d] as const;

/** Rows per stored batch that `items` refer to. */
export function rowsByBatch(items: Iterable<Impression>, origins: ReadonlyMap<Impression, readonly [string, number]>): Map<string, number> {
  const counts = new Map<string, number>();
  for (const item of items) {
    const origin = origins.get(item);
    if (origin !== undefined) counts.set(origin[0], (counts.get(origin[0]) ?? 0) + 1);
  }
  return counts;
}

/** The job's data cut down to `remaining`: references for stored rows, inline for the rest. */
export function jobDataFor(data: DeliveryJobData, remaining: readonly Impression[], origins: ReadonlyMap<Impression, readonly [string, number]>): DeliveryJobData {
  const inline: Impression[] = [];
  const rows = new Map<string, number[]>();
  for (const item of remaining) {
    const origin = origins.get(item);
    if (origin === undefined) {
      inline.push(item);
      continue;
    }
    const list = rows.get(origin[0]);
    if (list === undefined) rows.set(origin[0], [origin[1]]);
    else list.push(origin[1]);
  }
  const refs = [...rows].map(([batchId, list]): StoredRowsRef => [batchId, encodeRows(list)]);
  const { items: _items, refs: _refs, ...rest } = data;
  return { ...rest, ...(inline.length > 0 ? { items: inline } : {}), ...(refs.length > 0 ? { refs } : {}) };
}
