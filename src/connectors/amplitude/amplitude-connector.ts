import { z } from 'zod';
import { describeResponse, parseRetryAfter } from '../http-classification.js';
import type { DeliveryOutcome, EncodedRequest, HttpRequestSpec, HttpResponse, ItemOutcome } from '../connector.js';
import { defineHttpConnector } from '../define-http-connector.js';
import { defaultEventName, identityFor, identityMappingSchema, impressionEventProperties } from '../impression-event.js';

/**
 * Amplitude: one event per impression, through the HTTP V2 API (`POST {base}/2/httpapi`) or the
 * Batch Event Upload API (`POST {base}/batch`); both take `{ api_key, events, options }` and answer
 * with the same JSON bodies. Facts and sources (checked 2026-11-24) are in ./README.md:
 *
 * - HTTP V2: < 2000 events and < 1 MB per request, else 413. Batch: ≤ 2000 events, ≤ 20 MB.
 * - `insert_id` = impression.id: Amplitude drops an event whose insert_id (per device_id; a
 *   user-only event gets a hashed user_id as device_id) it saw in the last 7 days, so every retry
 *   and replay is safe.
 * - 400 lists bad events by index (`events_with_invalid_fields`, `events_with_missing_fields`,
 *   `events_with_invalid_id_lengths`: field → [index]; `silenced_events`: [index]) and ingests
 *   **nothing** of the request: the listed events are rejected, the others must be sent again.
 * - 429 lists `throttled_events` (indexes): those wait ~30 s (the documented pause per user or
 *   device); the others were not ingested either (Amplitude's own SDKs re-send them at once), so
 *   they are retried too.
 * - 500/502/504 may have ingested the request (retry; insert_id dedupes); 503 did not (retry).
 *
 * Indexes refer to the request's `events` array, which is built in `itemIds` order with nothing
 * left out, so `itemIds[index]` is the impression a vendor index names.
 */

export const amplitudeRegions = {
  standard: 'https://api2.amplitude.com',
  eu: 'https://api.eu.amplitude.com',
} as const;

/** Path per API; the Batch Event Upload API suits more than 30 events/s per user or device. */
const apiPaths = { 'http-v2': '/2/httpapi', batch: '/batch' } as const;

/** Amplitude's documented per-request event cap, for both APIs (HTTP V2: "fewer than 2000"; Batch: "2000 events"). */
const maxEventsPerRequest = 2000;

/** Pause for a throttled user or device when Amplitude gives no Retry-After: "pause … for a period of 30 seconds". */
export const amplitudeThrottlePauseMs = 30_000;

/** Strings longer than this are not accepted by Amplitude (user_id, event_type, property values). */
const maxStringLength = 1024;

/**
 * IDs Amplitude documents as invalid (a 400 for the whole request). Matched exactly: an impression
 * with such a key is dead-lettered at encode time instead of sinking a whole batch.
 */
const invalidIds: ReadonlySet<string> = new Set([
  'anonymous',
  'nil',
  'none',
  'null',
  'n/a',
  'na',
  'undefined',
  'unknown',
  '""',
  '00000000-0000-0000-0000-000000000000',
  '{}',
  'lmy47d',
  '0',
  '-1',
]);

export const AmplitudeSettingsSchema = z.object({
  apiKey: z.string().trim().min(1).describe('Amplitude project API key (sent as api_key in the body)'),
  secretKey: z
    .string()
    .trim()
    .min(1)
    .optional()
    .describe('Amplitude project secret key; not used by the ingestion APIs, kept (encrypted) for parity with Split’s integration'),
  region: z
    .enum(['standard', 'eu'])
    .default('standard')
    .describe('Data residency: standard (api2.amplitude.com) or eu (api.eu.amplitude.com)'),
  baseUrl: z
    .url({ protocol: /^https?$/ })
    .optional()
    .describe('Base URL override (a proxy, or a test server); wins over region'),
  api: z
    .enum(['http-v2', 'batch'])
    .default('http-v2')
    .describe('http-v2 (POST /2/httpapi, < 1 MB per request, 30 events/s per user or device) or batch (POST /batch, ≤ 20 MB, 1000 events/s per user or device)'),
  eventName: z
    .string()
    .min(1)
    .max(maxStringLength)
    .default(defaultEventName)
    .describe('Amplitude event_type of every impression (at most 1024 characters)'),
  identities: identityMappingSchema(['user_id', 'device_id'], 'user_id'),
  batchSize: z
    .number()
    .int()
    .min(1)
    .max(maxEventsPerRequest)
    .default(1000)
    .describe('Most events per request (at most 2000; Amplitude recommends at most 10 on the Starter plan)'),
});
export type AmplitudeSettings = z.infer<typeof AmplitudeSettingsSchema>;

