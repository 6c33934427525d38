// Hedged requests (routing.hedge) and first_token_timeout_seconds, through HTTP against a fake provider whose
// first token comes late on purpose.
import { after, afterEach, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import type http from "node:http";
import { startOpenAIFake } from "./fakes/openai.ts";
import { openaiChunk, startScriptedFake, streamHead, type ScriptedFake } from "./fakes/scripted.ts";
import { sleep, type FakeServer } from "./fakes/common.ts";
import { scrape, value } from "./helpers/metrics.ts";
import { postJson, readSse, startRouter, type RunningRouter } from "./helpers/router.ts";

const chat = (extra: Record<string, unknown> = {}) => ({ model: "gpt-test", messages: [{ role: "user", content: "hi" }], ...extra });
const TOOLS = [{ type: "function", function: { name: "f", parameters: { type: "object", properties: {} } } }];

/** Polls `cond` until true or `ms` pass. */
async function until(cond: () => boolean, ms = 5000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end && !cond()) await sleep(20);
  return cond();
}

/** A stream whose headers and role chunk come at once and its first token after `ms` (unless the client leaves). */
const slowFirstToken = (ms: number) => async (res: http.ServerResponse) => {
  streamHead(res);
  res.write(`data: ${JSON.stringify({ id: "chatcmpl-s", object: "chat.completion.chunk", created: 1700000000, model: "m", choices: [{ index: 0, delta: { role: "assistant", content: "" }, finish_reason: null }] })}\n\n`);
  for (const end = Date.now() + ms; Date.now() < end && !res.destroyed;) await sleep(20);
  if (res.destroyed) return;
  res.write(openaiChunk("from the slow one"));
  res.write(`data: ${JSON.stringify({ id: "chatcmpl-s", object: "chat.completion.chunk", created: 1700000000, model: "m", choices: [{ index: 0, delta: {}, finish_reason: "stop" }] })}\n\n`);
  res.end("data: [DONE]\n\n");
};
const fast = slowFirstToken(0);

const textOf = (events: any[]) => events.slice(0, -1).map((e) => e.choices[0]?.delta?.content ?? "").join("");

