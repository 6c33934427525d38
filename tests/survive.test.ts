// Streams that survive their provider: silent providers, streams without [DONE], malformed events, the usage
// chunk, through HTTP against fake upstreams that misbehave on purpose.
import { after, afterEach, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { startAnthropicFake } from "./fakes/anthropic.ts";
import { startOllamaFake } from "./fakes/ollama.ts";
import { startOpenAIFake } from "./fakes/openai.ts";
import { openaiChunk, startScriptedFake, streamHead, type ScriptedFake } from "./fakes/scripted.ts";
import { sleep, type FakeServer } from "./fakes/common.ts";
import { scrape, value } from "./helpers/metrics.ts";
import { postJson, readSse, startRouter, type RunningRouter } from "./helpers/router.ts";

const chat = (extra: Record<string, unknown> = {}) => ({ model: "gpt-test", messages: [{ role: "user", content: "hi" }], ...extra });

describe("streams that survive their provider", () => {
  let b: FakeServer;
  let r: RunningRouter | undefined;

  before(async () => {
    b = await startOpenAIFake({ reply: "from B" });
  });
  after(async () => {
    await b.stop();
  });
  afterEach(async () => {
    await r?.stop();
    r = undefined;
  });

  describe("a provider that accepts the request and never answers", () => {
    let a: FakeServer;
    before(async () => {
      a = await startOpenAIFake();
    });
    after(async () => {
      await a.stop();
    });

    it("fails over after one timeout, without retrying the silent provider", async () => {
      a.reset();
      b.reset();
      a.fault = { hang: true };
      r = await startRouter(`
providers:
  - { name: a, type: openai, endpoint: ${a.url}/v1, default_model: m, timeout_seconds: 1, max_retries: 2 }
  - { name: b, type: openai, endpoint: ${b.url}/v1, default_model: m, timeout_seconds: 5 }
routing: { fallback_chain: [a, b] }
circuit_breaker: { failure_threshold: 100 }
`, {}, { retryBaseMs: 50 });
      const t0 = Date.now();
      const res = await postJson(`${r.url}/v1/chat/completions`, chat());
      const took = Date.now() - t0;
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("x-router-provider"), "b");
      await res.text();
      assert.equal(a.requests.length, 1, "a silent provider is not asked again");
      assert.ok(took >= 900 && took < 2500, `about one timeout, took ${took} ms`);
    });

    it("still retries a provider that answers with an error (5xx)", async () => {
      a.reset();
      b.reset();
      a.fault = { status: 503, times: 1 };
      r = await startRouter(`
providers:
  - { name: a, type: openai, endpoint: ${a.url}/v1, default_model: m, timeout_seconds: 5, max_retries: 2 }
  - { name: b, type: openai, endpoint: ${b.url}/v1, default_model: m, timeout_seconds: 5 }
routing: { fallback_chain: [a, b] }
`, {}, { retryBaseMs: 20 });
      const res = await postJson(`${r.url}/v1/chat/completions`, chat());
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("x-router-provider"), "a");
      await res.text();
      assert.equal(a.requests.length, 2);
    });
  });

  describe("a complete stream without data: [DONE]", () => {
    let s: ScriptedFake;
    before(async () => {
      s = await startScriptedFake(() => {});
    });
    after(async () => {
      await s.stop();
    });
    const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) =>
      `data: ${JSON.stringify({ id: "chatcmpl-s", object: "chat.completion.chunk", created: 1700000000, model: "m", choices, ...extra })}\n\n`;
    const start = async () => {
      r = await startRouter(`
providers:
  - { name: s, type: openai_compatible, endpoint: ${s.url}/v1, default_model: m, timeout_seconds: 5 }
  - { name: b, type: openai, endpoint: ${b.url}/v1, default_model: m, timeout_seconds: 5 }
routing: { fallback_chain: [s, b] }
circuit_breaker: { failure_threshold: 100 }
`);
    };
    const breakerS = async () => (await (await fetch(`${r!.url}/health`)).json()).providers.s;

    it("is a success with the upstream's usage, ends with [DONE], and closes the breaker's count", async () => {
      await start();
      // one failure first, so that the success has a count to close
      s.script = (res) => {
        res.writeHead(500, { "content-type": "application/json" });
        res.end(JSON.stringify({ error: { message: "boom" } }));
      };
      const first = await postJson(`${r!.url}/v1/chat/completions`, chat());
      assert.equal(first.headers.get("x-router-provider"), "b");
      await first.text();
      assert.equal((await breakerS()).consecutive_failures, 1);

      s.script = (res) => {
        streamHead(res);
        res.write(chunk([{ index: 0, delta: { role: "assistant", content: "" }, finish_reason: null }]));
        for (const w of ["Hello", ", ", "world"]) res.write(chunk([{ index: 0, delta: { content: w }, finish_reason: null }]));
        res.write(chunk([{ index: 0, delta: {}, finish_reason: "stop" }]));
        res.write(chunk([], { usage: { prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 } }));
        res.end(); // no [DONE]
      };
      const res = await postJson(`${r!.url}/v1/chat/completions`, chat({ stream: true, stream_options: { include_usage: true } }));
      assert.equal(res.headers.get("x-router-provider"), "s");
      const events = await readSse(res);
      assert.equal(events.at(-1), "[DONE]");
      assert.ok(!events.some((e) => e?.error), "no error event");
      assert.equal(events.slice(0, -1).map((e) => e.choices[0]?.delta?.content ?? "").join(""), "Hello, world");
      assert.deepEqual(events.at(-2).usage, { prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 });
      assert.equal((await breakerS()).consecutive_failures, 0, "a success closes the count");
      const log = r!.logs.map((l) => JSON.parse(l)).filter((l) => l.msg === "request").at(-1);
      assert.equal(log.status, 200);
      assert.deepEqual(log.tokens, { input: 5, output: 3 });
    });

    it("a body that closes before any finish_reason is still a broken stream", async () => {
      await start();
      s.script = (res) => {
        streamHead(res);
        for (const w of ["Hello", ", ", "world"]) res.write(chunk([{ index: 0, delta: { content: w }, finish_reason: null }]));
        res.end();
      };
      const res = await postJson(`${r!.url}/v1/chat/completions`, chat({ stream: true }));
      const events = await readSse(res);
      assert.equal(events.at(-1).error.code, "upstream_stream_error");
      assert.equal((await breakerS()).consecutive_failures, 1);
    });
  });

  describe("malformed events in an otherwise good stream", () => {
    let s: ScriptedFake;
    before(async () => {
      s = await startScriptedFake(() => {});
    });
    after(async () => {
      await s.stop();
    });
    /** 60 content events ("t0 ".."t59 "), with the events at `bad` positions (0-based) replaced by invalid JSON. */
    const script = (bad: number[]) => (res: import("node:http").ServerResponse) => {
      streamHead(res);
      for (let i = 0; i < 60; i++) res.write(bad.includes(i) ? `data: {"choices": [{"delta": {"content": "lost\n\n` : openaiChunk(`t${i} `));
      res.write(`data: ${JSON.stringify({ id: "chatcmpl-s", object: "chat.completion.chunk", created: 1700000000, model: "m", choices: [{ index: 0, delta: {}, finish_reason: "stop" }] })}\n\n`);
      res.end("data: [DONE]\n\n");
    };
    const start = async () => {
      r = await startRouter(`
providers:
  - { name: s, type: openai_compatible, endpoint: ${s.url}/v1, default_model: m, timeout_seconds: 5 }
routing: { fallback_chain: [s] }
circuit_breaker: { failure_threshold: 100 }
`);
    };
    const expected = (bad: number[]) => Array.from({ length: 60 }, (_, i) => (bad.includes(i) ? "" : `t${i} `)).join("");

    it("skips the tenth event when it is invalid JSON: the rest of the text arrives, logged once and counted", async () => {
      await start();
      s.script = script([9]);
      const res = await postJson(`${r!.url}/v1/chat/completions`, chat({ stream: true }));
      const events = await readSse(res);
      assert.equal(events.at(-1), "[DONE]");
      assert.ok(!events.some((e) => e?.error), "no error event");
      assert.equal(events.slice(0, -1).map((e) => e.choices[0]?.delta?.content ?? "").join(""), expected([9]));
      const warn = r!.logs.map((l) => JSON.parse(l)).filter((l) => l.msg === "malformed stream event skipped");
      assert.equal(warn.length, 1);
      assert.equal(warn[0].provider, "s");
      assert.equal(value(await scrape(r!.url), "failover_router_malformed_events_total", { provider: "s" }), 1);
      assert.equal((await (await fetch(`${r!.url}/health`)).json()).providers.s.consecutive_failures, 0);
    });

    it("up to routing.max_malformed_events are skipped and logged once; one more fails the stream", async () => {
      await start();
      s.script = script([9, 20, 30]);
      let events = await readSse(await postJson(`${r!.url}/v1/chat/completions`, chat({ stream: true })));
      assert.equal(events.at(-1), "[DONE]");
      assert.equal(events.slice(0, -1).map((e) => e.choices[0]?.delta?.content ?? "").join(""), expected([9, 20, 30]));
      assert.equal(r!.logs.map((l) => JSON.parse(l)).filter((l) => l.msg === "malformed stream event skipped").length, 1, "once per stream");

      s.script = script([9, 20, 30, 40]);
      events = await readSse(await postJson(`${r!.url}/v1/chat/completions`, chat({ stream: true })));
      assert.equal(events.at(-1).error.code, "upstream_stream_error");
      assert.match(events.at(-1).error.message, /max_malformed_events/);
      assert.equal(value(await scrape(r!.url), "failover_router_malformed_events_total", { provider: "s" }), 7);
    });
  });
});

