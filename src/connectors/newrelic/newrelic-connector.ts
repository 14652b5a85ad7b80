import { gzipSync } from 'node:zlib';
import { z } from 'zod';
import { describeResponse, parseRetryAfter } from '../http-classification.js';
import type { EncodedRequest, EncodeResult, HttpRequestSpec, RejectCode } from '../connector.js';
import { defineHttpConnector } from '../define-http-connector.js';
import { identityFor, identityMappingSchema, impressionEventProperties } from '../impression-event.js';
import type { Impression } from '../../domain/impression.js';

/**
 * New Relic, through the Event API: `POST {base}/v1/accounts/{accountId}/events` with a gzipped
 * JSON array of flat custom events (`eventType` + attributes), one per impression. Facts and
 * sources (checked 2026-11-25) are in ./README.md:
 *
 * - Auth: a license key in `Api-Key` (what New Relic documents today), or a legacy Insights
 *   insert key in `X-Insert-Key`.
 * - 1 MB (10^6 bytes) per POST; New Relic does not say whether before or after compression, so
 *   the limit is applied to the uncompressed JSON, which bounds both.
 * - Attribute values are strings or numbers only (nested properties are flattened here with dotted
 *   names); ≤ 255 attributes per event, names ≤ 255 characters, values ≤ 4096 characters.
 * - The API validates asynchronously: 200 `{"success":true,"uuid":…}` means "accepted for
 *   processing"; an event broken in any of the ways above is dropped later and reported only as an
 *   `NrIntegrationError` event. So those limits are enforced here: long values are truncated, an
 *   impression that still cannot fit is rejected (`invalid_payload`) instead of vanishing.
 * - 400 (empty body), 403 (bad key), 408, 413, 415, 429 (100 000 POSTs/min per account, then 429
 *   for the rest of the minute), 503. No dedup key exists: a request retried after New Relic took
 *   it counts twice; `impressionId` is an attribute so queries can tell repeats apart.
 */

export const newRelicRegions = {
  us: 'https://insights-collector.newrelic.com',
  eu: 'https://insights-collector.eu01.nr-data.net',
} as const;

/** "Payload total size: 1MB (10^6 bytes) maximum per POST", applied to the uncompressed JSON. */
export const newRelicMaxBodyBytes = 1_000_000;
/** The retired Insights insert API documented "1000 events per call"; the current page names no count. */
const maxEventsPerRequest = 1000;
export const maxAttributesPerEvent = 255;
export const maxAttributeNameLength = 255;
export const maxAttributeValueLength = 4096;
/** The `timestamp` attribute "takes a 64-bit integer Unix timestamp within the last 24 hours" (5 min kept as margin). */
export const maxTimestampAgeMs = 24 * 3_600_000 - 5 * 60_000;
/** Over the POST rate New Relic answers 429 "for the remainder of the 1-minute window". */
export const newRelicThrottlePauseMs = 60_000;

export const NewRelicSettingsSchema = z.strictObject({
  accountId: z.string().trim().regex(/^\d+$/, 'expected the numeric New Relic account id').describe('New Relic account id the events are written to'),
  apiKey: z.string().trim().min(1).describe('License key (keyType license, sent as Api-Key) or Insights insert key (keyType insert, sent as X-Insert-Key)'),
  keyType: z.enum(['license', 'insert']).default('license').describe('license (recommended by New Relic) or insert (legacy Insights insert key)'),
  region: z.enum(['us', 'eu']).default('us').describe('Data centre: us (insights-collector.newrelic.com) or eu (insights-collector.eu01.nr-data.net)'),
  baseUrl: z.url({ protocol: /^https?$/ }).optional().describe('Base URL override (a proxy, or a test server); wins over region; /v1/accounts/{accountId}/events is appended'),
  eventType: z
    .string()
    .regex(/^[A-Za-z][A-Za-z0-9_:]{0,254}$/, 'New Relic event types are letters, digits, _ and :, starting with a letter (at most 255)')
    .default('SplitImpression')
    .describe('Custom event type (the NRQL "table") of every impression'),
  identities: identityMappingSchema(['key'], 'key'),
  batchSize: z.number().int().min(1).max(maxEventsPerRequest).default(maxEventsPerRequest).describe('Most events per POST (at most 1000)'),
});
export type NewRelicSettings = z.infer<typeof NewRelicSettingsSchema>;

export type NewRelicEvent = Record<string, string | number>;

export function newRelicEndpoint(settings: NewRelicSettings): string {
  const base = (settings.baseUrl ?? newRelicRegions[settings.region]).replace(/\/+$/, '');
  return `${base}/v1/accounts/${settings.accountId}/events`;
}

/**
 * The impression's `properties` JSON as flat attributes: nested objects and arrays become dotted
 * names (`cart.items.0.sku`), booleans "true"/"false", nulls are left out. A value that is not a
 * JSON object is kept whole as the attribute `properties`.
 */
