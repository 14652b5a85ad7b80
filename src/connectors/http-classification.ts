// The pure toolkit connectors classify with; the delivery core uses the same table as its default.
import type { DeliveryOutcome, HttpResponse, SendResult } from './connector.js';

/** `Retry-After` as seconds or an HTTP date → milliseconds from now; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | undefined, now: number): number | undefined {
  if (value === undefined || value.trim() === '') return undefined;
  const trimmed = value.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Math.round(Number(trimmed) * 1000);
  const date = Date.parse(trimmed);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - now);
}

const retryableStatuses = new Set([408, 425, 429, 500, 502, 503, 504]);

/** A short, single-line excerpt of a response body for reasons and dead letters. */
export function excerpt(body: string, max = 300): string {
  const flat = body.replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max)}…` : flat;
}

/** `HTTP 400: <start of the body>`: the reason text of a failed answer, for outcomes and dead letters. */
export function describeResponse(response: HttpResponse): string {
  const text = excerpt(response.body);
  return text === '' ? `HTTP ${response.status}` : `HTTP ${response.status}: ${text}`;
}

/**
 * The default meaning of an HTTP answer, shared by every HTTP connector:
 * 2xx delivered; 429 throttled; 408, 425 and 5xx (but 501) retried; 413 split; 401/403 auth;
 * 404/410 not found; other 4xx rejected. Transport failures (timeouts, resets) are retried,
 * except a destination the private-address guard refuses, which no retry can fix.
 */
export function classifyHttpResult(result: SendResult<HttpResponse>, now = Date.now()): DeliveryOutcome {
  if (!result.ok) {
    if (result.error.code === 'DESTINATION_NOT_ALLOWED') {
      return { kind: 'rejected', code: 'destination_not_allowed', reason: result.error.message };
    }
    return { kind: 'retry', reason: `${result.error.code}: ${result.error.message}` };
  }
  const response = result.response;
  const status = response.status;
  if (status >= 200 && status < 300) return { kind: 'delivered' };
  const retryAfterMs = parseRetryAfter(response.headers['retry-after'], now);
  const reason = describeResponse(response);
  if (status === 429) return { kind: 'throttled', reason, status, ...(retryAfterMs === undefined ? {} : { retryAfterMs }) };
  if (retryableStatuses.has(status) || (status >= 500 && status !== 501)) {
    return { kind: 'retry', reason, status, ...(retryAfterMs === undefined ? {} : { retryAfterMs }) };
  }
  if (status === 413) return { kind: 'too-large', reason };
  if (status === 401 || status === 403) return { kind: 'rejected', code: 'destination_auth', reason, status };
  if (status === 404 || status === 410) return { kind: 'rejected', code: 'destination_not_found', reason, status };
  return { kind: 'rejected', code: 'invalid_payload', reason, status };
}
