import type { FieldProblem } from '../domain/errors.js';
import { ingestLimits, ingestMessages, propertiesTextProblem } from './impression-fields.js';

/**
 * The checks of impression-fields.ts's zod schemas, written out for the ingest hot path: each
 * takes a value of a parsed JSON body and returns the problem zod would report for it (the same
 * message, from zod's English locale or from ingestMessages), or undefined when it is valid.
 * Nothing is allocated for a valid text or number. test/property/ingest-validators.property.test.ts
 * checks them against the schemas on generated bodies.
 */

const { maxTextLength, minTime } = ingestLimits;

/** A JSON object (what zod's z.object and z.record take): not null, not an array. */
export function isJsonObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** zod's name for the type of `value` in "received …" (util.parsedType, then the locale's names). */
function receivedName(value: unknown): string {
  if (typeof value === 'number') return Number.isNaN(value) ? 'NaN' : Number.isFinite(value) ? 'number' : String(value);
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  // Never true of parsed JSON (its objects are plain); as zod words it for any other object.
  if (typeof value === 'object' && Object.getPrototypeOf(value) !== Object.prototype && 'constructor' in value && value.constructor) {
    return String((value.constructor as { name?: unknown }).name);
  }
  return typeof value;
}

/** zod's invalid_type message: `Invalid input: expected string, received number`. */
export function wrongType(expected: 'string' | 'number' | 'object' | 'array', value: unknown): string {
  return `Invalid input: expected ${expected}, received ${receivedName(value)}`;
}

/**
 * What a check found: nothing (the value is valid), one problem, or now and then several for the
 * same field, in zod's order.
 */
export type Found = string | readonly string[] | undefined;

/** Adds what a check found on `field` to `problems`. */
export function addFound(problems: FieldProblem[], field: string, found: Found): void {
  if (typeof found === 'string') problems.push({ field, message: found });
  else if (found !== undefined) for (const message of found) problems.push({ field, message });
}

/** zod's invalid_union message, for `properties` that is neither a string nor an object. */
export const invalidInput = 'Invalid input';

/** Code points, a lone surrogate counting as one: what zod's min() and max() measure a string in. */
function codePointLength(text: string): number {
  let count = text.length;
  for (let i = 0; i < text.length - 1; i += 1) {
    if ((text.charCodeAt(i) & 0xfc00) === 0xd800 && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      count -= 1;
      i += 1;
    }
  }
  return count;
}

function lengthOrigin(value: unknown): string {
  return Array.isArray(value) ? 'array' : typeof value === 'string' ? 'string' : 'unknown';
}

const unitOf: Readonly<Record<string, string>> = { string: 'characters', array: 'items' };

/** zod's min(n) on anything with a `length` (its too_small message), or undefined when it passes. */
export function tooShort(value: unknown, minimum: number): string | undefined {
  const units = (value as { length: number }).length;
  // Compared as zod compares it: `length` of a JSON object may be anything, "5" >= 1 is true.
  const length = typeof value === 'string' && units >= minimum && units < minimum * 2 ? codePointLength(value) : units;
  if (length >= minimum) return undefined;
  const origin = lengthOrigin(value);
  const unit = unitOf[origin];
  return unit === undefined ? `Too small: expected ${origin} to be >=${minimum}` : `Too small: expected ${origin} to have >=${minimum} ${unit}`;
}

/** zod's max(n) on anything with a `length` (its too_big message), or undefined when it passes. */
export function tooBig(value: unknown, maximum: number): string | undefined {
  const units = (value as { length: number }).length;
  const length = typeof value === 'string' && units > maximum ? codePointLength(value) : units;
  if (length <= maximum) return undefined;
  const origin = lengthOrigin(value);
  const unit = unitOf[origin];
  return unit === undefined ? `Too big: expected ${origin} to be <=${maximum}` : `Too big: expected ${origin} to have <=${maximum} ${unit}`;
}

/**
 * The wrong type, then what zod's min() and max() add: unlike other checks they run after a
 * failed type check, on any value that has a `length` (`[]` as a key is also "too small").
 */
export function wrongTypeAndLength(expected: 'string' | 'array', value: unknown, minimum: number, maximum?: number): Found {
  const type = wrongType(expected, value);
  if (value === null || value === undefined || (value as { length?: unknown }).length === undefined) return type;
  const found = [type];
  const short = tooShort(value, minimum);
  if (short !== undefined) found.push(short);
  const big = maximum === undefined ? undefined : tooBig(value, maximum);
  if (big !== undefined) found.push(big);
  return found.length === 1 ? type : found;
}

/** IngestText: a string of at most maxTextLength UTF-16 units. */
export function textProblem(value: unknown): string | undefined {
  if (typeof value !== 'string') return wrongType('string', value);
  return value.length > maxTextLength ? ingestMessages.tooLong : undefined;
}

/** IngestRequiredText: a string of 1 to maxTextLength UTF-16 units. */
export function requiredTextProblem(value: unknown): Found {
  if (typeof value !== 'string') return wrongTypeAndLength('string', value, 1);
  if (value.length === 0) return tooShort(value, 1);
  return value.length > maxTextLength ? ingestMessages.tooLong : undefined;
}

/** z.number(): finite. */
export function numberProblem(value: unknown): string | undefined {
  return typeof value === 'number' && Number.isFinite(value) ? undefined : wrongType('number', value);
}

/** IngestChangeNumber: a safe integer. */
export function changeNumberProblem(value: unknown): string | undefined {
  if (typeof value !== 'number' || !Number.isFinite(value)) return wrongType('number', value);
  return Number.isSafeInteger(value) ? undefined : ingestMessages.changeNumberNotInteger;
}

const timeNotIntegerTooEarly = [ingestMessages.timeNotInteger, ingestMessages.timeTooEarly] as const;

/**
 * IngestTime: a safe integer from 2000-01-01. Zod stops at a fraction but goes on to the minimum
 * after an integer outside the safe range, so an integer below -(2^53 - 1) has two problems.
 */
export function timeProblems(value: unknown): Found {
  if (typeof value !== 'number' || !Number.isFinite(value)) return wrongType('number', value);
  if (!Number.isInteger(value)) return ingestMessages.timeNotInteger;
  if (!Number.isSafeInteger(value)) return value < minTime ? timeNotIntegerTooEarly : ingestMessages.timeNotInteger;
  return value < minTime ? ingestMessages.timeTooEarly : undefined;
}

/** The native API's own `id`: z.string().min(1).max(128), so 1 to 128 code points. */
export function clientIdProblem(value: unknown): Found {
  if (typeof value !== 'string') return wrongTypeAndLength('string', value, 1, 128);
  if (value.length === 0) return tooShort(value, 1);
  return value.length > 128 ? tooBig(value, 128) : undefined;
}

/** IngestPropertiesText: JSON text within the limits. */
export function propertiesStringProblem(value: unknown): string | undefined {
  return typeof value === 'string' ? propertiesTextProblem(value) : wrongType('string', value);
}

/**
 * IngestPropertiesInput's text: the string itself, or the object serialized as zod's z.record
 * copy of it serializes (an own `__proto__` key is left out); undefined when it is neither,
 * which zod reports as invalidInput.
 */
export function propertiesInputText(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (!isJsonObject(value)) return undefined;
  if (!Object.hasOwn(value, '__proto__')) return JSON.stringify(value);
  const copy: Record<string, unknown> = {};
  for (const key of Object.keys(value)) if (key !== '__proto__') copy[key] = value[key];
  return JSON.stringify(copy);
}
