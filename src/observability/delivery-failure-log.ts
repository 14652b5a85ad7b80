import type { Logger } from 'pino';

/** One failed delivery attempt, as its log line tells it. */
export interface FailedAttempt {
  readonly destinationId: string;
  readonly reason: string;
  readonly status?: number | undefined;
  /** 1 for the first attempt of the batch. */
  readonly attempt: number;
  /** Impressions the next try carries. */
  readonly pending: number;
  /** Epoch ms of the next try. */
  readonly nextTryAt: number;
  /** A 429: the destination pacing us, not failing. */
  readonly throttled: boolean;
}

export interface DeliveryFailureLog {
  failed(attempt: FailedAttempt): void;
  /** A successful attempt: ends the destination's failure streak with a line saying so. */
  succeeded(destinationId: string): void;
  /** Writes the summaries still held back (shutdown). */
  close(): void;
}

interface Streak {
  /** When the last line about this destination was written. */
  lastLineAt: number;
  /** Failures since that line, not yet written. */
  heldBack: number;
  /** All failures of the streak. */
  total: number;
  last: FailedAttempt;
  timer: { cancel(): void } | undefined;
}

/**
 * One warn line per failed delivery attempt, rate-limited per destination so an outage does not
 * flood the log: the first failure is written at once; further ones within `windowMs` are held
 * back and written as one summary line (with their count and the latest reason and next try)
 * when the window ends; the first success after failures writes one line saying so.
 */
export function createDeliveryFailureLog(deps: {
  logger: Logger;
  clock: () => number;
  windowMs?: number;
  /** Runs `run` after `ms`; the default is an unref'd setTimeout. */
  schedule?: (run: () => void, ms: number) => { cancel(): void };
}): DeliveryFailureLog {
  const windowMs = deps.windowMs ?? 60_000;
  const schedule =
    deps.schedule ??
    ((run: () => void, ms: number) => {
      const timer = setTimeout(run, ms);
      timer.unref();
      return { cancel: () => clearTimeout(timer) };
    });
  const streaks = new Map<string, Streak>();
  const iso = (ms: number) => new Date(ms).toISOString();

  const writeAttempt = (attempt: FailedAttempt, heldBack: number): void => {
    const fields = {
      destinationId: attempt.destinationId,
      reason: attempt.reason,
      ...(attempt.status === undefined ? {} : { status: attempt.status }),
      attempt: attempt.attempt,
      pending: attempt.pending,
      nextTryAt: iso(attempt.nextTryAt),
      ...(heldBack > 0 ? { heldBack } : {}),
    };
    const what = attempt.throttled ? 'throttled' : 'failed';
    const also = heldBack > 0 ? ` (and ${heldBack} more failed attempt(s) since the last line)` : '';
    deps.logger.warn(fields, `delivery to ${attempt.destinationId} ${what}: ${attempt.reason}; next try at ${iso(attempt.nextTryAt)}${also}`);
  };

  const writeSummary = (streak: Streak): void => {
    streak.timer = undefined;
    if (streak.heldBack === 0) return;
    const { last } = streak;
    deps.logger.warn(
      { destinationId: last.destinationId, failedAttempts: streak.heldBack, windowSeconds: Math.round(windowMs / 1000), reason: last.reason, ...(last.status === undefined ? {} : { status: last.status }), nextTryAt: iso(last.nextTryAt) },
      `${streak.heldBack} more failed delivery attempt(s) to ${last.destinationId} in the last ${Math.round(windowMs / 1000)} s; last: ${last.reason}; next try at ${iso(last.nextTryAt)}`,
    );
    streak.heldBack = 0;
    streak.lastLineAt = deps.clock();
  };

  return {
    failed(attempt) {
      const now = deps.clock();
      const streak = streaks.get(attempt.destinationId);
      if (streak === undefined) {
        streaks.set(attempt.destinationId, { lastLineAt: now, heldBack: 0, total: 1, last: attempt, timer: undefined });
        writeAttempt(attempt, 0);
        return;
      }
      streak.total += 1;
      streak.last = attempt;
      if (now - streak.lastLineAt >= windowMs) {
        streak.timer?.cancel();
        streak.timer = undefined;
        writeAttempt(attempt, streak.heldBack);
        streak.heldBack = 0;
        streak.lastLineAt = now;
        return;
      }
      streak.heldBack += 1;
      streak.timer ??= schedule(() => writeSummary(streak), streak.lastLineAt + windowMs - now);
    },
    succeeded(destinationId) {
      const streak = streaks.get(destinationId);
      if (streak === undefined) return;
      streak.timer?.cancel();
      writeSummary(streak);
      streaks.delete(destinationId);
      deps.logger.info({ destinationId, failedAttempts: streak.total }, `deliveries to ${destinationId} succeed again after ${streak.total} failed attempt(s)`);
    },
    close() {
      for (const streak of streaks.values()) {
        streak.timer?.cancel();
        writeSummary(streak);
      }
      streaks.clear();
    },
  };
}
