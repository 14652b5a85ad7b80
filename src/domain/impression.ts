import { hash } from 'node:crypto';
import { z } from 'zod';

/**
 * The canonical impression: one feature-flag evaluation, with the field names of Split's
 * outgoing impressions webhook (so a receiver written for Split keeps working) plus
 * `trafficTypeId`, `trafficTypeName`, `receptionTimestamp` and our idempotency `id`.
 */
export const ImpressionSchema = z.object({
  id: z.string().min(1).describe('Deterministic idempotency key; destinations use it to dedupe'),
  key: z.string().min(1).describe('Matching key that was evaluated'),
  bucketingKey: z.string().optional(),
  split: z.string().min(1).describe('Feature flag name'),
  treatment: z.string().min(1),
  label: z.string().optional().describe('Targeting rule label; removed where labelsEnabled is false'),
  time: z.number().int().nonnegative().describe('Evaluation time, epoch ms'),
  splitVersionNumber: z.number().int().optional().describe('Flag change number the SDK evaluated'),
  environmentId: z.string().min(1),
  environmentName: z.string().optional(),
  trafficTypeId: z.string().optional(),
  trafficTypeName: z.string().optional(),
  sdk: z.string().optional(),
  sdkVersion: z.string().optional(),
  machineIp: z.string().optional(),
  machineName: z.string().optional(),
  receptionTimestamp: z.number().int().nonnegative().describe('When flagstream accepted it, epoch ms'),
  properties: z.string().optional().describe('Impression properties as a JSON string, as Split sends them'),
});
export type Impression = z.infer<typeof ImpressionSchema>;

/** The fields that make two impressions "the same evaluation". */
export interface ImpressionIdentity {
  environmentId: string;
  split: string;
  key: string;
  bucketingKey?: string | undefined;
  treatment: string;
  label?: string | undefined;
  time: number;
  splitVersionNumber?: number | undefined;
  properties?: string | undefined;
}

/**
 * Same evaluation → same id, whichever door it came in by and however often it is retried or
 * replayed. The id is computed once at ingest and then travels with the impression.
 */
export function impressionId(i: ImpressionIdentity): string {
  return impressionIdOf(i.environmentId, i.split, i.key, i.bucketingKey, i.treatment, i.label, i.time, i.splitVersionNumber, i.properties);
}

/** impressionId of the fields themselves, for ingest, which has them at hand and need not build an ImpressionIdentity. */
export function impressionIdOf(
  environmentId: string,
  split: string,
  key: string,
  bucketingKey: string | undefined,
  treatment: string,
  label: string | undefined,
  time: number,
  splitVersionNumber: number | undefined,
  properties: string | undefined,
): string {
  const material = `${environmentId}\u001f${split}\u001f${key}\u001f${bucketingKey ?? ''}\u001f${treatment}\u001f${label ?? ''}\u001f${time}\u001f${splitVersionNumber ?? ''}\u001f${properties ?? ''}`;
  // One-shot hash: the same digest as createHash().update().digest(), without a Hash object per impression.
  return hash('sha256', material, 'base64url').slice(0, 32);
}

/** `nodejs-11.11.0` → { sdk: 'nodejs', sdkVersion: '11.11.0' }; `.NET_CORE-7.6.0` → '.NET_CORE', '7.6.0'. */
export function splitSdkVersionHeader(header: string | undefined): { sdk?: string; sdkVersion?: string } {
  if (!header) return {};
  const dash = header.indexOf('-');
  if (dash <= 0) return { sdk: header };
  return { sdk: header.slice(0, dash), sdkVersion: header.slice(dash + 1) };
}