describe("hedged requests", () => {
  let a: ScriptedFake, b: FakeServer;
  let r: RunningRouter | undefined;
  before(async () => {
    a = await startScriptedFake(fast);
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

  async function start(hedge: string, aExtra = ""): Promise<RunningRouter> {
    a.reset();
    b.reset();
    r = await startRouter(`
providers:
  - { name: a, type: openai_compatible, endpoint: ${a.url}/v1, default_model: m, timeout_seconds: 30${aExtra} }
  - { name: b, type: openai_compatible, endpoint: ${b.url}/v1, default_model: m, timeout_seconds: 30 }
routing: { fallback_chain: [a, b], hedge: ${hedge} }
`);
    return r;
  }

  it("a slow first token is answered by the hedge well before it comes; the loser's connection is closed", async () => {
    await start("{ enabled: true, after_ms: 300, max_extra_percent: 100 }");
    a.script = slowFirstToken(20_000);
    const t0 = Date.now();
    const res = await postJson(`${r!.url}/v1/chat/completions`, chat({ stream: true }));
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("x-router-provider"), "b");
    assert.equal(res.headers.get("x-router-attempts"), "2");
    const events = await readSse(res);
    const took = Date.now() - t0;
    assert.equal(events.at(-1), "[DONE]");
    assert.equal(textOf(events), "from B");
    assert.ok(took >= 250 && took < 5000, `took ${took} ms`);
    assert.ok(await until(() => a.aborted === 1, 3000), "the slow upstream sees the router go away");
    const log = r!.logs.map((l) => JSON.parse(l)).filter((l) => l.msg === "request").at(-1);
    assert.deepEqual(log.attempts.map((x: any) => [x.provider, x.outcome]).sort(), [["a", "hedge_lost"], ["b", "success"]]);
    const stats = (await (await fetch(`${r!.url}/stats`)).json()).providers;
    assert.equal(stats.a.requests, 1);
    assert.equal(stats.a.failures, 0, "losing a hedge is not a failure");
    assert.equal(stats.b.successes, 1);
    const m = await scrape(r!.url);
    assert.equal(value(m, "failover_router_hedges_total", { provider: "b" }), 1);
    assert.equal(value(m, "failover_router_hedge_wins_total", { provider: "b" }), 1);
    assert.equal((await (await fetch(`${r!.url}/health`)).json()).providers.a.consecutive_failures, 0);
  });

  it("a fast primary is never hedged", async () => {
    await start("{ enabled: true, after_ms: 300, max_extra_percent: 100 }");
    a.script = fast;
    for (let i = 0; i < 5; i++) {
      const res = await postJson(`${r!.url}/v1/chat/completions`, chat({ stream: true }));
      assert.equal(res.headers.get("x-router-provider"), "a");
      assert.equal(textOf(await readSse(res)), "from the slow one");
    }
    await sleep(400);
    assert.equal(b.requests.length, 0);
    assert.equal(value(await scrape(r!.url), "failover_router_hedges_total", { provider: "b" }), 0);
  });

  it("a hedge is admitted like any attempt: reserved on its provider's budget and settled, never sent over its cost ceiling", async () => {
    const priced = `, pricing: { "*": { input: 1000000, output: 1000000 } }`;
    await start("{ enabled: true, after_ms: 300, max_extra_percent: 100 }");
    await r!.stop();
    b.reset();
    a.script = slowFirstToken(20_000);
    r = await startRouter(`
providers:
  - { name: a, type: openai_compatible, endpoint: ${a.url}/v1, default_model: m, timeout_seconds: 30 }
  - { name: b, type: openai_compatible, endpoint: ${b.url}/v1, default_model: m, timeout_seconds: 30${priced} }
routing: { fallback_chain: [a, b], hedge: { enabled: true, after_ms: 300, max_extra_percent: 100 } }
budgets: { list: [{ name: b-daily, scope: { provider: b }, limit_usd: 100000, period: day }] }
`);
    const res = await postJson(`${r.url}/v1/chat/completions`, chat({ stream: true }));
    assert.equal(res.headers.get("x-router-provider"), "b");
    await readSse(res);
    const budgets = await (await fetch(`${r.url}/admin/budgets`)).json();
    const bDaily = (budgets.budgets ?? budgets).find((x: any) => x.name === "b-daily");
    assert.ok(bDaily.spent_usd > 0, "the hedge's answer is charged to b's budget");
    assert.equal(bDaily.reserved_usd, 0, "and its reservation settled");
    await r.stop();

    // b's worst case ($1 a token) is over a 1-cent ceiling: no hedge goes to it, a's slow answer comes
    a.reset();
    b.reset();
    a.script = slowFirstToken(800);
    r = await startRouter(`
providers:
  - { name: a, type: openai_compatible, endpoint: ${a.url}/v1, default_model: m, timeout_seconds: 30 }
  - { name: b, type: openai_compatible, endpoint: ${b.url}/v1, default_model: m, timeout_seconds: 30${priced}, max_cost_per_request_usd: 0.01 }
routing: { fallback_chain: [a, b], hedge: { enabled: true, after_ms: 200, max_extra_percent: 100 } }
`);
    const slow = await postJson(`${r.url}/v1/chat/completions`, chat({ stream: true }));
    assert.equal(slow.headers.get("x-router-provider"), "a");
    assert.equal(textOf(await readSse(slow)), "from the slow one");
    assert.equal(b.requests.length, 0, "nothing was sent to the provider over its ceiling");
  });

  it("the hedge budget caps the extra requests during a primary outage", async () => {
    await start("{ enabled: true, after_ms: 100, max_extra_percent: 20 }");
    a.script = slowFirstToken(1500);
    const all = await Promise.all(Array.from({ length: 10 }, async () => {
      const res = await postJson(`${r!.url}/v1/chat/completions`, chat({ stream: true }));
      const provider = res.headers.get("x-router-provider");
      const events = await readSse(res);
      assert.equal(events.at(-1), "[DONE]");
      return provider;
    }));
    assert.equal(b.requests.length, 2, "20 % of 10 requests");
    assert.equal(all.filter((p) => p === "b").length, 2);
    assert.equal(all.filter((p) => p === "a").length, 8);
  });

  it("a request with tools is not hedged unless hedge.with_tools", async () => {
    await start("{ enabled: true, after_ms: 100, max_extra_percent: 100 }");
    a.script = slowFirstToken(800);
    let res = await postJson(`${r!.url}/v1/chat/completions`, chat({ stream: true, tools: TOOLS }));
    assert.equal(res.headers.get("x-router-provider"), "a");
    await readSse(res);
    assert.equal(b.requests.length, 0);
    await r!.stop();
    await start("{ enabled: true, after_ms: 100, max_extra_percent: 100, with_tools: true }");
    a.script = slowFirstToken(800);
    res = await postJson(`${r!.url}/v1/chat/completions`, chat({ stream: true, tools: TOOLS }));
    assert.equal(res.headers.get("x-router-provider"), "b");
    await readSse(res);
  });

  it("after_ms: auto waits 2000 ms while the provider has fewer than 20 samples", async () => {
    await start("{ enabled: true, max_extra_percent: 100 }");
    a.script = slowFirstToken(20_000);
    const t0 = Date.now();
    const res = await postJson(`${r!.url}/v1/chat/completions`, chat({ stream: true }));
    await readSse(res);
    const took = Date.now() - t0;
    assert.equal(res.headers.get("x-router-provider"), "b");
    assert.ok(took >= 1900 && took < 6000, `took ${took} ms`);
  });

  it("a client error from the first attempt after the hedge went out answers the client, and the aborted hedge is in the request log", async () => {
    await start("{ enabled: true, after_ms: 200, max_extra_percent: 100 }");
    // the first attempt answers 400 at 600 ms; the hedge (sent at 200 ms) would answer at 3 s
    a.script = async (res) => {
      await sleep(600);
      res.writeHead(400, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: { message: "temperature: out of range", type: "invalid_request_error", param: "temperature" } }));
    };
    b.fault = { delayMs: 3000 };
    const t0 = Date.now();
    const res = await postJson(`${r!.url}/v1/chat/completions`, chat({ stream: true }));
    assert.equal(res.status, 400);
    assert.match((await res.json()).error.message, /temperature/);
    assert.ok(Date.now() - t0 < 2500, "the client error is not held until the hedge ends");
    assert.equal(b.requests.length, 1);
    assert.ok(await until(() => b.aborted === 1, 3000), "the hedge's connection is closed");
    const log = r!.logs.map((l) => JSON.parse(l)).filter((l) => l.msg === "request").at(-1);
    assert.equal(log.status, 400);
    // the request log, /stats and /metrics tell the same story: both attempts were sent
    assert.deepEqual(log.attempts.map((x: any) => [x.provider, x.outcome]).sort(), [["a", "client_error"], ["b", "hedge_lost"]]);
    const stats = (await (await fetch(`${r!.url}/stats`)).json()).providers;
    assert.equal(stats.b.requests, 1);
    assert.equal(stats.b.failures, 0);
  });

  it("a client error from the hedge does not answer while the first attempt goes on: that one answers, as without the hedge", async () => {
    await start("{ enabled: true, after_ms: 200, max_extra_percent: 100 }");
    a.script = slowFirstToken(1000);
    b.fault = { status: 400, body: { error: { message: "unknown parameter: x", type: "invalid_request_error", param: "x" } } };
    const res = await postJson(`${r!.url}/v1/chat/completions`, chat({ stream: true }));
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("x-router-provider"), "a");
    assert.equal(textOf(await readSse(res)), "from the slow one");
    const log = r!.logs.map((l) => JSON.parse(l)).filter((l) => l.msg === "request").at(-1);
    assert.deepEqual(log.attempts.map((x: any) => [x.provider, x.outcome]).sort(), [["a", "success"], ["b", "client_error"]]);
  });

  it("a non-streamed answer of the hedge is recorded with the aborted first attempt", async () => {
    await start("{ enabled: true, after_ms: 200, max_extra_percent: 100 }");
    a.script = async (res) => {
      for (const end = Date.now() + 20_000; Date.now() < end && !res.destroyed;) await sleep(20);
      if (!res.destroyed) res.end();
    };
    const res = await postJson(`${r!.url}/v1/chat/completions`, chat());
    assert.equal(res.status, 200);
    assert.equal((await res.json()).choices[0].message.content, "from B");
    const log = r!.logs.map((l) => JSON.parse(l)).filter((l) => l.msg === "request").at(-1);
    assert.deepEqual(log.attempts.map((x: any) => [x.provider, x.outcome]).sort(), [["a", "hedge_lost"], ["b", "success"]]);
  });

  it("first_token_timeout_seconds bounds the wait for the first token, apart from timeout_seconds", async () => {
    await start("{ enabled: false }", ", first_token_timeout_seconds: 0.5");
    a.script = slowFirstToken(20_000);
    const t0 = Date.now();
    const res = await postJson(`${r!.url}/v1/chat/completions`, chat({ stream: true }));
    assert.equal(res.headers.get("x-router-provider"), "b");
    await readSse(res);
    const took = Date.now() - t0;
    assert.ok(took >= 400 && took < 4000, `took ${took} ms`);
    const log = r!.logs.map((l) => JSON.parse(l)).filter((l) => l.msg === "request").at(-1);
    assert.equal(log.attempts[0].outcome, "timeout");
  });
});
