import { z } from 'zod';
import { describeResponse, parseRetryAfter } from '../http-classification.js';
import type { EncodedRequest, EncodeResult, HttpRequestSpec, RejectCode } from '../connector.js';
import { defineHttpConnector } from '../define-http-connector.js';
import { defaultEventName, identityFor, identityMappingSchema, impressionEventProperties } from '../impression-event.js';
import type { Impression } from '../../domain/impression.js';

/**
 * Heap, through the server-side Track API in its bulk form: `POST {base}/api/track` with
 * `{ app_id, events: [ … ] }`, one event per impression; optionally also the user property
 * `Split.<flag> = <treatment>` through the bulk Add User Properties API
 * (`POST {base}/api/add_user_properties` with `{ app_id, users: [ … ] }`), as Split's own Heap
 * integration sets it in the browser. Facts and sources (checked 2026-11-25) are in ./README.md:
 *
 * - ≤ 1000 events per bulk track request, ≤ 1000 users per bulk user-properties request. No auth
 *   header: `app_id` (the environment id) in the body is the only credential.
 * - `identity` (≤ 255 characters) or `user_id` (a number 0…2^53-1 as a string), never both; event
 *   names ≤ 1024 characters; property names and values numbers or strings of fewer than 1024.
 * - `idempotency_key` = impression id: Heap drops a repeat, so retries and replays are safe.
 * - 1000 events/min per identity and 15 000 events/min per app_id (bulk); 30 requests per 30 s per
 *   identity (single track and add_user_properties). Above them Heap throttles.
 * - Error bodies are not documented: a 400 rejects the whole request (so every limit is checked
 *   here first), a 429 throttles it (Retry-After when sent, else one minute, the window Heap's
 *   limits are counted in).
 *
 * With `userProperties`, an impression travels in two requests (its event and its user's
 * property); the core counts it delivered only when both are.
 */

export const heapRegions = {
  us: 'https://heapanalytics.com',
  eu: 'https://c.eu.heap-api.com',
} as const;

/** "a max of 1000 events per request" (bulk track); also "a max of 1000 users per request" (bulk user properties). */
const maxEventsPerRequest = 1000;
/** Heap documents no body size limit: flagstream's own bound, well above 1000 ordinary events. */
export const heapMaxBodyBytes = 1_000_000;
/** "Case-sensitive string, limited to 255 characters." */
const maxIdentityLength = 255;
/** "Each key and property must either be a number or string with fewer than 1024 characters." */
export const maxPropertyLength = 1023;
/** Heap counts its rate limits per minute: without a Retry-After, a throttled request waits one window. */
export const heapThrottlePauseMs = 60_000;
/** `user_id` is "the string representation of a number between zero and 2^53 - 1". */
const maxUserId = 2n ** 53n - 1n;

export const HeapSettingsSchema = z.strictObject({
  appId: z.string().trim().regex(/^\d+$/, 'expected the numeric Heap environment id (app_id)').describe('Heap environment id, sent as app_id in the body (Heap’s only credential for server-side calls)'),
  region: z.enum(['us', 'eu']).default('us').describe('Data centre: us (heapanalytics.com) or eu (c.eu.heap-api.com)'),
  baseUrl: z.url({ protocol: /^https?$/ }).optional().describe('Base URL override (a proxy, or a test server); wins over region; /api/track is appended'),
  eventName: z.string().min(1).max(1024).default(defaultEventName).describe('Heap event name of every impression (at most 1024 characters)'),
  identities: identityMappingSchema(['identity', 'user_id'], 'identity'),
  userProperties: z
    .boolean()
    .default(false)
    .describe('Also set the user property Split.<flag> = <treatment> (Add User Properties API; identity-mapped users only)'),
  batchSize: z.number().int().min(1).max(maxEventsPerRequest).default(maxEventsPerRequest).describe('Most events per request (at most 1000)'),
});
export type HeapSettings = z.infer<typeof HeapSettingsSchema>;

type HeapIdentity = HeapSettings['identities'][string];

export interface HeapTrackEvent {
  identity?: string;
  user_id?: string;
  event: string;
  timestamp: string;
  idempotency_key: string;
  properties: Record<string, string | number>;
}

export interface HeapUserProperties {
  identity: string;
  properties: Record<string, string>;
}

export function heapBaseUrl(settings: HeapSettings): string {
  return (settings.baseUrl ?? heapRegions[settings.region]).replace(/\/+$/, '');
}

/** The user property Split's integration sets: `Split.<flag>`. */
export function splitUserProperty(flag: string): string {
  return `Split.${flag}`;
}

function truncate(value: string): string {
  if (value.length <= maxPropertyLength) return value;
  const cut = value.slice(0, maxPropertyLength);
  // Never leave half of a surrogate pair at the end.
  return /[\uD800-\uDBFF]$/.test(cut) ? cut.slice(0, -1) : cut;
}

