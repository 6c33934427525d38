import { after, before, beforeEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import { parseConfig } from "../src/config/load.ts";
import { createApp } from "../src/http/app.ts";
import { formatDuration } from "../src/middleware/rate-limit.ts";
import { MemoryRateLimitStore } from "../src/state/memory/rate-limit.ts";
import { Observability } from "../src/observability/observability.ts";
import { buildRouter } from "../src/server.ts";
import { startOpenAIFake } from "./fakes/openai.ts";
import type { FakeServer } from "./fakes/common.ts";
import { rmTemp, startProcess, tempDir, writeFile } from "./helpers/process.ts";
import { rawRequest } from "./helpers/raw.ts";
import { postJson, readSse, startRouter, type RunningRouter } from "./helpers/router.ts";

const chat = (extra: Record<string, unknown> = {}) => ({ model: "m", messages: [{ role: "user", content: "hi" }], ...extra });
const KEY_A = "rk-rate-a-0000000000000001";
const KEY_B = "rk-rate-b-0000000000000002";

/** A settable clock for the app (ms). */
function clock() {
  const c = { t: 1_000_000, now: () => c.t };
  return c;
}

async function send(url: string, headers: Record<string, string> = {}, body: unknown = chat()) {
  const res = await postJson(`${url}/v1/chat/completions`, body, headers);
  const json = await res.json();
  return { status: res.status, headers: res.headers, body: json };
}

function limitHeaders(h: Headers) {
  return {
    limit: h.get("x-ratelimit-limit-requests"),
    remaining: h.get("x-ratelimit-remaining-requests"),
    reset: h.get("x-ratelimit-reset-requests"),
  };
}

describe("request rate limit (token bucket)", () => {
  let r: RunningRouter;
  const clk = clock();
  before(async () => {
    // burst 3, one request per second
    r = await startRouter(`
providers: [{ name: m, type: mock }]
rate_limit: { enabled: true, requests_per_minute: 60, burst: 3 }
`, {}, { appNow: clk.now, remoteAddr: (req) => req.headers.get("x-test-ip") ?? "127.0.0.1" });
  });
  after(() => r.stop());
  let ip = 0;
  const nextIp = () => `10.0.0.${++ip}`;

  it("counts down the burst in the x-ratelimit headers, then answers 429 with Retry-After", async () => {
    const h = { "x-test-ip": nextIp() };
    const seen = [];
    for (let i = 0; i < 3; i++) {
      const res = await send(r.url, h);
      assert.equal(res.status, 200);
      seen.push(limitHeaders(res.headers));
    }
    assert.deepEqual(seen.map((s) => [s.limit, s.remaining]), [["60", "2"], ["60", "1"], ["60", "0"]]);
    assert.deepEqual(seen.map((s) => s.reset), ["1s", "2s", "3s"]);
    const refused = await send(r.url, h);
    assert.equal(refused.status, 429);
    assert.equal(refused.body.error.type, "rate_limit_error");
    assert.equal(refused.body.error.code, "rate_limit_exceeded");
    assert.equal(refused.headers.get("retry-after"), "1");
    assert.equal(refused.headers.get("retry-after-ms"), "1000");
    assert.deepEqual(limitHeaders(refused.headers), { limit: "60", remaining: "0", reset: "3s" });
    assert.equal(refused.headers.get("x-ratelimit-limit-tokens"), null, "no token headers without tokens_per_minute");
    assert.match(refused.headers.get("x-request-id") ?? "", /\S/);
  });

  it("refills with time (injected clock): one request per second, up to the burst", async () => {
    const h = { "x-test-ip": nextIp() };
    for (let i = 0; i < 3; i++) assert.equal((await send(r.url, h)).status, 200);
    assert.equal((await send(r.url, h)).status, 429);
    clk.t += 500;
    const half = await send(r.url, h);
    assert.equal(half.status, 429);
    assert.equal(half.headers.get("retry-after-ms"), "500");
    clk.t += 500;
    assert.equal((await send(r.url, h)).status, 200);
    assert.equal((await send(r.url, h)).status, 429);
    clk.t += 60_000; // far more than needed: the bucket caps at the burst
    const full = [];
    for (let i = 0; i < 4; i++) full.push((await send(r.url, h)).status);
    assert.deepEqual(full, [200, 200, 200, 429]);
  });

  it("keeps one bucket per client IP", async () => {
    const a = { "x-test-ip": nextIp() }, b = { "x-test-ip": nextIp() };
    for (let i = 0; i < 3; i++) assert.equal((await send(r.url, a)).status, 200);
    assert.equal((await send(r.url, a)).status, 429);
    const other = await send(r.url, b);
    assert.equal(other.status, 200);
    assert.equal(other.headers.get("x-ratelimit-remaining-requests"), "2");
  });

  it("ignores X-Forwarded-For without server.trust_proxy (a spoofed header gets no fresh bucket)", async () => {
    const h = { "x-test-ip": nextIp() };
    for (let i = 0; i < 3; i++) assert.equal((await send(r.url, { ...h, "x-forwarded-for": `192.0.2.${i}` })).status, 200);
    assert.equal((await send(r.url, { ...h, "x-forwarded-for": "192.0.2.99" })).status, 429);
  });

  it("sets the headers on every limited path (GET /v1/models, 404s) but leaves public paths unlimited", async () => {
    const h = { "x-test-ip": nextIp() };
    const models = await fetch(`${r.url}/v1/models`, { headers: h });
    assert.equal(models.status, 200);
    assert.equal(models.headers.get("x-ratelimit-remaining-requests"), "2");
    await models.body?.cancel();
    const missing = await fetch(`${r.url}/nope`, { headers: h });
    assert.equal(missing.status, 404);
    assert.equal(missing.headers.get("x-ratelimit-remaining-requests"), "1");
    await missing.body?.cancel();
    assert.equal((await send(r.url, h)).status, 200);
    assert.equal((await send(r.url, h)).status, 429);
    for (let i = 0; i < 5; i++) {
      const health = await fetch(`${r.url}/health`, { headers: h });
      assert.equal(health.status, 200);
      assert.equal(health.headers.get("x-ratelimit-limit-requests"), null);
      await health.body?.cancel();
    }
  });
});

describe("rate limit per API key and behind a proxy", () => {
  it("keeps one bucket per API key when auth is on, whatever the client IP", async () => {
    const r = await startRouter(`
providers: [{ name: m, type: mock }]
auth: { enabled: true, api_keys: [${KEY_A}, ${KEY_B}] }
rate_limit: { enabled: true, requests_per_minute: 60, burst: 2 }
`, {}, { appNow: () => 0, remoteAddr: (req) => req.headers.get("x-test-ip") ?? "127.0.0.1" });
    try {
      const a = (ip: string) => ({ authorization: `Bearer ${KEY_A}`, "x-test-ip": ip });
      assert.equal((await send(r.url, a("10.1.0.1"))).status, 200);
      assert.equal((await send(r.url, a("10.1.0.2"))).status, 200);
      const refused = await send(r.url, a("10.1.0.3"));
      assert.equal(refused.status, 429, "a new IP does not help a key over its limit");
      const b = await send(r.url, { authorization: `Bearer ${KEY_B}`, "x-test-ip": "10.1.0.1" });
      assert.equal(b.status, 200, "another key has its own bucket");
      assert.equal(b.headers.get("x-ratelimit-remaining-requests"), "1");
      // a request refused by auth does not consume anyone's budget
      const bad = await send(r.url, { authorization: "Bearer rk-nope" });
      assert.equal(bad.status, 401);
      assert.equal(bad.headers.get("x-ratelimit-limit-requests"), null);
    } finally {
      await r.stop();
    }
  });

  it("with server.trust_proxy uses the last X-Forwarded-For hop as the client address", async () => {
    const r = await startRouter(`
server: { trust_proxy: true }
providers: [{ name: m, type: mock }]
rate_limit: { enabled: true, requests_per_minute: 60, burst: 1 }
`, {}, { appNow: () => 0 });
    try {
      assert.equal((await send(r.url, { "x-forwarded-for": "203.0.113.1" })).status, 200);
      assert.equal((await send(r.url, { "x-forwarded-for": "203.0.113.1" })).status, 429);
      assert.equal((await send(r.url, { "x-forwarded-for": "203.0.113.2" })).status, 200);
      // the client-supplied left part is not trusted: only the hop our proxy appended counts
      assert.equal((await send(r.url, { "x-forwarded-for": "198.51.100.7, 203.0.113.1" })).status, 429);
      assert.equal((await send(r.url, { "x-forwarded-for": "203.0.113.1, 203.0.113.3" })).status, 200);
    } finally {
      await r.stop();
    }
  });
});

describe("token rate limit (tokens_per_minute)", () => {
  let fake: FakeServer, r: RunningRouter;
  const clk = clock();
  before(async () => {
    fake = await startOpenAIFake({ usage: { prompt_tokens: 30, completion_tokens: 30 } }); // 60 tokens per request
    r = await startRouter(`
providers: [{ name: a, type: openai, endpoint: ${fake.url}/v1, default_model: m }]
rate_limit: { enabled: true, requests_per_minute: 6000, burst: 100, tokens_per_minute: 100 }
`, {}, { appNow: clk.now, remoteAddr: (req) => req.headers.get("x-test-ip") ?? "127.0.0.1" });
  });
  after(async () => {
    await r.stop();
    await fake.stop();
  });
  beforeEach(() => fake.reset());

  it("charges each response's usage and refuses once the budget is spent, with the -tokens headers", async () => {
    const h = { "x-test-ip": "10.2.0.1" };
    const first = await send(r.url, h);
    assert.equal(first.status, 200);
    assert.equal(first.headers.get("x-ratelimit-limit-tokens"), "100");
    assert.equal(first.headers.get("x-ratelimit-remaining-tokens"), "100", "charged after the response");
    const second = await send(r.url, h);
    assert.equal(second.status, 200);
    assert.equal(second.headers.get("x-ratelimit-remaining-tokens"), "40");
    // now 100 - 120 = -20 tokens: refused until the budget is positive again
    const refused = await send(r.url, h);
    assert.equal(refused.status, 429);
    assert.equal(refused.body.error.type, "rate_limit_error");
    assert.equal(refused.body.error.code, "tokens_rate_limit_exceeded");
    assert.equal(refused.headers.get("x-ratelimit-remaining-tokens"), "0");
    assert.equal(refused.headers.get("x-ratelimit-reset-tokens"), "1m12s");
    assert.equal(refused.headers.get("retry-after"), "13"); // (20 + 1) tokens at 100/min
    assert.equal(fake.requests.length, 2);
    clk.t += 13_000;
    assert.equal((await send(r.url, h)).status, 200);
  });

  it("charges streamed responses when the stream ends", async () => {
    const h = { "x-test-ip": "10.2.0.2" };
    const res = await postJson(`${r.url}/v1/chat/completions`, chat({ stream: true }), h);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("x-ratelimit-remaining-tokens"), "100");
    const events = await readSse(res);
    assert.equal(events.at(-1), "[DONE]");
    const next = await send(r.url, h);
    assert.equal(next.headers.get("x-ratelimit-remaining-tokens"), "40");
  });
});

