// The cost strategy with an SLA (routing.sla): providers meeting it on their recent window go first, cheapest
// first; those missing it follow, the nearest miss first; too few samples counts as meeting it.
import { afterEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import { startOpenAIFake } from "./fakes/openai.ts";
import type { FakeServer } from "./fakes/common.ts";
import { FakeClock, postJson, startRouter, type RunningRouter } from "./helpers/router.ts";
import { byCostWithSla, type Rankable } from "../src/routing/strategies.ts";
import { SLA_MIN_SAMPLES, WINDOW_MS, type WindowSummary } from "../src/routing/health.ts";

const cand = (name: string, price: number): Rankable => ({ provider: { name, pricing: { "*": { input: price, output: price } } }, model: "m" });
const names = (cs: Rankable[]) => cs.map((c) => c.provider.name);

describe("byCostWithSla", () => {
  it("meeting providers cheapest first, then the misses by how far they miss; unjudged ones meet it", () => {
    const w: Record<string, WindowSummary | undefined> = {
      cheapSlow: { samples: 10, successRate: 1, p95: 8000 }, // misses by 100 %
      cheapFlaky: { samples: 10, successRate: 0.76, p95: 100 }, // misses by 20 %
      mid: { samples: 10, successRate: 1, p95: 3000 },
      dear: undefined, // too few samples
    };
    const cs = [cand("dear", 9), cand("mid", 5), cand("cheapFlaky", 1), cand("cheapSlow", 0.5)];
    const order = byCostWithSla(cs, { input: 10, output: 10 }, { window: (n) => w[n] }, { max_p95_latency_ms: 4000, min_success_rate: 0.95 });
    assert.deepEqual(names(order), ["mid", "dear", "cheapFlaky", "cheapSlow"]);
  });
});

describe("cost strategy with an SLA, through HTTP", () => {
  let cheap: FakeServer, dear: FakeServer, r: RunningRouter;
  afterEach(async () => {
    await r?.stop();
    await Promise.all([cheap?.stop(), dear?.stop()]);
  });

  /** cheap (price 1) and dear (price 5) behind the cost strategy with routing.sla `sla`, on a fake clock. */
  async function start(sla: string): Promise<FakeClock> {
    cheap = await startOpenAIFake();
    dear = await startOpenAIFake();
    const clock = new FakeClock();
    r = await startRouter(`
providers:
  - { name: cheap, type: openai, endpoint: ${cheap.url}, default_model: m, pricing: { "*": { input: 1, output: 1 } } }
  - { name: dear, type: openai, endpoint: ${dear.url}, default_model: m, pricing: { "*": { input: 5, output: 5 } } }
routing:
  strategy: cost
  fallback_chain: [dear, cheap]
  sla: ${sla}
logging: { level: warn }
`, {}, { clock: clock.now });
    return clock;
  }

  /** The provider that answers one chat request. */
  async function ask(): Promise<string | null> {
    const res = await postJson(`${r.url}/v1/chat/completions`, { model: "m", messages: [{ role: "user", content: "hi" }] });
    await res.text();
    return res.headers.get("x-router-provider");
  }

  it("a cheap provider made slow falls behind a dearer one that meets the SLA, and comes back when it recovers", async () => {
    const clock = await start("{ max_p95_latency_ms: 150, min_success_rate: 0.9 }");
    cheap.fault = { delayMs: 400 };
    // too few samples to judge: the cheap one keeps its place while it earns data
    for (let i = 0; i < SLA_MIN_SAMPLES; i++) assert.equal(await ask(), "cheap");
    assert.equal(await ask(), "dear");
    assert.equal(await ask(), "dear");

    // recovered: once its slow samples age out of the window it goes first again, and stays there
    cheap.fault = null;
    clock.advance(WINDOW_MS + 1);
    for (let i = 0; i < SLA_MIN_SAMPLES + 2; i++) assert.equal(await ask(), "cheap");
  });

  it("the order follows the window /stats shows: behind while its p95 there exceeds the SLA, first again once it has recovered", async () => {
    const SLA_MS = 150;
    const clock = await start(`{ max_p95_latency_ms: ${SLA_MS} }`);
    const window = async () => (await (await fetch(`${r.url}/stats`)).json()).providers.cheap.routing_window;
    /** The provider the SLA should put first, read from /stats alone. */
    const expected = async () => {
      const w = await window();
      return w.attempts < SLA_MIN_SAMPLES || w.p95_ms <= SLA_MS ? "cheap" : "dear";
    };
    assert.deepEqual(await window(), { attempts: 0, success_rate: null, p95_ms: null });
    cheap.fault = { delayMs: 400 };
    for (let i = 0; i < SLA_MIN_SAMPLES + 3; i++) {
      const want = await expected();
      assert.equal(await ask(), want);
    }
    const slow = await window();
    assert.equal(slow.attempts, SLA_MIN_SAMPLES);
    assert.ok(slow.p95_ms >= 400, `p95 ${slow.p95_ms}`);
    assert.equal(await expected(), "dear");

    // its slow samples age out of the window: /stats shows it empty, and it goes first again on fresh samples
    cheap.fault = null;
    clock.advance(WINDOW_MS + 1);
    assert.equal((await window()).attempts, 0);
    for (let i = 0; i < SLA_MIN_SAMPLES + 3; i++) {
      const want = await expected();
      assert.equal(await ask(), want);
    }
    const fresh = await window();
    assert.equal(fresh.attempts, SLA_MIN_SAMPLES + 3);
    assert.ok(fresh.p95_ms < SLA_MS && fresh.success_rate === 1, JSON.stringify(fresh));
    assert.equal(await ask(), "cheap");
  });
});
