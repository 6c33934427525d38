// Rate limiting: a token bucket per API key (per client IP when auth is off) for requests, and optionally a
// second bucket for model tokens (input + output), charged once each response's usage is known.
// Answers 429 rate_limit_error with Retry-After, and sets the OpenAI x-ratelimit-* headers on every
// rate-limited path's response.
import type { Context, MiddlewareHandler } from "hono";
import type { Config } from "../config/schema.ts";
import { errorResponse } from "../errors.ts";
import { isPublicPath } from "./auth.ts";
import type { AppEnv } from "./env.ts";

export type RateLimitConfig = Config["rate_limit"];

interface Bucket {
  /** request tokens at `at` (0..burst) */
  req: number;
  /** model-token budget at `at` (negative = in debt after a large response) */
  tok: number;
  at: number;
  /** from this time on both buckets are full again: the entry carries no state and may be forgotten */
  idleUntil: number;
}

export interface Decision {
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

const MINUTE = 60_000;
/** most idle buckets dropped per call, so no single request pays for a large sweep */
const SWEEP_PER_CALL = 16;

/**
 * Token buckets keyed by client id. The map is kept in least-recently-used order; buckets that have
 * refilled completely are dropped (a full bucket is the same as no bucket), and past `maxKeys` the least
 * recently used bucket is evicted, so memory stays bounded whatever the number of distinct clients.
 */
export class RateLimiter {
  readonly #buckets = new Map<string, Bucket>();

  constructor(readonly now: () => number, readonly maxKeys = 100_000) {}

  get size(): number {
    return this.#buckets.size;
  }

  #touch(id: string, rl: RateLimitConfig, t: number): Bucket {
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

  #finish(b: Bucket, rl: RateLimitConfig, t: number): void {
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
  take(id: string, rl: RateLimitConfig): Decision {
    const t = this.now();
    const b = this.#touch(id, rl, t);
    const tpm = rl.tokens_per_minute;
    let reason: Decision["reason"];
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
  charge(id: string, tokens: number, rl: RateLimitConfig): void {
    if (!rl.tokens_per_minute || !(tokens > 0)) return;
    const t = this.now();
    const b = this.#touch(id, rl, t);
    b.tok -= tokens;
    this.#finish(b, rl, t);
  }
}

/** Formats a duration the way OpenAI's x-ratelimit-reset-* headers do: "120ms", "1s", "6m0s", "1m2.5s". */
export function formatDuration(ms: number): string {
  const total = Math.ceil(ms);
  if (total <= 0) return "0s";
  if (total < 1000) return `${total}ms`;
  const m = Math.floor(total / MINUTE);
  const s = (total - m * MINUTE) / 1000;
  return m ? `${m}m${s}s` : `${s}s`;
}

/** The client's address: the socket's, or with server.trust_proxy the last X-Forwarded-For hop (the one our proxy added). */
export function clientIp(c: Context<AppEnv>, trustProxy: boolean): string {
  if (trustProxy) {
    const xff = c.req.raw.headers.get("x-forwarded-for");
    if (xff) {
      const last = xff.slice(xff.lastIndexOf(",") + 1).trim();
      if (last) return last.slice(0, 64); // bounded: the header is client-controlled
    }
  }
  return c.env?.remoteAddr ?? "unknown";
}

function limitHeaders(rl: RateLimitConfig, d: Decision): Record<string, string> {
  const h: Record<string, string> = {
    "x-ratelimit-limit-requests": String(rl.requests_per_minute),
    "x-ratelimit-remaining-requests": String(d.remainingRequests),
    "x-ratelimit-reset-requests": formatDuration(d.resetRequestsMs),
  };
  if (rl.tokens_per_minute) {
    h["x-ratelimit-limit-tokens"] = String(rl.tokens_per_minute);
    h["x-ratelimit-remaining-tokens"] = String(d.remainingTokens);
    h["x-ratelimit-reset-tokens"] = formatDuration(d.resetTokensMs);
  }
  return h;
}

/**
 * The rate-limit middleware (after auth, so the key is known). Public paths (auth.public_paths) are not
 * limited. Refused requests get 429 rate_limit_error with Retry-After; every limited response gets the
 * x-ratelimit-* headers.
 */
export function rateLimit(config: () => Config, limiter: RateLimiter): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const cfg = config();
    const rl = cfg.rate_limit;
    if (!rl.enabled || isPublicPath(c.req.path, cfg.auth)) return next();
    const keyId = c.get("keyId");
    const id = keyId ? `k:${keyId}` : `ip:${clientIp(c, cfg.server.trust_proxy)}`;
    const d = limiter.take(id, rl);
    const headers = limitHeaders(rl, d);
    if (!d.allowed) {
      const secs = Math.max(1, Math.ceil(d.retryAfterMs / 1000));
      const what = d.reason === "tokens" ? `tokens per minute (${rl.tokens_per_minute})` : `requests per minute (${rl.requests_per_minute}, burst ${rl.burst})`;
      headers["retry-after"] = String(secs);
      headers["retry-after-ms"] = String(Math.ceil(d.retryAfterMs));
      return errorResponse(429, {
        message: `rate limit reached for ${what}; try again in ${secs}s`,
        type: "rate_limit_error",
        code: d.reason === "tokens" ? "tokens_rate_limit_exceeded" : "rate_limit_exceeded",
      }, headers);
    }
    if (rl.tokens_per_minute) c.set("onUsage", (u) => limiter.charge(id, u.total_tokens, rl));
    await next();
    try {
      for (const k in headers) c.res.headers.set(k, headers[k]);
    } catch {
      // immutable headers (a fetched Response): copy it
      const res = new Response(c.res.body, c.res);
      for (const k in headers) res.headers.set(k, headers[k]);
      c.res = res;
    }
  };
}
