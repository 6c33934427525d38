// The document behind the dashboard (GET /admin/state, and each tick of GET /admin/events): the config in
// force, and per provider its breaker, its recent activity and its latency percentiles, in the order the
// current strategy would try them.
import type { ChatRequest } from "../providers/types.ts";
import type { BreakerSnapshot } from "../routing/breaker.ts";
import type { Router } from "../routing/failover.ts";
import type { ConfigHealth } from "../reload.ts";
import type { StateStatus } from "../state/index.ts";
import type { FailoverEvent, LiveSummary } from "./live.ts";
import type { Observability } from "./observability.ts";
import type { Percentiles } from "./stats.ts";

export interface ProviderState extends LiveSummary {
  name: string;
  type: string;
  default_model: string;
  /** false for a provider only reachable by pinning it ("provider/model") */
  in_chain: boolean;
  breaker: BreakerSnapshot & {
    /** ms until an open breaker lets a probe through (null unless open): a countdown that needs no clock sync */
    retry_in_ms: number | null;
    failure_threshold: number;
    cooldown_seconds: number;
  };
  latency_ms: Pick<Percentiles, "p50" | "p95">;
  ttfb_ms: Pick<Percentiles, "p50" | "p95">;
  /** the spend budgets scoped to this provider (`scope: { provider }`), in config order */
  budgets: BudgetBar[];
}

/** One budget's bar: spend in its current period against its limit. */
export interface BudgetBar {
  name: string;
  spent_usd: number;
  limit_usd: number;
}

export interface DashboardState {
  /** ISO time this snapshot was taken */
  at: string;
  /** which router instance answered (several replicas may sit behind one address) */
  replica_id: string;
  /** the shared-state backend and whether it is reachable; null while state is kept in this process only */
  shared_state: StateStatus | null;
  config: ConfigHealth & { strategy: string; chain: string[]; reload_available: boolean };
  /** client requests being served by this router */
  in_flight: number;
  providers: ProviderState[];
  /** the latest failovers, newest first */
  failovers: FailoverEvent[];
  /** every budget of the config (provider-scoped ones are on their provider's card too) */
  budgets: BudgetBar[];
}

export interface SnapshotSources {
  router(): Router;
  observability: Observability;
  configHealth?(): ConfigHealth;
  /** POST /admin/reload is served (there is a config file) */
  reloadAvailable: boolean;
  /** this router's id among replicas (default "local", for a router embedded without a listener of its own) */
  replicaId?(): string;
  /** the shared-state backend's status (the `state` block of /health), null with the memory backend */
  sharedState?(): StateStatus | null;
}

// a request with no prompt: the strategy's order for a typical request (cost: by output price)
const PROBE_REQUEST: ChatRequest = { model: "", messages: [] } as unknown as ChatRequest;

const round2 = (x: number | null) => (x === null ? null : Math.round(x * 100) / 100);

/** The order the strategy in force tries the chain in, then the providers outside the chain. */
export function providerOrder(router: Router): string[] {
  const order = router.planner.order("chat", PROBE_REQUEST).map((c) => c.provider.name);
  for (const p of router.config.providers) if (!order.includes(p.name)) order.push(p.name);
  return order;
}

export function dashboardState(src: SnapshotSources): DashboardState {
  const router = src.router();
  const obs = src.observability;
  const config = router.config;
  const chain = config.routing.fallback_chain;
  const breakers = router.breakerSnapshots();
  const scopes = new Map(config.budgets.list.map((b) => [b.name, b.scope.provider]));
  const bars = router.budgets.spentNow().map((b) => ({ name: b.name, spent_usd: b.spent, limit_usd: b.limit, provider: scopes.get(b.name) }));
  const clock = router.breakers.now();
  const statsNow = obs.stats.now();
  const byName = new Map(config.providers.map((p) => [p.name, p]));
  const providers: ProviderState[] = [];
  for (const name of providerOrder(router)) {
    const p = byName.get(name)!;
    const b = breakers[name];
    const settings = p.circuit_breaker;
    const s = obs.stats.provider(name);
    const lat = s.latency.percentiles(statsNow);
    const ttfb = s.ttfb.percentiles(statsNow);
    providers.push({
      name,
      type: p.type,
      default_model: p.default_model,
      in_chain: chain.includes(name),
      breaker: {
        ...b,
        retry_in_ms: b.retry_at === null ? null : Math.max(0, Date.parse(b.retry_at) - clock),
        failure_threshold: settings.failure_threshold,
        cooldown_seconds: settings.cooldown_seconds,
      },
      ...obs.live.summary(name),
      latency_ms: { p50: round2(lat.p50), p95: round2(lat.p95) },
      ttfb_ms: { p50: round2(ttfb.p50), p95: round2(ttfb.p95) },
      budgets: bars.filter((b) => b.provider === name).map(({ name, spent_usd, limit_usd }) => ({ name, spent_usd, limit_usd })),
    });
  }
  const health = src.configHealth?.() ?? { loaded_at: new Date(obs.stats.startedAt).toISOString(), last_reload_error: null };
  return {
    at: new Date().toISOString(),
    replica_id: src.replicaId?.() ?? "local",
    shared_state: src.sharedState?.() ?? null,
    config: { ...health, strategy: config.routing.strategy, chain: [...chain], reload_available: src.reloadAvailable },
    in_flight: obs.inFlight,
    providers,
    failovers: obs.live.failovers(),
    budgets: bars.map(({ name, spent_usd, limit_usd }) => ({ name, spent_usd, limit_usd })),
  };
}
