import { Readable } from 'node:stream';
import { PutObjectCommand, S3Client, type S3ClientConfig, S3ServiceException } from '@aws-sdk/client-s3';
import { z } from 'zod';
import { excerpt } from '../http-classification.js';
import { parseRetryAfter } from '../http-classification.js';
import type { Impression } from '../../domain/impression.js';
import type { Connector, DeliveryOutcome, EncodeResult, HttpClient, HttpResponse, RejectCode, SendResult } from '../connector.js';
import { encodeS3ObjectsOffThread } from './s3-encode-thread.js';
import { encodeS3Objects, type S3Object } from './s3-objects.js';

export { s3BatchId, type S3Column, s3Columns, s3CsvRecord, s3EnvironmentPrefix, s3ObjectKey, s3PartitionPrefix, type S3Row, s3Row } from './s3-objects.js';

/**
 * Amazon S3 (and S3-compatible stores): every batch is written as objects, one per environment
 * and hour of impression time, under
 * `{prefix}env=<environmentId>/dt=YYYY-MM-DD/hour=HH/<batch-id>.<ext>` (UTC), as JSON lines
 * (gzip by default), CSV or Parquet, with the column names of Split's own S3 export. Facts and
 * sources (checked 2026-11-24) are in ./README.md:
 *
 * - One `PutObject` per object: S3 takes up to 5 GB in a single PUT (multipart beyond); a PUT
 *   replaces the whole object atomically, so readers never see a half-written file.
 * - `<batch-id>` is a hash of the impression ids in the object: a retried or replayed upload of
 *   the same impressions writes the same key and overwrites instead of duplicating.
 * - Errors carry an S3 error code: `NoSuchBucket` (404) → destination_not_found; `AccessDenied`,
 *   `InvalidAccessKeyId`, `SignatureDoesNotMatch` (403) → destination_auth; `SlowDown` (503) and
 *   other throttling → throttled; `InternalError` (500) / 5xx and network failures → retry;
 *   other 4xx → rejected.
 * - Objects are built by `encodeS3Objects` (./s3-objects.ts): on the main thread in `encode` (the
 *   reference), in a worker thread in `encodeOffLoop`, which the delivery core uses (a 50 000-row
 *   object takes the better part of a second to build; see "Encoding off the event loop").
 *
 * The S3Client is built with `maxAttempts: 1` (the SDK's own retries would hide failures from the
 * core) and sends through the platform's HTTP transport, so the core's timeout, keep-alive and
 * private-address guard apply to S3 and to custom endpoints alike.
 */

/** S3's largest single PUT (5 GB); bigger objects need a multipart upload. */
const maxSinglePutBytes = 5 * 1024 ** 3;

const prefixSchema = z
  .string()
  .default('')
  .refine((prefix) => !prefix.split('/').some((segment, index, all) => segment === '.' || segment === '..' || (segment === '' && index > 0 && index < all.length - 1)), {
    message: 'prefix must not contain empty, "." or ".." path segments',
  })
  .describe('Key prefix, e.g. "impressions/" (leading "/" dropped, a trailing "/" added when missing)');

export const S3SettingsSchema = z
  .object({
    bucket: z
      .string()
      .min(1)
      .max(255)
      .regex(/^[^/\s]+$/, 'expected a bucket name, without "/" or spaces')
      .describe('Bucket name'),
    prefix: prefixSchema,
    region: z.string().min(1).default('us-east-1').describe('Bucket region, e.g. us-east-1 or eu-west-1'),
    endpoint: z
      .url({ protocol: /^https?$/ })
      .optional()
      .describe('Endpoint of an S3-compatible store (MinIO, Ceph, R2, …); AWS S3 when absent'),
    forcePathStyle: z.boolean().default(false).describe('Path-style URLs (https://host/bucket/key), which most S3-compatible stores need'),
    accessKeyId: z.string().min(1).optional().describe('Access key id; without it the default AWS credential chain is used'),
    secretAccessKey: z.string().min(1).optional().describe('Secret access key (with accessKeyId)'),
    sessionToken: z.string().min(1).optional().describe('Session token of temporary credentials (with accessKeyId)'),
    format: z.enum(['jsonl', 'csv', 'parquet']).default('jsonl').describe('File format: JSON lines, CSV (RFC 4180, with a header row) or Parquet'),
    compression: z
      .enum(['gzip', 'none'])
      .default('gzip')
      .describe('gzip or none; for parquet the gzip codec is applied inside the file (Parquet column-chunk compression)'),
    maxRows: z.number().int().min(1).max(1_000_000).default(50_000).describe('Most impressions per object'),
    maxWait: z
      .number()
      .int()
      .min(0)
      .max(3_600_000)
      .default(300_000)
      .describe('Milliseconds to gather impressions before writing a batch (default 5 minutes)'),
  })
  .refine((settings) => (settings.accessKeyId === undefined) === (settings.secretAccessKey === undefined), {
    message: 'accessKeyId and secretAccessKey go together (or leave both out to use the default AWS credential chain)',
    path: ['secretAccessKey'],
  })
  .refine((settings) => settings.sessionToken === undefined || settings.accessKeyId !== undefined, {
    message: 'sessionToken needs accessKeyId and secretAccessKey',
    path: ['sessionToken'],
  });
