// The state contracts (tests/state/) against the redis backend on a real redis-server: each test gets a key
// prefix of its own (a fresh, empty backend), and each replica() is a connection of its own, as another router
// process would hold it.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { connectRedis } from "../src/runtime/redis.ts";
import { createRedisState } from "../src/state/redis/index.ts";
import { breakerContract } from "./state/breakers.ts";
import type { Backend } from "./state/harness.ts";
import { idempotencyContract } from "./state/idempotency.ts";
import { rateLimitContract } from "./state/rate-limit.ts";
import { spendContract } from "./state/spend.ts";
import { redisServerBin, startRedis, type RedisServer } from "./helpers/redis.ts";

type RedisState = ReturnType<typeof createRedisState>;

if (redisServerBin()) {
  describe("redis backend", () => {
    let server: RedisServer;
    before(async () => {
      server = (await startRedis())!;
    });
    after(() => server?.stop());

    let n = 0;
    /** Three handles onto one fresh prefix, connected before the test starts (replica() is synchronous). */
    async function open<S>(now: () => number, pick: (s: RedisState) => S, bounds = { maxEntries: 100, maxBytes: 1_000_000 }): Promise<Backend<S>> {
      const prefix = `contract${++n}:`;
      const handles = Array.from({ length: 3 }, () =>
        createRedisState({ url: server.url, key_prefix: prefix, command_timeout_ms: 1000 }, { connect: connectRedis, clock: now, maxEntries: () => bounds.maxEntries, maxBytes: () => bounds.maxBytes }));
      for (const h of handles) assert.ok(await h.ready(5000), "connected to redis-server");
      let next = 0;
      return {
        replica: () => pick(handles[next++] ?? assert.fail("at most three replicas")),
        close: () => handles.forEach((h) => h.close()),
      };
    }

    rateLimitContract("redis", (now) => open(now, (s) => s.rateLimits));
    idempotencyContract("redis", (now, bounds) => open(now, (s) => s.idempotency, bounds));
    breakerContract("redis", (now) => open(now, (s) => s.breakers));
    spendContract("redis", (now) => open(now, (s) => s.spend));

    it("begin finds a record this replica kept locally while Redis was down, and leaves no lock behind", async () => {
      const h = await open(() => Date.now(), (s) => s.idempotency);
      try {
        const s = h.replica();
        // what put() does while Redis is down
        s.local.put("k", { fingerprint: "f", status: 201, headers: [], stream: false, chunks: [new Uint8Array([1])] }, 60_000);
        const found = await s.begin("k", "f", 60_000);
        assert.equal(found.stored?.status, 201);
        // the release goes on the same connection, before the next command
        assert.ok((await s.lock("k", "g", 60_000)).acquired, "the lock begin took in Redis is released");
      } finally {
        h.close?.();
      }
    });

    it("two key prefixes on one Redis do not see each other", async () => {
      const now = () => Date.now();
      const a = await open(now, (s) => s);
      const b = await open(now, (s) => s);
      try {
        const rl = { requests_per_minute: 60, burst: 1, tokens_per_minute: null };
        assert.equal((await a.replica().rateLimits.take("k", rl)).allowed, true);
        assert.equal((await b.replica().rateLimits.take("k", rl)).allowed, true, "the other prefix has its own bucket");
        await a.replica().idempotency.put("k", { fingerprint: "f", status: 200, headers: [], stream: false, chunks: [new Uint8Array([1])] }, 60_000);
        assert.equal(await b.replica().idempotency.get("k"), undefined);
      } finally {
        a.close?.();
        b.close?.();
      }
    });
  });
}
