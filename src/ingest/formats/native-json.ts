import { z } from 'zod';
import { type Impression, ImpressionSchema, impressionId } from '../../domain/impression.js';
import type { IngestContext } from './ingest-context.js';

/**
 * flagstream's own `POST /v1/impressions`: `{ "impressions": [ <canonical impression> ] }`.
 * The environment comes from the SDK key; `id` may be given (it is then kept, so a client can
 * choose its own idempotency key) or is derived; `properties` may be an object or a JSON string.
 */
export const NativeImpressionsSchema = z.object({
  impressions: z
    .array(
      ImpressionSchema.omit({ id: true, environmentId: true, environmentName: true, receptionTimestamp: true, properties: true }).extend({
        id: z.string().min(1).max(128).optional(),
        properties: z.union([z.string(), z.record(z.string(), z.unknown())]).optional(),
      }),
    )
    .min(1),
});

export function fromNativeJson(body: z.infer<typeof NativeImpressionsSchema>, context: IngestContext): Impression[] {
  return body.impressions.map(({ id, properties, ...rest }) => {
    const text = properties === undefined ? undefined : typeof properties === 'string' ? properties : JSON.stringify(properties);
    const fields = { ...rest, environmentId: context.environmentId, ...(text === undefined ? {} : { properties: text }) };
    return {
      id: id ?? impressionId(fields),
      ...fields,
      environmentName: context.environmentName,
      receptionTimestamp: context.receivedAt,
    };
  });
}
