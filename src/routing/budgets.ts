// Spend control before an attempt: the per-request cost ceiling (routing.max_cost_per_request_usd, a provider's
// own by model, the client's x-router-max-cost-usd), and the budgets (the `budgets` block): a worst-case
// reservation on every budget that applies, settled to the attempt's actual cost when its record comes in. The
// counters live behind the state seam (SpendStore), so with the Redis backend every replica spends one budget.
import type { Config, ProviderConfig } from "../config/schema.ts";
import { priceFor, tokenCost } from "../pricing.ts";
import type { ApiKind, ChatRequest, TextRequest } from "../providers/types.ts";
import { isPromise, type MaybePromise, type SpendPeriod, type SpendStore } from "../state/types.ts";
import type { Candidate } from "./plan.ts";
import { errorOutcome, type ErrorOutcome } from "./outcome.ts";
import type { AttemptRecord, RequestRun } from "./records.ts";
import { estimateRequestTokens, type TokenEstimate } from "./strategies.ts";

export type BudgetConfig = Config["budgets"]["list"][number];
export type Period = BudgetConfig["period"];

/** What a budget event reports (a soft limit crossed, a budget run out) to the observers. */
export interface BudgetEvent {
  budget: string;
  event: "soft_limit" | "exhausted";
  spent: number;
  limit: number;
  resets_at: string | null;
}

/** One budget as GET /admin/budgets and /stats show it. */
export interface BudgetReport {
  name: string;
  scope: BudgetConfig["scope"];
  period: Period;
  limit_usd: number;
  spent_usd: number;
  reserved_usd: number;
  remaining_usd: number;
  resets_at: string | null;
  soft_limit_crossed: boolean;
}

// "total" never resets; its counter still needs an end the stores can keep (a Redis TTL), so: the year 9999
const FOREVER = Date.UTC(9999, 0, 1);
/** A reservation lapses after this, so a replica that died mid-request does not hold budget for long. */
const RESERVATION_TTL_MS = 15 * 60_000;
/**
 * The least a reservation holds: a spent budget then refuses even a request it cannot price (a provider with no
 * price for the model costs 0).
 */
const MIN_RESERVATION = 1e-9;

/** The calendar period (UTC) `t` falls in. */
export function periodAt(period: Period, t: number): SpendPeriod {
  const d = new Date(t);
  const y = d.getUTCFullYear(), mo = d.getUTCMonth(), day = d.getUTCDate();
  const iso = d.toISOString();
  switch (period) {
    case "minute": {
      const start = Math.floor(t / 60_000) * 60_000;
      return { id: iso.slice(0, 16), endsAt: start + 60_000 };
    }
    case "hour": {
      const start = Math.floor(t / 3_600_000) * 3_600_000;
      return { id: iso.slice(0, 13), endsAt: start + 3_600_000 };
    }
    case "day":
      return { id: iso.slice(0, 10), endsAt: Date.UTC(y, mo, day + 1) };
    case "week": {
      // ISO weeks start on Monday
      const start = Date.UTC(y, mo, day - ((d.getUTCDay() + 6) % 7));
      return { id: `w${new Date(start).toISOString().slice(0, 10)}`, endsAt: start + 7 * 86_400_000 };
    }
    case "month":
      return { id: iso.slice(0, 7), endsAt: Date.UTC(y, mo + 1, 1) };
    case "total":
      return { id: "total", endsAt: FOREVER };
  }
}

const resetsAt = (p: SpendPeriod) => (p.endsAt >= FOREVER ? null : new Date(p.endsAt).toISOString());

/** The request's tokens as the ceiling and the reservation assume them: max output, or the configured default. */
export function worstCaseTokens(config: Config, kind: ApiKind, body: ChatRequest | TextRequest): TokenEstimate {
  return estimateRequestTokens(kind, body, config.routing.default_max_output_tokens);
}

