import { Webhook, WebhookVerificationError } from 'standardwebhooks';

export { WebhookVerificationError };

export type WebhookHeaders = Headers | Readonly<Record<string, string | readonly string[] | undefined>>;

function plainHeaders(headers: WebhookHeaders): Record<string, string> {
  if (typeof (headers as Headers).get === 'function' && typeof (headers as Headers).forEach === 'function') {
    const out: Record<string, string> = {};
    (headers as Headers).forEach((value, name) => (out[name.toLowerCase()] = value));
    return out;
  }
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers as Record<string, string | readonly string[] | undefined>)) {
    if (value !== undefined) out[name.toLowerCase()] = Array.isArray(value) ? value.join(', ') : (value as string);
  }
  return out;
}

/**
 * Verifies a flagstream webhook delivery (Standard Webhooks: `webhook-id`, `webhook-timestamp`,
 * `webhook-signature`) against the destination's `whsec_…` secret and returns the parsed body:
 * an array of impressions. Throws WebhookVerificationError for a bad signature, missing headers,
 * or a timestamp more than 5 minutes away from now. Pass the raw body exactly as received.
 */
export function verifyWebhook<T = Record<string, unknown>[]>(body: string | Buffer, headers: WebhookHeaders, secret: string): T {
  return new Webhook(secret).verify(body, plainHeaders(headers)) as T;
}

/**
 * Verification plus replay protection for a long-running receiver: a `webhook-id` seen within
 * the timestamp tolerance is reported as a duplicate (a retry or a replayed capture).
 */
export function createWebhookVerifier(secret: string, options: { toleranceMs?: number; now?: () => number } = {}) {
  const tolerance = options.toleranceMs ?? 5 * 60_000;
  const now = options.now ?? Date.now;
  const seen = new Map<string, number>();
  return {
    verify(body: string | Buffer, headers: WebhookHeaders): { duplicate: boolean; id: string; impressions: Record<string, unknown>[] } {
      const impressions = verifyWebhook(body, headers, secret);
      const id = plainHeaders(headers)['webhook-id'] ?? '';
      const at = now();
      for (const [key, when] of seen) if (at - when > 2 * tolerance) seen.delete(key);
      const duplicate = seen.has(id);
      if (!duplicate) seen.set(id, at);
      return { duplicate, id, impressions };
    },
  };
}
