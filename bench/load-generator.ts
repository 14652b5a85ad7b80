// The benchmark's load generator, in its own process (forked by bench/run.ts): Split SDK bulk
// requests (`POST /api/testImpressions/bulk`, `[{ f, i: [{ k, t, m, c, r }] }]`, the SDK's
// headers) with a unique key per impression, `concurrency` requests in flight, at full speed or
// paced. A 503 or 429 (ingest backlog full) is retried after 50 ms, as an SDK backs off; any
// other refusal is a benchmark bug and is reported.
import http from 'node:http';
import { setTimeout as delay } from 'node:timers/promises';
import { LatencyHistogram } from './counting.js';
import type { LoadResult, LoadSpec, Question } from './messages.js';

const bulkPath = '/api/testImpressions/bulk';
const backoffMs = 50;
/** Set by a `cancel` question: every lane stops after its request under way. */
let cancelled = false;
/** Impressions accepted so far by the run under way, for `progress` questions. */
let acceptedSoFar = 0;

interface Answer {
  readonly status: number | 'error';
  readonly body: string;
}

function post(agent: http.Agent, target: URL, sdkKey: string, body: string): Promise<Answer> {
  return new Promise((resolve) => {
    const request = http.request(
      {
        agent,
        host: target.hostname,
        port: target.port,
        path: bulkPath,
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
          authorization: `Bearer ${sdkKey}`,
          SplitSDKVersion: 'nodejs-11.11.0',
          SplitSDKMachineIP: '10.0.0.5',
          SplitSDKMachineName: 'bench-load',
        },
        timeout: 60_000,
      },
      (response) => {
        let text = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => (text += chunk));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, body: text }));
        response.on('error', (error) => resolve({ status: 'error', body: String(error) }));
      },
    );
    request.on('timeout', () => request.destroy(new Error('no answer within 60 s')));
    request.on('error', (error) => resolve({ status: 'error', body: String(error) }));
    request.end(body);
  });
}

async function run(spec: LoadSpec): Promise<LoadResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: spec.concurrency });
  const targets = spec.targets.map((url) => new URL(url));
  const statuses: Record<string, number> = {};
  const acceptedPerKey = spec.sdkKeys.map(() => 0);
  const answerMs = new LatencyHistogram();
  let firstRefusal: string | null = null;
  let requests = 0;
  let acceptedRequests = 0;
  let acceptedImpressions = 0;
  let next = 0;
  const startedAt = Date.now();
  const rate = spec.impressionsPerSecond;

  const oneRequest = async (index: number, count: number): Promise<void> => {
    const keyIndex = index % spec.sdkKeys.length;
    const items = Array.from({ length: count }, (_, j) => ({ k: `${spec.tag}-${index}-${j}`, t: j % 2 === 0 ? 'on' : 'off', m: Date.now(), c: 1_718_800_000_000, r: 'default rule' }));
    const body = JSON.stringify([{ f: spec.flag, i: items }]);
    const target = targets[index % targets.length] as URL;
    // The same body on every retry: the same impression ids, so a sink never counts one twice.
    while (!cancelled) {
      const sentAt = performance.now();
      const answer = await post(agent, target, spec.sdkKeys[keyIndex] as string, body);
      requests += 1;
      statuses[String(answer.status)] = (statuses[String(answer.status)] ?? 0) + 1;
      if (typeof answer.status === 'number' && answer.status >= 200 && answer.status < 300) {
        answerMs.record(performance.now() - sentAt);
        acceptedRequests += 1;
        acceptedImpressions += count;
        acceptedSoFar = acceptedImpressions;
        acceptedPerKey[keyIndex] = (acceptedPerKey[keyIndex] ?? 0) + count;
        return;
      }
      if (answer.status !== 503 && answer.status !== 429 && answer.status !== 'error') {
        firstRefusal ??= `${answer.status} ${answer.body.slice(0, 300)}`;
        return;
      }
      await delay(backoffMs);
    }
  };

  const lane = async (): Promise<void> => {
    for (;;) {
      if (cancelled) return;
      const index = next++;
      const offset = index * spec.perRequest;
      if (spec.total !== undefined && offset >= spec.total) return;
      if (spec.durationMs !== undefined && Date.now() - startedAt >= spec.durationMs) return;
      if (rate !== undefined) {
        const wait = startedAt + (offset / rate) * 1000 - Date.now();
        if (wait > 0) await delay(wait);
      }
      await oneRequest(index, spec.total === undefined ? spec.perRequest : Math.min(spec.perRequest, spec.total - offset));
    }
  };

  await Promise.all(Array.from({ length: spec.concurrency }, lane));
  agent.destroy();
  return { requests, acceptedRequests, acceptedImpressions, acceptedPerKey, statuses, firstRefusal, startedAt, finishedAt: Date.now(), answerMs: answerMs.summary() };
}

process.on('message', (question: Question<'run' | 'cancel' | 'progress'> & { spec: LoadSpec }) => {
  if (question.type === 'progress') {
    process.send?.({ replyTo: question.id, accepted: acceptedSoFar });
    return;
  }
  if (question.type === 'cancel') {
    cancelled = true;
    process.send?.({ replyTo: question.id });
    return;
  }
  cancelled = false;
  acceptedSoFar = 0;
  void run(question.spec).then((result) => process.send?.({ replyTo: question.id, ...result }));
});
process.on('disconnect', () => process.exit(0));
process.send?.({ type: 'listening' });
