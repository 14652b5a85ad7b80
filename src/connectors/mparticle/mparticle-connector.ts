import { z } from 'zod';
import { describeResponse, excerpt, parseRetryAfter } from '../http-classification.js';
import type { EncodedRequest, EncodeResult, HttpRequestSpec, HttpResponse, RejectCode } from '../connector.js';
import { defineHttpConnector } from '../define-http-connector.js';
import { defaultEventName, identityFor, identityMappingSchema, impressionEventProperties } from '../impression-event.js';
import type { Impression } from '../../domain/impression.js';

/**
 * mParticle, through the server-to-server Events API bulk endpoint (`POST {pod}/v2/bulkevents`, a
 * JSON array of event batches, HTTP Basic `key:secret`). Facts and sources are in ./README.md:
 *
 * - ≤ 100 batches per bulk request; each batch "should not exceed 128kb"; the whole request "must
 *   be under 256kb" (Default Service Limits); 270 batches/s by default, then 429 with Retry-After.
 * - A batch is one user's data. Each impression becomes its own batch, with `source_request_id` =
 *   impression.id: mParticle deduplicates inbound batches on it (per API key, for 30-60 days), so
 *   a retry, a re-split request or a replay never counts an impression twice.
 * - 202 for the bulk request even when some of its batches fail; 400 malformed (body
 *   `{"errors":[{"code","message"}]}`), 401 no auth, 403 bad credentials, 429 throttled
 *   (`Retry-After` seconds, `X-mp-rate-limit-exceeded` names the limit), 503/5xx retry.
 *
 * mParticle answers 202 and drops what it cannot take inside a bulk request, so sizes are enforced
 * here: a batch over 128 000 bytes is dead-lettered at once and requests are packed under 255 000.
 */

export const mparticlePods = {
  us1: 'https://s2s.mparticle.com',
  us2: 'https://s2s.us2.mparticle.com',
  eu1: 'https://s2s.eu1.mparticle.com',
  au1: 'https://s2s.au1.mparticle.com',
} as const;

/** "A request to /bulkevents should contain no more than 100 batches." */
const maxBatchesPerRequest = 100;
/** "Each batch should not exceed 128kb" (read as 128 000 bytes, the smaller reading). */
export const mparticleMaxBatchBytes = 128_000;
/** "The total request size must be under 256kb", kept 1 kB under (decimal reading). */
export const mparticleMaxRequestBytes = 255_000;
/** Events API default: "Variable but defaults to 270 batches per second". */
const defaultBatchesPerSecond = 270;
/** Event names longer than this are truncated by mParticle for S2S data. */
const maxEventNameLength = 256;

/** User identity types of the Events API batch (`user_identities`), plus the batch-level `mpid`. */
export const mparticleIdentities = [
  'customer_id',
  'email',
  'other',
  'other_id_2',
  'other_id_3',
  'other_id_4',
  'other_id_5',
  'other_id_6',
  'other_id_7',
  'other_id_8',
  'other_id_9',
  'other_id_10',
  'mobile_number',
  'phone_number_2',
  'phone_number_3',
  'facebook',
  'facebook_custom_audience_id',
  'google',
  'microsoft',
  'twitter',
  'yahoo',
  'mpid',
] as const;

/** `custom_event_type` values the inbound Events API schema allows. */
const customEventTypes = ['navigation', 'location', 'search', 'transaction', 'user_content', 'user_preference', 'social', 'media', 'other'] as const;

export const MparticleSettingsSchema = z.strictObject({
  apiKey: z.string().trim().min(1).describe('Server-to-server key of an mParticle input or feed (HTTP Basic user name)'),
  apiSecret: z.string().trim().min(1).describe('Server-to-server secret of that key (HTTP Basic password)'),
  pod: z
    .enum(['us1', 'us2', 'eu1', 'au1'])
    .default('us1')
    .describe('Data-localization pod of the mParticle account: us1 (s2s.mparticle.com), us2, eu1 or au1 (s2s.<pod>.mparticle.com)'),
  baseUrl: z.url({ protocol: /^https?$/ }).optional().describe('Base URL override (a proxy, or a test server); wins over pod; /v2/bulkevents is appended'),
  environment: z.enum(['production', 'development']).default('production').describe('mParticle environment every batch is sent to'),
  eventName: z
    .string()
    .trim()
    .min(1)
    .max(maxEventNameLength)
    .default(defaultEventName)
    .describe('Custom event name of every impression (at most 256 characters; mParticle truncates longer S2S names)'),
  customEventType: z.enum(customEventTypes).default('other').describe('custom_event_type of every event'),
  identities: identityMappingSchema(mparticleIdentities, 'customer_id'),
  batchSize: z
    .number()
    .int()
    .min(1)
    .max(maxBatchesPerRequest)
    .default(maxBatchesPerRequest)
    .describe('Most impressions (one batch each) per bulk request, at most 100'),
  batchesPerSecond: z
    .number()
    .positive()
    .default(defaultBatchesPerSecond)
    .describe('Batches per second the account may send (mParticle default 270; raise it if mParticle raised your limit)'),
});
export type MparticleSettings = z.infer<typeof MparticleSettingsSchema>;

