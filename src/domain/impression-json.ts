import { contextFields, type DecodedBatch, impressionAt, rowFields, type RoutingView } from './stored-batch.js';

/**
 * Canonical impressions as JSON bytes, written straight from a stored batch's positional rows:
 * exactly the bytes of `JSON.stringify(impressionAt(batch, index, view))` (UTF-8), without
 * building the object. Keys come out in the order impressionAt gives them (row fields in row
 * order, nulls left out; then the batch's context; then the row's own context fields; then a
 * traffic type the view adds). The context's part is encoded once per batch; a row's ASCII
 * strings and integers are written byte by byte into one growing buffer, anything else (escapes,
 * non-ASCII, fractions) through JSON.stringify. Against `Buffer.from(JSON.stringify(items))` this
 * writes a webhook body in about half the time and leaves no garbage but the body
 * (`npm run bench:webhook-body`): V8's JSON.stringify is fast, a JavaScript writer of strings
 * was not (a rope of some 25 pieces per row, flattened again), bytes in a buffer are.
 *
 * Rows this writer does not read exactly as impressionAt would (an own-context object that is not
 * one, or whose keys are not context fields the context lacks: never written by
 * encodeStoredBatch) go through impressionAt and JSON.stringify instead.
 */
export class ImpressionJsonWriter {
  private buffer: Buffer;
  private length = 0;

  constructor(initialBytes = 64 * 1024) {
    this.buffer = Buffer.allocUnsafe(initialBytes);
  }

  /** Appends one byte (`[`, `,`, `]`, `\n`). */
  byte(value: number): void {
    this.reserve(1);
    this.buffer[this.length++] = value;
  }

  /** Appends JSON text (any JSON.stringify output), UTF-8 encoded. */
  text(json: string): void {
    this.reserve(json.length * 3);
    this.length += this.buffer.write(json, this.length, 'utf8');
  }

  /** Appends row `index` of `batch` as its canonical impression's JSON; false (nothing written) past the end. */
  row(batch: DecodedBatch, index: number, view?: RoutingView): boolean {
    const row = batch.rows[index];
    if (row === undefined) return false;
    const context = contextOf(batch);
    const own = row[rowFields.length];
    const ownPart = own === undefined || own === null ? '' : ownPartOf(own, context);
    if (context.bytes === undefined || ownPart === undefined) {
      this.text(JSON.stringify(impressionAt(batch, index, view)));
      return true;
    }
    const dropLabel = view !== undefined && !view.labels;
    this.byte(openBrace);
    let first = true;
    const fieldCount = Math.min(row.length, rowFields.length);
    for (let i = 0; i < fieldCount; i += 1) {
      const value = row[i];
      if (value === null || value === undefined || (dropLabel && i === labelPosition)) continue;
      if (!first) this.byte(comma);
      first = false;
      this.raw(keyPrefixes[i] as Buffer);
      this.value(value);
    }
    if (context.bytes.length > 0) {
      if (!first) this.byte(comma);
      first = false;
      this.raw(context.bytes);
    }
    if (ownPart !== '') {
      if (!first) this.byte(comma);
      first = false;
      this.text(ownPart);
    }
    if (view !== undefined) {
      // Indexed as impressionAt indexes it (a missing split reads the key "undefined").
      const split = (row[splitPosition] ?? undefined) as string;
      const trafficType = view.trafficTypes[split];
      if (trafficType !== undefined && Object.hasOwn(view.trafficTypes, split)) {
        // `??=` in impressionAt: added (last) only where the row has none; an undefined value is no key.
        const [name, id] = trafficType;
        if (isAbsent(row[trafficTypeNamePosition]) && name !== undefined) {
          if (!first) this.byte(comma);
          first = false;
          this.raw(trafficTypeNamePrefix);
          this.value(name);
        }
        if (id !== undefined && isAbsent(row[trafficTypeIdPosition])) {
          if (!first) this.byte(comma);
          this.raw(trafficTypeIdPrefix);
          this.value(id);
        }
      }
    }
    this.byte(closeBrace);
    return true;
  }

  /** Bytes written so far. */
  get byteLength(): number {
    return this.length;
  }

  /** What was written, as a Buffer of its own; the writer starts again empty. */
  take(): Buffer {
    const written = Buffer.from(this.buffer.subarray(0, this.length));
    this.length = 0;
    return written;
  }

