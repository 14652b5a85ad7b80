import { createHash } from 'node:crypto';
import type { TrackParams } from '@segment/analytics-node';
import { z } from 'zod';
import { describeResponse, parseRetryAfter } from '../http-classification.js';
import type { EncodedRequest, EncodeResult, HttpRequestSpec, RejectCode } from '../connector.js';
import { defineHttpConnector } from '../define-http-connector.js';
import { defaultEventName, identityFor, identityMappingSchema, impressionEventProperties } from '../impression-event.js';

/**
 * Segment: one `track` event per impression through the documented HTTP Tracking API,
 * `POST {base}/v1/batch` with `{ "batch": [ … ] }` and `Authorization: Basic base64(writeKey + ":")`.
 * Facts and sources (checked 2026-11-24) are in ./README.md:
 *
 * - A batch request carries at most 500 KB and at most 2500 events; each event at most 32 KB.
 *   Over 500 KB or 32 KB Segment answers 400 for the whole request; over 2500 events it answers
 *   200 and drops the events. Sizes are enforced here (decimal kB, a little under the limits) so a
 *   400 never sinks a batch for one big event: an event over 32 000 bytes is dead-lettered as
 *   payload_too_large, and events are packed greedily into requests of at most 500 000 bytes.
 * - `messageId` = impression.id (< 100 characters, as Segment requires): Segment deduplicates on
 *   it, so a retried or replayed request never double-counts.
 * - 200 for everything else (missing identity or event name are dropped silently, visible only in
 *   the Segment Debugger); 400 for oversize payloads and invalid JSON; 429 with `Retry-After` and
 *   `X-RateLimit-Reset` (seconds) over the rate limit (1000 requests/s per workspace recommended).
 * - EU workspaces must use `https://events.eu1.segmentapis.com`: data sent to the US host from an
 *   EU workspace is accepted with 200 and never appears.
 *
 * `@segment/analytics-node` is not used for transport (see README.md, "Why not analytics-node"):
 * even with `maxRetries: 0` it sleeps and re-sends internally on a 429 with Retry-After, it
 * reports failures as `[status] statusText` only (no body, no headers), and it batches on its
 * own timers, so the core could not see or attribute every failed request. Its `TrackParams`
 * type still checks the shape of the events written here.
 */

export const segmentRegions = {
  us: 'https://api.segment.io',
  eu: 'https://events.eu1.segmentapis.com',
} as const;

/** "There is a maximum of 500KB per batch request" (read as 500 000 bytes, the smaller reading). */
export const segmentMaxBatchBytes = 500_000;
/** "…and 32KB per call": per event inside a batch (read as 32 000 bytes). */
export const segmentMaxEventBytes = 32_000;
/** "Each batch request can only have up to 2500 events"; more are answered 200 and dropped. */
const maxEventsPerBatch = 2500;
/** "ensure all events have unique messageId values with fewer than 100 characters". */
const maxMessageIdLength = 99;

export const SegmentSettingsSchema = z.object({
  writeKey: z.string().trim().min(1).describe('Write key of a Segment HTTP API source (sent as HTTP Basic user name)'),
  region: z
    .enum(['us', 'eu'])
    .default('us')
    .describe('Workspace region: us (api.segment.io) or eu (events.eu1.segmentapis.com); EU data sent to the US host is silently lost'),
  baseUrl: z
    .url({ protocol: /^https?$/ })
    .optional()
    .describe('Base URL override (a Segment custom domain, a proxy or a test server); wins over region; /v1/batch is appended'),
  eventName: z.string().trim().min(1).default(defaultEventName).describe('Segment track event name of every impression'),
  identities: identityMappingSchema(['userId', 'anonymousId'], 'userId'),
  batchSize: z
    .number()
    .int()
    .min(1)
    .max(maxEventsPerBatch)
    .default(500)
    .describe('Most events per batch request (at most 2500; requests are also kept under 500 KB)'),
});
export type SegmentSettings = z.infer<typeof SegmentSettingsSchema>;

type SegmentIdentity = SegmentSettings['identities'][string];

/** A track call as the batch endpoint takes it; `TrackParams` is analytics-node's own shape of one. */
export type SegmentTrackEvent = TrackParams & {
  readonly type: 'track';
  readonly messageId: string;
  readonly timestamp: string;
  readonly properties: Record<string, string | number>;
};

export function segmentEndpoint(settings: SegmentSettings): string {
  const base = (settings.baseUrl ?? segmentRegions[settings.region]).replace(/\/+$/, '');
  return `${base}/v1/batch`;
}

/** The impression id as is (32 characters); a longer id is hashed so it stays stable and under 100. */
export function segmentMessageId(impressionId: string): string {
  if (impressionId.length <= maxMessageIdLength) return impressionId;
  return `sha256-${createHash('sha256').update(impressionId).digest('base64url')}`;
}

