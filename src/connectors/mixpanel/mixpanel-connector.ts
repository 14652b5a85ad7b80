import { createHash } from 'node:crypto';
import { z } from 'zod';
import { describeResponse, excerpt } from '../http-classification.js';
import type { DeliveryOutcome, EncodedRequest, HttpRequestSpec, HttpResponse, ItemOutcome } from '../connector.js';
import { defineHttpConnector } from '../define-http-connector.js';
import { defaultEventName, identityFor, identityMappingSchema, impressionEventProperties } from '../impression-event.js';

/**
 * Mixpanel, through the Import API (`POST {base}/import?strict=1[&project_id=…]`), not the SDK:
 * the `mixpanel` package queues and retries on its own, and /import with strict=1 reports failures
 * per record. Facts and sources (checked 2026-11-24) are in ./README.md:
 *
 * - ≤ 2000 events per request; body ≤ 2 MB uncompressed (the API reference and the 413 body say
 *   2 MB = 2097152 bytes, a newer page says 10 MB: we keep under 2 MB); each event < 1 MB.
 * - Auth: HTTP Basic with an Owner/Admin service account (`username:secret`, plus `project_id`),
 *   or the project token as username with an empty password (then no `project_id`).
 * - 400 with strict=1 is a partial success: the valid events are ingested and `failed_records`
 *   names each failed one by `index` (into the request's array) with `field` and `message`.
 * - 401 bad credentials; 413 too large; 429 rate limit (2 GB of JSON/min per project, no documented
 *   Retry-After); 502/503 back off as for 429. All retries are safe: `$insert_id` dedupes.
 *
 * `$insert_id` must be ≤ 36 bytes of `[A-Za-z0-9-]`. Impression ids are base64url (may hold `_`),
 * so an id that does not fit is replaced by a hash of itself: the same impression always maps to
 * the same `$insert_id`, and the original stays in the `impressionId` property.
 */

export const mixpanelRegions = {
  us: 'https://api.mixpanel.com',
  eu: 'https://api-eu.mixpanel.com',
  in: 'https://api-in.mixpanel.com',
} as const;

/** Mixpanel's documented cap on events per /import request. */
const maxEventsPerRequest = 2000;

export const MixpanelSettingsSchema = z
  .object({
    region: z.enum(['us', 'eu', 'in']).default('us').describe('Data residency: us (api.mixpanel.com), eu (api-eu.mixpanel.com) or in (api-in.mixpanel.com)'),
    baseUrl: z.url({ protocol: /^https?$/ }).optional().describe('Base URL override (a proxy, or a test server); wins over region'),
    projectId: z
      .string()
      .trim()
      .regex(/^\d+$/, 'expected the numeric Mixpanel project id')
      .optional()
      .describe('Mixpanel project id; required with a service account, not sent with a project token'),
    serviceAccountUsername: z.string().trim().min(1).optional().describe('Owner or Admin service account username (recommended authentication)'),
    serviceAccountSecret: z.string().trim().min(1).optional().describe('Service account secret'),
    projectToken: z.string().trim().min(1).optional().describe('Project token, as the alternative to a service account'),
    eventName: z
      .string()
      .min(1)
      .max(255)
      .default(defaultEventName)
      .describe('Mixpanel event name of every impression (Mixpanel truncates strings over 255 characters)'),
    identities: identityMappingSchema(['distinct_id'], 'distinct_id'),
    batchSize: z.number().int().min(1).max(maxEventsPerRequest).default(maxEventsPerRequest).describe('Most events per request (at most 2000)'),
  })
  .superRefine((settings, context) => {
    const account = [settings.serviceAccountUsername, settings.serviceAccountSecret].filter((value) => value !== undefined).length;
    const token = settings.projectToken !== undefined;
    if (account === 0 && !token) {
      context.addIssue({ code: 'custom', path: ['projectToken'], message: 'set either serviceAccountUsername + serviceAccountSecret + projectId, or projectToken' });
    } else if (account > 0 && token) {
      context.addIssue({ code: 'custom', path: ['projectToken'], message: 'set either a service account or projectToken, not both' });
    } else if (account === 1) {
      const missing = settings.serviceAccountUsername === undefined ? 'serviceAccountUsername' : 'serviceAccountSecret';
      context.addIssue({ code: 'custom', path: [missing], message: 'a service account needs both serviceAccountUsername and serviceAccountSecret' });
    }
    if (account > 0 && settings.projectId === undefined) {
      context.addIssue({ code: 'custom', path: ['projectId'], message: 'projectId is required with a service account' });
    }
  });
export type MixpanelSettings = z.infer<typeof MixpanelSettingsSchema>;

interface MixpanelEvent {
  event: string;
  properties: Record<string, string | number>;
}

const failedRecord = z.looseObject({
  index: z.number().int().nonnegative().optional().catch(undefined),
  insert_id: z.string().optional().catch(undefined),
  $insert_id: z.string().optional().catch(undefined),
  field: z.string().optional().catch(undefined),
  message: z.string().optional().catch(undefined),
});

/** A strict=1 validation failure (documented example in README.md). */
export const MixpanelErrorBodySchema = z.looseObject({
  code: z.number().optional().catch(undefined),
  error: z.string().optional().catch(undefined),
  num_records_imported: z.number().optional().catch(undefined),
  failed_records: z.array(z.unknown()).optional().catch(undefined),
});

/** Values Mixpanel refuses as distinct_id, and so as $insert_id ("We also disallow any value … from the list"). */
const disallowedIds: ReadonlySet<string> = new Set([
  '00000000-0000-0000-0000-000000000000',
  'anon',
  'anonymous',
  'nil',
  'none',
  'null',
  'n/a',
  'na',
  'undefined',
  'unknown',
  '<nil>',
  '0',
  '-1',
  'true',
  'false',
  '[]',
  '{}',
]);

