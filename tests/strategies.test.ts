// The routing strategies: unit tests of the pure ordering functions and the health tracker they read, then
// each strategy through HTTP against fake providers.
import { after, afterEach, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { startOpenAIFake } from "./fakes/openai.ts";
import type { FakeServer } from "./fakes/common.ts";
import { FakeClock, postJson, startRouter, type RunningRouter } from "./helpers/router.ts";
import {
  byCost, byHealth, byLatency, DEFAULT_OUTPUT_TOKENS, estimateCost, estimateRequestTokens, orderCandidates,
  type Rankable, type RankSignals,
} from "../src/routing/strategies.ts";
import { priceFor } from "../src/pricing.ts";
import { HealthTracker, LATENCY_STALE_MS, WINDOW, WINDOW_MS } from "../src/routing/health.ts";
import type { BreakerState } from "../src/routing/breaker.ts";

const cand = (name: string, pricing?: Rankable["provider"]["pricing"], model = "m"): Rankable => ({ provider: { name, pricing }, model });
const names = (cs: Rankable[]) => cs.map((c) => c.provider.name);

function signals(s: { state?: Record<string, BreakerState>; latency?: Record<string, number>; rate?: Record<string, number> }): RankSignals {
  return { state: (n) => s.state?.[n], latency: (n) => s.latency?.[n], successRate: (n) => s.rate?.[n] };
}

describe("estimateRequestTokens", () => {
  it("estimates input from the text of every message (as recorded usage does) and output from max_tokens", () => {
    const t = estimateRequestTokens("chat", {
      model: "x",
      messages: [
        { role: "system", content: "x".repeat(40) },
        { role: "user", content: [{ type: "text", text: "y".repeat(400) }, { type: "image_url", image_url: { url: "data:," } }] },
      ],
      max_tokens: 77,
    });
    // 40 + 400 characters of text, one newline after each message's text: ceil(442 / 4)
    assert.deepEqual(t, { input: 111, output: 77 });
  });

  it("prefers max_completion_tokens, defaults the output, and reads legacy prompts", () => {
    assert.equal(estimateRequestTokens("chat", { model: "x", messages: [], max_completion_tokens: 9, max_tokens: 100 }).output, 9);
    assert.equal(estimateRequestTokens("chat", { model: "x", messages: [] }).output, DEFAULT_OUTPUT_TOKENS);
    assert.deepEqual(estimateRequestTokens("text", { model: "x", prompt: ["z".repeat(8)] }), { input: 2, output: DEFAULT_OUTPUT_TOKENS });
    assert.equal(estimateRequestTokens("text", { model: "x", prompt: "z".repeat(9) }).input, 3);
  });
});

describe("cost strategy", () => {
  it("prices by model with '*' as the fallback", () => {
    const pricing = { big: { input: 10, output: 30 }, "*": { input: 1, output: 2 } };
    assert.deepEqual(priceFor(pricing, "big"), { input: 10, output: 30 });
    assert.deepEqual(priceFor(pricing, "other"), { input: 1, output: 2 });
    assert.equal(priceFor({ big: { input: 1, output: 1 } }, "small"), undefined);
    assert.equal(priceFor(undefined, "small"), undefined);
    assert.equal(estimateCost(cand("a", pricing, "big"), { input: 1_000_000, output: 500_000 }), 25);
    assert.equal(estimateCost(cand("a"), { input: 1, output: 1 }), Infinity);
  });

  it("orders cheapest first, free (priced 0) before paid, unpriced last, ties in chain order", () => {
    const cs = [
      cand("unpriced"),
      cand("pricey", { "*": { input: 5, output: 15 } }),
      cand("cheap1", { "*": { input: 0.1, output: 0.2 } }),
      cand("free", { "*": { input: 0, output: 0 } }),
      cand("cheap2", { "*": { input: 0.1, output: 0.2 } }),
      cand("other-model-only", { "gpt-x": { input: 0, output: 0 } }),
    ];
    assert.deepEqual(names(byCost(cs, { input: 100, output: 100 })), ["free", "cheap1", "cheap2", "pricey", "unpriced", "other-model-only"]);
  });

  it("uses the model each provider would run", () => {
    const cs = [cand("a", { big: { input: 50, output: 50 }, "*": { input: 1, output: 1 } }, "big"), cand("b", { "*": { input: 2, output: 2 } })];
    assert.deepEqual(names(byCost(cs, { input: 10, output: 10 })), ["b", "a"]);
  });

  it("weighs input and output: a long prompt with a short answer favours cheap input", () => {
    const cs = [cand("cheap-out", { "*": { input: 3, output: 1 } }), cand("cheap-in", { "*": { input: 1, output: 3 } })];
    assert.deepEqual(names(byCost(cs, { input: 10_000, output: 10 })), ["cheap-in", "cheap-out"]);
    assert.deepEqual(names(byCost(cs, { input: 10, output: 10_000 })), ["cheap-out", "cheap-in"]);
  });
});

describe("latency strategy", () => {
  it("puts providers without data first (chain order), then the lowest latency", () => {
    const cs = [cand("slow"), cand("new1"), cand("fast"), cand("mid"), cand("new2")];
    const order = byLatency(cs, signals({ latency: { slow: 900, fast: 50, mid: 300 } }));
    assert.deepEqual(names(order), ["new1", "new2", "fast", "mid", "slow"]);
  });
});

describe("health strategy", () => {
  it("orders by breaker state (closed, half-open, open), then by success rate; no data counts as healthy", () => {
    const cs = [cand("open"), cand("half"), cand("flaky"), cand("solid"), cand("unknown")];
    const order = byHealth(cs, signals({
      state: { open: "open", half: "half_open", flaky: "closed", solid: "closed" },
      rate: { open: 1, half: 1, flaky: 0.5, solid: 0.9 },
    }));
    assert.deepEqual(names(order), ["unknown", "solid", "flaky", "half", "open"]);
  });

  it("a half-open provider with a perfect rate still comes after a closed one with a poor rate", () => {
    const order = byHealth([cand("half"), cand("poor")], signals({ state: { half: "half_open", poor: "closed" }, rate: { half: 1, poor: 0 } }));
    assert.deepEqual(names(order), ["poor", "half"]);
  });
});

describe("orderCandidates", () => {
  it("dispatches on the strategy and keeps priority order as written", () => {
    const cs = [cand("b", { "*": { input: 9, output: 9 } }), cand("a", { "*": { input: 1, output: 1 } })];
    const sig = signals({ latency: { a: 500, b: 10 }, rate: { a: 1, b: 0.1 } });
    const tokens = () => ({ input: 1, output: 1 });
    assert.deepEqual(names(orderCandidates("priority", cs, sig, tokens)), ["b", "a"]);
    assert.deepEqual(names(orderCandidates("cost", cs, sig, tokens)), ["a", "b"]);
    assert.deepEqual(names(orderCandidates("latency", cs, sig, tokens)), ["b", "a"]);
    assert.deepEqual(names(orderCandidates("health", cs, sig, tokens)), ["a", "b"]);
  });

  it("does not estimate tokens unless the strategy is cost", () => {
    let calls = 0;
    const tokens = () => (calls++, { input: 1, output: 1 });
    orderCandidates("latency", [cand("a"), cand("b")], signals({}), tokens);
    orderCandidates("cost", [cand("a")], signals({}), tokens);
    assert.equal(calls, 0);
    orderCandidates("cost", [cand("a"), cand("b")], signals({}), tokens);
    assert.equal(calls, 1);
  });
});

describe("HealthTracker", () => {
  const mk = () => {
    const c = { t: 1_000_000, now: () => c.t };
    return { c, h: new HealthTracker(undefined, c.now) };
  };

  it("keeps an EWMA of successful latencies", () => {
    const { h } = mk();
    assert.equal(h.latency("a"), undefined);
    h.success("a", 100);
    assert.equal(h.latency("a"), 100);
    h.success("a", 200);
    assert.equal(h.latency("a"), 130);
    h.failure("a");
    assert.equal(h.latency("a"), 130, "failures do not move latency");
  });

  it("forgets latency data that has gone stale, so the provider is tried again", () => {
    const { c, h } = mk();
    h.success("a", 5000);
    c.t += LATENCY_STALE_MS + 1;
    assert.equal(h.latency("a"), undefined);
    h.success("a", 100);
    assert.equal(h.latency("a"), 100, "a fresh start, not averaged with the stale sample");
  });

  it("computes the success rate over the last WINDOW attempts within WINDOW_MS", () => {
    const { c, h } = mk();
    assert.equal(h.successRate("a"), undefined);
    h.success("a", 1);
    h.failure("a");
    h.failure("a");
    h.success("a", 1);
    assert.equal(h.successRate("a"), 0.5);
    for (let i = 0; i < WINDOW; i++) h.success("a", 1);
    assert.equal(h.successRate("a"), 1, "older outcomes fall out of the window");
    c.t += WINDOW_MS + 1;
    h.failure("a");
    assert.equal(h.successRate("a"), 0, "outcomes older than WINDOW_MS are ignored");
  });

  it("sync keeps data for unchanged names and drops removed ones", () => {
    const { h } = mk();
    h.success("a", 10);
    h.success("b", 10);
    h.sync({ providers: [{ name: "a" }, { name: "c" }] as any });
    assert.equal(h.latency("a"), 10);
    assert.equal(h.latency("b"), undefined);
    assert.equal(h.successRate("c"), undefined);
  });
});

describe("strategies through HTTP", () => {
  let x: FakeServer, y: FakeServer, z: FakeServer;
  let r: RunningRouter | undefined;
  let clock: FakeClock;
  before(async () => {
    x = await startOpenAIFake({ reply: "x" });
    y = await startOpenAIFake({ reply: "y" });
    z = await startOpenAIFake({ reply: "z" });
  });
  after(async () => {
    await x.stop();
    await y.stop();
    await z.stop();
  });
  afterEach(async () => {
    await r?.stop();
    r = undefined;
  });

  async function start(strategy: string, pricing: Record<string, string> = {}, chain = "[x, y, z]") {
    for (const f of [x, y, z]) f.reset();
    clock = new FakeClock();
    const p = (n: string) => (pricing[n] ? `, pricing: ${pricing[n]}` : "");
    r = await startRouter(`
providers:
  - { name: x, type: openai, endpoint: ${x.url}/v1, default_model: mx${p("x")} }
  - { name: y, type: openai, endpoint: ${y.url}/v1, default_model: my${p("y")} }
  - { name: z, type: openai, endpoint: ${z.url}/v1, default_model: mz${p("z")} }
routing: { strategy: ${strategy}, fallback_chain: ${chain} }
circuit_breaker: { failure_threshold: 100 }
`, {}, { clock: clock.now });
  }
  const ask = async (extra: Record<string, unknown> = {}) => {
    const res = await postJson(`${r!.url}/v1/chat/completions`, { model: "any", messages: [{ role: "user", content: "hello there" }], ...extra });
    await res.body?.cancel();
    return res.headers.get("x-router-provider");
  };

  it("priority: the chain as written", async () => {
    await start("priority", { x: "{ '*': { input: 9, output: 9 } }", y: "{ '*': { input: 1, output: 1 } }" });
    assert.equal(await ask(), "x");
  });

  it("cost: cheapest first by the pricing table, unpriced last, the rest as fallbacks", async () => {
    await start("cost", { y: "{ '*': { input: 3, output: 6 } }", z: "{ mz: { input: 0.5, output: 1 }, '*': { input: 50, output: 50 } }" });
    assert.equal(await ask(), "z", "z prices its model mz cheapest; x has no price");
    assert.equal(x.requests.length + y.requests.length, 0);
    z.fault = { status: 503 };
    assert.equal(await ask(), "y", "the next cheapest");
    y.fault = { status: 503 };
    assert.equal(await ask(), "x", "the unpriced provider is the last fallback");
  });

  it("cost: the estimate weighs the prompt against max_tokens", async () => {
    await start("cost", { x: "{ '*': { input: 10, output: 1 } }", y: "{ '*': { input: 1, output: 10 } }" });
    const long = "word ".repeat(4000);
    assert.equal(await ask({ messages: [{ role: "user", content: long }], max_tokens: 10 }), "y", "long prompt, short answer: cheap input wins");
    assert.equal(await ask({ max_tokens: 4000 }), "x", "short prompt, long answer: cheap output wins");
  });

  it("latency: new providers earn data first, then the fastest wins; stale data is re-measured", async () => {
    await start("latency");
    x.fault = { delayMs: 400 };
    y.fault = { delayMs: 150 };
    assert.deepEqual([await ask(), await ask(), await ask()], ["x", "y", "z"], "each gets tried while it has no data");
    for (let i = 0; i < 3; i++) assert.equal(await ask(), "z", "z is fastest");
    z.fault = { delayMs: 1000, times: 1 };
    assert.equal(await ask(), "z");
    assert.equal(await ask(), "y", "z's one slow answer (EWMA >= 300 ms) puts y (150 ms) first");
    assert.equal(x.requests.length, 1, "the slowest is not tried again while the others answer");
    x.fault = y.fault = null;
    clock.advance(LATENCY_STALE_MS + 1);
    assert.equal(await ask(), "x", "with all data stale, the chain order again");
  });

  it("health: a flaky provider loses first place until its success rate recovers", async () => {
    await start("health", {}, "[x, y]");
    x.fault = { status: 503, times: 1 };
    assert.equal(await ask(), "y", "x failed, y answered");
    assert.equal(await ask(), "y", "y (100%) before x (0%)");
    assert.equal(x.requests.length, 1);
    y.fault = { status: 503 };
    assert.equal(await ask(), "x", "y fails (2/3), x answers (1/2)");
    assert.equal(await ask(), "x", "y still first at 2/3 but fails (2/4); x answers (2/3)");
    y.fault = null;
    const before = y.requests.length;
    assert.equal(await ask(), "x", "x (2/3) now before y (2/4)");
    assert.equal(y.requests.length, before);
  });
});