/** A candidate's worst-case cost; 0 when the provider has no price for the model (as its spend is counted). */
export function worstCaseCost(cand: Candidate, tokens: TokenEstimate): number {
  const p = priceFor(cand.provider.pricing, cand.model);
  return p ? tokenCost(p, tokens.input, tokens.output) : 0;
}

/** The ceiling for one attempt: the global one, the provider's for the model, the client's, whichever is lowest. */
export function ceilingFor(config: Config, p: ProviderConfig, model: string, client: number | undefined): number {
  const own = p.max_cost_per_request_usd;
  const byModel = own === undefined ? undefined : typeof own === "number" ? own : (Object.hasOwn(own, model) ? own[model] : undefined) ?? own["*"];
  return Math.min(config.routing.max_cost_per_request_usd ?? Infinity, byModel ?? Infinity, client ?? Infinity);
}

function applies(b: BudgetConfig, keyName: string | undefined, cand: Candidate): boolean {
  const s = b.scope;
  if (s.key !== undefined && s.key !== keyName) return false;
  if (s.provider !== undefined && s.provider !== cand.provider.name) return false;
  if (s.model !== undefined && s.model !== cand.model) return false;
  return true;
}

/** A budget of the request as a whole (its key's, or everything's) rather than of one provider or model. */
const requestWide = (b: BudgetConfig) => b.scope.provider === undefined && b.scope.model === undefined;

interface Held {
  budget: BudgetConfig;
  period: SpendPeriod;
  id: string;
}

/** An attempt's reservations; settle() once with its record. */
export interface Hold {
  settle(a: AttemptRecord): void;
  /** lets the reservations go unspent (the attempt was not sent) */
  release(): void;
}

export type Reserved =
  | { ok: true; hold: Hold }
  | { ok: false; refused: Refusal };

/** The budgets of one config over the shared spend counters. */
export class Budgets {
  readonly list: BudgetConfig[];
  /** the period id in which each budget's event (name + kind) was last told, so each is told once per period */
  readonly #told = new Map<string, string>();
  /** the last spend a networked store answered, for /metrics and /stats, which do not wait for it */
  readonly #lastSpent = new Map<string, number>();

  constructor(readonly config: Config, readonly store: SpendStore, readonly clock: () => number, readonly onEvent: (e: BudgetEvent) => void) {
    this.list = config.budgets.list;
  }

