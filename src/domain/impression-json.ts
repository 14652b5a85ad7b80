import { contextFields, type DecodedBatch, impressionAt, rowFields, type RoutingView } from './stored-batch.js';

/**
 * The canonical impression's JSON text, written straight from a stored batch's positional row:
 * exactly the bytes of `JSON.stringify(impressionAt(batch, index, view))`, without building the
 * object. Keys come out in the order impressionAt gives them (row fields in row order, nulls
 * left out; then the batch's context; then the row's own context fields; then a traffic type the
 * view adds), so a receiver sees the same body whichever way it was written. The context's part is
 * written once per batch; of a row only its values go through JSON.stringify.
 *
 * Rows this writer does not read exactly as impressionAt would (an own-context object that is not
 * one, or whose keys are not context fields the context lacks: never written by
 * encodeStoredBatch) are written through impressionAt and JSON.stringify instead.
 */
export function impressionJsonAt(batch: DecodedBatch, index: number, view?: RoutingView): string | undefined {
  const row = batch.rows[index];
  if (row === undefined) return undefined;
  const context = contextPartOf(batch);
  if (context === undefined) return JSON.stringify(impressionAt(batch, index, view));
  const own = row[rowFields.length];
  let ownPart = '';
  if (own !== undefined && own !== null) {
    const part = ownPartOf(own, batch);
    if (part === undefined) return JSON.stringify(impressionAt(batch, index, view));
    ownPart = part;
  }
  const keepLabel = view === undefined || view.labels;
  const fieldCount = Math.min(row.length, rowFields.length);
  let json = '{';
  for (let i = 0; i < fieldCount; i += 1) {
    const value = row[i];
    if (value === null || value === undefined || (i === labelPosition && !keepLabel)) continue;
    json += `${json.length === 1 ? '' : ','}${keyPrefixes[i] as string}${jsonValue(value)}`;
  }
  if (context !== '') json += `${json.length === 1 ? '' : ','}${context}`;
  if (ownPart !== '') json += `${json.length === 1 ? '' : ','}${ownPart}`;
  if (view !== undefined) {
    // Indexed as impressionAt indexes it (a missing split reads the key "undefined").
    const split = (row[splitPosition] ?? undefined) as string;
    const trafficType = view.trafficTypes[split];
    if (trafficType !== undefined && Object.hasOwn(view.trafficTypes, split)) {
      // `??=` in impressionAt: added (last) only where the row has none; an undefined value is no key.
      const name = trafficType[0];
      if (isAbsent(row[trafficTypeNamePosition]) && name !== undefined) json += `${json.length === 1 ? '' : ','}"trafficTypeName":${JSON.stringify(name)}`;
      const id = trafficType[1];
      if (id !== undefined && isAbsent(row[trafficTypeIdPosition])) json += `${json.length === 1 ? '' : ','}"trafficTypeId":${JSON.stringify(id)}`;
    }
  }
  return `${json}}`;
}

const keyPrefixes = rowFields.map((field) => `${JSON.stringify(field)}:`);
const labelPosition = rowFields.indexOf('label');
const splitPosition = rowFields.indexOf('split');
const trafficTypeNamePosition = rowFields.indexOf('trafficTypeName');
const trafficTypeIdPosition = rowFields.indexOf('trafficTypeId');
const contextFieldSet: ReadonlySet<string> = new Set(contextFields);

/** Needs escaping in JSON: a quote, a backslash, a control character or a surrogate (a lone one is escaped). */
const needsEscape = /["\\\u0000-\u001f\ud800-\udfff]/;

/** JSON.stringify(value), with its common cases written here (a call into JSON.stringify per value costs more than the check). */
function jsonValue(value: unknown): string {
  if (typeof value === 'string') return needsEscape.test(value) ? JSON.stringify(value) : `"${value}"`;
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  return JSON.stringify(value);
}

function isAbsent(value: unknown): boolean {
  return value === null || value === undefined;
}

/**
 * The context's members as JSON text (`"environmentId":"…","sdk":…`, no braces), written once per
 * decoded batch; undefined when the context has a key that is not a context field (impressionAt
 * would let it collide with a row field).
 */
const contextParts = new WeakMap<DecodedBatch, { readonly json: string | undefined; readonly keys: ReadonlySet<string> }>();

function contextEntry(batch: DecodedBatch): { readonly json: string | undefined; readonly keys: ReadonlySet<string> } {
  let entry = contextParts.get(batch);
  if (entry === undefined) {
    const keys = typeof batch.context === 'object' && batch.context !== null ? Object.keys(batch.context) : ['not an object'];
    const json = keys.every((key) => contextFieldSet.has(key)) ? JSON.stringify(batch.context).slice(1, -1) : undefined;
    entry = { json, keys: new Set(keys) };
    contextParts.set(batch, entry);
  }
  return entry;
}

function contextPartOf(batch: DecodedBatch): string | undefined {
  return contextEntry(batch).json;
}

/** A row's own context fields as JSON members, or undefined where Object.assign would not simply append them. */
function ownPartOf(own: unknown, batch: DecodedBatch): string | undefined {
  if (typeof own !== 'object' || Array.isArray(own)) return undefined;
  const shared = contextEntry(batch).keys;
  for (const key of Object.keys(own as object)) if (!contextFieldSet.has(key) || shared.has(key)) return undefined;
  return JSON.stringify(own).slice(1, -1);
}
