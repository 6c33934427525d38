// Picks the adapter module for a provider's wire protocol.
import type { ProviderConfig } from "../config/schema.ts";
import { AnthropicAdapter } from "./anthropic.ts";
import { MockAdapter } from "./mock.ts";
import { OllamaAdapter } from "./ollama.ts";
import { OpenAIAdapter } from "./openai.ts";
import type { Adapter, UpstreamFetch } from "./types.ts";

/** `send`: the upstream client (default: the global fetch). */
export function createAdapter(cfg: ProviderConfig, send?: UpstreamFetch): Adapter {
  switch (cfg.type) {
    case "openai":
    case "deepseek":
    case "openai_compatible":
      return new OpenAIAdapter(cfg, send);
    case "anthropic":
      return new AnthropicAdapter(cfg, send);
    case "ollama":
      return new OllamaAdapter(cfg, send);
    case "mock":
      return new MockAdapter(cfg);
  }
}
