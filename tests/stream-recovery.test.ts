// routing.stream_recovery: a chat stream cut or stalled mid-answer goes on as one stream, by a prefill on a
// provider that continues a trailing assistant message, or by a restart on the next provider that is forwarded
// only once it has reproduced the text the client already has. Against fake upstreams that cut or stall.
import { after, afterEach, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { startAnthropicFake, type AnthropicFake } from "./fakes/anthropic.ts";
import { type FakeServer, sleep } from "./fakes/common.ts";
import { type OpenAIFakeOptions, splitText, startOpenAIFake } from "./fakes/openai.ts";
import { parseMetrics } from "./helpers/metrics.ts";
import { postJson, readSse, startRouter, type RunningRouter } from "./helpers/router.ts";

const ANSWER = "The quick brown fox jumps over the lazy dog, and then it runs away.";
const CHUNKS = 8;
// the first leg is cut after the role chunk and (at most: the runtime's server may not get the last one out
// before the socket dies) three content chunks
const CUT = { cutAfter: 4, chunkDelayMs: 10, times: 1 };

/** Asserts that `text` is what a cut first leg sent: a start of ANSWER at a chunk boundary, not all of it. */
function assertCutShort(text: string, chunks = CHUNKS): void {
  const pieces = splitText(ANSWER, chunks);
  assert.ok([1, 2, 3].some((n) => text === pieces.slice(0, n).join("")), `not a cut start of the answer: ${JSON.stringify(text)}`);
}

const chat = { model: "m", messages: [{ role: "user", content: "tell me about the fox" }], stream: true };

/** The text, ids and models of a stream's chunks, and its last event. */
function summary(events: any[]) {
  const chunks = events.filter((e) => typeof e === "object" && e.object === "chat.completion.chunk");
  return {
    text: chunks.map((e) => e.choices[0]?.delta?.content ?? "").join(""),
    ids: new Set(chunks.map((e) => e.id)),
    models: new Set(chunks.map((e) => e.model)),
    last: events.at(-1),
  };
}

async function recoveries(r: RunningRouter): Promise<Record<string, number>> {
  const m = parseMetrics(await (await fetch(`${r.url}/metrics`)).text());
  const out: Record<string, number> = {};
  for (const s of m.samples) if (s.name === "failover_router_stream_recoveries_total") out[`${s.labels.provider}/${s.labels.outcome}`] = s.value;
  return out;
}

function requestLog(r: RunningRouter): any[] {
  return r.logs.map((l) => JSON.parse(l)).filter((l) => l.msg === "request");
}

interface Setup {
  a: FakeServer;
  b: FakeServer;
  r: RunningRouter;
}

/** a (openai_compatible, vLLM-like) then b, with `recovery` and a's supports_prefill as given. */
async function setup(opts: { recovery?: boolean; prefill?: boolean; a?: OpenAIFakeOptions; b?: OpenAIFakeOptions; routing?: string }): Promise<Setup> {
  const a = await startOpenAIFake({ reply: ANSWER, chunks: CHUNKS, ...opts.a });
  const b = await startOpenAIFake({ reply: ANSWER, chunks: CHUNKS, idPerRequest: true, ...opts.b });
  const r = await startRouter(`
routing: { fallback_chain: [a, b]${opts.recovery ? ", stream_recovery: true" : ""}${opts.routing ?? ""} }
circuit_breaker: { failure_threshold: 1000 }
providers:
  - { name: a, type: openai_compatible, endpoint: ${a.url}/v1, default_model: model-a${opts.prefill ? ", supports_prefill: true" : ""} }
  - { name: b, type: openai_compatible, endpoint: ${b.url}/v1, default_model: model-b }
`);
  a.fault = { ...CUT };
  return { a, b, r };
}

describe("stream recovery", () => {
  let s: Setup | undefined;
  afterEach(async () => {
    if (!s) return;
    await s.r.stop();
    await s.a.stop();
    await s.b.stop();
    s = undefined;
  });

  it("is off by default: a stream cut mid-answer ends with an error event, and no other provider is asked", async () => {
    const { a, b, r } = (s = await setup({ prefill: true }));
    const res = await postJson(`${r.url}/v1/chat/completions`, chat);
    const out = summary(await readSse(res));
    assertCutShort(out.text);
    assert.equal(out.last.error.code, "upstream_stream_error");
    assert.equal(a.requests.length, 1);
    assert.equal(b.requests.length, 0);
  });

  it("continues a cut stream by prefill on a provider that supports it: the rest of the answer, in one stream", async () => {
    const { a, b, r } = (s = await setup({ recovery: true, prefill: true, a: { prefill: "continue" } }));
    const res = await postJson(`${r.url}/v1/chat/completions`, chat);
    assert.equal(res.headers.get("x-router-provider"), "a");
    const out = summary(await readSse(res));
    assert.equal(out.text, ANSWER);
    assert.deepEqual([...out.ids], ["chatcmpl-fake"]);
    assert.deepEqual([...out.models], ["model-a"]);
    assert.equal(out.last, "[DONE]");
    // the continuation request: the conversation, then the text the client has, to continue (exactly it: the
    // fake continues with the rest of the answer after it, and the client's text is the whole answer once)
    assert.equal(a.requests.length, 2);
    const cont = a.requests[1].body;
    const sent = cont.messages.at(-1).content;
    assertCutShort(sent);
    assert.deepEqual(cont.messages, [...chat.messages, { role: "assistant", content: sent }]);
    assert.equal(cont.continue_final_message, true);
    assert.equal(cont.add_generation_prompt, false);
    assert.equal(b.requests.length, 0);
    assert.equal((await recoveries(r))["a/prefill"], 1);
    // both legs are attempts of the request
    const [line] = requestLog(r);
    assert.equal(line.status, 200);
    assert.deepEqual(line.attempts.map((x: any) => [x.provider, x.outcome]), [["a", "error"], ["a", "success"]]);
    // and both are billed: the cut leg reported no usage, so it counts its prompt and the text it sent (estimated
    // at 4 characters a token), on top of the continuation's reported usage (11 in, 7 out)
    const stats = await (await fetch(`${r.url}/stats`)).json();
    assert.equal(stats.providers.a.tokens.output, Math.ceil(sent.length / 4) + 7, `the cut leg's ${sent.length} characters sent`);
    assert.ok(stats.providers.a.tokens.input > 11, `input tokens ${stats.providers.a.tokens.input}: the cut leg's prompt not billed`);
  });

  it("continues a stalled stream by prefill once stream_idle_timeout_seconds has passed", async () => {
    const { a, r } = (s = await setup({ recovery: true, prefill: true, a: { prefill: "continue" }, routing: ", stream_idle_timeout_seconds: 0.5" }));
    a.fault = { stallAfter: 4, chunkDelayMs: 10, times: 1 };
    const out = summary(await readSse(await postJson(`${r.url}/v1/chat/completions`, chat)));
    assert.equal(out.text, ANSWER);
    assert.equal(out.last, "[DONE]");
    assert.equal(a.requests[1].body.messages.at(-1).role, "assistant");
    assertCutShort(a.requests[1].body.messages.at(-1).content);
  });

  it("restarts on the next provider and forwards it only past the text already sent (official openai SDK)", async () => {
    // b's chunks are cut elsewhere than a's: one of them is part text the client has, part new
    const { b, r } = (s = await setup({ recovery: true, b: { chunks: 5 } }));
    const client = new OpenAI({ baseURL: `${r.url}/v1`, apiKey: "k", maxRetries: 0 });
    const stream = await client.chat.completions.create({ model: "m", messages: [{ role: "user", content: "tell me about the fox" }], stream: true });
    let text = "";
    const ids = new Set<string>(), models = new Set<string>();
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? "";
      ids.add(chunk.id);
      models.add(chunk.model);
    }
    assert.equal(text, ANSWER);
    assert.deepEqual([...ids], ["chatcmpl-fake"]); // b's chunks (chatcmpl-fake-1) as the stream's own
    assert.deepEqual([...models], ["model-a"]);
    // no prefill for a provider that does not say it supports one
    assert.deepEqual(b.requests[0].body.messages, [{ role: "user", content: "tell me about the fox" }]);
    assert.equal(b.requests[0].body.continue_final_message, undefined);
    assert.equal((await recoveries(r))["b/restart"], 1);
  });

  it("ends a restart that diverges from the text sent with the original failure's error event", async () => {
    const { r } = (s = await setup({ recovery: true, b: { reply: "The quick brown cat sleeps all day long, and nobody minds it." } }));
    const out = summary(await readSse(await postJson(`${r.url}/v1/chat/completions`, chat)));
    assertCutShort(out.text); // nothing of the other answer
    assert.equal(out.last.error.code, "upstream_stream_error");
    assert.match(out.last.error.message, /^upstream stream broke/);
    assert.equal((await recoveries(r))["b/diverged"], 1);
    const [line] = requestLog(r);
    assert.equal(line.status, 502);
    assert.deepEqual(line.attempts.map((x: any) => [x.provider, x.outcome]), [["a", "error"], ["b", "error"]]);
    // the restart's own record says why it was given up
    assert.match(line.attempts[1].reason, /did not reproduce the text already sent/);
  });

  it("restarts on the next provider when the prefill is rejected, and the rejection never reaches the client", async () => {
    const { a, b, r } = (s = await setup({ recovery: true, prefill: true, a: { prefill: "reject" } }));
    const raw = await (await postJson(`${r.url}/v1/chat/completions`, chat)).text();
    assert.doesNotMatch(raw, /assistant messages/);
    const out = summary(raw.split("\n\n").filter((x) => x.startsWith("data: ")).map((x) => (x === "data: [DONE]" ? "[DONE]" : JSON.parse(x.slice(6)))));
    assert.equal(out.text, ANSWER);
    assert.equal(out.last, "[DONE]");
    assert.equal(a.requests.length, 2);
    assert.equal(b.requests.length, 1);
    const m = await recoveries(r);
    assert.equal(m["a/rejected"], 1);
    assert.equal(m["b/restart"], 1);
  });

  it("ends with the original failure, not the rejected prefill, when the restart diverges too", async () => {
    const { r } = (s = await setup({ recovery: true, prefill: true, a: { prefill: "reject" }, b: { reply: "Something else entirely." } }));
    const events = await readSse(await postJson(`${r.url}/v1/chat/completions`, chat));
    const last = events.at(-1);
    assert.equal(last.error.code, "upstream_stream_error");
    assert.match(last.error.message, /^upstream stream broke/);
    assert.doesNotMatch(JSON.stringify(events), /assistant messages|invalid_request_error/);
  });

  it("a client that goes away while the recovery leg waits for its answer: that leg is aborted and in the request log", async () => {
    const { b, r } = (s = await setup({ recovery: true }));
    b.fault = { hang: true };
    const res = await postJson(`${r.url}/v1/chat/completions`, chat);
    const reader = res.body!.getReader();
    await reader.read(); // the first leg's chunks; then it is cut and the restart on b hangs
    for (const end = Date.now() + 5000; Date.now() < end && b.requests.length === 0;) await sleep(20);
    assert.equal(b.requests.length, 1);
    await reader.cancel();
    for (const end = Date.now() + 5000; Date.now() < end && requestLog(r).length === 0;) await sleep(20);
    const [line] = requestLog(r);
    assert.equal(line.status, 499);
    // /stats and /metrics count b's leg: so does the request log, with what it was billed
    assert.deepEqual(line.attempts.map((x: any) => [x.provider, x.outcome]), [["a", "error"], ["b", "cancelled"]]);
    const stats = await (await fetch(`${r.url}/stats`)).json();
    assert.equal(line.tokens.input, stats.providers.a.tokens.input + stats.providers.b.tokens.input);
    for (const end = Date.now() + 3000; Date.now() < end && b.aborted === 0;) await sleep(20);
    assert.equal(b.aborted, 1, "the recovery leg's connection is closed");
  });

  it("fails a stream that already sent tool-call deltas honestly: no recovery", async () => {
    const { a, b, r } = (s = await setup({ recovery: true, prefill: true, a: { prefill: "continue", toolCall: { name: "get_weather", arguments: '{"city":"Paris","unit":"celsius"}' } } }));
    const events = await readSse(await postJson(`${r.url}/v1/chat/completions`, { ...chat, tools: [{ type: "function", function: { name: "get_weather", parameters: { type: "object" } } }] }));
    assert.ok(events.some((e) => e.choices?.[0]?.delta?.tool_calls));
    assert.equal(events.at(-1).error.code, "upstream_stream_error");
    assert.equal(a.requests.length, 1);
    assert.equal(b.requests.length, 0);
  });
});

