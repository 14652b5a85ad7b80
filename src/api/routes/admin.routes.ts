import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ConfigService } from '../../admin/config-service.js';
import { type DeadLettersService, parseTimeBound } from '../../admin/dead-letters-service.js';
import type { DestinationHealthService } from '../../admin/destination-health-service.js';
import { DeadLetterSchema } from '../../domain/dead-letter.js';
import { z } from 'zod';
import { keyProblems } from '../../admin/validate-configuration.js';
import { AppError, problemsFromZod, validationError } from '../../domain/errors.js';
import type { StatsStore } from '../../stores/stats-store.js';
import type { LedgerService } from '../../admin/ledger-service.js';
import { type AuthFailureLimiter, secretMatches } from '../auth-guard.js';
import type { UiSessions } from '../ui-session.js';

export interface AdminRouteDeps {
  readonly adminToken: string | undefined;
  /** Shared with ingest: failed authentications per client, answered 429 past the limit. */
  readonly authFailures: AuthFailureLimiter;
  /** The dashboard's session cookie, accepted in place of the Bearer token. */
  readonly uiSessions?: UiSessions;
  readonly configService: ConfigService;
  readonly stats: StatsStore;
  readonly ledger: LedgerService;
  readonly deadLetters: DeadLettersService;
  readonly destinationHealth: DestinationHealthService;
  readonly clock: () => number;
  readonly connectors: () => unknown[];
  readonly testDestination: (destinationId: string) => Promise<unknown>;
  /** More routes under /admin/v1, behind the same authentication (monitoring, live tail). */
  readonly moreRoutes?: (admin: FastifyInstance) => void;
}

type Params = Record<string, string>;
type Body = Record<string, unknown>;

function asBody(body: unknown): Body {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new AppError('FLAGSTREAM_ERR_VALIDATION', 'expected a JSON object body', { field: '(root)' });
  return body as Body;
}

/**
 * Admin REST API under /admin/v1 (Bearer ADMIN_TOKEN): environments, flags (including the
 * track-impressions toggle), destinations. Secrets are redacted in every answer; sending
 * `[redacted]` back keeps the stored value. Changes reach running workers within seconds.
 */
function statusFilter(value: string | undefined) {
  if (value === undefined) return undefined;
  const parsed = DeadLetterSchema.shape.status.safeParse(value);
  if (!parsed.success) throw new AppError('FLAGSTREAM_ERR_VALIDATION', 'status: expected pending or replayed', { field: 'status' });
  return parsed.data;
}

/** Input the schema does not name, or of the wrong type, is a 400 naming the field: a typo never widens a purge. */
function strict<T>(schema: z.ZodType<T>, input: unknown, prefix = ''): T {
  const parsed = schema.safeParse(input);
  const problems = [...keyProblems(schema, input, prefix), ...(parsed.success ? [] : problemsFromZod(parsed.error.issues.filter((i) => i.code !== 'unrecognized_keys'), prefix))];
  if (problems.length > 0 || !parsed.success) throw validationError(problems);
  return parsed.data;
}

const SelectionBodySchema = z.object({
  ids: z.array(z.string().min(1)).optional(),
  destination: z.string().min(1).optional(),
  since: z.string().optional(),
  until: z.string().optional(),
  status: z.string().optional(),
  all: z.boolean().optional(),
  dryRun: z.boolean().optional(),
});
const PauseBodySchema = z.object({ reason: z.string().max(500).optional() });
const flagQuery = z.enum(['true', 'false']).optional();
const ApplyQuerySchema = z.object({ prune: flagQuery, dryRun: flagQuery });
const DeadLetterQuerySchema = z.object({ destination: z.string().min(1).optional(), since: z.string().optional(), until: z.string().optional(), status: z.string().optional(), limit: z.string().optional() });

/** Body of replay and purge: `{ ids: [...] }`, `{ destination, since, until }` or `{ all: true }`, plus `dryRun`. */
function selection(raw: unknown, now: number) {
  const body = strict(SelectionBodySchema, raw);
  return {
    ids: body.ids,
    destinationId: body.destination,
    since: parseTimeBound(body.since, now, 'since'),
    until: parseTimeBound(body.until, now, 'until'),
    status: statusFilter(body.status),
    all: body.all === true,
    dryRun: body.dryRun === true,
  };
}

