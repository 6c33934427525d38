// The Router and its failover loop: walks one request's candidates in the planned order, asks each provider's
// breaker, runs the attempts (retrying a provider with backoff), and answers with the first success or the
// error that sums up the failures. It answers with data (src/routing/outcome.ts), which src/http/ renders.
import type { Config } from "../config/schema.ts";
import { CLIENT_CLOSED } from "../errors.ts";
import type { Adapter, ApiKind, ChatRequest, TextRequest } from "../providers/types.ts";
import { sleep } from "../sleep.ts";
import { MemorySpendStore } from "../state/memory/spend.ts";
import { isPromise, type SpendStore } from "../state/types.ts";
import { attempt, type AttemptEnv } from "./attempt.ts";
import { admit, budgetSpent, Budgets, ceilingExceeded, refusalReason, worseRefusal, worstCaseTokens, type Refusal } from "./budgets.ts";
import { BreakerRegistry, MAX_RETRY_AFTER_SECONDS, type BreakerSnapshot, type BreakerState, type CircuitBreaker } from "./breaker.ts";
import type { ClassifiedFailure } from "./failures.ts";
import { HealthTracker } from "./health.ts";
import { hedgedAttempt, Hedger, type Started } from "./hedge.ts";
import { errorOutcome, type Outcome } from "./outcome.ts";
import { type Candidate, Planner } from "./plan.ts";
import { RequestRun, type AttemptRecord, type RequestContext, type RouterHooks } from "./records.ts";
import { Backoff, sameProviderRetryable } from "./retry.ts";
import { recoverable, StreamRecovery } from "./stream-recovery.ts";
import type { TokenEstimate } from "./strategies.ts";

export interface HealthReport {
  status: "ok" | "degraded" | "down";
  providers: Record<string, BreakerSnapshot>;
}

export interface RouterOptions {
  /** the circuit breakers; create once at startup and share across reloads (the Router syncs it to its config) */
  breakers?: BreakerRegistry;
  /** latency / success-rate signals for the latency and health strategies; shared like `breakers` */
  health?: HealthTracker;
  /** monotonic clock in ms for latencies and deadlines (default performance.now) */
  now?: () => number;
  /** randomness for retry jitter, 0..1 (default Math.random) */
  random?: () => number;
  /** first retry backoff in ms (doubles per retry, default 200) */
  retryBaseMs?: number;
  /** largest retry backoff in ms (default 5000) */
  retryMaxBackoffMs?: number;
  /** the budgets' spend counters: the state backend's, shared across reloads (default in memory, this Router's own) */
  spend?: SpendStore;
  /** wall clock in ms for budget periods (default Date.now) */
  spendClock?: () => number;
  /** whether the state backend is connected (budgets.on_backend_failure: closed answers 503 while it is not) */
  stateUp?: () => boolean;
}

export class Router implements AttemptEnv {
  readonly adapters: Map<string, Adapter>;
  readonly breakers: BreakerRegistry;
  readonly health: HealthTracker;
  readonly now: () => number;
  readonly planner: Planner;
  readonly budgets: Budgets;
  readonly #stateUp: () => boolean;
  /** routing.hedge, when enabled */
  readonly hedger: Hedger | undefined;
  /** this config's breakers, held by reference so a reload that drops a provider does not break requests in flight */
  readonly #breakerOf: Map<string, CircuitBreaker>;
  readonly #backoff: Backoff;

