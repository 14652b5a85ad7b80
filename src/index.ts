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
export { classifyHttpResult } from './delivery/default-classification.js';
export { parseRetryAfter } from './delivery/retry-after.js';
export { type Impression, ImpressionSchema } from './domain/impression.js';
export { createWebhookVerifier, verifyWebhook, WebhookVerificationError, type WebhookHeaders } from './receiving/verify-webhook.js';