export type S3Settings = z.infer<typeof S3SettingsSchema>;

/** One object to write: everything PutObject needs, built purely by encode. */
export interface S3PutRequest {
  readonly bucket: string;
  readonly key: string;
  readonly body: Uint8Array;
  readonly contentType: string;
  readonly rows: number;
}

/** What S3 answered to one PutObject: a status, and for a failure its S3 error code. */
export interface S3PutResponse {
  readonly key: string;
  readonly status: number;
  /** S3 error code (`NoSuchBucket`, `SlowDown`, …); absent on success. */
  readonly errorCode?: string;
  readonly message?: string;
  readonly etag?: string;
  readonly retryAfter?: string;
}

const authErrorCodes: ReadonlySet<string> = new Set([
  'AccessDenied',
  'InvalidAccessKeyId',
  'SignatureDoesNotMatch',
  'AllAccessDisabled',
  'AccountProblem',
  'InvalidToken',
  'InvalidSecurity',
  'NotSignedUp',
]);
const throttleErrorCodes: ReadonlySet<string> = new Set([
  'SlowDown',
  'Throttling',
  'ThrottlingException',
  'ThrottledException',
  'RequestThrottled',
  'RequestThrottledException',
  'RequestLimitExceeded',
  'TooManyRequests',
  'TooManyRequestsException',
  'BandwidthLimitExceeded',
  'ServiceUnavailable',
]);
/** Transient by nature: `RequestTimeTooSkewed` is fixed by the SDK's clock-offset correction, `ExpiredToken` by the credential chain's refresh. */
const retryErrorCodes: ReadonlySet<string> = new Set(['InternalError', 'RequestTimeout', 'RequestTimeTooSkewed', 'ExpiredToken', 'OperationAborted']);
/** The bucket is not where the settings say: wrong name, or a region other than the bucket's. */
const notFoundErrorCodes: ReadonlySet<string> = new Set(['NoSuchBucket', 'InvalidBucketName', 'PermanentRedirect', 'AuthorizationHeaderMalformed', 'IllegalLocationConstraintException']);

function describeFailure(response: S3PutResponse): string {
  const detail = excerpt(response.message ?? '');
  return `S3 ${response.status}${response.errorCode === undefined ? '' : ` ${response.errorCode}`}${detail === '' ? '' : `: ${detail}`} (${response.key})`;
}

/** Pure: what S3's answer to one PutObject means. */
export function classifyS3Result(result: SendResult<S3PutResponse>, now = Date.now()): DeliveryOutcome {
  if (!result.ok) {
    if (result.error.code === 'DESTINATION_NOT_ALLOWED') return { kind: 'rejected', code: 'destination_not_allowed', reason: result.error.message };
    return { kind: 'retry', reason: `${result.error.code}: ${result.error.message}` };
  }
  const response = result.response;
  const status = response.status;
  if (response.errorCode === undefined && status >= 200 && status < 300) return { kind: 'delivered' };
  const reason = describeFailure(response);
  const code = response.errorCode ?? '';
  const retryAfterMs = parseRetryAfter(response.retryAfter, now);
  const wait = retryAfterMs === undefined ? {} : { retryAfterMs };
  const rejected = (rejectCode: RejectCode): DeliveryOutcome => ({ kind: 'rejected', code: rejectCode, reason, status });

  if (notFoundErrorCodes.has(code)) return rejected('destination_not_found');
  if (authErrorCodes.has(code)) return rejected('destination_auth');
  if (throttleErrorCodes.has(code) || status === 429 || status === 503) return { kind: 'throttled', reason, status, ...wait };
  if (retryErrorCodes.has(code) || status === 408 || (status >= 500 && status !== 501)) return { kind: 'retry', reason, status, ...wait };
  if (code === 'EntityTooLarge' || status === 413) return { kind: 'too-large', reason };
  if (status === 501) return rejected('unsupported_by_destination');
  if (status === 401 || status === 403) return rejected('destination_auth');
  if (status === 404) return rejected('destination_not_found');
  return rejected('invalid_payload');
}

