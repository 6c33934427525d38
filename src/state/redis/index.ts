// The `redis` state backend: what replicas share lives in one Redis (or Valkey), under `state.redis.key_prefix`.
// Each store falls back to the replica's local (memory) state while Redis is down (src/state/redis/link.ts).
import type { Config } from "../../config/schema.ts";
import type { Logger } from "../../observability/logger.ts";
import { RedisBreakerStore } from "./breakers.ts";
import { RedisIdempotencyStore } from "./idempotency.ts";
import { RedisLink, type ConnectRedis } from "./link.ts";
import { RedisRateLimitStore } from "./rate-limit.ts";
import { RedisSpendStore } from "./spend.ts";

/** How long the client may take to open a connection. */
const CONNECT_TIMEOUT_MS = 1000;
/** Start-up waits at most this long for Redis to answer (loading the client included) before it logs whether it did. */
export const STARTUP_WAIT_MS = 3000;

export interface RedisStateOptions {
  connect: ConnectRedis;
  /** wall clock in ms: every replica reads the same timestamps, so TTLs and buckets hold across them */
  clock: () => number;
  maxEntries: () => number;
  maxBytes: () => number;
  logger?: Logger;
}

/** The URL's user and password (raw and decoded): they never reach a log, an error or /health. */
export function urlSecrets(url: string): string[] {
  try {
    const u = new URL(url);
    const out = [u.password, u.username].filter((s) => s.length >= 3);
    return [...out, ...out.map((s) => decodeURIComponent(s))].sort((a, b) => b.length - a.length);
  } catch {
    return [];
  }
}

export function createRedisState(settings: Config["state"]["redis"], opts: RedisStateOptions) {
  const conn = opts.connect(settings.url, { connectTimeoutMs: CONNECT_TIMEOUT_MS });
  const prefix = settings.key_prefix;
  const link = new RedisLink(conn, { timeoutMs: settings.command_timeout_ms, logger: opts.logger, secrets: urlSecrets(settings.url), probeKey: `${prefix}probe` });
  const breakers = new RedisBreakerStore(link, prefix, opts.clock);
  return {
    rateLimits: new RedisRateLimitStore(link, prefix, opts.clock),
    idempotency: new RedisIdempotencyStore(link, prefix, { maxEntries: opts.maxEntries, maxBytes: opts.maxBytes, now: opts.clock }),
    breakers,
    spend: new RedisSpendStore(link, prefix, opts.clock),
    status: () => link.status(),
    ready: (ms: number) => link.ready(ms),
    close: () => {
      breakers.close();
      link.close();
    },
  };
}
