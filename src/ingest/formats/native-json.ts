import { z } from 'zod';
import { formatPath, type FieldProblem, validationError } from '../../domain/errors.js';
import { type Impression, impressionId } from '../../domain/impression.js';
import { IngestChangeNumber, IngestPropertiesInput, IngestRequiredText, IngestText, IngestTime, laterThanReception } from '../impression-fields.js';
import type { IngestContext } from './ingest-context.js';

/**
 * flagstream's own `POST /v1/impressions`: `{ "impressions": [ <canonical impression> ] }`.
 * The environment comes from the SDK key; `id` may be given (it is then kept, so a client can
 * choose its own idempotency key) or is derived; `properties` may be an object or a JSON string.
 */
export const NativeImpressionsSchema = z.object({
  impressions: z
    .array(
      z.object({
        id: z.string().min(1).max(128).optional(),
        key: IngestRequiredText,
        bucketingKey: IngestText.optional(),
        split: IngestRequiredText,
        treatment: IngestRequiredText,
        label: IngestText.optional(),
        time: IngestTime,
        splitVersionNumber: IngestChangeNumber.optional(),
        trafficTypeId: IngestText.optional(),
        trafficTypeName: IngestText.optional(),
        sdk: IngestText.optional(),
        sdkVersion: IngestText.optional(),
        machineIp: IngestText.optional(),
        machineName: IngestText.optional(),
        properties: IngestPropertiesInput.optional(),
      }),
    )
    .min(1),
});

export function fromNativeJson(body: z.infer<typeof NativeImpressionsSchema>, context: IngestContext): Impression[] {
  const problems: FieldProblem[] = [];
  const impressions = body.impressions.map(({ id, properties, ...rest }, index) => {
    const late = laterThanReception(rest.time, context.receivedAt);
    if (late !== undefined) problems.push({ field: formatPath(['impressions', index, 'time']), message: late });
    const fields = { ...rest, environmentId: context.environmentId, ...(properties === undefined ? {} : { properties }) };
    return {
      id: id ?? impressionId(fields),
      ...fields,
      environmentName: context.environmentName,
      receptionTimestamp: context.receivedAt,
    };
  });
  if (problems.length > 0) throw validationError(problems);
  return impressions;
}
