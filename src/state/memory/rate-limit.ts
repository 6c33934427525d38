// The in-memory rate-limit buckets (src/state/types.ts has the interface).
import type { RateDecision, RateLimits, RateLimitStore } from "../types.ts";

interface Bucket {
  /** request tokens at `at` (0..burst) */
  req: number;
  /** model-token budget at `at` (negative = in debt after a large response) */
  tok: number;
  at: number;
  /** from this time on both buckets are full again: the entry carries no state and may be forgotten */
  idleUntil: number;
}

const MINUTE = 60_000;
/** most idle buckets dropped per call, so no single request pays for a large sweep */
const SWEEP_PER_CALL = 16;

/**
 * Token buckets keyed by client id. The map is kept in least-recently-used order; buckets that have
 * refilled completely are dropped (a full bucket is the same as no bucket), and past `maxKeys` the least
 * recently used bucket is evicted, so memory stays bounded whatever the number of distinct clients.
 */
export class MemoryRateLimitStore implements RateLimitStore {
  readonly #buckets = new Map<string, Bucket>();

  constructor(readonly now: () => number, readonly maxKeys = 100_000) {}

  get size(): number {
    return this.#buckets.size;
  }

  #touch(id: string, rl: RateLimits, t: number): Bucket {
    const rpm = rl.requests_per_minute, tpm = rl.tokens_per_minute;
    let b = this.#buckets.get(id);
    if (b) {
      this.#buckets.delete(id); // re-inserted below, at the most-recently-used end
      const dt = t - b.at;
      if (dt > 0) {
        b.req += (dt * rpm) / MINUTE;
        if (tpm) b.tok += (dt * tpm) / MINUTE;
        b.at = t;
      }
      if (b.req > rl.burst) b.req = rl.burst;
      if (tpm && b.tok > tpm) b.tok = tpm;
    } else {
      b = { req: rl.burst, tok: tpm ?? 0, at: t, idleUntil: t };
    }
    this.#buckets.set(id, b);
    return b;
  }

  #finish(b: Bucket, rl: RateLimits, t: number): void {
    const tpm = rl.tokens_per_minute;
    const full = Math.max(((rl.burst - b.req) * MINUTE) / rl.requests_per_minute, tpm ? ((tpm - b.tok) * MINUTE) / tpm : 0);
    b.idleUntil = t + full;
    let n = 0;
    for (const [id, other] of this.#buckets) {
      if (this.#buckets.size > this.maxKeys || (n < SWEEP_PER_CALL && other.idleUntil <= t && other !== b)) {
        this.#buckets.delete(id);
        n++;
      } else break;
    }
  }

  /** Takes one request from `id`'s bucket, or refuses. */
  take(id: string, rl: RateLimits): RateDecision {
    const t = this.now();
    const b = this.#touch(id, rl, t);
    const tpm = rl.tokens_per_minute;
    let reason: RateDecision["reason"];
    let retryAfterMs = 0;
    if (b.req < 1) {
      reason = "requests";
      retryAfterMs = ((1 - b.req) * MINUTE) / rl.requests_per_minute;
    } else if (tpm && b.tok <= 0) {
      reason = "tokens";
      retryAfterMs = ((1 - b.tok) * MINUTE) / tpm;
    } else {
      b.req -= 1;
    }
    this.#finish(b, rl, t);
    return {
      allowed: reason === undefined,
      reason,
      retryAfterMs,
      remainingRequests: Math.floor(b.req),
      resetRequestsMs: ((rl.burst - b.req) * MINUTE) / rl.requests_per_minute,
      remainingTokens: tpm ? Math.max(0, Math.floor(b.tok)) : 0,
      resetTokensMs: tpm ? ((tpm - b.tok) * MINUTE) / tpm : 0,
    };
  }

  /** Charges `tokens` model tokens to `id` (after the response, when its usage is known). */
  charge(id: string, tokens: number, rl: RateLimits): void {
    if (!rl.tokens_per_minute || !(tokens > 0)) return;
    const t = this.now();
    const b = this.#touch(id, rl, t);
    b.tok -= tokens;
    this.#finish(b, rl, t);
  }
}
