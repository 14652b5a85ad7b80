import { z } from 'zod';
import { formatPath, type FieldProblem, validationError } from '../../domain/errors.js';
import { impressionId, type Impression } from '../../domain/impression.js';
import { IngestChangeNumber, IngestPropertiesInput, IngestRequiredText, IngestText, IngestTime, laterThanReception } from '../impression-fields.js';
import type { IngestContext } from './ingest-context.js';

const optionalText = IngestText.optional().nullable();

/**
 * Split's outgoing impressions webhook: a JSON array of impressions with the field names our
 * canonical impression keeps. The environment is the flagstream environment that owns the
 * token (Split's own environment id is replaced, so routing and filters use ours).
 */
export const SplitWebhookSchema = z.array(
  z.object({
    key: IngestRequiredText,
    split: IngestRequiredText,
    treatment: IngestRequiredText,
    time: IngestTime,
    environmentId: optionalText,
    environmentName: optionalText,
    bucketingKey: optionalText,
    label: optionalText,
    machineName: optionalText,
    machineIp: optionalText,
    splitVersionNumber: IngestChangeNumber.optional().nullable(),
    sdk: optionalText,
    sdkVersion: optionalText,
    trafficTypeId: optionalText,
    trafficTypeName: optionalText,
    properties: IngestPropertiesInput.optional().nullable(),
  }),
);

export function fromSplitWebhook(body: z.infer<typeof SplitWebhookSchema>, context: IngestContext): Impression[] {
  const problems: FieldProblem[] = [];
  const impressions = body.map((item, index) => {
    const late = laterThanReception(item.time, context.receivedAt);
    if (late !== undefined) problems.push({ field: formatPath([index, 'time']), message: late });
    const properties = item.properties ?? undefined;
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
  if (problems.length > 0) throw validationError(problems);
  return impressions;
}
