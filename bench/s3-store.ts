// s3rver for `npm run bench:s3`, in its own process so that storing 50 000-row objects does not
// compete with the measured process for its event loop: sends its port, stops when disconnected.
import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

type S3rverConstructor = new (options: { address: string; port: number; silent: boolean; directory: string; configureBuckets: { name: string }[] }) => {
  run(): Promise<{ port: number }>;
  close(): Promise<void>;
};
const S3rver = createRequire(import.meta.url)('s3rver') as S3rverConstructor;

const directory = await mkdtemp(join(tmpdir(), 'flagstream-bench-s3-'));
const server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory, configureBuckets: [{ name: process.argv[2] ?? 'bench' }] });
const { port } = await server.run();
process.send?.({ port });
process.once('disconnect', () => {
  void server.close().then(() => rm(directory, { recursive: true, force: true }));
});
