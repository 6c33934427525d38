// The contract of a SpendStore (src/state/types.ts), for any backend: run it with spendContract(make).
import { afterEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import type { SpendPeriod, SpendStore } from "../../src/state/types.ts";
import { TestClock, type Backend, type MakeBackend } from "./harness.ts";

export function spendContract(name: string, make: MakeBackend<SpendStore>): void {
  describe(`SpendStore contract: ${name}`, () => {
    let clock: TestClock;
    let backend: Backend<SpendStore> | undefined;
    let month: SpendPeriod;
    const open = async () => {
      clock = new TestClock();
      month = { id: "2030-01", endsAt: Date.UTC(2030, 1, 1) };
      backend = await make(clock.now, undefined);
      return backend.replica();
    };
    afterEach(async () => {
      await backend?.close?.();
      backend = undefined;
    });

    it("reserves within the limit, refuses past it with the figures, and settle replaces a reservation with the cost", async () => {
      const s = await open();
      assert.deepEqual(await s.read("team", month), { spent: 0, reserved: 0 });
      const r1 = await s.reserve("team", month, 4, 10, 60_000);
      const r2 = await s.reserve("team", month, 4, 10, 60_000);
      assert.ok(r1.granted && r2.granted);
      assert.notEqual(r1.id, r2.id);
      assert.deepEqual(await s.read("team", month), { spent: 0, reserved: 8 });
      assert.deepEqual(await s.reserve("team", month, 4, 10, 60_000), { granted: false, spent: 0, reserved: 8 });
      await s.settle("team", month, r1.id, 1.5);
      assert.deepEqual(await s.read("team", month), { spent: 1.5, reserved: 4 });
      await s.settle("team", month, r2.id, 6); // costlier than reserved: the cost counts
      assert.deepEqual(await s.read("team", month), { spent: 7.5, reserved: 0 });
      assert.equal((await s.reserve("team", month, 2.5, 10, 60_000)).granted, true, "exactly up to the limit");
      assert.equal((await s.reserve("team", month, 0.01, 10, 60_000)).granted, false);
    });

    it("reserves atomically: concurrent requests from several replicas never pass the limit together", async () => {
      const replicas = [await open(), backend!.replica(), backend!.replica()];
      const all = await Promise.all(Array.from({ length: 30 }, (_, i) => replicas[i % 3].reserve("team", month, 1, 10, 60_000)));
      assert.equal(all.filter((r) => r.granted).length, 10);
      assert.deepEqual(await replicas[1].read("team", month), { spent: 0, reserved: 10 });
    });

    it("an unsettled reservation lapses after its TTL; settling it later still counts the cost", async () => {
      const s = await open();
      const r = await s.reserve("team", month, 5, 10, 1000);
      assert.ok(r.granted);
      clock.advance(999);
      assert.deepEqual(await s.read("team", month), { spent: 0, reserved: 5 });
      clock.advance(1);
      assert.deepEqual(await s.read("team", month), { spent: 0, reserved: 0 });
      await s.settle("team", month, r.id, 3);
      assert.deepEqual(await s.read("team", month), { spent: 3, reserved: 0 });
    });

    it("keys and periods are counted apart; a period's counters go when it ends", async () => {
      const s = await open();
      const r = await s.reserve("team", month, 5, 10, 60_000);
      assert.ok(r.granted);
      await s.settle("team", month, r.id, 5);
      assert.deepEqual(await s.read("other", month), { spent: 0, reserved: 0 });
      const feb = { id: "2030-02", endsAt: Date.UTC(2030, 2, 1) };
      assert.deepEqual(await s.read("team", feb), { spent: 0, reserved: 0 });
      assert.equal((await s.reserve("team", feb, 10, 10, 60_000)).granted, true);
      clock.t = month.endsAt;
      assert.deepEqual(await s.read("team", month), { spent: 0, reserved: 0 });
    });
  });
}
