/**
 * JSON that is hostile by shape rather than by type: nested deep enough to overflow a recursive
 * JSON.stringify (V8 fails near 10 000 levels, and connectors stringify nested properties), a
 * string no UTF-8 encoder can carry (a lone UTF-16 surrogate, from a `\ud800` escape), or a
 * `__proto__` key that an object copy would silently drop. A text scan finds whether any is
 * present without building anything; only then is the parsed tree walked to name the field.
 */

const loneSurrogate = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Whether `text` holds a UTF-16 surrogate that is not half of a pair (not valid Unicode). */
export function hasLoneSurrogate(text: string): boolean {
  return loneSurrogate.test(text);
}

/** `"__proto__"` as a key, whichever of its characters are written as `\u00XX` escapes. */
const protoKey = new RegExp(
  `"${[...'__proto__'].map((char) => `(?:${char}|\\\\u00${char.charCodeAt(0).toString(16)})`).join('')}"\\s*:`,
  'i',
);

export interface JsonTextShape {
  /** Deepest nesting of arrays and objects (`1` → 0, `[]` → 1, `[{}]` → 2). */
  readonly depth: number;
  /** A lone surrogate, raw or as a `\uXXXX` escape, inside a string. */
  readonly loneSurrogate: boolean;
  readonly protoKey: boolean;
}

/**
 * One pass over `text` (JSON, or any text: brackets inside strings are not counted). Linear and
 * allocation-free: a few milliseconds for a 5 MB body.
 */
export function scanJsonText(text: string): JsonTextShape {
  const { depth, loneSurrogate } = measureJsonText(text);
  return { depth, loneSurrogate, protoKey: protoKey.test(text) };
}

/** scanJsonText without the `__proto__` search, which only matters for text that is parsed here (bodies, not `properties`). */
export function measureJsonText(text: string): Omit<JsonTextShape, 'protoKey'> {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  let lone = false;
  for (let i = 0; i < text.length; i += 1) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x22) inString = false;
      else if (c === 0x5c) {
        if (text.charCodeAt(i + 1) === 0x75 && !lone) {
          const unit = hexUnit(text, i + 2);
          if (unit >= 0xd800 && unit <= 0xdbff) {
            const next = text.charCodeAt(i + 6) === 0x5c && text.charCodeAt(i + 7) === 0x75 ? hexUnit(text, i + 8) : -1;
            if (next >= 0xdc00 && next <= 0xdfff) i += 6;
            else lone = true;
          } else if (unit >= 0xdc00 && unit <= 0xdfff) lone = true;
        }
        i += 1;
      }
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      depth += 1;
      if (depth > deepest) deepest = depth;
    } else if (c === 0x5d || c === 0x7d) depth -= 1;
  }
  return { depth: deepest, loneSurrogate: lone || hasLoneSurrogate(text) };
}

function hexUnit(text: string, at: number): number {
  const hex = text.slice(at, at + 4);
  return /^[0-9a-fA-F]{4}$/.test(hex) ? Number.parseInt(hex, 16) : -1;
}

export interface JsonProblem {
  readonly path: readonly (string | number)[];
  readonly message: string;
}

interface Frame {
  readonly value: unknown;
  readonly depth: number;
  readonly parent: Frame | undefined;
  readonly key: string | number | undefined;
}

/**
 * The first problem in document order of a parsed JSON value: a container nested deeper than
 * `maxDepth`, a `__proto__` key, or a string or key with a lone surrogate. Iterative, so any
 * depth JSON.parse produced is walked without growing the call stack; it never descends past
 * `maxDepth + 1` levels.
 */
export function findJsonProblem(root: unknown, maxDepth: number): JsonProblem | undefined {
  const stack: Frame[] = [{ value: root, depth: 0, parent: undefined, key: undefined }];
  while (stack.length > 0) {
    const frame = stack.pop() as Frame;
    const { value } = frame;
    if (typeof value === 'string') {
      if (hasLoneSurrogate(value)) return { path: pathOf(frame), message: 'contains a lone UTF-16 surrogate (not valid Unicode); send well-formed UTF-8' };
      continue;
    }
    if (value === null || typeof value !== 'object') continue;
    const depth = frame.depth + 1;
    if (depth > maxDepth) return { path: pathOf(frame), message: `nested deeper than ${maxDepth} levels of arrays and objects` };
    if (Array.isArray(value)) {
      for (let index = value.length - 1; index >= 0; index -= 1) stack.push({ value: value[index], depth, parent: frame, key: index });
      continue;
    }
    const keys = Object.keys(value);
    for (const key of keys) {
      if (key === '__proto__') return { path: [...pathOf(frame), key], message: 'a key named __proto__ is not accepted' };
      if (hasLoneSurrogate(key)) return { path: pathOf(frame), message: `a key contains a lone UTF-16 surrogate (not valid Unicode): ${JSON.stringify(key)}` };
    }
    for (let index = keys.length - 1; index >= 0; index -= 1) {
      const key = keys[index] as string;
      stack.push({ value: (value as Record<string, unknown>)[key], depth, parent: frame, key });
    }
  }
  return undefined;
}

function pathOf(frame: Frame): (string | number)[] {
  const path: (string | number)[] = [];
  for (let at: Frame | undefined = frame; at?.key !== undefined; at = at.parent) path.push(at.key);
  return path.reverse();
}
