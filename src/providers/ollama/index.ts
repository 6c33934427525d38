// Provider type ollama: Ollama's native API (adapter.ts translates to and from it).
import type { ProviderKind } from "../types.ts";
import { OllamaAdapter } from "./adapter.ts";

export const ollama: ProviderKind = {
  fields: {},
  defaultEndpoint: "http://localhost:11434",
  create: (config, send) => new OllamaAdapter(config, send),
};
