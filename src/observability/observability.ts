// Ties stats, metrics, pricing and the request log to the router. One Observability is created at start-up
// and kept for the life of the process; each Router (one per config, a reload builds a new one) gets hooks
// from hooksFor(config), which carry that config's price table, model label set and secrets to redact.
import type { Config } from "../config/schema.ts";
import { configSecrets, redact } from "../providers/redact.ts";
import type { ApiKind, Usage } from "../providers/types.ts";
import type { Router } from "../routing/failover.ts";
import type { AttemptRecord, RequestRecord, RouterHooks } from "../routing/records.ts";
import type { StateStatus } from "../state/index.ts";
import type { Logger } from "./logger.ts";
import { Counter, Gauge, Histogram, Registry } from "./metrics.ts";
import { PriceTable } from "../pricing.ts";
import { clip, loggedAttempt, roundMs } from "./requestlog.ts";
import { LiveStats } from "./live.ts";
import type { BreakerState } from "../routing/breaker.ts";
import { Stats, type StatsJson } from "./stats.ts";

export type StateOf = (provider: string) => BreakerState;

/** The breaker state of each provider as the router in force reports it. */
export function providerStateOf(router: Router): StateOf {
  return (name) => router.providerState(name) ?? "closed";
}

export interface ObservabilityOptions {
  version: string;
  /** "bun" | "deno" (build_info label) */
  runtime: string;
  /** where request log lines go; none = no request log */
  logger?: Logger;
  /** wall clock in ms (rolling windows, uptime); injectable for tests */
  now?: () => number;
  /** this replica's id (server.replica_id): /stats `replica`, the build_info label; read when asked (known once listening) */
  replica?: () => string;
  /** the state backend's status: /stats `state`, failover_router_state_backend_up */
  state?: () => StateStatus;
}

/** A client request answered without reaching the router (validation error, 404, 405, auth, ...). */
export interface HttpRecord {
  request_id: string;
  method: string;
  path: string;
  status: number;
  latency_ms: number;
  /** the name of the API key the request authenticated with (never the key) */
  key_name?: string;
}

export const ENDPOINT_PATH: Record<ApiKind, string> = { chat: "/v1/chat/completions", text: "/v1/completions" };
/** endpoint label values besides the two routed ones; any other path is labelled "other" */
const KNOWN_PATHS = new Set(["/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/models"]);
const STATE_VALUE: Record<BreakerState, number> = { closed: 0, open: 1, half_open: 2 };
const OUTCOMES = ["success", "error", "timeout", "client_error", "skipped", "hedge_lost", "cancelled"];

/** Every model name a config mentions; any other model is labelled "other" in metrics. */
export function configModels(config: Pick<Config, "providers">): Set<string> {
  const s = new Set<string>();
  for (const p of config.providers) {
    s.add(p.default_model);
    for (const m of p.models ?? []) s.add(m);
    for (const [k, v] of Object.entries(p.model_map ?? {})) {
      s.add(k);
      s.add(v);
    }
  }
  return s;
}

export class Observability {
  readonly stats: Stats;
  /** the dashboard's recent per-provider activity and failovers */
  readonly live: LiveStats;
  readonly registry = new Registry();
  readonly logger?: Logger;
  inFlight = 0;
  #scrape: { providers: readonly string[]; stateOf: StateOf; budgets: { name: string; spent: number; limit: number }[] } = { providers: [], stateOf: () => "closed", budgets: [] };

  readonly requestsTotal: Counter;
  readonly requestDuration: Histogram;
  readonly upstreamRequests: Counter;
  readonly upstreamLatency: Histogram;
  readonly upstreamTtfb: Histogram;
  readonly tokens: Counter;
  readonly cost: Counter;
  readonly estimatedUsage: Counter;
  readonly failovers: Counter;
  readonly malformedEvents: Counter;
  readonly hedges: Counter;
  readonly hedgeWins: Counter;
  readonly streamRecoveries: Counter;

