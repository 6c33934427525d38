// The four routing strategies as pure functions: each orders one request's candidates; the failover loop
// then walks that order (skipping providers whose breaker is open). Sorting is stable, so ties keep the
// chain order.
import { priceFor, tokenCost, type Pricing } from "../pricing.ts";
import { estimatePromptTokens } from "../providers/tokens.ts";
import type { ApiKind, ChatRequest, TextRequest } from "../providers/types.ts";
import type { BreakerState } from "./breaker.ts";
import type { WindowSummary } from "./health.ts";

export type Strategy = "priority" | "cost" | "latency" | "health";

/** What a strategy needs to know about a candidate (the Router's candidates have this shape). */
export interface Rankable {
  provider: { name: string; pricing?: Pricing };
  /** the model this provider would run for the request */
  model: string;
}

/** The live signals strategies read (breaker states and the health tracker). */
export interface RankSignals {
  state(name: string): BreakerState | undefined;
  /** rolling latency in ms of recent successes, undefined without recent data */
  latency(name: string): number | undefined;
  /** recent success rate 0..1, undefined without recent data */
  successRate(name: string): number | undefined;
  /** the recent window the cost strategy's SLA is judged on; undefined with too few samples to judge */
  window?(name: string): WindowSummary | undefined;
}

/** routing.sla: what the cost strategy asks of a provider before it ranks it by price. */
export interface Sla {
  max_p95_latency_ms?: number;
  min_success_rate?: number;
}

export interface TokenEstimate {
  input: number;
  output: number;
}

/** Output tokens assumed for the cost estimate when the request sets no max_tokens. */
export const DEFAULT_OUTPUT_TOKENS = 512;

/** The request's input tokens estimated from its text, and its output tokens from max_tokens (or `defaultOutput`). */
export function estimateRequestTokens(kind: ApiKind, body: ChatRequest | TextRequest, defaultOutput = DEFAULT_OUTPUT_TOKENS): TokenEstimate {
  // the same prompt estimate as the usage recorded when a provider reports none (providers/tokens.ts)
  const input = estimatePromptTokens(kind, body);
  const max = (body as ChatRequest).max_completion_tokens ?? body.max_tokens;
  return { input, output: typeof max === "number" && max > 0 ? max : defaultOutput };
}

/** Estimated USD cost of a request on a candidate; Infinity when the provider has no price for the model. */
export function estimateCost(c: Rankable, tokens: TokenEstimate): number {
  const p = priceFor(c.provider.pricing, c.model);
  return p ? tokenCost(p, tokens.input, tokens.output) : Infinity;
}

function sortBy<T>(cands: T[], key: (c: T) => number): T[] {
  const keyed = cands.map((c, i) => ({ c, i, k: key(c) }));
  keyed.sort((a, b) => (a.k === b.k ? a.i - b.i : a.k < b.k ? -1 : 1));
  return keyed.map((x) => x.c);
}

/** `priority`: the chain as written. */
export function byPriority<T>(cands: T[]): T[] {
  return cands;
}

/** `cost`: cheapest estimated cost first; providers without a price for the model last; ties keep chain order. */
export function byCost<T extends Rankable>(cands: T[], tokens: TokenEstimate): T[] {
  return sortBy(cands, (c) => estimateCost(c, tokens));
}

/**
 * How far a provider misses the SLA on its recent window, as the larger relative shortfall of its p95 latency and
 * its success rate: 0 when it meets it, or has too few samples to judge (so it can earn data).
 */
export function slaMiss(w: WindowSummary | undefined, sla: Sla): number {
  if (!w) return 0;
  const slow = sla.max_p95_latency_ms !== undefined && w.p95 > sla.max_p95_latency_ms ? w.p95 / sla.max_p95_latency_ms - 1 : 0;
  const failing = sla.min_success_rate !== undefined && w.successRate < sla.min_success_rate ? (sla.min_success_rate - w.successRate) / sla.min_success_rate : 0;
  return Math.max(slow, failing);
}

/**
 * `cost` with an SLA: the providers that meet it, cheapest first; then those that miss it, as fallbacks, the
 * nearest miss first (ties by price).
 */
export function byCostWithSla<T extends Rankable>(cands: T[], tokens: TokenEstimate, signals: Pick<RankSignals, "window">, sla: Sla): T[] {
  const cheap = byCost(cands, tokens);
  const miss = new Map(cheap.map((c) => [c, slaMiss(signals.window?.(c.provider.name), sla)]));
  return sortBy(cheap, (c) => miss.get(c)!);
}

/**
 * `latency`: providers with no recent latency data first (in chain order, so they get tried and earn data),
 * then lowest rolling latency first.
 */
export function byLatency<T extends Rankable>(cands: T[], signals: Pick<RankSignals, "latency">): T[] {
  return sortBy(cands, (c) => signals.latency(c.provider.name) ?? -1);
}

const STATE_RANK: Record<BreakerState, number> = { closed: 0, half_open: 1, open: 2 };

/**
 * `health`: closed breakers before half-open ones (open ones last: they are skipped anyway), then highest
 * recent success rate first; a provider with no recent data counts as healthy (rate 1).
 */
export function byHealth<T extends Rankable>(cands: T[], signals: Pick<RankSignals, "state" | "successRate">): T[] {
  return sortBy(cands, (c) => {
    const name = c.provider.name;
    const rank = STATE_RANK[signals.state(name) ?? "closed"];
    const rate = signals.successRate(name) ?? 1;
    return rank * 2 - rate; // rate is in 0..1, so the state rank always dominates
  });
}

/** Orders one request's candidates by the configured strategy. */
export function orderCandidates<T extends Rankable>(
  strategy: Strategy,
  cands: T[],
  signals: RankSignals,
  tokens: () => TokenEstimate,
  sla?: Sla,
): T[] {
  if (cands.length < 2) return cands;
  switch (strategy) {
    case "priority":
      return byPriority(cands);
    case "cost":
      return sla ? byCostWithSla(cands, tokens(), signals, sla) : byCost(cands, tokens());
    case "latency":
      return byLatency(cands, signals);
    case "health":
      return byHealth(cands, signals);
  }
}
