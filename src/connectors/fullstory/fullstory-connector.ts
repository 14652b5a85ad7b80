import { createHash } from 'node:crypto';
import { z } from 'zod';
import { describeResponse, excerpt } from '../http-classification.js';
import type { EncodedRequest, HttpRequestSpec, HttpResponse } from '../connector.js';
import { defineHttpConnector } from '../define-http-connector.js';
import { identityFor, identityMappingSchema, impressionEventProperties } from '../impression-event.js';

/**
 * Fullstory, through the Server API v2 "Create Event" endpoint (`POST {base}/v2/events`, one event
 * per request, `Authorization: Basic <API key>` with the key as is). Facts and sources are in
 * ./README.md:
 *
 * - The event is tied to the user by `user.uid` (the impression key, ≤ 256 characters) and, with
 *   `session.use_most_recent`, to that user's session of the last 30 minutes, if any.
 * - `Idempotency-Key` header: Fullstory stores the answer to the first request with a key for 24
 *   hours and answers a repeat with it, so retries and replays create the event once. It also
 *   refuses a repeat whose body differs, so the key is the impression id plus a hash of the body:
 *   stable for the same impression and settings, new when a setting that changes the body changes.
 * - Answers: 200 `{}`; errors `{"code","message"}` with 400 (invalid input), 401, 403, 404, 429
 *   (with `Retry-After` seconds) and 500. An undocumented 409 (the same key still in flight) is retried.
 *
 * The batch import (`POST /v2/events/batch`) is not used: it only creates an asynchronous job whose
 * per-event failures must be fetched later, so an answer could not say what was delivered.
 */

export const fullstoryRegions = {
  na1: 'https://api.fullstory.com',
  eu1: 'https://api.eu1.fullstory.com',
} as const;

/** Split's own Fullstory integration names its events `split_evaluation`. */
export const fullstoryDefaultEventName = 'split_evaluation';
/** `user.uid`: "Possible values: <= 256 characters". */
const maxUidLength = 256;
/** Fullstory's event-name limit (documented for its browser and mobile APIs). */
const maxEventNameLength = 250;
/** Fullstory's payload limit for its client APIs (512 KB); the server endpoint documents none. */
const maxBodyBytes = 512_000;

export const FullstorySettingsSchema = z.strictObject({
  apiKey: z.string().trim().min(1).describe('Fullstory API key (sent as Authorization: Basic <key>)'),
  region: z
    .enum(['na1', 'eu1'])
    .default('na1')
    .describe('Data center: na1 (api.fullstory.com, which also routes EU keys) or eu1 (api.eu1.fullstory.com)'),
  baseUrl: z.url({ protocol: /^https?$/ }).optional().describe('Base URL override (a proxy, or a test server); wins over region; /v2/events is appended'),
  eventName: z
    .string()
    .trim()
    .min(1)
    .max(maxEventNameLength)
    .default(fullstoryDefaultEventName)
    .describe('Fullstory event name of every impression (at most 250 characters)'),
  identities: identityMappingSchema(['uid'], 'uid'),
  useMostRecentSession: z
    .boolean()
    .default(true)
    .describe("Attach each event to the user's most recent session (captured in the last 30 minutes); otherwise the event belongs to the user only"),
});
export type FullstorySettings = z.infer<typeof FullstorySettingsSchema>;

/** The Create Event body as this connector writes it. */
export interface FullstoryEvent {
  name: string;
  timestamp: string;
  user: { uid: string };
  session?: { use_most_recent: true };
  properties: Record<string, string | number>;
}

/** Fullstory's error body, `{"code":"required_field","message":"uid is required"}`. */
export const FullstoryErrorBodySchema = z.looseObject({
  code: z.string().optional().catch(undefined),
  message: z.string().optional().catch(undefined),
});

export function fullstoryEndpoint(settings: FullstorySettings): string {
  const base = (settings.baseUrl ?? fullstoryRegions[settings.region]).replace(/\/+$/, '');
  return `${base}/v2/events`;
}

