import { z } from 'zod';
import { formatPath, type FieldProblem, validationError } from '../../domain/errors.js';
import { type Impression, splitSdkVersionHeader } from '../../domain/impression.js';
import {
  addFound,
  changeNumberProblem,
  type Found,
  isJsonObject,
  numberProblem,
  propertiesStringProblem,
  requiredTextProblem,
  textProblem,
  timeProblems,
  wrongType,
} from '../field-checks.js';
import { IngestChangeNumber, IngestPropertiesText, IngestRequiredText, IngestText, IngestTime, laterThanReception } from '../impression-fields.js';
import { buildImpression } from './build-impression.js';
import type { IngestContext } from './ingest-context.js';

/**
 * `POST /testImpressions/bulk` as the Split SDKs send it: an array of `{ f, i: [...] }`, one
 * element per flag; `k` key, `t` treatment, `m` time (ms), `c` change number, `r` label,
 * `b` bucketing key, `pt` previous time (ignored), `properties` a JSON string.
 *
 * This schema documents the format (OpenAPI); fromSplitSdkBulk validates by hand, with the same
 * problems, in one pass that also builds the impressions.
 */
export const SplitSdkBulkSchema = z.array(
  z.object({
    f: IngestRequiredText,
    i: z.array(
      z.object({
        k: IngestRequiredText,
        t: IngestRequiredText,
        m: IngestTime,
        c: IngestChangeNumber.optional().nullable(),
        r: IngestText.optional().nullable(),
        b: IngestText.optional().nullable(),
        pt: z.number().optional().nullable(),
        properties: IngestPropertiesText.optional().nullable(),
        et: IngestText.optional().nullable(),
      }),
    ),
  }),
);

export interface SplitSdkHeaders {
  readonly sdkVersion?: string | undefined;
  readonly machineIp?: string | undefined;
  readonly machineName?: string | undefined;
}

/** The headers that become impression fields, by the name a client sets them with. */
export const splitSdkHeaderNames: Readonly<Record<keyof SplitSdkHeaders, string>> = {
  sdkVersion: 'SplitSDKVersion',
  machineIp: 'SplitSDKMachineIP',
  machineName: 'SplitSDKMachineName',
};

/** Split SDKs send `NA` or an empty value when they do not know the machine. */
function known(value: string | undefined): string | undefined {
  return value === undefined || value === '' || value === 'NA' || value === 'unknown' ? undefined : value;
}

/** An impression of the body as sent, before it is checked. */
interface SdkItem {
  readonly k?: unknown;
  readonly t?: unknown;
  readonly m?: unknown;
  readonly c?: unknown;
  readonly r?: unknown;
  readonly b?: unknown;
  readonly pt?: unknown;
  readonly properties?: unknown;
  readonly et?: unknown;
}

/** Adds what a check found on field `name` of impression `item` of group `group`. */
function report(problems: FieldProblem[], group: number, item: number, name: string, found: Found): void {
  if (found === undefined) return;
  addFound(problems, formatPath([group, 'i', item, name]), found);
}

/**
 * The impressions of a bulk body, or a 400 naming every field that is not as SplitSdkBulkSchema
 * says (in its order); once the body is valid, the SDK headers and the time bound to reception.
 */
export function fromSplitSdkBulk(body: unknown, headers: SplitSdkHeaders, context: IngestContext): Impression[] {
  if (!Array.isArray(body)) throw validationError([{ field: formatPath([]), message: wrongType('array', body) }]);
  const { receivedAt } = context;
  const { sdk, sdkVersion } = splitSdkVersionHeader(headers.sdkVersion);
  const machineIp = known(headers.machineIp);
  const machineName = known(headers.machineName);
  const problems: FieldProblem[] = [];
  const late: FieldProblem[] = [];
  const impressions: Impression[] = [];
  for (let g = 0; g < body.length; g += 1) {
    const group: unknown = body[g];
    if (!isJsonObject(group)) {
      problems.push({ field: formatPath([g]), message: wrongType('object', group) });
      continue;
    }
    const split = group.f;
    const flagFound = requiredTextProblem(split);
    if (flagFound !== undefined) addFound(problems, formatPath([g, 'f']), flagFound);
    const items = group.i;
    if (!Array.isArray(items)) {
      problems.push({ field: formatPath([g, 'i']), message: wrongType('array', items) });
      continue;
    }
    for (let j = 0; j < items.length; j += 1) {
      const item: unknown = items[j];
      if (!isJsonObject(item)) {
        problems.push({ field: formatPath([g, 'i', j]), message: wrongType('object', item) });
        continue;
      }
      const { k, t, m, c, r, b, pt, properties, et } = item as SdkItem;
      report(problems, g, j, 'k', requiredTextProblem(k));
      report(problems, g, j, 't', requiredTextProblem(t));
      report(problems, g, j, 'm', timeProblems(m));
      if (c != null) report(problems, g, j, 'c', changeNumberProblem(c));
      if (r != null) report(problems, g, j, 'r', textProblem(r));
      if (b != null) report(problems, g, j, 'b', textProblem(b));
      if (pt != null) report(problems, g, j, 'pt', numberProblem(pt));
      if (properties != null) report(problems, g, j, 'properties', propertiesStringProblem(properties));
      if (et != null) report(problems, g, j, 'et', textProblem(et));
      // Past the first problem only problems are looked for: nothing of the request is accepted.
      if (problems.length > 0) continue;

      // Checked above: the casts only tell TypeScript what the checks found.
      const time = m as number;
      const lateProblem = laterThanReception(time, receivedAt);
      if (lateProblem !== undefined) late.push({ field: formatPath([g, 'i', j, 'm']), message: lateProblem });
      impressions.push(
        buildImpression(
          {
            key: k as string,
            split: split as string,
            treatment: t as string,
            time,
            bucketingKey: (b as string | null | undefined) ?? undefined,
            label: (r as string | null | undefined) ?? undefined,
            splitVersionNumber: (c as number | null | undefined) ?? undefined,
            properties: (properties as string | null | undefined) ?? undefined,
            sdk,
            sdkVersion,
            machineIp,
            machineName,
          },
          context,
        ),
      );
    }
  }
  if (problems.length > 0) throw validationError(problems);
  for (const [name, header] of Object.entries(splitSdkHeaderNames) as [keyof SplitSdkHeaders, string][]) {
    const problem = textProblem(headers[name] ?? '');
    if (problem !== undefined) problems.push({ field: `headers.${header}`, message: problem });
  }
  problems.push(...late);
  if (problems.length > 0) throw validationError(problems);
  return impressions;
}
