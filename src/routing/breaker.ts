// Circuit breakers, one per provider: CLOSED -> OPEN after `failure_threshold` consecutive failures,
// OPEN -> HALF_OPEN when the cool-off ends, HALF_OPEN -> CLOSED on a probe success or back to OPEN (fresh
// cool-off) on a probe failure. The clock is injected (`now()` in ms since the epoch) so tests need not sleep.
//
// Concurrency: the router asks `acquire()` before every upstream attempt and settles the permit exactly once
// (success / failure / release). acquire() is synchronous, so under any number of simultaneous requests
// exactly `half_open_max_requests` probe permits are handed out in HALF_OPEN. Each permit remembers the
// breaker's generation (bumped at every state change): a late result from before a transition (a request
// that started while CLOSED and ends after the breaker opened) does not move the state again.
//
// Replicas (src/state/, BreakerStore): a breaker that opens publishes "open until T", and a breaker adopts the
// openings other replicas publish; when a cool-off ends, the breaker turns HALF_OPEN only once it holds the
// replicas' probe permit, so one replica at a time probes a recovering provider, and the probe's result reaches
// every replica (a success publishes a close, a failure a new opening). Failures are counted per replica.
import type { CircuitBreakerConfig, Config } from "../config/schema.ts";
import { CLOSED_BY_PROBE, detach, isPromise, type BreakerStore, type MaybePromise, type ProbePermit } from "../state/types.ts";

export type BreakerState = "closed" | "open" | "half_open";

export interface BreakerSnapshot {
  state: BreakerState;
  consecutive_failures: number;
  last_error: string | null;
  /** ISO time the breaker last opened (null while closed) */
  opened_at: string | null;
  /** ISO time an open breaker turns half-open (null unless open) */
  retry_at: string | null;
}

export interface Permit {
  /** true when this attempt is a half-open probe */
  readonly probe: boolean;
  readonly gen: number;
  settled: boolean;
}

/** How long an error message kept for /health may be. */
const MAX_ERROR_CHARS = 200;

/**
 * An upstream error message on one line, cut to 200 characters, for /health and logs. Secrets are already out:
 * the adapters' failures are redacted where they come out (src/providers/redact.ts).
 */
export function shortError(message: string): string {
  const s = message.replace(/\s+/g, " ").trim();
  return s.length > MAX_ERROR_CHARS ? s.slice(0, MAX_ERROR_CHARS - 1) + "…" : s;
}

/** How a breaker reaches the other replicas: the state backend's breaker store and its provider's name there. */
export interface SharedBreaker {
  store: BreakerStore;
  provider: string;
}

/** While another replica holds the probe permit, the breaker stays open and asks again after this long. */
const PROBE_RETRY_MS = 1000;
/** A provider's Retry-After keeps its breaker open at most this long: the header is the upstream's word, and a
 * broken or hostile one must not take the provider out for a day (a manual reset still closes it sooner). */
export const MAX_RETRY_AFTER_SECONDS = 600;
/** The permit of a replica whose store failed: it probes on its own, as a lone replica would. */
const LOCAL_PERMIT: ProbePermit = { release() {} };

export class CircuitBreaker {
  #settings: CircuitBreakerConfig;
  #state: BreakerState = "closed";
  #failures = 0;
  #openedAt: number | null = null;
  #retryAt = 0;
  #probes = 0;
  #gen = 0;
  #lastError: string | null = null;
  readonly #shared: SharedBreaker | undefined;
  /** the replicas' probe permit, held while HALF_OPEN */
  #permit: ProbePermit | null = null;
  /** a probe permit has been asked for and not yet answered */
  #asking = false;

  constructor(settings: CircuitBreakerConfig, readonly now: () => number = Date.now, shared?: SharedBreaker) {
    this.#settings = { ...settings };
    this.#shared = shared;
  }

  get settings(): Readonly<CircuitBreakerConfig> {
    return this.#settings;
  }

  /** New thresholds from a config reload; the current state and counters are kept. */
  configure(settings: CircuitBreakerConfig): void {
    this.#settings = { ...settings };
  }