  constructor(readonly opts: ObservabilityOptions) {
    this.stats = new Stats(opts.now);
    this.live = new LiveStats(opts.now);
    this.logger = opts.logger;
    const r = this.registry;
    this.requestsTotal = r.add(new Counter("failover_router_requests_total", "Client requests by endpoint and final HTTP status.", ["endpoint", "status"]));
    this.requestDuration = r.add(new Histogram("failover_router_request_duration_seconds", "Client request duration in seconds, failovers included (streams: until the last chunk).", ["endpoint"]));
    this.upstreamRequests = r.add(new Counter("failover_router_upstream_requests_total", "Upstream attempts by provider and outcome (success, error, timeout, client_error, skipped, hedge_lost, cancelled).", ["provider", "outcome"]));
    this.upstreamLatency = r.add(new Histogram("failover_router_upstream_latency_seconds", "Upstream attempt duration in seconds (streams: until the last chunk).", ["provider"]));
    this.upstreamTtfb = r.add(new Histogram("failover_router_upstream_ttfb_seconds", "Streamed attempts: seconds until the first content chunk.", ["provider"]));
    this.tokens = r.add(new Counter("failover_router_tokens_total", "Tokens by provider, model (\"other\" for a model not in config) and direction (input, output).", ["provider", "model", "direction"]));
    this.cost = r.add(new Counter("failover_router_cost_usd_total", "Cost in US dollars from the provider's pricing table, by provider and model.", ["provider", "model"]));
    this.estimatedUsage = r.add(new Counter("failover_router_estimated_usage_total", "Successful attempts whose token usage was estimated (the provider reported none).", ["provider"]));
    this.failovers = r.add(new Counter("failover_router_failovers_total", "Requests that left this provider for the next one in the chain after a failed attempt.", ["provider"]));
    this.malformedEvents = r.add(new Counter("failover_router_malformed_events_total", "Upstream stream events that were not valid JSON and were skipped (routing.max_malformed_events).", ["provider"]));
    this.hedges = r.add(new Counter("failover_router_hedges_total", "Hedged attempts sent to this provider because the request's attempt was slow to its first token (routing.hedge).", ["provider"]));
    this.hedgeWins = r.add(new Counter("failover_router_hedge_wins_total", "Hedged attempts sent to this provider that answered first.", ["provider"]));
    this.streamRecoveries = r.add(new Counter("failover_router_stream_recoveries_total", "Recovery legs of streams cut or stalled mid-answer, by the provider that carried the leg and outcome (prefill, restart: recovered that way; diverged: the restart did not reproduce the text sent, or went on with something other than text; rejected: the provider refused the prefill; failed) (routing.stream_recovery).", ["provider", "outcome"]));
    r.add(new Gauge("failover_router_circuit_state", "Circuit breaker state per provider: 0 closed, 1 open, 2 half_open.", ["provider"], () => {
      const { providers, stateOf } = this.#scrape;
      return providers.map((p) => [[p], STATE_VALUE[stateOf(p)] ?? 0] as [string[], number]);
    }));
    // budget names come from the config, so the label set is bounded
    r.add(new Gauge("failover_router_budget_spent_usd", "Spend in US dollars of each budget in its current period.", ["budget"], () => this.#scrape.budgets.map((b) => [[b.name], b.spent] as [string[], number])));
    r.add(new Gauge("failover_router_budget_limit_usd", "The limit in US dollars of each budget per period.", ["budget"], () => this.#scrape.budgets.map((b) => [[b.name], b.limit] as [string[], number])));
    r.add(new Gauge("failover_router_in_flight_requests", "Client requests being served (streams until their last chunk).", [], () => [[[], this.inFlight]]));
    r.add(new Gauge("failover_router_build_info", "Version, runtime and replica id of the running router (always 1).", ["version", "runtime", "replica"], () => [[[opts.version, opts.runtime, opts.replica?.() ?? ""], 1]]));
    const state = opts.state;
    if (state) {
      r.add(new Gauge("failover_router_state_backend_up", "1 while the state backend answers (memory: always), 0 while this replica serves from its local state.", ["backend"], () => {
        const s = state();
        return [[[s.backend], s.connected ? 1 : 0]];
      }));
    }
    r.add(new Gauge("failover_router_uptime_seconds", "Seconds since the router started.", [], () => [[[], (this.stats.now() - this.stats.startedAt) / 1000]]));
  }

  /** Router hooks for one config (price table, model labels and secrets of that config). */
  hooksFor(config: Config): RouterHooks {
    const prices = new PriceTable(config);
    const models = configModels(config);
    const secrets = configSecrets(config);
    const modelLabel = (m: string) => (models.has(m) ? m : "other");
    const clean = (reason: string) => clip(redact(reason, secrets));
    this.live.sync(config.providers.map((p) => p.name));
    for (const p of config.providers) {
      this.failovers.touch([p.name]);
      this.malformedEvents.touch([p.name]);
      this.hedges.touch([p.name]);
      this.hedgeWins.touch([p.name]);
      for (const o of ["success", "error", "timeout"]) this.upstreamRequests.touch([p.name, o]);
    }
    return {
      onAttemptStart: (p) => this.live.attemptStarted(p),
      onAttempt: (a) => this.#attempt(a, prices, modelLabel(a.model)),
      onHedge: (provider) => this.hedges.inc([provider]),
      onHedgeWin: (provider) => this.hedgeWins.inc([provider]),
      onStreamRecovery: (provider, outcome) => this.streamRecoveries.inc([provider, outcome]),
      onMalformedEvent: (provider, requestId, first) => {
        this.malformedEvents.inc([provider]);
        // once per stream: a stream of bad events must not flood the log
        if (first) this.logger?.log("warn", "malformed stream event skipped", { request_id: requestId, provider });
      },
      onRequest: (r) => {
        this.#request(r, prices, secrets);
        this.live.request(r, clean);
      },
      onBudget: (e) => {
        const soft = e.event === "soft_limit";
        this.logger?.log("warn", soft ? "budget soft limit crossed" : "budget spent", { budget: e.budget, spent_usd: e.spent, limit_usd: e.limit, resets_at: e.resets_at });
        this.live.onBudget?.(e);
      },
    };
  }

  #attempt(a: AttemptRecord, prices: PriceTable, model: string): void {
    const u = a.usage;
    const cost = prices.cost(a.provider, a.model, u);
    this.stats.recordAttempt({
      provider: a.provider, outcome: a.outcome, latency_ms: a.latency_ms, ttfb_ms: a.ttfb_ms,
      input_tokens: u?.prompt_tokens ?? 0, output_tokens: u?.completion_tokens ?? 0, cost_usd: cost,
    });
    this.upstreamRequests.inc([a.provider, OUTCOMES.includes(a.outcome) ? a.outcome : "error"]);
    if (a.outcome === "skipped") return;
    this.live.attempt(a, cost);
    this.upstreamLatency.observe([a.provider], a.latency_ms / 1000);
    if (a.ttfb_ms !== undefined) this.upstreamTtfb.observe([a.provider], a.ttfb_ms / 1000);
    if (u) {
      this.tokens.inc([a.provider, model, "input"], u.prompt_tokens);
      this.tokens.inc([a.provider, model, "output"], u.completion_tokens);
      if (cost > 0 || prices.price(a.provider, a.model)) this.cost.inc([a.provider, model], cost);
      // an attempt cut short always carries an estimate (what it is billed): the counter is of answers without usage
      if (u.estimated && a.outcome === "success") this.estimatedUsage.inc([a.provider]);
    }
  }

  #request(r: RequestRecord, prices: PriceTable, secrets: readonly string[]): void {
    const at = r.attempts;
    for (let i = 0; i < at.length - 1; i++) {
      const o = at[i].outcome;
      // a retry on the same provider is not a failover: only the request leaving the provider is
      if ((o === "error" || o === "timeout") && at[i + 1].provider !== at[i].provider) {
        this.stats.recordFailover(at[i].provider);
        this.failovers.inc([at[i].provider]);
      }
    }
    const path = r.path ?? ENDPOINT_PATH[r.endpoint];
    const level = r.status >= 500 ? "warn" : "info";
    const log = this.logger?.enabled(level);
    let input = 0, output = 0, cost = 0, estimated = false, usage: Usage | undefined;
    if (log || r.key_name !== undefined) {
      for (const a of at) {
        if (!(usage = a.usage)) continue;
        input += usage.prompt_tokens;
        output += usage.completion_tokens;
        cost += prices.cost(a.provider, a.model, usage);
        if (usage.estimated) estimated = true;
      }
    }
    this.#count(path, r.status, r.latency_ms, r.key_name, input, output, cost);
    if (!log) return;
    this.logger!.log(level, "request", {
      request_id: r.request_id,
      method: "POST",
      path,
      status: r.status,
      key_name: r.key_name,
      stream: r.stream,
      model: r.requested_model === undefined ? undefined : clip(redact(r.requested_model, secrets)),
      provider: r.provider,
      attempts: at.map((a) => loggedAttempt(a, secrets)),
      tokens: estimated ? { input, output, estimated } : { input, output },
      cost_usd: cost,
      latency_ms: roundMs(r.latency_ms),
    });
  }

  #count(path: string, status: number, latencyMs: number, keyName?: string, input = 0, output = 0, cost = 0): void {
    if (this.inFlight > 0) this.inFlight--;
    this.stats.recordRequest(status, keyName, input, output, cost);
    const endpoint = KNOWN_PATHS.has(path) ? path : "other";
    this.requestsTotal.inc([endpoint, String(status)]);
    this.requestDuration.observe([endpoint], latencyMs / 1000);
  }

  /** A client request is being served (paired with its onRequest hook or recordHttp). */
  requestStarted(): void {
    this.inFlight++;
  }

  /** A client request answered by the HTTP layer without reaching the router. */
  recordHttp(r: HttpRecord): void {
    this.#count(r.path, r.status, r.latency_ms, r.key_name);
    const level = r.status >= 500 ? "warn" : "info";
    if (!this.logger?.enabled(level)) return;
    this.logger.log(level, "request", {
      request_id: r.request_id, method: clip(r.method, 20), path: clip(r.path), status: r.status, key_name: r.key_name, attempts: [], latency_ms: roundMs(r.latency_ms),
    });
  }

  /** The GET /stats document for the router in force. */
  statsJson(router: Router, stateOf: StateOf = providerStateOf(router)): StatsJson {
    const json: StatsJson = this.stats.toJSON(router.config.providers.map((p) => p.name), stateOf);
    // the Router's own window (its health tracker), unrounded: /stats shows exactly what the SLA compares
    for (const name in json.providers) {
      const w = router.health.recent(name);
      json.providers[name].routing_window = {
        attempts: w.samples,
        success_rate: w.samples ? w.successRate : null,
        p95_ms: w.samples && w.successRate > 0 ? w.p95 : null,
      };
    }
    // per replica: Prometheus (or whoever reads them) sums the replicas
    if (this.opts.replica) json.replica = this.opts.replica();
    if (this.opts.state) json.state = this.opts.state();
    if (router.budgets.list.length) json.budgets = Object.fromEntries(router.budgets.spentNow().map((b) => [b.name, { spent_usd: b.spent, limit_usd: b.limit }]));
    return json;
  }

  /** The GET /metrics exposition for the router in force. */
  metricsText(router: Router, stateOf: StateOf = providerStateOf(router)): string {
    this.#scrape = { providers: router.config.providers.map((p) => p.name), stateOf, budgets: router.budgets.spentNow() };
    return this.registry.render();
  }
}