describe("rate limiter memory", () => {
  it("stays bounded with 100k distinct client IPs through the app, and still limits the recent ones", async () => {
    const router = buildRouter(parseConfig("providers: [{ name: m, type: mock }]\nrate_limit: { enabled: true, requests_per_minute: 60, burst: 2 }\n"));
    const limiter = new MemoryRateLimitStore(() => 0, 20_000);
    const app = createApp({ router: () => router, observability: new Observability({ version: "test", runtime: "test" }), rateLimiter: limiter, now: () => 0 });
    const get = (ip: string) => app.fetch(new Request("http://router.test/v1/models"), { remoteAddr: ip });
    const ipOf = (i: number) => `10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`;
    let maxSize = 0;
    for (let i = 0; i < 100_000; i++) {
      const res = await get(ipOf(i));
      if (res.status !== 200) assert.fail(`request ${i}: ${res.status}`);
      if (limiter.size > maxSize) maxSize = limiter.size;
    }
    assert.equal(maxSize, 20_000, "capped at maxKeys");
    // the most recent client still has its (partly used) bucket
    const last = ipOf(99_999);
    assert.equal((await get(last)).status, 200);
    assert.equal((await get(last)).status, 429);
  });

  it("drops buckets that have refilled (idle clients cost nothing)", () => {
    let t = 0;
    const limiter = new MemoryRateLimitStore(() => t);
    const rl = { enabled: true, requests_per_minute: 60, burst: 10, tokens_per_minute: null };
    for (let i = 0; i < 100_000; i++) limiter.take(`k${i}`, rl);
    assert.equal(limiter.size, 100_000);
    t += 1_000; // 1 token back each: all full again
    for (let i = 0; i < 10_000; i++) limiter.take(`fresh${i}`, rl);
    assert.ok(limiter.size < 100_000, `size ${limiter.size}`);
    t += 1_000;
    for (let i = 0; i < 100_000; i++) limiter.take(`fresh${i % 10}`, rl);
    assert.ok(limiter.size <= 20, `idle buckets expire, size ${limiter.size}`);
  });

  it("formats reset durations like OpenAI", () => {
    assert.deepEqual([0, 1, 999, 1000, 1500, 60_000, 61_250, 360_000].map(formatDuration), ["0s", "1ms", "999ms", "1s", "1.5s", "1m0s", "1m1.25s", "6m0s"]);
  });
});