  #key(b: BudgetConfig): string {
    return `budget:${b.name}`;
  }

  /**
   * Reserves `estimate` (capped by each budget's max_reservation_usd) on every budget that applies to this attempt,
   * all or none: a refusal lets the ones already granted go.
   */
  async reserve(keyName: string | undefined, cand: Candidate, estimate: number): Promise<Reserved> {
    const t = this.clock();
    const held: Held[] = [];
    for (const b of this.list) {
      if (!applies(b, keyName, cand)) continue;
      const period = periodAt(b.period, t);
      const amount = Math.max(MIN_RESERVATION, Math.min(estimate, b.max_reservation_usd ?? Infinity));
      const r = await this.store.reserve(this.#key(b), period, amount, b.limit_usd, RESERVATION_TTL_MS);
      if (!r.granted) {
        for (const h of held) void this.store.settle(this.#key(h.budget), h.period, h.id, 0);
        // a request larger than the whole limit has not run the budget out: telling so would also use up the
        // period's one "exhausted" event before the budget really runs out
        if (r.spent < b.limit_usd && amount > b.limit_usd) return { ok: false, refused: { budget: b, resetsAt: resetsAt(period), overLimit: amount } };
        this.#tell(b, period, "exhausted", r.spent, b.limit_usd);
        return { ok: false, refused: { budget: b, resetsAt: resetsAt(period) } };
      }
      held.push({ budget: b, period, id: r.id });
    }
    let done = false;
    const end = (cost: number) => {
      if (done) return;
      done = true;
      for (const h of held) void this.#settle(h, cost);
    };
    return {
      ok: true,
      hold: {
        settle: (a) => end(attemptCost(a, cand)),
        release: () => end(0),
      },
    };
  }

  async #settle(h: Held, cost: number): Promise<void> {
    const key = this.#key(h.budget);
    const b = h.budget;
    // A period that ended while the attempt ran went with its counter (and the reservation in it): the cost counts
    // in the period the attempt ends in, under an id no reservation there has, rather than in none.
    const t = this.clock();
    const period = h.period.endsAt <= t ? periodAt(b.period, t) : h.period;
    await this.store.settle(key, period, period === h.period ? h.id : "rollover", cost);
    if (b.soft_limit_percent === undefined && cost === 0) return;
    const { spent } = await this.store.read(key, period);
    if (spent >= b.limit_usd) this.#tell(b, period, "exhausted", spent, b.limit_usd);
    else if (b.soft_limit_percent !== undefined && spent >= (b.limit_usd * b.soft_limit_percent) / 100) this.#tell(b, period, "soft_limit", spent, b.limit_usd);
  }

  /** Tells the observers once per budget, period and kind of event. */
  #tell(b: BudgetConfig, period: SpendPeriod, event: BudgetEvent["event"], spent: number, limit: number): void {
    const k = `${b.name}\n${event}`;
    if (this.#told.get(k) === period.id) return;
    this.#told.set(k, period.id);
    this.onEvent({ budget: b.name, event, spent, limit, resets_at: resetsAt(period) });
  }

  /** Each budget's figures in its current period. */
  async report(): Promise<BudgetReport[]> {
    const t = this.clock();
    return Promise.all(this.list.map(async (b) => {
      const period = periodAt(b.period, t);
      const { spent, reserved } = await this.store.read(this.#key(b), period);
      const soft = b.soft_limit_percent === undefined ? false : spent >= (b.limit_usd * b.soft_limit_percent) / 100;
      return {
        name: b.name, scope: b.scope, period: b.period, limit_usd: b.limit_usd, spent_usd: spent, reserved_usd: reserved,
        remaining_usd: Math.max(0, b.limit_usd - spent - reserved), resets_at: resetsAt(period), soft_limit_crossed: soft,
      };
    }));
  }

  /**
   * Sets a budget's spend in its current period back to 0 (reservations in flight stay): false for an unknown name.
   * A settle landing between the read and the reset is lost from the count, which a reset forgives anyway.
   */
  async reset(name: string): Promise<boolean> {
    const b = this.list.find((x) => x.name === name);
    if (!b) return false;
    const period = periodAt(b.period, this.clock());
    const { spent } = await this.store.read(this.#key(b), period);
    await this.store.settle(this.#key(b), period, "reset", -spent);
    for (const k of [`${b.name}\nsoft_limit`, `${b.name}\nexhausted`]) this.#told.delete(k);
    return true;
  }

  /** The spend of each budget now, where the store answers at once (the in-memory one): for /metrics. */
  spentNow(): { name: string; spent: number; limit: number }[] {
    const t = this.clock();
    const out: { name: string; spent: number; limit: number }[] = [];
    for (const b of this.list) {
      const r: MaybePromise<{ spent: number }> = this.store.read(this.#key(b), periodAt(b.period, t));
      if (isPromise(r)) {
        // a networked store: the figure comes with the next scrape
        r.then((v) => this.#lastSpent.set(b.name, v.spent), () => {});
        out.push({ name: b.name, spent: this.#lastSpent.get(b.name) ?? 0, limit: b.limit_usd });
      } else out.push({ name: b.name, spent: r.spent, limit: b.limit_usd });
    }
    return out;
  }
}

/**
 * What an attempt costs: its usage priced. An attempt the provider received and billed carries usage even when the
 * provider reported none (routing/attempt.ts: the input and the output sent so far, estimated, for a client that
 * went away, a timeout, a stream that broke or a hedge that lost); one that failed with an error answer has none.
 */
function attemptCost(a: AttemptRecord, cand: Candidate): number {
  const price = priceFor(cand.provider.pricing, cand.model);
  return price && a.usage ? tokenCost(price, a.usage.prompt_tokens, a.usage.completion_tokens) : 0;
}

const GO: Admission = { go: true };

/** A budget that refused a reservation, and when its period ends. */
export interface Refusal {
  budget: BudgetConfig;
  resetsAt: string | null;
  /** the reservation, when it alone is over the budget's whole limit (a new period would not take it either) */
  overLimit?: number;
}

/** Whether one attempt may go: its hold, or why the provider is skipped. */
export type Admission =
  | { go: true; hold?: Hold }
  | { go: false; skip: "cost_ceiling"; cost: number; ceiling: number }
  | { go: false; skip: "budget"; refused: Refusal };

/**
 * The ceiling check, then the reservations, for one attempt of `cand`. A budget that refuses skips the provider,
 * whatever its scope: a cheaper provider may still fit a key's budget that a dearer one's estimate does not.
 */
export function admit(budgets: Budgets, run: RequestRun, cand: Candidate, tokens: TokenEstimate, checkCeiling: boolean): MaybePromise<Admission> {
  const cost = worstCaseCost(cand, tokens);
  if (checkCeiling) {
    const ceiling = ceilingFor(budgets.config, cand.provider, cand.model, run.ctx.maxCostUsd);
    if (cost > ceiling) return { go: false, skip: "cost_ceiling", cost, ceiling };
  }
  // without budgets, no promise: a request does not go through the microtask queue for nothing
  if (!budgets.list.length) return GO;
  return budgets.reserve(run.ctx.keyName, cand, cost).then((r): Admission =>
    r.ok ? { go: true, hold: r.hold } : { go: false, skip: "budget", refused: r.refused }
  );
}

/** The refusal a 402 names: the request's own budget (its key's, or everything's) before a provider's or model's. */
export function worseRefusal(a: Refusal | undefined, b: Refusal): Refusal {
  return a && requestWide(a.budget) ? a : b;
}

/** Why a budget refused, in words (for the 402, and for a provider the 503 lists as skipped). */
export function refusalReason(r: Refusal): string {
  const b = r.budget;
  if (r.overLimit !== undefined) {
    return `budget "${b.name}" cannot take the request: its worst-case estimate of ${usd(r.overLimit)} USD is over the budget's whole limit of ${b.limit_usd} USD per ${b.period} (lower max_tokens, or raise the limit)`;
  }
  return `budget "${b.name}" is spent (limit ${b.limit_usd} USD per ${b.period}), ${r.resetsAt ? `it resets at ${r.resetsAt}` : "it does not reset (period: total)"}`;
}

/** 402, not 429: the OpenAI SDKs retry a 429 on their own, in vain here. */
export function budgetSpent(r: Refusal): ErrorOutcome {
  return errorOutcome(402, {
    message: refusalReason(r),
    type: "insufficient_quota",
    code: "budget_exceeded",
    budget: r.budget.name,
    resets_at: r.resetsAt,
  });
}

/** 400 when no provider's worst-case estimate fits under its ceiling. */
export function ceilingExceeded(cheapest: { cost: number; ceiling: number }): ErrorOutcome {
  return errorOutcome(400, {
    message: `no provider can serve this request within its cost ceiling: the cheapest worst-case estimate is ${usd(cheapest.cost)} USD, over the ceiling of ${usd(cheapest.ceiling)} USD (lower max_tokens, or raise the ceiling)`,
    type: "invalid_request_error",
    param: null,
    code: "cost_ceiling_exceeded",
  });
}

const usd = (x: number) => (Number.isFinite(x) ? String(Number(x.toPrecision(6))) : "unknown");
