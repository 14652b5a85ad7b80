import { z } from 'zod';
import { ImpressionSchema } from './impression.js';

export const DeadLetterReasonSchema = z.enum([
  'invalid_payload',
  'unsupported_by_destination',
  'payload_too_large',
  'destination_auth',
  'destination_not_found',
  'destination_not_allowed',
  'destination_deleted',
  'retries_exhausted',
  'max_age_exceeded',
  'internal_error',
  'worker_crashed',
]);

/**
 * The destination of dead letters whose impressions could not be routed (a routing job that kept
 * failing or crashing its worker): replaying them routes them again. Not a valid destination id,
 * so it cannot clash with one.
 */
export const routingStage = '@routing';

/** The impressions of one failed batch for one destination, with why and when it failed. */
export const DeadLetterSchema = z.object({
  id: z.string(),
  destinationId: z.string(),
  environmentId: z.string(),
  connectorType: z.string(),
  reason: DeadLetterReasonSchema,
  error: z.object({
    status: z.number().int().optional(),
    message: z.string(),
  }),
  impressions: z.array(ImpressionSchema),
  attempts: z.number().int().nonnegative(),
  firstAttemptAt: z.number().int(),
  lastAttemptAt: z.number().int(),
  createdAt: z.number().int(),
  status: z.enum(['pending', 'replayed']),
  replayedAt: z.number().int().optional(),
});
export type DeadLetter = z.infer<typeof DeadLetterSchema>;
export type DeadLetterStatus = DeadLetter['status'];

/** A dead letter without its impressions: what lists show (`show` gives the impressions). */
export type DeadLetterSummary = Omit<DeadLetter, 'impressions'> & { readonly impressionCount: number };
