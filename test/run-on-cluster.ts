// Runs test files against a local three-node Redis Cluster (REDIS_URL=redis+cluster://…):
// `npx tsx test/run-on-cluster.ts test/e2e/pipeline.test.ts`. Tests that build keys with
// `redisKeys(prefix)` themselves (not the hash-tagged `deploymentKeys`) are single-Redis only.
import { spawn } from 'node:child_process';
import { LocalRedisCluster } from './helpers/redis-cluster.js';

const cluster = await LocalRedisCluster.start();
const child = spawn(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=1', ...process.argv.slice(2)], {
  stdio: 'inherit',
  env: { ...process.env, REDIS_URL: cluster.url },
});
const code: number = await new Promise((resolve) => child.on('close', (exitCode) => resolve(exitCode ?? 1)));
await cluster.stop();
process.exit(code);
