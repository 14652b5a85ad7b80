import type { Impression } from '../../domain/impression.js';
import { encodeS3Objects, type S3Object, type S3ObjectLayout } from './s3-objects.js';
import { TaskThread, TaskThreadFailure } from './task-thread.js';

/**
 * The S3 connector's objects, built in a worker thread (one per process, started on first use):
 * sorting, serialising and compressing a 50 000-row object takes the better part of a second of
 * CPU, which on the main thread would stall every other destination's deliveries and the API.
 */

/** Impressions per message to the thread: one to a few milliseconds of cloning each. */
const impressionsPerPart = 1_000;

// Under tsx (tests, benchmarks) this module is the .ts file and so is the entry; in dist/, both are .js.
const workerEntry = new URL(`./s3-encode-worker.${import.meta.url.endsWith('.ts') ? 'ts' : 'js'}`, import.meta.url);

let thread: TaskThread | undefined;
let warnedOfFailure = false;

/**
 * Exactly `encodeS3Objects(items, layout)`, computed in the S3 encode thread: what the encoder
 * throws there rejects, as it would have thrown here. If the thread itself fails (it crashed,
 * could not start, was closed), the objects are built here on the main thread instead: the same
 * bytes, only the stall is back. Rejecting would make the core halve the batch and dead-letter
 * every impression as one it cannot encode, for a fault that is not theirs.
 */
export async function encodeS3ObjectsOffThread(items: readonly Impression[], layout: S3ObjectLayout): Promise<S3Object[]> {
  thread ??= new TaskThread(workerEntry, 's3-encode');
  const parts: Impression[][] = [];
  for (let start = 0; start < items.length; start += impressionsPerPart) parts.push(items.slice(start, start + impressionsPerPart));
  // Only the layout crosses, never the settings' credentials.
  const call: S3ObjectLayout = { prefix: layout.prefix, format: layout.format, compression: layout.compression };
  try {
    // The thread answers with encodeS3Objects' own result (typed arrays survive the clone).
    return (await thread.run(parts, call)) as S3Object[];
  } catch (error) {
    if (!(error instanceof TaskThreadFailure)) throw error;
    if (!warnedOfFailure) {
      warnedOfFailure = true;
      process.emitWarning(`${error.message}: this batch's S3 objects were built on the main thread (the next batch starts a new thread; later failures are not reported)`, {
        code: 'FLAGSTREAM_S3_ENCODE_THREAD',
      });
    }
    return encodeS3Objects(items, layout);
  }
}

/** Terminates the S3 encode thread (an idle thread never holds the process open, so only tests and benchmarks need this). */
export async function closeS3EncodeThread(): Promise<void> {
  const closing = thread;
  thread = undefined;
  await closing?.close();
}
