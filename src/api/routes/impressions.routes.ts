import type { FastifyInstance } from 'fastify';
import type { z } from 'zod';
import { ImpressionsBackfillRequestSchema, ImpressionsExportRequestSchema, type ImpressionsExportService } from '../../admin/impressions-export-service.js';
import { problemsFromZod, validationError } from '../../domain/errors.js';

export interface ImpressionRouteDeps {
  readonly exports: ImpressionsExportService;
}

function parseBody<T>(schema: z.ZodType<T>, body: unknown): T {
  const parsed = schema.safeParse(body ?? {});
  if (!parsed.success) throw validationError(problemsFromZod(parsed.error.issues));
  return parsed.data;
}

/**
 * Impressions export and backfill, on the admin scope (/admin/v1: Bearer ADMIN_TOKEN or the
 * dashboard's session, failures counted like any admin call). The export streams as
 * it reads: the query is checked first (a 4xx before any byte), and a failure later cuts the
 * response short rather than ending it as if complete.
 */
export function registerImpressionRoutes(admin: FastifyInstance, deps: ImpressionRouteDeps): void {
  admin.post('/impressions/export', async (request, reply) => {
    const { format, dryRun, ...input } = parseBody(ImpressionsExportRequestSchema, request.body);
    const query = deps.exports.resolveQuery(input);
    if (dryRun) return deps.exports.count(query);
    const { stream } = deps.exports.exportStream(query, format);
    return reply.type(format === 'csv' ? 'text/csv; charset=utf-8' : 'application/x-ndjson').send(stream);
  });

  admin.post('/impressions/backfill', async (request) => {
    const { to, dryRun, ...input } = parseBody(ImpressionsBackfillRequestSchema, request.body);
    return deps.exports.backfill(deps.exports.resolveQuery(input), { to, dryRun });
  });
}
