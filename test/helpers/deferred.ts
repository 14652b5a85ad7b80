/** A promise with its resolver outside: tests synchronise on events with these, never on sleeps. */
export interface Deferred<T> {
  readonly promise: Promise<T>;
  resolve(value: T): void;
  reject(error: unknown): void;
}

export function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/**
 * Resolves when `condition` holds, re-checking whenever `subscribe` signals a change; rejects
 * after `timeoutMs` (a safety net against hanging, not a synchronisation sleep).
 */
export function waitUntil(condition: () => boolean, subscribe: (onChange: () => void) => () => void, timeoutMs = 15_000, what = 'condition'): Promise<void> {
  if (condition()) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      unsubscribe();
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
    }, timeoutMs);
    const unsubscribe = subscribe(() => {
      if (condition()) {
        clearTimeout(timer);
        unsubscribe();
        resolve();
      }
    });
  });
}
