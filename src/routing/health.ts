// Per-provider routing signals for the `latency` and `health` strategies: an EWMA of the latency of
// successful attempts, and the success rate over a small window of recent attempts. Constant time and
// memory per provider; the clock is injected (ms since the epoch) so tests control staleness.
import type { Config } from "../config/schema.ts";

/** Weight of the newest sample in the latency EWMA. */
export const LATENCY_ALPHA = 0.3;
/** Latency data older than this is forgotten, so a provider that was slow once gets tried again. */
export const LATENCY_STALE_MS = 5 * 60_000;
/** The success rate covers the last WINDOW attempts that are at most WINDOW_MS old. */
export const WINDOW = 50;
export const WINDOW_MS = 5 * 60_000;
/** The cost strategy's SLA judges a provider on at least this many recent attempts; with fewer it counts as meeting it. */
export const SLA_MIN_SAMPLES = 5;

/** A provider's recent window as the SLA of the cost strategy reads it. */
export interface WindowSummary {
  /** attempts in the window */
  samples: number;
  successRate: number;
  /** nearest-rank p95 of the successes' latency (ms), 0 without a success */
  p95: number;
}

class ProviderHealth {
  ewma: number | undefined;
  lastLatencyAt = 0;
  readonly at = new Float64Array(WINDOW);
  readonly ok = new Uint8Array(WINDOW);
  readonly ms = new Float64Array(WINDOW);
  size = 0;
  next = 0;

  push(t: number, ok: boolean, latencyMs = 0): void {
    this.at[this.next] = t;
    this.ok[this.next] = ok ? 1 : 0;
    this.ms[this.next] = latencyMs;
    this.next = (this.next + 1) % WINDOW;
    if (this.size < WINDOW) this.size++;
  }
}

export class HealthTracker {
  readonly #providers = new Map<string, ProviderHealth>();

  constructor(config?: Pick<Config, "providers">, readonly now: () => number = Date.now) {
    if (config) this.sync(config);
  }

  /** Keeps the data of providers whose names are unchanged, adds new ones, drops removed ones. */
  sync(config: Pick<Config, "providers">): void {
    const names = new Set(config.providers.map((p) => p.name));
    for (const n of names) if (!this.#providers.has(n)) this.#providers.set(n, new ProviderHealth());
    for (const n of [...this.#providers.keys()]) if (!names.has(n)) this.#providers.delete(n);
  }

  #get(name: string): ProviderHealth {
    let h = this.#providers.get(name);
    if (!h) this.#providers.set(name, (h = new ProviderHealth()));
    return h;
  }

  /** A successful attempt; `latencyMs` is the time until the answer started (first content chunk for streams). */
  success(name: string, latencyMs: number): void {
    const h = this.#get(name);
    const t = this.now();
    const fresh = h.ewma === undefined || t - h.lastLatencyAt > LATENCY_STALE_MS;
    h.ewma = fresh ? latencyMs : h.ewma! + LATENCY_ALPHA * (latencyMs - h.ewma!);
    h.lastLatencyAt = t;
    h.push(t, true, latencyMs);
  }

  /** A failed attempt (the breaker's notion of failure: not client errors or client aborts). */
  failure(name: string): void {
    this.#get(name).push(this.now(), false);
  }

  /** The rolling latency in ms, or undefined when there is no recent data. */
  latency(name: string): number | undefined {
    const h = this.#providers.get(name);
    if (!h || h.ewma === undefined || this.now() - h.lastLatencyAt > LATENCY_STALE_MS) return undefined;
    return h.ewma;
  }

  /**
   * The recent window (the last WINDOW attempts of the last WINDOW_MS): its attempts, their success rate (1 with
   * none) and the successes' latency p95. /stats shows it as each provider's `routing_window`.
   */
  recent(name: string): WindowSummary {
    const h = this.#providers.get(name);
    if (!h) return { samples: 0, successRate: 1, p95: 0 };
    const since = this.now() - WINDOW_MS;
    const lat: number[] = [];
    let n = 0;
    for (let i = 0; i < h.size; i++) {
      if (h.at[i] < since) continue;
      n++;
      if (h.ok[i]) lat.push(h.ms[i]);
    }
    lat.sort((a, b) => a - b);
    return { samples: n, successRate: n ? lat.length / n : 1, p95: lat.length ? lat[Math.ceil(0.95 * lat.length) - 1] : 0 };
  }

  /** The recent window as the cost strategy's SLA judges it: undefined with fewer than SLA_MIN_SAMPLES attempts in it. */
  window(name: string): WindowSummary | undefined {
    const w = this.recent(name);
    return w.samples < SLA_MIN_SAMPLES ? undefined : w;
  }

  /** Successes / attempts over the recent window, or undefined when there is no recent attempt. */
  successRate(name: string): number | undefined {
    const h = this.#providers.get(name);
    if (!h || h.size === 0) return undefined;
    const since = this.now() - WINDOW_MS;
    let n = 0, ok = 0;
    for (let i = 0; i < h.size; i++) {
      if (h.at[i] < since) continue;
      n++;
      ok += h.ok[i];
    }
    return n ? ok / n : undefined;
  }
}
