import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * The catalog of metric names (Vector's naming). Emitted per batch, and only by the core
 * (ingest, routing, delivery): connectors never touch metrics.
 */
export function createMetrics(options: { defaultMetrics?: boolean } = {}) {
  const registry = new Registry();
  if (options.defaultMetrics !== false) collectDefaultMetrics({ register: registry, prefix: 'flagstream_process_' });
  const metrics = {
    registry,
    impressionsReceived: new Counter({
      name: 'flagstream_impressions_received_total',
      help: 'Impressions accepted at ingest, by source',
      labelNames: ['source'] as const,
      registers: [registry],
    }),
    ingestRequests: new Counter({
      name: 'flagstream_ingest_requests_total',
      help: 'Ingest requests by endpoint and HTTP status',
      labelNames: ['endpoint', 'status'] as const,
      registers: [registry],
    }),
    impressionsDropped: new Counter({
      name: 'flagstream_impressions_dropped_total',
      help: 'Impressions dropped on purpose at routing, by reason (tracking_off, unknown_flag, unknown_environment)',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    impressionsRouted: new Counter({
      name: 'flagstream_impressions_routed_total',
      help: 'Impressions that passed routing (before fan-out)',
      registers: [registry],
    }),
    deliveryRequests: new Counter({
      name: 'flagstream_delivery_requests_total',
      help: 'Requests sent to destinations, by outcome',
      labelNames: ['destination', 'outcome'] as const,
      registers: [registry],
    }),
    deliveryItems: new Counter({
      name: 'flagstream_delivery_items_total',
      help: 'Impressions settled per destination, by outcome (delivered, skipped, dead_lettered, retried)',
      labelNames: ['destination', 'outcome'] as const,
      registers: [registry],
    }),
    deliveryDuration: new Histogram({
      name: 'flagstream_delivery_duration_seconds',
      help: 'Duration of one request to a destination',
      labelNames: ['destination'] as const,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    }),
    deadLetters: new Counter({
      name: 'flagstream_dead_letters_total',
      help: 'Impressions written to dead letters, by destination and reason',
      labelNames: ['destination', 'reason'] as const,
      registers: [registry],
    }),
    deliveryLatency: new Histogram({
      name: 'flagstream_delivery_latency_seconds',
      help: 'Ingest-to-delivery latency: from an impression\'s reception to its delivery, per delivered impression',
      labelNames: ['destination'] as const,
      buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600, 21600, 86400],
      registers: [registry],
    }),
    deliveryRequestItems: new Histogram({
      name: 'flagstream_delivery_request_items',
      help: 'Impressions carried by one request to a destination (batch size)',
      labelNames: ['destination'] as const,
      buckets: [1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 50000],
      registers: [registry],
    }),
    ingestRequestImpressions: new Histogram({
      name: 'flagstream_ingest_request_impressions',
      help: 'Impressions carried by one accepted ingest request (batch size), by source',
      labelNames: ['source'] as const,
      buckets: [1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 50000],
      registers: [registry],
    }),
    queueJobs: new Gauge({
      name: 'flagstream_queue_jobs',
      help: 'Jobs in each queue by state, sampled when scraped (at most every few seconds)',
      labelNames: ['queue', 'state'] as const,
      registers: [registry],
    }),
    redisUp: new Gauge({
      name: 'flagstream_redis_up',
      help: '1 when this scrape read the queue counts from Redis, 0 when Redis was unreachable (flagstream_queue_jobs is then absent)',
      registers: [registry],
    }),
  };
  return metrics;
}
export type Metrics = ReturnType<typeof createMetrics>;
