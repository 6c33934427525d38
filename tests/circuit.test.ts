// Circuit breakers through HTTP against fake OpenAI providers: tripping, skipping, half-open probes,
// Retry-After, manual reset, all-open 503, stream accounting, /health. The breaker clock is a FakeClock so
// cool-offs pass without sleeping.
import { after, afterEach, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { startOpenAIFake } from "./fakes/openai.ts";
import { sleep, type FakeServer } from "./fakes/common.ts";
import { FakeClock, postJson, readSse, startRouter, type RunningRouter } from "./helpers/router.ts";

const chat = (extra: Record<string, unknown> = {}) => ({ model: "gpt-test", messages: [{ role: "user", content: "hi" }], ...extra });

describe("circuit breakers through HTTP", () => {
  let a: FakeServer, b: FakeServer, c: FakeServer;
  let r: RunningRouter | undefined;
  let clock: FakeClock;

  before(async () => {
    a = await startOpenAIFake({ reply: "from A" });
    b = await startOpenAIFake({ reply: "from B" });
    c = await startOpenAIFake({ reply: "from C" });
  });
  after(async () => {
    await a.stop();
    await b.stop();
    await c.stop();
  });
  afterEach(async () => {
    await r?.stop();
    r = undefined;
  });

  /** A router from `yaml` with a fresh FakeClock and fresh fakes. */
  async function startYaml(yaml: string): Promise<RunningRouter> {
    a.reset();
    b.reset();
    c.reset();
    clock = new FakeClock();
    r = await startRouter(yaml, {}, { clock: clock.now });
    return r;
  }

  /** A router over a -> b with threshold 3, cool-off 1 s, one probe. */
  const start = () =>
    startYaml(`
providers:
  - { name: a, type: openai, endpoint: ${a.url}/v1, api_key: sk-secret-aaaaaaaa, default_model: a-model, timeout_seconds: 5 }
  - { name: b, type: openai, endpoint: ${b.url}/v1, default_model: b-model, timeout_seconds: 5 }
routing: { fallback_chain: [a, b] }
circuit_breaker: { failure_threshold: 3, cooldown_seconds: 1, half_open_max_requests: 1 }
`);

  const send = async (body = chat()) => {
    const res = await postJson(`${r!.url}/v1/chat/completions`, body);
    const text = await res.text();
    return { res, status: res.status, provider: res.headers.get("x-router-provider"), body: text ? JSON.parse(text) : null };
  };
  const health = async () => {
    const res = await fetch(`${r!.url}/health`);
    return { status: res.status, body: await res.json() };
  };
  /** Makes `a` fail `n` times (a answers 500, b answers). */
  const failA = async (n: number) => {
    a.fault = { status: 500, body: { error: { message: "internal failure", type: "server_error" } } };
    for (let i = 0; i < n; i++) assert.equal((await send()).provider, "b");
    a.fault = null;
  };

  it("/health is ok with every breaker closed", async () => {
    await start();
    const h = await health();
    assert.equal(h.status, 200);
    assert.deepEqual(h.body, {
      status: "ok",
      providers: Object.fromEntries(["a", "b"].map((n) => [n, { state: "closed", consecutive_failures: 0, last_error: null, opened_at: null, retry_at: null }])),
    });
  });

  it("trips after failure_threshold consecutive failures, then skips the provider without a request", async () => {
    await start();
    await failA(2);
    assert.equal((await health()).body.providers.a.state, "closed");
    assert.equal((await health()).body.providers.a.consecutive_failures, 2);
    await failA(1);
    assert.equal(a.requests.length, 3);
    const h = await health();
    assert.equal(h.status, 200);
    assert.equal(h.body.status, "degraded");
    const pa = h.body.providers.a;
    assert.equal(pa.state, "open");
    assert.equal(pa.consecutive_failures, 3);
    assert.equal(pa.last_error, "HTTP 500: internal failure");
    assert.equal(pa.opened_at, new Date(clock.t).toISOString());
    assert.equal(pa.retry_at, new Date(clock.t + 1000).toISOString());
    assert.equal(h.body.providers.b.state, "closed");

    for (let i = 0; i < 3; i++) {
      const s = await send();
      assert.equal(s.status, 200);
      assert.equal(s.provider, "b");
      assert.equal(s.res.headers.get("x-router-attempts"), "1", "the skipped provider is not an attempt");
    }
    assert.equal(a.requests.length, 3, "no request reached the open provider");
  });

  it("a success in between resets the count (non-consecutive failures do not trip)", async () => {
    await start();
    await failA(2);
    assert.equal((await send()).provider, "a");
    await failA(2);
    const pa = (await health()).body.providers.a;
    assert.equal(pa.state, "closed");
    assert.equal(pa.consecutive_failures, 2);
  });

  it("half-open: after the cool-off one probe goes through; its success closes the breaker", async () => {
    await start();
    await failA(3);
    clock.advance(999);
    assert.equal((await send()).provider, "b");
    assert.equal(a.requests.length, 3);
    clock.advance(1);
    assert.equal((await health()).body.providers.a.state, "half_open");
    const s = await send();
    assert.equal(s.provider, "a", "the probe");
    assert.equal(a.requests.length, 4);
    const pa = (await health()).body.providers.a;
    assert.deepEqual([pa.state, pa.consecutive_failures, pa.opened_at, pa.retry_at], ["closed", 0, null, null]);
    assert.equal((await send()).provider, "a");
  });

  it("half-open: a probe failure reopens the breaker with a fresh cool-off", async () => {
    await start();
    await failA(3);
    clock.advance(5000);
    a.fault = { status: 503 };
    assert.equal((await send()).provider, "b");
    assert.equal(a.requests.length, 4, "the probe reached a");
    const pa = (await health()).body.providers.a;
    assert.equal(pa.state, "open");
    assert.equal(pa.retry_at, new Date(clock.t + 1000).toISOString());
    assert.equal((await send()).provider, "b");
    assert.equal(a.requests.length, 4, "open again: skipped");
  });

  it("sends exactly one probe under 20 concurrent requests", async () => {
    await start();
    await failA(3);
    clock.advance(1000);
    a.fault = { delayMs: 1500 }; // the probe stays in flight while the other requests arrive
    const all = await Promise.all(Array.from({ length: 20 }, () => send()));
    assert.ok(all.every((s) => s.status === 200));
    assert.equal(a.requests.length, 4, "3 trips + exactly 1 probe");
    assert.equal(all.filter((s) => s.provider === "a").length, 1);
    assert.equal(all.filter((s) => s.provider === "b").length, 19);
    assert.equal((await health()).body.providers.a.state, "closed");
  });

  it("honours Retry-After: the breaker stays open past the cool-off until Retry-After has passed", async () => {
    await start();
    a.fault = { status: 429, headers: { "retry-after": "30" }, body: { error: { message: "rate limited", type: "rate_limit_error" } } };
    for (let i = 0; i < 3; i++) assert.equal((await send()).provider, "b");
    a.fault = null;
    assert.equal((await health()).body.providers.a.retry_at, new Date(clock.t + 30_000).toISOString());
    clock.advance(5000);
    assert.equal((await send()).provider, "b", "cool-off (1 s) is over but Retry-After (30 s) is not");
    assert.equal(a.requests.length, 3);
    clock.advance(25_000);
    assert.equal((await send()).provider, "a");
  });

  it("caps a provider's Retry-After at 10 minutes: a hostile or broken upstream cannot take itself out for a day", async () => {
    await start();
    a.fault = { status: 503, headers: { "retry-after": "86400" }, body: { error: { message: "come back tomorrow", type: "server_error" } } };
    for (let i = 0; i < 3; i++) assert.equal((await send()).provider, "b");
    a.fault = null;
    assert.equal((await health()).body.providers.a.retry_at, new Date(clock.t + 600_000).toISOString());
    clock.advance(600_000);
    assert.equal((await send()).provider, "a", "probed again after 10 minutes");
  });

  it("POST /admin/circuit/{provider}/reset closes the breaker; unknown provider 404; wrong method 405", async () => {
    await start();
    await failA(3);
    let res = await fetch(`${r!.url}/admin/circuit/a/reset`, { method: "POST" });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { provider: "a", state: "closed", consecutive_failures: 0, last_error: null, opened_at: null, retry_at: null });
    assert.equal((await send()).provider, "a");

    res = await fetch(`${r!.url}/admin/circuit/nope/reset`, { method: "POST" });
    assert.equal(res.status, 404);
    const err = (await res.json()).error;
    assert.equal(err.code, "provider_not_found");
    assert.equal(err.type, "invalid_request_error");
    assert.match(err.message, /nope/);

    res = await fetch(`${r!.url}/admin/circuit/a/reset`);
    assert.equal(res.status, 405);
    assert.equal(res.headers.get("allow"), "POST");
    assert.equal((await res.json()).error.code, "method_not_allowed");
  });

  it("every breaker open: 503 all_providers_unavailable with Retry-After, nothing sent upstream; /health 503 down", async () => {
    await start();
    a.fault = { status: 500 };
    b.fault = { status: 502 };
    for (let i = 0; i < 3; i++) assert.equal((await send()).status, 502);
    a.fault = b.fault = null;
    const before = [a.requests.length, b.requests.length];
    let s = await send();
    assert.equal(s.status, 503);
    assert.equal(s.body.error.code, "all_providers_unavailable");
    assert.equal(s.body.error.type, "upstream_error");
    assert.equal(s.res.headers.get("retry-after"), "1");
    assert.deepEqual([a.requests.length, b.requests.length], before, "nothing sent upstream");
    const h = await health();
    assert.equal(h.status, 503);
    assert.equal(h.body.status, "down");
    clock.advance(1000);
    s = await send();
    assert.equal(s.status, 200);
    assert.equal(s.provider, "a", "the probe after the cool-off");
  });

  it("Retry-After of the 503 is the time until the soonest breaker turns half-open", async () => {
    await startYaml(`
providers:
  - { name: a, type: openai, endpoint: ${a.url}/v1, default_model: m, circuit_breaker: { cooldown_seconds: 40 } }
  - { name: b, type: openai, endpoint: ${b.url}/v1, default_model: m, circuit_breaker: { cooldown_seconds: 25 } }
circuit_breaker: { failure_threshold: 1 }
`);
    a.fault = { status: 500 };
    b.fault = { status: 500 };
    assert.equal((await send()).status, 502);
    a.fault = b.fault = null;
    clock.advance(10_500);
    const s = await send();
    assert.equal(s.status, 503);
    assert.equal(s.res.headers.get("retry-after"), "15", "b turns half-open in 14.5 s, rounded up");
  });

  it("a pinned provider whose breaker is open answers 503 without a request", async () => {
    await start();
    await failA(3);
    const s = await send(chat({ model: "a/some-model" }));
    assert.equal(s.status, 503);
    assert.equal(s.body.error.code, "all_providers_unavailable");
    assert.equal(a.requests.length, 3);
  });

  it("client errors (400/413/422) and context-window errors are not breaker failures", async () => {
    await start();
    for (const status of [400, 413, 422, 400]) {
      a.fault = { status, body: { error: { message: "bad request", type: "invalid_request_error" } } };
      assert.equal((await send()).status, status);
    }
    a.fault = { status: 400, body: { error: { message: "This model's maximum context length is 8192 tokens", code: "context_length_exceeded" } } };
    for (let i = 0; i < 4; i++) assert.equal((await send()).provider, "b", "context exceeded moves on to the next provider");
    a.fault = null;
    const pa = (await health()).body.providers.a;
    assert.equal(pa.state, "closed");
    assert.equal(pa.consecutive_failures, 0);
    assert.equal(pa.last_error, null);
    assert.equal(a.requests.length, 8);
  });

  it("a stream that breaks mid-way counts as a failure; a complete stream is a success", async () => {
    await start();
    a.fault = { cutAfter: 3, chunkDelayMs: 30 };
    for (let i = 1; i <= 3; i++) {
      const res = await postJson(`${r!.url}/v1/chat/completions`, chat({ stream: true }));
      assert.equal(res.headers.get("x-router-provider"), "a", "committed to a at its first content chunk");
      const events = await readSse(res);
      assert.ok(events.at(-1).error, "ends with an SSE error event");
      const pa = (await health()).body.providers.a;
      assert.equal(pa.consecutive_failures, i);
      assert.match(pa.last_error, /stream/);
    }
    assert.equal((await health()).body.providers.a.state, "open");
    a.fault = null;
    const res = await postJson(`${r!.url}/v1/chat/completions`, chat({ stream: true }));
    assert.equal(res.headers.get("x-router-provider"), "b");
    await readSse(res);
    // a complete stream from a probe closes it
    clock.advance(1000);
    const probe = await postJson(`${r!.url}/v1/chat/completions`, chat({ stream: true }));
    assert.equal(probe.headers.get("x-router-provider"), "a");
    assert.equal((await readSse(probe)).at(-1), "[DONE]");
    assert.equal((await health()).body.providers.a.state, "closed");
  });

  it("a half-open probe stream holds the probe slot until the stream ends", async () => {
    await start();
    await failA(3);
    clock.advance(1000);
    a.fault = { chunkDelayMs: 300 };
    const probe = await postJson(`${r!.url}/v1/chat/completions`, chat({ stream: true }));
    assert.equal(probe.headers.get("x-router-provider"), "a");
    // the probe has started streaming but not ended: the breaker is still half-open and its slot taken
    assert.equal((await health()).body.providers.a.state, "half_open");
    assert.equal((await send()).provider, "b");
    await readSse(probe);
    assert.equal((await health()).body.providers.a.state, "closed");
  });

  it("skipped providers do not count toward routing.max_attempts", async () => {
    await startYaml(`
providers:
  - { name: a, type: openai, endpoint: ${a.url}/v1, default_model: m }
  - { name: b, type: openai, endpoint: ${b.url}/v1, default_model: m }
  - { name: c, type: openai, endpoint: ${c.url}/v1, default_model: m }
routing: { max_attempts: 1 }
circuit_breaker: { failure_threshold: 1, cooldown_seconds: 60 }
`);
    a.fault = { status: 500 };
    let s = await send();
    assert.equal(s.status, 502, "max_attempts 1: a fails and b is not tried");
    assert.equal(b.requests.length, 0);
    a.fault = null;
    s = await send();
    assert.equal(s.status, 200);
    assert.equal(s.provider, "b", "a is skipped (open) and b is the one attempt");
    assert.equal(c.requests.length, 0);
  });

  it("never shows a provider key in /health", async () => {
    await start();
    a.fault = { status: 401, body: { error: { message: "Incorrect API key provided: sk-secret-aaaaaaaa", type: "invalid_request_error" } } };
    await send();
    const text = JSON.stringify((await health()).body);
    assert.ok(!text.includes("sk-secret-aaaaaaaa"));
    // redacted by the adapter wrapper (src/providers/redact.ts) before the breaker's own masking sees it
    assert.match(text, /Incorrect API key provided: (\*\*\*|\[REDACTED\])/);
  });

  it("a client that disconnects from a stream is neither a success nor a failure", async () => {
    await start();
    await failA(2);
    a.fault = { chunkDelayMs: 200 };
    const res = await postJson(`${r!.url}/v1/chat/completions`, chat({ stream: true }));
    const reader = res.body!.getReader();
    await reader.read();
    await reader.cancel();
    await sleep(300);
    const pa = (await health()).body.providers.a;
    assert.equal(pa.consecutive_failures, 2, "unchanged");
    assert.equal(pa.state, "closed");
  });
});