  constructor(readonly config: Config, adapters: Map<string, Adapter>, readonly hooks: RouterHooks = {}, opts: RouterOptions = {}) {
    this.adapters = adapters;
    this.now = opts.now ?? (() => performance.now());
    this.breakers = opts.breakers ?? new BreakerRegistry();
    this.breakers.sync(config);
    this.health = opts.health ?? new HealthTracker(undefined, this.breakers.now);
    this.health.sync(config);
    this.#breakerOf = new Map(config.providers.map((p) => [p.name, this.breakers.get(p.name)!]));
    this.#backoff = new Backoff(opts.retryBaseMs ?? 200, opts.retryMaxBackoffMs ?? 5000, config.routing.max_retry_after_seconds, opts.random ?? Math.random);
    const spendClock = opts.spendClock ?? Date.now;
    this.budgets = new Budgets(config, opts.spend ?? new MemorySpendStore(spendClock), spendClock, (e) => this.hooks.onBudget?.(e));
    this.#stateUp = opts.stateUp ?? (() => true);
    this.hedger = config.routing.hedge.enabled ? new Hedger(config.routing.hedge, this.now) : undefined;
    this.planner = new Planner(config, adapters, {
      state: (n) => this.#breakerOf.get(n)?.state,
      latency: (n) => this.health.latency(n),
      successRate: (n) => this.health.successRate(n),
      window: (n) => this.health.window(n),
    });
  }

  /** A provider's breaker state (for /health, /stats, /metrics), or undefined for an unknown provider. */
  providerState(name: string): BreakerState | undefined {
    return this.#breakerOf.get(name)?.state;
  }

  /** Breaker snapshots of this config's providers, in config order. */
  breakerSnapshots(): Record<string, BreakerSnapshot> {
    const out: Record<string, BreakerSnapshot> = {};
    for (const [name, b] of this.#breakerOf) out[name] = b.snapshot();
    return out;
  }

  /**
   * The body of GET /health: `down` when no provider can take traffic (every breaker open), `degraded` when at
   * least one breaker is not closed, else `ok`.
   */
  healthReport(): HealthReport {
    const providers = this.breakerSnapshots();
    let open = 0, notClosed = 0, n = 0;
    for (const name in providers) {
      n++;
      const st = providers[name].state;
      if (st !== "closed") notClosed++;
      if (st === "open") open++;
    }
    return { status: open === n ? "down" : notClosed ? "degraded" : "ok", providers };
  }

  /** Manual reset of a provider's breaker: the new snapshot, or undefined for an unknown provider. */
  resetBreaker(name: string): BreakerSnapshot | undefined {
    const b = this.#breakerOf.get(name);
    if (!b) return undefined;
    b.reset();
    return b.snapshot();
  }

  async handle(kind: ApiKind, body: ChatRequest | TextRequest, ctx: RequestContext): Promise<Outcome> {
    const t0 = this.now();
    try {
      return await this.#route(new RequestRun(kind, body, ctx, this.hooks, this.now, t0, this.config.routing.request_timeout_seconds));
    } catch (e) {
      // an unexpected error still ends the request for the observers (the app answers 500)
      this.hooks.onRequest?.({ request_id: ctx.requestId, endpoint: kind, stream: body.stream === true, status: 500, attempts: [], latency_ms: this.now() - t0, requested_model: body.model, key_name: ctx.keyName, path: ctx.path });
      throw e;
    }
  }

  /** `c` admitted (cost ceiling, budgets) with a permit of its breaker, ready to attempt; undefined when it cannot go. */
  async #take(run: RequestRun, c: Candidate, tokens: TokenEstimate): Promise<Started | undefined> {
    const pending = admit(this.budgets, run, c, tokens, true);
    const adm = isPromise(pending) ? await pending : pending;
    if (!adm.go) return undefined;
    const breaker = this.#breakerOf.get(c.provider.name)!;
    const permit = breaker.acquire();
    if (!permit) {
      adm.hold?.release();
      return undefined;
    }
    if (adm.hold) run.holds.set(c.provider.name, adm.hold);
    return { cand: c, breaker, permit };
  }