  /** OPEN turns HALF_OPEN lazily, the first time anyone looks after the cool-off (and the probe permit is ours). */
  #refresh(): void {
    if (this.#state !== "open" || this.now() < this.#retryAt) return;
    if (!this.#shared) this.#halfOpen();
    else if (!this.#asking) this.#askProbe(this.#shared);
  }

  #halfOpen(): void {
    this.#state = "half_open";
    this.#probes = 0;
    this.#gen++;
  }

  /**
   * Asks for the replicas' probe permit. An answer that is a promise leaves the breaker OPEN until it comes (the
   * router never waits for it); a store that fails grants it, so the breaker falls back to probing on its own.
   */
  #askProbe({ store, provider }: SharedBreaker): void {
    const gen = this.#gen;
    let r: MaybePromise<ProbePermit | null>;
    try {
      r = store.acquireProbe(provider, this.#settings.cooldown_seconds * 1000);
    } catch {
      r = LOCAL_PERMIT;
    }
    if (!isPromise(r)) return this.#probeAnswer(gen, r);
    this.#asking = true;
    const answer = (p: ProbePermit | null) => {
      this.#asking = false;
      this.#probeAnswer(gen, p);
    };
    r.then(answer, () => answer(LOCAL_PERMIT));
  }

  #probeAnswer(gen: number, permit: ProbePermit | null): void {
    if (gen !== this.#gen || this.#state !== "open") {
      // the breaker moved on meanwhile (a reset, an opening adopted)
      if (permit) detach(permit.release);
      return;
    }
    if (!permit) {
      this.#retryAt = this.now() + PROBE_RETRY_MS; // another replica probes
      return;
    }
    this.#permit = permit;
    this.#halfOpen();
  }

