// `npm test`: runs the suite against REDIS_URL, else 127.0.0.1:6379, else a private redis-server
// child (the same fallback `flagstream serve` uses), so a fresh machine needs no Redis running.
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { connectRedis } from '../src/runtime/redis-connection.js';

const logger = pino({ level: 'info' }, process.stderr);
const connection = await connectRedis({ url: process.env.REDIS_URL, dataDir: mkdtempSync(join(tmpdir(), 'flagstream-test-redis-')), logger, allowChild: true });
connection.redis.disconnect();
const files = process.argv.slice(2);
const child = spawn(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=1', ...files], {
  stdio: 'inherit',
  env: { ...process.env, REDIS_URL: connection.url },
});
const code: number = await new Promise((resolve) => child.on('close', (exitCode) => resolve(exitCode ?? 1)));
await connection.close();
process.exit(code);