/** Why Heap would refuse this impression (and with it the whole request), or undefined. */
function rejection(impression: Impression, identity: HeapIdentity, properties: Record<string, string | number>, userProperties: boolean): string | undefined {
  if (identity === 'identity' && impression.key.length > maxIdentityLength) return `key is longer than the ${maxIdentityLength} characters Heap accepts as identity`;
  if (identity === 'user_id' && !(/^\d{1,16}$/.test(impression.key) && BigInt(impression.key) <= maxUserId)) {
    return 'key is not a Heap user_id (a number between 0 and 2^53 - 1)';
  }
  const longName = Object.keys(properties).find((name) => name.length > maxPropertyLength);
  if (longName !== undefined) return `property name "${longName.slice(0, 40)}…" is longer than the ${maxPropertyLength} characters Heap accepts`;
  if (userProperties && identity === 'identity' && splitUserProperty(impression.split).length > maxPropertyLength) {
    return `user property name ${splitUserProperty(impression.split).slice(0, 40)}… is longer than the ${maxPropertyLength} characters Heap accepts`;
  }
  return undefined;
}

/** One user's flags (flag → its latest treatment) and the impressions that set them. */
interface UserUpdate {
  readonly properties: Map<string, { readonly time: number; readonly treatment: string }>;
  readonly itemIds: string[];
}

function jsonRequest(url: string, body: unknown, itemIds: string[]): EncodedRequest<HttpRequestSpec> {
  const json = JSON.stringify(body);
  return { itemIds, bytes: Buffer.byteLength(json), request: { method: 'POST', url, headers: { 'content-type': 'application/json' }, body: json } };
}

export const heapConnector = defineHttpConnector<HeapSettings>({
  type: 'heap',
  displayName: 'Heap',
  description: 'Sends each impression as a Heap server-side event (bulk Track API), deduplicated by idempotency_key; optionally sets the user property Split.<flag>',
  settingsSchema: HeapSettingsSchema,
  // app_id is public (every Heap web snippet carries it): Heap's server-side API has no secret.
  secretSettings: [],
  exampleSettings: { appId: '1234567890', region: 'us', identities: { user: 'identity' }, userProperties: false },
  regions: heapRegions,
  limits: (settings) => ({
    // Bulk track: "a max of 1000 events per request".
    maxItemsPerRequest: settings.batchSize,
    // No documented body limit: flagstream's own bound (a 413 is split by the core anyway).
    maxBytesPerRequest: heapMaxBodyBytes,
    maxBatchWaitMs: 1000,
    // 15 000 events/min per app_id: a couple of lanes of 1000-event requests already reach it.
    maxConcurrentRequests: 2,
  }),
  encode(items, settings) {
    const rejected: { itemId: string; code: RejectCode; reason: string }[] = [];
    const skipped: { itemId: string; reason: string }[] = [];
    const events: HeapTrackEvent[] = [];
    const itemIds: string[] = [];
    // identity → flag → the latest impression's treatment, and the impressions that set it.
    const users = new Map<string, UserUpdate>();

    for (const impression of items) {
      const identity = identityFor(impression, settings.identities);
      if (identity === undefined) {
        skipped.push({ itemId: impression.id, reason: `traffic type ${JSON.stringify(impression.trafficTypeName ?? null)} is not mapped to a Heap identity` });
        continue;
      }
      const properties: Record<string, string | number> = {};
      for (const [name, value] of Object.entries(impressionEventProperties(impression))) properties[name] = typeof value === 'string' ? truncate(value) : value;
      const reason = rejection(impression, identity, properties, settings.userProperties);
      if (reason !== undefined) {
        rejected.push({ itemId: impression.id, code: 'invalid_payload', reason });
        continue;
      }
      events.push({
        ...(identity === 'identity' ? { identity: impression.key } : { user_id: impression.key }),
        event: settings.eventName,
        timestamp: new Date(impression.time).toISOString(),
        idempotency_key: impression.id,
        properties,
      });
      itemIds.push(impression.id);

      // Add User Properties takes an identity only: user_id-mapped users get the event alone.
      if (!settings.userProperties || identity !== 'identity') continue;
      const user: UserUpdate = users.get(impression.key) ?? { properties: new Map(), itemIds: [] };
      users.set(impression.key, user);
      const previous = user.properties.get(impression.split);
      if (previous === undefined || impression.time >= previous.time) user.properties.set(impression.split, { time: impression.time, treatment: truncate(impression.treatment) });
      user.itemIds.push(impression.id);
    }

    const base = heapBaseUrl(settings);
    const requests: EncodedRequest<HttpRequestSpec>[] = [];
    if (events.length > 0) requests.push(jsonRequest(`${base}/api/track`, { app_id: settings.appId, events }, itemIds));
    if (users.size > 0) {
      const body: { app_id: string; users: HeapUserProperties[] } = { app_id: settings.appId, users: [] };
      const userItemIds: string[] = [];
      for (const [identity, user] of users) {
        body.users.push({ identity, properties: Object.fromEntries([...user.properties].map(([flag, { treatment }]) => [splitUserProperty(flag), treatment])) });
        userItemIds.push(...user.itemIds);
      }
      requests.push(jsonRequest(`${base}/api/add_user_properties`, body, userItemIds));
    }
    const result: EncodeResult<HttpRequestSpec> = { requests, rejected, skipped };
    return result;
  },
  classify(result) {
    if (!result.ok || result.response.status !== 429) return undefined;
    // Heap documents no Retry-After: its limits are per minute, so wait one window unless told otherwise.
    const response = result.response;
    return { kind: 'throttled', reason: describeResponse(response), status: 429, retryAfterMs: parseRetryAfter(response.headers['retry-after'], Date.now()) ?? heapThrottlePauseMs };
  },
});
