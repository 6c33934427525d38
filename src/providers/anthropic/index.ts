// Provider type anthropic: the Anthropic Messages API (adapter.ts translates to and from it).
import type { ProviderKind } from "../types.ts";
import { AnthropicAdapter } from "./adapter.ts";

export const anthropic: ProviderKind = {
  fields: {},
  defaultEndpoint: "https://api.anthropic.com",
  create: (config, send) => new AnthropicAdapter(config, send),
};
