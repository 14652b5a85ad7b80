import { z } from 'zod';
import { type AppError, formatPath, type FieldProblem, validationError } from '../../domain/errors.js';
import type { Impression } from '../../domain/impression.js';
import {
  addFound,
  changeNumberProblem,
  type Found,
  clientIdProblem,
  invalidInput,
  isJsonObject,
  propertiesInputText,
  requiredTextProblem,
  textProblem,
  timeProblems,
  tooShort,
  wrongType,
  wrongTypeAndLength,
} from '../field-checks.js';
import { IngestChangeNumber, IngestPropertiesInput, IngestRequiredText, IngestText, IngestTime, laterThanReception, propertiesTextProblem } from '../impression-fields.js';
import { buildImpression, type UncheckedImpression } from './build-impression.js';
import type { IngestContext } from './ingest-context.js';

/**
 * flagstream's own `POST /v1/impressions`: `{ "impressions": [ <canonical impression> ] }`.
 * The environment comes from the SDK key; `id` may be given (it is then kept, so a client can
 * choose its own idempotency key) or is derived; `properties` may be an object or a JSON string.
 *
 * This schema documents the format (OpenAPI); fromNativeJson validates by hand, with the same
 * problems, in one pass that also builds the impressions.
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


/** Adds what a check found on field `name` of impression `index`. */
function report(problems: FieldProblem[], index: number, name: string, found: Found): void {
  if (found === undefined) return;
  addFound(problems, formatPath(['impressions', index, name]), found);
}

/** An optional text field: absent is fine (null is not: the native format has no nulls). */
function optionalTextProblem(value: unknown): string | undefined {
  return value === undefined ? undefined : textProblem(value);
}

/** The 400 for an `impressions` that is not a non-empty array. */
function listRefused(found: Found): AppError {
  const problems: FieldProblem[] = [];
  addFound(problems, 'impressions', found);
  return validationError(problems);
}

/**
 * The impressions of a native body, or a 400 naming every field that is not as
 * NativeImpressionsSchema says (in its order); once the body is valid, the time bound to reception.
 */
export function fromNativeJson(body: unknown, context: IngestContext): Impression[] {
  if (!isJsonObject(body)) throw validationError([{ field: formatPath([]), message: wrongType('object', body) }]);
  const list = body.impressions;
  if (!Array.isArray(list)) throw listRefused(wrongTypeAndLength('array', list, 1));
  if (list.length === 0) throw listRefused(tooShort(list, 1));
  const { receivedAt } = context;
  const problems: FieldProblem[] = [];
  const late: FieldProblem[] = [];
  const impressions: Impression[] = [];
  for (let index = 0; index < list.length; index += 1) {
    const item: unknown = list[index];
    if (!isJsonObject(item)) {
      problems.push({ field: formatPath(['impressions', index]), message: wrongType('object', item) });
      continue;
    }
    const n = item as UncheckedImpression;
    if (n.id !== undefined) report(problems, index, 'id', clientIdProblem(n.id));
    report(problems, index, 'key', requiredTextProblem(n.key));
    report(problems, index, 'bucketingKey', optionalTextProblem(n.bucketingKey));
    report(problems, index, 'split', requiredTextProblem(n.split));
    report(problems, index, 'treatment', requiredTextProblem(n.treatment));
    report(problems, index, 'label', optionalTextProblem(n.label));
    report(problems, index, 'time', timeProblems(n.time));
    if (n.splitVersionNumber !== undefined) report(problems, index, 'splitVersionNumber', changeNumberProblem(n.splitVersionNumber));
    report(problems, index, 'trafficTypeId', optionalTextProblem(n.trafficTypeId));
    report(problems, index, 'trafficTypeName', optionalTextProblem(n.trafficTypeName));
    report(problems, index, 'sdk', optionalTextProblem(n.sdk));
    report(problems, index, 'sdkVersion', optionalTextProblem(n.sdkVersion));
    report(problems, index, 'machineIp', optionalTextProblem(n.machineIp));
    report(problems, index, 'machineName', optionalTextProblem(n.machineName));
    let properties: string | undefined;
    if (n.properties !== undefined) {
      properties = propertiesInputText(n.properties);
      report(problems, index, 'properties', properties === undefined ? invalidInput : propertiesTextProblem(properties));
    }
    // Past the first problem only problems are looked for: nothing of the request is accepted.
    if (problems.length > 0) continue;

    // Checked above: the casts only tell TypeScript what the checks found.
    const time = n.time as number;
    const lateProblem = laterThanReception(time, receivedAt);
    if (lateProblem !== undefined) late.push({ field: formatPath(['impressions', index, 'time']), message: lateProblem });
    impressions.push(
      buildImpression(
        {
          id: n.id as string | undefined,
          key: n.key as string,
          split: n.split as string,
          treatment: n.treatment as string,
          time,
          bucketingKey: n.bucketingKey as string | undefined,
          label: n.label as string | undefined,
          splitVersionNumber: n.splitVersionNumber as number | undefined,
          properties,
          trafficTypeId: n.trafficTypeId as string | undefined,
          trafficTypeName: n.trafficTypeName as string | undefined,
          sdk: n.sdk as string | undefined,
          sdkVersion: n.sdkVersion as string | undefined,
          machineIp: n.machineIp as string | undefined,
          machineName: n.machineName as string | undefined,
        },
        context,
      ),
    );
  }
  if (problems.length > 0) throw validationError(problems);
  if (late.length > 0) throw validationError(late);
  return impressions;
}
