import { z } from 'zod';
import { describeResponse, excerpt } from '../http-classification.js';
import type { EncodedRequest, EncodeResult, HttpRequestSpec, RejectCode } from '../connector.js';
import { defineHttpConnector } from '../define-http-connector.js';
import { identityFor, identityMappingSchema } from '../impression-event.js';
import type { Impression } from '../../domain/impression.js';

/**
 * Google Analytics 4, through the Measurement Protocol: `POST {base}/mp/collect?measurement_id=…
 * &api_secret=…` (web stream) or `?firebase_app_id=…&api_secret=…` (app stream), one event per
 * impression. Facts and sources (checked 2026-11-25) are in ./README.md:
 *
 * - A request belongs to one device (`client_id`, or `app_instance_id` on app streams) and an
 *   optional `user_id`, and carries at most 25 events; the body must be smaller than 130 kB.
 * - Event and parameter names: ≤ 40 characters, letters, digits and `_`, starting with a letter;
 *   parameter values ≤ 100 characters; events may be backdated up to 72 hours.
 * - GA answers 2xx to everything it receives, even events it then drops: nothing in the answer
 *   tells a bad event from a good one. So every limit is enforced here, before sending: values are
 *   truncated to 100 characters, impressions GA would drop are rejected (`invalid_payload`).
 * - `/debug/mp/collect` validates without storing and answers `validationMessages`; `destinations
 *   test` sends there (`toTestRequest`), with `validation_behavior: ENFORCE_RECOMMENDATIONS`.
 * - GA has no dedup key: a request retried after GA accepted it counts twice. The impression id
 *   travels as the `split_impression_id` parameter so an export (BigQuery) can drop repeats.
 */

export const googleAnalyticsRegions = {
  global: 'https://www.google-analytics.com',
  eu: 'https://region1.google-analytics.com',
} as const;

/** "Requests can have a maximum of 25 events." */
const maxEventsPerRequest = 25;
/** "The post body must be smaller than 130kB" (read as 130 000 bytes), kept 1 kB under. */
export const googleAnalyticsMaxBodyBytes = 129_000;
/** "Parameter values … must be 100 characters or fewer." */
export const maxParamValueLength = 100;
/** "Events can be backdated up to 72 hours" (the reference: "up to 3 calendar days"). */
export const maxEventAgeMs = 72 * 3_600_000;

/** Reserved by GA: an event of one of these names is dropped (web and app lists of the reference). */
const reservedEventNames: ReadonlySet<string> = new Set([
  // Web streams (GA event naming rules).
  'app_remove', 'app_store_refund', 'app_store_subscription_cancel', 'app_store_subscription_renew', 'click', 'error',
  'file_download', 'first_open', 'first_visit', 'form_start', 'form_submit', 'in_app_purchase', 'page_view', 'scroll',
  'session_start', 'user_engagement', 'view_complete', 'video_progress', 'video_start', 'view_search_results',
  // App streams (Measurement Protocol reference, "Reserved event names").
  'ad_activeview', 'ad_click', 'ad_exposure', 'ad_impression', 'ad_query', 'ad_reward', 'adunit_exposure', 'app_background',
  'app_clear_data', 'app_exception', 'app_store_subscription_convert', 'app_update', 'app_upgrade', 'dynamic_link_app_open',
  'dynamic_link_app_update', 'dynamic_link_first_open', 'notification_dismiss', 'notification_foreground', 'notification_open',
  'notification_receive', 'os_update', 'session_start_with_rollout',
]);
const reservedPrefixes = ['_', 'firebase_', 'ga_', 'google_', 'gtag.'] as const;

/** GA's naming rule for events and parameters. */
const namePattern = /^[A-Za-z][A-Za-z0-9_]{0,39}$/;

export const GoogleAnalyticsSettingsSchema = z
  .strictObject({
    measurementId: z.string().trim().min(1).optional().describe('Measurement ID of a web data stream (G-…); or firebaseAppId for an app stream'),
    firebaseAppId: z.string().trim().min(1).optional().describe('Firebase App ID of an app data stream, instead of measurementId'),
    apiSecret: z.string().trim().min(1).describe('Measurement Protocol API secret of the data stream (sent in the query string, as GA requires)'),
    region: z
      .enum(['global', 'eu'])
      .default('global')
      .describe('Collection endpoint: global (www.google-analytics.com) or eu (region1.google-analytics.com, data collected in the EU)'),
    baseUrl: z.url({ protocol: /^https?$/ }).optional().describe('Base URL override (a proxy, or a test server); wins over region; /mp/collect is appended'),
    eventName: z
      .string()
      .regex(namePattern, 'GA event names are 1-40 letters, digits or _, starting with a letter')
      .refine((name) => !reservedEventNames.has(name), 'this event name is reserved by Google Analytics')
      .refine((name) => !reservedPrefixes.some((prefix) => name.startsWith(prefix)), 'GA reserves the prefixes _, firebase_, ga_, google_ and gtag.')
      .default('split_impression')
      .describe('GA event name of every impression (1-40 letters, digits or _, starting with a letter; not reserved)'),
    identities: identityMappingSchema(['client_id', 'user_id'], 'client_id'),
  })
  .superRefine((settings, context) => {
    if ((settings.measurementId === undefined) === (settings.firebaseAppId === undefined)) {
      context.addIssue({ code: 'custom', path: ['measurementId'], message: 'set either measurementId (web stream) or firebaseAppId (app stream), not both' });
    }
  });
