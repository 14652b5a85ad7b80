import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { FastifyAdapter } from '@bull-board/fastify';
import { fastifyCookie } from '@fastify/cookie';
import { fastifyStatic } from '@fastify/static';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { AppError } from '../../domain/errors.js';
import type { Queues } from '../../queues/queues.js';
import { type AuthFailureLimiter, secretMatches } from '../auth-guard.js';
import type { UiSessions } from '../ui-session.js';

export interface UiRouteDeps {
  readonly adminToken: string | undefined;
  readonly sessions: UiSessions | undefined;
  readonly authFailures: AuthFailureLimiter;
  /** Each partition's queues (index = partition number). */
  readonly queues: readonly Queues[];
  readonly clock: () => number;
  /** The bundled dashboard (index.html, app.js, app.css); by default dist/ui of the package. */
  readonly assetsDir?: string;
}

/** Both src/api/routes and dist/api/routes are two levels below the package root. */
export const defaultUiAssetsDir = fileURLToPath(new URL('../../../dist/ui/', import.meta.url));

const LoginBodySchema = z.object({ token: z.string().min(1) }).strict();

/**
 * The dashboard under /ui: its static bundle, login and logout (an HttpOnly, SameSite=Strict
 * session cookie derived from ADMIN_TOKEN, which the admin API also accepts), and bull-board's
 * queue views under /ui/queues, behind that session.
 */
export function registerUiRoutes(app: FastifyInstance, deps: UiRouteDeps): void {
  const assetsDir = deps.assetsDir ?? defaultUiAssetsDir;
  app.register(async (ui) => {
    // Registered here, not globally: ingest pays nothing for cookies.
    await ui.register(fastifyCookie, { hook: false });

    ui.get('/ui', async (_request, reply) => reply.redirect('/ui/'));
    ui.post('/ui/login', async (request, reply) => {
      const sessions = deps.sessions;
      deps.authFailures.authenticate(request, reply, () => {
        if (deps.adminToken === undefined || sessions === undefined) throw new AppError('FLAGSTREAM_ERR_UNAUTHORIZED', 'the admin API is disabled: set ADMIN_TOKEN', { field: 'token' });
        const body = LoginBodySchema.safeParse(request.body);
        if (!body.success) throw new AppError('FLAGSTREAM_ERR_VALIDATION', 'token: expected a non-empty string', { field: 'token' });
        if (!secretMatches(body.data.token, deps.adminToken)) throw new AppError('FLAGSTREAM_ERR_UNAUTHORIZED', 'wrong admin token', { field: 'token' });
      });
      if (sessions === undefined) return reply.status(204).send();
      sessions.setCookie(request, reply, sessions.issue(deps.clock()));
      return reply.status(204).send();
    });
    ui.post('/ui/logout', async (request, reply) => {
      deps.sessions?.clearCookie(request, reply);
      return reply.status(204).send();
    });

    // The page itself holds no data (everything comes from the admin API), so it loads before login.
    if (existsSync(assetsDir)) {
      await ui.register(fastifyStatic, { root: assetsDir, prefix: '/ui/', index: 'index.html', wildcard: false });
    } else {
      ui.get('/ui/', async (_request, reply) => reply.status(503).type('text/plain').send('the dashboard is not built: run `npm run build`'));
    }

    ui.register(async (board) => {
      board.addHook('onRequest', async (request, reply) => {
        if (deps.sessions?.accepts(request) !== true) return reply.redirect('/ui/');
      });
      const serverAdapter = new FastifyAdapter();
      serverAdapter.setBasePath('/ui/queues');
      // Read-only: removing a job from the board would drop its impressions without a dead letter.
      // A partitioned deployment's queues share their names: the board tells them apart by `p<k>:`.
      const adapter = (queue: Queues['ingest'] | Queues['delivery'], partition: number) =>
        new BullMQAdapter(queue, { readOnlyMode: true, ...(deps.queues.length > 1 ? { prefix: `p${partition}:` } : {}) });
      createBullBoard({ queues: deps.queues.flatMap((queues, partition) => [adapter(queues.ingest, partition), adapter(queues.delivery, partition)]), serverAdapter });
      await board.register(serverAdapter.registerPlugin(), { prefix: '/ui/queues' });
    });
  });
}
