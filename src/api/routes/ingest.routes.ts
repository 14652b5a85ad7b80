import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { AppError, problemsFromZod, validationError } from '../../domain/errors.js';
import { fromNativeJson } from '../../ingest/formats/native-json.js';
import { fromSplitSdkBulk } from '../../ingest/formats/split-sdk-bulk.js';
import { fromSplitWebhook } from '../../ingest/formats/split-webhook.js';
import type { IngestContext } from '../../ingest/formats/ingest-context.js';
import type { IngestService } from '../../ingest/accept-impressions.js';
import { IngestCount, IngestRequiredText, IngestText } from '../../ingest/impression-fields.js';
import { trafficChunks } from '../../ingest/traffic-chunks.js';
import type { RuntimeEnvironment } from '../../runtime/config-snapshot.js';
import type { ConfigWatcher } from '../../runtime/config-watcher.js';
import type { StatsStore } from '../../stores/stats-store.js';
import { emptyFlagTraffic, type FlagTraffic } from '../../stores/stats-store.js';
import type { Metrics } from '../../observability/metrics.js';
import type { AuthFailureLimiter } from '../auth-guard.js';

export interface IngestRouteDeps {
  readonly config: ConfigWatcher;
  readonly ingest: IngestService;
  readonly stats: StatsStore;
  readonly metrics: Metrics;
  readonly clock: () => number;
  /** Failed authentications per client, answered 429 past the limit (shared with the admin API). */
  readonly authFailures: AuthFailureLimiter;
}

function bearer(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (header === undefined) return undefined;
  const match = /^Bearer\s+(.+)$/i.exec(header.trim());
  return match?.[1]?.trim();
}

function header(request: FastifyRequest, name: string): string | undefined {
  const value = request.headers[name.toLowerCase()];
  return Array.isArray(value) ? value[0] : value;
}

function parseBody<T>(schema: z.ZodType<T>, body: unknown): T {
  const parsed = schema.safeParse(body);
  if (!parsed.success) throw validationError(problemsFromZod(parsed.error.issues));
  return parsed.data;
}

// `m` is the hour the counts are for (epoch ms, not stored); `ks` / `k` are the SDK's keys.
export const CountsSchema = z.object({ pf: z.array(z.object({ f: IngestRequiredText, m: z.number().int().nonnegative(), rc: IngestCount })) });
export const ServerKeysSchema = z.object({ keys: z.array(z.object({ f: IngestRequiredText, ks: z.array(IngestText) })) });
export const ClientKeysSchema = z.object({ keys: z.array(z.object({ k: IngestRequiredText, fs: z.array(IngestRequiredText) })) });

/**
 * The three doors impressions come in by: the Split SDK events API (so an SDK's `urls.events`
 * and `urls.telemetry` can point at `/api`), Split's outgoing webhook, and our own JSON API.
 */
