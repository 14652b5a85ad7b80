// The S3 encode thread's entry (see ./s3-encode-thread.ts): the same pure encoder as the
// connector's synchronous `encode`, run on the impressions the main thread sends in parts.
import type { Impression } from '../../domain/impression.js';
import { encodeS3Objects, type S3ObjectLayout } from './s3-objects.js';
import { serveTasks } from './task-thread.js';

serveTasks((parts, call) => {
  // The main thread sends only what encodeS3ObjectsOffThread gives it: arrays of impressions, then the layout.
  const items = (parts as Impression[][]).flat();
  const objects = encodeS3Objects(items, call as S3ObjectLayout);
  const transfer = objects.flatMap((object) => [object.body.buffer, object.positions.buffer]).filter((buffer): buffer is ArrayBuffer => buffer instanceof ArrayBuffer);
  return { result: objects, transfer };
});
