// GET /stats, GET /metrics and the request log, end to end: real HTTP through the router to fake providers
// with known usage, streamed and not, failovers, estimates, bounded labels and no secret anywhere.
import { after, before, describe, it } from "node:test";
import http from "node:http";
import assert from "node:assert/strict";
import { startOpenAIFake } from "./fakes/openai.ts";
import type { FakeServer } from "./fakes/common.ts";
import { postJson, readSse, runtime, startRouter, type RunningRouter } from "./helpers/router.ts";
import { parseMetrics, scrape, value } from "./helpers/metrics.ts";
import { runMain } from "./helpers/platform.ts";

const chat = (model: string, extra: Record<string, unknown> = {}) => ({ model, messages: [{ role: "user", content: "hi" }], ...extra });
const approx = (a: number, b: number, eps = 1e-9) => assert.ok(Math.abs(a - b) <= eps, `${a} != ${b}`);
const json = (lines: string[]) => lines.map((l) => JSON.parse(l));
const requestLines = (r: RunningRouter) => json(r.logs).filter((l) => l.msg === "request");
/** nearest-rank percentile of unsorted values */
function nearestRank(values: number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.max(1, Math.ceil((p / 100) * s.length)) - 1];
}

async function getStats(r: RunningRouter): Promise<any> {
  const res = await fetch(`${r.url}/stats`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type") ?? "", /application\/json/);
  return res.json();
}

describe("tokens, cost and counters against fakes with known usage", () => {
  let a: FakeServer, b: FakeServer, r: RunningRouter;
  const USAGE = { prompt_tokens: 1000, completion_tokens: 500 };
  // gpt-4o is priced by name; any other model of provider a falls back to "*"
  const COST_4O = (1000 * 2.5 + 500 * 10) / 1e6;
  const COST_STAR = (1000 * 0.5 + 500 * 1) / 1e6;
  before(async () => {
    a = await startOpenAIFake({ reply: "answer from A", usage: USAGE });
    b = await startOpenAIFake({ reply: "answer from B", usage: { prompt_tokens: 20, completion_tokens: 10 } });
    r = await startRouter(`
providers:
  - name: a
    type: openai
    endpoint: ${a.url}/v1
    default_model: gpt-4o
    models: [gpt-4o, gpt-4o-mini]
    timeout_seconds: 1
    pricing: { gpt-4o: { input: 2.5, output: 10 }, "*": { input: 0.5, output: 1 } }
  - { name: b, type: openai, endpoint: ${b.url}/v1, default_model: b-model, pricing: { b-model: { input: 100, output: 200 } } }
`);
  });
  after(async () => {
    await r.stop();
    await a.stop();
    await b.stop();
  });

  it("starts at zero with every provider listed, in the documented shape", async () => {
    const s = await getStats(r);
    assert.deepEqual(Object.keys(s), ["uptime_seconds", "requests", "providers", "totals"]);
    assert.ok(typeof s.uptime_seconds === "number" && s.uptime_seconds >= 0);
    assert.deepEqual(s.requests, { total: 0, success: 0, failed: 0 });
    assert.deepEqual(Object.keys(s.providers), ["a", "b"]);
    assert.deepEqual(s.providers.a, {
      requests: 0, successes: 0, failures: 0, failovers: 0,
      latency_ms: { p50: null, p95: null, p99: null }, ttfb_ms: { p50: null, p95: null, p99: null },
      tokens: { input: 0, output: 0 }, cost_usd: 0, state: "closed", routing_window: { attempts: 0, success_rate: null, p95_ms: null },
    });
    assert.deepEqual(s.totals, { tokens: { input: 0, output: 0 }, cost_usd: 0 });
  });

  it("records non-streamed, streamed and legacy completions with the provider's usage and price", async () => {
    for (let i = 0; i < 3; i++) {
      const res = await postJson(`${r.url}/v1/chat/completions`, chat("gpt-4o"));
      assert.equal(res.status, 200);
      assert.deepEqual((await res.json()).usage, { ...USAGE, total_tokens: 1500 });
    }
    for (let i = 0; i < 2; i++) {
      // the client does not ask for usage: the router still gets it upstream and counts it
      const res = await postJson(`${r.url}/v1/chat/completions`, chat("gpt-4o-mini", { stream: true }));
      const events = await readSse(res);
      assert.equal(events.at(-1), "[DONE]");
      assert.ok(events.slice(0, -1).every((e) => !e.usage));
    }
    const res = await postJson(`${r.url}/v1/completions`, { model: "gpt-4o", prompt: "Say hi", stream: true, stream_options: { include_usage: true } });
    await readSse(res);

    const s = await getStats(r);
    assert.deepEqual(s.requests, { total: 6, success: 6, failed: 0 });
    assert.equal(s.providers.a.requests, 6);
    assert.equal(s.providers.a.successes, 6);
    assert.equal(s.providers.a.failures, 0);
    assert.deepEqual(s.providers.a.tokens, { input: 6000, output: 3000 });
    approx(s.providers.a.cost_usd, 4 * COST_4O + 2 * COST_STAR);
    assert.ok(s.providers.a.latency_ms.p50 > 0 && s.providers.a.latency_ms.p50 <= s.providers.a.latency_ms.p95);
    assert.ok(s.providers.a.latency_ms.p95 <= s.providers.a.latency_ms.p99);
    assert.ok(s.providers.a.ttfb_ms.p50 > 0, "streams have a time to first byte");
    assert.equal(s.providers.b.requests, 0);
    assert.deepEqual(s.totals.tokens, { input: 6000, output: 3000 });
    approx(s.totals.cost_usd, 4 * COST_4O + 2 * COST_STAR);

    const m = await scrape(r.url);
    assert.equal(value(m, "failover_router_requests_total", { endpoint: "/v1/chat/completions", status: "200" }), 5);
    assert.equal(value(m, "failover_router_requests_total", { endpoint: "/v1/completions", status: "200" }), 1);
    assert.equal(value(m, "failover_router_request_duration_seconds_count", { endpoint: "/v1/chat/completions" }), 5);
    assert.equal(value(m, "failover_router_upstream_requests_total", { provider: "a", outcome: "success" }), 6);
    assert.equal(value(m, "failover_router_upstream_latency_seconds_count", { provider: "a" }), 6);
    assert.equal(value(m, "failover_router_upstream_ttfb_seconds_count", { provider: "a" }), 3, "only streams have a ttfb");
    assert.equal(value(m, "failover_router_tokens_total", { provider: "a", model: "gpt-4o", direction: "input" }), 4000);
    assert.equal(value(m, "failover_router_tokens_total", { provider: "a", model: "gpt-4o", direction: "output" }), 2000);
    assert.equal(value(m, "failover_router_tokens_total", { provider: "a", model: "gpt-4o-mini", direction: "input" }), 2000);
    approx(value(m, "failover_router_cost_usd_total", { provider: "a", model: "gpt-4o" })!, 4 * COST_4O);
    approx(value(m, "failover_router_cost_usd_total", { provider: "a", model: "gpt-4o-mini" })!, 2 * COST_STAR);
    assert.equal(value(m, "failover_router_failovers_total", { provider: "a" }), 0);
    assert.equal(value(m, "failover_router_in_flight_requests"), 0);
    assert.equal(value(m, "failover_router_build_info", { runtime }), 1);

    const lines = requestLines(r);
    assert.equal(lines.length, 6, "one line per client request");
    for (const l of lines) {
      assert.equal(l.level, "info");
      assert.equal(l.status, 200);
      assert.equal(l.provider, "a");
      assert.deepEqual(l.tokens, { input: 1000, output: 500 });
      assert.ok(typeof l.latency_ms === "number" && typeof l.request_id === "string" && !Number.isNaN(Date.parse(l.time)));
      assert.equal(l.attempts.length, 1);
      assert.equal(l.attempts[0].outcome, "success");
    }
    assert.deepEqual(lines.map((l) => l.path), [...Array(5).fill("/v1/chat/completions"), "/v1/completions"]);
    assert.deepEqual(lines.map((l) => l.stream), [false, false, false, true, true, true]);
    approx(lines[0].cost_usd, COST_4O);
    approx(lines[3].cost_usd, COST_STAR);
    assert.equal(lines[3].model, "gpt-4o-mini");
    assert.equal(lines[3].attempts[0].model, "gpt-4o-mini");
    assert.ok(lines[3].attempts[0].ttfb_ms >= 0);
    for (const l of lines) assert.ok(!JSON.stringify(l).includes("answer from A"), "no response body in the log");
    for (const l of lines) assert.ok(!JSON.stringify(l).includes('"hi"'), "no request body in the log");
  });

  it("counts failovers, failures and timeouts per provider and logs the attempt chain", async () => {
    r.logs.length = 0;
    a.fault = { status: 500, times: 2 };
    for (let i = 0; i < 2; i++) {
      const res = await postJson(`${r.url}/v1/chat/completions`, chat("gpt-4o"), { "x-request-id": `fo-${i}` });
      assert.equal(res.headers.get("x-router-provider"), "b");
      await res.text();
    }
    a.fault = { hang: true, times: 1 };
    const res = await postJson(`${r.url}/v1/chat/completions`, chat("gpt-4o", { stream: true }), { "x-request-id": "fo-timeout" });
    assert.equal(res.headers.get("x-router-provider"), "b");
    await readSse(res);
    a.fault = null;
    const s = await getStats(r);
    assert.equal(s.providers.a.failovers, 3);
    assert.equal(s.providers.a.failures, 3);
    assert.equal(s.providers.a.requests, 9);
    assert.equal(s.providers.b.successes, 3);
    assert.equal(s.providers.b.failovers, 0);
    assert.deepEqual(s.providers.b.tokens, { input: 60, output: 30 });
    approx(s.providers.b.cost_usd, 3 * (20 * 100 + 10 * 200) / 1e6);
    approx(s.totals.cost_usd, s.providers.a.cost_usd + s.providers.b.cost_usd);
    const m = await scrape(r.url);
    assert.equal(value(m, "failover_router_failovers_total", { provider: "a" }), 3);
    assert.equal(value(m, "failover_router_upstream_requests_total", { provider: "a", outcome: "error" }), 2);
    assert.equal(value(m, "failover_router_upstream_requests_total", { provider: "a", outcome: "timeout" }), 1);
    assert.equal(value(m, "failover_router_upstream_requests_total", { provider: "b", outcome: "success" }), 3);
    assert.equal(value(m, "failover_router_tokens_total", { provider: "b", model: "b-model", direction: "output" }), 30);

    const lines = requestLines(r);
    assert.deepEqual(lines.map((l) => l.request_id), ["fo-0", "fo-1", "fo-timeout"]);
    assert.deepEqual(lines[0].attempts.map((x: any) => [x.provider, x.outcome, x.status]), [["a", "error", 500], ["b", "success", 200]]);
    assert.match(lines[0].attempts[0].reason, /fake error 500/);
    assert.deepEqual(lines[2].attempts.map((x: any) => [x.provider, x.outcome]), [["a", "timeout"], ["b", "success"]]);
    assert.ok(lines[2].latency_ms >= 900, "the request's latency includes the failed attempt");
    // b's reported usage, and the input the timed-out attempt at a is billed (estimated: "hi" is 1 token)
    assert.deepEqual(lines[2].tokens, { input: 21, output: 10, estimated: true });
  });

  it("counts and logs requests the HTTP layer answers itself, but not /health, /stats or /metrics", async () => {
    r.logs.length = 0;
    const before = await getStats(r);
    let res = await postJson(`${r.url}/v1/chat/completions`, { model: "gpt-4o" }, { "x-request-id": "bad-1" });
    assert.equal(res.status, 400);
    await res.text();
    res = await fetch(`${r.url}/v1/chat/completions`);
    assert.equal(res.status, 405);
    await res.text();
    res = await fetch(`${r.url}/no/such/path`);
    assert.equal(res.status, 404);
    await res.text();
    res = await fetch(`${r.url}/v1/models`);
    assert.equal(res.status, 200);
    await res.text();
    res = await postJson(`${r.url}/stats`, {});
    assert.equal(res.status, 405);
    assert.equal(res.headers.get("allow"), "GET");
    await res.text();
    res = await postJson(`${r.url}/metrics`, {});
    assert.equal(res.status, 405);
    await res.text();
    await (await fetch(`${r.url}/health`)).text();
    const m = await scrape(r.url);
    const after = await getStats(r);
    assert.equal(after.requests.total - before.requests.total, 4);
    assert.equal(after.requests.failed - before.requests.failed, 3);
    assert.equal(value(m, "failover_router_requests_total", { endpoint: "/v1/chat/completions", status: "400" }), 1);
    assert.equal(value(m, "failover_router_requests_total", { endpoint: "/v1/chat/completions", status: "405" }), 1);
    assert.equal(value(m, "failover_router_requests_total", { endpoint: "other", status: "404" }), 1);
    assert.equal(value(m, "failover_router_requests_total", { endpoint: "/v1/models", status: "200" }), 1);
    const lines = requestLines(r);
    assert.deepEqual(lines.map((l) => [l.method, l.path, l.status]), [
      ["POST", "/v1/chat/completions", 400], ["GET", "/v1/chat/completions", 405], ["GET", "/no/such/path", 404], ["GET", "/v1/models", 200],
    ]);
    assert.equal(lines[0].request_id, "bad-1");
  });

  it("serves /metrics as text exposition 0.0.4 with HELP and TYPE for every family", async () => {
    const res = await fetch(`${r.url}/metrics`);
    assert.equal(res.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
    const text = await res.text();
    assert.ok(text.endsWith("\n"));
    const m = parseMetrics(text);
    const expected: Record<string, string> = {
      failover_router_requests_total: "counter",
      failover_router_request_duration_seconds: "histogram",
      failover_router_upstream_requests_total: "counter",
      failover_router_upstream_latency_seconds: "histogram",
      failover_router_upstream_ttfb_seconds: "histogram",
      failover_router_tokens_total: "counter",
      failover_router_cost_usd_total: "counter",
      failover_router_circuit_state: "gauge",
      failover_router_failovers_total: "counter",
      failover_router_stream_recoveries_total: "counter",
      failover_router_in_flight_requests: "gauge",
      failover_router_build_info: "gauge",
    };
    for (const [name, type] of Object.entries(expected)) {
      assert.equal(m.types.get(name), type, name);
      assert.ok(m.help.get(name), `HELP for ${name}`);
    }
    for (const s of m.samples) {
      const family = s.name.replace(/_(bucket|sum|count)$/, "");
      assert.ok(m.types.has(s.name) || m.types.get(family) === "histogram", `sample ${s.name} has a TYPE`);
    }
    assert.equal(value(m, "failover_router_circuit_state", { provider: "a" }), 0);
    assert.equal(value(m, "failover_router_build_info", { version: "0.1.0", runtime }), 1);
  });

  it("reports breaker states from router.providerState once the router has one", async () => {
    const router = r.router as unknown as { providerState?: (n: string) => string };
    router.providerState = (n) => (n === "a" ? "open" : "half_open");
    try {
      const s = await getStats(r);
      assert.equal(s.providers.a.state, "open");
      assert.equal(s.providers.b.state, "half_open");
      const m = await scrape(r.url);
      assert.equal(value(m, "failover_router_circuit_state", { provider: "a" }), 1);
      assert.equal(value(m, "failover_router_circuit_state", { provider: "b" }), 2);
    } finally {
      delete router.providerState;
    }
  });
});

describe("estimated usage when the provider reports none", () => {
  let f: FakeServer, r: RunningRouter;
  const reply = "abcdefghij".repeat(4); // 40 characters: 10 tokens at 4 characters a token
  const prompt = "hello world, how are you?"; // 25 characters + "\n" between messages: 7 tokens
  before(async () => {
    f = await startOpenAIFake({ reply, usage: null });
    r = await startRouter(`
providers:
  - { name: f, type: openai_compatible, endpoint: ${f.url}/v1, default_model: local, pricing: { "*": { input: 1000, output: 2000 } } }
`);
  });
  after(async () => {
    await r.stop();
    await f.stop();
  });

  it("estimates input and output tokens, marks them estimated, and prices them", async () => {
    const body = { model: "local", messages: [{ role: "user", content: prompt }] };
    let res = await postJson(`${r.url}/v1/chat/completions`, body);
    assert.equal((await res.json()).usage, undefined, "the client gets the upstream body untouched");
    res = await postJson(`${r.url}/v1/chat/completions`, { ...body, stream: true });
    const events = await readSse(res);
    assert.equal(events.at(-1), "[DONE]");
    assert.ok(events.slice(0, -1).every((e) => !e.usage));
    const s = await getStats(r);
    assert.deepEqual(s.providers.f.tokens, { input: 14, output: 20 });
    approx(s.providers.f.cost_usd, 2 * (7 * 1000 + 10 * 2000) / 1e6);
    const m = await scrape(r.url);
    assert.equal(value(m, "failover_router_estimated_usage_total", { provider: "f" }), 2);
    assert.equal(value(m, "failover_router_tokens_total", { provider: "f", model: "local", direction: "output" }), 20);
    const lines = requestLines(r);
    assert.deepEqual(lines.map((l) => l.tokens), [{ input: 7, output: 10, estimated: true }, { input: 7, output: 10, estimated: true }]);
  });
});

describe("the output estimate of a stream whose provider reports no usage", () => {
  // The characters of every chunk count: content, reasoning and tool-call arguments, as JSON.parse gives them
  // (escapes, non-ASCII, emoji as a surrogate pair), with spaces around colons, and the "usage": null every chunk
  // carries when usage was asked for.
  const deltas: Record<string, unknown>[] = [
    { role: "assistant", content: "" },
    { content: "Hello" },
    { content: 'quote " backslash \\ newline \n tab \t' },
    { content: "Grüße ✓ 😀 \u00e9" },
    { reasoning_content: "thinking \"hard\"" },
    { tool_calls: [{ index: 0, id: "call_1", type: "function", function: { name: "f", arguments: '{"city": "Zürich"}' } }] },
    { content: null },
    { content: "end" },
  ];
  const chunk = (delta: Record<string, unknown>, i: number) => {
    const c = { id: "c", object: "chat.completion.chunk", created: 1, model: "m", choices: [{ index: 0, delta, logprobs: null, finish_reason: null }], usage: null };
    // some with spaces around colons, and non-ASCII written as \u escapes (an emoji as a surrogate pair)
    const text = i % 2 ? JSON.stringify(c) : JSON.stringify(c, null, 1).replace(/\n\s*/g, " ");
    return text.replaceAll("é", "\\u00e9").replaceAll("😀", "\\ud83d\\ude00");
  };
  let up: http.Server;
  let r: RunningRouter;
  before(async () => {
    up = http.createServer((req, res) => {
      req.resume();
      req.on("end", () => {
        res.writeHead(200, { "content-type": "text/event-stream" });
        for (let i = 0; i < deltas.length; i++) res.write(`data: ${chunk(deltas[i], i)}\n\n`);
        res.end(`data: ${chunk({}, 1).replace('"finish_reason":null', '"finish_reason":"stop"')}\n\ndata: [DONE]\n\n`);
      });
    });
    await new Promise<void>((ok) => up.listen(0, "127.0.0.1", () => ok()));
    r = await startRouter(`
providers:
  - { name: f, type: openai_compatible, endpoint: "http://127.0.0.1:${(up.address() as { port: number }).port}/v1", default_model: m }
`);
  });
  after(async () => {
    await r.stop();
    await new Promise<void>((ok) => up.close(() => ok()));
  });

  it("counts the characters JSON.parse would", async () => {
    const res = await postJson(`${r.url}/v1/chat/completions`, { model: "m", stream: true, messages: [{ role: "user", content: "hi" }] });
    const events = await readSse(res);
    assert.equal(events.at(-1), "[DONE]");
    assert.equal(events.length, deltas.length + 2, "every chunk reaches the client");
    let chars = 0;
    for (const d of deltas) {
      if (typeof d.content === "string") chars += d.content.length;
      if (typeof d.reasoning_content === "string") chars += d.reasoning_content.length;
      for (const t of (d.tool_calls as any[]) ?? []) chars += t.function.arguments.length;
    }
    const s = await getStats(r);
    assert.equal(s.providers.f.tokens.output, Math.ceil(chars / 4), `${chars} characters`);
  });
});

describe("percentiles in /stats", () => {
  let f: FakeServer, r: RunningRouter;
  before(async () => {
    f = await startOpenAIFake();
    r = await startRouter(`providers: [{ name: f, type: openai, endpoint: "${f.url}/v1", default_model: m }]`);
  });
  after(async () => {
    await r.stop();
    await f.stop();
  });

  it("match the nearest-rank percentiles of the logged attempt latencies", async () => {
    const delays = [0, 40, 5, 80, 10, 0, 60, 20, 100, 15, 0, 30, 5, 70, 25, 0, 50, 35, 90, 45];
    for (const d of delays) {
      f.fault = d ? { delayMs: d, times: 1 } : null;
      const res = await postJson(`${r.url}/v1/chat/completions`, chat("m", { stream: d % 20 === 0 }));
      await res.text();
    }
    const s = await getStats(r);
    const attempts = requestLines(r).map((l) => l.attempts[0]);
    assert.equal(attempts.length, delays.length);
    const lat = attempts.map((x: any) => x.latency_ms); // rounded to 0.1 ms in the log
    for (const p of [50, 95, 99] as const) {
      const want = nearestRank(lat, p);
      const got = s.providers.f.latency_ms[`p${p}`];
      assert.ok(Math.abs(got - want) <= 0.051, `p${p}: /stats ${got}, log ${want}`);
    }
    assert.ok(s.providers.f.latency_ms.p99 >= 100, "the slowest attempt took at least its 100 ms delay");
    const ttfb = attempts.filter((x: any) => x.ttfb_ms !== undefined).map((x: any) => x.ttfb_ms);
    assert.equal(ttfb.length, delays.filter((d) => d % 20 === 0).length);
    assert.ok(Math.abs(s.providers.f.ttfb_ms.p50 - nearestRank(ttfb, 50)) <= 0.051);
  });
});

describe("in-flight requests", () => {
  let f: FakeServer, r: RunningRouter;
  before(async () => {
    f = await startOpenAIFake({ chunks: 4 });
    r = await startRouter(`providers: [{ name: f, type: openai, endpoint: "${f.url}/v1", default_model: m }]`);
  });
  after(async () => {
    await r.stop();
    await f.stop();
  });

  it("counts a stream as in flight until its last chunk", async () => {
    f.fault = { chunkDelayMs: 300 };
    const res = await postJson(`${r.url}/v1/chat/completions`, chat("m", { stream: true }));
    const reader = res.body!.getReader();
    await reader.read();
    assert.equal(value(await scrape(r.url), "failover_router_in_flight_requests"), 1);
    while (!(await reader.read()).done) { /* drain */ }
    f.fault = null;
    // the router records the end as the last chunk goes out: poll briefly
    let inFlight = -1;
    for (let i = 0; i < 50 && inFlight !== 0; i++) {
      inFlight = value(await scrape(r.url), "failover_router_in_flight_requests")!;
      if (inFlight !== 0) await new Promise((ok) => setTimeout(ok, 20));
    }
    assert.equal(inFlight, 0);
    const m = await scrape(r.url);
    assert.equal(value(m, "failover_router_request_duration_seconds_count", { endpoint: "/v1/chat/completions" }), 1);
    assert.ok(value(m, "failover_router_request_duration_seconds_sum", { endpoint: "/v1/chat/completions" })! >= 0.5, "the duration covers the whole stream");
  });
});

describe("bounded label sets", () => {
  let r: RunningRouter;
  before(async () => {
    r = await startRouter(`
logging: { level: silent }
providers:
  - { name: m1, type: mock, default_model: mock-a, models: [mock-a, mock-b], pricing: { "*": { input: 1, output: 1 } } }
  - { name: m2, type: mock, default_model: mock-c }
`);
  });
  after(() => r.stop());

  it("labels 1,000 distinct client model names 'other' or by their configured model", async () => {
    const send = (model: string) => postJson(`${r.url}/v1/chat/completions`, chat(model)).then((res) => res.text());
    await send("mock-b");
    await send("m2/mock-c");
    const base = await (await fetch(`${r.url}/metrics`)).text();
    const baseSeries = new Set(parseMetrics(base).samples.map((s) => `${s.name}${JSON.stringify(s.labels)}`));
    const names = Array.from({ length: 1000 }, (_, i) => `client-model-${i}-${Math.random().toString(36).slice(2, 8)}`);
    for (let i = 0; i < names.length; i += 50) {
      // half go through the chain (resolved to the default model), half are pinned with provider/model
      await Promise.all(names.slice(i, i + 50).map((n, j) => send(j % 2 ? `m1/${n}` : n)));
    }
    const text = await (await fetch(`${r.url}/metrics`)).text();
    const m = parseMetrics(text);
    for (const n of names) assert.ok(!text.includes(n), `model ${n} must not become a label`);
    const models = new Set(m.samples.filter((s) => s.labels.model !== undefined).map((s) => s.labels.model));
    assert.deepEqual([...models].sort(), ["mock-a", "mock-b", "mock-c", "other"]);
    const series = new Set(m.samples.map((s) => `${s.name}${JSON.stringify(s.labels)}`));
    const added = [...series].filter((s) => !baseSeries.has(s));
    // new series: only m1's default model (chain requests) and "other" (pinned unknown names)
    assert.deepEqual(added.sort(), [
      'failover_router_cost_usd_total{"provider":"m1","model":"mock-a"}',
      'failover_router_cost_usd_total{"provider":"m1","model":"other"}',
      'failover_router_tokens_total{"provider":"m1","model":"mock-a","direction":"input"}',
      'failover_router_tokens_total{"provider":"m1","model":"mock-a","direction":"output"}',
      'failover_router_tokens_total{"provider":"m1","model":"other","direction":"input"}',
      'failover_router_tokens_total{"provider":"m1","model":"other","direction":"output"}',
    ]);
    assert.equal(value(m, "failover_router_requests_total", { endpoint: "/v1/chat/completions", status: "200" }), 1002);
    const stats = JSON.stringify(await getStats(r));
    assert.ok(stats.length < 2000, "the /stats document does not grow with client model names");
  });
});

describe("log format and level", () => {
  let f: FakeServer, r: RunningRouter;
  before(async () => {
    f = await startOpenAIFake();
    r = await startRouter(`
logging: { level: warn, format: pretty }
providers: [{ name: f, type: openai, endpoint: "${f.url}/v1", default_model: m }]
`);
  });
  after(async () => {
    await r.stop();
    await f.stop();
  });

  it("writes only failed requests at level warn, as one pretty line", async () => {
    await (await postJson(`${r.url}/v1/chat/completions`, chat("m"))).text();
    assert.equal(r.logs.length, 0, "a 200 is logged at info");
    f.fault = { status: 503, body: { error: { message: "upstream\nis \"down\"" } }, times: 1 };
    const res = await postJson(`${r.url}/v1/chat/completions`, chat("m"), { "x-request-id": "pretty-1" });
    assert.equal(res.status, 502);
    await res.text();
    assert.equal(r.logs.length, 1);
    const line = r.logs[0];
    assert.ok(!line.includes("\n"));
    assert.match(line, /^\d{4}-\d\d-\d\dT[\d:.]+Z WARN  request request_id=pretty-1 method=POST path=\/v1\/chat\/completions status=502 /);
    assert.match(line, /attempts=\[\{"provider":"f".*"outcome":"error","status":503/);
    assert.match(line, / latency_ms=[\d.]+$/);
  });
});

describe("no secret in logs, /stats or /metrics", () => {
  const KEY = "sk-DISTINCTIVE-obs-test-key-7f3a9c41";
  const HEADER_SECRET = "hdr-DISTINCTIVE-secret-55e0b2";
  let f: FakeServer, g: FakeServer;
  let stopMain = async () => {};
  before(async () => {
    f = await startOpenAIFake();
    g = await startOpenAIFake();
  });
  after(async () => {
    await stopMain();
    await f.stop();
    await g.stop();
  });

  it("runs main() with a distinctive key and never writes it", async () => {
    const yaml = `
server: { host: 127.0.0.1, port: 0 }
logging: { level: debug }
providers:
  - { name: f, type: openai, endpoint: "${f.url}/v1", api_key: "\${OBS_TEST_KEY}", headers: { x-extra-auth: "${HEADER_SECRET}" }, default_model: m }
  - { name: g, type: openai, endpoint: "${g.url}/v1", default_model: m }
`;
    const running = await runMain({ args: ["--config", "obs-test.yaml"], files: { "obs-test.yaml": yaml }, env: { OBS_TEST_KEY: KEY } });
    stopMain = running.stop;
    const { url, out } = running;
    assert.ok(out.some((l) => l.includes("listening on")), "start-up log");
    const startup = json(out).find((l) => l.msg === "config loaded");
    assert.deepEqual(startup.chain, ["f", "g"]);
    assert.deepEqual(startup.providers.map((p: any) => p.name), ["f", "g"]);

    // the upstream echoes the key in its error messages, as some providers do
    f.fault = { status: 401, body: { error: { message: `Incorrect API key provided: ${KEY} (header ${HEADER_SECRET})`, type: "invalid_request_error" } }, times: 2 };
    let res = await postJson(`${url}/v1/chat/completions`, chat("m"), { authorization: `Bearer ${KEY}` });
    assert.equal(res.status, 200);
    await res.text();
    res = await postJson(`${url}/v1/chat/completions`, chat("m", { stream: true }));
    await res.text();
    res = await postJson(`${url}/v1/chat/completions`, { model: KEY, messages: "bad" });
    assert.equal(res.status, 400);
    await res.text();
    res = await postJson(`${url}/v1/chat/completions`, chat(KEY));
    assert.equal(res.status, 200);
    await res.text();
    assert.equal(f.requests[0].headers.authorization, `Bearer ${KEY}`, "the key was used upstream");
    assert.equal(f.requests[0].headers["x-extra-auth"], HEADER_SECRET);

    const stats = await (await fetch(`${url}/stats`)).text();
    const metrics = await (await fetch(`${url}/metrics`)).text();
    const reqLines = json(out).filter((l) => l.msg === "request");
    assert.equal(reqLines.length, 4, "one request line per client request");
    assert.match(reqLines[0].attempts[0].reason, /Incorrect API key provided: (\*\*\*|\[REDACTED\])/);
    for (const [where, text] of [["logs", out.join("\n")], ["/stats", stats], ["/metrics", metrics]]) {
      assert.ok(!text.includes(KEY), `key found in ${where}`);
      assert.ok(!text.includes(HEADER_SECRET), `header value found in ${where}`);
      assert.ok(!/authorization/i.test(text), `authorization header in ${where}`);
    }
    assert.equal(reqLines[3].model, "[REDACTED]", "a client model name that is a configured secret is redacted too");
  });
});
