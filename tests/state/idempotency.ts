// The contract of an IdempotencyStore (src/state/types.ts), for any backend: run it with idempotencyContract(make).
import { afterEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import type { IdempotencyStore, LockResult, StoredResponse } from "../../src/state/types.ts";
import { settlesWithin, TestClock, type Backend, type MakeBackend } from "./harness.ts";

/** The bounds the backend is opened with (idempotency.max_entries, idempotency.max_total_bytes). */
export interface IdempotencyBounds {
  maxEntries: number;
  maxBytes: number;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

function response(body: string, extra: Partial<StoredResponse> = {}): StoredResponse {
  return { fingerprint: "/v1/chat/completions 00ff", status: 200, headers: [["content-type", "application/json"]], stream: false, chunks: [enc.encode(body)], ...extra };
}

function bodyOf(r: StoredResponse): string {
  return r.chunks.map((c) => dec.decode(c, { stream: true })).join("") + dec.decode();
}

export function idempotencyContract(name: string, make: MakeBackend<IdempotencyStore, IdempotencyBounds>): void {
  describe(`IdempotencyStore contract: ${name}`, () => {
    let clock: TestClock;
    let backend: Backend<IdempotencyStore> | undefined;
    const open = async (bounds: IdempotencyBounds = { maxEntries: 100, maxBytes: 1_000_000 }) => {
      clock = new TestClock();
      backend = await make(clock.now, bounds);
      return backend.replica();
    };
    afterEach(async () => {
      await backend?.close?.();
      backend = undefined;
    });

    it("gives back what was put, for `ttlMs`, to every replica", async () => {
      const s = await open();
      assert.equal(await s.get("k"), undefined);
      const stream = response("", {
        status: 201,
        stream: true,
        headers: [["content-type", "text/event-stream"], ["x-latin1", "caf\u00e9"], ["x-empty", ""]],
        chunks: [enc.encode("data: {\"a\":1}\n\n"), enc.encode("data: [DONE]\n\n")],
      });
      await s.put("k", stream, 1000);
      for (const r of [s, backend!.replica()]) {
        const got = (await r.get("k"))!;
        assert.equal(got.fingerprint, stream.fingerprint);
        assert.equal(got.status, 201);
        assert.equal(got.stream, true);
        assert.deepEqual(got.headers, stream.headers);
        assert.equal(bodyOf(got), "data: {\"a\":1}\n\ndata: [DONE]\n\n");
      }
      clock.advance(999);
      assert.ok(await s.get("k"), "still there just before the TTL");
      clock.advance(1);
      assert.equal(await s.get("k"), undefined, "gone at the TTL");
    });

    it("a put replaces the value and its TTL", async () => {
      const s = await open();
      await s.put("k", response("one"), 1000);
      await s.put("k", response("two"), 5000);
      clock.advance(2000);
      assert.equal(bodyOf((await s.get("k"))!), "two");
    });

    it("keeps at most maxEntries, least recently used out first", async () => {
      const s = await open({ maxEntries: 3, maxBytes: 1_000_000 });
      for (const k of ["a", "b", "c"]) await s.put(k, response(k), 60_000);
      await s.get("a"); // used again: "b" is now the least recently used
      await s.put("d", response("d"), 60_000);
      assert.equal(await s.get("b"), undefined);
      for (const k of ["a", "c", "d"]) assert.equal(bodyOf((await s.get(k))!), k);
    });

    it("keeps at most maxBytes, and does not keep a value larger than that", async () => {
      const s = await open({ maxEntries: 100, maxBytes: 10_000 });
      for (let i = 0; i < 10; i++) await s.put(`k${i}`, response("x".repeat(2000)), 60_000);
      let kept = 0;
      for (let i = 0; i < 10; i++) if (await s.get(`k${i}`)) kept++;
      assert.ok(kept >= 1 && kept <= 5, `${kept} values of 2 KB within 10 KB`);
      assert.ok(await s.get("k9"), "the newest stays");
      await s.put("huge", response("x".repeat(20_000)), 60_000);
      assert.equal(await s.get("huge"), undefined);
    });

    it("lock: one holder per key; another request, here or on another replica, learns the holder's fingerprint", async () => {
      const s = await open();
      const first = await s.lock("k", "fp-1", 60_000);
      assert.equal(first.acquired, true);
      for (const r of [s, backend!.replica()]) {
        const second = await r.lock("k", "fp-2", 60_000);
        assert.equal(second.acquired, false);
        assert.equal((second as Extract<LockResult, { acquired: false }>).fingerprint, "fp-1");
      }
      assert.equal((await s.lock("other", "fp-2", 60_000)).acquired, true, "keys are independent");
    });

    it("a waiter is woken when the holder releases, and the key can be taken again", async () => {
      const s = await open();
      const first = await s.lock("k", "fp", 60_000);
      assert.ok(first.acquired);
      const waiting = await backend!.replica().lock("k", "fp", 60_000);
      assert.ok(!waiting.acquired);
      assert.equal(await settlesWithin(waiting.released, 50), false, "not before the release");
      await first.release();
      assert.equal(await settlesWithin(waiting.released, 1000), true, "woken within 1 s of the release");
      const again = await s.lock("k", "fp", 60_000);
      assert.equal(again.acquired, true);
      if (again.acquired) await again.release();
    });

    it("a lock lapses after its TTL; the old holder's late release does not free the new holder's", async () => {
      const s = await open();
      const stuck = await s.lock("k", "fp-1", 1000);
      assert.ok(stuck.acquired);
      clock.advance(999);
      assert.equal((await s.lock("k", "fp-2", 1000)).acquired, false);
      clock.advance(1);
      const next = await backend!.replica().lock("k", "fp-2", 1000);
      assert.equal(next.acquired, true, "lapsed: taken over");
      await stuck.release();
      const third = await s.lock("k", "fp-3", 1000);
      assert.equal(third.acquired, false, "still held by the new holder");
      assert.equal((third as Extract<LockResult, { acquired: false }>).fingerprint, "fp-2");
    });

    it("begin: the stored response if there is one, else the lock, one holder per key on every replica", async () => {
      const s = await open();
      const first = await s.begin("k", "fp-1", 60_000);
      assert.equal(first.stored, undefined);
      assert.ok(first.acquired, "a miss takes the lock");
      for (const r of [s, backend!.replica()]) {
        const second = await r.begin("k", "fp-2", 60_000);
        assert.equal(second.stored, undefined);
        assert.ok(second.acquired === false && second.fingerprint === "fp-1", "held: the holder's fingerprint");
      }
      assert.ok((await s.lock("k", "fp-2", 60_000)).acquired === false, "begin's lock is the key's lock");
      await s.put("other", response("other"), 60_000);
      const hit = await backend!.replica().begin("other", "fp-3", 60_000);
      assert.equal(hit.acquired, undefined);
      assert.equal(bodyOf(hit.stored!), "other");
      assert.equal(hit.stored!.fingerprint, response("").fingerprint);
      assert.ok((await s.lock("other", "fp-3", 60_000)).acquired, "a hit takes no lock");
      clock.advance(60_000);
      assert.ok((await s.begin("other", "fp-3", 60_000)).acquired, "an expired response is a miss");
    });

    it("begin counts as a use of a stored response (least recently used out first)", async () => {
      const s = await open({ maxEntries: 2, maxBytes: 1_000_000 });
      for (const k of ["a", "b"]) await s.put(k, response(k), 60_000);
      assert.ok((await s.begin("a", "fp", 60_000)).stored);
      await s.put("c", response("c"), 60_000);
      assert.equal(await s.get("b"), undefined);
      assert.equal(bodyOf((await s.get("a"))!), "a");
    });

    it("putAndRelease stores the response, frees the key and wakes a waiter, who then finds the response", async () => {
      const s = await open();
      const holder = await s.begin("k", "fp", 60_000);
      assert.ok(holder.acquired);
      const waiting = await backend!.replica().begin("k", "fp", 60_000);
      assert.ok(waiting.acquired === false);
      assert.equal(await settlesWithin(waiting.released, 50), false, "not before the release");
      await holder.putAndRelease(response("done", { status: 201 }), 1000);
      assert.equal(await settlesWithin(waiting.released, 1000), true, "woken within 1 s of the release");
      const after = await backend!.replica().begin("k", "fp", 60_000);
      assert.equal(after.stored?.status, 201);
      assert.equal(bodyOf(after.stored!), "done");
      clock.advance(1000);
      assert.equal(await s.get("k"), undefined, "kept for the given TTL");
      const again = await s.lock("k", "fp", 60_000);
      assert.ok(again.acquired, "the lock went with the put");
      await again.putAndRelease(response("from lock()"), 60_000);
      assert.equal(bodyOf((await s.get("k"))!), "from lock()", "lock()'s holder can end with putAndRelease too");
      assert.ok((await s.lock("k", "fp", 60_000)).acquired);
    });

    it("a lapsed holder's late putAndRelease stores its response but does not free the new holder's lock", async () => {
      const s = await open();
      const stuck = await s.begin("k", "fp-1", 1000);
      assert.ok(stuck.acquired);
      clock.advance(1000);
      const next = await backend!.replica().begin("k", "fp-2", 1000);
      assert.ok(next.acquired, "lapsed: taken over");
      await stuck.putAndRelease(response("late"), 60_000);
      const third = await s.lock("k", "fp-3", 1000);
      assert.ok(third.acquired === false && third.fingerprint === "fp-2", "still held by the new holder");
      assert.equal(bodyOf((await s.get("k"))!), "late");
    });
  });
}