export type GoogleAnalyticsSettings = z.infer<typeof GoogleAnalyticsSettingsSchema>;

type GoogleAnalyticsIdentity = GoogleAnalyticsSettings['identities'][string];

export interface GoogleAnalyticsEvent {
  name: string;
  timestamp_micros: number;
  params: Record<string, string | number>;
}

/** One request body: one device (and maybe one user), up to 25 events. */
export interface GoogleAnalyticsBody {
  client_id?: string;
  app_instance_id?: string;
  user_id?: string;
  events: GoogleAnalyticsEvent[];
}

function baseUrl(settings: GoogleAnalyticsSettings): string {
  return (settings.baseUrl ?? googleAnalyticsRegions[settings.region]).replace(/\/+$/, '');
}

function streamQuery(settings: GoogleAnalyticsSettings): string {
  const stream = settings.measurementId === undefined ? `firebase_app_id=${encodeURIComponent(settings.firebaseAppId ?? '')}` : `measurement_id=${encodeURIComponent(settings.measurementId)}`;
  return `${stream}&api_secret=${encodeURIComponent(settings.apiSecret)}`;
}

/** `/mp/collect` (stores) or `/debug/mp/collect` (validates only). */
export function googleAnalyticsEndpoint(settings: GoogleAnalyticsSettings, validateOnly = false): string {
  return `${baseUrl(settings)}${validateOnly ? '/debug' : ''}/mp/collect?${streamQuery(settings)}`;
}

/** A UTF-16 surrogate without its pair: such a string has no UTF-8 form. */
const loneSurrogate = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/** At most `max` characters (code points, so no surrogate pair is cut), lone surrogates replaced by U+FFFD. */
export function truncateValue(value: string, max = maxParamValueLength): string {
  const wellFormed = value.replace(loneSurrogate, '\uFFFD');
  if (wellFormed.length <= max) return wellFormed;
  const codePoints = Array.from(wellFormed);
  return codePoints.length <= max ? wellFormed : codePoints.slice(0, max).join('');
}

/** The documented parameters of one impression, every value within GA's limits. */
export function impressionParams(impression: Impression): Record<string, string | number> {
  return {
    split_name: truncateValue(impression.split),
    split_treatment: truncateValue(impression.treatment),
    ...(impression.label === undefined ? {} : { split_label: truncateValue(impression.label) }),
    ...(impression.splitVersionNumber === undefined ? {} : { split_change_number: impression.splitVersionNumber }),
    split_impression_id: truncateValue(impression.id),
  };
}

/** Why GA would drop this impression, or undefined when it can be sent. */
function rejection(impression: Impression, now: number): string | undefined {
  if (impression.key.search(loneSurrogate) !== -1) return 'key is not valid UTF-8 (a lone surrogate): GA accepts only UTF-8 identifiers';
  if (impression.time < now - maxEventAgeMs) {
    return `impression time ${new Date(impression.time).toISOString()} is older than the 72 hours GA accepts (events older than that are dropped with a 2xx)`;
  }
  return undefined;
}

interface DeviceGroup {
  readonly identity: GoogleAnalyticsIdentity;
  readonly key: string;
  readonly events: GoogleAnalyticsEvent[];
  readonly itemIds: string[];
}

const ValidationResponseSchema = z.looseObject({
  validationMessages: z.array(
    z.looseObject({
      fieldPath: z.string().optional().catch(undefined),
      description: z.string().optional().catch(undefined),
      validationCode: z.string().optional().catch(undefined),
    }),
  ),
});

/** Each validation message as `fieldPath: description (CODE)`; undefined when the body is not a validation answer. */
export function validationMessages(body: string): string[] | undefined {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    return undefined;
  }
  const parsed = ValidationResponseSchema.safeParse(json);
  if (!parsed.success) return undefined;
  return parsed.data.validationMessages.map((m) => `${m.fieldPath ?? '(request)'}: ${m.description ?? 'invalid'}${m.validationCode === undefined ? '' : ` (${m.validationCode})`}`);
}