type MparticleIdentity = (typeof mparticleIdentities)[number];

/** One batch of the bulk body, as this connector writes it (`mpid` is spliced in as a raw integer). */
export interface MparticleBatch {
  source_request_id: string;
  environment: MparticleSettings['environment'];
  user_identities?: Partial<Record<Exclude<MparticleIdentity, 'mpid'>, string>>;
  events: [
    {
      event_type: 'custom_event';
      data: {
        event_name: string;
        custom_event_type: MparticleSettings['customEventType'];
        source_message_id: string;
        timestamp_unixtime_ms: number;
        custom_attributes: Record<string, string>;
      };
    },
  ];
}

const mparticleError = z.looseObject({ code: z.string().optional().catch(undefined), message: z.string().optional().catch(undefined) });
/** The optional error body: `{"errors":[{"code":"BAD_REQUEST","message":"…"}]}`. */
export const MparticleErrorBodySchema = z.looseObject({ errors: z.array(z.unknown()).optional().catch(undefined) });

export function mparticleEndpoint(settings: MparticleSettings): string {
  const base = (settings.baseUrl ?? mparticlePods[settings.pod]).replace(/\/+$/, '');
  return `${base}/v2/bulkevents`;
}

function basicAuth(settings: MparticleSettings): string {
  return `Basic ${Buffer.from(`${settings.apiKey}:${settings.apiSecret}`).toString('base64')}`;
}

const int64Min = -(2n ** 63n);
const int64Max = 2n ** 63n - 1n;

/** The key as a canonical int64 literal, or undefined: `mpid` is an int64 in the Events API schema. */
export function mpidLiteral(key: string): string | undefined {
  if (!/^-?\d{1,19}$/.test(key)) return undefined;
  const value = BigInt(key);
  if (value < int64Min || value > int64Max) return undefined;
  return value.toString();
}

function batchJson(impression: Impression, identity: MparticleIdentity, settings: MparticleSettings, mpid: string | undefined): string {
  const attributes: Record<string, string> = {};
  // The Events API types custom attribute values as strings.
  for (const [name, value] of Object.entries(impressionEventProperties(impression))) attributes[name] = String(value);
  const batch: MparticleBatch = {
    source_request_id: impression.id,
    environment: settings.environment,
    ...(identity === 'mpid' ? {} : { user_identities: { [identity]: impression.key } }),
    events: [
      {
        event_type: 'custom_event',
        data: {
          event_name: settings.eventName,
          custom_event_type: settings.customEventType,
          source_message_id: impression.id,
          timestamp_unixtime_ms: impression.time,
          custom_attributes: attributes,
        },
      },
    ],
  };
  const json = JSON.stringify(batch);
  // A JSON number, not a string, and written from the digits: an int64 does not fit a JS number.
  return mpid === undefined ? json : `{"mpid":${mpid},${json.slice(1)}`;
}

function describeErrors(response: HttpResponse): string | undefined {
  let json: unknown;
  try {
    json = JSON.parse(response.body);
  } catch {
    return undefined;
  }
  const body = MparticleErrorBodySchema.safeParse(json);
  const errors = (body.success ? (body.data.errors ?? []) : [])
    .map((raw) => mparticleError.safeParse(raw))
    .filter((parsed) => parsed.success)
    .map(({ data }) => [data.code, data.message].filter((part) => part !== undefined && part !== '').join(': '))
    .filter((text) => text !== '');
  return errors.length === 0 ? undefined : excerpt(errors.join('; '));
}