describe("the usage chunk, for every provider type", () => {
  let legacy: FakeServer, real: ScriptedFake, anth: FakeServer, oll: FakeServer;
  let r: RunningRouter;
  before(async () => {
    // an OpenAI-compatible server that ignores stream_options (older vLLM, llama.cpp, LM Studio): no usage at all
    legacy = await startOpenAIFake({ reply: "legacy reply", usage: null });
    // the real OpenAI API: `"usage": null` on every chunk and the usage chunk, when stream_options asks
    real = await startScriptedFake((res, req) => {
      const asked = req.body?.stream_options?.include_usage === true;
      const send = (choices: unknown[], usage?: unknown) =>
        res.write(`data: ${JSON.stringify({ id: "chatcmpl-r", object: "chat.completion.chunk", created: 1700000000, model: "m", choices, ...(asked ? { usage: usage ?? null } : {}) })}\n\n`);
      streamHead(res);
      send([{ index: 0, delta: { role: "assistant", content: "" }, finish_reason: null }]);
      send([{ index: 0, delta: { content: "real reply" }, finish_reason: null }]);
      send([{ index: 0, delta: {}, finish_reason: "stop" }]);
      if (asked) send([], { prompt_tokens: 4, completion_tokens: 2, total_tokens: 6 });
      res.end("data: [DONE]\n\n");
    });
    anth = await startAnthropicFake();
    oll = await startOllamaFake();
    r = await startRouter(`
providers:
  - { name: legacy, type: openai_compatible, endpoint: ${legacy.url}/v1, default_model: m }
  - { name: real, type: openai, endpoint: ${real.url}/v1, default_model: m }
  - { name: anth, type: anthropic, endpoint: "${anth.url}", api_key: k, default_model: m }
  - { name: oll, type: ollama, endpoint: ${oll.url}, default_model: llama3 }
  - { name: mock, type: mock }
`);
  });
  after(async () => {
    await r.stop();
    for (const f of [legacy, real, anth, oll]) await f.stop();
  });

  for (const p of ["legacy", "real", "anth", "oll", "mock"]) {
    const model = p === "oll" ? "oll/llama3" : `${p}/m`;
    it(`${p}: with include_usage, a final chunk with choices [] and usage, "usage": null on the others (raw SSE and the openai SDK)`, async () => {
      const body = chat({ model, stream: true, stream_options: { include_usage: true } });
      const events = await readSse(await postJson(`${r.url}/v1/chat/completions`, body));
      assert.equal(events.at(-1), "[DONE]");
      const chunks = events.slice(0, -1);
      const last = chunks.at(-1);
      assert.deepEqual(last.choices, []);
      assert.equal(last.object, "chat.completion.chunk");
      assert.equal(typeof last.id, "string");
      for (const k of ["prompt_tokens", "completion_tokens", "total_tokens"]) assert.ok(Number.isInteger(last.usage[k]) && last.usage[k] >= 0, `${k}: ${JSON.stringify(last.usage)}`);
      assert.ok(!("estimated" in last.usage));
      for (const c of chunks.slice(0, -1)) assert.equal(c.usage, null, JSON.stringify(c));

      const client = new OpenAI({ baseURL: `${r.url}/v1`, apiKey: "k", maxRetries: 0 });
      const stream = await client.chat.completions.create({ model, messages: [{ role: "user", content: "hi" }], stream: true, stream_options: { include_usage: true } });
      const seen: OpenAI.Chat.Completions.ChatCompletionChunk[] = [];
      for await (const c of stream) seen.push(c);
      assert.ok(seen.length > 1);
      assert.deepEqual(seen.at(-1)!.choices, []);
      assert.ok(seen.at(-1)!.usage!.total_tokens > 0);
    });

    it(`${p}: without include_usage, no chunk carries a usage field`, async () => {
      const events = await readSse(await postJson(`${r.url}/v1/chat/completions`, chat({ model, stream: true })));
      assert.equal(events.at(-1), "[DONE]");
      for (const c of events.slice(0, -1)) {
        assert.ok(!("usage" in c), JSON.stringify(c));
        assert.ok(c.choices.length > 0);
      }
    });
  }
});
