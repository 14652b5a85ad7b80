import { z } from 'zod';
import { formatPath, type FieldProblem, validationError } from '../../domain/errors.js';
import type { Impression } from '../../domain/impression.js';
import {
  addFound,
  changeNumberProblem,
  type Found,
  invalidInput,
  isJsonObject,
  propertiesInputText,
  requiredTextProblem,
  textProblem,
  timeProblems,
  wrongType,
} from '../field-checks.js';
import { IngestChangeNumber, IngestPropertiesInput, IngestRequiredText, IngestText, IngestTime, laterThanReception, propertiesTextProblem } from '../impression-fields.js';
import { buildImpression, type UncheckedImpression } from './build-impression.js';
import type { IngestContext } from './ingest-context.js';

const optionalText = IngestText.optional().nullable();

/**
 * Split's outgoing impressions webhook: a JSON array of impressions with the field names our
 * canonical impression keeps. The environment is the flagstream environment that owns the
 * token (Split's own environment id is replaced, so routing and filters use ours).
 *
 * This schema documents the format (OpenAPI); fromSplitWebhook validates by hand, with the same
 * problems, in one pass that also builds the impressions.
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


/** Adds what a check found on field `name` of impression `index`. */
function report(problems: FieldProblem[], index: number, name: string, found: Found): void {
  if (found === undefined) return;
  addFound(problems, formatPath([index, name]), found);
}

/** An optional text field: absent and null are fine. */
function optionalTextProblem(value: unknown): string | undefined {
  return value == null ? undefined : textProblem(value);
}

/**
 * The impressions of a webhook body, or a 400 naming every field that is not as
 * SplitWebhookSchema says (in its order); once the body is valid, the time bound to reception.
 */
export function fromSplitWebhook(body: unknown, context: IngestContext): Impression[] {
  if (!Array.isArray(body)) throw validationError([{ field: formatPath([]), message: wrongType('array', body) }]);
  const { receivedAt } = context;
  const problems: FieldProblem[] = [];
  const late: FieldProblem[] = [];
  const impressions: Impression[] = [];
  for (let index = 0; index < body.length; index += 1) {
    const item: unknown = body[index];
    if (!isJsonObject(item)) {
      problems.push({ field: formatPath([index]), message: wrongType('object', item) });
      continue;
    }
    const w = item as UncheckedImpression;
    report(problems, index, 'key', requiredTextProblem(w.key));
    report(problems, index, 'split', requiredTextProblem(w.split));
    report(problems, index, 'treatment', requiredTextProblem(w.treatment));
    report(problems, index, 'time', timeProblems(w.time));
    report(problems, index, 'environmentId', optionalTextProblem(w.environmentId));
    report(problems, index, 'environmentName', optionalTextProblem(w.environmentName));
    report(problems, index, 'bucketingKey', optionalTextProblem(w.bucketingKey));
    report(problems, index, 'label', optionalTextProblem(w.label));
    report(problems, index, 'machineName', optionalTextProblem(w.machineName));
    report(problems, index, 'machineIp', optionalTextProblem(w.machineIp));
    if (w.splitVersionNumber != null) report(problems, index, 'splitVersionNumber', changeNumberProblem(w.splitVersionNumber));
    report(problems, index, 'sdk', optionalTextProblem(w.sdk));
    report(problems, index, 'sdkVersion', optionalTextProblem(w.sdkVersion));
    report(problems, index, 'trafficTypeId', optionalTextProblem(w.trafficTypeId));
    report(problems, index, 'trafficTypeName', optionalTextProblem(w.trafficTypeName));
    let properties: string | undefined;
    if (w.properties != null) {
      properties = propertiesInputText(w.properties);
      report(problems, index, 'properties', properties === undefined ? invalidInput : propertiesTextProblem(properties));
    }
    // Past the first problem only problems are looked for: nothing of the request is accepted.
    if (problems.length > 0) continue;

    // Checked above: the casts only tell TypeScript what the checks found.
    const time = w.time as number;
    const lateProblem = laterThanReception(time, receivedAt);
    if (lateProblem !== undefined) late.push({ field: formatPath([index, 'time']), message: lateProblem });
    // Split sends an empty bucketing key and empty properties for "none".
    const bucketingKey = w.bucketingKey === '' ? undefined : (w.bucketingKey as string | null | undefined);
    impressions.push(
      buildImpression(
        {
          key: w.key as string,
          split: w.split as string,
          treatment: w.treatment as string,
          time,
          bucketingKey: bucketingKey ?? undefined,
          label: (w.label as string | null | undefined) ?? undefined,
          splitVersionNumber: (w.splitVersionNumber as number | null | undefined) ?? undefined,
          properties: properties === '' ? undefined : properties,
          trafficTypeId: (w.trafficTypeId as string | null | undefined) ?? undefined,
          trafficTypeName: (w.trafficTypeName as string | null | undefined) ?? undefined,
          sdk: (w.sdk as string | null | undefined) ?? undefined,
          sdkVersion: (w.sdkVersion as string | null | undefined) ?? undefined,
          machineIp: (w.machineIp as string | null | undefined) ?? undefined,
          machineName: (w.machineName as string | null | undefined) ?? undefined,
        },
        context,
      ),
    );
  }
  if (problems.length > 0) throw validationError(problems);
  if (late.length > 0) throw validationError(late);
  return impressions;
}
