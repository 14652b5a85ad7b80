import { z } from 'zod';
import { measureJsonText } from './json-text.js';

/**
 * What ingest accepts for each field of the canonical impression: only values every connector
 * can encode and every destination takes (Amplitude, Mixpanel, Segment, S3 as JSON lines, CSV
 * or Parquet, webhooks), so that an accepted impression never makes an encoder throw or a whole
 * batch wait. Every ingest format builds its schema from these. The canonical ImpressionSchema
 * itself stays as tolerant as it was, so what older versions stored (dead letters) still parses.
 */
export const ingestLimits = {
  /**
   * UTF-16 code units of a text field (key, flag, treatment, label, machine, SDK, …): Amplitude
   * refuses ids and property values over 1024 characters; Split SDKs cap keys at 250.
   */
  maxTextLength: 1024,
  /**
   * 2000-01-01T00:00:00Z. Mixpanel refuses events before 1971; a time before 2000 is in practice
   * seconds sent as milliseconds or an unset clock.
   */
  minTime: Date.UTC(2000, 0, 1),
  /** How far after its reception an impression may be dated: Mixpanel refuses more than 1 hour ahead. */
  maxFutureMs: 3_600_000,
  /** Characters of the `properties` JSON text: twice what Split SDKs send at most (32 KB counted at 2 bytes a character). */
  maxPropertiesLength: 32_768,
  /** Nesting inside `properties`: Split SDKs send a flat object; connectors re-serialize nested values. */
  maxPropertiesDepth: 16,
  /** One `rc` of /testImpressions/count: per-flag counters are Redis int64 and must not overflow. */
  maxCount: 1_000_000_000,
} as const;

const { maxTextLength, minTime, maxFutureMs, maxPropertiesLength, maxPropertiesDepth } = ingestLimits;

/**
 * The messages of our own limits, shared by the zod schemas below (which document the formats
 * and validate the count and keys bodies) and the hand-written checks of field-checks.ts (which
 * validate impressions, on the hot path).
 */
export const ingestMessages = {
  tooLong: `must be at most ${maxTextLength} characters`,
  timeNotInteger: 'must be an integer number of milliseconds since the epoch',
  timeTooEarly: `must be on or after 2000-01-01T00:00:00Z (${minTime} ms since the epoch; seconds are not accepted)`,
  changeNumberNotInteger: 'must be an integer between -(2^53 - 1) and 2^53 - 1',
  propertiesTooLong: (length: number) => `must be at most ${maxPropertiesLength} characters of JSON text (got ${length})`,
  propertiesTooDeep: `nested deeper than ${maxPropertiesDepth} levels`,
  propertiesLoneSurrogate: 'contains a lone UTF-16 surrogate (not valid Unicode)',
} as const;

// Lengths in UTF-16 code units, as connectors measure them (zod's max counts code points).
const fitsText = (value: string) => value.length <= maxTextLength;

/** Optional text: any string up to the length limit. */
export const IngestText = z.string().refine(fitsText, ingestMessages.tooLong);
/** Required text: 1 to maxTextLength characters. */
export const IngestRequiredText = z.string().min(1).refine(fitsText, ingestMessages.tooLong);

/** Evaluation time, epoch ms; the upper bound depends on the reception time (see laterThanReception). */
export const IngestTime = z.number().int(ingestMessages.timeNotInteger).min(minTime, ingestMessages.timeTooEarly);

/** Flag change number: any integer that is exact as a double (Parquet INT64, JSON everywhere). */
export const IngestChangeNumber = z.number().int(ingestMessages.changeNumberNotInteger);

/** The problem of `properties` JSON text, if any: too long, nested too deep, or not valid Unicode once unescaped. */
export function propertiesTextProblem(text: string): string | undefined {
  if (text.length > maxPropertiesLength) return ingestMessages.propertiesTooLong(text.length);
  const shape = measureJsonText(text);
  if (shape.depth > maxPropertiesDepth) return ingestMessages.propertiesTooDeep;
  return shape.loneSurrogate ? ingestMessages.propertiesLoneSurrogate : undefined;
}

/** `properties` as JSON text: bounded in length and nesting, and valid Unicode once unescaped. */
export const IngestPropertiesText = z.string().superRefine((text, context) => {
  const problem = propertiesTextProblem(text);
  if (problem !== undefined) context.addIssue({ code: 'custom', message: problem });
});

/**
 * `properties` as the webhook and the native API take it: a JSON object, or its JSON text.
 * An object is serialized here (the body parser has bounded its depth, so this cannot overflow)
 * and then checked as text, so both forms have the same limits.
 */
export const IngestPropertiesInput = z
  .union([z.string(), z.record(z.string(), z.unknown())])
  .transform((value) => (typeof value === 'string' ? value : JSON.stringify(value)))
  .pipe(IngestPropertiesText);

/** Per-flag count of /testImpressions/count. */
export const IngestCount = z.number().int().nonnegative().max(ingestLimits.maxCount);

/**
 * The one bound zod cannot know: no later than `maxFutureMs` after reception (a value past it,
 * e.g. one outside JavaScript's Date range, could never be delivered). Returns the problem, if any.
 */
export function laterThanReception(time: number, receivedAt: number): string | undefined {
  const latest = receivedAt + maxFutureMs;
  if (time <= latest) return undefined;
  return `must be at most 1 hour after reception (${latest} ms since the epoch, ${new Date(latest).toISOString()}); got ${time}`;
}
