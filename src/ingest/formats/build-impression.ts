import { type Impression, impressionIdOf } from '../../domain/impression.js';
import type { IngestContext } from './ingest-context.js';

/** An impression of a body as sent, by the canonical field names, before it is checked. */
export type UncheckedImpression = { readonly [F in keyof Impression]?: unknown };

/** One evaluation's fields once a format has checked them and mapped its own names (absent: undefined). */
export interface CheckedEvaluation {
  readonly id?: string | undefined;
  readonly key: string;
  readonly split: string;
  readonly treatment: string;
  readonly time: number;
  readonly bucketingKey?: string | undefined;
  readonly label?: string | undefined;
  readonly splitVersionNumber?: number | undefined;
  readonly properties?: string | undefined;
  readonly trafficTypeId?: string | undefined;
  readonly trafficTypeName?: string | undefined;
  readonly sdk?: string | undefined;
  readonly sdkVersion?: string | undefined;
  readonly machineIp?: string | undefined;
  readonly machineName?: string | undefined;
}

/**
 * The canonical impression of a checked evaluation, the same for every ingest format: the
 * environment and reception time from the request, `id` as given or derived from the identity
 * fields (impressionIdOf), absent fields left out.
 */
export function buildImpression(fields: CheckedEvaluation, context: IngestContext): Impression {
  const { key, split, treatment, time, bucketingKey, label, splitVersionNumber, properties } = fields;
  // receptionTimestamp is set last, in its place in the field order the formats have always had.
  const impression = {
    id: fields.id ?? impressionIdOf(context.environmentId, split, key, bucketingKey, treatment, label, time, splitVersionNumber, properties),
    key,
    split,
    treatment,
    time,
    environmentId: context.environmentId,
  } as Impression;
  if (bucketingKey !== undefined) impression.bucketingKey = bucketingKey;
  if (label !== undefined) impression.label = label;
  if (splitVersionNumber !== undefined) impression.splitVersionNumber = splitVersionNumber;
  if (properties !== undefined) impression.properties = properties;
  impression.environmentName = context.environmentName;
  if (fields.trafficTypeId !== undefined) impression.trafficTypeId = fields.trafficTypeId;
  if (fields.trafficTypeName !== undefined) impression.trafficTypeName = fields.trafficTypeName;
  if (fields.sdk !== undefined) impression.sdk = fields.sdk;
  if (fields.sdkVersion !== undefined) impression.sdkVersion = fields.sdkVersion;
  if (fields.machineIp !== undefined) impression.machineIp = fields.machineIp;
  if (fields.machineName !== undefined) impression.machineName = fields.machineName;
  impression.receptionTimestamp = context.receivedAt;
  return impression;
}
