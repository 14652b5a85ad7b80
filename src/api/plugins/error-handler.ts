import type { FastifyError, FastifyInstance } from 'fastify';
import { AppError } from '../../domain/errors.js';
import { isRedisUnavailable } from '../../runtime/redis-outage-log.js';

interface ErrorBody {
  error: { code: string; message: string; field?: string; details?: readonly { field: string; message: string }[] };
}

const fastifyCodes: Record<string, { status: number; code: string; message?: string }> = {
  FST_ERR_CTP_BODY_TOO_LARGE: { status: 413, code: 'FLAGSTREAM_ERR_PAYLOAD_TOO_LARGE' },
  FST_ERR_CTP_INVALID_MEDIA_TYPE: { status: 415, code: 'FLAGSTREAM_ERR_UNSUPPORTED_MEDIA_TYPE', message: 'unsupported Content-Type; send application/json' },
  FST_ERR_CTP_EMPTY_JSON_BODY: { status: 400, code: 'FLAGSTREAM_ERR_VALIDATION', message: 'the body is empty; expected JSON' },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: { status: 400, code: 'FLAGSTREAM_ERR_VALIDATION' },
};

/** Problems listed in one answer: a hostile body can have one per item, the first ones say enough. */
const maxDetails = 100;

/** AppError → `{ error: { code, message, field } }` with its status; 5xx details stay in the log. */
export function registerErrorHandler(app: FastifyInstance): void {
  app.setErrorHandler((thrown: FastifyError | AppError, request, reply) => {
    // Redis unreachable or too slow: a 503 to retry, never a 500 (see requestConnectionOptions).
    const error = isRedisUnavailable(thrown) ? new AppError('FLAGSTREAM_ERR_REDIS', 'Redis is unreachable or did not answer in time; retry later', { cause: thrown }) : thrown;
    if (error instanceof AppError) {
      const body: ErrorBody = { error: { code: error.code, message: error.message } };
      if (error.field !== undefined) body.error.field = error.field;
      if (error.details.length > 1) body.error.details = error.details.slice(0, maxDetails);
      if (error.httpStatus === 503) reply.header('retry-after', '5');
      // A 503 is a passing state (Redis outage, full backlog) that the outage log and the metrics report once, not per request.
      if (error.httpStatus >= 500 && error.httpStatus !== 503) request.log.error({ err: error }, 'request failed');
      return reply.status(error.httpStatus).send(body);
    }
    const known = error.code === undefined ? undefined : fastifyCodes[error.code];
    if (known !== undefined) return reply.status(known.status).send({ error: { code: known.code, message: known.message ?? error.message } } satisfies ErrorBody);
    if (error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 500) {
      return reply.status(error.statusCode).send({ error: { code: 'FLAGSTREAM_ERR_VALIDATION', message: error.message } } satisfies ErrorBody);
    }
    request.log.error({ err: error }, 'request failed');
    return reply.status(500).send({ error: { code: 'FLAGSTREAM_ERR_INTERNAL', message: 'internal error; see the server log' } } satisfies ErrorBody);
  });
  app.setNotFoundHandler((request, reply) =>
    reply.status(404).send({ error: { code: 'FLAGSTREAM_ERR_NOT_FOUND', message: `no route ${request.method} ${request.url.split('?')[0] ?? ''}` } } satisfies ErrorBody),
  );
}
