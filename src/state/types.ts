// The state seam: the interfaces behind which the router keeps what several replicas could share (rate-limit
// buckets, idempotency records and locks, circuit-breaker openings, budget spend). src/state/memory/ holds the
// in-process implementations, the default; another backend implements these interfaces and passes the contract
// tests in tests/state/ (docs/contributing.md, "Adding a state backend").
//
// Every method may answer with a value or a promise of one. The in-memory backend answers synchronously, and its
// callers check for a promise before awaiting, so a request does not go through the microtask queue for it.
// A backend never throws or rejects for its own failures: it bounds every call by a timeout and falls back to
// local state (see docs/contributing.md).
import type { Config } from "../config/schema.ts";

/** A value or a promise of it: the in-memory backend answers synchronously, a networked one with a promise. */
export type MaybePromise<T> = T | Promise<T>;

export function isPromise<T>(v: MaybePromise<T>): v is Promise<T> {
  return typeof (v as Promise<T> | undefined)?.then === "function";
}

/**
 * Makes a backend call whose result nobody waits for (a release, a charge, a publication): a throw or a rejection
 * is dropped, so a failing backend never fails the request or leaves an unhandled rejection (which ends the process).
 */
export function detach(call: () => MaybePromise<unknown>): void {
  try {
    const v = call();
    if (isPromise(v)) v.catch(() => {});
  } catch {
    // the backend's own failure: local state stands
  }
}

// ---- rate-limit buckets ----

/** The limits of one bucket (the `rate_limit` block; read per request, so a reload applies). */
export type RateLimits = Pick<Config["rate_limit"], "requests_per_minute" | "burst" | "tokens_per_minute">;

export interface RateDecision {
  allowed: boolean;
  /** why it was refused */
  reason?: "requests" | "tokens";
  /** ms until a request would be allowed (0 when allowed) */
  retryAfterMs: number;
  remainingRequests: number;
  /** ms until the request bucket is full again */
  resetRequestsMs: number;
  remainingTokens: number;
  resetTokensMs: number;
}

/**
 * Token buckets per client identity: one for requests (`burst` deep, refilled at `requests_per_minute`) and, when
 * `tokens_per_minute` is set, one for model tokens (may go into debt after a large answer; no request passes while
 * it is empty).
 */
export interface RateLimitStore {
  /** Atomically takes one request from `id`'s bucket, or refuses; the figures are the x-ratelimit-* headers'. */
  take(id: string, limits: RateLimits): MaybePromise<RateDecision>;
  /** Charges `tokens` model tokens to `id` once an answer's usage is known. */
  charge(id: string, tokens: number, limits: RateLimits): MaybePromise<void>;
}

// ---- idempotency records and locks ----

/** A final response kept for replay. */
export interface StoredResponse {
  /** identifies the request (path and body hash): a repeat with another fingerprint is a key reuse */
  fingerprint: string;
  status: number;
  headers: [string, string][];
  /** true for an SSE response: `chunks` is the event transcript, replayed as a stream */
  stream: boolean;
  /** the body bytes (the memory store gives them back as one chunk) */
  chunks: Uint8Array[];
}

export type LockResult =
  /**
   * this request owns the key until release() (called once its response is stored or given up, as a plain
   * function: no `this`) or until the lock's TTL
   */
  | {
      acquired: true;
      release: () => MaybePromise<void>;
      /**
       * put(key, value, ttlMs) then release(), in one call (one round trip on a networked backend): the way a
       * holder ends with a response to keep. Like put(), the caller does not touch `value.chunks` afterwards.
       */
      putAndRelease: (value: StoredResponse, ttlMs: number) => MaybePromise<void>;
    }
  /**
   * another request with the key is in flight (in this process or another): `fingerprint` is its fingerprint;
   * `released` settles when the holder releases the key or its lock expires (the caller bounds its wait by the TTL)
   */
  | { acquired: false; fingerprint: string; released: Promise<void> };

