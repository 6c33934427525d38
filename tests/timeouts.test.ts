// Timeouts, client disconnects and retries through HTTP against fake OpenAI providers.
import { after, afterEach, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { startOpenAIFake } from "./fakes/openai.ts";
import { sleep, type FakeServer } from "./fakes/common.ts";
import { scrape, value } from "./helpers/metrics.ts";
import { postJson, readSse, startRouter, type RunningRouter } from "./helpers/router.ts";

const chat = (extra: Record<string, unknown> = {}) => ({ model: "gpt-test", messages: [{ role: "user", content: "hi" }], ...extra });

/** Polls `cond` until true or `ms` pass. */
async function until(cond: () => boolean, ms = 5000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await sleep(20);
  }
  return cond();
}

/** Sends a non-streamed chat request and abandons it (client disconnect) once `upstream` has received it. */
async function abandonOnceReceived(url: string, upstream: FakeServer): Promise<void> {
  const ac = new AbortController();
  const p = fetch(`${url}/v1/chat/completions`, {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(chat()), signal: ac.signal,
  }).catch((e) => e);
  assert.ok(await until(() => upstream.requests.length === 1));
  ac.abort();
  await p;
}

describe("timeouts, disconnects and retries", () => {
  let a: FakeServer, b: FakeServer;
  let r: RunningRouter | undefined;

  before(async () => {
    a = await startOpenAIFake({ reply: "from A, in several chunks", chunks: 8 });
    b = await startOpenAIFake({ reply: "from B" });
  });
  after(async () => {
    await a.stop();
    await b.stop();
  });
  afterEach(async () => {
    await r?.stop();
    r = undefined;
  });

  /** A router over a -> b; `aExtra` goes into a's flow mapping, `routing` into the routing block. */
  async function start(aExtra = "", routing = "", opts: Parameters<typeof startRouter>[2] = {}): Promise<RunningRouter> {
    a.reset();
    b.reset();
    r = await startRouter(`
providers:
  - { name: a, type: openai, endpoint: ${a.url}/v1, default_model: m, ${aExtra.includes("timeout_seconds") ? "" : "timeout_seconds: 5, "}${aExtra} }
  - { name: b, type: openai, endpoint: ${b.url}/v1, default_model: m, timeout_seconds: 5 }
routing: { fallback_chain: [a, b]${routing ? ", " + routing : ""} }
circuit_breaker: { failure_threshold: 100 }
`, {}, opts);
    return r;
  }
  const send = async (body = chat()) => {
    const res = await postJson(`${r!.url}/v1/chat/completions`, body);
    const text = await res.text();
    return { res, status: res.status, provider: res.headers.get("x-router-provider"), body: text ? JSON.parse(text) : null };
  };
  const breakerA = async () => (await (await fetch(`${r!.url}/health`)).json()).providers.a;
  /** The attempt a client abandoned is `cancelled` in /stats and /metrics, not a failure of its provider. */
  async function assertCancelledNotFailed(): Promise<void> {
    assert.ok(await until(() => r!.logs.some((l) => l.includes('"outcome":"cancelled"')), 2000), "the request log names the attempt cancelled");
    const stats = await (await fetch(`${r!.url}/stats`)).json();
    assert.equal(stats.providers.a.failures, 0, "the provider did not fail");
    assert.equal(stats.providers.a.requests, 1);
    const m = await scrape(r!.url);
    assert.equal(value(m, "failover_router_upstream_requests_total", { provider: "a", outcome: "cancelled" }), 1);
    assert.equal(value(m, "failover_router_upstream_requests_total", { provider: "a", outcome: "error" }), 0);
  }

  describe("timeouts", () => {
    it("timeout_seconds bounds the wait for the first content chunk of a stream, then fails over", async () => {
      await start("timeout_seconds: 0.5");
      a.fault = { stallAfter: 1 }; // the role chunk arrives, then nothing
      const t0 = Date.now();
      const res = await postJson(`${r!.url}/v1/chat/completions`, chat({ stream: true }));
      assert.equal(res.headers.get("x-router-provider"), "b");
      const events = await readSse(res);
      assert.equal(events.at(-1), "[DONE]");
      assert.ok(Date.now() - t0 < 4000);
      assert.ok(await until(() => a.aborted === 1), "the stalled upstream request is aborted");
      const pa = await breakerA();
      assert.equal(pa.consecutive_failures, 1, "a provider timeout is a breaker failure");
      assert.match(pa.last_error, /^timeout/);
    });

    it("stream_idle_timeout_seconds ends a stalled stream with an SSE error event and aborts upstream", async () => {
      await start("", "stream_idle_timeout_seconds: 0.5");
      a.fault = { stallAfter: 3 };
      const t0 = Date.now();
      const res = await postJson(`${r!.url}/v1/chat/completions`, chat({ stream: true }));
      assert.equal(res.headers.get("x-router-provider"), "a");
      const events = await readSse(res);
      const last = events.at(-1);
      assert.equal(last.error.code, "stream_timeout");
      assert.equal(last.error.type, "upstream_error");
      assert.match(last.error.message, /stalled/);
      assert.ok(Date.now() - t0 >= 400 && Date.now() - t0 < 4000);
      assert.ok(await until(() => a.aborted === 1), "upstream aborted");
      const pa = await breakerA();
      assert.equal(pa.consecutive_failures, 1, "a stalled stream is a breaker failure");
    });

    it("a slow but steady stream is not cut by the idle timeout", async () => {
      await start("", "stream_idle_timeout_seconds: 0.5");
      a.fault = { chunkDelayMs: 150 };
      const res = await postJson(`${r!.url}/v1/chat/completions`, chat({ stream: true }));
      const events = await readSse(res);
      assert.equal(events.at(-1), "[DONE]");
      assert.equal(events.slice(0, -1).map((e) => e.choices[0]?.delta?.content ?? "").join(""), "from A, in several chunks");
    });

    it("routing.request_timeout_seconds bounds the whole request: 504 request_timeout", async () => {
      await start("", "request_timeout_seconds: 1");
      a.fault = { hang: true };
      const t0 = Date.now();
      const s = await send();
      const took = Date.now() - t0;
      assert.equal(s.status, 504);
      assert.equal(s.body.error.code, "request_timeout");
      assert.equal(s.body.error.attempts[0].provider, "a");
      assert.ok(took >= 900 && took < 4000, `took ${took} ms`);
      assert.equal(b.requests.length, 0, "no time left for b");
      assert.equal((await breakerA()).consecutive_failures, 0, "cut by the request deadline, not by its own timeout: not a breaker failure");
    });
  });

  describe("client disconnect", () => {
    it("aborts the upstream stream when the client goes away mid-stream", async () => {
      await start();
      a.fault = { chunkDelayMs: 300 };
      const ac = new AbortController();
      const res = await fetch(`${r!.url}/v1/chat/completions`, {
        method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(chat({ stream: true })), signal: ac.signal,
      });
      const reader = res.body!.getReader();
      await reader.read();
      ac.abort();
      await reader.cancel().catch(() => {});
      assert.ok(await until(() => a.aborted === 1), "the upstream connection was closed");
      assert.equal(a.requests.length, 1);
      assert.equal(b.requests.length, 0);
      await assertCancelledNotFailed();
    });

    it("aborts the upstream request when the client goes away before the answer", async () => {
      await start();
      a.fault = { hang: true };
      await abandonOnceReceived(r!.url, a);
      assert.ok(await until(() => a.aborted === 1), "the upstream connection was closed");
      await sleep(100);
      assert.equal(b.requests.length, 0, "no failover for a client that left");
      const pa = await breakerA();
      assert.equal(pa.consecutive_failures, 0, "a client abort is not a breaker failure");
      await assertCancelledNotFailed();
    });
  });

  describe("retries", () => {
    it("retries the same provider with exponential backoff before moving on", async () => {
      await start("max_retries: 2");
      a.fault = { status: 503, times: 2 };
      const t0 = Date.now();
      const s = await send();
      const took = Date.now() - t0;
      assert.equal(s.status, 200);
      assert.equal(s.provider, "a");
      assert.equal(s.res.headers.get("x-router-attempts"), "3");
      assert.equal(a.requests.length, 3);
      assert.equal(b.requests.length, 0);
      // backoff 200 ms x 2^n with jitter in [50%, 100%]: at least 100 + 200 ms
      assert.ok(took >= 280, `took ${took} ms`);
      assert.equal((await breakerA()).consecutive_failures, 0, "the final success resets the count");
    });

    it("moves on to the next provider when retries are exhausted", async () => {
      await start("max_retries: 1");
      a.fault = { status: 500 };
      const s = await send();
      assert.equal(s.provider, "b");
      assert.equal(s.res.headers.get("x-router-attempts"), "3");
      assert.equal(a.requests.length, 2);
      assert.equal((await breakerA()).consecutive_failures, 2, "each attempt counts");
    });

    it("a retry on the same provider is not a failover in /stats or /metrics: only leaving the provider is", async () => {
      await start("max_retries: 2");
      a.fault = { status: 503, times: 2 };
      assert.equal((await send()).provider, "a"); // two retries, then a answers: it was never left
      a.fault = { status: 500 };
      assert.equal((await send()).provider, "b"); // three failed attempts, then one failover to b
      const stats = await (await fetch(`${r!.url}/stats`)).json();
      assert.equal(stats.providers.a.failures, 5);
      assert.equal(stats.providers.a.failovers, 1);
      assert.equal(value(await scrape(r!.url), "failover_router_failovers_total", { provider: "a" }), 1);
    });

    it("waits for Retry-After before retrying", async () => {
      await start("max_retries: 1");
      a.fault = { status: 429, headers: { "retry-after": "1" }, times: 1 };
      const t0 = Date.now();
      const s = await send();
      const took = Date.now() - t0;
      assert.equal(s.provider, "a");
      assert.equal(a.requests.length, 2);
      assert.ok(took >= 950, `took ${took} ms`);
    });

    it("does not wait for a Retry-After beyond max_retry_after_seconds: moves on at once", async () => {
      await start("max_retries: 3", "max_retry_after_seconds: 2");
      a.fault = { status: 429, headers: { "retry-after": "30" } };
      const t0 = Date.now();
      const s = await send();
      assert.equal(s.provider, "b");
      assert.equal(a.requests.length, 1);
      assert.ok(Date.now() - t0 < 1500);
    });

    it("does not wait out a Retry-After for a retry its breaker, opened by that failure, would not let through", async () => {
      await start("max_retries: 1, circuit_breaker: { failure_threshold: 1, cooldown_seconds: 60 }");
      a.fault = { status: 429, headers: { "retry-after": "3" } };
      const t0 = Date.now();
      const s = await send();
      const took = Date.now() - t0;
      assert.equal(s.provider, "b");
      assert.equal(a.requests.length, 1);
      assert.equal((await breakerA()).state, "open");
      assert.ok(took < 1500, `took ${took} ms: waited for a retry that was never going to be sent`);
    });

    it("every provider rate-limited with Retry-After: the 502 carries the soonest, so the client's own retry waits", async () => {
      await start();
      a.fault = { status: 429, headers: { "retry-after": "7" } };
      b.fault = { status: 429, headers: { "retry-after": "3" } };
      const s = await send();
      assert.equal(s.status, 502);
      assert.equal(s.body.error.code, "all_providers_failed");
      assert.equal(s.res.headers.get("retry-after"), "3");
    });

    it("the OpenAI SDK's own retry of that 502 waits for its Retry-After, not its short backoff", async () => {
      await start();
      a.fault = { status: 429, headers: { "retry-after": "2" } };
      b.fault = { status: 429, headers: { "retry-after": "2" } };
      const client = new OpenAI({ baseURL: `${r!.url}/v1`, apiKey: "client-key", maxRetries: 1 });
      const t0 = Date.now();
      await assert.rejects(client.chat.completions.create({ model: "gpt-test", messages: [{ role: "user", content: "hi" }] }), { status: 502 });
      const took = Date.now() - t0;
      assert.equal(a.requests.length, 2, "the SDK retried once");
      // its own backoff before a first retry is under 1 s
      assert.ok(took >= 1900, `took ${took} ms`);
    });

    it("a provider failing without Retry-After (a plain 500): the 502 promises no time", async () => {
      await start();
      a.fault = { status: 429, headers: { "retry-after": "3" } };
      b.fault = { status: 500 };
      const s = await send();
      assert.equal(s.status, 502);
      assert.equal(s.res.headers.get("retry-after"), null);
    });

    it("does not retry 401/403 or client errors on the same provider", async () => {
      await start("max_retries: 3");
      a.fault = { status: 401 };
      let s = await send();
      assert.equal(s.provider, "b");
      assert.equal(a.requests.length, 1);
      a.reset();
      a.fault = { status: 400 };
      s = await send();
      assert.equal(s.status, 400);
      assert.equal(a.requests.length, 1);
    });

    it("a context-window 400 moves to the next provider without retrying", async () => {
      await start("max_retries: 3");
      a.fault = { status: 400, body: { error: { message: "prompt is too long", type: "invalid_request_error" } } };
      const s = await send();
      assert.equal(s.provider, "b");
      assert.equal(a.requests.length, 1);
    });

    it("retries stay within request_timeout_seconds", async () => {
      await start("max_retries: 10", "request_timeout_seconds: 1", { retryBaseMs: 300 });
      a.fault = { status: 503 };
      b.fault = { status: 503 };
      const t0 = Date.now();
      const s = await send();
      const took = Date.now() - t0;
      assert.ok(s.status === 502 || s.status === 504, `status ${s.status}`);
      assert.ok(took < 2500, `took ${took} ms`);
      assert.ok(a.requests.length < 11, "backoff stopped retrying at the deadline");
    });

    it("a client that leaves during the backoff stops the retries", async () => {
      await start("max_retries: 3", "", { retryBaseMs: 1000 });
      a.fault = { status: 503 };
      await abandonOnceReceived(r!.url, a);
      await sleep(1500);
      assert.equal(a.requests.length, 1, "no retry after the client left");
      assert.equal(b.requests.length, 0);
    });
  });
});