/** `$insert_id` for an impression: its id when Mixpanel accepts it as is, else a stable 36-char hash of it. */
export function mixpanelInsertId(impressionId: string): string {
  if (/^[A-Za-z0-9-]{1,36}$/.test(impressionId) && !disallowedIds.has(impressionId.toLowerCase())) return impressionId;
  return createHash('sha256').update(impressionId).digest('hex').slice(0, 36);
}

export function mixpanelEndpoint(settings: MixpanelSettings): string {
  const base = (settings.baseUrl ?? mixpanelRegions[settings.region]).replace(/\/+$/, '');
  const account = settings.serviceAccountUsername !== undefined && settings.projectId !== undefined;
  // With a project token, project_id must be absent: its presence selects service-account auth.
  return account ? `${base}/import?strict=1&project_id=${encodeURIComponent(settings.projectId ?? '')}` : `${base}/import?strict=1`;
}

export function mixpanelAuthorization(settings: MixpanelSettings): string {
  const credentials =
    settings.serviceAccountUsername !== undefined ? `${settings.serviceAccountUsername}:${settings.serviceAccountSecret ?? ''}` : `${settings.projectToken ?? ''}:`;
  return `Basic ${Buffer.from(credentials).toString('base64')}`;
}


function classify400(response: HttpResponse, sent: EncodedRequest<HttpRequestSpec>): DeliveryOutcome | undefined {
  let json: unknown;
  try {
    json = JSON.parse(response.body);
  } catch {
    return undefined;
  }
  const body = MixpanelErrorBodySchema.safeParse(json);
  const records = body.success ? (body.data.failed_records ?? []) : [];
  const byInsertId = new Map(sent.itemIds.map((itemId) => [mixpanelInsertId(itemId), itemId]));
  const byItem = new Map<string, ItemOutcome>();
  for (const raw of records) {
    const record = failedRecord.safeParse(raw);
    if (!record.success) continue;
    const { index, field, message } = record.data;
    const insertId = record.data.insert_id ?? record.data.$insert_id;
    const itemId = (index === undefined ? undefined : sent.itemIds[index]) ?? (insertId === undefined ? undefined : byInsertId.get(insertId));
    if (itemId === undefined) continue;
    const what = [field, message].filter((part) => part !== undefined && part !== '').join(': ');
    byItem.set(itemId, { kind: 'rejected', code: 'invalid_payload', reason: `Mixpanel rejected the event${what === '' ? '' : ` (${excerpt(what)})`}`, status: 400 });
  }
  // No usable record: the default table rejects the whole request as invalid_payload.
  if (byItem.size === 0) return undefined;
  // Items absent from byItem count as delivered: Mixpanel ingested every event that passed validation.
  return { kind: 'partial', byItem, reason: describeResponse(response), status: 400 };
}

export const mixpanelConnector = defineHttpConnector<MixpanelSettings>({
  type: 'mixpanel',
  displayName: 'Mixpanel',
  description: 'Imports each impression as a Mixpanel event through the Import API (strict validation, per-record failures), deduplicated by $insert_id',
  settingsSchema: MixpanelSettingsSchema,
  secretSettings: ['serviceAccountSecret', 'projectToken'],
  exampleSettings: { projectId: '3141592', serviceAccountUsername: 'flagstream.1a2b3c.mp-service-account', serviceAccountSecret: 'zN3kq8VvX2m9T4pLrW7yB6cD' },
  regions: mixpanelRegions,
  limits: (settings) => ({
    // "up to 2000 events … per request".
    maxItemsPerRequest: settings.batchSize,
    // 2 MB uncompressed (413 body: "max limit of 2097152 bytes"); a newer page says 10 MB, we keep to the lower one.
    maxBytesPerRequest: 2_000_000,
    maxBatchWaitMs: 1000,
    // Mixpanel recommends 10-20 concurrent clients for backfills; 8 per process per destination.
    maxConcurrentRequests: 8,
  }),
  encode(items, settings) {
    const events: MixpanelEvent[] = [];
    const itemIds: string[] = [];
    const skipped: { itemId: string; reason: string }[] = [];
    for (const impression of items) {
      if (identityFor(impression, settings.identities) === undefined) {
        skipped.push({ itemId: impression.id, reason: `traffic type ${JSON.stringify(impression.trafficTypeName ?? null)} is not mapped to a Mixpanel distinct_id` });
        continue;
      }
      events.push({
        event: settings.eventName,
        properties: {
          ...impressionEventProperties(impression),
          // Reserved properties last, so a custom property of the same name cannot replace them.
          time: impression.time,
          distinct_id: impression.key,
          $insert_id: mixpanelInsertId(impression.id),
        },
      });
      itemIds.push(impression.id);
    }
    if (events.length === 0) return { requests: [], rejected: [], skipped };
    const body = JSON.stringify(events);
    const request: EncodedRequest<HttpRequestSpec> = {
      itemIds,
      bytes: Buffer.byteLength(body),
      request: {
        method: 'POST',
        url: mixpanelEndpoint(settings),
        headers: { 'content-type': 'application/json', accept: 'application/json', authorization: mixpanelAuthorization(settings) },
        body,
      },
    };
    return { requests: [request], rejected: [], skipped };
  },
  classify(result, sent) {
    if (!result.ok) return undefined;
    if (result.response.status === 400) return classify400(result.response, sent);
    // 200 delivered; 401/403 destination_auth; 413 split; 429 throttled; 5xx retried: the default table.
    return undefined;
  },
});
