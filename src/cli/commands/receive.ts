import http from 'node:http';
import { createWebhookVerifier, WebhookVerificationError } from '../../receiving/verify-webhook.js';

/**
 * `flagstream receive --port P --secret S`: a local receiver for flagstream's webhooks. It
 * verifies each signature, rejects stale timestamps and bad signatures, acknowledges a repeated
 * `webhook-id` without processing it again, and prints each delivery.
 */
export async function receiveCommand(options: { port: number; host: string; secret: string; json?: boolean }): Promise<void> {
  if (!/^whsec_[A-Za-z0-9+/=]+$/.test(options.secret)) throw new Error('--secret: expected the destination secret, whsec_<base64>');
  const verifier = createWebhookVerifier(options.secret);
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const answer = (status: number, payload: Record<string, unknown>) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(payload));
      };
      try {
        const { duplicate, id, impressions } = verifier.verify(body, req.headers);
        if (duplicate) {
          process.stdout.write(`${new Date().toISOString()} ${id} duplicate delivery ignored\n`);
          return answer(200, { status: 'duplicate' });
        }
        if (options.json) process.stdout.write(`${JSON.stringify({ id, receivedAt: new Date().toISOString(), impressions })}\n`);
        else {
          process.stdout.write(`${new Date().toISOString()} ${id} ${impressions.length} impression(s) verified\n`);
          for (const impression of impressions) process.stdout.write(`  ${JSON.stringify(impression)}\n`);
        }
        answer(200, { status: 'ok', received: impressions.length });
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        const stale = /timestamp/i.test(message);
        process.stderr.write(`${new Date().toISOString()} rejected: ${message}\n`);
        answer(error instanceof WebhookVerificationError ? (stale ? 400 : 401) : 400, { status: 'rejected', error: message });
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, resolve);
  });
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : options.port;
  process.stderr.write(`flagstream receive: listening on http://${options.host}:${port}/ (any path), verifying with the given secret\n`);
  const stop = () => server.close(() => process.exit(0));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}
