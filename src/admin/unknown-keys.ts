import type { z } from 'zod';

/**
 * Finds the keys of an input that a zod schema does not name, at any depth, so a typo
 * (`regoin`, `sdkKey`, `bachSize`) is an error instead of being silently dropped by
 * `z.object`'s default stripping. It walks the schema and the value together, so it works for
 * every connector's settings schema (plugins included) without those schemas having to be
 * written strict, and the stored configuration can still be read leniently. Shapes it cannot
 * follow (intersections, custom types) are taken as they are.
 */
export interface UnknownKey {
  /** Path of the object holding the key. */
  readonly path: readonly PropertyKey[];
  readonly key: string;
  /** The keys that object accepts, for "did you mean". */
  readonly known: readonly string[];
}

/** zod 4's internal definition, read only as far as walking needs; anything else is a leaf. */
interface Def {
  readonly type: string;
  readonly shape?: Record<string, z.ZodType>;
  readonly catchall?: z.ZodType;
  readonly innerType?: z.ZodType;
  readonly in?: z.ZodType;
  readonly element?: z.ZodType;
  readonly valueType?: z.ZodType;
  readonly options?: readonly z.ZodType[];
  readonly items?: readonly z.ZodType[];
  readonly rest?: z.ZodType | null;
  readonly getter?: () => z.ZodType;
}

function defOf(schema: z.ZodType | undefined): Def | undefined {
  const def = (schema as { _zod?: { def?: Def } } | undefined)?._zod?.def;
  return typeof def?.type === 'string' ? def : undefined;
}

const wrappers = new Set(['optional', 'nullable', 'default', 'prefault', 'catch', 'readonly', 'nonoptional', 'success']);

/** The schema that decides the shape of the input: wrappers removed, a pipe's input side. */
function unwrap(schema: z.ZodType | undefined, depth = 0): Def | undefined {
  const def = defOf(schema);
  if (def === undefined || depth > 50) return undefined;
  if (wrappers.has(def.type)) return unwrap(def.innerType, depth + 1);
  if (def.type === 'pipe') return unwrap(def.in, depth + 1);
  if (def.type === 'lazy' && def.getter) return unwrap(def.getter(), depth + 1);
  return def;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** Keys an object schema accepts; undefined when it accepts any (a catchall other than never). */
function objectShape(def: Def): Record<string, z.ZodType> | undefined {
  if (def.catchall !== undefined && defOf(def.catchall)?.type !== 'never') return undefined;
  return def.shape ?? {};
}

/** The keys an object schema names (none when it is not an object or takes any key). */
export function knownKeys(schema: z.ZodType): string[] {
  const def = unwrap(schema);
  const shape = def?.type === 'object' ? objectShape(def) : undefined;
  return shape === undefined ? [] : Object.keys(shape);
}

export function unknownKeys(schema: z.ZodType, value: unknown, path: readonly PropertyKey[] = []): UnknownKey[] {
  const def = unwrap(schema);
  if (def === undefined) return [];
  switch (def.type) {
    case 'object': {
      if (!isRecord(value)) return [];
      const shape = objectShape(def);
      const found: UnknownKey[] = [];
      for (const [key, item] of Object.entries(value)) {
        if (shape === undefined) found.push(...(def.catchall ? unknownKeys(def.catchall, item, [...path, key]) : []));
        else if (Object.hasOwn(shape, key)) found.push(...unknownKeys(shape[key] as z.ZodType, item, [...path, key]));
        else found.push({ path, key, known: Object.keys(shape) });
      }
      return found;
    }
    case 'record':
      return isRecord(value) && def.valueType ? Object.entries(value).flatMap(([key, item]) => unknownKeys(def.valueType as z.ZodType, item, [...path, key])) : [];
    case 'array':
      return Array.isArray(value) && def.element ? value.flatMap((item, index) => unknownKeys(def.element as z.ZodType, item, [...path, index])) : [];
    case 'tuple':
      return Array.isArray(value)
        ? value.flatMap((item, index) => {
            const itemSchema = def.items?.[index] ?? def.rest ?? undefined;
            return itemSchema ? unknownKeys(itemSchema, item, [...path, index]) : [];
          })
        : [];
    case 'union': {
      // The option that fits the value best decides; an option that takes any key wins outright.
      const candidates = (def.options ?? []).filter((option) => {
        const type = unwrap(option)?.type;
        return Array.isArray(value) ? type === 'array' || type === 'tuple' : isRecord(value) ? type === 'object' || type === 'record' : false;
      });
      let best: UnknownKey[] | undefined;
      for (const option of candidates) {
        const found = unknownKeys(option, value, path);
        if (best === undefined || found.length < best.length) best = found;
        if (found.length === 0) break;
      }
      return best ?? [];
    }
    default:
      return [];
  }
}

/** Optimal string alignment distance (Levenshtein plus adjacent swaps: `regoin` → `region` is 1). */
export function editDistance(a: string, b: string): number {
  const rows = a.length + 1;
  const cols = b.length + 1;
  const d: number[][] = Array.from({ length: rows }, (_, i) => Array.from({ length: cols }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i < rows; i += 1) {
    for (let j = 1; j < cols; j += 1) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      const row = d[i] as number[];
      const above = d[i - 1] as number[];
      let best = Math.min((above[j] as number) + 1, (row[j - 1] as number) + 1, (above[j - 1] as number) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) best = Math.min(best, ((d[i - 2] as number[])[j - 2] as number) + 1);
      row[j] = best;
    }
  }
  return (d[a.length] as number[])[b.length] as number;
}

/** The candidate a typo most likely meant: same letters in another case, or within a third of its length. */
export function closestName(name: string, candidates: readonly string[]): string | undefined {
  if (name.length > 100) return undefined;
  const lower = name.toLowerCase();
  const sameLetters = candidates.find((candidate) => candidate.toLowerCase() === lower);
  if (sameLetters !== undefined) return sameLetters;
  let best: { candidate: string; distance: number } | undefined;
  for (const candidate of candidates) {
    const distance = editDistance(lower, candidate.toLowerCase());
    if (distance <= Math.max(1, Math.floor(Math.max(name.length, candidate.length) / 3)) && (best === undefined || distance < best.distance)) best = { candidate, distance };
  }
  return best?.candidate;
}
