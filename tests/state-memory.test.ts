// The state contracts (tests/state/) run against the in-memory backend, and against the same backend answering
// every call with a promise a moment later, as a networked backend would: the contracts (and the callers they
// stand for) must not rely on synchronous answers.
import { MemoryBreakerStore } from "../src/state/memory/breakers.ts";
import { MemoryIdempotencyStore } from "../src/state/memory/idempotency.ts";
import { MemoryRateLimitStore } from "../src/state/memory/rate-limit.ts";
import { MemorySpendStore } from "../src/state/memory/spend.ts";
import { breakerContract } from "./state/breakers.ts";
import { idempotencyContract } from "./state/idempotency.ts";
import { rateLimitContract } from "./state/rate-limit.ts";
import { spendContract } from "./state/spend.ts";

/** One in-memory store is the state every "replica" of a process shares. */
const shared = <S>(s: S) => ({ replica: () => s });

/** The store with every method answering through a promise that settles 1 ms later, and deliveries made later too. */
function later<S extends object>(store: S): S {
  return new Proxy(store, {
    get(target, prop) {
      const v = Reflect.get(target, prop, target);
      if (typeof v !== "function") return v;
      if (prop === "subscribe") {
        return (listener: (...a: unknown[]) => void) => v.call(target, (...a: unknown[]) => setTimeout(() => listener(...a), 1));
      }
      return (...args: unknown[]) => {
        const r = v.apply(target, args);
        return new Promise((resolve) => setTimeout(() => resolve(r), 1));
      };
    },
  });
}

const variants: [string, <S extends object>(store: S) => S][] = [["memory", (s) => s], ["memory answering with promises", later]];
for (const [name, wrap] of variants) {
  rateLimitContract(name, (now) => shared(wrap(new MemoryRateLimitStore(now))));
  idempotencyContract(name, (now, b) => shared(wrap(new MemoryIdempotencyStore({ maxEntries: () => b.maxEntries, maxBytes: b.maxBytes, now }))));
  breakerContract(name, (now) => shared(wrap(new MemoryBreakerStore(now))));
  spendContract(name, (now) => shared(wrap(new MemorySpendStore(now))));
}
