import { timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { AppError } from '../../domain/errors.js';

function tokenMatches(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** An onRequest hook for admin routes: `Authorization: Bearer <ADMIN_TOKEN>`, or 401 (the admin API is off without a token). */
export function requireAdminToken(adminToken: string | undefined): (request: FastifyRequest) => Promise<void> {
  return async (request) => {
    if (adminToken === undefined) throw new AppError('FLAGSTREAM_ERR_UNAUTHORIZED', 'the admin API is disabled: set ADMIN_TOKEN', { field: 'authorization' });
    const match = /^Bearer\s+(.+)$/i.exec(request.headers.authorization ?? '');
    if (match?.[1] === undefined || !tokenMatches(match[1].trim(), adminToken)) {
      throw new AppError('FLAGSTREAM_ERR_UNAUTHORIZED', 'missing or wrong Authorization: Bearer <ADMIN_TOKEN>', { field: 'authorization' });
    }
  };
}
