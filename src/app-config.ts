import { z } from 'zod';
import { AppError, problemsFromZod } from './domain/errors.js';
import { isClusterUrl, parseClusterUrl } from './runtime/redis-client.js';

const bool = z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1');

/** `127.0.0.1:6379`, `redis:6379` or `[::1]:6379` (host and port, as the README's table shows) get `redis://` in front. */
export function normalizeRedisUrl(value: unknown): unknown {
  if (value === '') return undefined;
  if (typeof value !== 'string' || value.includes('://')) return value;
  return /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:\d+)?$/.test(value) ? `redis://${value}` : value;
}

function parsesAsCluster(url: string): boolean {
  try {
    parseClusterUrl(url);
    return true;
  } catch {
    return false;
  }
}

/** Every setting read from the environment, in one schema, read once at start. */
export const EnvSchema = z.object({
  REDIS_URL: z
    .preprocess(
      normalizeRedisUrl,
      z
        .union([z.url({ protocol: /^rediss?$/ }), z.string().refine((value) => isClusterUrl(value) && parsesAsCluster(value))], {
          error: 'expected redis://[user:password@]host:port[/db], rediss://…, host:port, or for a Redis Cluster redis+cluster://[user:password@]host:port,host:port,… (rediss+cluster:// for TLS)',
        })
        .optional(),
    )
    .describe('Redis to use; unset: 127.0.0.1:6379, else a private redis-server child'),
  PORT: z.coerce.number().int().min(0).max(65535).default(8080),
  HOST: z.string().default('0.0.0.0'),
  ADMIN_TOKEN: z.string().min(1).optional().describe('Bearer token of /admin/v1; unset: the admin API answers 401'),
  FLAGSTREAM_CONFIG: z.string().optional().describe('YAML configuration applied at start'),
  FLAGSTREAM_ENCRYPTION_KEY: z.string().optional().describe('base64 of 32 bytes; encrypts secrets at rest'),
  FLAGSTREAM_DESTINATION_ALLOWLIST: z.string().default('').describe('Hosts, IPs or CIDRs destinations may reach though not public (private, loopback, reserved…)'),
  FLAGSTREAM_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  FLAGSTREAM_REDIS_PREFIX: z.string().regex(/^[A-Za-z0-9_.:-]+$/).default('flagstream'),
  FLAGSTREAM_REDIS_PARTITIONS: z.coerce.number().int().min(1).max(64).default(1).describe('Partitions of the data plane (one hash tag each, spread over Redis Cluster masters); fixed for a deployment\'s life'),
  FLAGSTREAM_MAX_BODY_BYTES: z.coerce.number().int().min(1024).default(5 * 1024 * 1024).describe('Largest ingest body, after decompression'),
  FLAGSTREAM_INGEST_BACKLOG_LIMIT: z.coerce.number().int().min(1).default(20_000).describe('Waiting ingest requests (stored batches) above which ingest answers 503'),
  FLAGSTREAM_ROUTING_CONCURRENCY: z.coerce.number().int().min(1).default(64),
  FLAGSTREAM_DELIVERY_CONCURRENCY: z.coerce.number().int().min(1).default(128),
  FLAGSTREAM_HEALTH_CACHE_MS: z.coerce.number().int().min(0).max(60_000).default(1_000).describe('How long a process trusts the destination health it read'),
  FLAGSTREAM_DELIVERY_MEMORY_BYTES: z.coerce.number().int().min(1_000_000).default(32 * 1024 * 1024).describe('Bytes of impressions (as JSON) one worker process delivers at once'),
  FLAGSTREAM_MAX_JOB_CRASHES: z.coerce.number().int().min(0).default(5).describe('Worker crashes a job may cause (beyond its failed attempts) before it is dead-lettered as worker_crashed'),
  FLAGSTREAM_JOB_LOCK_MS: z.coerce.number().int().min(500).default(30_000).describe('How long a crashed worker holds a job before another takes it over'),
  FLAGSTREAM_BATCH_WAIT_CAP_MS: z.coerce.number().int().min(0).default(1000).describe('Longest time routing holds impressions to fill a batch'),
  FLAGSTREAM_DEAD_LETTER_RETENTION: z.string().default('14d'),
  FLAGSTREAM_MAX_DELIVERY_AGE: z.string().default('3d'),
  FLAGSTREAM_SHUTDOWN_TIMEOUT: z.string().default('15s').describe('Longest time serve takes to exit after SIGTERM or SIGINT'),
  FLAGSTREAM_REDIS_DIR: z.string().default('.flagstream/redis').describe('Data folder of the private redis-server child'),
  FLAGSTREAM_TRUST_PROXY: bool.default(false),
  FLAGSTREAM_AUTH_FAILURE_LIMIT: z.coerce.number().int().min(0).default(30).describe('Failed ingest/admin authentications per client IP per window before 429; 0: no limit'),
  FLAGSTREAM_AUTH_FAILURE_WINDOW: z.string().default('1m').describe('Window of FLAGSTREAM_AUTH_FAILURE_LIMIT'),
  FLAGSTREAM_MONITOR_MINUTES_RETENTION: z.string().default('7d').describe('How long monitoring keeps minute buckets'),
  FLAGSTREAM_MONITOR_HOURS_RETENTION: z.string().default('90d').describe('How long monitoring keeps hour buckets and daily unique keys'),
  FLAGSTREAM_ADMIN_URL: z.string().url().optional().describe('Where `flagstream tail` finds the admin API; unset: http://127.0.0.1:$PORT'),
  FLAGSTREAM_LOG_FORMAT: z.enum(['auto', 'json', 'pretty']).default('auto').describe('auto: readable on a terminal, JSON lines otherwise'),
});
export type AppEnv = z.infer<typeof EnvSchema>;

export function readEnv(source: NodeJS.ProcessEnv = process.env): AppEnv {
  const parsed = EnvSchema.safeParse(source);
  if (!parsed.success) {
    const problems = problemsFromZod(parsed.error.issues);
    throw new AppError('FLAGSTREAM_ERR_CONFIG', `invalid environment: ${problems.map((p) => `${p.field}: ${p.message}`).join('; ')}`, { field: problems[0]?.field });
  }
  return parsed.data;
}
