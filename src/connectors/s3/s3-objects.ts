import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { type ColumnSource, parquetWriteBuffer } from 'hyparquet-writer';
import type { Impression } from '../../domain/impression.js';

/**
 * The S3 connector's objects, as pure synchronous functions: which impressions go in which
 * object, its key, and its bytes (JSON lines, CSV or Parquet, gzip or not). The connector's
 * `encode` calls `encodeS3Objects` directly; its `encodeOffLoop` runs the very same function in a
 * worker thread (./s3-encode-worker.ts), so both give byte-identical objects. This module imports
 * no AWS SDK: the worker loads only what it needs.
 */

/** Split's S3 export columns, in its order (Harness `amazon-s3.md`), then our idempotency key. */
export const s3Columns = [
  'key',
  'bucketingKey',
  'label',
  'treatment',
  'splitName',
  'splitVersion',
  'properties',
  'environmentId',
  'trafficTypeId',
  'sdk',
  'sdkVersion',
  'machineName',
  'machineIp',
  'timestamp',
  'receptionTimestamp',
  'impressionId',
] as const;
export type S3Column = (typeof s3Columns)[number];

/** One row of an export file: strings, epoch-millisecond numbers, or null where the impression has no value. */
export type S3Row = { readonly [C in S3Column]: string | number | null };

/** The impression as one row of Split's export schema. */
export function s3Row(impression: Impression): S3Row {
  return {
    key: impression.key,
    bucketingKey: impression.bucketingKey ?? null,
    label: impression.label ?? null,
    treatment: impression.treatment,
    splitName: impression.split,
    splitVersion: impression.splitVersionNumber ?? null,
    properties: impression.properties ?? null,
    environmentId: impression.environmentId,
    trafficTypeId: impression.trafficTypeId ?? null,
    sdk: impression.sdk ?? null,
    sdkVersion: impression.sdkVersion ?? null,
    machineName: impression.machineName ?? null,
    machineIp: impression.machineIp ?? null,
    timestamp: impression.time,
    receptionTimestamp: impression.receptionTimestamp,
    impressionId: impression.id,
  };
}

/** A hive partition value: letters, digits, `.`, `_` and `-` kept; anything else %-encoded (UTF-8). */
function partitionValue(value: string): string {
  return Array.from(Buffer.from(value, 'utf8'))
    .map((byte) => {
      const char = String.fromCharCode(byte);
      return /[A-Za-z0-9._-]/.test(char) ? char : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
    })
    .join('');
}

/** The deterministic name of a group of impressions: the same ids, in any order, give the same id. */
export function s3BatchId(impressionIds: readonly string[]): string {
  return createHash('sha256').update([...impressionIds].sort().join('\n')).digest('hex').slice(0, 32);
}

function fileExtension(settings: S3ObjectLayout): string {
  if (settings.format === 'parquet') return 'parquet';
  return settings.compression === 'gzip' ? `${settings.format}.gz` : settings.format;
}

/** `{prefix}env=<id>/`: the folder of one environment's objects (readers list partitions below it). */
export function s3EnvironmentPrefix(settings: S3ObjectLayout, environmentId: string): string {
  const trimmed = settings.prefix.replace(/^\/+/, '');
  const prefix = trimmed === '' || trimmed.endsWith('/') ? trimmed : `${trimmed}/`;
  return `${prefix}env=${partitionValue(environmentId)}/`;
}

/** `{prefix}env=<id>/dt=YYYY-MM-DD/hour=HH/`: the partition of the hour starting at `hourStart` (UTC). */
export function s3PartitionPrefix(settings: S3ObjectLayout, environmentId: string, hourStart: number): string {
  const iso = new Date(hourStart).toISOString();
  return `${s3EnvironmentPrefix(settings, environmentId)}dt=${iso.slice(0, 10)}/hour=${iso.slice(11, 13)}/`;
}

/** `{prefix}env=<id>/dt=YYYY-MM-DD/hour=HH/<batch-id>.<ext>`, the hour being the impression time's, in UTC. */
export function s3ObjectKey(settings: S3ObjectLayout, environmentId: string, hourStart: number, batchId: string): string {
  return `${s3PartitionPrefix(settings, environmentId, hourStart)}${batchId}.${fileExtension(settings)}`;
}