export function registerIngestRoutes(app: FastifyInstance, deps: IngestRouteDeps): void {
  // Authentication runs on onRequest, before the body is read: a bad key is a 401 whatever it sent.
  const authenticated = new WeakMap<FastifyRequest, RuntimeEnvironment>();
  const sdkAuth = {
    onRequest: async (request: FastifyRequest, reply: FastifyReply) => void authenticated.set(request, deps.authFailures.authenticate(request, reply, () => sdkKeyEnvironment(request))),
  };
  const sdkEnvironment = (request: FastifyRequest): RuntimeEnvironment => authenticated.get(request) ?? sdkKeyEnvironment(request);
  // Keys and tokens are looked up by their SHA-256 (config-snapshot.ts): the lookup's timing
  // depends on the digest, never on how much of a guess matches the real key.
  const sdkKeyEnvironment = (request: FastifyRequest): RuntimeEnvironment => {
    const key = bearer(request);
    if (key === undefined) throw new AppError('FLAGSTREAM_ERR_UNAUTHORIZED', 'missing Authorization: Bearer <SDK key>', { field: 'authorization' });
    const environment = deps.config.current().environmentBySdkKey(key);
    if (environment === undefined) throw new AppError('FLAGSTREAM_ERR_UNAUTHORIZED', 'unknown SDK key', { field: 'authorization' });
    return environment;
  };
  const context = (environment: RuntimeEnvironment): IngestContext => ({
    environmentId: environment.environment.id,
    environmentName: environment.environment.name ?? environment.environment.id,
    receivedAt: deps.clock(),
  });
  const recordTraffic = async (environmentId: string, fill: (traffic: Map<string, FlagTraffic>, get: (flag: string) => FlagTraffic) => void) => {
    const traffic = new Map<string, FlagTraffic>();
    const get = (flag: string) => {
      let t = traffic.get(flag);
      if (t === undefined) traffic.set(flag, (t = emptyFlagTraffic()));
      return t;
    };
    fill(traffic, get);
    // In bounded pieces, one after the other: a request may carry hundreds of thousands of keys.
    for (const chunk of trafficChunks(traffic)) await deps.stats.record(environmentId, chunk);
  };

  app.post('/api/testImpressions/bulk', sdkAuth, async (request) => {
    const environment = sdkEnvironment(request);
    // The impression formats validate by hand as they convert (see field-checks.ts): they are the hot path.
    const impressions = fromSplitSdkBulk(
      request.body,
      { sdkVersion: header(request, 'SplitSDKVersion'), machineIp: header(request, 'SplitSDKMachineIP'), machineName: header(request, 'SplitSDKMachineName') },
      context(environment),
    );
    return { accepted: await deps.ingest.accept(environment.environment.id, impressions, 'split_sdk') };
  });

  app.post('/api/testImpressions/count', sdkAuth, async (request) => {
    const environment = sdkEnvironment(request);
    const body = parseBody(CountsSchema, request.body);
    await recordTraffic(environment.environment.id, (_, get) => {
      for (const entry of body.pf) get(entry.f).counted += entry.rc;
    });
    return { accepted: body.pf.length };
  });

  app.post('/api/v1/keys/ss', sdkAuth, async (request) => {
    const environment = sdkEnvironment(request);
    const body = parseBody(ServerKeysSchema, request.body);
    await recordTraffic(environment.environment.id, (_, get) => {
      for (const entry of body.keys) for (const key of entry.ks) get(entry.f).keys.add(key);
    });
    return { accepted: body.keys.length };
  });

  app.post('/api/v1/keys/cs', sdkAuth, async (request) => {
    const environment = sdkEnvironment(request);
    const body = parseBody(ClientKeysSchema, request.body);
    await recordTraffic(environment.environment.id, (_, get) => {
      for (const entry of body.keys) for (const flag of entry.fs) get(flag).keys.add(entry.k);
    });
    return { accepted: body.keys.length };
  });

  // Accepted and counted, so SDKs pointed at flagstream log no errors; their content is not routed.
  for (const [path, counter] of [
    ['/api/v1/metrics/config', 'sdk.metrics.config'],
    ['/api/v1/metrics/usage', 'sdk.metrics.usage'],
    ['/api/events/bulk', 'sdk.events'],
  ] as const) {
    app.post(path, sdkAuth, async (request) => {
      sdkEnvironment(request);
      const count = Array.isArray(request.body) ? request.body.length : 1;
      await deps.stats.increment(counter, count);
      return { accepted: count };
    });
  }

  const webhookEnvironment = (request: FastifyRequest): RuntimeEnvironment => {
    const query = request.query as Record<string, string | undefined>;
    const token = query.token ?? bearer(request);
    if (token === undefined) throw new AppError('FLAGSTREAM_ERR_UNAUTHORIZED', 'missing webhook token: add ?token=<webhookToken> to the URL or send Authorization: Bearer <webhookToken>', { field: 'token' });
    const environment = deps.config.current().environmentByWebhookToken(token);
    if (environment === undefined) throw new AppError('FLAGSTREAM_ERR_UNAUTHORIZED', 'unknown webhook token', { field: 'token' });
    return environment;
  };
  const webhookAuth = {
    onRequest: async (request: FastifyRequest, reply: FastifyReply) => void authenticated.set(request, deps.authFailures.authenticate(request, reply, () => webhookEnvironment(request))),
  };

  app.post('/webhooks/split/impressions', webhookAuth, async (request) => {
    const environment = authenticated.get(request) ?? webhookEnvironment(request);
    const impressions = fromSplitWebhook(request.body, context(environment));
    return { accepted: await deps.ingest.accept(environment.environment.id, impressions, 'split_webhook') };
  });

  app.post('/v1/impressions', sdkAuth, async (request, reply) => {
    const environment = sdkEnvironment(request);
    const impressions = fromNativeJson(request.body, context(environment));
    const accepted = await deps.ingest.accept(environment.environment.id, impressions, 'native');
    return reply.status(202).send({ accepted, ids: impressions.map((i) => i.id) });
  });
}
