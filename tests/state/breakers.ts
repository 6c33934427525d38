// The contract of a BreakerStore (src/state/types.ts), for any backend: run it with breakerContract(make).
import { afterEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import type { BreakerStore } from "../../src/state/types.ts";
import { eventually, TestClock, type Backend, type MakeBackend } from "./harness.ts";

export function breakerContract(name: string, make: MakeBackend<BreakerStore>): void {
  describe(`BreakerStore contract: ${name}`, () => {
    let clock: TestClock;
    let backend: Backend<BreakerStore> | undefined;
    const unsubscribe: (() => void)[] = [];
    let t0 = 0;
    const open = async () => {
      clock = new TestClock();
      t0 = clock.t;
      backend = await make(clock.now, undefined);
      return backend.replica();
    };
    /** Every publication a replica hears, as "provider:until" (until relative to the test's start). */
    const listen = (s: BreakerStore) => {
      const heard: string[] = [];
      unsubscribe.push(s.subscribe((p, until) => heard.push(`${p}:${until && until - t0}`)));
      return heard;
    };
    afterEach(async () => {
      for (const u of unsubscribe.splice(0)) u();
      await backend?.close?.();
      backend = undefined;
    });

    it("an opening published by one replica reaches the others (and itself) within 1 s", async () => {
      const a = await open();
      const b = backend!.replica();
      const heardA = listen(a), heardB = listen(b);
      await a.publish("p", clock.t + 60_000);
      assert.ok(await eventually(() => heardB.length === 1), "B hears of it");
      assert.deepEqual(heardB, ["p:60000"]);
      assert.ok(await eventually(() => heardA.length === 1), "A hears its own");
    });

    it("a manual reset (until 0) reaches every replica", async () => {
      const a = await open();
      const b = backend!.replica();
      const heard = listen(b);
      await a.publish("p", clock.t + 60_000);
      await a.publish("p", 0);
      assert.ok(await eventually(() => heard.length === 2), JSON.stringify(heard));
      assert.deepEqual(heard, ["p:60000", "p:0"]);
    });

    it("a replica that subscribes later learns the openings still in force, not the ended or reset ones", async () => {
      const a = await open();
      await a.publish("open", clock.t + 60_000);
      await a.publish("ended", clock.t + 1000);
      await a.publish("reset", clock.t + 60_000);
      await a.publish("reset", 0);
      clock.advance(1000);
      const heard = listen(backend!.replica());
      assert.ok(await eventually(() => heard.length >= 1));
      await new Promise((r) => setTimeout(r, 20));
      assert.deepEqual(heard, ["open:60000"]);
    });

    it("unsubscribe stops the deliveries", async () => {
      const a = await open();
      const heard: string[] = [];
      const stop = backend!.replica().subscribe((p) => heard.push(p));
      await a.publish("p", clock.t + 1000);
      assert.ok(await eventually(() => heard.length === 1));
      stop();
      await a.publish("q", clock.t + 1000);
      await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(heard, ["p"]);
    });

    it("one probe permit per provider at a time across replicas, until released", async () => {
      const a = await open();
      const b = backend!.replica();
      const permit = await a.acquireProbe("p", 60_000);
      assert.ok(permit);
      assert.equal(await b.acquireProbe("p", 60_000), null);
      assert.equal(await a.acquireProbe("p", 60_000), null, "the same replica asking again does not get a second");
      const other = await b.acquireProbe("q", 60_000);
      assert.ok(other, "providers are independent");
      await permit.release();
      const next = await b.acquireProbe("p", 60_000);
      assert.ok(next);
      await next.release();
      await other.release();
    });

    it("a probe permit lapses after its TTL; the old holder's late release does not free the new one's", async () => {
      const a = await open();
      const b = backend!.replica();
      const stuck = await a.acquireProbe("p", 1000);
      assert.ok(stuck);
      clock.advance(999);
      assert.equal(await b.acquireProbe("p", 1000), null);
      clock.advance(1);
      const taken = await b.acquireProbe("p", 1000);
      assert.ok(taken, "lapsed: another replica may probe");
      await stuck.release();
      assert.equal(await a.acquireProbe("p", 1000), null, "still held by the new holder");
      await taken.release();
    });
  });
}