describe("rate limit by client IP, through the runtime's own server", () => {
  it("gives each client address its own bucket (the entrypoint hands the peer address to the app)", async () => {
    const dir = tempDir();
    writeFile(`${dir}/config.yaml`, `server: { host: 127.0.0.1, port: 0 }
providers:
  - { name: p, type: mock }
rate_limit: { enabled: true, requests_per_minute: 60, burst: 2 }
`);
    const r = await startProcess(["--config", `${dir}/config.yaml`], { cwd: dir });
    try {
      const from = (localAddress: string) => rawRequest(r.port, "GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close", { localAddress });
      const a = [await from("127.0.0.1"), await from("127.0.0.1"), await from("127.0.0.1")];
      assert.deepEqual(a.map((x) => x.status), [200, 200, 429]);
      // another loopback address is another client: a full bucket of its own
      const b = await from("127.0.0.2");
      assert.equal(b.status, 200, b.body);
      assert.equal(b.headers["x-ratelimit-remaining-requests"], "1");
    } finally {
      r.kill("SIGKILL");
      await r.exited;
      rmTemp(dir);
    }
  });
});

describe("the rate limit on routes with an idempotency step", () => {
  let fake: FakeServer, r: RunningRouter;
  const clk = clock();
  before(async () => {
    fake = await startOpenAIFake({ reply: "ok" });
    // burst 2, one request per second
    r = await startRouter(`
providers: [{ name: a, type: openai, endpoint: ${fake.url}/v1, default_model: m }]
rate_limit: { enabled: true, requests_per_minute: 60, burst: 2 }
idempotency: { ttl_seconds: 60 }
`, {}, { appNow: clk.now, remoteAddr: (req) => req.headers.get("x-test-ip") ?? "127.0.0.1" });
  });
  after(async () => {
    await r.stop();
    await fake.stop();
  });
  let ip = 0;
  const nextIp = () => `10.1.0.${++ip}`;
  const routes: [string, unknown][] = [
    ["/v1/chat/completions", chat()],
    ["/v1/completions", { model: "m", prompt: "hi" }],
    ["/v1/responses", { model: "m", input: "hi" }],
  ];

  for (const [path, body] of routes) {
    it(`${path}: a refused request with an Idempotency-Key reaches no provider, and its key stays free`, async () => {
      const h = { "x-test-ip": nextIp() };
      for (let i = 0; i < 2; i++) {
        const res = await postJson(r.url + path, body, { ...h, "idempotency-key": `fill-${path}-${i}` });
        assert.equal(res.status, 200, await res.text());
      }
      const calls = fake.requests.length;
      const key = { ...h, "idempotency-key": `refused-${path}` };
      const refused = await postJson(r.url + path, body, key);
      assert.equal(refused.status, 429);
      assert.equal((await refused.json()).error.code, "rate_limit_exceeded");
      assert.equal(refused.headers.get("x-ratelimit-remaining-requests"), "0");
      assert.equal(refused.headers.get("retry-after"), "1");
      assert.equal(fake.requests.length, calls, "no provider call");
      clk.t += 1000;
      // the refused request held no lock and stored nothing: the same key is served by a call of its own
      const served = await postJson(r.url + path, body, key);
      assert.equal(served.status, 200, await served.clone().text());
      assert.equal(served.headers.get("idempotent-replayed"), null);
      assert.equal(served.headers.get("x-ratelimit-remaining-requests"), "0");
      await served.arrayBuffer();
      assert.equal(fake.requests.length, calls + 1);
    });
  }

  it("a request refused before the idempotency step (a bad body) still counts, and a refused client gets 429 for it", async () => {
    const h = { "x-test-ip": nextIp() };
    const bad = { model: "m" }; // no messages
    for (const extra of [{}, { "idempotency-key": "bad-1" }] as Record<string, string>[]) {
      const res = await postJson(`${r.url}/v1/chat/completions`, bad, { ...h, ...extra });
      assert.equal(res.status, 400);
      assert.equal((await res.json()).error.param, "messages");
      assert.notEqual(res.headers.get("x-ratelimit-remaining-requests"), null, "limited like any request");
    }
    const calls = fake.requests.length;
    for (const [b, extra] of [[chat(), { "idempotency-key": "after-bad" }], [bad, {}], [bad, { "idempotency-key": "bad-2" }]] as [unknown, Record<string, string>][]) {
      const res = await postJson(`${r.url}/v1/chat/completions`, b, { ...h, ...extra });
      assert.equal(res.status, 429, "the two bad bodies spent the burst");
      await res.arrayBuffer();
    }
    assert.equal(fake.requests.length, calls);
  });
});
