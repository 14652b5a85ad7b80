import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { createScrubber, credentialsInHeader, destinationSecrets, scrubCredentialPatterns, scrubDeep } from '../../src/observability/redact.js';

describe('scrubbing secrets out of what destinations answer', () => {
  test('property: a secret embedded in any text, raw, URL-encoded, JSON-escaped or base64 at any offset, never survives', () => {
    const secretChars = fc.constantFrom(...'abcXYZ0189-_./+=:&% "\\é'.split(''));
    fc.assert(
      fc.property(fc.string({ unit: secretChars, minLength: 8, maxLength: 40 }), fc.string({ maxLength: 30 }), fc.string({ maxLength: 30 }), (secret, before, after) => {
        const scrub = createScrubber([secret]);
        const text = `${before}${secret}${after}`;
        const carriers = [
          text,
          encodeURIComponent(text),
          JSON.stringify({ echoed: text }),
          Buffer.from(text).toString('base64'),
          Buffer.from(text).toString('base64url'),
          `Authorization: Basic ${Buffer.from(`user:${secret}`).toString('base64')}`,
        ];
        for (const carrier of carriers) {
          const scrubbed = scrub(carrier);
          assert.ok(!scrubbed.includes(secret), `raw secret left in ${JSON.stringify(scrubbed)}`);
          const decoded = /^[A-Za-z0-9+/_=-]+$/.test(scrubbed) ? Buffer.from(scrubbed, 'base64').toString('utf8') : '';
          assert.ok(!decoded.includes(secret), `base64 secret left in ${JSON.stringify(scrubbed)}`);
        }
      }),
      { numRuns: 300 },
    );
  });

  test('credential headers give away their value, the token after the scheme, and both halves of Basic', () => {
    const basic = `Basic ${Buffer.from('svc-user:pa55word').toString('base64')}`;
    assert.deepEqual(credentialsInHeader(basic), [basic, Buffer.from('svc-user:pa55word').toString('base64'), 'svc-user:pa55word', 'svc-user', 'pa55word']);
    assert.deepEqual(credentialsInHeader('Bearer abc.def'), ['Bearer abc.def', 'abc.def']);
    assert.deepEqual(destinationSecrets(['secret', 'headers'], { url: 'https://x', secret: 'whsec_1', headers: { a: 'one', b: 'two' } }), ['whsec_1', 'one', 'two']);
  });

  test('deep scrubbing keeps the shape: objects, arrays and maps are copied, other values kept', () => {
    const scrub = createScrubber(['TOPSECRET']);
    const input = { status: 400, body: 'got TOPSECRET', headers: { echo: 'TOPSECRET' }, list: ['TOPSECRET', 1], byItem: new Map([['a', { reason: 'TOPSECRET!' }]]) };
    assert.deepEqual(scrubDeep(input, scrub), { status: 400, body: 'got [redacted]', headers: { echo: '[redacted]' }, list: ['[redacted]', 1], byItem: new Map([['a', { reason: '[redacted]!' }]]) });
    assert.equal(createScrubber(['ab'])('abc'), 'abc', 'values too short to be secrets are left alone');
  });

  test('the last net catches credential-shaped text by itself, and is idempotent', () => {
    const text =
      '{"authorization":"Bearer eyJhbGciOi.abc.def","api_key":"0123456789abcdef","note":"ok"} x-api-key: k3y-v4lue-long token=abc123&next=1 ' +
      `Basic ${Buffer.from('user:pw').toString('base64')} AKIAIOSFODNN7EXAMPLE Basic authentication failed`;
    const once = scrubCredentialPatterns(text);
    assert.equal(
      once,
      '{"authorization":"[redacted]","api_key":"[redacted]","note":"ok"} x-api-key: [redacted] token=[redacted]&next=1 Basic [redacted] [redacted] Basic authentication failed',
    );
    assert.equal(scrubCredentialPatterns(once), once);
  });
});
