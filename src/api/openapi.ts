import { fastifySwagger } from '@fastify/swagger';
import { type FastifySwaggerUiOptions, fastifySwaggerUi } from '@fastify/swagger-ui';
import type { FastifyInstance, FastifySchema } from 'fastify';
import { z } from 'zod';
import { ImpressionsBackfillRequestSchema, ImpressionsExportRequestSchema } from '../admin/impressions-export-service.js';
import { ConfigurationSchema, DestinationSchema, EnvironmentSchema, FlagSchema } from '../domain/configuration.js';
import { DeadLetterSchema } from '../domain/dead-letter.js';
import { NativeImpressionsSchema } from '../ingest/formats/native-json.js';
import { SplitSdkBulkSchema } from '../ingest/formats/split-sdk-bulk.js';
import { SplitWebhookSchema } from '../ingest/formats/split-webhook.js';
import { ClientKeysSchema, CountsSchema, ServerKeysSchema } from './routes/ingest.routes.js';

/**
 * `/openapi.json` and a browsable reference at `/docs` (Swagger UI, assets served from the
 * package). The routes keep validating inside their handlers (with zod, or for the impression
 * formats by hand with the same answers), so their schemas are not
 * put on the route definitions (fastify would then validate with ajv and answer other 400s):
 * this module describes each route for @fastify/swagger's `transform`, with JSON Schemas made
 * from the same zod schemas by `z.toJSONSchema`. A route not described here still appears, with
 * a summary made from its path; routes under /docs and /ui (the dashboard) are not API.
 */

type JsonSchema = Record<string, unknown>;

interface RouteDoc {
  readonly summary: string;
  readonly description?: string;
  readonly body?: z.ZodType;
  readonly querystring?: z.ZodObject;
  readonly headers?: z.ZodObject;
  /** Success status → its description and body schema (JSON unless `contentTypes`). */
  readonly responses?: Record<number, { description: string; body?: z.ZodType; contentTypes?: readonly string[] }>;
}

/** A request schema as JSON Schema (draft 2020-12, OpenAPI 3.1's dialect); inputs, so defaults make fields optional. */
export function jsonSchemaOf(schema: z.ZodType): JsonSchema {
  const { $schema: _dialect, ...rest } = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as JsonSchema;
  return rest;
}

const ErrorBodySchema = z.object({
  error: z.object({
    code: z.string().describe('FLAGSTREAM_ERR_VALIDATION, FLAGSTREAM_ERR_UNAUTHORIZED, FLAGSTREAM_ERR_NOT_FOUND, …'),
    message: z.string(),
    field: z.string().optional().describe('The offending field, e.g. environments[0].destinations[1].settings.url'),
    details: z.array(z.object({ field: z.string(), message: z.string() })).optional(),
  }),
});
const AcceptedSchema = z.object({ accepted: z.number().int() });
const SplitSdkHeadersSchema = z.object({
  SplitSDKVersion: z.string().optional().describe('e.g. nodejs-11.11.0'),
  SplitSDKMachineIP: z.string().optional(),
  SplitSDKMachineName: z.string().optional(),
});
const SelectionSchema = z.object({
  ids: z.array(z.string()).optional().describe('Dead letter ids'),
  destination: z.string().optional().describe('Every dead letter of this destination'),
  since: z.string().optional().describe('ISO date, epoch ms, or a duration back from now (2h, 7d)'),
  until: z.string().optional(),
  status: z.enum(['pending', 'replayed']).optional(),
  all: z.boolean().optional().describe('Every dead letter'),
  dryRun: z.boolean().optional(),
});
const DeadLetterQuerySchema = z.object({
  destination: z.string().optional(),
  since: z.string().optional().describe('ISO date, epoch ms, or a duration back from now (2h, 7d)'),
  until: z.string().optional(),
  status: z.enum(['pending', 'replayed']).optional(),
  limit: z.string().optional().describe('At most this many (default 100)'),
});
const ApplyQuerySchema = z.object({ prune: z.enum(['true', 'false']).optional(), dryRun: z.enum(['true', 'false']).optional() });
const PauseBodySchema = z.object({ reason: z.string().optional().describe('Shown in status') });
const counted = { 200: { description: 'Accepted', body: AcceptedSchema } };

