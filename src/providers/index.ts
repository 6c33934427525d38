// Picks the adapter module for a provider's wire protocol.
import type { ProviderConfig } from "../config/schema.ts";
import { AnthropicAdapter } from "./anthropic.ts";
import { MockAdapter } from "./mock.ts";
import { OllamaAdapter } from "./ollama.ts";
import { OpenAIAdapter } from "./openai.ts";
import type { Adapter } from "./types.ts";

export function createAdapter(cfg: ProviderConfig): Adapter {
  switch (cfg.type) {
    case "openai":
    case "deepseek":
    case "openai_compatible":
      return new OpenAIAdapter(cfg);
    case "anthropic":
      return new AnthropicAdapter(cfg);
    case "ollama":
      return new OllamaAdapter(cfg);
    case "mock":
      return new MockAdapter(cfg);
  }
}
