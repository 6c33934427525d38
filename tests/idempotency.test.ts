import { after, before, beforeEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { MemoryIdempotencyStore } from "../src/state/memory/idempotency.ts";
import type { IdempotencyStore, StoredResponse } from "../src/state/types.ts";
import { startOpenAIFake } from "./fakes/openai.ts";
import type { FakeServer } from "./fakes/common.ts";
import { postJson, readSse, startRouter, type RunningRouter } from "./helpers/router.ts";

const chat = (content = "hi", extra: Record<string, unknown> = {}) => ({ model: "m", messages: [{ role: "user", content }], ...extra });
const KEY_A = "rk-idem-a-00000000000000001";
const KEY_B = "rk-idem-b-00000000000000002";

let seq = 0;
const newKey = () => `idem-${Date.now()}-${++seq}`;

async function call(url: string, body: unknown, headers: Record<string, string> = {}, path = "/v1/chat/completions") {
  const res = await postJson(url + path, body, headers);
  return { status: res.status, headers: res.headers, text: await res.text() };
}

describe("idempotency", () => {
  let fake: FakeServer, r: RunningRouter;
  const clk = { t: 0 };
  before(async () => {
    fake = await startOpenAIFake({ reply: "the one and only answer", chunks: 5 });
    r = await startRouter(`
providers: [{ name: a, type: openai, endpoint: ${fake.url}/v1, default_model: m }]
auth: { enabled: true, api_keys: [${KEY_A}, { key: ${KEY_B}, name: b }] }
idempotency: { ttl_seconds: 60, max_entries: 50 }
`, {}, { appNow: () => clk.t });
  });
  after(async () => {
    await r.stop();
    await fake.stop();
  });
  beforeEach(() => fake.reset());
  const A = (k: string) => ({ authorization: `Bearer ${KEY_A}`, "idempotency-key": k });
  const B = (k: string) => ({ authorization: `Bearer ${KEY_B}`, "idempotency-key": k });

  it("replays a repeated request from the store without calling the provider", async () => {
    const k = newKey();
    const first = await call(r.url, chat(), { ...A(k), "x-request-id": "first" });
    assert.equal(first.status, 200);
    assert.equal(first.headers.get("idempotent-replayed"), null);
    const second = await call(r.url, chat(), { ...A(k), "x-request-id": "second" });
    assert.equal(second.status, 200);
    assert.equal(second.headers.get("idempotent-replayed"), "true");
    assert.equal(second.text, first.text);
    assert.equal(JSON.parse(second.text).choices[0].message.content, "the one and only answer");
    assert.equal(second.headers.get("content-type"), "application/json");
    assert.equal(second.headers.get("x-router-provider"), "a");
    assert.equal(second.headers.get("x-request-id"), "second", "the replay carries its own request id");
    assert.equal(fake.requests.length, 1);
  });

  it("replays a streamed original as a stream with the same events (chat and completions)", async () => {
    for (const [path, body, text] of [
      ["/v1/chat/completions", chat("stream me", { stream: true }), (e: any) => e.choices[0]?.delta?.content ?? ""],
      ["/v1/completions", { model: "m", prompt: "stream me", stream: true }, (e: any) => e.choices[0]?.text ?? ""],
    ] as const) {
      fake.reset();
      const k = newKey();
      const first = await postJson(r.url + path, body, A(k));
      const firstEvents = await readSse(first);
      assert.equal(firstEvents.at(-1), "[DONE]");
      const second = await postJson(r.url + path, body, A(k));
      assert.equal(second.status, 200);
      assert.equal(second.headers.get("idempotent-replayed"), "true", path);
      assert.match(second.headers.get("content-type") ?? "", /^text\/event-stream/);
      const secondEvents = await readSse(second);
      assert.deepEqual(secondEvents, firstEvents);
      assert.equal(secondEvents.slice(0, -1).map(text).join(""), "the one and only answer");
      assert.equal(fake.requests.length, 1, path);
    }
  });

  it("answers 422 idempotency_key_reused for the same key with another body or endpoint", async () => {
    const k = newKey();
    assert.equal((await call(r.url, chat("one"), A(k))).status, 200);
    const other = await call(r.url, chat("two"), A(k));
    assert.equal(other.status, 422);
    const err = JSON.parse(other.text).error;
    assert.equal(err.code, "idempotency_key_reused");
    assert.equal(err.type, "invalid_request_error");
    const otherPath = await call(r.url, { model: "m", prompt: "one" }, A(k), "/v1/completions");
    assert.equal(otherPath.status, 422);
    assert.equal(fake.requests.length, 1);
    // the original is still replayable
    assert.equal((await call(r.url, chat("one"), A(k))).headers.get("idempotent-replayed"), "true");
  });

  it("makes concurrent duplicates wait for the first and replay it: one upstream call", async () => {
    fake.fault = { delayMs: 300, times: 1 };
    const k = newKey();
    const results = await Promise.all(Array.from({ length: 5 }, () => call(r.url, chat("together"), A(k))));
    assert.equal(fake.requests.length, 1);
    for (const res of results) {
      assert.equal(res.status, 200);
      assert.equal(res.text, results[0].text);
    }
    assert.equal(results.filter((x) => x.headers.get("idempotent-replayed") === "true").length, 4);
  });

  it("answers 422 at once for a different body while the first is in flight", async () => {
    fake.fault = { delayMs: 1000, times: 1 };
    const k = newKey();
    const first = call(r.url, chat("slow"), A(k));
    await new Promise((res) => setTimeout(res, 100));
    const t0 = Date.now();
    const clash = await call(r.url, chat("different"), A(k));
    assert.equal(clash.status, 422);
    assert.ok(Date.now() - t0 < 800, "did not wait for the first");
    assert.equal((await first).status, 200);
  });

  it("does not store failures (5xx), so a retry with the same key reaches the provider", async () => {
    fake.fault = { status: 500, times: 1 };
    const k = newKey();
    const failed = await call(r.url, chat("flaky"), A(k));
    assert.equal(failed.status, 502);
    const retried = await call(r.url, chat("flaky"), A(k));
    assert.equal(retried.status, 200);
    assert.equal(retried.headers.get("idempotent-replayed"), null);
    assert.equal(fake.requests.length, 2);
    const again = await call(r.url, chat("flaky"), A(k));
    assert.equal(again.headers.get("idempotent-replayed"), "true");
    assert.equal(fake.requests.length, 2);
  });

  it("does not store a stream that broke mid-way", async () => {
    fake.fault = { cutAfter: 3, times: 1 };
    const k = newKey();
    const body = chat("break", { stream: true });
    const broken = await readSse(await postJson(`${r.url}/v1/chat/completions`, body, A(k)));
    assert.notEqual(broken.at(-1), "[DONE]");
    const retry = await postJson(`${r.url}/v1/chat/completions`, body, A(k));
    assert.equal(retry.headers.get("idempotent-replayed"), null);
    assert.equal((await readSse(retry)).at(-1), "[DONE]");
    assert.equal(fake.requests.length, 2);
  });

  it("stores a stream that ended before the router answered (no content chunk: the read-ahead reached [DONE])", async () => {
    // an empty completion: the router reads ahead for the first content chunk, meets [DONE] instead, and the stream
    // is complete before the response leaves the handler; its transcript must still be stored
    const sse = [
      { choices: [{ index: 0, delta: { role: "assistant", content: "" }, finish_reason: null }] },
      { choices: [], usage: { prompt_tokens: 3, completion_tokens: 0, total_tokens: 3 } },
    ].map((c) => `data: ${JSON.stringify({ id: "c1", object: "chat.completion.chunk", created: 1, model: "m", ...c })}\n\n`).join("") + "data: [DONE]\n\n";
    let calls = 0;
    const up = http.createServer((req, res) => {
      req.resume();
      req.on("end", () => {
        calls++;
        res.writeHead(200, { "content-type": "text/event-stream", "content-length": Buffer.byteLength(sse) });
        res.end(sse);
      });
    });
    await new Promise<void>((res) => up.listen(0, "127.0.0.1", res));
    const r = await startRouter(`providers: [{ name: a, type: openai_compatible, endpoint: "http://127.0.0.1:${(up.address() as AddressInfo).port}/v1", default_model: m }]\n`);
    try {
      const body = chat("empty", { stream: true, stream_options: { include_usage: true } });
      const send = async () => {
        const res = await fetch(`${r.url}/v1/chat/completions`, {
          method: "POST", headers: { "content-type": "application/json", "idempotency-key": "empty-stream" }, body: JSON.stringify(body), signal: AbortSignal.timeout(5000),
        });
        return { replayed: res.headers.get("idempotent-replayed"), events: await readSse(res) };
      };
      const first = await send();
      assert.equal(first.replayed, null);
      assert.equal(first.events.at(-1), "[DONE]");
      assert.equal(first.events.length, 3);
      assert.equal(first.events[1].usage.prompt_tokens, 3);
      const second = await send();
      assert.equal(second.replayed, "true");
      assert.deepEqual(second.events, first.events);
      assert.equal(calls, 1);
    } finally {
      await r.stop();
      await new Promise((res) => up.close(res));
    }
  });

  it("does not store a stream the client abandoned, and frees its key for the retry", async () => {
    fake.fault = { chunkDelayMs: 150, times: 1 };
    const k = newKey();
    const body = chat("abandon", { stream: true });
    const ac = new AbortController();
    const res = await fetch(`${r.url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json", ...A(k) }, body: JSON.stringify(body), signal: ac.signal });
    const reader = res.body!.getReader();
    assert.equal((await reader.read()).done, false);
    ac.abort();
    await reader.cancel().catch(() => {});
    await new Promise((r) => setTimeout(r, 100));
    // the retry runs (it would wait for ever on a key the abandoned stream still held)
    const retry = await fetch(`${r.url}/v1/chat/completions`, {
      method: "POST", headers: { "content-type": "application/json", ...A(k) }, body: JSON.stringify(body), signal: AbortSignal.timeout(5000),
    });
    assert.equal(retry.headers.get("idempotent-replayed"), null);
    const events = await readSse(retry);
    assert.equal(events.at(-1), "[DONE]");
    assert.equal(events.slice(0, -1).map((e) => e.choices[0]?.delta?.content ?? "").join(""), "the one and only answer");
    assert.equal(fake.requests.length, 2);
  });

  it("scopes keys per API key: another client never gets the stored response", async () => {
    const k = newKey();
    const a = await call(r.url, chat("mine"), A(k));
    assert.equal(a.status, 200);
    const b = await call(r.url, chat("mine"), B(k));
    assert.equal(b.status, 200);
    assert.equal(b.headers.get("idempotent-replayed"), null, "same key and body from another client: served afresh");
    const k2 = newKey();
    assert.equal((await call(r.url, chat("alpha"), A(k2))).status, 200);
    const clash = await call(r.url, chat("beta"), B(k2));
    assert.equal(clash.status, 200, "another client's key use is no reuse of mine");
    assert.equal(fake.requests.length, 4);
    assert.equal((await call(r.url, chat("mine"), A(k))).headers.get("idempotent-replayed"), "true");
    assert.equal((await call(r.url, chat("beta"), B(k2))).headers.get("idempotent-replayed"), "true");
    assert.equal(fake.requests.length, 4);
  });

  it("forgets entries after ttl_seconds (injected clock)", async () => {
    const k = newKey();
    await call(r.url, chat("ttl"), A(k));
    clk.t += 59_000;
    assert.equal((await call(r.url, chat("ttl"), A(k))).headers.get("idempotent-replayed"), "true");
    clk.t += 2_000;
    const expired = await call(r.url, chat("ttl"), A(k));
    assert.equal(expired.headers.get("idempotent-replayed"), null);
    assert.equal(fake.requests.length, 2);
  });

  it("ignores requests without the header and rejects malformed keys", async () => {
    await call(r.url, chat("plain"), { authorization: `Bearer ${KEY_A}` });
    const again = await call(r.url, chat("plain"), { authorization: `Bearer ${KEY_A}` });
    assert.equal(again.headers.get("idempotent-replayed"), null);
    assert.equal(fake.requests.length, 2);
    for (const bad of ["x".repeat(256), "tab\there", "é-key"]) {
      const res = await fetch(`${r.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${KEY_A}`, "idempotency-key": bad },
        body: JSON.stringify(chat()),
      }).catch(() => null);
      if (!res) continue; // the client library refused to send the header: nothing to check
      assert.equal(res.status, 400, JSON.stringify(bad));
      assert.equal((await res.json()).error.code, "invalid_idempotency_key");
    }
    assert.equal(fake.requests.length, 2);
  });

  it("stores an upstream 4xx answer (deterministic) but never a validation failure", async () => {
    const k = newKey();
    const invalid = await call(r.url, { model: "m" }, A(k));
    assert.equal(invalid.status, 400);
    assert.equal((await call(r.url, chat("valid now"), A(k))).status, 200, "the key was not burnt by the invalid request");
    fake.fault = { status: 400, times: 1, body: { error: { message: "nope", type: "invalid_request_error" } } };
    const k2 = newKey();
    assert.equal((await call(r.url, chat("rejected"), A(k2))).status, 400);
    const replay = await call(r.url, chat("rejected"), A(k2));
    assert.equal(replay.status, 400);
    assert.equal(replay.headers.get("idempotent-replayed"), "true");
    assert.equal(fake.requests.length, 2);
  });
});

describe("idempotency store bounds and backends", () => {
  let fake: FakeServer;
  before(async () => {
    fake = await startOpenAIFake();
  });
  after(() => fake.stop());
  beforeEach(() => fake.reset());

  it("evicts the least recently used entry past max_entries", async () => {
    const r = await startRouter(`
providers: [{ name: a, type: openai, endpoint: ${fake.url}/v1, default_model: m }]
idempotency: { max_entries: 2 }
`);
    try {
      const send = async (k: string) => (await call(r.url, chat(k), { "idempotency-key": k })).headers.get("idempotent-replayed");
      await send("k1");
      await send("k2");
      assert.equal(await send("k1"), "true"); // k1 is now the most recent
      await send("k3"); // evicts k2
      assert.equal(await send("k1"), "true");
      assert.equal(await send("k3"), "true");
      assert.equal(await send("k2"), null);
      assert.equal(fake.requests.length, 4);
    } finally {
      await r.stop();
    }
  });

  it("serves a response over max_response_bytes in full but does not store it (JSON and stream)", async () => {
    const reply = "long answer ".repeat(150); // ~1,800 bytes of content: over the limit below
    const big = await startOpenAIFake({ reply, chunks: 6 });
    const yaml = (extra: string) => `
providers: [{ name: a, type: openai, endpoint: ${big.url}/v1, default_model: m }]
idempotency: { ttl_seconds: 60${extra} }
`;
    const limited = await startRouter(yaml(", max_response_bytes: 1000"));
    const unlimited = await startRouter(yaml(""));
    try {
      for (const stream of [false, true]) {
        const body = chat(`big ${stream}`, stream ? { stream: true } : {});
        const content = async (res: Response) => {
          if (!stream) return (await res.json()).choices[0].message.content;
          const events = await readSse(res);
          assert.equal(events.at(-1), "[DONE]");
          return events.slice(0, -1).map((e) => e.choices[0]?.delta?.content ?? "").join("");
        };
        // over the limit: served in full both times, the provider called both times
        big.reset();
        const k = newKey();
        for (let i = 0; i < 2; i++) {
          const res = await postJson(`${limited.url}/v1/chat/completions`, body, { "idempotency-key": k });
          assert.equal(res.status, 200);
          assert.equal(res.headers.get("idempotent-replayed"), null, `stream=${stream} attempt ${i}: not stored, so not replayed`);
          assert.equal(await content(res), reply);
        }
        assert.equal(big.requests.length, 2);
        // the same exchange without the limit is stored and replayed: the limit is what kept it out
        big.reset();
        const k2 = newKey();
        await content(await postJson(`${unlimited.url}/v1/chat/completions`, body, { "idempotency-key": k2 }));
        const again = await postJson(`${unlimited.url}/v1/chat/completions`, body, { "idempotency-key": k2 });
        assert.equal(again.headers.get("idempotent-replayed"), "true");
        assert.equal(await content(again), reply);
        assert.equal(big.requests.length, 1);
      }
    } finally {
      await limited.stop();
      await unlimited.stop();
      await big.stop();
    }
  });

  it("evicts the least recently used entries past max_total_bytes", async () => {
    // each stored response is ~1 KB (a 400-character reply plus headers and fingerprint): one fits in 1,500 bytes, two do not
    const mid = await startOpenAIFake({ reply: "y".repeat(400) });
    const r = await startRouter(`
providers: [{ name: a, type: openai, endpoint: ${mid.url}/v1, default_model: m }]
idempotency: { max_entries: 100, max_total_bytes: 1500 }
`);
    try {
      const send = async (k: string) => (await call(r.url, chat(k), { "idempotency-key": k })).headers.get("idempotent-replayed");
      assert.equal(await send("b1"), null);
      assert.equal(await send("b1"), "true", "one entry fits");
      assert.equal(await send("b2"), null); // evicts b1 to stay within the bytes
      assert.equal(await send("b2"), "true");
      assert.equal(await send("b1"), null, "b1 was evicted");
      assert.equal(mid.requests.length, 3);
    } finally {
      await r.stop();
      await mid.stop();
    }
  });

  it("does nothing when idempotency.enabled is false", async () => {
    const r = await startRouter(`
providers: [{ name: a, type: openai, endpoint: ${fake.url}/v1, default_model: m }]
idempotency: { enabled: false }
`);
    try {
      for (let i = 0; i < 2; i++) {
        const res = await call(r.url, chat(), { "idempotency-key": "same" });
        assert.equal(res.headers.get("idempotent-replayed"), null);
      }
      assert.equal(fake.requests.length, 2);
    } finally {
      await r.stop();
    }
  });

  it("works with another backend behind the IdempotencyStore interface", async () => {
    const calls: string[] = [];
    const inner = new MemoryIdempotencyStore({ maxEntries: () => 10 });
    // answers with promises, as a networked backend would (the in-memory store answers synchronously)
    const later = <T>(v: T) => new Promise<T>((res) => setTimeout(() => res(v), 1));
    const store: IdempotencyStore = {
      get: (k) => (calls.push("get"), later(inner.get(k))),
      put: (k, v, ttl) => (calls.push(`put:${v.status}:${ttl}`), later(inner.put(k, v, ttl))),
      lock: (k, f) => (calls.push("lock"), later(inner.lock(k, f))),
      begin: (k, f) => {
        calls.push("begin");
        const r = inner.begin(k, f);
        if (!r.acquired) return later(r);
        // a slow write: the answer must not wait for it
        const slowPut = (v: StoredResponse, ttl: number) => new Promise<void>((res) => setTimeout(() => res(r.putAndRelease(v, ttl)), putMs));
        return later({ ...r, putAndRelease: (v, ttl) => (calls.push(`putAndRelease:${v.status}:${ttl}`), slowPut(v, ttl)) });
      },
    };
    let putMs = 1;
    const r = await startRouter(`providers: [{ name: a, type: openai, endpoint: ${fake.url}/v1, default_model: m }]\n`, {}, { deps: { idempotencyStore: store } });
    try {
      putMs = 1500;
      const t0 = performance.now();
      await call(r.url, chat(), { "idempotency-key": "custom" });
      const answeredMs = performance.now() - t0;
      assert.ok(answeredMs < 1000, `answered after ${answeredMs.toFixed(0)} ms: it waited for the store's write`);
      // the retry arrives while the write is still on its way: it finds the lock, waits for it, and replays
      const res = await call(r.url, chat(), { "idempotency-key": "custom" });
      assert.equal(res.headers.get("idempotent-replayed"), "true");
      assert.equal(fake.requests.length, 1);
      assert.deepEqual(calls, ["begin", "putAndRelease:200:3600000", "begin", "begin"], "one call before the answer, one after; the retry asks again once the lock is gone");
      assert.equal(inner.inFlight, 0, "lock released");
      putMs = 1;
      // concurrent duplicates of a stream through the asynchronous interface: one upstream call, the same events
      fake.reset();
      fake.fault = { delayMs: 200, times: 1 };
      const body = chat("async stream", { stream: true });
      const all = await Promise.all(Array.from({ length: 3 }, async () => readSse(await postJson(`${r.url}/v1/chat/completions`, body, { "idempotency-key": "custom-stream" }))));
      assert.equal(fake.requests.length, 1);
      assert.equal(all[0].at(-1), "[DONE]");
      for (const events of all) assert.deepEqual(events, all[0]);
      assert.equal(inner.inFlight, 0, "lock released");
    } finally {
      await r.stop();
    }
  });

  it("memory store: bounded by entries and bytes, expired entries dropped", async () => {
    let t = 0;
    const store = new MemoryIdempotencyStore({ maxEntries: () => 100, maxBytes: 10_000, now: () => t });
    const entry = (n: number) => ({ fingerprint: "f", status: 200, headers: [] as [string, string][], stream: false, chunks: [new Uint8Array(n)] });
    for (let i = 0; i < 1000; i++) await store.put(`k${i}`, entry(10), 1000);
    assert.equal(store.size, 100);
    await store.put("big", entry(5_000), 1000);
    assert.ok(store.bytes <= 10_000, `bytes ${store.bytes}`);
    assert.ok(await store.get("big"));
    await store.put("huge", entry(20_000), 1000);
    assert.equal(await store.get("huge"), undefined, "larger than the store: not kept");
    t = 1000;
    assert.equal(await store.get("big"), undefined, "expired");
  });

  it("memory store: gives back what was put, byte for byte (headers beyond ASCII, a stream in chunks)", async () => {
    const store = new MemoryIdempotencyStore({ maxEntries: () => 10 });
    const enc = new TextEncoder();
    for (const fingerprint of ["/v1/chat/completions 00ff", "/v1/\u20ac-path 00ff"]) {
      const value = {
        fingerprint,
        status: 201,
        headers: [["content-type", "text/event-stream"], ["x-latin1", "caf\u00e9 \u00ff"], ["x-empty", ""]] as [string, string][],
        stream: true,
        chunks: [enc.encode("data: {\"a\":1}\n\n"), enc.encode("data: [DONE]\n\n")],
      };
      await store.put(fingerprint, value, 1000);
      const got = (await store.get(fingerprint))!;
      assert.equal(got.fingerprint, fingerprint);
      assert.equal(got.status, 201);
      assert.equal(got.stream, true);
      assert.deepEqual(got.headers, value.headers);
      assert.equal(new TextDecoder().decode(got.chunks.length === 1 ? got.chunks[0] : new Uint8Array(0)), "data: {\"a\":1}\n\ndata: [DONE]\n\n");
    }
    // bodies kept as text and bodies that are not UTF-8 at all come back as the same bytes
    const bodies = [
      enc.encode("\ufeff{\"content\":\"caf\u00e9 \u4f60\u597d \ud83d\ude00\"}"), // a BOM first, Latin-1, CJK, an emoji
      new Uint8Array([0xff, 0xfe, 0x00, 0x80, 0xc3, 0x28, 0x7b]), // invalid UTF-8
      new Uint8Array(0),
    ];
    for (const [i, body] of bodies.entries()) {
      // an empty fingerprint and no headers: the body starts the record, BOM and all
      await store.put(`b${i}`, { fingerprint: "", status: 200, headers: [], stream: false, chunks: [body] }, 1000);
      const got = (await store.get(`b${i}`))!;
      assert.deepEqual([...got.chunks[0]], [...body], `body ${i}`);
    }
  });

  it("memory store: records pinned in half-empty buffers are moved, so the buffers held stay near the live bytes", () => {
    const store = new MemoryIdempotencyStore({ maxEntries: () => 100 });
    const body = (i: number) => new Uint8Array(10_000).fill(i);
    const put = (k: string, b: Uint8Array) => store.put(k, { fingerprint: "f", status: 200, headers: [], stream: false, chunks: [b] }, 60_000);
    for (let i = 0; i < 100; i++) put(`big${i}`, body(i)); // 1 MB of records
    assert.ok(store.heldBytes >= 1_000_000);
    for (let i = 0; i < 100; i += 10) store.get(`big${i}`); // every tenth is used again: it stays
    for (let i = 0; i < 90; i++) put(`small${i}`, new Uint8Array(100)); // evicts the other 90 big ones
    assert.equal(store.size, 100);
    // live: 10 big records and 90 small ones, about 110 KB; without moving them the 10 would pin every buffer
    assert.ok(store.heldBytes <= 2 * 110_000 + 2 * 256 * 1024, `held ${store.heldBytes}`);
    for (let i = 0; i < 100; i += 10) assert.deepEqual(store.get(`big${i}`)!.chunks[0], body(i), `big${i} intact after the move`);
    assert.equal(store.get("big1"), undefined);
  });
});
