import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';
import type { ImpressionLoad } from '../helpers/impression-load.js';
import { type FlagstreamProcess, pollUntil, withTimeout } from '../helpers/processes.js';
import { type Fault, setUpFault } from './harness.js';

/** FLAGSTREAM_SHUTDOWN_TIMEOUT defaults to about 15 s; a little slack on a busy machine. */
const exitBoundMs = 20_000;

/**
 * An SDK request under way: sent with `Expect: 100-continue` over a keep-alive connection, so
 * the server's `100 Continue` proves it has the request before the body is sent. `finish()`
 * sends the body; the answer is recorded on the load's request, and the connection then stays
 * open and idle in the client's pool, as SDK HTTP clients keep theirs.
 */
function requestUnderWay(url: string, load: ImpressionLoad) {
  const { request, path, body, headers } = load.prepare();
  const agent = new http.Agent({ keepAlive: true });
  const target = new URL(path, url);
  const outgoing = http.request(target, { method: 'POST', agent, headers: { ...headers, expect: '100-continue', 'content-length': String(Buffer.byteLength(body)) } });
  const serverHasIt = new Promise<void>((resolve, reject) => {
    outgoing.once('continue', resolve);
    outgoing.once('error', reject);
  });
  const answered = new Promise<number>((resolve, reject) => {
    outgoing.once('response', (response) => {
      response.resume();
      response.once('end', () => resolve(response.statusCode ?? 0));
    });
    outgoing.once('error', reject);
  });
  // Handled from the start: a reset may come before finish() awaits it.
  answered.catch(() => undefined);
  outgoing.flushHeaders();
  return {
    serverHasIt: withTimeout(serverHasIt, 10_000, '100 Continue'),
    async finish(): Promise<void> {
      outgoing.end(body);
      request.status = await withTimeout(answered, 10_000, 'the answer to the request under way').catch(() => 'error' as const);
    },
    close: () => agent.destroy(),
  };
}

/**
 * Scenario 6: SIGTERM to `serve` (API and workers in one process) when idle, under load, while
 * the destination hangs, and while Redis is down: each time the process exits within the bound,
 * and at the end everything accepted has been delivered.
 */
describe('SIGTERM in every state', () => {
  let fault: Fault;
  let serving: FlagstreamProcess | undefined;
  const exits: string[] = [];
  before(async () => {
    fault = await setUpFault('sigterm', { destinations: [{ id: 'hook' }] });
  });
  after(() => fault.teardown());

  async function terminate(state: string, whileStopping?: () => Promise<void>): Promise<void> {
    const running = serving;
    assert.ok(running !== undefined && running.alive, 'a serving process to stop');
    serving = undefined;
    const outcome = await running.terminate(exitBoundMs, whileStopping);
    exits.push(`${state} ${outcome.exited ? `${outcome.ms} ms (code ${outcome.code})` : `no exit after ${outcome.ms} ms`}`);
    assert.ok(outcome.exited, `${state}: still running ${exitBoundMs} ms after SIGTERM (killed)\n${running.tail(8)}`);
    assert.equal(outcome.code, 0, `${state}: exit code`);
  }

  test('idle', { timeout: 60_000 }, async () => {
    serving = await fault.start('idle', 'all');
    await terminate('idle');
  });

  // DEFECT REPRODUCTION: a request under way when SIGTERM comes is answered, but its keep-alive
  // connection, idle from then on, is never closed: server.close() waits for the client to hang
  // up or for the keep-alive timeout (Fastify's default, 72 s).
  test('under load, with a request under way', { timeout: 60_000 }, async () => {
    serving = await fault.start('loaded', 'all');
    const url = serving.url;
    const load = fault.load('under-load', { targets: () => (serving === undefined ? [] : [serving.url]) });
    load.start({ accepted: 10_000, concurrency: 4, pauseMs: 10 });
    await pollUntil(() => load.accepted.length >= 30, { timeoutMs: 30_000, what: '30 accepted requests' });
    const underWay = requestUnderWay(url, fault.load('under-way'));
    try {
      await underWay.serverHasIt;
      // The body arrives once shutdown has begun; then the client keeps its connection, idle.
      await terminate('under load', async () => {
        await underWay.finish();
        await load.stop();
      });
    } finally {
      underWay.close();
      await load.stop();
    }
  });

  test('destination hanging', { timeout: 60_000 }, async () => {
    const hook = fault.receiver('hook');
    hook.setMode('hang');
    serving = await fault.start('hanging', 'all');
    const load = fault.load('hanging');
    load.start({ accepted: 10, concurrency: 2, pauseMs: 0 });
    await load.finished();
    await hook.waitFor(() => hook.inFlight >= 1, 20_000, 'a delivery hanging');
    await terminate('destination hanging');
    hook.setMode('ok');
  });

  test('Redis down', { timeout: 60_000 }, async () => {
    serving = await fault.start('redis-down', 'all');
    const load = fault.load('before-redis-down');
    load.start({ accepted: 10, concurrency: 2, pauseMs: 0 });
    await load.finished();
    await fault.redis.shutdown();
    try {
      // The process has noticed: ingest refuses with 503.
      const probe = fault.load('probe-redis-down');
      await pollUntil(async () => (await probe.sendOne()).status === 503, { timeoutMs: 15_000, what: 'ingest to answer 503 with Redis down', everyMs: 200 });
      await terminate('Redis down');
    } finally {
      await fault.redis.startServer();
    }
  });

  test('after all of it, nothing accepted is lost', { timeout: 120_000 }, async () => {
    serving = await fault.start('final', 'all');
    console.log(`[faults] sigterm exits: ${exits.join(', ')}`);
    await fault.settle({ timeoutMs: 60_000 });
  });
});
