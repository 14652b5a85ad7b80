/** What every ingest format needs beyond the body: who sent it and when it arrived. */
export interface IngestContext {
  readonly environmentId: string;
  readonly environmentName: string;
  readonly receivedAt: number;
}