  /** Gives the probe permit back (the breaker left HALF_OPEN). */
  #dropPermit(): void {
    const p = this.#permit;
    if (!p) return;
    this.#permit = null;
    detach(p.release);
  }

  /**
   * A probe's result: the permit is not given back but left to lapse (its TTL is the cool-off, which ends before a
   * next cool-off could), so no other replica takes it and probes again before it has heard the result.
   */
  #keepPermit(): void {
    this.#permit = null;
  }

  /** Tells the other replicas how long this breaker stays open (0: it was reset). */
  #publish(until: number): void {
    const shared = this.#shared;
    if (shared) detach(() => shared.store.publish(shared.provider, until));
  }

  /**
   * An opening published by a replica (this one's own come back too): `until` in ms since the epoch, 0 for a
   * manual reset, CLOSED_BY_PROBE for a probe's success. This breaker is open until then, whatever it was doing;
   * requests in flight become late results.
   */
  adopt(until: number): void {
    if (until === 0) return this.#resetHere();
    if (until === CLOSED_BY_PROBE) {
      if (this.#state !== "closed") this.#close();
      return;
    }
    if (until <= this.now() || (this.#state === "open" && this.#retryAt >= until)) return;
    if (this.#state !== "open") {
      this.#state = "open";
      this.#openedAt = this.now();
      this.#probes = 0;
      this.#dropPermit();
    }
    this.#retryAt = until;
    this.#gen++; // also voids a probe permit being asked for
  }

  get state(): BreakerState {
    this.#refresh();
    return this.#state;
  }

  /** Consecutive failures counted so far (reset by a success). */
  get consecutiveFailures(): number {
    return this.#failures;
  }

  /** ms until an open breaker turns half-open; 0 when it is not open. */
  retryInMs(): number {
    this.#refresh();
    return this.#state === "open" ? Math.max(0, this.#retryAt - this.now()) : 0;
  }

  /** Whether an attempt may go out now: a permit, or null (open, or every half-open probe slot taken). */
  acquire(): Permit | null {
    this.#refresh();
    if (this.#state === "closed") return { probe: false, gen: this.#gen, settled: false };
    if (this.#state === "half_open" && this.#probes < this.#settings.half_open_max_requests) {
      this.#probes++;
      return { probe: true, gen: this.#gen, settled: false };
    }
    return null;
  }

  /** The attempt succeeded: a probe closes the breaker; in CLOSED the failure count resets. */
  success(p: Permit): void {
    if (p.settled) return;
    p.settled = true;
    if (p.gen !== this.#gen) return;
    if (p.probe) {
      this.#probes--;
      this.#keepPermit();
      this.#close();
      this.#publish(CLOSED_BY_PROBE); // the probe's result closes the breaker in every replica
    } else if (this.#state === "closed") {
      this.#failures = 0;
    }
  }

  /**
   * The attempt failed (connection error, timeout, 5xx, 408, 429, 401, 403, broken stream). `retryAfterSec`
   * (from a Retry-After header) keeps a breaker this failure opens, or one already open, open at least that long.
   */
  failure(p: Permit, error: string, retryAfterSec?: number): void {
    if (p.settled) return;
    p.settled = true;
    this.#lastError = error;
    const ra = retryAfterSec !== undefined && retryAfterSec > 0 ? Math.min(retryAfterSec, MAX_RETRY_AFTER_SECONDS) * 1000 : 0;
    if (p.gen !== this.#gen) {
      // a late result: it does not move the state, but a Retry-After still extends an open breaker
      this.#refresh();
      if (this.#state === "open" && ra && this.now() + ra > this.#retryAt) {
        this.#retryAt = this.now() + ra;
        this.#publish(this.#retryAt);
      }
      return;
    }
    this.#failures++;
    if (p.probe) {
      this.#probes--;
      this.#keepPermit();
      this.#trip(ra);
    } else if (this.#state === "closed" && this.#failures >= this.#settings.failure_threshold) {
      this.#trip(ra);
    }
  }

  /** Neither success nor failure (a client error, context window exceeded, the client went away). */
  release(p: Permit): void {
    if (p.settled) return;
    p.settled = true;
    if (p.probe && p.gen === this.#gen) this.#probes--;
  }

  /** Manual reset: CLOSED, counters and last error cleared, here and in every other replica. */
  reset(): void {
    this.#resetHere();
    this.#publish(0);
  }

  #resetHere(): void {
    this.#close();
    this.#lastError = null;
  }

  #close(): void {
    this.#state = "closed";
    this.#failures = 0;
    this.#openedAt = null;
    this.#retryAt = 0;
    this.#probes = 0;
    this.#gen++;
    this.#dropPermit();
  }

  #trip(retryAfterMs: number): void {
    const now = this.now();
    this.#state = "open";
    this.#openedAt = now;
    this.#retryAt = now + Math.max(this.#settings.cooldown_seconds * 1000, retryAfterMs);
    this.#probes = 0;
    this.#gen++;
    this.#dropPermit();
    this.#publish(this.#retryAt);
  }

  snapshot(): BreakerSnapshot {
    this.#refresh();
    return {
      state: this.#state,
      consecutive_failures: this.#failures,
      last_error: this.#lastError,
      opened_at: this.#openedAt === null ? null : new Date(this.#openedAt).toISOString(),
      retry_at: this.#state === "open" ? new Date(this.#retryAt).toISOString() : null,
    };
  }
}

/**
 * The breakers of every configured provider, keyed by provider name. Created once at startup and shared by
 * every Router built from a (re)loaded config: `sync(config)` keeps the breaker (and its state) of each
 * provider whose name is unchanged, applies new thresholds, adds new providers and drops removed ones.
 * With a `store` (the state backend's), the breakers share their openings with other replicas.
 */
export class BreakerRegistry {
  readonly #breakers = new Map<string, CircuitBreaker>();

  constructor(config?: Pick<Config, "providers">, readonly now: () => number = Date.now, readonly store?: BreakerStore) {
    if (config) this.sync(config);
    // the registry lives as long as the process: no unsubscribe
    store?.subscribe((provider, until) => this.#breakers.get(provider)?.adopt(until));
  }

  sync(config: Pick<Config, "providers">): void {
    const names = new Set<string>();
    for (const p of config.providers) {
      names.add(p.name);
      const b = this.#breakers.get(p.name);
      if (b) b.configure(p.circuit_breaker);
      else this.#breakers.set(p.name, new CircuitBreaker(p.circuit_breaker, this.now, this.store && { store: this.store, provider: p.name }));
    }
    for (const name of [...this.#breakers.keys()]) if (!names.has(name)) this.#breakers.delete(name);
  }

  get(name: string): CircuitBreaker | undefined {
    return this.#breakers.get(name);
  }
}
