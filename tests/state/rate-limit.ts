// The contract of a RateLimitStore (src/state/types.ts), for any backend: run it with rateLimitContract(make).
import { afterEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import type { RateLimits, RateLimitStore } from "../../src/state/types.ts";
import { TestClock, type Backend, type MakeBackend } from "./harness.ts";

export function rateLimitContract(name: string, make: MakeBackend<RateLimitStore>): void {
  describe(`RateLimitStore contract: ${name}`, () => {
    let clock: TestClock;
    let backend: Backend<RateLimitStore> | undefined;
    const open = async () => {
      clock = new TestClock();
      backend = await make(clock.now, undefined);
      return backend.replica();
    };
    afterEach(async () => {
      await backend?.close?.();
      backend = undefined;
    });

    const rl: RateLimits = { requests_per_minute: 60, burst: 3, tokens_per_minute: null };

    it("a new identity has a full bucket: `burst` requests, then a refusal with the wait until the next one", async () => {
      const s = await open();
      const seen = [];
      for (let i = 0; i < 4; i++) seen.push(await s.take("a", rl));
      assert.deepEqual(seen.map((d) => [d.allowed, d.remainingRequests]), [[true, 2], [true, 1], [true, 0], [false, 0]]);
      assert.equal(seen[0].resetRequestsMs, 1000, "one request taken: full again in 1 s at 60/min");
      assert.equal(seen[2].resetRequestsMs, 3000);
      assert.equal(seen[3].reason, "requests");
      assert.equal(seen[3].retryAfterMs, 1000);
      assert.equal(seen[0].retryAfterMs, 0);
      assert.equal(seen[0].reason, undefined);
    });

    it("refills at requests_per_minute, never above burst", async () => {
      const s = await open();
      for (let i = 0; i < 3; i++) await s.take("a", rl);
      clock.advance(1000);
      assert.equal((await s.take("a", rl)).allowed, true);
      assert.equal((await s.take("a", rl)).allowed, false);
      clock.advance(10 * 60_000);
      const d = await s.take("a", rl);
      assert.equal(d.remainingRequests, 2, "idle for long: burst, not more");
    });

    it("identities have buckets of their own", async () => {
      const s = await open();
      for (let i = 0; i < 3; i++) await s.take("a", rl);
      assert.equal((await s.take("a", rl)).allowed, false);
      assert.equal((await s.take("b", rl)).allowed, true);
    });

    it("takes atomically: concurrent requests from several replicas get exactly `burst` permits", async () => {
      const replicas = [await open(), backend!.replica(), backend!.replica()];
      const big = { ...rl, burst: 20 };
      const all = await Promise.all(Array.from({ length: 60 }, (_, i) => replicas[i % 3].take("shared", big)));
      assert.equal(all.filter((d) => d.allowed).length, 20);
    });

    it("model tokens charged after the answer: remaining, reset, then a refusal while in debt", async () => {
      const s = await open();
      const tl = { ...rl, tokens_per_minute: 100 };
      let d = await s.take("a", tl);
      assert.equal(d.remainingTokens, 100);
      assert.equal(d.resetTokensMs, 0);
      await s.charge("a", 60, tl);
      d = await s.take("a", tl);
      assert.equal(d.allowed, true);
      assert.equal(d.remainingTokens, 40);
      assert.equal(d.resetTokensMs, 36_000);
      await s.charge("a", 50, tl); // 10 in debt
      d = await s.take("a", tl);
      assert.equal(d.allowed, false);
      assert.equal(d.reason, "tokens");
      assert.equal(d.remainingTokens, 0);
      assert.equal(d.retryAfterMs, 6600, "(1 + 10) tokens at 100/min");
      clock.advance(6600);
      assert.equal((await s.take("a", tl)).allowed, true);
    });

    it("charges from another replica count against the same bucket", async () => {
      const s = await open();
      const other = backend!.replica();
      const tl = { ...rl, tokens_per_minute: 100 };
      await s.take("a", tl);
      await other.charge("a", 100, tl);
      assert.equal((await s.take("a", tl)).reason, "tokens");
    });

    it("a charge without tokens_per_minute, or of no tokens, changes nothing", async () => {
      const s = await open();
      await s.charge("a", 1000, rl);
      await s.charge("b", 0, { ...rl, tokens_per_minute: 100 });
      assert.equal((await s.take("a", rl)).remainingRequests, 2);
      assert.equal((await s.take("b", { ...rl, tokens_per_minute: 100 })).remainingTokens, 100);
    });

    it("new limits (a config reload) apply to existing buckets", async () => {
      const s = await open();
      await s.take("a", rl);
      const d = await s.take("a", { ...rl, burst: 1 });
      assert.equal(d.allowed, true, "the bucket is capped at the new burst, one request left in it");
      assert.equal(d.remainingRequests, 0);
      assert.equal((await s.take("a", { ...rl, burst: 1 })).allowed, false);
    });
  });
}
