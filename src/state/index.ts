// The state backend: built once at start-up from the `state` block (createState, called by src/server.ts) and
// handed to the app (rate limits, idempotency) and to the breaker registry; it outlives every config reload.
import type { Config } from "../config/schema.ts";
import { MemoryBreakerStore } from "./memory/breakers.ts";
import { MemoryIdempotencyStore } from "./memory/idempotency.ts";
import { MemoryRateLimitStore } from "./memory/rate-limit.ts";
import { MemorySpendStore } from "./memory/spend.ts";
import type { BreakerStore, IdempotencyStore, RateLimitStore, SpendStore } from "./types.ts";

export interface StateBackend {
  rateLimits: RateLimitStore;
  idempotency: IdempotencyStore;
  breakers: BreakerStore;
  spend: SpendStore;
}

export interface StateOptions {
  /** the config in force, read when a bound is needed (idempotency.max_entries, max_total_bytes), so a reload applies */
  config: () => Config;
  /** monotonic clock in ms for rate limits and idempotency TTLs (default performance.now) */
  now?: () => number;
  /** wall clock in ms (since the epoch) for breaker openings and spend periods (default Date.now) */
  clock?: () => number;
}

/** The backend the `state` block names. */
export function createState(settings: Config["state"], opts: StateOptions): StateBackend {
  const now = opts.now ?? (() => performance.now());
  const clock = opts.clock ?? Date.now;
  switch (settings.backend) {
    case "memory":
      return {
        rateLimits: new MemoryRateLimitStore(now),
        idempotency: new MemoryIdempotencyStore({
          maxEntries: () => opts.config().idempotency.max_entries,
          maxBytes: () => opts.config().idempotency.max_total_bytes,
          now,
        }),
        breakers: new MemoryBreakerStore(clock),
        spend: new MemorySpendStore(clock),
      };
  }
}
