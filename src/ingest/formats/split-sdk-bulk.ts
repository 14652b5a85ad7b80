import { z } from 'zod';
import { impressionId, type Impression, splitSdkVersionHeader } from '../../domain/impression.js';
import type { IngestContext } from './ingest-context.js';

/**
 * `POST /testImpressions/bulk` as the Split SDKs send it: an array of `{ f, i: [...] }`, one
 * element per flag; `k` key, `t` treatment, `m` time (ms), `c` change number, `r` label,
 * `b` bucketing key, `pt` previous time (ignored), `properties` a JSON string.
 */
export const SplitSdkBulkSchema = z.array(
  z.object({
    f: z.string().min(1),
    i: z.array(
      z.object({
        k: z.string().min(1),
        t: z.string().min(1),
        m: z.number().int().nonnegative(),
        c: z.number().int().optional().nullable(),
        r: z.string().optional().nullable(),
        b: z.string().optional().nullable(),
        pt: z.number().optional().nullable(),
        properties: z.string().optional().nullable(),
        et: z.string().optional().nullable(),
      }),
    ),
  }),
);

export interface SplitSdkHeaders {
  readonly sdkVersion?: string | undefined;
  readonly machineIp?: string | undefined;
  readonly machineName?: string | undefined;
}

/** Split SDKs send `NA` or an empty value when they do not know the machine. */
function known(value: string | undefined): string | undefined {
  return value === undefined || value === '' || value === 'NA' || value === 'unknown' ? undefined : value;
}

export function fromSplitSdkBulk(body: z.infer<typeof SplitSdkBulkSchema>, headers: SplitSdkHeaders, context: IngestContext): Impression[] {
  const { sdk, sdkVersion } = splitSdkVersionHeader(headers.sdkVersion);
  const machineIp = known(headers.machineIp);
  const machineName = known(headers.machineName);
  const impressions: Impression[] = [];
  for (const group of body) {
    for (const item of group.i) {
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
    }
  }
  return impressions;
}
