// The public API of the package: what plugin authors and receivers import.
export type {
  AnyConnector,
  BatchLimits,
  Connector,
  ConnectorPlatform,
  DeliveryOutcome,
  EncodeContext,
  EncodedRequest,
  EncodeResult,
  HttpClient,
  HttpRequestSpec,
  HttpResponse,
  ItemOutcome,
  RejectCode,
  SendResult,
  TransportError,
} from './connectors/connector.js';
export { defineHttpConnector, type HttpConnectorDefinition } from './connectors/define-http-connector.js';
export { classifyHttpResult, describeResponse, excerpt, parseRetryAfter } from './connectors/http-classification.js';
export { customProperties, defaultEventName, identityFor, identityMappingSchema, impressionEventProperties } from './connectors/impression-event.js';
export { type Impression, ImpressionSchema } from './domain/impression.js';
export { createWebhookVerifier, verifyWebhook, WebhookVerificationError, type WebhookHeaders } from './receiving/verify-webhook.js';
// Client-side adapters (Split SDK impression listeners for BugSnag and Quantum Metric); also `flagstream/adapters`.
export * from './adapters/index.js';
// The same zod instance flagstream validates with, for plugin settings schemas.
export { z } from 'zod';