describe("stream recovery onto another wire protocol", () => {
  it("a restart on Anthropic that reproduces the text, goes on, then calls a tool: the client has the whole text and an error that says so", async () => {
    const a = await startOpenAIFake({ reply: ANSWER, chunks: CHUNKS });
    const claude = await startAnthropicFake({ reply: ANSWER, chunks: 5, toolUses: [{ id: "toolu_1", name: "get_weather", input: { city: "Paris" } }] });
    const r = await startRouter(`
routing: { fallback_chain: [a, claude], stream_recovery: true }
circuit_breaker: { failure_threshold: 1000 }
providers:
  - { name: a, type: openai_compatible, endpoint: ${a.url}/v1, default_model: model-a }
  - { name: claude, type: anthropic, endpoint: ${claude.url}, api_key: sk-ant, default_model: claude-test }
`);
    try {
      a.fault = { ...CUT };
      const tools = [{ type: "function", function: { name: "get_weather", parameters: { type: "object" } } }];
      const out = summary(await readSse(await postJson(`${r.url}/v1/chat/completions`, { ...chat, tools })));
      assert.equal(out.text, ANSWER, "the restart was forwarded past the text sent");
      assert.deepEqual([...out.ids], ["chatcmpl-fake"]);
      assert.equal(out.last.error.code, "stream_recovery_diverged");
      // it did reproduce the text: the error names what it could not carry
      assert.doesNotMatch(out.last.error.message, /did not reproduce/);
      assert.match(out.last.error.message, /tool call|other than text/);
      const [line] = requestLog(r);
      assert.deepEqual(line.attempts.map((x: any) => [x.provider, x.outcome]), [["a", "error"], ["claude", "error"]]);
      assert.doesNotMatch(line.attempts[1].reason, /did not reproduce/);
    } finally {
      await r.stop();
      await a.stop();
      await claude.stop();
    }
  });
});

