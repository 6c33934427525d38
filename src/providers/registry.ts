// The provider types: one line per `type:` that config.yaml accepts, naming its module (a folder per wire
// protocol: its config keys, default endpoint and adapter). The config schema is built from this list, and
// createAdapter finds a provider's adapter here. The order is the order the config errors list the types in.
import type { ProviderConfig } from "../config/schema.ts";
import { anthropic } from "./anthropic/index.ts";
import { mock } from "./mock/index.ts";
import { ollama } from "./ollama/index.ts";
import { deepseek, openai, openaiCompatible } from "./openai/index.ts";
import type { Adapter, ProviderKind, UpstreamFetch } from "./types.ts";
import { globalFetch } from "./upstream.ts";

export const PROVIDER_TYPES = {
  ollama,
  openai,
  anthropic,
  deepseek,
  openai_compatible: openaiCompatible,
  mock,
} satisfies Record<string, ProviderKind>;

export type ProviderType = keyof typeof PROVIDER_TYPES;

/** `send`: the upstream client (default: the global fetch). */
export function createAdapter(cfg: ProviderConfig, send?: UpstreamFetch): Adapter {
  return PROVIDER_TYPES[cfg.type].create(cfg, cfg.ca ? withCa(send ?? globalFetch, cfg.ca) : send);
}

/** `send` with the provider's CA certificates on every request (UpstreamInit.ca). */
function withCa(send: UpstreamFetch, ca: string): UpstreamFetch {
  return (url, init, stream) => send(url, { ...init, ca }, stream);
}