  async #route(run: RequestRun): Promise<Outcome> {
    const maxProviders = this.config.routing.max_attempts ?? Infinity;
    let tried = 0;
    let skipped = 0;
    // the soonest moment (on this.now()) a skipped or failed provider said it can be tried again: the Retry-After
    // of the 503 and 502; `retryUnknown` when an attempt failed without saying (a reset, a 500): the 502 promises none
    let soonestAt = Infinity;
    let retryUnknown = false;
    const retryAfter = () => String(Math.max(1, Math.ceil((soonestAt - this.now()) / 1000)));
    let timedOut = false;

    let firstUnsupported: ClassifiedFailure | undefined;
    let failedOtherwise = false;
    // spend control (routing/budgets.ts): the cheapest estimate over its ceiling, the last budget that refused
    let overCeiling: { cost: number; ceiling: number } | undefined;
    let budgetRefused: Refusal | undefined;
    // each skipped provider and why, for a 503: a breaker may be only one of the reasons
    const unavailable: string[] = [];
    if (this.budgets.list.length && this.config.budgets.on_backend_failure === "closed" && !this.#stateUp()) {
      run.finish(503);
      return errorOutcome(503, { message: "the state backend that keeps the budgets is unreachable (budgets.on_backend_failure: closed)", type: "server_error", code: "state_backend_unavailable" });
    }
    const tokens = worstCaseTokens(this.config, run.kind, run.body);
    const cands = this.planner.order(run.kind, run.body);
    // routing.hedge: at most one hedge per request, sent to the next candidate that takes it (then not tried again)
    this.hedger?.request();
    let hedge = this.hedger?.applies(run) ? this.hedger : undefined;
    let hedgedTo: Candidate | undefined;
    if (this.config.routing.stream_recovery && recoverable(run)) {
      run.recovery = new StreamRecovery(this, run, {
        cands,
        take: async (c, another) => {
          if (another && tried >= maxProviders) return undefined;
          const s = await this.#take(run, c, tokens);
          if (s && another) tried++;
          return s;
        },
      });
    }
    providers: for (let i = 0; i < cands.length; i++) {
      const cand = cands[i];
      if (cand === hedgedTo) continue;
      if (tried >= maxProviders) break;
      if (run.deadlineHit || run.deadline - this.now() <= 0) {
        timedOut = true;
        break;
      }
      const pending = admit(this.budgets, run, cand, tokens, true);
      const adm = isPromise(pending) ? await pending : pending;
      if (!adm.go) {
        if (adm.skip === "cost_ceiling") {
          if (!overCeiling || adm.cost < overCeiling.cost) overCeiling = { cost: adm.cost, ceiling: adm.ceiling };
        } else budgetRefused = worseRefusal(budgetRefused, adm.refused);
        unavailable.push(`${cand.provider.name}: ${adm.skip === "cost_ceiling" ? "over its cost ceiling" : refusalReason(adm.refused)}`);
        run.record({ provider: cand.provider.name, model: cand.model, outcome: "skipped", status: 0, latency_ms: 0, reason: adm.skip });
        continue;
      }
      const breaker = this.#breakerOf.get(cand.provider.name)!;
      let permit = breaker.acquire();
      if (!permit) {
        adm.hold?.release();
        // open, or every half-open probe slot taken: skip without a network call
        skipped++;
        soonestAt = Math.min(soonestAt, this.now() + breaker.retryInMs());
        const reason = breaker.state === "open" ? "circuit open" : "circuit half-open: probe in progress";
        unavailable.push(`${cand.provider.name}: ${reason}`);
        run.record({ provider: cand.provider.name, model: cand.model, outcome: "skipped", status: 0, latency_ms: 0, reason });
        continue;
      }
      tried++;
      let hold = adm.hold;
      let providerAt = Infinity; // when this provider's last failure said it can be tried again
      for (let n = 0; ; n++) {
        if (hold) run.holds.set(cand.provider.name, hold);
        let r;
        if (hedge) {
          // the hedge goes to the next candidate that is admitted (ceiling, budgets) and whose breaker lets it
          const next = async (): Promise<Started | undefined> => {
            for (let j = i + 1; j < cands.length && tried < maxProviders; j++) {
              const s = await this.#take(run, cands[j], tokens);
              if (!s) continue; // the loop reports it as skipped when it gets there
              tried++;
              hedgedTo = s.cand;
              return s;
            }
            return undefined;
          };
          r = await hedgedAttempt(this, hedge, run, { cand, breaker, permit }, next);
          if (hedgedTo) hedge = undefined;
        } else r = await attempt(this, run, cand, breaker, permit);
        if (!("cls" in r)) return r;
        if (r.cls === "unsupported") firstUnsupported ??= r;
        else failedOtherwise = true;
        if (r.retryAfter === undefined) retryUnknown = true;
        else providerAt = this.now() + Math.min(r.retryAfter, MAX_RETRY_AFTER_SECONDS) * 1000;
        // a context-window 400 goes straight to the next provider; other failures may retry this one
        if (run.deadlineHit) {
          timedOut = true;
          break providers;
        }
        if (r.cls !== "retryable" || n >= cand.provider.max_retries || !sameProviderRetryable(r)) break;
        // the failure opened the breaker (or failed its probe): no retry would be let through, so no waiting for one
        if (breaker.state === "open") break;
        const wait = this.#backoff.delay(n, r.retryAfter);
        if (wait === undefined) break; // Retry-After longer than the cap: move on instead of waiting
        if (this.now() + wait >= run.deadline) break;
        if (!(await sleep(wait, run.ctx.signal))) {
          run.finish(499);
          return errorOutcome(499, CLIENT_CLOSED);
        }
        if (run.deadline - this.now() <= 0) {
          timedOut = true;
          break providers;
        }
        const again = await admit(this.budgets, run, cand, tokens, false);
        if (!again.go) break;
        hold = again.hold;
        const next = breaker.acquire();
        if (!next) {
          hold?.release();
          break; // the breaker opened meanwhile (or another request holds the probe)
        }
        permit = next;
      }
      soonestAt = Math.min(soonestAt, providerAt);
    }