/** `<impression id>-<16 hex of SHA-256(body)>`: the same impression and settings, the same key. */
export function fullstoryIdempotencyKey(impressionId: string, body: string): string {
  return `${impressionId}-${createHash('sha256').update(body).digest('hex').slice(0, 16)}`;
}

function fullstoryError(response: HttpResponse): string | undefined {
  let json: unknown;
  try {
    json = JSON.parse(response.body);
  } catch {
    return undefined;
  }
  const body = FullstoryErrorBodySchema.safeParse(json);
  if (!body.success) return undefined;
  const text = [body.data.code, body.data.message].filter((part) => part !== undefined && part !== '').join(': ');
  return text === '' ? undefined : excerpt(text);
}

export const fullstoryConnector = defineHttpConnector<FullstorySettings>({
  type: 'fullstory',
  displayName: 'Fullstory',
  description: 'Creates a Fullstory server event per impression (Server API v2), on the user by uid and their most recent session, made idempotent with an Idempotency-Key',
  settingsSchema: FullstorySettingsSchema,
  secretSettings: ['apiKey'],
  exampleSettings: { apiKey: 'na1.Zx8pQ2mW7vB4nK1tR6yH3cL9sD5fG0jA/o-1ABCD-na1', region: 'na1', identities: { user: 'uid' } },
  regions: fullstoryRegions,
  limits: () => ({
    // Create Event takes one event; the batch import is asynchronous (see above).
    maxItemsPerRequest: 1,
    maxBytesPerRequest: maxBodyBytes,
    maxBatchWaitMs: 1000,
    // One event per request: a few more lanes; Fullstory's rate limit "should not be hit under realistic load".
    maxConcurrentRequests: 8,
  }),
  encode(items, settings) {
    const url = fullstoryEndpoint(settings);
    const requests: EncodedRequest<HttpRequestSpec>[] = [];
    const rejected: { itemId: string; code: 'invalid_payload'; reason: string }[] = [];
    const skipped: { itemId: string; reason: string }[] = [];
    for (const impression of items) {
      if (identityFor(impression, settings.identities) === undefined) {
        skipped.push({ itemId: impression.id, reason: `traffic type ${JSON.stringify(impression.trafficTypeName ?? null)} is not mapped to a Fullstory uid` });
        continue;
      }
      if (impression.key.length > maxUidLength) {
        rejected.push({ itemId: impression.id, code: 'invalid_payload', reason: `key is longer than Fullstory's ${maxUidLength}-character limit for user.uid` });
        continue;
      }
      const event: FullstoryEvent = {
        name: settings.eventName,
        timestamp: new Date(impression.time).toISOString(),
        user: { uid: impression.key },
        // Only when true: Segment's Fullstory destination notes the API once read `false` as `true`.
        ...(settings.useMostRecentSession ? { session: { use_most_recent: true as const } } : {}),
        properties: impressionEventProperties(impression),
      };
      const body = JSON.stringify(event);
      requests.push({
        itemIds: [impression.id],
        bytes: Buffer.byteLength(body),
        request: {
          method: 'POST',
          url,
          headers: {
            'content-type': 'application/json',
            accept: 'application/json',
            authorization: `Basic ${settings.apiKey}`,
            'idempotency-key': fullstoryIdempotencyKey(impression.id, body),
          },
          body,
        },
      });
    }
    return { requests, rejected, skipped };
  },
  classify(result) {
    if (!result.ok) return undefined;
    if (result.response.status === 409) {
      // Undocumented; the idempotency layer saves nothing for a request "conflicted with another
      // that was executing concurrently" (the same key in flight): sending it again is safe.
      return { kind: 'retry', reason: describeResponse(result.response), status: 409 };
    }
    // 200 delivered; 401/403 destination_auth; 404 destination_not_found; 429 throttled (Retry-After); 5xx retried: the default table.
    if (result.response.status !== 400) return undefined;
    const error = fullstoryError(result.response);
    const reason = error === undefined ? describeResponse(result.response) : `HTTP 400: Fullstory refused the event (${error})`;
    return { kind: 'rejected', code: 'invalid_payload', reason, status: 400 };
  },
});
