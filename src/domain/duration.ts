import { z } from 'zod';

const units = [
  ['d', 86_400_000],
  ['h', 3_600_000],
  ['m', 60_000],
  ['s', 1000],
  ['ms', 1],
] as const;

/** What every duration error message names. */
export const durationForms = 'a duration like 250ms, 5s, 10m, 1h30m or 14d (units d, h, m, s, ms, largest first), or a whole number of milliseconds';

/**
 * `1h30m` → 5 400 000. Units run from largest to smallest, each at most once; a plain
 * non-negative integer is milliseconds. Anything else (including values past 2^53) is undefined.
 */
export function parseDuration(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isSafeInteger(value) && value >= 0 ? value : undefined;
  if (typeof value !== 'string' || !/^(\d+(ms|d|h|m|s))+$/.test(value)) return undefined;
  let total = 0;
  let previous = -1;
  for (const [, amount = '', unit = ''] of value.matchAll(/(\d+)(ms|d|h|m|s)/g)) {
    const index = units.findIndex(([name]) => name === unit);
    if (index <= previous) return undefined;
    previous = index;
    total += Number(amount) * (units[index]?.[1] ?? 1);
  }
  return Number.isSafeInteger(total) ? total : undefined;
}

/** 5 400 000 → `1h30m`, 1500 → `1s500ms`, 0 → `0s`: the form `export` and the admin API show. */
export function formatDuration(ms: number): string {
  if (!Number.isSafeInteger(ms) || ms < 0) return String(ms);
  if (ms === 0) return '0s';
  let rest = ms;
  let text = '';
  for (const [unit, size] of units) {
    const amount = Math.floor(rest / size);
    if (amount > 0) text += `${amount}${unit}`;
    rest -= amount * size;
  }
  return text;
}

/** A duration in milliseconds, written `250ms`, `5s`, `1h30m`, `14d` or as a number of ms; at most `max`. */
export function durationSchema(options: { max?: number } = {}) {
  const max = options.max ?? 365 * 86_400_000;
  return z.union([z.number(), z.string()], { error: `expected ${durationForms}` }).transform((value, context) => {
    const ms = parseDuration(value);
    if (ms === undefined) {
      context.addIssue({ code: 'custom', message: `expected ${durationForms}; got ${JSON.stringify(value)}` });
      return z.NEVER;
    }
    if (ms > max) {
      context.addIssue({ code: 'custom', message: `at most ${formatDuration(max)}; got ${formatDuration(ms)}` });
      return z.NEVER;
    }
    return ms;
  });
}

export const DurationSchema = durationSchema();
