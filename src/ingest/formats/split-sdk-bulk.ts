import { z } from 'zod';
import { formatPath, type FieldProblem, validationError } from '../../domain/errors.js';
import { impressionId, type Impression, splitSdkVersionHeader } from '../../domain/impression.js';
import { IngestChangeNumber, IngestPropertiesText, IngestRequiredText, IngestText, IngestTime, laterThanReception } from '../impression-fields.js';
import type { IngestContext } from './ingest-context.js';

/**
 * `POST /testImpressions/bulk` as the Split SDKs send it: an array of `{ f, i: [...] }`, one
 * element per flag; `k` key, `t` treatment, `m` time (ms), `c` change number, `r` label,
 * `b` bucketing key, `pt` previous time (ignored), `properties` a JSON string.
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

export function fromSplitSdkBulk(body: z.infer<typeof SplitSdkBulkSchema>, headers: SplitSdkHeaders, context: IngestContext): Impression[] {
  const problems: FieldProblem[] = [];
  for (const [name, header] of Object.entries(splitSdkHeaderNames) as [keyof SplitSdkHeaders, string][]) {
    const result = IngestText.safeParse(headers[name] ?? '');
    if (!result.success) problems.push({ field: `headers.${header}`, message: result.error.issues[0]?.message ?? 'invalid' });
  }
  const { sdk, sdkVersion } = splitSdkVersionHeader(headers.sdkVersion);
  const machineIp = known(headers.machineIp);
  const machineName = known(headers.machineName);
  const impressions: Impression[] = [];
  body.forEach((group, g) => {
    group.i.forEach((item, j) => {
      const late = laterThanReception(item.m, context.receivedAt);
      if (late !== undefined) problems.push({ field: formatPath([g, 'i', j, 'm']), message: late });
      const fields = {
        key: item.k,
        split: group.f,
        treatment: item.t,
        time: item.m,
        environmentId: context.environmentId,
        ...(item.b != null ? { bucketingKey: item.b } : {}),
        ...(item.r != null ? { label: item.r } : {}),
        ...(item.c != null ? { splitVersionNumber: item.c } : {}),
        ...(item.properties != null ? { properties: item.properties } : {}),
      };
      impressions.push({
        id: impressionId(fields),
        ...fields,
        environmentName: context.environmentName,
        ...(sdk !== undefined ? { sdk } : {}),
        ...(sdkVersion !== undefined ? { sdkVersion } : {}),
        ...(machineIp !== undefined ? { machineIp } : {}),
        ...(machineName !== undefined ? { machineName } : {}),
        receptionTimestamp: context.receivedAt,
      });
    });
  });
  if (problems.length > 0) throw validationError(problems);
  return impressions;
}
