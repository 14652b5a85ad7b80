import { createHash } from 'node:crypto';
import type { z } from 'zod';
import { formatPath, type FieldProblem, problemsFromZod, validationError } from '../../src/domain/errors.js';
import { type Impression, type ImpressionIdentity, splitSdkVersionHeader } from '../../src/domain/impression.js';
import type { IngestContext } from '../../src/ingest/formats/ingest-context.js';
import { NativeImpressionsSchema } from '../../src/ingest/formats/native-json.js';
import { SplitSdkBulkSchema, type SplitSdkHeaders, splitSdkHeaderNames } from '../../src/ingest/formats/split-sdk-bulk.js';
import { SplitWebhookSchema } from '../../src/ingest/formats/split-webhook.js';
import { IngestText, laterThanReception } from '../../src/ingest/impression-fields.js';

/**
 * Ingest as it was before the impression formats were validated by hand: each format's zod
 * schema, then the conversion to canonical impressions, kept verbatim (with the id computed as it
 * was, by createHash) as the oracle the hand-written validators are compared with. Bench and
 * tests only.
 */

function referenceImpressionId(i: ImpressionIdentity): string {
  const material = [
    i.environmentId,
    i.split,
    i.key,
    i.bucketingKey ?? '',
    i.treatment,
    i.label ?? '',
    String(i.time),
    i.splitVersionNumber === undefined ? '' : String(i.splitVersionNumber),
    i.properties ?? '',
  ].join('\u001f');
  return createHash('sha256').update(material).digest('base64url').slice(0, 32);
}

/** What the ingest route did: `schema.safeParse(body)`, a 400 from its issues, else the parsed body. */
function parseBody<T>(schema: z.ZodType<T>, body: unknown): T {
  const parsed = schema.safeParse(body);
  if (!parsed.success) throw validationError(problemsFromZod(parsed.error.issues));
  return parsed.data;
}

function known(value: string | undefined): string | undefined {
  return value === undefined || value === '' || value === 'NA' || value === 'unknown' ? undefined : value;
}

export function referenceSplitSdkBulk(rawBody: unknown, headers: SplitSdkHeaders, context: IngestContext): Impression[] {
  const body = parseBody(SplitSdkBulkSchema, rawBody);
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
        id: referenceImpressionId(fields),
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

export function referenceSplitWebhook(rawBody: unknown, context: IngestContext): Impression[] {
  const body = parseBody(SplitWebhookSchema, rawBody);
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
      id: referenceImpressionId(fields),
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

export function referenceNativeJson(rawBody: unknown, context: IngestContext): Impression[] {
  const body = parseBody(NativeImpressionsSchema, rawBody);
  const problems: FieldProblem[] = [];
  const impressions = body.impressions.map(({ id, properties, ...rest }, index) => {
    const late = laterThanReception(rest.time, context.receivedAt);
    if (late !== undefined) problems.push({ field: formatPath(['impressions', index, 'time']), message: late });
    const fields = { ...rest, environmentId: context.environmentId, ...(properties === undefined ? {} : { properties }) };
    return {
      id: id ?? referenceImpressionId(fields),
      ...fields,
      environmentName: context.environmentName,
      receptionTimestamp: context.receivedAt,
    };
  });
  if (problems.length > 0) throw validationError(problems);
  return impressions;
}
