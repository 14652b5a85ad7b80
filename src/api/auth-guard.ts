import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import ipaddr from 'ipaddr.js';
import { AppError } from '../domain/errors.js';

/**
 * Compares a presented secret with the expected one in constant time: both are hashed to
 * SHA-256 first, so neither their length nor the position of the first difference shows in the
 * time the comparison takes.
 */
export function secretMatches(given: string, expected: string): boolean {
  const digest = (text: string) => createHash('sha256').update(text, 'utf8').digest();
  return timingSafeEqual(digest(given), digest(expected));
}

export interface AuthFailureLimiterOptions {
  /** Failed authentications a client may make per window; 0 turns the limit off. */
  readonly limit: number;
  readonly windowMs: number;
  readonly clock: () => number;
  /** Clients remembered at once; the least recently failing are forgotten first. */
  readonly maxClients?: number;
}

export interface AuthFailureLimiter {
  /**
   * Runs the credential check `check` for the request's client. A client over the limit gets a
   * 429 with Retry-After without its credential being looked at (else the limit would not limit
   * guessing); a failed check (an UNAUTHORIZED error) counts against it; success is never counted.
   */
  authenticate<T>(request: FastifyRequest, reply: FastifyReply, check: () => T): T;
  /** Clients currently remembered (for tests: memory stays bounded). */
  readonly size: number;
}

/**
 * The client a failure is charged to: its IPv4 address, or the /64 of its IPv6 address (one
 * host usually holds a whole /64, so counting single IPv6 addresses would not limit anyone).
 */
export function clientKey(ip: string): string {
  if (!ipaddr.isValid(ip)) return ip;
  const address = ipaddr.process(ip);
  if (address.kind() === 'ipv4') return address.toString();
  return `${(address as ipaddr.IPv6).parts.slice(0, 4).map((part) => part.toString(16)).join(':')}::/64`;
}

/**
 * Brute-force limit on ingest and admin authentication, in process. @fastify/rate-limit counts
 * every request it sees and cannot look without counting, so it can neither leave successful
 * traffic alone nor refuse a client over the limit before its key is checked; this is a fixed
 * window per client in a Map kept in least-recently-failed order and cut at `maxClients`
 * entries, so memory stays bounded however many addresses an attacker uses. Successful
 * requests cost one Map lookup. Counted per process: with N API processes a client gets N times
 * the limit, still a handful of guesses a minute against keys of 128 bits or more.
 */
export function createAuthFailureLimiter(options: AuthFailureLimiterOptions): AuthFailureLimiter {
  const maxClients = options.maxClients ?? 10_000;
  const failures = new Map<string, { count: number; windowStart: number }>();

  const current = (key: string, now: number) => {
    const entry = failures.get(key);
    if (entry === undefined) return undefined;
    if (now - entry.windowStart >= options.windowMs) {
      failures.delete(key);
      return undefined;
    }
    return entry;
  };

  const recordFailure = (key: string, now: number) => {
    const entry = current(key, now) ?? { count: 0, windowStart: now };
    entry.count += 1;
    // Re-inserted so the Map's order stays least recently failed first.
    failures.delete(key);
    failures.set(key, entry);
    while (failures.size > maxClients) {
      const oldest = failures.keys().next();
      if (oldest.done === true) break;
      failures.delete(oldest.value);
    }
  };

  return {
    authenticate(request, reply, check) {
      if (options.limit <= 0) return check();
      const key = clientKey(request.ip);
      const now = options.clock();
      const entry = current(key, now);
      if (entry !== undefined && entry.count >= options.limit) {
        const retryAfterSeconds = Math.max(1, Math.ceil((entry.windowStart + options.windowMs - now) / 1000));
        reply.header('retry-after', String(retryAfterSeconds));
        throw new AppError('FLAGSTREAM_ERR_TOO_MANY_AUTH_FAILURES', `too many failed authentications from this address; retry in ${retryAfterSeconds} s`, { field: 'authorization' });
      }
      try {
        return check();
      } catch (error) {
        if (error instanceof AppError && error.code === 'FLAGSTREAM_ERR_UNAUTHORIZED') recordFailure(key, now);
        throw error;
      }
    },
    get size() {
      return failures.size;
    },
  };
}
