// Prices from a provider's `pricing` table (USD per 1M tokens, by model, "*" as the fallback), for the `cost`
// strategy (an estimate before the call) and for stats and metrics (the cost of each call from its usage).
// No table, no matching model and no "*" means no price.
import type { Config } from "./config/schema.ts";
import type { Usage } from "./providers/types.ts";

export interface Price {
  input: number;
  output: number;
}

export type Pricing = Record<string, Price>;

/** The price of a model from a provider's pricing table (by model, "*" as fallback), or undefined. */
export function priceFor(pricing: Pricing | undefined, model: string): Price | undefined {
  if (!pricing) return undefined;
  // own keys only: a model named like an Object.prototype member ("constructor") is not priced by it
  return (Object.hasOwn(pricing, model) ? pricing[model] : undefined) ?? pricing["*"];
}

/** Cost in USD of `input` and `output` tokens at `price`. */
export function tokenCost(price: Price, input: number, output: number): number {
  return (input * price.input + output * price.output) / 1e6;
}

/** The pricing tables of one config's providers. */
export class PriceTable {
  readonly #byProvider = new Map<string, Pricing>();

  constructor(config: Pick<Config, "providers">) {
    for (const p of config.providers) if (p.pricing) this.#byProvider.set(p.name, p.pricing);
  }

  /** The price that applies to `model` on `provider`, or undefined. */
  price(provider: string, model: string): Price | undefined {
    return priceFor(this.#byProvider.get(provider), model);
  }

  /** Cost in USD of one call (0 without usage or price). */
  cost(provider: string, model: string, usage: Usage | undefined): number {
    if (!usage) return 0;
    const price = this.price(provider, model);
    return price ? tokenCost(price, usage.prompt_tokens, usage.completion_tokens) : 0;
  }
}
