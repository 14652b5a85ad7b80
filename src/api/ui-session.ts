import { createHmac } from 'node:crypto';
import { parse as parseCookie } from 'cookie';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { secretMatches } from './auth-guard.js';

export const uiSessionCookie = 'flagstream_session';

/** How long a dashboard login lasts. */
export const uiSessionMaxAgeMs = 12 * 60 * 60 * 1000;

export interface UiSessions {
  /** A session value that expires `uiSessionMaxAgeMs` from `now`. */
  issue(now: number): string;
  /** Whether the request carries an unexpired session cookie derived from the current admin token. */
  accepts(request: FastifyRequest): boolean;
  /** Needs @fastify/cookie registered in the reply's scope. */
  setCookie(request: FastifyRequest, reply: FastifyReply, value: string): void;
  clearCookie(request: FastifyRequest, reply: FastifyReply): void;
}

/**
 * Dashboard sessions without server state: the cookie holds an expiry and an HMAC of it keyed
 * with ADMIN_TOKEN, so it never holds the token itself, and changing the token ends every session.
 */
export function createUiSessions(adminToken: string, clock: () => number): UiSessions {
  const sign = (expiresAt: string) => createHmac('sha256', adminToken).update(`flagstream-ui-session:${expiresAt}`).digest('base64url');
  const cookieOptions = (request: FastifyRequest) => ({ path: '/', httpOnly: true, sameSite: 'strict' as const, secure: request.protocol === 'https' });
  return {
    issue(now) {
      const expiresAt = String(now + uiSessionMaxAgeMs);
      return `${expiresAt}.${sign(expiresAt)}`;
    },
    accepts(request) {
      const header = request.headers.cookie;
      if (header === undefined) return false;
      const value = parseCookie(header)[uiSessionCookie];
      const match = value === undefined ? null : /^(\d{1,15})\.([\w-]{43})$/.exec(value);
      if (match?.[1] === undefined || match[2] === undefined) return false;
      return Number(match[1]) > clock() && secretMatches(match[2], sign(match[1]));
    },
    setCookie(request, reply, value) {
      reply.setCookie(uiSessionCookie, value, { ...cookieOptions(request), maxAge: uiSessionMaxAgeMs / 1000 });
    },
    clearCookie(request, reply) {
      reply.clearCookie(uiSessionCookie, cookieOptions(request));
    },
  };
}