export const googleAnalyticsConnector = defineHttpConnector<GoogleAnalyticsSettings>({
  type: 'google-analytics',
  displayName: 'Google Analytics 4',
  description: 'Sends each impression as a GA4 event through the Measurement Protocol (web or app stream); validated before sending, since GA answers 2xx to everything',
  settingsSchema: GoogleAnalyticsSettingsSchema,
  secretSettings: ['apiSecret'],
  exampleSettings: { measurementId: 'G-3K7Q2Z9WXY', apiSecret: 'b7Vx2pQeTqCkA9mR4sLh1w', region: 'eu', identities: { user: 'user_id', '*': 'client_id' } },
  regions: googleAnalyticsRegions,
  limits: () => ({
    // "Requests can have a maximum of 25 events": each request is also one device.
    maxItemsPerRequest: maxEventsPerRequest,
    // "The post body must be smaller than 130kB".
    maxBytesPerRequest: googleAnalyticsMaxBodyBytes,
    maxBatchWaitMs: 1000,
    // GA documents no rate limit for the Measurement Protocol; requests are small (one device each).
    maxConcurrentRequests: 8,
  }),
  encode(items, settings, context) {
    const rejected: { itemId: string; code: RejectCode; reason: string }[] = [];
    const skipped: { itemId: string; reason: string }[] = [];
    const groups = new Map<string, DeviceGroup>();
    for (const impression of items) {
      const identity = identityFor(impression, settings.identities);
      if (identity === undefined) {
        skipped.push({ itemId: impression.id, reason: `traffic type ${JSON.stringify(impression.trafficTypeName ?? null)} is not mapped to a GA identity` });
        continue;
      }
      const reason = rejection(impression, context.now);
      if (reason !== undefined) {
        rejected.push({ itemId: impression.id, code: 'invalid_payload', reason });
        continue;
      }
      const groupKey = `${identity}\u0000${impression.key}`;
      const group = groups.get(groupKey) ?? { identity, key: impression.key, events: [], itemIds: [] };
      groups.set(groupKey, group);
      group.events.push({
        name: settings.eventName,
        // GA takes past times only: a time ahead of ours (clock skew) is sent as now.
        timestamp_micros: Math.min(impression.time, context.now) * 1000,
        params: impressionParams(impression),
      });
      group.itemIds.push(impression.id);
    }

    const url = googleAnalyticsEndpoint(settings);
    const device = settings.firebaseAppId === undefined ? 'client_id' : 'app_instance_id';
    const requests: EncodedRequest<HttpRequestSpec>[] = [];
    for (const group of groups.values()) {
      for (let start = 0; start < group.events.length; start += maxEventsPerRequest) {
        // GA needs the device id on every request; with user_id the key fills both.
        const body: GoogleAnalyticsBody = {
          [device]: group.key,
          ...(group.identity === 'user_id' ? { user_id: group.key } : {}),
          events: group.events.slice(start, start + maxEventsPerRequest),
        };
        const json = JSON.stringify(body);
        requests.push({
          itemIds: group.itemIds.slice(start, start + maxEventsPerRequest),
          bytes: Buffer.byteLength(json),
          request: { method: 'POST', url, headers: { 'content-type': 'application/json' }, body: json },
        });
      }
    }
    const result: EncodeResult<HttpRequestSpec> = { requests, rejected, skipped };
    return result;
  },
  toTestRequest(sent, settings) {
    // Strict validation, as Google recommends while checking a setup: limits are reported too.
    const body = JSON.stringify({ ...(JSON.parse(String(sent.request.body)) as GoogleAnalyticsBody), validation_behavior: 'ENFORCE_RECOMMENDATIONS' });
    return { ...sent, bytes: Buffer.byteLength(body), request: { ...sent.request, url: googleAnalyticsEndpoint(settings, true), body } };
  },
  classify(result, sent) {
    if (!result.ok || !sent.request.url.includes('/debug/mp/collect?')) return undefined;
    const response = result.response;
    if (response.status < 200 || response.status >= 300) return undefined;
    // The validation server's answer: `{"validationMessages":[{fieldPath, description, validationCode}]}`.
    const messages = validationMessages(response.body);
    if (messages === undefined) return { kind: 'retry', reason: `GA validation server answered without validationMessages (${describeResponse(response)})`, status: response.status };
    if (messages.length === 0) return { kind: 'delivered' };
    return { kind: 'rejected', code: 'invalid_payload', reason: `GA validation: ${excerpt(messages.join('; '), 600)}`, status: response.status };
  },
});
