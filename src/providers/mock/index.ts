// Provider type mock: answers without any network, so failover and breakers can be tried with no API key.
import { z } from "zod";
import type { ProviderConfig } from "../../config/schema.ts";
import type { ProviderKind } from "../types.ts";
import { MockAdapter } from "./adapter.ts";

/** reply (text), latency_ms (delay before answering), fail_rate (0..1 chance of a 503) */
const MockFields = z.strictObject({
  reply: z.string().optional(),
  latency_ms: z.number().min(0).optional(),
  fail_rate: z.number().min(0).max(1).optional(),
});

/** A mock provider's config: the schema gave it the mock's own keys. */
export type MockConfig = ProviderConfig & z.infer<typeof MockFields>;

export const mock: ProviderKind = {
  fields: MockFields.shape,
  offline: true,
  create: (config: MockConfig) => new MockAdapter(config),
};