/** Reads an S3 service error (one S3 answered); anything else (network, abort, credentials) is not one. */
function serviceFailure(error: unknown, key: string): S3PutResponse | undefined {
  if (!(error instanceof S3ServiceException)) return undefined;
  const status = error.$metadata.httpStatusCode;
  if (status === undefined) return undefined;
  const headers = error.$response?.headers ?? {};
  const retryAfter = Object.entries(headers).find(([name]) => name.toLowerCase() === 'retry-after')?.[1];
  return { key, status, errorCode: error.name, message: error.message, ...(retryAfter === undefined ? {} : { retryAfter }) };
}

// ——— The SDK's HTTP handler, on top of the platform's transport ———

/** The parts of the SDK's (smithy) HttpRequest this handler reads. */
interface SdkHttpRequest {
  readonly method: string;
  readonly protocol: string;
  readonly hostname: string;
  readonly port?: number | undefined;
  readonly path: string;
  readonly query?: Record<string, string | readonly string[] | null> | undefined;
  readonly headers: Record<string, string>;
  readonly body?: unknown;
}

/** The smithy HttpResponse shape the SDK deserializers read. */
interface SdkHttpResponse {
  readonly statusCode: number;
  readonly headers: Record<string, string>;
  readonly body: Readable;
}

/** Smithy's query escaping (RFC 3986: encodeURIComponent plus !'()*), so the signed query is the sent one. */
function escapeUri(value: string): string {
  return encodeURIComponent(value).replace(/[!'()*]/g, (char) => `%${char.charCodeAt(0).toString(16).toUpperCase()}`);
}

function queryString(query: SdkHttpRequest['query']): string {
  const parts: string[] = [];
  for (const name of Object.keys(query ?? {}).sort()) {
    const value = query?.[name];
    if (value === null || value === undefined) parts.push(escapeUri(name));
    else if (typeof value === 'string') parts.push(`${escapeUri(name)}=${escapeUri(value)}`);
    else for (const item of value) parts.push(`${escapeUri(name)}=${escapeUri(item)}`);
  }
  return parts.length === 0 ? '' : `?${parts.join('&')}`;
}

async function bodyBytes(body: unknown): Promise<string | Uint8Array> {
  if (body === undefined || body === null) return new Uint8Array(0);
  if (typeof body === 'string' || body instanceof Uint8Array) return body;
  if (body instanceof ArrayBuffer) return new Uint8Array(body);
  if (ArrayBuffer.isView(body)) return new Uint8Array(body.buffer, body.byteOffset, body.byteLength);
  if (body instanceof Readable) {
    const chunks: Buffer[] = [];
    for await (const chunk of body) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string));
    return Buffer.concat(chunks);
  }
  throw new TypeError(`unsupported request body type ${typeof body}`);
}

/** A real AbortSignal for the transport, from whatever the SDK hands over (it passes ours through). */
function toAbortSignal(signal: unknown): AbortSignal {
  if (signal instanceof AbortSignal) return signal;
  const controller = new AbortController();
  const legacy = signal as { aborted?: boolean; onabort?: (() => void) | null } | undefined;
  if (legacy?.aborted === true) controller.abort();
  else if (legacy !== undefined && legacy !== null && 'onabort' in legacy) legacy.onabort = () => controller.abort();
  return controller.signal;
}

/**
 * An SDK request handler that sends through the core's HTTP transport (keep-alive, timeouts, the
 * private-address guard). PutObject answers have no body and S3 error bodies are small XML, so
 * the transport's capped body is the whole answer.
 */
export function platformRequestHandler(http: HttpClient) {
  return {
    async handle(request: SdkHttpRequest, options?: { abortSignal?: unknown }): Promise<{ response: SdkHttpResponse }> {
      const method = request.method.toUpperCase();
      if (method !== 'PUT' && method !== 'POST') throw new TypeError(`the s3 connector only sends PUT and POST requests, not ${method}`);
      const port = request.port === undefined ? '' : `:${request.port}`;
      const url = `${request.protocol}//${request.hostname}${port}${request.path}${queryString(request.query)}`;
      // Expect: 100-continue is not signed and the transport writes the body at once.
      const headers = Object.fromEntries(Object.entries(request.headers).filter(([name]) => name.toLowerCase() !== 'expect'));
      const answer: HttpResponse = await http.request({ method, url, headers, body: await bodyBytes(request.body) }, toAbortSignal(options?.abortSignal));
      return { response: { statusCode: answer.status, headers: { ...answer.headers }, body: Readable.from([Buffer.from(answer.body, 'utf8')]) } };
    },
    updateHttpClientConfig(): void {},
    httpHandlerConfigs(): Record<string, never> {
      return {};
    },
    /** The transport is the platform's, shared by every destination: not ours to close. */
    destroy(): void {},
  };
}