function basicAuth(writeKey: string): string {
  return `Basic ${Buffer.from(`${writeKey}:`).toString('base64')}`;
}

/**
 * `X-RateLimit-Reset` as milliseconds from now: Segment documents seconds to wait; a value that
 * can only be a Unix time (after 2001) is read as one instead of as a 50-year wait.
 */
export function rateLimitResetMs(value: string | undefined, now: number): number | undefined {
  const ms = parseRetryAfter(value, now);
  if (ms === undefined || ms < 1_000_000_000_000) return ms;
  return Math.max(0, ms - now);
}

const batchOpen = '{"batch":[';
const batchClose = ']}';

export const segmentConnector = defineHttpConnector<SegmentSettings>({
  type: 'segment',
  displayName: 'Segment',
  description: 'Sends each impression as a Segment track event through the HTTP Tracking API batch endpoint, deduplicated by messageId',
  settingsSchema: SegmentSettingsSchema,
  secretSettings: ['writeKey'],
  exampleSettings: { writeKey: 'hBY5e4YQd5dXuVZ2k9uBHx1LQk0Yvs2K', region: 'us', identities: { user: 'userId', '*': 'anonymousId' } },
  regions: segmentRegions,
  limits: (settings) => ({
    // Segment: at most 2500 events per batch request (more are dropped with a 200).
    maxItemsPerRequest: settings.batchSize,
    // Segment: "a maximum of 500KB per batch request"; encode packs requests under it already.
    maxBytesPerRequest: segmentMaxBatchBytes,
    maxBatchWaitMs: 1000,
    // Segment recommends at most 1000 requests/s per workspace; a few lanes stay far below it.
    maxConcurrentRequests: 4,
  }),
  encode(items, settings) {
    const url = segmentEndpoint(settings);
    const headers = { 'content-type': 'application/json', authorization: basicAuth(settings.writeKey) };
    const rejected: { itemId: string; code: RejectCode; reason: string }[] = [];
    const skipped: { itemId: string; reason: string }[] = [];
    const requests: EncodedRequest<HttpRequestSpec>[] = [];

    // Greedy packing: each request's body is `{"batch":[e1,e2,…]}`, exactly JSON.stringify({ batch }).
    let events: string[] = [];
    let itemIds: string[] = [];
    let bytes = 0;
    const flush = (): void => {
      if (events.length === 0) return;
      const body = `${batchOpen}${events.join(',')}${batchClose}`;
      requests.push({ itemIds, bytes: Buffer.byteLength(body), request: { method: 'POST', url, headers, body } });
      events = [];
      itemIds = [];
      bytes = 0;
    };
    const emptyBytes = batchOpen.length + batchClose.length;

    for (const impression of items) {
      const identity: SegmentIdentity | undefined = identityFor(impression, settings.identities);
      if (identity === undefined) {
        skipped.push({ itemId: impression.id, reason: `traffic type ${JSON.stringify(impression.trafficTypeName ?? null)} is not mapped to a Segment identity` });
        continue;
      }
      const event: SegmentTrackEvent = {
        type: 'track',
        event: settings.eventName,
        ...(identity === 'userId' ? { userId: impression.key } : { anonymousId: impression.key }),
        messageId: segmentMessageId(impression.id),
        timestamp: new Date(impression.time).toISOString(),
        properties: impressionEventProperties(impression),
      };
      const json = JSON.stringify(event);
      const eventBytes = Buffer.byteLength(json);
      if (eventBytes > segmentMaxEventBytes) {
        rejected.push({
          itemId: impression.id,
          code: 'payload_too_large',
          reason: `Segment event of ${eventBytes} bytes is over the limit of ${segmentMaxEventBytes} bytes (32 KB per event)`,
        });
        continue;
      }
      // One comma before every event but the first.
      if (events.length > 0 && emptyBytes + bytes + 1 + eventBytes > segmentMaxBatchBytes) flush();
      bytes += (events.length === 0 ? 0 : 1) + eventBytes;
      events.push(json);
      itemIds.push(impression.id);
    }
    flush();
    const result: EncodeResult<HttpRequestSpec> = { requests, rejected, skipped };
    return result;
  },
  classify(result) {
    if (!result.ok || result.response.status !== 429) return undefined;
    const response = result.response;
    // Segment sends both Retry-After and X-RateLimit-Reset (seconds); the default table reads the first.
    if (parseRetryAfter(response.headers['retry-after'], Date.now()) !== undefined) return undefined;
    const retryAfterMs = rateLimitResetMs(response.headers['x-ratelimit-reset'], Date.now());
    const reason = describeResponse(response);
    return { kind: 'throttled', reason, status: 429, ...(retryAfterMs === undefined ? {} : { retryAfterMs }) };
  },
});
