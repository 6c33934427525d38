// The state contracts (tests/state/) run against the in-memory backend, and against the same backend answering
// every call with a promise a moment later, as a networked backend would: the contracts (and the callers they
// stand for) must not rely on synchronous answers.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { MemoryBreakerStore } from "../src/state/memory/breakers.ts";
import { MemoryIdempotencyStore } from "../src/state/memory/idempotency.ts";
import { MemoryRateLimitStore } from "../src/state/memory/rate-limit.ts";
import { MemorySpendStore } from "../src/state/memory/spend.ts";
import { breakerContract } from "./state/breakers.ts";
import { idempotencyContract } from "./state/idempotency.ts";
import { rateLimitContract } from "./state/rate-limit.ts";
import { answeringLater } from "./state/harness.ts";
import { spendContract } from "./state/spend.ts";

/** One in-memory store is the state every "replica" of a process shares. */
const shared = <S>(s: S) => ({ replica: () => s });

const variants: [string, <S extends object>(store: S) => S][] = [["memory", (s) => s], ["memory answering with promises", answeringLater]];
for (const [name, wrap] of variants) {
  rateLimitContract(name, (now) => shared(wrap(new MemoryRateLimitStore(now))));
  idempotencyContract(name, (now, b) => shared(wrap(new MemoryIdempotencyStore({ maxEntries: () => b.maxEntries, maxBytes: b.maxBytes, now }))));
  breakerContract(name, (now) => shared(wrap(new MemoryBreakerStore(now))));
  spendContract(name, (now) => shared(wrap(new MemorySpendStore(now))));
}

describe("memory backend bounds", () => {
  it("spend counters: ended periods go, and past maxCounters the oldest", () => {
    let t = 0;
    const s = new MemorySpendStore(() => t, 1000);
    for (let i = 0; i < 5000; i++) s.reserve(`k${i}`, { id: "p", endsAt: 1_000_000 }, 1, 10, 60_000);
    assert.equal(s.size, 1000);
    assert.deepEqual(s.read("k4999", { id: "p", endsAt: 1_000_000 }), { spent: 0, reserved: 1 }, "the newest stay");
    t = 1_000_000;
    s.reserve("fresh", { id: "q", endsAt: 2_000_000 }, 1, 10, 60_000);
    assert.equal(s.size, 1, "the ended period's counters went");
    assert.deepEqual(s.read("k4999", { id: "p", endsAt: 1_000_000 }), { spent: 0, reserved: 0 });
  });
});