const ingestDocs: Record<string, RouteDoc> = {
  'POST /api/testImpressions/bulk': { summary: 'Impressions from a Split SDK (its events API)', body: SplitSdkBulkSchema, headers: SplitSdkHeadersSchema, responses: counted },
  'POST /api/testImpressions/count': { summary: 'Impression counts from a Split SDK (optimized mode)', body: CountsSchema, responses: counted },
  'POST /api/v1/keys/ss': { summary: 'Unique keys from a server-side Split SDK (none mode)', body: ServerKeysSchema, responses: counted },
  'POST /api/v1/keys/cs': { summary: 'Unique keys from a client-side Split SDK (none mode)', body: ClientKeysSchema, responses: counted },
  'POST /api/v1/metrics/config': { summary: 'SDK telemetry (accepted and counted, not routed)', responses: counted },
  'POST /api/v1/metrics/usage': { summary: 'SDK telemetry (accepted and counted, not routed)', responses: counted },
  'POST /api/events/bulk': { summary: 'SDK track events (accepted and counted, not routed)', responses: counted },
  'POST /webhooks/split/impressions': {
    summary: "Split's outgoing impressions webhook",
    body: SplitWebhookSchema,
    querystring: z.object({ token: z.string().optional().describe("The environment's webhookToken (or Authorization: Bearer)") }),
    responses: counted,
  },
  'POST /v1/impressions': {
    summary: "flagstream's own JSON API",
    body: NativeImpressionsSchema,
    responses: { 202: { description: 'Accepted, with the impression ids', body: z.object({ accepted: z.number().int(), ids: z.array(z.string()) }) } },
  },
};

