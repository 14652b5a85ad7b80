import { z } from 'zod';
import type { Impression } from '../domain/impression.js';

/** Default event name of every analytics connector, as Split's own integrations name it. */
export const defaultEventName = 'get_treatment';

/**
 * Which vendor identity the impression `key` fills, per traffic type
 * (`{ user: user_id, account: device_id }`); `*` matches any traffic type not listed.
 * Impressions whose traffic type maps to nothing are skipped by the destination (and counted).
 */
export function identityMappingSchema<const T extends readonly [string, ...string[]]>(identities: T, fallback: T[number]) {
  return z
    .record(z.string().min(1), z.enum(identities))
    .default({ '*': fallback } as Record<string, T[number]>)
    .describe(`Traffic type → vendor identity (${identities.join(', ')}); "*" for any other traffic type`);
}

export function identityFor<T extends string>(impression: Impression, mapping: Readonly<Record<string, T>>): T | undefined {
  const trafficType = impression.trafficTypeName;
  if (trafficType !== undefined && mapping[trafficType] !== undefined) return mapping[trafficType];
  return mapping['*'];
}

/**
 * The impression as event properties, with these documented names: `split`, `treatment`,
 * `label`, `environmentId`, `environmentName`, `splitVersionNumber`, `bucketingKey`,
 * `trafficTypeName`, `sdk`, `sdkVersion`, `machineIp`, `machineName`, `receptionTimestamp`,
 * `impressionId`, `key`, `time`; then the impression's own `properties` (a JSON object)
 * merged on top: on a name clash the custom property wins, as in Split's integrations.
 */
export function impressionEventProperties(impression: Impression): Record<string, string | number> {
  const properties: Record<string, string | number> = {
    split: impression.split,
    treatment: impression.treatment,
    key: impression.key,
    time: impression.time,
    environmentId: impression.environmentId,
    impressionId: impression.id,
    receptionTimestamp: impression.receptionTimestamp,
  };
  const optional = ['label', 'environmentName', 'splitVersionNumber', 'bucketingKey', 'trafficTypeName', 'trafficTypeId', 'sdk', 'sdkVersion', 'machineIp', 'machineName'] as const;
  for (const name of optional) {
    const value = impression[name];
    if (value !== undefined) properties[name] = value;
  }
  return { ...properties, ...customProperties(impression) };
}

/** The impression's `properties` JSON string as an object of scalars; anything else is kept as a string. */
export function customProperties(impression: Impression): Record<string, string | number> {
  if (impression.properties === undefined) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(impression.properties);
  } catch {
    return { properties: impression.properties };
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return { properties: impression.properties };
  const out: Record<string, string | number> = {};
  for (const [name, value] of Object.entries(parsed)) {
    if (typeof value === 'string' || typeof value === 'number') out[name] = value;
    else if (typeof value === 'boolean') out[name] = String(value);
    else if (value !== null && value !== undefined) out[name] = JSON.stringify(value);
  }
  return out;
}