/** Where and as whom to reach the bucket: shared by the connector (writes) and the impressions export (reads). */
export function s3ClientConfig(settings: S3Settings): S3ClientConfig {
  const credentials =
    settings.accessKeyId !== undefined && settings.secretAccessKey !== undefined
      ? { accessKeyId: settings.accessKeyId, secretAccessKey: settings.secretAccessKey, ...(settings.sessionToken === undefined ? {} : { sessionToken: settings.sessionToken }) }
      : undefined;
  return {
    region: settings.region,
    forcePathStyle: settings.forcePathStyle,
    ...(settings.endpoint === undefined ? {} : { endpoint: settings.endpoint }),
    // Absent: the SDK's default chain (env, shared files, SSO, web identity, ECS, EC2 metadata).
    ...(credentials === undefined ? {} : { credentials }),
    // AWS S3 gets the SDK's default CRC32 checksum header; S3-compatible stores often reject it
    // (aws-sdk-js-v3#6810), so there only the checksums an operation requires are sent. The
    // SigV4 payload hash (x-amz-content-sha256) protects the body either way.
    ...(settings.endpoint === undefined ? {} : { requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' }),
  };
}

/** The connector's requests for objects built from `items` (by either encoder). */
function s3EncodeResult(items: readonly Impression[], settings: S3Settings, objects: readonly S3Object[]): EncodeResult<S3PutRequest> {
  const requests = objects.map(({ positions, key, body, contentType }) => ({
    itemIds: Array.from(positions, (position) => (items[position] as Impression).id),
    bytes: body.byteLength,
    request: { bucket: settings.bucket, key, body, contentType, rows: positions.length },
  }));
  return { requests, rejected: [], skipped: [] };
}

export const s3Connector: Connector<S3Settings, S3PutRequest, S3PutResponse, S3Client> = {
  type: 's3',
  displayName: 'Amazon S3',
  description: 'Writes impressions as JSON lines, CSV or Parquet objects partitioned by environment and hour, in S3 or an S3-compatible store',
  settingsSchema: S3SettingsSchema,
  secretSettings: ['accessKeyId', 'secretAccessKey', 'sessionToken'],
  exampleSettings: { bucket: 'acme-impressions', prefix: 'split/impressions/', region: 'eu-west-1', format: 'jsonl', compression: 'gzip' },
  limits: (settings) => ({
    // Rows per object: a setting (default 50 000); S3 itself has no row notion.
    maxItemsPerRequest: settings.maxRows,
    // S3: "upload a single object of up to 5 GB" with one PUT; larger needs multipart.
    maxBytesPerRequest: maxSinglePutBytes,
    // Flush by time: a setting (default 5 minutes); the core may cap it.
    maxBatchWaitMs: settings.maxWait,
    // S3 takes at least 3500 PUT/s per prefix; a few objects in flight are plenty.
    maxConcurrentRequests: 4,
  }),
  createClient(settings, platform) {
    return new S3Client({
      ...s3ClientConfig(settings),
      // One attempt: every failure goes back to the core, which owns retries and backoff.
      maxAttempts: 1,
      requestHandler: platformRequestHandler(platform.http),
    });
  },
  encode(items, settings) {
    return s3EncodeResult(items, settings, encodeS3Objects(items, settings));
  },
  async encodeOffLoop(items, settings) {
    // Serialising and compressing 50 000 rows takes the better part of a second: in a worker
    // thread, so other destinations' deliveries (and the API) keep the event loop meanwhile.
    return s3EncodeResult(items, settings, await encodeS3ObjectsOffThread(items, settings));
  },
  async send(client, request, signal) {
    try {
      const output = await client.send(
        new PutObjectCommand({ Bucket: request.bucket, Key: request.key, Body: request.body, ContentType: request.contentType, ContentLength: request.body.byteLength }),
        { abortSignal: signal },
      );
      return { key: request.key, status: output.$metadata.httpStatusCode ?? 200, ...(output.ETag === undefined ? {} : { etag: output.ETag }) };
    } catch (error) {
      // An answer from S3 is a value to classify; anything else (network, timeout, credentials) is thrown to the core.
      const failure = serviceFailure(error, request.key);
      if (failure === undefined) throw error;
      return failure;
    }
  },
  classify: (result) => classifyS3Result(result),
  async closeClient(client) {
    client.destroy();
  },
};
