import { gunzipSync, inflateSync } from 'node:zlib';
import type { FastifyInstance } from 'fastify';
import { AppError } from '../../domain/errors.js';

/**
 * JSON bodies, plain or compressed. Split's outgoing webhook gzips its body, and whether it
 * says so in Content-Encoding is undocumented, so gzip is also recognised by its magic bytes.
 * The size limit applies to the decompressed body too.
 */
export function registerJsonBody(app: FastifyInstance, maxBytes: number): void {
  // Only JSON is accepted anywhere: fastify's default text/plain parser would turn a 415 into a 400.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser(['application/json', 'application/x-ndjson'], { parseAs: 'buffer', bodyLimit: maxBytes }, (request, body, done) => {
    try {
      const raw = body as Buffer;
      const encoding = String(request.headers['content-encoding'] ?? '').toLowerCase();
      let text: Buffer = raw;
      if (encoding === 'gzip' || (raw[0] === 0x1f && raw[1] === 0x8b)) text = gunzipSync(raw, { maxOutputLength: maxBytes });
      else if (encoding === 'deflate') text = inflateSync(raw, { maxOutputLength: maxBytes });
      if (text.length === 0) return done(new AppError('FLAGSTREAM_ERR_VALIDATION', 'the body is empty; expected JSON'), undefined);
      done(null, JSON.parse(text.toString('utf8')));
    } catch (error) {
      const code = (error as { code?: string }).code;
      if (code === 'ERR_BUFFER_TOO_LARGE') return done(new AppError('FLAGSTREAM_ERR_PAYLOAD_TOO_LARGE', `the decompressed body is over the limit of ${maxBytes} bytes`), undefined);
      if (error instanceof SyntaxError) return done(new AppError('FLAGSTREAM_ERR_VALIDATION', `the body is not valid JSON: ${error.message}`), undefined);
      if (code === 'Z_DATA_ERROR' || code === 'Z_BUF_ERROR') return done(new AppError('FLAGSTREAM_ERR_VALIDATION', 'the body is not valid gzip'), undefined);
      done(error as Error, undefined);
    }
  });
}
