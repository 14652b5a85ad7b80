import net from 'node:net';
import type { Redis } from 'ioredis';
import { pollUntil } from './processes.js';

// How ioredis sends EXEC (RESP bulk string, any case).
const execCommand = /\$4\r\nexec\r\n/i;
const execLength = '$4\r\nexec\r\n'.length;

interface Pair {
  readonly client: net.Socket;
  readonly upstream: net.Socket;
  /** What the client sent since its last EXEC (only while armed): the transaction being written. */
  pendingText: string;
  /** After the armed EXEC: Redis's answers are withheld from the client. */
  withholding: boolean;
}

/**
 * A TCP proxy in front of a Redis, to lose one reply on purpose: once armed, the next
 * transaction (MULTI … EXEC) that passes is run by Redis, its reply withheld, and the connection
 * cut, as when Redis restarts or the network drops between running a command and answering it.
 * The client then cannot know whether the transaction ran.
 */
export class RedisProxy {
  private readonly server: net.Server;
  private readonly pairs = new Set<Pair>();
  private armed: { matching: RegExp; resolve: () => void; reject: (error: unknown) => void } | undefined;

  private constructor(
    private readonly targetPort: number,
    /** A direct client of the same Redis, to see when the withheld EXEC has run. */
    private readonly observer: Redis,
  ) {
    this.server = net.createServer((client) => this.connect(client));
  }

  static async start(targetPort: number, observer: Redis): Promise<RedisProxy> {
    const proxy = new RedisProxy(targetPort, observer);
    await new Promise<void>((resolve) => proxy.server.listen(0, '127.0.0.1', resolve));
    return proxy;
  }

  get url(): string {
    return `redis://127.0.0.1:${(this.server.address() as net.AddressInfo).port}`;
  }

  /**
   * Arms the proxy for the next transaction whose commands match `matching` (e.g. a key or a
   * field it writes); resolves once Redis has run it and its connection was cut before the reply.
   */
  loseNextTransactionReply(matching: RegExp): Promise<void> {
    if (this.armed !== undefined) throw new Error('already armed');
    for (const pair of this.pairs) pair.pendingText = '';
    return new Promise((resolve, reject) => {
      this.armed = { matching, resolve, reject };
    });
  }

  private connect(client: net.Socket): void {
    const upstream = net.connect(this.targetPort, '127.0.0.1');
    const pair: Pair = { client, upstream, pendingText: '', withholding: false };
    this.pairs.add(pair);
    const close = () => {
      client.destroy();
      upstream.destroy();
      this.pairs.delete(pair);
    };
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
    upstream.on('data', (chunk: Buffer) => {
      if (!pair.withholding) client.write(chunk);
    });
    client.on('data', (chunk: Buffer) => {
      if (pair.withholding) return;
      const armed = this.armed;
      if (armed === undefined) {
        upstream.write(chunk);
        return;
      }
      const text = chunk.toString('latin1');
      const at = text.search(execCommand);
      const transaction = pair.pendingText + (at < 0 ? text : text.slice(0, at));
      if (at < 0 || !armed.matching.test(transaction)) {
        // Not the one: keep what this transaction has written so far (a large one spans chunks).
        pair.pendingText = (at < 0 ? transaction : text.slice(at + execLength)).slice(-1_000_000);
        upstream.write(chunk);
        return;
      }
      this.armed = undefined;
      pair.withholding = true;
      // Up to the end of EXEC only: what the client sent after it is lost with the connection.
      upstream.write(chunk.subarray(0, at + execLength));
      this.cutOnceRun(pair, close).then(armed.resolve, armed.reject);
    });
  }

  /** Cuts the connection once Redis reports EXEC as the last command this connection ran. */
  private async cutOnceRun(pair: Pair, close: () => void): Promise<void> {
    const address = `addr=127.0.0.1:${pair.upstream.localPort ?? 0} `;
    await pollUntil(
      async () => {
        const line = String(await this.observer.client('LIST')).split('\n').find((l) => l.includes(address));
        return line !== undefined && / cmd=exec /.test(line) && / qbuf=0 /.test(line);
      },
      { timeoutMs: 10_000, what: 'Redis to run the withheld EXEC', everyMs: 20 },
    );
    close();
  }

  async close(): Promise<void> {
    for (const pair of this.pairs) {
      pair.client.destroy();
      pair.upstream.destroy();
    }
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
