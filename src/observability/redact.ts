/** What every secret looks like on the way out: API output, `export`, logs and dead letters. */
export const REDACTED = '[redacted]';

/** Replaces a secret value with the marker, keeping its shape (each array item, each record value). */
export function redactValue(value: unknown): unknown {
  if (value === undefined || value === null) return value;
  if (Array.isArray(value)) return value.map(() => REDACTED);
  if (typeof value === 'object') return Object.fromEntries(Object.keys(value).map((k) => [k, REDACTED]));
  return REDACTED;
}

/**
 * Where an update carries the marker back (an edited `export`, a PUT of what a GET returned),
 * keep the stored secret: redaction must survive a round trip without erasing credentials.
 */
export function restoreRedacted(incoming: unknown, stored: unknown): unknown {
  if (incoming === REDACTED) return stored;
  if (Array.isArray(incoming)) {
    const storedItems = Array.isArray(stored) ? stored : [];
    return incoming.map((item, index) => restoreRedacted(item, storedItems[index]));
  }
  if (incoming !== null && typeof incoming === 'object') {
    const storedRecord = stored !== null && typeof stored === 'object' && !Array.isArray(stored) ? (stored as Record<string, unknown>) : {};
    return Object.fromEntries(Object.entries(incoming).map(([k, v]) => [k, restoreRedacted(v, storedRecord[k])]));
  }
  return incoming;
}

/** pino redact paths: request headers that carry keys never reach a log line. */
export const logRedactPaths = [
  'req.headers.authorization',
  'req.headers["x-api-key"]',
  'headers.authorization',
  'settings.secret',
  'settings.apiKey',
  'settings.secretKey',
  '*.authorization',
];
