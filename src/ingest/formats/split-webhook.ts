import { z } from 'zod';
import { impressionId, type Impression } from '../../domain/impression.js';
import type { IngestContext } from './ingest-context.js';

const optionalText = z.string().optional().nullable();

/**
 * Split's outgoing impressions webhook: a JSON array of impressions with the field names our
 * canonical impression keeps. The environment is the flagstream environment that owns the
 * token (Split's own environment id is replaced, so routing and filters use ours).
 */
export const SplitWebhookSchema = z.array(
  z.object({
    key: z.string().min(1),
    split: z.string().min(1),
    treatment: z.string().min(1),
    time: z.number().int().nonnegative(),
    environmentId: optionalText,
    environmentName: optionalText,
    bucketingKey: optionalText,
    label: optionalText,
    machineName: optionalText,
    machineIp: optionalText,
    splitVersionNumber: z.number().int().optional().nullable(),
    sdk: optionalText,
    sdkVersion: optionalText,
    trafficTypeId: optionalText,
    trafficTypeName: optionalText,
    properties: z.union([z.string(), z.record(z.string(), z.unknown())]).optional().nullable(),
  }),
);

export function fromSplitWebhook(body: z.infer<typeof SplitWebhookSchema>, context: IngestContext): Impression[] {
  return body.map((item) => {
    const properties = item.properties == null ? undefined : typeof item.properties === 'string' ? item.properties : JSON.stringify(item.properties);
    const fields = {
      key: item.key,
      split: item.split,
      treatment: item.treatment,
      time: item.time,
      environmentId: context.environmentId,
      ...(item.bucketingKey != null && item.bucketingKey !== '' ? { bucketingKey: item.bucketingKey } : {}),
      ...(item.label != null ? { label: item.label } : {}),
      ...(item.splitVersionNumber != null ? { splitVersionNumber: item.splitVersionNumber } : {}),
      ...(properties !== undefined && properties !== '' ? { properties } : {}),
    };
    return {
      id: impressionId(fields),
      ...fields,
      environmentName: context.environmentName,
      ...(item.trafficTypeId != null ? { trafficTypeId: item.trafficTypeId } : {}),
      ...(item.trafficTypeName != null ? { trafficTypeName: item.trafficTypeName } : {}),
      ...(item.sdk != null ? { sdk: item.sdk } : {}),
      ...(item.sdkVersion != null ? { sdkVersion: item.sdkVersion } : {}),
      ...(item.machineIp != null ? { machineIp: item.machineIp } : {}),
      ...(item.machineName != null ? { machineName: item.machineName } : {}),
      receptionTimestamp: context.receivedAt,
    };
  });
}