  private value(value: unknown): void {
    if (typeof value === 'string') this.string(value);
    else if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) this.integer(value);
    else this.text(JSON.stringify(value));
  }

  /** A string, quoted; one that needs escaping or is not ASCII goes through JSON.stringify. */
  private string(value: string): void {
    const count = value.length;
    this.reserve(count + 2);
    const buffer = this.buffer;
    let at = this.length;
    buffer[at++] = quote;
    for (let i = 0; i < count; i += 1) {
      const code = value.charCodeAt(i);
      if (code < 0x20 || code === quote || code === backslash || code > 0x7e) {
        this.text(JSON.stringify(value));
        return;
      }
      buffer[at++] = code;
    }
    buffer[at++] = quote;
    this.length = at;
  }

  /** A non-negative safe integer in decimal (what JSON.stringify writes for it). */
  private integer(value: number): void {
    // Epoch milliseconds have 13 digits: split into parts below 1e8, so the digits come from
    // int32 arithmetic rather than floating-point division.
    if (value < 1e8) {
      this.digits(value, 0);
      return;
    }
    const high = Math.floor(value / 1e8);
    this.integer(high);
    this.digits(value - high * 1e8, 8);
  }

  /** `value` (below 1e8) in decimal, left-padded with zeros to `width` digits. */
  private digits(value: number, width: number): void {
    let count = 1;
    for (let rest = value; rest >= 10; rest = (rest / 10) | 0) count += 1;
    if (count < width) count = width;
    this.reserve(count);
    const buffer = this.buffer;
    let rest = value | 0;
    for (let at = this.length + count - 1; at >= this.length; at -= 1) {
      const next = (rest / 10) | 0;
      buffer[at] = zero + rest - next * 10;
      rest = next;
    }
    this.length += count;
  }

  /** Bytes already encoded (keys, the context's part). */
  private raw(bytes: Buffer): void {
    const count = bytes.length;
    this.reserve(count);
    // A loop beats a native copy for the few dozen bytes of a key.
    if (count < 64) for (let i = 0; i < count; i += 1) this.buffer[this.length + i] = bytes[i] as number;
    else bytes.copy(this.buffer, this.length);
    this.length += count;
  }

  private reserve(bytes: number): void {
    if (this.length + bytes <= this.buffer.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.buffer.length * 2, this.length + bytes));
    this.buffer.copy(grown, 0, 0, this.length);
    this.buffer = grown;
  }
}

/** `JSON.stringify(impressionAt(batch, index, view))`, written from the row (undefined past the end). */
export function impressionJsonAt(batch: DecodedBatch, index: number, view?: RoutingView): string | undefined {
  const writer = new ImpressionJsonWriter(512);
  return writer.row(batch, index, view) ? writer.take().toString('utf8') : undefined;
}

const [openBrace, closeBrace, comma, quote, backslash, zero] = [0x7b, 0x7d, 0x2c, 0x22, 0x5c, 0x30] as const;
const keyPrefixes = rowFields.map((field) => Buffer.from(`${JSON.stringify(field)}:`));
const trafficTypeNamePrefix = Buffer.from('"trafficTypeName":');
const trafficTypeIdPrefix = Buffer.from('"trafficTypeId":');
const labelPosition = rowFields.indexOf('label');
const splitPosition = rowFields.indexOf('split');
const trafficTypeNamePosition = rowFields.indexOf('trafficTypeName');
const trafficTypeIdPosition = rowFields.indexOf('trafficTypeId');
const contextFieldSet: ReadonlySet<string> = new Set(contextFields);

function isAbsent(value: unknown): boolean {
  return value === null || value === undefined;
}

interface ContextPart {
  /** The context's members as UTF-8 JSON (`"environmentId":"…","sdk":…`, no braces); undefined when a key is not a context field (impressionAt would let it collide with a row field). */
  readonly bytes: Buffer | undefined;
  readonly keys: ReadonlySet<string>;
}

/** Encoded once per decoded batch (decoded batches are cached per process, see StoredBatchStore). */
const contextParts = new WeakMap<DecodedBatch, ContextPart>();

function contextOf(batch: DecodedBatch): ContextPart {
  let part = contextParts.get(batch);
  if (part === undefined) {
    const context: unknown = batch.context;
    const keys = typeof context === 'object' && context !== null && !Array.isArray(context) ? Object.keys(context) : undefined;
    const bytes = keys?.every((key) => contextFieldSet.has(key)) === true ? Buffer.from(JSON.stringify(context).slice(1, -1)) : undefined;
    part = { bytes, keys: new Set(keys) };
    contextParts.set(batch, part);
  }
  return part;
}

/** A row's own context fields as JSON members, or undefined where Object.assign would not simply append them. */
function ownPartOf(own: unknown, context: ContextPart): string | undefined {
  if (typeof own !== 'object' || own === null || Array.isArray(own)) return undefined;
  for (const key of Object.keys(own)) if (!contextFieldSet.has(key) || context.keys.has(key)) return undefined;
  return JSON.stringify(own).slice(1, -1);
}
