import assert from 'node:assert/strict';
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { Webhook } from 'standardwebhooks';
import { createWebhookVerifier, verifyWebhook, WebhookVerificationError } from '../../src/index.js';

const secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
const body = JSON.stringify([{ id: 'imp-1', key: 'user-1', split: 'new_checkout', treatment: 'on', time: 1718900000123 }]);

function signed(id: string, at: Date, payload = body, key = secret): Record<string, string> {
  return { 'content-type': 'application/json', 'webhook-id': id, 'webhook-timestamp': String(Math.floor(at.getTime() / 1000)), 'webhook-signature': new Webhook(key).sign(id, at, payload) };
}

describe('verifyWebhook', () => {
  test('returns the impressions of a well-signed delivery', () => {
    const impressions = verifyWebhook(body, signed('msg_1', new Date()), secret);
    assert.equal(impressions[0]?.key, 'user-1');
  });
  test('throws for a bad signature or a stale timestamp', () => {
    assert.throws(() => verifyWebhook(body, signed('msg_1', new Date(), body, 'whsec_b3RoZXItc2VjcmV0LTEyMzQ1Ng=='), secret), WebhookVerificationError);
    assert.throws(() => verifyWebhook(body, signed('msg_1', new Date(Date.now() - 10 * 60_000)), secret), /too old/);
  });
});

describe('createWebhookVerifier', () => {
  test('toleranceMs changes the timestamp check, both ways', () => {
    const now = Date.parse('2026-01-01T00:00:00Z');
    const twoMinutesOld = signed('msg_t', new Date(now - 2 * 60_000));
    assert.throws(() => createWebhookVerifier(secret, { toleranceMs: 60_000, now: () => now }).verify(body, twoMinutesOld), /too old/);
    assert.equal(createWebhookVerifier(secret, { now: () => now }).verify(body, twoMinutesOld).duplicate, false);
    const tenMinutesOld = signed('msg_u', new Date(now - 10 * 60_000));
    assert.equal(createWebhookVerifier(secret, { toleranceMs: 15 * 60_000, now: () => now }).verify(body, tenMinutesOld).impressions[0]?.key, 'user-1');
    assert.throws(() => verifyWebhook(body, signed('msg_v', new Date(now + 2 * 60_000)), secret, { toleranceMs: 60_000, now: () => now }), /too new/);
  });

  test('a secret not in whsec_ form is refused with a message saying the form', () => {
    for (const wrong of ['MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'whsec_not base64!', 'sk_live_abc']) {
      assert.throws(() => createWebhookVerifier(wrong), /expected the destination's secret as configured, "whsec_" followed by base64/);
      assert.throws(() => verifyWebhook(body, signed('msg_w', new Date()), wrong), /"whsec_" followed by base64/);
    }
  });
});

describe('flagstream receive', () => {
  let child: ChildProcessWithoutNullStreams;
  let url = '';
  let stdout = '';

  before(async () => {
    const entry = fileURLToPath(new URL('../helpers/run-cli.ts', import.meta.url));
    child = spawn(process.execPath, ['--import', 'tsx', entry, 'receive', '--port', '0', '--secret', secret]);
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    url = await new Promise<string>((resolve, reject) => {
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => {
        stderr += chunk.toString();
        const match = /listening on (http:\/\/[^/\s]+)\//.exec(stderr);
        if (match?.[1]) resolve(match[1]);
      });
      child.on('exit', () => reject(new Error(`receive exited: ${stderr}`)));
    });
  });
  after(() => {
    child.kill('SIGTERM');
  });

  test('accepts and prints a verified delivery, ignores its replay, rejects stale and forged ones', async () => {
    const now = new Date();
    const ok = await fetch(`${url}/hooks`, { method: 'POST', headers: signed('msg_a', now), body });
    assert.equal(ok.status, 200);
    assert.deepEqual(await ok.json(), { status: 'ok', received: 1 });

    const replay = await fetch(`${url}/hooks`, { method: 'POST', headers: signed('msg_a', now), body });
    assert.equal(replay.status, 200);
    assert.deepEqual(await replay.json(), { status: 'duplicate' });

    const stale = await fetch(`${url}/hooks`, { method: 'POST', headers: signed('msg_b', new Date(Date.now() - 10 * 60_000)), body });
    assert.equal(stale.status, 400);
    const forged = await fetch(`${url}/hooks`, { method: 'POST', headers: { ...signed('msg_c', now), 'webhook-signature': 'v1,Zm9yZ2Vk' }, body });
    assert.equal(forged.status, 401);

    assert.match(stdout, /msg_a 1 impression\(s\) verified/);
    assert.match(stdout, /"key":"user-1"/);
    assert.match(stdout, /msg_a duplicate delivery ignored/);
  });
});
