// The order in which one request tries the providers: its candidates (the fallback chain, or the one provider
// a "provider/model" name pins), each with the model it would run, sorted by the configured strategy.
import type { Config, ProviderConfig } from "../config/schema.ts";
import type { Adapter, ApiKind, ChatRequest, TextRequest } from "../providers/types.ts";
import { estimateRequestTokens, orderCandidates, type RankSignals } from "./strategies.ts";

export interface Candidate {
  provider: ProviderConfig;
  adapter: Adapter;
  model: string;
}

/** The model a provider receives for a client model name. */
export function resolveModel(p: ProviderConfig, model: string): string {
  const mapped = p.model_map?.[model];
  if (mapped) return mapped;
  if (p.models?.includes(model)) return model;
  return p.default_model;
}

export class Planner {
  readonly #providers: Map<string, ProviderConfig>;

  constructor(readonly config: Config, readonly adapters: Map<string, Adapter>, readonly signals: RankSignals) {
    this.#providers = new Map(config.providers.map((p) => [p.name, p]));
  }

  /** Candidates in chain order; a "provider/model" name pins one provider. (routing.max_attempts is the loop's.) */
  candidates(model: string): Candidate[] {
    const slash = model.indexOf("/");
    if (slash > 0) {
      const pinned = this.#providers.get(model.slice(0, slash));
      if (pinned) {
        const rest = model.slice(slash + 1);
        return [{ provider: pinned, adapter: this.adapters.get(pinned.name)!, model: pinned.model_map?.[rest] ?? (rest || pinned.default_model) }];
      }
    }
    const out: Candidate[] = [];
    for (const name of this.config.routing.fallback_chain) {
      const p = this.#providers.get(name)!;
      out.push({ provider: p, adapter: this.adapters.get(name)!, model: resolveModel(p, model) });
    }
    return out;
  }

  /** The candidates of one request in the order the configured strategy tries them. */
  order(kind: ApiKind, body: ChatRequest | TextRequest): Candidate[] {
    return orderCandidates(this.config.routing.strategy, this.candidates(body.model), this.signals, () => estimateRequestTokens(kind, body, this.config.routing.default_max_output_tokens), this.config.routing.sla);
  }
}