export function flattenedProperties(raw: string | undefined): Record<string, string | number> {
  if (raw === undefined) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    return { properties: raw };
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return { properties: raw };
  const out: Record<string, string | number> = {};
  const walk = (name: string, value: unknown): void => {
    if (typeof value === 'string' || typeof value === 'number') out[name] = value;
    else if (typeof value === 'boolean') out[name] = String(value);
    else if (Array.isArray(value)) value.forEach((element: unknown, index) => walk(`${name}.${index}`, element));
    else if (value !== null && typeof value === 'object') for (const [key, inner] of Object.entries(value)) walk(`${name}.${key}`, inner);
  };
  for (const [key, value] of Object.entries(parsed)) walk(key, value);
  return out;
}

function truncate(value: string): string {
  if (value.length <= maxAttributeValueLength) return value;
  const cut = value.slice(0, maxAttributeValueLength);
  // Never leave half of a surrogate pair at the end.
  return /[\uD800-\uDBFF]$/.test(cut) ? cut.slice(0, -1) : cut;
}

/** The event of one impression, or why New Relic would drop it. */
export function newRelicEvent(impression: Impression, settings: NewRelicSettings, now: number): { event: NewRelicEvent } | { reason: string } {
  const event: NewRelicEvent = {};
  const attributes = { ...impressionEventProperties({ ...impression, properties: undefined }), ...flattenedProperties(impression.properties) };
  for (const [name, value] of Object.entries(attributes)) {
    if (name === '' || name.length > maxAttributeNameLength) {
      return { reason: `attribute name ${JSON.stringify(name.slice(0, 40))} is empty or longer than the ${maxAttributeNameLength} characters New Relic accepts (it would drop the event)` };
    }
    event[name] = typeof value === 'string' ? truncate(value) : value;
  }
  // Written last, so a custom property of the same name cannot replace them.
  event.eventType = settings.eventType;
  // Older than 24 h New Relic refuses the timestamp: the event is then stamped on arrival, and `time` keeps the real one.
  if (impression.time >= now - maxTimestampAgeMs) event.timestamp = impression.time;
  else delete event.timestamp;
  const count = Object.keys(event).length;
  if (count > maxAttributesPerEvent) return { reason: `${count} attributes, over the ${maxAttributesPerEvent} New Relic accepts per event (it would drop the event)` };
  return { event };
}

export const newRelicConnector = defineHttpConnector<NewRelicSettings>({
  type: 'newrelic',
  displayName: 'New Relic',
  description: 'Sends each impression as a New Relic custom event through the Event API (gzip, flat attributes)',
  settingsSchema: NewRelicSettingsSchema,
  secretSettings: ['apiKey'],
  exampleSettings: { accountId: '1234567', apiKey: 'eu01xx0123456789abcdef0123456789abcdNRAL', region: 'eu' },
  regions: newRelicRegions,
  limits: (settings) => ({
    maxItemsPerRequest: settings.batchSize,
    // 1 MB per POST, counted on the uncompressed JSON (see above).
    maxBytesPerRequest: newRelicMaxBodyBytes,
    maxBatchWaitMs: 1000,
    // 100 000 POSTs per minute per account: a few lanes stay far below it.
    maxConcurrentRequests: 4,
  }),
  encode(items, settings, context) {
    const rejected: { itemId: string; code: RejectCode; reason: string }[] = [];
    const skipped: { itemId: string; reason: string }[] = [];
    const events: NewRelicEvent[] = [];
    const itemIds: string[] = [];
    for (const impression of items) {
      if (identityFor(impression, settings.identities) === undefined) {
        skipped.push({ itemId: impression.id, reason: `traffic type ${JSON.stringify(impression.trafficTypeName ?? null)} is not mapped in identities` });
        continue;
      }
      const built = newRelicEvent(impression, settings, context.now);
      if ('reason' in built) {
        rejected.push({ itemId: impression.id, code: 'invalid_payload', reason: built.reason });
        continue;
      }
      events.push(built.event);
      itemIds.push(impression.id);
    }
    if (events.length === 0) return { requests: [], rejected, skipped };
    const json = JSON.stringify(events);
    const request: EncodedRequest<HttpRequestSpec> = {
      itemIds,
      // The uncompressed size: the limit is held on it (New Relic does not say which size it counts).
      bytes: Buffer.byteLength(json),
      request: {
        method: 'POST',
        url: newRelicEndpoint(settings),
        headers: {
          'content-type': 'application/json',
          'content-encoding': 'gzip',
          [settings.keyType === 'license' ? 'api-key' : 'x-insert-key']: settings.apiKey,
        },
        body: gzipSync(json),
      },
    };
    const result: EncodeResult<HttpRequestSpec> = { requests: [request], rejected, skipped };
    return result;
  },
  classify(result) {
    if (!result.ok || result.response.status !== 429) return undefined;
    const response = result.response;
    return { kind: 'throttled', reason: describeResponse(response), status: 429, retryAfterMs: parseRetryAfter(response.headers['retry-after'], Date.now()) ?? newRelicThrottlePauseMs };
  },
});
