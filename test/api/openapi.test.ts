import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Validator } from '@seriousme/openapi-schema-validator';
import { describedRoutes } from '../../src/api/openapi.js';
import { startTestApp, type TestApp } from '../helpers/test-app.js';

type Operation = { summary?: string; tags?: string[]; security?: unknown[]; requestBody?: { content: Record<string, { schema: Record<string, unknown> }> }; parameters?: { in: string; name: string }[] };
type OpenApiDocument = { openapi: string; paths: Record<string, Record<string, Operation>>; components: { securitySchemes: Record<string, unknown> } };

/** Every (method, path) fastify serves, read from its route tree (`printRoutes` without common prefixes). */
function registeredRoutes(tree: string): { method: string; path: string }[] {
  const routes: { method: string; path: string }[] = [];
  const stack: string[] = [];
  for (const line of tree.split('\n')) {
    const match = /^((?:[│ ] {3})*)[├└]── (.*?)(?: \(([A-Z, ]+)\))?$/.exec(line);
    if (match === null) continue;
    const depth = (match[1] ?? '').length / 4;
    stack.length = depth;
    stack.push(match[2] ?? '');
    for (const method of (match[3] ?? '').split(',').map((m) => m.trim())) if (method !== '') routes.push({ method, path: stack.join('') });
  }
  return routes;
}

const notApi = (path: string) => path === '/openapi.json' || path === '/docs' || path.startsWith('/docs/') || path === '/ui' || path.startsWith('/ui/');

describe('/openapi.json and /docs', () => {
  let app: TestApp;
  let document: OpenApiDocument;

  before(async () => {
    app = await startTestApp({ workers: false });
    const response = await app.server.inject({ method: 'GET', url: '/openapi.json' });
    assert.equal(response.statusCode, 200);
    document = JSON.parse(response.body) as OpenApiDocument;
  });
  after(() => app.close());

  test('is a valid OpenAPI 3.1 document', async () => {
    const validator = new Validator();
    const result = await validator.validate(structuredClone(document) as unknown as Record<string, unknown>);
    assert.equal(result.valid, true, JSON.stringify(result.errors, null, 2));
    assert.equal(document.openapi, '3.1.0');
  });

  test('every registered route of the ingest, admin and operations APIs appears, and nothing else', () => {
    const routes = registeredRoutes(app.server.printRoutes({ commonPrefix: false })).filter((r) => r.method !== 'HEAD' && !notApi(r.path));
    assert.ok(routes.length >= 40, `read ${routes.length} routes from the route tree`);
    const documented = new Set(Object.entries(document.paths).flatMap(([path, operations]) => Object.keys(operations).map((method) => `${method.toUpperCase()} ${path}`)));
    const expected = new Set(routes.map((r) => `${r.method} ${r.path.replace(/:(\w+)/g, '{$1}')}`));
    assert.deepEqual([...expected].filter((route) => !documented.has(route)), [], 'routes missing from /openapi.json');
    assert.deepEqual([...documented].filter((route) => !expected.has(route)), [], 'operations in /openapi.json without a route');
    for (const route of ['POST /v1/impressions', 'POST /api/testImpressions/bulk', 'POST /webhooks/split/impressions', 'PUT /admin/v1/environments/{environmentId}', 'POST /admin/v1/impressions/export', 'POST /admin/v1/impressions/backfill']) {
      assert.ok(documented.has(route), route);
    }
  });

  test('every route description names a route that exists (none left behind by a rename)', () => {
    for (const route of describedRoutes) {
      const [method = '', url = ''] = route.split(' ');
      assert.ok(app.server.hasRoute({ method: method as 'GET', url }), `described but not registered: ${route}`);
    }
  });

  test('request bodies, parameters and security come from the route schemas', () => {
    const native = document.paths['/v1/impressions']?.post;
    const body = native?.requestBody?.content['application/json']?.schema as { properties: { impressions: { type: string; minItems: number; items: { required: string[] } } } };
    assert.equal(body.properties.impressions.type, 'array');
    assert.equal(body.properties.impressions.minItems, 1);
    assert.deepEqual(body.properties.impressions.items.required.sort(), ['key', 'split', 'time', 'treatment']);
    assert.deepEqual(native?.security, [{ sdkKey: [] }]);

    const putEnvironment = document.paths['/admin/v1/environments/{environmentId}']?.put;
    assert.deepEqual(putEnvironment?.security, [{ adminToken: [] }]);
    assert.ok(putEnvironment?.parameters?.some((p) => p.in === 'path' && p.name === 'environmentId'));
    const envBody = putEnvironment?.requestBody?.content['application/json']?.schema as { properties: Record<string, unknown> };
    assert.ok('destinations' in envBody.properties && 'sdkKeys' in envBody.properties);

    // The ?token= query parameter is the webhookToken security scheme (apiKey in query).
    assert.deepEqual(document.paths['/webhooks/split/impressions']?.post?.security, [{ webhookToken: [] }, { webhookBearer: [] }]);
    assert.deepEqual(document.components.securitySchemes.webhookToken, { type: 'apiKey', in: 'query', name: 'token', description: "The environment's webhookToken" });
    const exportBody = document.paths['/admin/v1/impressions/export']?.post?.requestBody?.content['application/json']?.schema as { required: string[]; properties: Record<string, unknown> };
    assert.deepEqual(exportBody.required.sort(), ['from', 'since']);
    assert.ok(['flags', 'treatments', 'keys', 'until', 'format'].every((name) => name in exportBody.properties));
  });

  test('documenting routes changes neither validation nor its messages', async () => {
    const response = await app.server.inject({ method: 'PUT', url: '/admin/v1/environments/env-doc', headers: { authorization: 'Bearer test-admin-token', 'content-type': 'application/json' }, payload: { sdkKeys: 'not-a-list' } });
    assert.equal(response.statusCode, 400);
    const error = (JSON.parse(response.body) as { error: { code: string; field: string; message: string } }).error;
    assert.equal(error.code, 'FLAGSTREAM_ERR_VALIDATION');
    assert.equal(error.field, 'sdkKeys');
  });

  test('/docs is a browsable reference served from the package, no CDN', async () => {
    const page = await app.server.inject({ method: 'GET', url: '/docs' });
    assert.equal(page.statusCode, 200);
    assert.match(String(page.headers['content-type']), /^text\/html/);
    assert.match(page.body, /swagger-ui/);
    const external = [...page.body.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1] ?? '').filter((url) => /^(https?:)?\/\//.test(url));
    assert.deepEqual(external, []);
    const bundle = await app.server.inject({ method: 'GET', url: '/docs/static/swagger-ui-bundle.js' });
    assert.equal(bundle.statusCode, 200);
    assert.ok(bundle.body.length > 100_000);
    const spec = await app.server.inject({ method: 'GET', url: '/docs/json' });
    assert.equal(spec.statusCode, 200);
    assert.equal((JSON.parse(spec.body) as OpenApiDocument).openapi, '3.1.0');
  });
});
