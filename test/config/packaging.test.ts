import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, test } from 'node:test';
import { parse } from 'yaml';

const root = fileURLToPath(new URL('../..', import.meta.url));
const read = (path: string) => readFileSync(join(root, path), 'utf8');

describe('what is shipped: the npm tarball, the image, the compose stack', () => {
  test('the tarball has the LICENSE, and no source map that points at a file it does not ship', async () => {
    // `npm pack --dry-run` lists what `npm publish` would ship (dist/ is built by pretest).
    const { stdout } = await promisify(execFile)('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root });
    const files = new Set((JSON.parse(stdout) as { files: { path: string }[] }[])[0]?.files.map((f) => f.path));
    assert.ok(files.has('LICENSE'));
    assert.match(read('LICENSE'), /^\s*Apache License\s+Version 2\.0, January 2004/);
    assert.equal(JSON.parse(read('package.json')).license, 'Apache-2.0');
    assert.ok([...files].some((f) => f.startsWith('dist/') && f.endsWith('.js')), 'dist/ is built and shipped');
    for (const path of files) {
      if (path.endsWith('.js')) {
        const mapUrl = /\/\/# sourceMappingURL=(\S+)\s*$/.exec(read(path))?.[1];
        if (mapUrl !== undefined) assert.ok(files.has(normalize(join(dirname(path), mapUrl))), `${path} names ${mapUrl}, which is not shipped`);
      }
      if (path.endsWith('.map')) {
        const map = JSON.parse(read(path)) as { sources: string[]; sourcesContent?: string[] };
        for (const source of map.sources) {
          assert.ok(map.sourcesContent !== undefined || files.has(normalize(join(dirname(path), source))), `${path} points at ${source}, which is not shipped`);
        }
      }
    }
  });

  test('the image runs on Node 22 and has a HEALTHCHECK on /readyz', () => {
    const dockerfile = read('Dockerfile');
    const bases = [...dockerfile.matchAll(/^FROM\s+(\S+)/gm)].map((m) => m[1]);
    assert.ok(bases.length > 0);
    for (const base of bases) assert.match(base ?? '', /^node:22\b/);
    assert.match(dockerfile, /^HEALTHCHECK\b[\s\S]*\/readyz/m);
  });

  test('compose neither defaults the admin token on every interface nor re-applies the example at every start', () => {
    const compose = parse(read('docker-compose.yml'), { merge: true }) as { services: Record<string, { command?: string[]; environment?: Record<string, string>; ports?: string[] }> };
    const flagstream = compose.services.flagstream;
    assert.ok(flagstream);
    const token = flagstream.environment?.ADMIN_TOKEN ?? '';
    const required = /^\$\{ADMIN_TOKEN:\?/.test(token);
    const localOnly = (flagstream.ports ?? []).every((port) => port.startsWith('127.0.0.1:'));
    assert.doesNotMatch(token, /change-me|:-/, 'no default admin token');
    assert.ok(required || localOnly, 'ADMIN_TOKEN is required, or the API is bound to 127.0.0.1');
    // The running service does not apply a file at start; the example is applied only into an empty configuration.
    assert.ok(!(flagstream.command ?? []).includes('--config') && flagstream.environment?.FLAGSTREAM_CONFIG === undefined);
    const appliers = Object.values(compose.services).filter((service) => (service.command ?? []).includes('apply'));
    for (const applier of appliers) assert.ok(applier.command?.includes('--if-empty'), 'apply only when nothing is configured');
  });
});