describe("stream recovery by Anthropic prefill", () => {
  let claude: AnthropicFake, b: FakeServer, r: RunningRouter;
  before(async () => {
    claude = await startAnthropicFake({ reply: ANSWER, chunks: 6, prefill: true });
    b = await startOpenAIFake({ reply: ANSWER, chunks: CHUNKS, idPerRequest: true });
    r = await startRouter(`
routing: { fallback_chain: [claude, b], stream_recovery: true }
circuit_breaker: { failure_threshold: 1000 }
providers:
  - { name: claude, type: anthropic, endpoint: ${claude.url}, api_key: sk-ant, default_model: claude-test, supports_prefill: true }
  - { name: b, type: openai_compatible, endpoint: ${b.url}/v1, default_model: model-b }
`);
  });
  after(async () => {
    await r.stop();
    await claude.stop();
    await b.stop();
  });

  it("continues a trailing assistant message natively (the Messages API's prefill)", async () => {
    // message_start, content_block_start, ping, three text deltas, then the connection dies
    claude.fault = { cutAfter: 6, chunkDelayMs: 10, times: 1 };
    const out = summary(await readSse(await postJson(`${r.url}/v1/chat/completions`, chat)));
    assert.equal(out.text, ANSWER);
    assert.equal(out.ids.size, 1);
    assert.equal(out.last, "[DONE]");
    const sent = claude.requests[1].body.messages[1]?.content;
    assertCutShort(sent, 6);
    assert.deepEqual(claude.requests[1].body.messages, [{ role: "user", content: "tell me about the fox" }, { role: "assistant", content: sent }]);
    assert.equal(b.requests.length, 0);
  });
});
