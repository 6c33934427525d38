// The state seam through the public surface: the `state` config block, several replicas sharing breaker
// openings through one breaker store, callers that await a backend answering with promises, and the bounded
// wait for an idempotency lock.
import { after, afterEach, before, beforeEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import { ConfigError, parseConfig } from "../src/config/load.ts";
import { createApp } from "../src/http/app.ts";
import { Observability } from "../src/observability/observability.ts";
import { buildRouter, createRoutingState } from "../src/server.ts";
import { MemoryBreakerStore } from "../src/state/memory/breakers.ts";
import { MemoryRateLimitStore } from "../src/state/memory/rate-limit.ts";
import type { BreakerStore } from "../src/state/types.ts";
import { startOpenAIFake } from "./fakes/openai.ts";
import type { FakeServer } from "./fakes/common.ts";
import { FakeClock, postJson, runtime, serve, startRouter, upstreamFetch } from "./helpers/router.ts";
import { answeringLater } from "./state/harness.ts";

const chat = () => ({ model: "m", messages: [{ role: "user", content: "hi" }] });

describe("state block in config", () => {
  it("takes the redis backend with its defaults, and redis:// or rediss:// URLs", () => {
    const s = parseConfig("providers: [{ name: a, type: mock }]\nstate: { backend: redis }\n").state;
    assert.deepEqual(s, { backend: "redis", redis: { url: "redis://127.0.0.1:6379/0", key_prefix: "failover-router:", command_timeout_ms: 100 } });
    const tls = parseConfig("providers: [{ name: a, type: mock }]\nstate: { backend: redis, redis: { url: \"rediss://u:p%40ss@cache.internal:6380/2\" } }\n");
    assert.equal(tls.state.redis.url, "rediss://u:p%40ss@cache.internal:6380/2");
  });

  it("defaults to the memory backend", () => {
    assert.equal(parseConfig("providers: [{ name: a, type: mock }]\n").state.backend, "memory");
  });

  it("refuses another backend, and unknown keys, naming the field", () => {
    for (const [yaml, re] of [
      ["state: { backend: etcd }", /^state\.backend: must be one of "memory", "redis"$/],
      ["state: { backend: memory, url: redis://x }", /^state\.url: unknown key$/],
      ["state: { backend: redis, redis: { url: \"http://user:hunter2secret@cache:6379\" } }", /^state\.redis\.url: must be a redis:\/\/ or rediss:\/\/ URL/],
      ["state: { backend: redis, redis: { url: \"not a url hunter2secret\" } }", /^state\.redis\.url: must be a redis:\/\/ or rediss:\/\/ URL/],
      ["state: { backend: redis, redis: { command_timeout_ms: 0 } }", /^state\.redis\.command_timeout_ms: /],
      ["state: { backend: redis, redis: { db: 2 } }", /^state\.redis\.db: unknown key$/],
      ["server: { replica_id: \"two words\" }", /^server\.replica_id: printable ASCII without spaces$/],
    ] as const) {
      try {
        parseConfig(`providers: [{ name: a, type: mock }]\n${yaml}\n`);
        assert.fail("accepted");
      } catch (e) {
        assert.ok(e instanceof ConfigError);
        assert.ok(e.problems.some((p) => re.test(p)), JSON.stringify(e.problems));
        assert.ok(!e.problems.join("\n").includes("hunter2secret"), "a URL's password is never repeated");
      }
    }
  });
});

describe("replicas sharing breaker openings through one breaker store", () => {
  let a: FakeServer, b: FakeServer;
  const stops: (() => Promise<void>)[] = [];
  before(async () => {
    a = await startOpenAIFake({ reply: "from A" });
    b = await startOpenAIFake({ reply: "from B" });
  });
  after(async () => {
    await a.stop();
    await b.stop();
  });
  beforeEach(() => {
    a.reset();
    b.reset();
  });
  afterEach(async () => {
    for (const stop of stops.splice(0)) await stop();
  });

  /** One replica: its own router, breakers and app, the shared store and wall clock. */
  function replica(store: BreakerStore, clock: FakeClock) {
    const config = parseConfig(`
providers:
  - { name: a, type: openai, endpoint: ${a.url}/v1, default_model: m, timeout_seconds: 5 }
  - { name: b, type: openai, endpoint: ${b.url}/v1, default_model: m, timeout_seconds: 5 }
circuit_breaker: { failure_threshold: 2, cooldown_seconds: 10 }
`);
    const router = buildRouter(config, {}, { ...createRoutingState(config, clock.now, store), upstreamFetch });
    const app = createApp({ router: () => router, observability: new Observability({ version: "test", runtime }) });
    const s = serve((req) => app.fetch(req, { remoteAddr: "127.0.0.1" }));
    stops.push(s.stop);
    const url = `http://127.0.0.1:${s.port}`;
    return {
      send: async () => {
        const res = await postJson(`${url}/v1/chat/completions`, chat());
        await res.arrayBuffer();
        return res.headers.get("x-router-provider");
      },
      stateOfA: async () => (await (await fetch(`${url}/health`)).json()).providers.a.state,
      lastErrorOfA: async () => (await (await fetch(`${url}/health`)).json()).providers.a.last_error,
      reset: async () => (await fetch(`${url}/admin/circuit/a/reset`, { method: "POST" })).status,
    };
  }

  it("an opening on one replica makes the others skip the provider; a manual reset on any reaches all", async () => {
    const clock = new FakeClock();
    const store = new MemoryBreakerStore(clock.now);
    const r1 = replica(store, clock), r2 = replica(store, clock);
    a.fault = { status: 500 };
    assert.deepEqual([await r1.send(), await r1.send()], ["b", "b"]);
    a.fault = null;
    assert.equal(a.requests.length, 2);
    assert.equal(await r1.stateOfA(), "open");
    assert.equal(await r2.stateOfA(), "open", "the other replica learned of the opening");
    assert.equal(await r2.send(), "b");
    assert.equal(a.requests.length, 2, "the other replica sent nothing to the open provider");
    assert.equal(await r2.reset(), 200);
    assert.equal(await r1.stateOfA(), "closed", "the reset reached the replica that opened it");
    assert.equal(await r1.send(), "a");
  });

  /** Two replicas on one store; a fails twice through the first, which opens its breaker, and the cool-off passes (a still failing). */
  async function openedThenCooledOff() {
    const clock = new FakeClock();
    const store = new MemoryBreakerStore(clock.now);
    const r1 = replica(store, clock), r2 = replica(store, clock);
    a.fault = { status: 500 };
    await r1.send();
    await r1.send();
    clock.advance(10_000);
    return { clock, r1, r2 };
  }

  it("after the cool-off one replica probes the provider, and its result reaches the others", async () => {
    const { r1, r2 } = await openedThenCooledOff();
    a.fault = null;
    assert.equal(await r1.stateOfA(), "half_open", "the first to look takes the probe permit");
    assert.equal(await r2.stateOfA(), "open", "the other waits while it probes");
    assert.equal(await r2.send(), "b");
    assert.equal(a.requests.length, 2);
    assert.equal(await r1.send(), "a", "the probe");
    assert.equal(await r1.stateOfA(), "closed");
    assert.equal(await r2.stateOfA(), "closed", "the probe's success closed the breaker everywhere");
    assert.equal(await r2.send(), "a");
    assert.equal(a.requests.length, 4, "one probe, then ordinary traffic");
  });

  it("a probe's success closes the breaker everywhere and keeps its last error, which only a manual reset clears", async () => {
    const { r1, r2 } = await openedThenCooledOff();
    a.fault = null;
    assert.equal(await r1.stateOfA(), "half_open");
    assert.equal(await r1.send(), "a", "the probe");
    assert.equal(await r2.stateOfA(), "closed");
    assert.match(await r1.lastErrorOfA(), /HTTP 500/, "the replica that probed still shows what opened the breaker");
    assert.equal(await r1.stateOfA(), "closed");
    assert.equal(await r2.reset(), 200);
    assert.equal(await r1.lastErrorOfA(), null, "a manual reset clears it in every replica");
  });

  it("a failed probe opens the breaker again everywhere, for a fresh cool-off", async () => {
    const { clock, r1, r2 } = await openedThenCooledOff();
    assert.equal(await r1.stateOfA(), "half_open");
    assert.equal(await r1.send(), "b", "the probe failed");
    assert.equal(await r2.stateOfA(), "open");
    clock.advance(9_999);
    assert.equal(await r2.stateOfA(), "open", "the other replica waits out the new cool-off");
    clock.advance(1);
    a.fault = null;
    assert.equal(await r2.stateOfA(), "half_open", "then one replica probes again");
    assert.equal(await r1.stateOfA(), "open");
    assert.equal(a.requests.length, 3);
  });

  it("a store that fails (throws, rejects) leaves each replica with its own breakers, as a lone replica", async () => {
    const clock = new FakeClock();
    const down = () => {
      throw new Error("store down");
    };
    const store: BreakerStore = { publish: down, subscribe: () => () => {}, acquireProbe: () => Promise.reject(new Error("store down")) };
    const r1 = replica(store, clock);
    a.fault = { status: 500 };
    assert.deepEqual([await r1.send(), await r1.send()], ["b", "b"]);
    a.fault = null;
    assert.equal(await r1.stateOfA(), "open");
    assert.equal(await r1.send(), "b");
    clock.advance(10_000);
    await r1.stateOfA(); // asks for the probe permit; the rejection grants it locally
    assert.equal(await r1.stateOfA(), "half_open");
    assert.equal(await r1.send(), "a", "the probe");
    assert.equal(await r1.stateOfA(), "closed");
    assert.equal(await r1.reset(), 200);
  });
});

describe("callers of a backend that answers with promises", () => {
  it("rate limits: the same x-ratelimit headers, 429 and Retry-After", async () => {
    const r = await startRouter("providers: [{ name: m, type: mock }]\nrate_limit: { enabled: true, requests_per_minute: 60, burst: 2 }\n", {}, {
      deps: { rateLimiter: answeringLater(new MemoryRateLimitStore(() => 0)) },
    });
    try {
      const seen = [];
      for (let i = 0; i < 3; i++) {
        const res = await postJson(`${r.url}/v1/chat/completions`, chat());
        await res.arrayBuffer();
        seen.push([res.status, res.headers.get("x-ratelimit-remaining-requests"), res.headers.get("retry-after")]);
      }
      assert.deepEqual(seen, [[200, "1", null], [200, "0", null], [429, "0", "1"]]);
    } finally {
      await r.stop();
    }
  });
});

describe("idempotency lock", () => {
  let fake: FakeServer;
  before(async () => {
    fake = await startOpenAIFake({ reply: "slow answer" });
  });
  after(() => fake.stop());

  it("a duplicate waits for the request in flight, not for idempotency.ttl_seconds: a failed first answer frees the key", async () => {
    const r = await startRouter(`providers: [{ name: a, type: openai, endpoint: ${fake.url}/v1, default_model: m }]\nidempotency: { ttl_seconds: 3600 }\nrouting: { request_timeout_seconds: 1 }\n`);
    try {
      fake.fault = { delayMs: 2500, times: 1 };
      const h = { "idempotency-key": "slow-one" };
      const first = postJson(`${r.url}/v1/chat/completions`, chat(), h);
      await new Promise((res) => setTimeout(res, 100));
      const t0 = Date.now();
      const second = await postJson(`${r.url}/v1/chat/completions`, chat(), h);
      const waited = Date.now() - t0;
      assert.equal(second.status, 200);
      assert.equal(second.headers.get("idempotent-replayed"), null, "served by its own call, not replayed");
      await second.arrayBuffer();
      assert.ok(waited >= 800 && waited < 5000, `waited ${waited} ms`);
      assert.equal((await first).status, 504, "the first ran out of routing.request_timeout_seconds (not stored)");
      assert.equal(fake.requests.length, 2);
    } finally {
      await r.stop();
    }
  });
});
