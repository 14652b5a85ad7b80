import { type Impression, impressionId } from '../../src/domain/impression.js';

let counter = 0;

/** A canonical impression with sensible defaults; each call differs by time unless given. */
export function makeImpression(overrides: Partial<Impression> = {}): Impression {
  counter += 1;
  const fields = {
    key: `user-${counter}`,
    split: 'new_checkout',
    treatment: 'on',
    label: 'default rule',
    time: 1_718_900_000_000 + counter,
    splitVersionNumber: 1_718_800_000_000,
    environmentId: 'env-prod',
    ...overrides,
  };
  return {
    id: overrides.id ?? impressionId(fields),
    environmentName: 'Production',
    trafficTypeName: 'user',
    receptionTimestamp: 1_718_900_001_000,
    ...fields,
  };
}