/** What begin() finds: the response kept for the key, or else the key's lock as lock() answers. */
export type BeginResult = { stored: StoredResponse; acquired?: undefined } | (LockResult & { stored?: undefined });

export interface IdempotencyStore {
  get(key: string): MaybePromise<StoredResponse | undefined>;
  /**
   * Keeps `value` for `ttlMs`, within the store's bounds (idempotency.max_entries, max_total_bytes: least recently
   * used first out; a value larger than the byte bound is not kept). The caller does not touch `value.chunks`
   * afterwards, so they may be kept as they are.
   */
  put(key: string, value: StoredResponse, ttlMs: number): MaybePromise<void>;
  /**
   * Takes the in-flight lock of `key` for a request with `fingerprint` for at most `ttlMs` (a holder that never
   * releases, e.g. a replica that died, blocks the key no longer), or reports who holds it.
   */
  lock(key: string, fingerprint: string, ttlMs?: number): MaybePromise<LockResult>;
  /**
   * get(key), and on a miss lock(key, fingerprint, ttlMs), in one call (one round trip on a networked backend):
   * what a request with an idempotency key asks first.
   */
  begin(key: string, fingerprint: string, ttlMs?: number): MaybePromise<BeginResult>;
}

// ---- circuit-breaker openings shared between replicas ----

/** A probe permit held by one replica; released (as a plain function) when the breaker leaves half-open. */
export interface ProbePermit {
  release: () => MaybePromise<void>;
}

/**
 * What replicas tell each other about their circuit breakers. Each replica keeps its own breaker state machine
 * (src/routing/breaker.ts, consecutive failures counted locally); through this store it learns when another
 * replica opened a provider's breaker, and probes a recovering provider one replica at a time.
 *
 * The router never waits on this store per request: openings reach it through `subscribe`, and a probe permit is
 * asked for once when a breaker's cool-off ends.
 */
/** The `until` a probe's success publishes (BreakerStore.publish): not a time, and not a manual reset (0). */
export const CLOSED_BY_PROBE = -1;

export interface BreakerStore {
  /**
   * Tells every replica that `provider` is open until `until` (ms since the epoch, wall clock); `until` 0 is a
   * manual reset, which closes the breaker everywhere and clears its last error; CLOSED_BY_PROBE a probe's
   * success, which closes it everywhere and keeps the last error for the operator.
   */
  publish(provider: string, until: number): MaybePromise<void>;
  /**
   * Calls `listener` with every opening still in force, then with every publication of any replica (this one's
   * included), each within 1 s of it. Returns the unsubscribe function.
   */
  subscribe(listener: (provider: string, until: number) => void): () => void;
  /**
   * The permit to probe `provider` after its cool-off, one replica at a time: the permit, or null while another
   * replica holds it. A permit not released within `ttlMs` lapses (a replica that died mid-probe).
   */
  acquireProbe(provider: string, ttlMs: number): MaybePromise<ProbePermit | null>;
}

// ---- budget spend ----

/** A budget period: its id (e.g. "2026-12" for a monthly budget) and when it ends, after which its counters may go. */
export interface SpendPeriod {
  id: string;
  /** ms since the epoch */
  endsAt: number;
}

export type Reservation =
  | { granted: true; /** identifies the reservation for settle() */ id: string }
  | { granted: false; spent: number; reserved: number };

/** Spend counters per budget key and period, in whatever unit the caller uses (e.g. USD). */
export interface SpendStore {
  /**
   * Atomically reserves `amount` if spent + reserved + amount stays within `limit`. An unsettled reservation lapses
   * after `ttlMs` (a replica that died mid-request).
   */
  reserve(key: string, period: SpendPeriod, amount: number, limit: number, ttlMs: number): MaybePromise<Reservation>;
  /** The request's actual cost replaces its reservation (an unknown or lapsed reservation: the cost is still spent). */
  settle(key: string, period: SpendPeriod, reservationId: string, cost: number): MaybePromise<void>;
  read(key: string, period: SpendPeriod): MaybePromise<{ spent: number; reserved: number }>;
}
