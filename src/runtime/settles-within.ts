/**
 * Resolves true once `work` settles (fulfilled or rejected), or false after `ms` if it has not:
 * the caller stops waiting, the work itself goes on. `onError` sees a rejection.
 */
export function settlesWithin(work: Promise<unknown>, ms: number, onError?: (error: unknown) => void): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), Math.max(0, ms));
    work.then(
      () => {
        clearTimeout(timer);
        resolve(true);
      },
      (error: unknown) => {
        clearTimeout(timer);
        onError?.(error);
        resolve(true);
      },
    );
  });
}