export const mparticleConnector = defineHttpConnector<MparticleSettings>({
  type: 'mparticle',
  displayName: 'mParticle',
  description: 'Sends each impression as an mParticle custom event batch through the server-to-server Events API bulk endpoint, deduplicated by source_request_id',
  settingsSchema: MparticleSettingsSchema,
  secretSettings: ['apiKey', 'apiSecret'],
  exampleSettings: {
    apiKey: 'us1-0123456789abcdef0123456789abcdef',
    apiSecret: 'Zx8pQ2mW7vB4nK1tR6yH3cL9sD5fG0jA',
    pod: 'us1',
    environment: 'production',
    identities: { user: 'customer_id', '*': 'other' },
  },
  regions: mparticlePods,
  limits: (settings) => ({
    // "A request to /bulkevents should contain no more than 100 batches"; one impression per batch.
    maxItemsPerRequest: settings.batchSize,
    // "The total request size must be under 256kb"; encode already packs requests under it.
    maxBytesPerRequest: mparticleMaxRequestBytes,
    maxBatchWaitMs: 1000,
    maxConcurrentRequests: 4,
    // The documented rate is in batches (= impressions) per second; the core paces requests.
    requestsPerSecond: settings.batchesPerSecond / settings.batchSize,
  }),
  encode(items, settings) {
    const url = mparticleEndpoint(settings);
    const headers = { 'content-type': 'application/json', accept: 'application/json', authorization: basicAuth(settings) };
    const rejected: { itemId: string; code: RejectCode; reason: string }[] = [];
    const skipped: { itemId: string; reason: string }[] = [];
    const requests: EncodedRequest<HttpRequestSpec>[] = [];

    // Greedy packing: the body is `[b1,b2,…]`; one comma between batches.
    let batches: string[] = [];
    let itemIds: string[] = [];
    let bytes = 2;
    const flush = (): void => {
      if (batches.length === 0) return;
      const body = `[${batches.join(',')}]`;
      requests.push({ itemIds, bytes: Buffer.byteLength(body), request: { method: 'POST', url, headers, body } });
      batches = [];
      itemIds = [];
      bytes = 2;
    };

    for (const impression of items) {
      const identity: MparticleIdentity | undefined = identityFor(impression, settings.identities);
      if (identity === undefined) {
        skipped.push({ itemId: impression.id, reason: `traffic type ${JSON.stringify(impression.trafficTypeName ?? null)} is not mapped to an mParticle identity` });
        continue;
      }
      const mpid = identity === 'mpid' ? mpidLiteral(impression.key) : undefined;
      if (identity === 'mpid' && mpid === undefined) {
        rejected.push({ itemId: impression.id, code: 'invalid_payload', reason: 'key is not a valid mParticle mpid (a signed 64-bit integer)' });
        continue;
      }
      const json = batchJson(impression, identity, settings, mpid);
      const batchBytes = Buffer.byteLength(json);
      if (batchBytes > mparticleMaxBatchBytes) {
        rejected.push({
          itemId: impression.id,
          code: 'payload_too_large',
          reason: `mParticle batch of ${batchBytes} bytes is over the limit of ${mparticleMaxBatchBytes} bytes (128 KB per batch)`,
        });
        continue;
      }
      if (batches.length > 0 && (batches.length >= settings.batchSize || bytes + 1 + batchBytes > mparticleMaxRequestBytes)) flush();
      bytes += (batches.length === 0 ? 0 : 1) + batchBytes;
      batches.push(json);
      itemIds.push(impression.id);
    }
    flush();
    const result: EncodeResult<HttpRequestSpec> = { requests, rejected, skipped };
    return result;
  },
  classify(result) {
    if (!result.ok) return undefined;
    const response = result.response;
    if (response.status === 400) {
      const errors = describeErrors(response);
      return { kind: 'rejected', code: 'invalid_payload', reason: errors === undefined ? describeResponse(response) : `HTTP 400: mParticle refused the request (${errors})`, status: 400 };
    }
    if (response.status === 429) {
      const limit = response.headers['x-mp-rate-limit-exceeded'];
      const retryAfterMs = parseRetryAfter(response.headers['retry-after'], Date.now());
      // Which limit was hit (org, account, app, feed, workspace, acceleration) goes into the reason.
      const which = limit === undefined || limit === '' ? '' : ` (mParticle rate limit exceeded: ${excerpt(limit, 40)})`;
      return { kind: 'throttled', reason: `${describeResponse(response)}${which}`, status: 429, ...(retryAfterMs === undefined ? {} : { retryAfterMs }) };
    }
    // 202 delivered; 401/403 destination_auth; 413 split; 503 and other 5xx retried: the default table.
    return undefined;
  },
});
