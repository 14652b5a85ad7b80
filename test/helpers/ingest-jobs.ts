import type { Job } from 'bullmq';
import type { Impression } from '../../src/domain/impression.js';
import { impressionsOf } from '../../src/domain/stored-batch.js';
import { ingestJobBatchIds, type IngestJobData } from '../../src/queues/queues.js';
import type { StoredBatchStore } from '../../src/stores/stored-batch-store.js';

/** The impressions ingest jobs stand for, read from their stored batches (or inline), in job order. */
export async function impressionsOfIngestJobs(batches: StoredBatchStore, jobs: readonly Job<IngestJobData>[]): Promise<Impression[]> {
  const loaded = await batches.load(jobs.flatMap((job) => ingestJobBatchIds(job.data)));
  return jobs.flatMap((job) => {
    if (job.data.impressions !== undefined) return job.data.impressions;
    return ingestJobBatchIds(job.data).flatMap((batchId) => {
      const batch = loaded.get(batchId);
      if (batch === undefined) throw new Error(`stored batch ${batchId} of ingest job ${job.id ?? ''} is missing`);
      return impressionsOf(batch);
    });
  });
}
