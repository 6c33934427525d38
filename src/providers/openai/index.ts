// The OpenAI wire protocol's provider types: openai, deepseek and openai_compatible (vLLM, Groq, Together,
// LM Studio, ...). They differ only in their default endpoint (openai_compatible has none: its config names one).
import type { ProviderKind } from "../types.ts";
import { OpenAIAdapter } from "./adapter.ts";

const create: ProviderKind["create"] = (config, send) => new OpenAIAdapter(config, send);

export const openai: ProviderKind = { fields: {}, defaultEndpoint: "https://api.openai.com/v1", create };
export const deepseek: ProviderKind = { fields: {}, defaultEndpoint: "https://api.deepseek.com/v1", create };
export const openaiCompatible: ProviderKind = { fields: {}, create };