type AmplitudeIdentity = AmplitudeSettings['identities'][string];

/** One event of the request body, as the HTTP V2 and Batch APIs take it. */
export interface AmplitudeEvent {
  user_id?: string;
  device_id?: string;
  event_type: string;
  time: number;
  insert_id: string;
  event_properties: Record<string, string | number>;
}

/** Each field tolerates a shape we do not expect: one odd field must not hide the others. */
const indexList = z.array(z.number().int().nonnegative()).optional().catch(undefined);
const indexesByField = z.record(z.string(), z.array(z.number().int().nonnegative())).optional().catch(undefined);

/** The error bodies of a 400 / 429 from either API (documented examples in README.md). */
export const AmplitudeErrorBodySchema = z.looseObject({
  code: z.number().optional().catch(undefined),
  error: z.string().optional().catch(undefined),
  missing_field: z.string().optional().catch(undefined),
  events_with_invalid_fields: indexesByField,
  events_with_missing_fields: indexesByField,
  events_with_invalid_id_lengths: indexesByField,
  silenced_events: indexList,
  throttled_events: indexList,
});
type AmplitudeErrorBody = z.infer<typeof AmplitudeErrorBodySchema>;

export function amplitudeEndpoint(settings: AmplitudeSettings): string {
  const base = (settings.baseUrl ?? amplitudeRegions[settings.region]).replace(/\/+$/, '');
  return `${base}${apiPaths[settings.api]}`;
}

function parseErrorBody(body: string): AmplitudeErrorBody | undefined {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    return undefined;
  }
  const parsed = AmplitudeErrorBodySchema.safeParse(json);
  return parsed.success ? parsed.data : undefined;
}


/** Adds an outcome for the event at `index`, if it is one of this request's events. */
function setAt(byItem: Map<string, ItemOutcome>, sent: EncodedRequest<HttpRequestSpec>, index: number, outcome: ItemOutcome): void {
  const itemId = sent.itemIds[index];
  if (itemId !== undefined) byItem.set(itemId, outcome);
}

function classify400(response: HttpResponse, body: AmplitudeErrorBody | undefined, sent: EncodedRequest<HttpRequestSpec>): DeliveryOutcome {
  const status = 400;
  const reason = describeResponse(response);
  // The Python/Ruby SDKs treat "Invalid API key: …" as a configuration error, not a data error. The
  // body is not quoted: what follows the colon may echo the key, which must not reach a dead letter.
  if (body?.error?.startsWith('Invalid API key') === true) return { kind: 'rejected', code: 'destination_auth', reason: 'HTTP 400: Invalid API key', status };
  // A request-level field is missing (e.g. api_key): no event of this request can succeed.
  if (body === undefined || body.missing_field !== undefined) return { kind: 'rejected', code: 'invalid_payload', reason, status };

  const fieldsByIndex = new Map<number, string[]>();
  const collect = (map: Record<string, number[]> | undefined, problem: string): void => {
    for (const [field, indexes] of Object.entries(map ?? {})) {
      for (const index of indexes) fieldsByIndex.set(index, [...(fieldsByIndex.get(index) ?? []), `${problem} ${field}`]);
    }
  };
  collect(body.events_with_invalid_fields, 'invalid');
  collect(body.events_with_missing_fields, 'missing');
  collect(body.events_with_invalid_id_lengths, 'invalid length of');

  const byItem = new Map<string, ItemOutcome>();
  for (const [index, problems] of fieldsByIndex) {
    setAt(byItem, sent, index, { kind: 'rejected', code: 'invalid_payload', reason: `Amplitude rejected the event: ${problems.join(', ')} (${reason})`, status });
  }
  for (const index of body.silenced_events ?? []) {
    setAt(byItem, sent, index, { kind: 'rejected', code: 'invalid_payload', reason: `Amplitude silenced the event's device (${reason})`, status });
  }
  for (const index of body.throttled_events ?? []) {
    const itemId = sent.itemIds[index];
    if (itemId === undefined || byItem.has(itemId)) continue;
    setAt(byItem, sent, index, { kind: 'throttled', reason: `Amplitude throttled the event's user or device (${reason})`, status, retryAfterMs: throttlePause(response) });
  }
  // No index we can use: nothing tells the good events from the bad, so none can be re-sent as is.
  if (byItem.size === 0) return { kind: 'rejected', code: 'invalid_payload', reason, status };
  return { kind: 'partial', byItem: withOthers(byItem, sent, `not ingested: Amplitude refused the whole request for other events (${reason})`, status), reason, status };
}

