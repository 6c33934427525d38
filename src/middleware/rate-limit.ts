// Rate limiting: a token bucket per API key (per client IP when auth is off) for requests, and optionally a
// second bucket for model tokens (input + output), charged once each response's usage is known.
// Answers 429 rate_limit_error with Retry-After, and sets the OpenAI x-ratelimit-* headers on every
// rate-limited path's response. The buckets sit behind RateLimitStore (src/state/types.ts).
import type { Context, MiddlewareHandler } from "hono";
import type { Config } from "../config/schema.ts";
import { errorResponse } from "../errors.ts";
import { isPublicPath } from "./auth.ts";
import type { AppEnv } from "../http/context.ts";
import { detach, isPromise, type RateDecision, type RateLimitStore } from "../state/types.ts";

export type RateLimitConfig = Config["rate_limit"];

const MINUTE = 60_000;

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

function limitHeaders(rl: RateLimitConfig, d: RateDecision): Record<string, string> {
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
 * x-ratelimit-* headers. Reads the request's config snapshot.
 */
export function rateLimit(limiter: RateLimitStore): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const cfg = c.get("router").config;
    const rl = cfg.rate_limit;
    if (!rl.enabled || isPublicPath(c.req.path, cfg.auth)) return next();
    const keyId = c.get("keyId");
    const id = keyId ? `k:${keyId}` : `ip:${clientIp(c, cfg.server.trust_proxy)}`;
    let d = limiter.take(id, rl);
    if (isPromise(d)) d = await d;
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
    if (rl.tokens_per_minute) c.set("onUsage", (u) => detach(() => limiter.charge(id, u.total_tokens, rl)));
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
