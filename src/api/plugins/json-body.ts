import { type Readable, Transform } from 'node:stream';
import { gunzipSync, inflateSync } from 'node:zlib';
import type { FastifyInstance } from 'fastify';
import { AppError, formatPath, validationError } from '../../domain/errors.js';
import { findJsonProblem, scanJsonText } from '../../ingest/json-text.js';

/** Deepest nesting of arrays and objects any body may have; ingest formats need 4 plus `properties`. */
export const maxJsonDepth = 32;

/**
 * How much of an oversize body is still read (and discarded) before the 413 is sent. A client
 * writes its whole body before it reads the answer: closing the socket under it makes it report
 * EPIPE or ECONNRESET instead of the 413. Past these bounds the socket is closed anyway.
 */
export const oversizeDrain = { bytes: 64 * 1024 * 1024, ms: 10_000 } as const;

/**
 * JSON bodies, plain or compressed. Split's outgoing webhook gzips its body, and whether it
 * says so in Content-Encoding is undocumented, so gzip is also recognised by its magic bytes.
 * The size limit applies to the decompressed body too (decompression stops at the limit, so a
 * gzip bomb costs at most that much memory). Bodies nested deeper than maxJsonDepth, with a
 * string that is not valid Unicode or with a `__proto__` key are refused with the field named.
 */
export function registerJsonBody(app: FastifyInstance, maxBytes: number): void {
  const tooLarge = (what: string) => new AppError('FLAGSTREAM_ERR_PAYLOAD_TOO_LARGE', `${what} is over the limit of ${maxBytes} bytes`);

  app.addHook('preParsing', async (request, reply, payload) => {
    const declared = Number(request.headers['content-length']);
    if (declared > maxBytes) {
      if (!(await discard(payload))) reply.header('connection', 'close');
      throw tooLarge(`the body (${declared} bytes)`);
    }
    // Without a Content-Length (chunked), the size is only known while reading.
    if (Number.isNaN(declared) && request.headers['transfer-encoding'] !== undefined) return limitBody(payload, maxBytes, () => tooLarge('the body'));
    return payload;
  });

  // Only JSON is accepted anywhere: fastify's default text/plain parser would turn a 415 into a 400.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser(['application/json', 'application/x-ndjson'], { parseAs: 'buffer', bodyLimit: maxBytes }, (request, body, done) => {
    try {
      const raw = body as Buffer;
      const encoding = String(request.headers['content-encoding'] ?? '').toLowerCase();
      let bytes: Buffer = raw;
      if (encoding === 'gzip' || (raw[0] === 0x1f && raw[1] === 0x8b)) bytes = gunzipSync(raw, { maxOutputLength: maxBytes });
      else if (encoding === 'deflate') bytes = inflateSync(raw, { maxOutputLength: maxBytes });
      if (bytes.length === 0) return done(new AppError('FLAGSTREAM_ERR_VALIDATION', 'the body is empty; expected JSON'), undefined);
      const text = bytes.toString('utf8');
      const parsed: unknown = JSON.parse(text);
      // The scan costs a few ms per MB; the tree is walked only to name what the scan found.
      const shape = scanJsonText(text);
      if (shape.depth > maxJsonDepth || shape.loneSurrogate || shape.protoKey) {
        const problem = findJsonProblem(parsed, maxJsonDepth);
        if (problem !== undefined) return done(validationError([{ field: formatPath(problem.path), message: problem.message }]), undefined);
      }
      done(null, parsed);
    } catch (error) {
      const code = (error as { code?: string }).code;
      if (code === 'ERR_BUFFER_TOO_LARGE') return done(tooLarge('the decompressed body'), undefined);
      if (error instanceof SyntaxError) return done(new AppError('FLAGSTREAM_ERR_VALIDATION', `the body is not valid JSON: ${error.message}`), undefined);
      if (code === 'Z_DATA_ERROR' || code === 'Z_BUF_ERROR') return done(new AppError('FLAGSTREAM_ERR_VALIDATION', 'the body is not valid gzip'), undefined);
      done(error as Error, undefined);
    }
  });
}

/**
 * Passes the body on up to `maxBytes`; past that, reads the rest without keeping it and then
 * fails with `tooLarge()`, so the 413 goes to a client that has finished sending.
 */
function limitBody(source: Readable, maxBytes: number, tooLarge: () => Error): Readable {
  let received = 0;
  const limited = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      received += chunk.length;
      if (received <= maxBytes) return callback(null, chunk);
      source.unpipe(limited);
      void discard(source).then(() => callback(tooLarge()));
    },
  });
  return source.pipe(limited);
}

/** Reads and drops the rest of `stream`, within oversizeDrain; true when it reached the end. */
function discard(stream: Readable): Promise<boolean> {
  if (stream.readableEnded) return Promise.resolve(true);
  return new Promise((resolve) => {
    let read = 0;
    const finish = (complete: boolean) => {
      clearTimeout(timer);
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('close', onClose);
      stream.off('error', onClose);
      if (!complete) stream.pause();
      resolve(complete);
    };
    const onData = (chunk: Buffer) => {
      read += chunk.length;
      if (read > oversizeDrain.bytes) finish(false);
    };
    const onEnd = () => finish(true);
    const onClose = () => finish(stream.readableEnded);
    const timer = setTimeout(() => finish(false), oversizeDrain.ms);
    timer.unref();
    stream.on('data', onData);
    stream.on('end', onEnd);
    stream.on('close', onClose);
    stream.on('error', onClose);
    stream.resume();
  });
}