/** RFC 4180: a field with a comma, quote, CR or LF is quoted, quotes doubled; null is an empty field. */
function csvField(value: string | number | null): string {
  if (value === null) return '';
  const text = String(value);
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/** One CSV record of a row (no line end); the header is `s3Columns.join(',')`. */
export function s3CsvRecord(row: S3Row): string {
  return s3Columns.map((column) => csvField(row[column])).join(',');
}

function toCsv(rows: readonly S3Row[]): string {
  const lines = [s3Columns.join(','), ...rows.map(s3CsvRecord)];
  return `${lines.join('\r\n')}\r\n`;
}

function toJsonLines(rows: readonly S3Row[]): string {
  return rows.map((row) => `${JSON.stringify(row)}\n`).join('');
}

const longColumns: ReadonlySet<S3Column> = new Set(['splitVersion', 'timestamp', 'receptionTimestamp']);
const requiredColumns: ReadonlySet<S3Column> = new Set(['key', 'treatment', 'splitName', 'environmentId', 'timestamp', 'receptionTimestamp', 'impressionId']);

function toParquet(rows: readonly S3Row[], compression: S3ObjectLayout['compression']): Uint8Array {
  const columnData: ColumnSource[] = s3Columns.map((column) => {
    const nullable = !requiredColumns.has(column);
    if (longColumns.has(column)) {
      const data = rows.map((row) => (row[column] === null ? null : BigInt(row[column])));
      return { name: column, data, type: 'INT64', nullable };
    }
    return { name: column, data: rows.map((row) => (row[column] === null ? null : String(row[column]))), type: 'STRING', nullable };
  });
  const buffer = parquetWriteBuffer({
    columnData,
    codec: compression === 'gzip' ? 'GZIP' : 'UNCOMPRESSED',
    compressors: { GZIP: (input) => new Uint8Array(gzipSync(input)) },
    createdBy: 'flagstream',
  });
  return new Uint8Array(buffer);
}

function encodeObject(rows: readonly S3Row[], settings: S3ObjectLayout): { body: Uint8Array; contentType: string } {
  if (settings.format === 'parquet') return { body: toParquet(rows, settings.compression), contentType: 'application/vnd.apache.parquet' };
  const text = settings.format === 'csv' ? toCsv(rows) : toJsonLines(rows);
  const contentType = settings.format === 'csv' ? 'text/csv; charset=utf-8' : 'application/x-ndjson';
  // gzip files are stored as such (no Content-Encoding), so tools download them byte for byte.
  if (settings.compression === 'gzip') return { body: new Uint8Array(gzipSync(text)), contentType: 'application/gzip' };
  return { body: new Uint8Array(Buffer.from(text, 'utf8')), contentType };
}


const hourMs = 3_600_000;

/** The settings that decide an object's key and bytes (a subset of the connector's settings). */
export interface S3ObjectLayout {
  readonly prefix: string;
  readonly format: 'jsonl' | 'csv' | 'parquet';
  readonly compression: 'gzip' | 'none';
}

/** One object to write: its impressions (as positions in the encoded items, in row order), key and bytes. */
export interface S3Object {
  /** Positions in `items` of the object's impressions, in the order of its rows. */
  readonly positions: Uint32Array;
  readonly key: string;
  readonly body: Uint8Array;
  readonly contentType: string;
}

/**
 * One object per (environment, hour of impression time), in the order the groups first appear;
 * rows ordered by time then id, so a re-encode of the same impressions is byte-identical.
 */
export function encodeS3Objects(items: readonly Impression[], layout: S3ObjectLayout): S3Object[] {
  const groups = new Map<string, { environmentId: string; hourStart: number; positions: number[] }>();
  items.forEach((impression, position) => {
    const hourStart = Math.floor(impression.time / hourMs) * hourMs;
    const groupKey = `${impression.environmentId}\u0000${hourStart}`;
    const group = groups.get(groupKey) ?? { environmentId: impression.environmentId, hourStart, positions: [] };
    group.positions.push(position);
    groups.set(groupKey, group);
  });
  const objects: S3Object[] = [];
  for (const group of groups.values()) {
    const at = (position: number) => items[position] as Impression;
    // Array sort is stable: equal (time, id) keep their input order, as they always did.
    const ordered = [...group.positions].sort((p, q) => {
      const a = at(p);
      const b = at(q);
      return a.time - b.time || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
    });
    const rows = ordered.map((position) => s3Row(at(position)));
    const key = s3ObjectKey(layout, group.environmentId, group.hourStart, s3BatchId(ordered.map((position) => at(position).id)));
    objects.push({ positions: Uint32Array.from(ordered), key, ...encodeObject(rows, layout) });
  }
  return objects;
}
