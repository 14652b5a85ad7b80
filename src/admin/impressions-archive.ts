import http from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import { createInterface } from 'node:readline';
import { Readable } from 'node:stream';
import { createGunzip, gunzipSync } from 'node:zlib';
import { GetObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { parse as parseCsv } from 'csv-parse';
import { type AsyncBuffer, parquetMetadataAsync, parquetReadObjects } from 'hyparquet';
import { z } from 'zod';
import { s3ClientConfig, s3Columns, s3EnvironmentPrefix, type S3Settings } from '../connectors/s3/s3-connector.js';
import type { DestinationGuard } from '../delivery/destination-guard.js';
import { guardedLookup } from '../delivery/http-transport.js';
import type { Impression } from '../domain/impression.js';

/**
 * Reading what the s3 connector wrote: its hive partitions
 * (`{prefix}env=<id>/dt=YYYY-MM-DD/hour=HH/<batch>.<ext>`, see connectors/s3/README.md) and its
 * three formats, one object at a time, as streams. Only the partitions a time range needs are
 * listed, their prefixes derived from the range: each day wholly inside it by its day prefix
 * (`…/dt=D/`, one listing for its 24 hours), each hour at the range's two ends by its hour
 * prefix (`…/dt=D/hour=HH/`). No delimiter listings: not every S3-compatible store answers them
 * for nested folders (s3rver does not).
 */

const hourMs = 3_600_000;
const dayMs = 24 * hourMs;

const nullableText = z.string().nullable();
/** One archived row, as the connector writes it (Split's export columns plus `impressionId`). */
export const ArchivedRowSchema = z.object({
  key: z.string().min(1),
  bucketingKey: nullableText,
  label: nullableText,
  treatment: z.string().min(1),
  splitName: z.string().min(1),
  splitVersion: z.number().int().nullable(),
  properties: nullableText,
  environmentId: z.string().min(1),
  trafficTypeId: nullableText,
  sdk: nullableText,
  sdkVersion: nullableText,
  machineName: nullableText,
  machineIp: nullableText,
  timestamp: z.number().int().nonnegative(),
  receptionTimestamp: z.number().int().nonnegative(),
  impressionId: z.string().min(1),
});
export type ArchivedRow = z.infer<typeof ArchivedRowSchema>;

const numberColumns: ReadonlySet<string> = new Set(['splitVersion', 'timestamp', 'receptionTimestamp']);

/** The inverse of the connector's `s3Row`: the impression again, with its original id. */
export function impressionFromArchivedRow(row: ArchivedRow): Impression {
  const impression: Impression = {
    id: row.impressionId,
    key: row.key,
    split: row.splitName,
    treatment: row.treatment,
    time: row.timestamp,
    environmentId: row.environmentId,
    receptionTimestamp: row.receptionTimestamp,
  };
  if (row.bucketingKey !== null) impression.bucketingKey = row.bucketingKey;
  if (row.label !== null) impression.label = row.label;
  if (row.splitVersion !== null) impression.splitVersionNumber = row.splitVersion;
  if (row.properties !== null) impression.properties = row.properties;
  if (row.trafficTypeId !== null) impression.trafficTypeId = row.trafficTypeId;
  if (row.sdk !== null) impression.sdk = row.sdk;
  if (row.sdkVersion !== null) impression.sdkVersion = row.sdkVersion;
  if (row.machineName !== null) impression.machineName = row.machineName;
  if (row.machineIp !== null) impression.machineIp = row.machineIp;
  return impression;
}

/** A partition folder to list, and the part of the time range it covers. */
export interface ArchivePartition {
  readonly prefix: string;
  readonly from: number;
  readonly to: number;
}

export interface ArchiveObject {
  readonly key: string;
  readonly size: number;
}

export type ArchiveFormat = 'jsonl' | 'csv' | 'parquet';

/** What an object's name says about its content; undefined for anything the connector does not write. */
export function archiveFormatOf(key: string): { format: ArchiveFormat; gzip: boolean } | undefined {
  const match = /\.(jsonl|csv)(\.gz)?$|\.parquet$/.exec(key);
  if (match === null) return undefined;
  if (match[0] === '.parquet') return { format: 'parquet', gzip: false };
  return { format: match[1] as 'jsonl' | 'csv', gzip: match[2] !== undefined };
}

/** A row as read: a JSON line's object (undefined when the line is not one), a CSV record, a Parquet row. */
export interface RawRow {
  readonly raw: Record<string, unknown> | undefined;
  /** CSV: every value is text, and an empty field is null. */
  readonly fromText: boolean;
}

/** A raw row → a checked row, or the reason it is not one. */
export function readArchivedRow({ raw, fromText }: RawRow): { row: ArchivedRow } | { problem: string } {
  if (raw === undefined) return { problem: 'not a JSON object' };
  const normalised: Record<string, unknown> = {};
  for (const column of s3Columns) {
    let value = raw[column] ?? null;
    if (typeof value === 'bigint') value = Number(value);
    // CSV has no null: an empty field is one, and numbers are text.
    if (fromText && typeof value === 'string') value = value === '' ? null : numberColumns.has(column) && /^-?\d+$/.test(value) ? Number(value) : value;
    normalised[column] = value;
  }
  const parsed = ArchivedRowSchema.safeParse(normalised);
  if (parsed.success) return { row: parsed.data };
  const issue = parsed.error.issues[0];
  return { problem: `${issue?.path.join('.') ?? 'row'}: ${issue?.message ?? 'invalid'}` };
}

export interface ArchiveReader {
  /** The partition prefixes covering [since, until), oldest first: whole days, and hours at the two ends. */
  partitions(environmentId: string, since: number, until: number): AsyncGenerator<ArchivePartition>;
  /** Every object under a partition prefix, in key order, a page (≤ 1000 keys) at a time. */
  objects(partition: ArchivePartition): AsyncGenerator<ArchiveObject>;
  /** The raw rows of one object, streamed (Parquet: a row group at a time); `fromText` for CSV. */
  rows(object: ArchiveObject): AsyncGenerator<RawRow>;
  close(): void;
}

const isoDay = (ms: number) => new Date(ms).toISOString().slice(0, 10);
const isoHour = (ms: number) => new Date(ms).toISOString().slice(11, 13);

/** Reads an s3 destination's archive with its own settings, through the same private-address guard as deliveries. */
export function createS3ArchiveReader(settings: S3Settings, options: { guard: DestinationGuard; requestTimeoutMs?: number }): ArchiveReader {
  if (settings.endpoint !== undefined) {
    // Agents' lookups never run for an IP literal: check it here, as the delivery transport does.
    const host = new URL(settings.endpoint).hostname.replace(/^\[|\]$/g, '');
    if (isIP(host) !== 0) options.guard.check(host, host);
  }
  const lookup = guardedLookup(options.guard);
  const client = new S3Client({
    ...s3ClientConfig(settings),
    // The SDK's own retries are fine here: a read can be repeated, and nothing else retries it.
    requestHandler: {
      httpAgent: new http.Agent({ keepAlive: true, lookup }),
      httpsAgent: new https.Agent({ keepAlive: true, lookup }),
      connectionTimeout: 10_000,
      requestTimeout: options.requestTimeoutMs ?? 60_000,
    },
  });
  const bucket = settings.bucket;

  async function body(key: string, range?: string): Promise<Readable> {
    const answer = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key, ...(range === undefined ? {} : { Range: range }) }));
    if (!(answer.Body instanceof Readable)) throw new Error(`GetObject ${key}: expected a stream body`);
    return answer.Body;
  }

  async function* textRows(object: ArchiveObject, format: 'jsonl' | 'csv', gzip: boolean): AsyncGenerator<RawRow> {
    const source = await body(object.key);
    const text = gzip ? source.pipe(createGunzip()) : source;
    source.on('error', (error) => text.destroy(error));
    try {
      if (format === 'csv') {
        // csv-parse handles quoted fields across chunks and lines; the header row names the columns.
        for await (const record of text.pipe(parseCsv({ columns: true, bom: true, skip_empty_lines: true }))) yield { raw: record as Record<string, unknown>, fromText: true };
        return;
      }
      for await (const line of createInterface({ input: text, crlfDelay: Number.POSITIVE_INFINITY })) {
        if (line.trim() === '') continue;
        let raw: unknown;
        try {
          raw = JSON.parse(line);
        } catch {
          raw = undefined;
        }
        yield { raw: raw !== null && typeof raw === 'object' && !Array.isArray(raw) ? (raw as Record<string, unknown>) : undefined, fromText: false };
      }
    } finally {
      source.destroy();
      text.destroy();
    }
  }

  async function* parquetRows(object: ArchiveObject): AsyncGenerator<RawRow> {
    // Ranged GETs: hyparquet reads the footer, then only the column chunks of one row group at a time.
    const file: AsyncBuffer = {
      byteLength: object.size,
      async slice(start, end) {
        const last = (end ?? object.size) - 1;
        if (last < start) return new ArrayBuffer(0);
        const bytes = await (await body(object.key, `bytes=${start}-${last}`)).toArray();
        const buffer = Buffer.concat(bytes as Buffer[]);
        return buffer.buffer.slice(buffer.byteOffset, buffer.byteOffset + buffer.byteLength) as ArrayBuffer;
      },
    };
    const metadata = await parquetMetadataAsync(file);
    // The connector writes GZIP (its `compression: gzip`) or UNCOMPRESSED; hyparquet brings SNAPPY.
    const compressors = { GZIP: (input: Uint8Array) => new Uint8Array(gunzipSync(input)) };
    let rowStart = 0;
    for (const group of metadata.row_groups) {
      const rowEnd = rowStart + Number(group.num_rows);
      const rows = await parquetReadObjects({ file, metadata, rowStart, rowEnd, compressors });
      for (const raw of rows) yield { raw, fromText: false };
      rowStart = rowEnd;
    }
  }

  return {
    async *partitions(environmentId, since, until) {
      const environmentPrefix = s3EnvironmentPrefix(settings, environmentId);
      for (let dayStart = Math.floor(since / dayMs) * dayMs; dayStart < until; dayStart += dayMs) {
        const dayPrefix = `${environmentPrefix}dt=${isoDay(dayStart)}/`;
        const dayEnd = dayStart + dayMs;
        if (since <= dayStart && dayEnd <= until) {
          yield { prefix: dayPrefix, from: dayStart, to: dayEnd };
          continue;
        }
        for (let hour = Math.max(dayStart, Math.floor(since / hourMs) * hourMs); hour < dayEnd && hour < until; hour += hourMs) {
          yield { prefix: `${dayPrefix}hour=${isoHour(hour)}/`, from: Math.max(hour, since), to: Math.min(hour + hourMs, until) };
        }
      }
    },

    async *objects(partition) {
      let token: string | undefined;
      do {
        const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: partition.prefix, ...(token === undefined ? {} : { ContinuationToken: token }) }));
        for (const entry of page.Contents ?? []) if (entry.Key !== undefined) yield { key: entry.Key, size: entry.Size ?? 0 };
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token !== undefined);
    },

    rows(object) {
      const kind = archiveFormatOf(object.key);
      if (kind === undefined) throw new Error(`${object.key}: not a file the s3 connector writes`);
      return kind.format === 'parquet' ? parquetRows(object) : textRows(object, kind.format, kind.gzip);
    },

    close() {
      client.destroy();
    },
  };
}
