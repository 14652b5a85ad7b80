import type { Redis } from 'ioredis';
import type { Logger } from 'pino';

const unreachableCodes = new Set(['ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'ETIMEDOUT', 'EHOSTUNREACH', 'EHOSTDOWN', 'ENETUNREACH', 'ENETDOWN', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE']);

/**
 * Whether `error` says Redis could not be reached or did not answer in time (as opposed to a
 * command's own error): socket errors, ioredis' closed connection, offline queue refusal,
 * command timeout and retry limit, BullMQ's closed connection, Redis still loading its data.
 */
export function isRedisUnavailable(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as NodeJS.ErrnoException).code;
  if (code !== undefined && unreachableCodes.has(code)) return true;
  if (error.name === 'MaxRetriesPerRequestError' || error.name === 'ConnectionClosedError') return true;
  return /^(Connection is closed|Stream isn't writeable|Command timed out|LOADING )/.test(error.message);
}

export interface RedisOutageLog {
  /** Reports `connection`'s errors here and notices when it is back; every connection flagstream opens is watched. */
  watch(connection: Redis, name: string): void;
  /**
   * Counts `error` into the current outage when it says Redis is unavailable (true); false for
   * any other error, which the caller reports itself. For errors that arrive by other routes
   * (BullMQ forwards its connections' errors to every queue and worker).
   */
  absorb(error: unknown, source: string): boolean;
}

/**
 * During an outage every connection, queue and worker reports the same failure at each
 * reconnection attempt (several a second). This turns them into one error line when the outage
 * starts, a summary at most every `summaryEveryMs`, and one line when every watched connection
 * is ready again. Each error is still logged at debug level.
 */
export function createRedisOutageLog(logger: Logger, options: { summaryEveryMs?: number; clock?: () => number } = {}): RedisOutageLog {
  const summaryEveryMs = options.summaryEveryMs ?? 30_000;
  const clock = options.clock ?? Date.now;
  const watched = new Set<Redis>();
  let outage: { since: number; errors: number; lastErrorAt: number; lastLineAt: number; errorsSinceLine: number } | undefined;

  const allReady = () => [...watched].every((connection) => connection.status === 'ready' || connection.status === 'wait');
  const seconds = (ms: number) => Math.round(ms / 100) / 10;

  const failed = (error: Error, source: string) => {
    const now = clock();
    logger.debug({ err: error.message, source }, 'redis connection error');
    // A hung Redis that came back never emits 'ready': a quiet spell with every connection up ends that outage.
    if (outage !== undefined && now - outage.lastErrorAt >= summaryEveryMs && allReady()) outage = undefined;
    if (outage === undefined) {
      outage = { since: now, errors: 1, lastErrorAt: now, lastLineAt: now, errorsSinceLine: 0 };
      logger.error({ err: error.message, source }, `redis unreachable: ${error.message}`);
      return;
    }
    outage.errors += 1;
    outage.errorsSinceLine += 1;
    outage.lastErrorAt = now;
    if (now - outage.lastLineAt >= summaryEveryMs) {
      logger.warn(
        { err: error.message, downForMs: now - outage.since, errors: outage.errorsSinceLine },
        `redis still unreachable after ${seconds(now - outage.since)}s (${outage.errorsSinceLine} more connection errors, last: ${error.message})`,
      );
      outage.lastLineAt = now;
      outage.errorsSinceLine = 0;
    }
  };

  const restored = () => {
    if (outage === undefined || !allReady()) return;
    const downForMs = clock() - outage.since;
    logger.info({ downForMs, errors: outage.errors }, `redis reachable again after ${seconds(downForMs)}s (${outage.errors} connection errors)`);
    outage = undefined;
  };

  return {
    watch(connection, name) {
      watched.add(connection);
      connection.on('error', (error: Error) => failed(error, name));
      connection.on('ready', restored);
      connection.once('end', () => watched.delete(connection));
    },
    absorb(error, source) {
      if (!isRedisUnavailable(error)) return false;
      failed(error as Error, source);
      return true;
    },
  };
}