const adminDocs: Record<string, RouteDoc> = {
  'GET /admin/v1/config': { summary: 'The whole configuration, secrets redacted' },
  'POST /admin/v1/config/apply': { summary: 'Apply a whole configuration (idempotent)', body: ConfigurationSchema, querystring: ApplyQuerySchema },
  'GET /admin/v1/environments': { summary: 'Environments' },
  'GET /admin/v1/environments/:environmentId': { summary: 'One environment' },
  'PUT /admin/v1/environments/:environmentId': { summary: 'Create or replace an environment', body: EnvironmentSchema.omit({ id: true }) },
  'DELETE /admin/v1/environments/:environmentId': { summary: 'Delete an environment' },
  'GET /admin/v1/ledger': { summary: 'Where every accepted impression went', querystring: z.object({ environment: z.string().optional() }) },
  'GET /admin/v1/environments/:environmentId/stats': { summary: 'Traffic per flag: treatments, unique keys, drops' },
  'GET /admin/v1/environments/:environmentId/flags': { summary: "An environment's flags" },
  'PUT /admin/v1/environments/:environmentId/flags/:name': { summary: 'Create or replace a flag (trackImpressions switch)', body: FlagSchema.omit({ name: true }) },
  'PATCH /admin/v1/environments/:environmentId/flags/:name': { summary: 'Change some fields of a flag', body: FlagSchema.omit({ name: true }).partial() },
  'DELETE /admin/v1/environments/:environmentId/flags/:name': { summary: 'Delete a flag' },
  'GET /admin/v1/environments/:environmentId/destinations': { summary: "An environment's destinations, secrets redacted" },
  'POST /admin/v1/environments/:environmentId/destinations': { summary: 'Add a destination', body: DestinationSchema, responses: { 201: { description: 'Created' } } },
  'GET /admin/v1/destinations/:destinationId': { summary: 'One destination, secrets redacted' },
  'PUT /admin/v1/destinations/:destinationId': { summary: 'Replace a destination ("[redacted]" keeps a stored secret)', body: DestinationSchema.omit({ id: true }) },
  'PATCH /admin/v1/destinations/:destinationId': { summary: 'Change some fields of a destination (settings merged key by key)', body: DestinationSchema.omit({ id: true }).partial() },
  'DELETE /admin/v1/destinations/:destinationId': { summary: 'Delete a destination' },
  'POST /admin/v1/destinations/:destinationId/enable': { summary: 'Enable a destination' },
  'POST /admin/v1/destinations/:destinationId/disable': { summary: 'Disable a destination (its work waits)' },
  'GET /admin/v1/health/destinations': { summary: 'Health of every destination: healthy, open (circuit breaker) or paused' },
  'GET /admin/v1/destinations/:destinationId/health': { summary: "A destination's health" },
  'POST /admin/v1/destinations/:destinationId/pause': { summary: 'Pause a destination (nothing is dropped)', body: PauseBodySchema },
  'POST /admin/v1/destinations/:destinationId/resume': { summary: 'Resume a destination and release its waiting work' },
  'GET /admin/v1/connectors': { summary: 'Every connector with its settings (JSON Schema), limits and regions' },
  'POST /admin/v1/destinations/:destinationId/test': { summary: "Send one marked test impression and return the destination's answer" },
  'GET /admin/v1/dead-letters': { summary: 'Dead letters, newest first', querystring: DeadLetterQuerySchema },
  'GET /admin/v1/dead-letters/:id': { summary: 'One dead letter with its impressions and last error', responses: { 200: { description: 'The dead letter', body: DeadLetterSchema } } },
  'POST /admin/v1/dead-letters/replay': { summary: 'Re-queue dead letters (same impression ids)', body: SelectionSchema },
  'POST /admin/v1/dead-letters/purge': { summary: 'Delete dead letters', body: SelectionSchema },
  'POST /admin/v1/impressions/export': {
    summary: "Impressions from an s3 destination's archive, streamed as JSON lines or CSV",
    description: 'Only the partitions of the time range are read; rows are written as they are read. Filters: OR within flags, treatments, keys; AND across them. With dryRun, the counts as JSON instead.',
    body: ImpressionsExportRequestSchema,
    responses: { 200: { description: 'One row a line, in partition (hour) order (with dryRun: the counts, application/json)', body: z.string(), contentTypes: ['application/x-ndjson', 'text/csv', 'application/json'] } },
  },
  'POST /admin/v1/impressions/backfill': {
    summary: 'Send archived impressions (original ids) to a destination of the same environment',
    description: 'Queued as delivery jobs behind live traffic, paced by the delivery backlog; dryRun counts without queueing.',
    body: ImpressionsBackfillRequestSchema,
  },
};

const operationsDocs: Record<string, RouteDoc> = {
  'GET /healthz': { summary: 'Liveness' },
  'GET /readyz': { summary: 'Readiness: Redis (and workers) reachable' },
  'GET /metrics': { summary: 'Prometheus metrics', responses: { 200: { description: 'Prometheus text format', body: z.string(), contentTypes: ['text/plain'] } } },
};

type Security = readonly Record<string, readonly string[]>[];
const sdkKey: Security = [{ sdkKey: [] }];
const adminToken: Security = [{ adminToken: [] }];
const webhookToken: Security = [{ webhookToken: [] }, { webhookBearer: [] }];

/** Paths that are not part of the HTTP API: the reference itself and the dashboard. */
const notApi = (url: string) => url === '/openapi.json' || url === '/docs' || url.startsWith('/docs/') || url === '/ui' || url.startsWith('/ui/');

