import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { FastifyRequest } from 'fastify';
import { createUiSessions, uiSessionCookie, uiSessionMaxAgeMs } from '../../src/api/ui-session.js';

const withCookie = (cookie: string | undefined) => ({ headers: cookie === undefined ? {} : { cookie } }) as FastifyRequest;

describe('dashboard sessions', () => {
  test('a session is accepted until it expires, and never holds the token', () => {
    let now = 1_800_000_000_000;
    const sessions = createUiSessions('the-admin-token', () => now);
    const value = sessions.issue(now);
    assert.ok(!value.includes('the-admin-token'));
    assert.equal(sessions.accepts(withCookie(`other=1; ${uiSessionCookie}=${value}`)), true);
    now += uiSessionMaxAgeMs - 1;
    assert.equal(sessions.accepts(withCookie(`${uiSessionCookie}=${value}`)), true);
    now += 1;
    assert.equal(sessions.accepts(withCookie(`${uiSessionCookie}=${value}`)), false);
  });

  test('a changed token, a moved expiry, a forged or missing cookie are refused', () => {
    const now = 1_800_000_000_000;
    const value = createUiSessions('old-token', () => now).issue(now);
    const sessions = createUiSessions('new-token', () => now);
    assert.equal(sessions.accepts(withCookie(`${uiSessionCookie}=${value}`)), false);
    const own = sessions.issue(now);
    const [expiry, signature] = own.split('.');
    assert.equal(sessions.accepts(withCookie(`${uiSessionCookie}=${Number(expiry) + 1000}.${signature}`)), false);
    assert.equal(sessions.accepts(withCookie(`${uiSessionCookie}=${expiry}.${'A'.repeat(43)}`)), false);
    assert.equal(sessions.accepts(withCookie(`${uiSessionCookie}=garbage`)), false);
    assert.equal(sessions.accepts(withCookie(undefined)), false);
  });
});