function classify429(response: HttpResponse, body: AmplitudeErrorBody | undefined, sent: EncodedRequest<HttpRequestSpec>): DeliveryOutcome {
  const status = 429;
  const reason = describeResponse(response);
  const retryAfterMs = throttlePause(response);
  const byItem = new Map<string, ItemOutcome>();
  for (const index of body?.throttled_events ?? []) {
    setAt(byItem, sent, index, { kind: 'throttled', reason: `Amplitude throttled the event's user or device (${reason})`, status, retryAfterMs });
  }
  if (byItem.size === 0) return { kind: 'throttled', reason, status, retryAfterMs };
  return { kind: 'partial', byItem: withOthers(byItem, sent, `not ingested: Amplitude refused the whole request for throttled events (${reason})`, status), reason, status };
}

/** Every event not named by the vendor was not ingested either and goes out again. */
function withOthers(byItem: Map<string, ItemOutcome>, sent: EncodedRequest<HttpRequestSpec>, reason: string, status: number): Map<string, ItemOutcome> {
  for (const itemId of sent.itemIds) if (!byItem.has(itemId)) byItem.set(itemId, { kind: 'retry', reason, status });
  return byItem;
}

function throttlePause(response: HttpResponse): number {
  return parseRetryAfter(response.headers['retry-after'], Date.now()) ?? amplitudeThrottlePauseMs;
}

export const amplitudeConnector = defineHttpConnector<AmplitudeSettings>({
  type: 'amplitude',
  displayName: 'Amplitude',
  description: 'Sends each impression as an Amplitude event (HTTP V2 or Batch Event Upload API), deduplicated by insert_id',
  settingsSchema: AmplitudeSettingsSchema,
  secretSettings: ['apiKey', 'secretKey'],
  exampleSettings: { apiKey: '0123456789abcdef0123456789abcdef', region: 'standard', identities: { user: 'user_id', '*': 'device_id' } },
  regions: amplitudeRegions,
  limits: (settings) => ({
    // Both APIs cap a request at 2000 events (HTTP V2 "fewer than 2000", Batch "2000 per batch").
    maxItemsPerRequest: settings.batchSize,
    // HTTP V2: "under 1 MB" (413 otherwise), kept 10 kB under; Batch: "must not exceed 20MB", kept 100 kB under.
    maxBytesPerRequest: settings.api === 'batch' ? 20_000_000 - 100_000 : 1_000_000 - 10_000,
    maxBatchWaitMs: 1000,
    // Throttling is per user or device (30 events/s on HTTP V2), not per connection; a few lanes suffice.
    maxConcurrentRequests: 4,
  }),
  encode(items, settings) {
    const events: AmplitudeEvent[] = [];
    const itemIds: string[] = [];
    const rejected: { itemId: string; code: 'invalid_payload'; reason: string }[] = [];
    const skipped: { itemId: string; reason: string }[] = [];
    for (const impression of items) {
      const identity: AmplitudeIdentity | undefined = identityFor(impression, settings.identities);
      if (identity === undefined) {
        skipped.push({ itemId: impression.id, reason: `traffic type ${JSON.stringify(impression.trafficTypeName ?? null)} is not mapped to an Amplitude identity` });
        continue;
      }
      if (impression.key.length > maxStringLength || invalidIds.has(impression.key)) {
        rejected.push({ itemId: impression.id, code: 'invalid_payload', reason: `key is not a valid Amplitude ${identity} (placeholder value or over ${maxStringLength} characters)` });
        continue;
      }
      events.push({
        ...(identity === 'user_id' ? { user_id: impression.key } : { device_id: impression.key }),
        event_type: settings.eventName,
        time: impression.time,
        insert_id: impression.id,
        event_properties: impressionEventProperties(impression),
      });
      itemIds.push(impression.id);
    }
    if (events.length === 0) return { requests: [], rejected, skipped };
    // min_id_length 1: Split keys may be shorter than Amplitude's default minimum of 5 characters.
    const body = JSON.stringify({ api_key: settings.apiKey, events, options: { min_id_length: 1 } });
    const request: EncodedRequest<HttpRequestSpec> = {
      itemIds,
      bytes: Buffer.byteLength(body),
      request: { method: 'POST', url: amplitudeEndpoint(settings), headers: { 'content-type': 'application/json', accept: '*/*' }, body },
    };
    return { requests: [request], rejected, skipped };
  },
  classify(result, sent) {
    if (!result.ok) return undefined;
    const response = result.response;
    if (response.status === 400) return classify400(response, parseErrorBody(response.body), sent);
    if (response.status === 429) return classify429(response, parseErrorBody(response.body), sent);
    // 200 delivered; 413 split; 403 (WAF) auth; 500/502/504 and 503 retried: the default table.
    return undefined;
  },
});
