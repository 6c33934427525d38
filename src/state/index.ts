// The state backend: built once at start-up from the `state` block (createState, called by src/server.ts) and
// handed to the app (rate limits, idempotency) and to the breaker registry; it outlives every config reload.
import type { Config } from "../config/schema.ts";
import type { Logger } from "../observability/logger.ts";
import { MemoryBreakerStore } from "./memory/breakers.ts";
import { MemoryIdempotencyStore } from "./memory/idempotency.ts";
import { MemoryRateLimitStore } from "./memory/rate-limit.ts";
import { MemorySpendStore } from "./memory/spend.ts";
import { createRedisState } from "./redis/index.ts";
import type { ConnectRedis, StateStatus } from "./redis/link.ts";
import type { BreakerStore, IdempotencyStore, RateLimitStore, SpendStore } from "./types.ts";

export interface StateBackend {
  rateLimits: RateLimitStore;
  idempotency: IdempotencyStore;
  breakers: BreakerStore;
  spend: SpendStore;
  /** the `state` block of /health and /stats */
  status(): StateStatus;
  /** whether the backend answered within `ms` (start-up logs it) */
  ready(ms: number): Promise<boolean>;
  /** stops the backend's timers and connections */
  close(): void;
}

export type { StateStatus };

export interface StateOptions {
  /** the config in force, read when a bound is needed (idempotency.max_entries, max_total_bytes), so a reload applies */
  config: () => Config;
  /** monotonic clock in ms for rate limits and idempotency TTLs (default performance.now) */
  now?: () => number;
  /** wall clock in ms (since the epoch) for breaker openings and spend periods (default Date.now) */
  clock?: () => number;
  /** opens a Redis connection (Platform.connectRedis), for the redis backend */
  connectRedis?: ConnectRedis;
  /** where the backend logs its transitions (Redis lost, Redis back) */
  logger?: Logger;
}

/** The backend the `state` block names. */
export function createState(settings: { backend: Config["state"]["backend"]; redis?: Config["state"]["redis"] }, opts: StateOptions): StateBackend {
  const now = opts.now ?? (() => performance.now());
  const clock = opts.clock ?? Date.now;
  switch (settings.backend) {
    case "memory": {
      const status: StateStatus = { backend: "memory", connected: true, since: new Date(clock()).toISOString(), last_error: null };
      return {
        rateLimits: new MemoryRateLimitStore(now),
        idempotency: new MemoryIdempotencyStore({
          maxEntries: () => opts.config().idempotency.max_entries,
          maxBytes: () => opts.config().idempotency.max_total_bytes,
          now,
        }),
        breakers: new MemoryBreakerStore(clock),
        spend: new MemorySpendStore(clock),
        status: () => status,
        ready: () => Promise.resolve(true),
        close() {},
      };
    }
    case "redis": {
      if (!opts.connectRedis || !settings.redis) throw new Error("state.backend redis: no Redis client or settings");
      // wall-clock time: the replicas compare each other's timestamps (monotonic clocks are per process)
      return createRedisState(settings.redis, {
        connect: opts.connectRedis,
        clock,
        maxEntries: () => opts.config().idempotency.max_entries,
        maxBytes: () => opts.config().idempotency.max_total_bytes,
        logger: opts.logger,
      });
    }
  }
}
