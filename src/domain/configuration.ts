import { z } from 'zod';
import { durationSchema } from './duration.js';

/**
 * The single source of the configuration types. The YAML file, the admin API and the Redis
 * copy all parse through these schemas. Input (a file, an API body) is also checked for keys
 * these schemas do not name, and connector settings against the connector's own schema, in the
 * same pass (see admin/validate-configuration.ts); the stored copy is read leniently.
 */

const IdSchema = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'use 1-64 letters, digits, dot, dash or underscore, starting with a letter or digit');

export const FlagSchema = z.object({
  name: z.string().min(1).describe('Feature flag name, as the SDK reports it'),
  trafficType: z.string().min(1).default('user').describe('Traffic type of the flag'),
  trafficTypeId: z.string().optional(),
  trackImpressions: z.boolean().default(true).describe('false: impressions of this flag are dropped (and counted)'),
});
export type Flag = z.infer<typeof FlagSchema>;

export const DestinationFiltersSchema = z.object({
  flags: z.array(z.string().min(1)).optional().describe('Glob patterns of flag names; default all'),
  trafficTypes: z.array(z.string().min(1)).optional().describe('Glob patterns of traffic types; default all'),
});
export type DestinationFilters = z.infer<typeof DestinationFiltersSchema>;

/** How the delivery core treats one destination; every field has a default. */
export const DeliveryPolicySchema = z.object({
  retrySchedule: z
    .array(durationSchema({ max: 30 * 86_400_000 }))
    .max(30)
    .default([5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000])
    .describe('Waits between attempts after a failed one; its length is the number of retries'),
  maxConcurrentRequests: z.number().int().min(1).max(256).optional().describe('Requests in flight to this destination per worker process'),
  requestsPerSecond: z.number().positive().optional().describe('Client-side pacing for this destination'),
  timeout: durationSchema({ max: 3_600_000 }).default(10_000).describe('Timeout of one request'),
  circuitBreakerThreshold: z.number().int().min(1).default(10).describe('Consecutive failed attempts that pause the destination'),
  circuitBreakerCooldown: durationSchema({ max: 7 * 86_400_000 }).default(60_000).describe('Wait before a paused destination is probed again'),
});
export type DeliveryPolicy = z.infer<typeof DeliveryPolicySchema>;

export const DestinationSchema = z.object({
  id: IdSchema.describe('Unique across all environments; used in metrics, dead letters and the CLI'),
  type: z.string().min(1).describe('Connector type, e.g. webhook, s3, amplitude'),
  name: z.string().optional(),
  enabled: z.boolean().default(true),
  settings: z.record(z.string(), z.unknown()).default({}).describe("Validated by the connector's schema"),
  filters: DestinationFiltersSchema.optional(),
  delivery: DeliveryPolicySchema.prefault({}),
});
export type Destination = z.infer<typeof DestinationSchema>;
export type DestinationInput = z.input<typeof DestinationSchema>;

export const EnvironmentSchema = z.object({
  id: IdSchema.describe('Stable id; becomes environmentId on impressions'),
  name: z.string().min(1).optional(),
  sdkKeys: z.array(z.string().min(1)).default([]).describe('Bearer keys of SDK and native-API traffic'),
  webhookToken: z.string().min(1).optional().describe("Authenticates Split's outgoing impressions webhook"),
  labelsEnabled: z.boolean().default(true).describe('false: targeting-rule labels are removed before fan-out'),
  unknownFlags: z.enum(['track', 'drop']).default('track').describe('What to do with impressions of flags not listed'),
  flags: z.array(FlagSchema).default([]),
  destinations: z.array(DestinationSchema).default([]),
});
export type Environment = z.infer<typeof EnvironmentSchema>;
export type EnvironmentInput = z.input<typeof EnvironmentSchema>;

export const ConfigurationSchema = z.object({
  plugins: z.array(z.string().min(1)).default([]).describe('Connector modules to load: local paths or npm package names'),
  environments: z.array(EnvironmentSchema).default([]),
});
export type Configuration = z.infer<typeof ConfigurationSchema>;
export type ConfigurationInput = z.input<typeof ConfigurationSchema>;
