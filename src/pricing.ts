// Cost of an upstream call from the provider's `pricing` table (USD per 1M tokens, by model, "*" as the
// fallback): input_tokens x price.input / 1e6 + output_tokens x price.output / 1e6. No table, no matching
// model and no "*" means a cost of 0.
import type { Config } from "../config/schema.ts";
import type { Usage } from "../providers/types.ts";

export interface Price {
  input: number;
  output: number;
}

export class PriceTable {
  readonly #byProvider = new Map<string, { models: Map<string, Price>; fallback?: Price }>();

  constructor(config: Pick<Config, "providers">) {
    for (const p of config.providers) {
      if (!p.pricing) continue;
      const models = new Map<string, Price>();
      for (const [model, price] of Object.entries(p.pricing)) if (model !== "*") models.set(model, price);
      this.#byProvider.set(p.name, { models, fallback: p.pricing["*"] });
    }
  }

  /** The price that applies to `model` on `provider`, or undefined. */
  price(provider: string, model: string): Price | undefined {
    const t = this.#byProvider.get(provider);
    if (!t) return undefined;
    return t.models.get(model) ?? t.fallback;
  }

  /** Cost in USD of one call. */
  cost(provider: string, model: string, usage: Usage | undefined): number {
    if (!usage) return 0;
    const price = this.price(provider, model);
    if (!price) return 0;
    return (usage.prompt_tokens * price.input + usage.completion_tokens * price.output) / 1e6;
  }
}