function routeSchema(method: string, url: string): FastifySchema & Record<string, unknown> {
  const key = `${method} ${url}`;
  const tag = url.startsWith('/admin/') ? 'admin' : key in operationsDocs || url === '/healthz' ? 'operations' : 'ingest';
  const doc = ingestDocs[key] ?? adminDocs[key] ?? operationsDocs[key] ?? { summary: `${method} ${url}` };
  const security = tag === 'admin' ? adminToken : url.startsWith('/webhooks/') ? webhookToken : tag === 'ingest' ? sdkKey : undefined;
  const response: Record<string, unknown> = {};
  const success = doc.responses ?? (method === 'DELETE' ? { 204: { description: 'Deleted' } } : { 200: { description: 'OK (JSON)' } });
  for (const [status, answer] of Object.entries(success)) {
    if (answer.body === undefined) response[status] = { description: answer.description };
    else if (answer.contentTypes === undefined) response[status] = { description: answer.description, ...jsonSchemaOf(answer.body) };
    else response[status] = { description: answer.description, content: Object.fromEntries(answer.contentTypes.map((type) => [type, { schema: jsonSchemaOf(answer.body as z.ZodType) }])) };
  }
  response.default = { description: 'An error: 4xx for bad input (naming the field) or credentials, 503 when Redis or the backlog is full', ...jsonSchemaOf(ErrorBodySchema) };
  return {
    summary: doc.summary,
    ...(doc.description === undefined ? {} : { description: doc.description }),
    tags: [tag],
    ...(security === undefined ? {} : { security }),
    ...(doc.body === undefined ? {} : { body: jsonSchemaOf(doc.body) }),
    ...(doc.querystring === undefined ? {} : { querystring: jsonSchemaOf(doc.querystring) }),
    ...(doc.headers === undefined ? {} : { headers: jsonSchemaOf(doc.headers) }),
    response,
  };
}

/** Every described route, `METHOD /path` (for the tests: each must exist). */
export const describedRoutes: readonly string[] = [...Object.keys(ingestDocs), ...Object.keys(adminDocs), ...Object.keys(operationsDocs)];

/**
 * Call before any route is added. buildServer adds its root routes synchronously, while a
 * plugin given to `register` loads only at `ready`, after them; so the swagger plugin function
 * is applied to the instance directly (its setup is synchronous: an onRoute hook and a
 * decorator), and Swagger UI is called inside a plugin of its own for the same reason (its
 * dependency check looks for a registered @fastify/swagger).
 */
export function registerOpenApi(app: FastifyInstance, options: { version: string }): void {
  fastifySwagger(
    app,
    {
      openapi: {
        openapi: '3.1.0',
        info: {
          title: 'flagstream',
          version: options.version,
          description: 'Ingest (Split SDKs, Split webhook, JSON API) and admin API of flagstream. Errors: `{ "error": { "code", "message", "field" } }`.',
        },
        tags: [
          { name: 'ingest', description: 'Where impressions come in' },
          { name: 'admin', description: 'Configuration, health, dead letters, ledger, impressions export (Bearer ADMIN_TOKEN)' },
          { name: 'operations', description: 'Health and metrics' },
        ],
        components: {
          securitySchemes: {
            sdkKey: { type: 'http', scheme: 'bearer', description: "An environment's SDK key" },
            adminToken: { type: 'http', scheme: 'bearer', description: 'ADMIN_TOKEN' },
            webhookToken: { type: 'apiKey', in: 'query', name: 'token', description: "The environment's webhookToken" },
            webhookBearer: { type: 'http', scheme: 'bearer', description: "The environment's webhookToken" },
          },
        },
      },
      transform: ({ schema, url, route }) => {
        const method = Array.isArray(route.method) ? String(route.method[0]) : String(route.method);
        if (notApi(url)) return { schema: { ...schema, hide: true }, url };
        return { schema: routeSchema(method, url), url };
      },
    },
    (error) => {
      if (error) throw error;
    },
  );
  app.get('/openapi.json', async () => app.swagger());
  // Written as an async plugin (its index.js), typed as a callback one: awaited as what it is.
  const swaggerUi = fastifySwaggerUi as unknown as (instance: FastifyInstance, uiOptions: FastifySwaggerUiOptions) => Promise<void>;
  app.register(async (docs) => swaggerUi(docs, { routePrefix: '/docs' }));
}