    if (run.sent === 0 && !timedOut && !skipped && budgetRefused) {
      run.finish(402);
      return budgetSpent(budgetRefused);
    }
    if (run.sent === 0 && !timedOut && !skipped && overCeiling) {
      run.finish(400);
      return ceilingExceeded(overCeiling);
    }
    if (run.sent === 0 && skipped > 0 && !timedOut) {
      const secs = retryAfter();
      run.finish(503);
      return errorOutcome(503, {
        message: `no provider can take the request (${unavailable.join("; ")}); retry in ${secs}s`,
        type: "upstream_error",
        code: "all_providers_unavailable",
      }, { "retry-after": secs });
    }
    if (firstUnsupported && !failedOtherwise && !timedOut) {
      // no provider could take this request as written (e.g. an image URL where only base64 works): the client's to fix
      const f = firstUnsupported;
      run.finish(400);
      return errorOutcome(400, { message: f.message, type: f.type ?? "invalid_request_error", param: f.param ?? null, code: f.code ?? null });
    }
    const list = run.attempts.map((a: AttemptRecord) => ({ provider: a.provider, status: a.status, reason: a.reason ?? a.outcome }));
    if (timedOut) {
      run.finish(504);
      return errorOutcome(504, {
        message: `no provider answered within routing.request_timeout_seconds (${this.config.routing.request_timeout_seconds}s)`,
        type: "upstream_error",
        code: "request_timeout",
        attempts: list,
      });
    }
    run.finish(502);
    // a hedge's failure is not seen here, so the hedged provider's next chance is unknown too
    const known = !retryUnknown && !hedgedTo && soonestAt < Infinity;
    return errorOutcome(502, {
      message: `all ${run.sent} provider attempt(s) failed`,
      type: "upstream_error",
      code: "all_providers_failed",
      attempts: list,
    }, known ? { "retry-after": retryAfter() } : undefined);
  }
}
