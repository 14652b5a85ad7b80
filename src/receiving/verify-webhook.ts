import { timingSafeEqual } from 'node:crypto';
import { Webhook, WebhookVerificationError } from 'standardwebhooks';

export { WebhookVerificationError };

export type WebhookHeaders = Headers | Readonly<Record<string, string | readonly string[] | undefined>>;

export interface VerifyOptions {
  /** How far `webhook-timestamp` may be from now, either way; default 5 minutes (the Standard Webhooks default). */
  readonly toleranceMs?: number;
  /** The clock the timestamp is checked against (tests). */
  readonly now?: () => number;
}

const defaultToleranceMs = 5 * 60_000;

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

/** The destination's secret, checked before use: a wrong one is a configuration mistake, not a forged delivery. */
function signer(secret: string): Webhook {
  if (typeof secret !== 'string' || !/^whsec_[A-Za-z0-9+/]+={0,2}$/.test(secret)) {
    throw new TypeError('webhook secret: expected the destination\'s secret as configured, "whsec_" followed by base64 (e.g. whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw)');
  }
  return new Webhook(secret);
}

/**
 * Standard Webhooks verification with a timestamp tolerance of our choosing: the library signs
 * (its HMAC), we check the timestamp (its own check is fixed at 5 minutes) and compare.
 */
function verifyWith(webhook: Webhook, body: string | Buffer, headers: WebhookHeaders, options: VerifyOptions): unknown {
  const plain = plainHeaders(headers);
  const id = plain['webhook-id'];
  const timestamp = plain['webhook-timestamp'];
  const signatures = plain['webhook-signature'];
  if (!id || !timestamp || !signatures) throw new WebhookVerificationError('Missing required headers');
  if (!/^\d+$/.test(timestamp)) throw new WebhookVerificationError('Invalid Signature Headers');
  const tolerance = options.toleranceMs ?? defaultToleranceMs;
  const sentAt = Number(timestamp) * 1000;
  const now = (options.now ?? Date.now)();
  if (now - sentAt > tolerance) throw new WebhookVerificationError('Message timestamp too old');
  if (sentAt - now > tolerance) throw new WebhookVerificationError('Message timestamp too new');
  const expected = Buffer.from(webhook.sign(id, new Date(sentAt), body).split(',')[1] ?? '');
  const matches = signatures.split(' ').some((versioned) => {
    const [version, signature = ''] = versioned.split(',');
    const given = Buffer.from(signature);
    return version === 'v1' && given.length === expected.length && timingSafeEqual(given, expected);
  });
  if (!matches) throw new WebhookVerificationError('No matching signature found');
  const text = body.toString();
  return text === '' ? undefined : (JSON.parse(text) as unknown);
}

/**
 * Verifies a flagstream webhook delivery (Standard Webhooks: `webhook-id`, `webhook-timestamp`,
 * `webhook-signature`) against the destination's `whsec_…` secret and returns the parsed body:
 * an array of impressions. Throws WebhookVerificationError for a bad signature, missing headers,
 * or a timestamp further than `toleranceMs` (default 5 minutes) from now; a TypeError for a
 * secret not in `whsec_<base64>` form. Pass the raw body exactly as received.
 */
export function verifyWebhook<T = Record<string, unknown>[]>(body: string | Buffer, headers: WebhookHeaders, secret: string, options: VerifyOptions = {}): T {
  return verifyWith(signer(secret), body, headers, options) as T;
}

/**
 * Verification plus replay protection for a long-running receiver: a `webhook-id` seen within
 * the timestamp tolerance is reported as a duplicate (a retry or a replayed capture). Older ids
 * are forgotten, as their deliveries now fail the timestamp check.
 */
export function createWebhookVerifier(secret: string, options: VerifyOptions = {}) {
  const webhook = signer(secret);
  const tolerance = options.toleranceMs ?? defaultToleranceMs;
  const now = options.now ?? Date.now;
  const seen = new Map<string, number>();
  return {
    verify(body: string | Buffer, headers: WebhookHeaders): { duplicate: boolean; id: string; impressions: Record<string, unknown>[] } {
      const impressions = verifyWith(webhook, body, headers, { toleranceMs: tolerance, now }) as Record<string, unknown>[];
      const id = plainHeaders(headers)['webhook-id'] ?? '';
      const at = now();
      for (const [key, when] of seen) if (at - when > 2 * tolerance) seen.delete(key);
      const duplicate = seen.has(id);
      if (!duplicate) seen.set(id, at);
      return { duplicate, id, impressions };
    },
  };
}
