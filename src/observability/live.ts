// What the dashboard shows of each provider's recent activity: one-second buckets over the last minutes
// (requests, errors, latency, tokens, cost), the attempts in flight, and the latest failovers. Recording is O(1)
// with fixed memory per provider and needs no timer: a bucket is recycled when its second comes round again.
import type { BudgetEvent } from "../routing/budgets.ts";
import type { AttemptRecord, RequestRecord } from "../routing/records.ts";

/** Seconds of history kept per provider (the latency sparkline covers them all). */
export const LIVE_SECONDS = 300;
/** requests/s is averaged over the last this many complete seconds. */
export const RATE_SECONDS = 10;
/** error rate, tokens and cost are summed over the last this many seconds. */
export const MINUTE_SECONDS = 60;
/** One sparkline point (mean latency) per this many seconds. */
export const HISTORY_STEP_SECONDS = 10;
/** Failovers kept for the dashboard's list. */
export const MAX_FAILOVERS = 50;

const MAX_REASON = 200;

export interface FailoverEvent {
  /** ISO time the request ended */
  at: string;
  request_id: string;
  /** the provider whose attempt failed */
  from: string;
  /** the provider the request went to next */
  to: string;
  /** the failed attempt's reason (redacted, one line, at most 200 characters) */
  reason: string;
}

export interface LiveSummary {
  requests_per_s: number;
  /** failed attempts / attempts over the last minute; null without attempts */
  error_rate: number | null;
  in_flight: number;
  tokens_per_min: { input: number; output: number };
  cost_per_min_usd: number;
  /** mean latency (ms) per HISTORY_STEP_SECONDS over the last LIVE_SECONDS, oldest first; null where idle */
  latency_history: (number | null)[];
}

class ProviderLive {
  readonly second = new Float64Array(LIVE_SECONDS).fill(-1);
  readonly requests = new Float64Array(LIVE_SECONDS);
  readonly errors = new Float64Array(LIVE_SECONDS);
  readonly latencySum = new Float64Array(LIVE_SECONDS);
  readonly input = new Float64Array(LIVE_SECONDS);
  readonly output = new Float64Array(LIVE_SECONDS);
  readonly cost = new Float64Array(LIVE_SECONDS);
  inFlight = 0;

  /** The bucket of epoch second `s`, emptied if it still holds an older second. */
  bucket(s: number): number {
    const i = s % LIVE_SECONDS;
    if (this.second[i] !== s) {
      this.second[i] = s;
      this.requests[i] = this.errors[i] = this.latencySum[i] = this.input[i] = this.output[i] = this.cost[i] = 0;
    }
    return i;
  }
}

const round = (x: number, digits: number) => Math.round(x * 10 ** digits) / 10 ** digits;

export class LiveStats {
  readonly #providers = new Map<string, ProviderLive>();
  readonly #failovers: FailoverEvent[] = [];
  /** called with each new failover (the dashboard's event hub) */
  onFailover?: (f: FailoverEvent) => void;
  /** called after each attempt that reached a provider (its breaker may have moved) */
  onAttempt?: (provider: string) => void;
  /** called when a budget crosses its soft limit or runs out (the dashboard's event hub) */
  onBudget?: (e: BudgetEvent) => void;

  constructor(readonly now: () => number = Date.now) {}

  #get(name: string): ProviderLive {
    let p = this.#providers.get(name);
    if (!p) this.#providers.set(name, (p = new ProviderLive()));
    return p;
  }

  /** Keeps only the providers of the config in force (a reload may drop some). */
  sync(names: readonly string[]): void {
    const keep = new Set(names);
    for (const n of [...this.#providers.keys()]) if (!keep.has(n)) this.#providers.delete(n);
  }

  attemptStarted(provider: string): void {
    this.#get(provider).inFlight++;
  }

  /** One attempt ended; skipped attempts (open breaker) never started and are not counted. */
  attempt(a: AttemptRecord, cost: number): void {
    if (a.outcome === "skipped") return;
    const p = this.#get(a.provider);
    if (p.inFlight > 0) p.inFlight--;
    const i = p.bucket(Math.floor(this.now() / 1000));
    p.requests[i]++;
    if (a.outcome === "error" || a.outcome === "timeout") p.errors[i]++;
    p.latencySum[i] += a.latency_ms;
    p.input[i] += a.usage?.prompt_tokens ?? 0;
    p.output[i] += a.usage?.completion_tokens ?? 0;
    p.cost[i] += cost;
    this.onAttempt?.(a.provider);
  }

  /**
   * The failovers of one finished request: each failed attempt (error, timeout) followed by an attempt sent to
   * another provider. `clean` makes the failure reason fit to show (redacted, clipped).
   */
  request(r: RequestRecord, clean: (reason: string) => string): void {
    const at = r.attempts;
    for (let i = 0; i < at.length - 1; i++) {
      const a = at[i];
      if (a.outcome !== "error" && a.outcome !== "timeout") continue;
      let j = i + 1;
      while (j < at.length && (at[j].outcome === "skipped" || at[j].provider === a.provider)) j++;
      if (j === at.length) break;
      // the last failure before the move: retries on the same provider are not failovers
      if (at[i + 1].provider === a.provider && at[i + 1].outcome !== "skipped") continue;
      const f: FailoverEvent = {
        at: new Date(this.now()).toISOString(),
        request_id: r.request_id,
        from: a.provider,
        to: at[j].provider,
        reason: clean(a.reason ?? a.outcome).replace(/\s+/g, " ").slice(0, MAX_REASON),
      };
      this.#failovers.push(f);
      if (this.#failovers.length > MAX_FAILOVERS) this.#failovers.shift();
      this.onFailover?.(f);
    }
  }

  /** The latest failovers, newest first. */
  failovers(): FailoverEvent[] {
    return this.#failovers.slice().reverse();
  }

  summary(name: string): LiveSummary {
    const p = this.#providers.get(name);
    const history: (number | null)[] = new Array(LIVE_SECONDS / HISTORY_STEP_SECONDS).fill(null);
    if (!p) {
      return { requests_per_s: 0, error_rate: null, in_flight: 0, tokens_per_min: { input: 0, output: 0 }, cost_per_min_usd: 0, latency_history: history };
    }
    const now = Math.floor(this.now() / 1000);
    let recent = 0, requests = 0, errors = 0, input = 0, output = 0, cost = 0;
    const stepRequests = new Float64Array(history.length);
    const stepLatency = new Float64Array(history.length);
    for (let age = 0; age < LIVE_SECONDS; age++) {
      const s = now - age;
      const i = s % LIVE_SECONDS;
      if (s < 0 || p.second[i] !== s) continue;
      if (age >= 1 && age <= RATE_SECONDS) recent += p.requests[i];
      if (age < MINUTE_SECONDS) {
        requests += p.requests[i];
        errors += p.errors[i];
        input += p.input[i];
        output += p.output[i];
        cost += p.cost[i];
      }
      const k = history.length - 1 - Math.floor(age / HISTORY_STEP_SECONDS);
      stepRequests[k] += p.requests[i];
      stepLatency[k] += p.latencySum[i];
    }
    for (let k = 0; k < history.length; k++) if (stepRequests[k]) history[k] = round(stepLatency[k] / stepRequests[k], 1);
    return {
      requests_per_s: round(recent / RATE_SECONDS, 2),
      error_rate: requests ? round(errors / requests, 4) : null,
      in_flight: p.inFlight,
      tokens_per_min: { input, output },
      cost_per_min_usd: round(cost, 8),
      latency_history: history,
    };
  }
}