export function registerAdminRoutes(app: FastifyInstance, deps: AdminRouteDeps): void {
  const { configService: config } = deps;
  app.register(
    async (admin) => {
      admin.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) =>
        deps.authFailures.authenticate(request, reply, () => {
          if (deps.adminToken === undefined) throw new AppError('FLAGSTREAM_ERR_UNAUTHORIZED', 'the admin API is disabled: set ADMIN_TOKEN', { field: 'authorization' });
          if (request.headers.authorization === undefined && deps.uiSessions?.accepts(request) === true) return;
          const match = /^Bearer\s+(.+)$/i.exec(request.headers.authorization ?? '');
          if (match?.[1] === undefined || !secretMatches(match[1].trim(), deps.adminToken)) {
            throw new AppError('FLAGSTREAM_ERR_UNAUTHORIZED', 'missing or wrong Authorization: Bearer <ADMIN_TOKEN>', { field: 'authorization' });
          }
        }),
      );

      admin.get('/config', async () => config.exportConfiguration());
      admin.post('/config/apply', async (request) => {
        const query = strict(ApplyQuerySchema, request.query);
        const changes = await config.apply(request.body, { prune: query.prune === 'true', dryRun: query.dryRun === 'true' });
        return { dryRun: query.dryRun === 'true', changes };
      });

      admin.get('/environments', async () => ({ environments: await config.listEnvironments() }));
      admin.get('/environments/:environmentId', async (request) => config.getEnvironment((request.params as Params).environmentId ?? ''));
      admin.put('/environments/:environmentId', async (request, reply) => {
        const { environment, created } = await config.putEnvironment((request.params as Params).environmentId ?? '', asBody(request.body));
        return reply.status(created ? 201 : 200).send(environment);
      });
      admin.delete('/environments/:environmentId', async (request, reply) => {
        await config.deleteEnvironment((request.params as Params).environmentId ?? '');
        return reply.status(204).send();
      });
      admin.get('/ledger', async (request) => {
        const { environment } = request.query as Record<string, string | undefined>;
        return deps.ledger.report({ environmentId: environment });
      });
      admin.get('/environments/:environmentId/stats', async (request) => {
        const environmentId = (request.params as Params).environmentId ?? '';
        await config.assertEnvironment(environmentId);
        return { environmentId, flags: await deps.stats.flagStats(environmentId) };
      });

      admin.get('/environments/:environmentId/flags', async (request) => ({ flags: (await config.getEnvironment((request.params as Params).environmentId ?? '')).flags }));
      for (const method of ['put', 'patch'] as const) {
        admin[method]('/environments/:environmentId/flags/:name', async (request, reply) => {
          const { environmentId = '', name = '' } = request.params as Params;
          const { flag, created } = await config.putFlag(environmentId, name, asBody(request.body), method === 'patch');
          return reply.status(created ? 201 : 200).send(flag);
        });
      }
      admin.delete('/environments/:environmentId/flags/:name', async (request, reply) => {
        const { environmentId = '', name = '' } = request.params as Params;
        await config.deleteFlag(environmentId, name);
        return reply.status(204).send();
      });

      admin.get('/environments/:environmentId/destinations', async (request) => ({
        destinations: await config.listDestinations((request.params as Params).environmentId ?? ''),
      }));
      admin.post('/environments/:environmentId/destinations', async (request, reply) =>
        reply.status(201).send(await config.createDestination((request.params as Params).environmentId ?? '', request.body)),
      );
      admin.get('/destinations/:destinationId', async (request) => config.getDestination((request.params as Params).destinationId ?? ''));
      admin.put('/destinations/:destinationId', async (request) => config.updateDestination((request.params as Params).destinationId ?? '', asBody(request.body), false));
      admin.patch('/destinations/:destinationId', async (request) => config.updateDestination((request.params as Params).destinationId ?? '', asBody(request.body), true));
      admin.delete('/destinations/:destinationId', async (request, reply) => {
        await config.deleteDestination((request.params as Params).destinationId ?? '');
        return reply.status(204).send();
      });
      admin.post('/destinations/:destinationId/enable', async (request) => config.setDestinationEnabled((request.params as Params).destinationId ?? '', true));
      admin.post('/destinations/:destinationId/disable', async (request) => config.setDestinationEnabled((request.params as Params).destinationId ?? '', false));

      // Health: circuit breaker state, operator pause and resume.
      admin.get('/health/destinations', async () => ({ destinations: await deps.destinationHealth.list() }));
      admin.get('/destinations/:destinationId/health', async (request) => deps.destinationHealth.status((request.params as Params).destinationId ?? ''));
      admin.post('/destinations/:destinationId/pause', async (request) => {
        const reason = request.body !== undefined && request.body !== null ? strict(PauseBodySchema, asBody(request.body)).reason : undefined;
        return deps.destinationHealth.pause((request.params as Params).destinationId ?? '', reason);
      });
      admin.post('/destinations/:destinationId/resume', async (request) => deps.destinationHealth.resume((request.params as Params).destinationId ?? ''));

      admin.get('/connectors', async () => ({ connectors: deps.connectors() }));
      admin.post('/destinations/:destinationId/test', async (request) => deps.testDestination((request.params as Params).destinationId ?? ''));

      // Dead letters.
      admin.get('/dead-letters', async (request) => {
        const query = strict(DeadLetterQuerySchema, request.query);
        const now = deps.clock();
        const limit = query.limit === undefined ? 100 : Number(query.limit);
        if (!Number.isInteger(limit) || limit < 1) throw new AppError('FLAGSTREAM_ERR_VALIDATION', 'limit: expected a positive integer', { field: 'limit' });
        return {
          deadLetters: await deps.deadLetters.list({
            destinationId: query.destination,
            since: parseTimeBound(query.since, now, 'since'),
            until: parseTimeBound(query.until, now, 'until'),
            status: statusFilter(query.status),
            limit,
          }),
        };
      });
      admin.get('/dead-letters/:id', async (request) => deps.deadLetters.show((request.params as Params).id ?? ''));
      admin.post('/dead-letters/replay', async (request) => deps.deadLetters.replay(selection(asBody(request.body ?? {}), deps.clock())));
      admin.post('/dead-letters/purge', async (request) => deps.deadLetters.purge(selection(asBody(request.body ?? {}), deps.clock())));
      deps.moreRoutes?.(admin);
    },
    { prefix: '/admin/v1' },
  );
}
