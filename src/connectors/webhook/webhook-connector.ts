import { createHash, createHmac } from 'node:crypto';
import { z } from 'zod';
import type { Impression } from '../../domain/impression.js';
import type { EncodedRequest, EncodeResult, HttpRequestSpec } from '../connector.js';
import { defineHttpConnector } from '../define-http-connector.js';

/**
 * Outgoing webhook: POSTs a JSON array of canonical impressions (the shape of Split's outgoing
 * impressions webhook, plus a few fields), signed with the Standard Webhooks scheme
 * (https://www.standardwebhooks.com): `webhook-id`, `webhook-timestamp` (unix seconds) and
 * `webhook-signature` = `v1,<base64 HMAC-SHA256 of "id.timestamp.body">` keyed with the
 * base64-decoded part of a `whsec_<base64>` secret. Any 2xx is success.
 *
 * `webhook-id` is derived from the impression ids of the request, so a retried or replayed
 * request carries the same id and a receiver can drop the duplicate.
 */
export const WebhookSettingsSchema = z.object({
  url: z.url({ protocol: /^https?$/ }).describe('Receiver URL (http or https)'),
  secret: z
    .string()
    .regex(/^whsec_[A-Za-z0-9+/=]{16,}$/, 'expected whsec_ followed by base64 (at least 16 characters)')
    .optional()
    .describe('Standard Webhooks signing secret, whsec_<base64>; without it requests are not signed'),
  headers: z.record(z.string(), z.string()).default({}).describe('Extra request headers, e.g. an Authorization header'),
  timeout: z.number().int().min(100).max(120_000).default(10_000).describe('Request timeout in milliseconds'),
  batchSize: z.number().int().min(1).max(10_000).default(500).describe('Most impressions per request'),
  maxBodyBytes: z.number().int().min(1024).max(50_000_000).default(5_000_000).describe('Most body bytes per request'),
  maxBatchWait: z.number().int().min(0).max(60_000).default(1_000).describe('Milliseconds to wait for a batch to fill'),
});
export type WebhookSettings = z.infer<typeof WebhookSettingsSchema>;

export function webhookMessageId(itemIds: readonly string[]): string {
  return `msg_${createHash('sha256').update(itemIds.join(',')).digest('base64url').slice(0, 27)}`;
}

/**
 * Standard Webhooks v1 signature. Computed with node:crypto rather than the standardwebhooks
 * package's signer, which hashes in JavaScript and cost 5 % of the benchmark's CPU on large
 * batches; the tests verify every signature with the standardwebhooks package itself.
 */
export function signWebhook(secret: string, id: string, timestamp: string, body: string | Uint8Array): string {
  const key = Buffer.from(secret.slice('whsec_'.length), 'base64');
  return `v1,${createHmac('sha256', key).update(`${id}.${timestamp}.`).update(body).digest('base64')}`;
}

export const webhookConnector = defineHttpConnector<WebhookSettings>({
  type: 'webhook',
  displayName: 'Outgoing webhook',
  description: 'POSTs batches of impressions as a JSON array, signed with Standard Webhooks',
  settingsSchema: WebhookSettingsSchema,
  secretSettings: ['secret', 'headers'],
  exampleSettings: { url: 'https://hooks.example.com/impressions', secret: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw' },
  limits: (settings) => ({
    maxItemsPerRequest: settings.batchSize,
    maxBytesPerRequest: settings.maxBodyBytes,
    maxBatchWaitMs: settings.maxBatchWait,
    maxConcurrentRequests: 8,
    requestTimeoutMs: settings.timeout,
  }),
  encode(items, settings, context) {
    // Encoded to bytes once: the same buffer is signed and sent (a string would be encoded for each).
    return webhookRequests(items, Buffer.from(JSON.stringify(items)), settings, context.now);
  },
  // The delivery core's body written from the stored rows: the same bytes as encode's, signed and sent as they are.
  encodeJsonArray: (items, body, settings, context) => webhookRequests(items, body, settings, context.now),
});

/** The one request of a batch whose body (the impressions' JSON array) is written already. */
function webhookRequests(items: readonly Impression[], body: Buffer, settings: WebhookSettings, now: number): EncodeResult<HttpRequestSpec> {
  const itemIds = items.map((item) => item.id);
  const id = webhookMessageId(itemIds);
  const headers: Record<string, string> = { ...settings.headers, 'content-type': 'application/json' };
  if (settings.secret !== undefined) {
    const timestamp = String(Math.floor(now / 1000));
    headers['webhook-id'] = id;
    headers['webhook-timestamp'] = timestamp;
    headers['webhook-signature'] = signWebhook(settings.secret, id, timestamp, body);
  }
  const request: EncodedRequest<HttpRequestSpec> = {
    itemIds,
    bytes: body.byteLength,
    request: { method: 'POST', url: settings.url, headers, body },
  };
  return { requests: [request], rejected: [], skipped: [] };
}
