// In-memory statistics behind GET /stats: cumulative counters per provider, plus latency and time-to-first-
// byte percentiles over a rolling window (the last WINDOW_SIZE samples that are also at most WINDOW_MS old).
// Recording is O(1) and memory is fixed per provider; percentiles are computed when /stats is read.
import type { StateStatus } from "../state/index.ts";
import type { BreakerState } from "../routing/breaker.ts";

/** At most this many samples per provider and per measure ... */
export const WINDOW_SIZE = 1000;
/** ... and none older than this. */
export const WINDOW_MS = 5 * 60 * 1000;

export interface Percentiles {
  p50: number | null;
  p95: number | null;
  p99: number | null;
}

/**
 * A ring buffer of the last `size` (timestamp, value) samples. `add` is O(1); `values(now)` returns the samples
 * no older than `maxAgeMs`, in insertion order.
 */
export class RollingWindow {
  readonly #values: Float64Array;
  readonly #times: Float64Array;
  #next = 0;
  #count = 0;

  constructor(readonly size = WINDOW_SIZE, readonly maxAgeMs = WINDOW_MS) {
    this.#values = new Float64Array(size);
    this.#times = new Float64Array(size);
  }

  add(value: number, now: number): void {
    this.#values[this.#next] = value;
    this.#times[this.#next] = now;
    this.#next = (this.#next + 1) % this.size;
    if (this.#count < this.size) this.#count++;
  }

  /** The samples in the window at time `now`, oldest first. */
  values(now: number): Float64Array {
    const out = new Float64Array(this.#count);
    const cutoff = now - this.maxAgeMs;
    let n = 0;
    const start = (this.#next - this.#count + this.size) % this.size;
    for (let i = 0; i < this.#count; i++) {
      const j = (start + i) % this.size;
      if (this.#times[j] >= cutoff) out[n++] = this.#values[j];
    }
    return out.subarray(0, n);
  }

  percentiles(now: number): Percentiles {
    const v = this.values(now).slice().sort(); // Float64Array sorts numerically
    return { p50: percentile(v, 50), p95: percentile(v, 95), p99: percentile(v, 99) };
  }
}

/**
 * Nearest-rank percentile of ascending-sorted values: the smallest value such that at least p% of the samples
 * are less than or equal to it (the value at rank ceil(p/100 * n)). null when there are no samples.
 */
export function percentile(sorted: ArrayLike<number>, p: number): number | null {
  const n = sorted.length;
  if (n === 0) return null;
  const rank = Math.max(1, Math.ceil((p / 100) * n));
  return sorted[Math.min(n, rank) - 1];
}

export interface ProviderCounters {
  requests: number;
  successes: number;
  failures: number;
  client_errors: number;
  skipped: number;
  failovers: number;
  input_tokens: number;
  output_tokens: number;
  cost_usd: number;
}

class ProviderStats implements ProviderCounters {
  requests = 0;
  successes = 0;
  failures = 0;
  client_errors = 0;
  skipped = 0;
  failovers = 0;
  input_tokens = 0;
  output_tokens = 0;
  cost_usd = 0;
  readonly latency: RollingWindow;
  readonly ttfb: RollingWindow;
  constructor(size: number, maxAgeMs: number) {
    this.latency = new RollingWindow(size, maxAgeMs);
    this.ttfb = new RollingWindow(size, maxAgeMs);
  }
}

/** Per API key (by its name, never the key): requests by final status, tokens and cost. */
export interface KeyCounters {
  requests: number;
  success: number;
  failed: number;
  tokens: { input: number; output: number };
  cost_usd: number;
}

/** names kept at most in `keys` (names come from the config, so this only bounds reloads that rename keys) */
export const MAX_KEYS = 1000;

export interface AttemptSample {
  provider: string;
  outcome: string;
  latency_ms: number;
  ttfb_ms?: number;
  input_tokens: number;
  output_tokens: number;
  cost_usd: number;
}

/**
 * A provider's recent attempts as the cost strategy's SLA and the health strategy read them: the last 50 attempts
 * of the last 5 minutes, latency to the start of the answer; `p95_ms` null without a success, `success_rate` null
 * without an attempt.
 */
export interface RoutingWindow {
  attempts: number;
  success_rate: number | null;
  p95_ms: number | null;
}

export interface StatsJson {
  /** this replica's id (server.replica_id): the figures are this replica's own */
  replica?: string;
  /** the state backend and whether it answers */
  state?: StateStatus;
  /** each budget's spend in its current period and its limit (GET /admin/budgets has the details) */
  budgets?: Record<string, { spent_usd: number; limit_usd: number }>;
  uptime_seconds: number;
  requests: { total: number; success: number; failed: number };
  providers: Record<string, {
    requests: number;
    successes: number;
    failures: number;
    failovers: number;
    latency_ms: Percentiles;
    ttfb_ms: Percentiles;
    tokens: { input: number; output: number };
    cost_usd: number;
    state: BreakerState;
    /** the window the routing strategies judge the provider on (routing/health.ts), added by the Observability */
    routing_window?: RoutingWindow;
  }>;
  totals: { tokens: { input: number; output: number }; cost_usd: number };
  /** per API key name, when auth is on (absent until a request authenticated with a key) */
  keys?: Record<string, KeyCounters>;
}

const round = (x: number, digits: number) => {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
};
const roundP = (p: Percentiles): Percentiles => ({
  p50: p.p50 === null ? null : round(p.p50, 2),
  p95: p.p95 === null ? null : round(p.p95, 2),
  p99: p.p99 === null ? null : round(p.p99, 2),
});

/** Counters and rolling windows for the whole router; created once at start-up and kept across reloads. */
export class Stats {
  readonly startedAt: number;
  readonly #providers = new Map<string, ProviderStats>();
  readonly #keys = new Map<string, KeyCounters>();
  requests = { total: 0, success: 0, failed: 0 };

  constructor(readonly now: () => number = () => Date.now(), readonly windowSize = WINDOW_SIZE, readonly windowMs = WINDOW_MS) {
    this.startedAt = now();
  }

  provider(name: string): ProviderStats {
    let p = this.#providers.get(name);
    if (!p) {
      p = new ProviderStats(this.windowSize, this.windowMs);
      this.#providers.set(name, p);
    }
    return p;
  }

  /** One upstream attempt. Skipped attempts (open breaker) never reached the provider: no request, no latency. */
  recordAttempt(a: AttemptSample): void {
    const p = this.provider(a.provider);
    if (a.outcome === "skipped") {
      p.skipped++;
      return;
    }
    p.requests++;
    if (a.outcome === "success") p.successes++;
    else if (a.outcome === "client_error") p.client_errors++;
    // a lost hedge (the other attempt was first) or a cancelled attempt (the client left) is no failure of the provider
    else if (a.outcome !== "hedge_lost" && a.outcome !== "cancelled") p.failures++;
    const now = this.now();
    p.latency.add(a.latency_ms, now);
    if (a.ttfb_ms !== undefined) p.ttfb.add(a.ttfb_ms, now);
    p.input_tokens += a.input_tokens;
    p.output_tokens += a.output_tokens;
    p.cost_usd += a.cost_usd;
  }

  recordFailover(provider: string): void {
    this.provider(provider).failovers++;
  }

  /** One client request, by its final HTTP status (and the name of the API key it used, if any). */
  recordRequest(status: number, keyName?: string, input = 0, output = 0, cost = 0): void {
    this.requests.total++;
    const ok = status >= 200 && status < 300;
    if (ok) this.requests.success++;
    else this.requests.failed++;
    if (keyName === undefined) return;
    let k = this.#keys.get(keyName);
    if (!k) {
      if (this.#keys.size >= MAX_KEYS) return;
      this.#keys.set(keyName, (k = { requests: 0, success: 0, failed: 0, tokens: { input: 0, output: 0 }, cost_usd: 0 }));
    }
    k.requests++;
    if (ok) k.success++;
    else k.failed++;
    k.tokens.input += input;
    k.tokens.output += output;
    k.cost_usd += cost;
  }

  /** The GET /stats document for the providers of the config in force. */
  toJSON(providers: readonly string[], stateOf: (name: string) => BreakerState): StatsJson {
    const now = this.now();
    const out: StatsJson["providers"] = {};
    let input = 0, output = 0, cost = 0;
    for (const name of providers) {
      const p = this.provider(name);
      out[name] = {
        requests: p.requests,
        successes: p.successes,
        failures: p.failures,
        failovers: p.failovers,
        latency_ms: roundP(p.latency.percentiles(now)),
        ttfb_ms: roundP(p.ttfb.percentiles(now)),
        tokens: { input: p.input_tokens, output: p.output_tokens },
        cost_usd: round(p.cost_usd, 10),
        state: stateOf(name),
      };
    }
    // totals cover every provider seen since start-up, including ones a reload removed
    for (const p of this.#providers.values()) {
      input += p.input_tokens;
      output += p.output_tokens;
      cost += p.cost_usd;
    }
    const json: StatsJson = {
      uptime_seconds: round((now - this.startedAt) / 1000, 3),
      requests: { ...this.requests },
      providers: out,
      totals: { tokens: { input, output }, cost_usd: round(cost, 10) },
    };
    if (this.#keys.size) {
      json.keys = {};
      for (const [name, k] of this.#keys) json.keys[name] = { ...k, tokens: { ...k.tokens }, cost_usd: round(k.cost_usd, 10) };
    }
    return json;
  }
}
