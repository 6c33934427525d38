// The rate-limit buckets on Redis: the same token buckets as the memory backend (src/state/memory/rate-limit.ts),
// updated by one Lua script per request, so concurrent requests on every replica draw from one bucket. While
// Redis is down the replica's own buckets decide.
import { MemoryRateLimitStore } from "../memory/rate-limit.ts";
import type { RateDecision, RateLimits, RateLimitStore } from "../types.ts";
import { FAILED, Script, type RedisLink } from "./link.ts";

const MINUTE = 60_000;

/**
 * KEYS[1] the bucket (hash r: request tokens, t: model tokens, a: when); ARGV: now, requests_per_minute, burst,
 * tokens_per_minute (0: none), "take" or "charge", tokens to charge. Answers the refusal reason ("" when allowed)
 * and the buckets' levels, as exact decimal strings (Lua numbers would come back cut to integers).
 */
const BUCKET = new Script(`
local now, rpm, burst, tpm = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local b = redis.call('HMGET', KEYS[1], 'r', 't', 'a')
local req, tok, at = tonumber(b[1]), tonumber(b[2]), tonumber(b[3])
if req == nil then
  req, tok, at = burst, tpm, now
else
  local dt = now - at
  if dt > 0 then
    req = req + dt * rpm / 60000
    if tpm > 0 then tok = tok + dt * tpm / 60000 end
    at = now
  end
  if req > burst then req = burst end
  if tpm > 0 and tok > tpm then tok = tpm end
end
local reason = ''
if ARGV[5] == 'take' then
  if req < 1 then reason = 'requests'
  elseif tpm > 0 and tok <= 0 then reason = 'tokens'
  else req = req - 1 end
else
  tok = tok - tonumber(ARGV[6])
end
local full = (burst - req) * 60000 / rpm
if tpm > 0 then full = math.max(full, (tpm - tok) * 60000 / tpm) end
local r, t = string.format('%.17g', req), string.format('%.17g', tok)
redis.call('HSET', KEYS[1], 'r', r, 't', t, 'a', string.format('%.17g', at))
-- a bucket that has refilled is the same as none
redis.call('PEXPIRE', KEYS[1], math.ceil(full) + 1000)
return {reason, r, t}
`);

export class RedisRateLimitStore implements RateLimitStore {
  readonly local: MemoryRateLimitStore;

  constructor(readonly link: RedisLink, readonly prefix: string, readonly now: () => number) {
    this.local = new MemoryRateLimitStore(now);
  }

  #run(id: string, rl: RateLimits, op: "take" | "charge", tokens: number) {
    const args = [String(this.now()), String(rl.requests_per_minute), String(rl.burst), String(rl.tokens_per_minute ?? 0), op, String(tokens)];
    return this.link.eval<Uint8Array[]>(BUCKET, [`${this.prefix}rl:${id}`], args);
  }

  take(id: string, rl: RateLimits): RateDecision | Promise<RateDecision> {
    if (!this.link.up) return this.local.take(id, rl);
    return this.#run(id, rl, "take", 0).then((r) => (r === FAILED ? this.local.take(id, rl) : decision(r, rl)));
  }

  charge(id: string, tokens: number, rl: RateLimits): void | Promise<void> {
    if (!rl.tokens_per_minute || !(tokens > 0)) return;
    if (!this.link.up) return this.local.charge(id, tokens, rl);
    return this.#run(id, rl, "charge", tokens).then((r) => {
      if (r === FAILED) this.local.charge(id, tokens, rl);
    });
  }
}

const decoder = new TextDecoder();

/** The figures of a decision from the script's answer, computed as the memory backend computes them. */
function decision(reply: Uint8Array[], rl: RateLimits): RateDecision {
  const reason = decoder.decode(reply[0]) as "" | "requests" | "tokens";
  const req = Number(decoder.decode(reply[1]));
  const tok = Number(decoder.decode(reply[2]));
  const rpm = rl.requests_per_minute, tpm = rl.tokens_per_minute;
  const retryAfterMs = reason === "requests" ? ((1 - req) * MINUTE) / rpm : reason === "tokens" && tpm ? ((1 - tok) * MINUTE) / tpm : 0;
  return {
    allowed: reason === "",
    reason: reason || undefined,
    retryAfterMs,
    remainingRequests: Math.floor(req),
    resetRequestsMs: ((rl.burst - req) * MINUTE) / rpm,
    remainingTokens: tpm ? Math.max(0, Math.floor(tok)) : 0,
    resetTokensMs: tpm ? ((tpm - tok) * MINUTE) / tpm : 0,
  };
}
