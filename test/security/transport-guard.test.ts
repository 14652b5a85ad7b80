import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createDestinationGuard, type DestinationGuard } from '../../src/delivery/destination-guard.js';
import { createHttpTransport, type TransportFailure } from '../../src/delivery/http-transport.js';
import { HttpReceiver } from '../helpers/http-receiver.js';

// No nock in this file: real sockets, pooled by real keep-alive agents.
describe('the transport checks the destination guard on every connection', () => {
  const refused = (error: TransportFailure) => error.code === 'DESTINATION_NOT_ALLOWED';

  test('a kept-alive connection is not a way around the guard: another host name for the same socket is judged again', async () => {
    const receiver = await HttpReceiver.start();
    // Only the name `localhost` is allowed; the address itself is not.
    const transport = createHttpTransport({ guard: createDestinationGuard(['localhost']), userAgent: 'test' });
    const port = new URL(receiver.url).port;
    const post = (url: string) => transport.request({ method: 'POST', url, headers: {}, body: '[]' }, AbortSignal.timeout(5000));
    try {
      assert.equal((await post(`http://localhost:${port}/a`)).status, 200);
      assert.equal((await post(`http://localhost:${port}/b`)).status, 200);
      for (const url of [`http://127.0.0.1:${port}/c`, `http://[::ffff:127.0.0.1]:${port}/d`, `http://127.1:${port}/e`]) await assert.rejects(post(url), refused, url);
      assert.deepEqual(
        receiver.requests.map((r) => r.url),
        ['/a', '/b'],
      );
    } finally {
      transport.close();
      await receiver.close();
    }
  });

  test('redirects are not followed: a 3xx towards a private address is the answer, and nothing reaches the target', async () => {
    const target = await HttpReceiver.start();
    const front = await HttpReceiver.start();
    front.respond = () => ({ status: 307, headers: { location: `${target.url}/internal` } });
    const transport = createHttpTransport({ guard: createDestinationGuard(['127.0.0.1']), userAgent: 'test' });
    try {
      const response = await transport.request({ method: 'POST', url: `${front.url}/hook`, headers: {}, body: '[]' }, AbortSignal.timeout(5000));
      assert.equal(response.status, 307);
      assert.equal(front.requests.length, 1);
      assert.equal(target.requests.length, 0);
    } finally {
      transport.close();
      await front.close();
      await target.close();
    }
  });

  test("each new socket's real peer is checked on connect, before a byte of the request is written", async () => {
    const receiver = await HttpReceiver.start();
    const checked: string[] = [];
    // Allows the lookup, refuses the connected peer: stands for any path that got past the lookup.
    const guard: DestinationGuard = {
      check(host, address) {
        checked.push(`${host} ${address}`);
        if (checked.length > 1) throw Object.assign(new Error('refused at connect'), { code: 'DESTINATION_NOT_ALLOWED' });
      },
      refusalForHost: () => undefined,
    };
    const transport = createHttpTransport({ guard, userAgent: 'test' });
    try {
      const port = new URL(receiver.url).port;
      await assert.rejects(transport.request({ method: 'POST', url: `http://localhost:${port}/x`, headers: {}, body: '[]' }, AbortSignal.timeout(5000)), refused);
      assert.deepEqual(checked, ['localhost 127.0.0.1', 'localhost 127.0.0.1'], 'after DNS, then on connect');
      assert.equal(receiver.requests.length, 0);
    } finally {
      transport.close();
      await receiver.close();
    }
  });
});
