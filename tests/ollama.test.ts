import { after, before, beforeEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { startOllamaFake } from "./fakes/ollama.ts";
import { startOpenAIFake } from "./fakes/openai.ts";
import { refusedUrl, type FakeServer } from "./fakes/common.ts";
import { postJson, readSse, startRouter, type RunningRouter } from "./helpers/router.ts";

const chat = (extra: Record<string, unknown> = {}) => ({ model: "llama3", messages: [{ role: "user", content: "hi" }], ...extra });
const textOf = (events: any[]) => events.filter((e) => e !== "[DONE]").map((e) => e.choices[0]?.delta?.content ?? e.choices[0]?.text ?? "").join("");
/** One Ollama fake behind a router that has it as its only provider; both stopped afterwards. */
async function withOllama(opts: Parameters<typeof startOllamaFake>[0], fn: (o: FakeServer, r: RunningRouter) => Promise<void>): Promise<void> {
  const o = await startOllamaFake(opts);
  const r = await startRouter(`
circuit_breaker: { failure_threshold: 1000 }
providers:
  - { name: local, type: ollama, endpoint: ${o.url}, default_model: llama3 }
`);
  try {
    await fn(o, r);
  } finally {
    await r.stop();
    await o.stop();
  }
}

const weatherTool = {
  type: "function",
  function: { name: "get_weather", description: "Weather for a city", parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] } },
};
// a 1x1 PNG
const PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";

describe("ollama adapter through the router", () => {
  let o: FakeServer, b: FakeServer, r: RunningRouter;
  before(async () => {
    o = await startOllamaFake({ reply: "Ollama says hello.", counts: { prompt_eval_count: 9, eval_count: 4 }, models: ["llama3:latest"] });
    b = await startOpenAIFake({ reply: "answer from B" });
    r = await startRouter(`
circuit_breaker: { failure_threshold: 1000 }
providers:
  - { name: local, type: ollama, endpoint: ${o.url}, default_model: llama3, timeout_seconds: 2 }
  - { name: b, type: openai, endpoint: ${b.url}/v1, default_model: b-model }
routing: { fallback_chain: [local, b] }
`);
  });
  after(async () => {
    await r.stop();
    await o.stop();
    await b.stop();
  });
  beforeEach(() => {
    o.reset();
    b.reset();
  });

  it("answers a chat completion from /api/chat with usage from the eval counts", async () => {
    const res = await postJson(`${r.url}/v1/chat/completions`, chat({
      messages: [{ role: "system", content: "be brief" }, { role: "developer", content: "really" }, { role: "user", content: "hi" }],
    }));
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("x-router-provider"), "local");
    const body = await res.json();
    assert.equal(body.object, "chat.completion");
    assert.match(body.id, /^chatcmpl-/);
    assert.equal(body.model, "llama3");
    assert.equal(body.choices[0].message.role, "assistant");
    assert.equal(body.choices[0].message.content, "Ollama says hello.");
    assert.equal(body.choices[0].finish_reason, "stop");
    assert.deepEqual(body.usage, { prompt_tokens: 9, completion_tokens: 4, total_tokens: 13 });
    const up = o.requests[0];
    assert.equal(up.method, "POST");
    assert.equal(up.path, "/api/chat");
    assert.equal(up.body.model, "llama3");
    assert.equal(up.body.stream, false, "stream must be explicit: Ollama streams by default");
    assert.deepEqual(up.body.messages, [
      { role: "system", content: "be brief" },
      { role: "system", content: "really" },
      { role: "user", content: "hi" },
    ]);
    assert.deepEqual(up.body.options, {});
    assert.equal(up.body.tools, undefined);
    assert.equal(up.body.format, undefined);
    assert.equal(b.requests.length, 0);
  });

  it("maps temperature, top_p, seed, stop and max_tokens into options", async () => {
    let res = await postJson(`${r.url}/v1/chat/completions`, chat({ temperature: 0.3, top_p: 0.9, seed: 42, stop: "END", max_tokens: 50 }));
    assert.equal(res.status, 200);
    await res.body?.cancel();
    assert.deepEqual(o.requests[0].body.options, { temperature: 0.3, top_p: 0.9, seed: 42, stop: ["END"], num_predict: 50 });
    res = await postJson(`${r.url}/v1/chat/completions`, chat({ temperature: 0, stop: ["a", "b"], max_tokens: 10, max_completion_tokens: 20 }));
    await res.body?.cancel();
    assert.deepEqual(o.requests[1].body.options, { temperature: 0, stop: ["a", "b"], num_predict: 20 });
  });

  it("maps response_format to format: json or the JSON schema", async () => {
    let res = await postJson(`${r.url}/v1/chat/completions`, chat({ response_format: { type: "json_object" } }));
    await res.body?.cancel();
    assert.equal(o.requests[0].body.format, "json");
    const schema = { type: "object", properties: { age: { type: "integer" } }, required: ["age"] };
    res = await postJson(`${r.url}/v1/chat/completions`, chat({ response_format: { type: "json_schema", json_schema: { name: "x", schema } } }));
    await res.body?.cancel();
    assert.deepEqual(o.requests[1].body.format, schema);
  });

  it("sends image data URLs as base64 images and joins text parts", async () => {
    const res = await postJson(`${r.url}/v1/chat/completions`, chat({
      messages: [{
        role: "user",
        content: [
          { type: "text", text: "What is this?" },
          { type: "image_url", image_url: { url: `data:image/png;base64,${PNG_B64}` } },
          { type: "text", text: "Be short." },
        ],
      }],
    }));
    assert.equal(res.status, 200);
    await res.body?.cancel();
    assert.deepEqual(o.requests[0].body.messages, [{ role: "user", content: "What is this?\nBe short.", images: [PNG_B64] }]);
  });

  it("passes a remote image URL, which Ollama cannot take, to the next provider without calling Ollama", async () => {
    const res = await postJson(`${r.url}/v1/chat/completions`, chat({
      messages: [{ role: "user", content: [{ type: "text", text: "x" }, { type: "image_url", image_url: { url: "https://example.com/cat.png" } }] }],
    }));
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("x-router-provider"), "b");
    await res.body?.cancel();
    assert.equal(o.requests.length, 0);
    assert.equal(b.requests.length, 1);
  });

  it("rejects a remote image URL with a 400 naming the field when Ollama is pinned", async () => {
    const res = await postJson(`${r.url}/v1/chat/completions`, chat({
      model: "local/llama3",
      messages: [{ role: "user", content: [{ type: "text", text: "x" }, { type: "image_url", image_url: { url: "https://example.com/cat.png" } }] }],
    }));
    assert.equal(res.status, 400);
    const body = await res.json();
    assert.equal(body.error.type, "invalid_request_error");
    assert.equal(body.error.param, "messages[0].content[1].image_url.url");
    assert.match(body.error.message, /base64 data: URL/);
    assert.equal(o.requests.length, 0);
    assert.equal(b.requests.length, 0);
  });

  it("streams NDJSON as OpenAI chunks: role first, deltas, finish, [DONE], no usage chunk unless asked", async () => {
    const res = await postJson(`${r.url}/v1/chat/completions`, chat({ stream: true }));
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /text\/event-stream/);
    assert.equal(res.headers.get("x-router-provider"), "local");
    const events = await readSse(res);
    assert.equal(events.at(-1), "[DONE]");
    const chunks = events.slice(0, -1);
    assert.ok(chunks.length >= 4, `role + content chunks + finish, got ${chunks.length}`);
    assert.ok(chunks.every((c) => c.object === "chat.completion.chunk" && c.model === "llama3"));
    assert.ok(chunks.every((c) => c.id === chunks[0].id));
    assert.deepEqual(chunks[0].choices[0].delta, { role: "assistant", content: "" });
    assert.equal(textOf(chunks), "Ollama says hello.");
    assert.equal(chunks.at(-1).choices[0].finish_reason, "stop");
    assert.ok(chunks.every((c) => !c.usage), "no usage chunk");
    assert.equal(o.requests[0].body.stream, true);
  });

  it("forwards each NDJSON line as it arrives, without waiting for the end of the stream", async () => {
    o.fault = { stallAfter: 2 }; // two content lines, then silence with the connection open
    const res = await postJson(`${r.url}/v1/chat/completions`, chat({ stream: true }));
    assert.equal(res.status, 200);
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let text = "";
    const contentChunk = /"content":"[^"]+"/;
    while (!contentChunk.test(text)) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
    assert.match(text, /"content":"Ollam"/, "the first content chunk arrived while upstream is still open");
    assert.ok(!text.includes("[DONE]"));
    await reader.cancel();
    // the client went away: the router closes the upstream NDJSON connection too
    for (let i = 0; i < 100 && o.aborted === 0; i++) await new Promise((ok) => setTimeout(ok, 50));
    assert.equal(o.aborted, 1);
  });

  it("streams a usage chunk with the eval counts when include_usage is set", async () => {
    const res = await postJson(`${r.url}/v1/chat/completions`, chat({ stream: true, stream_options: { include_usage: true } }));
    const events = await readSse(res);
    assert.equal(events.at(-1), "[DONE]");
    const usage = events.at(-2);
    assert.deepEqual(usage.choices, []);
    assert.deepEqual(usage.usage, { prompt_tokens: 9, completion_tokens: 4, total_tokens: 13 });
    assert.equal(events.at(-3).choices[0].finish_reason, "stop");
  });

  it("maps done_reason length to finish_reason length", async () => {
    const f = await startOllamaFake({ reply: "cut short", doneReason: "length" });
    const rr = await startRouter(`
circuit_breaker: { failure_threshold: 1000 }
providers:
  - { name: local, type: ollama, endpoint: ${f.url}, default_model: llama3 }
`);
    try {
      let res = await postJson(`${rr.url}/v1/chat/completions`, chat({ max_tokens: 2 }));
      assert.equal((await res.json()).choices[0].finish_reason, "length");
      res = await postJson(`${rr.url}/v1/chat/completions`, chat({ max_tokens: 2, stream: true }));
      const events = await readSse(res);
      assert.equal(events.at(-2).choices[0].finish_reason, "length");
    } finally {
      await rr.stop();
      await f.stop();
    }
  });

  it("translates assistant tool_calls and tool results into Ollama messages, and passes tools", async () => {
    const res = await postJson(`${r.url}/v1/chat/completions`, chat({
      tools: [weatherTool],
      messages: [
        { role: "user", content: "Weather in Paris?" },
        { role: "assistant", content: null, tool_calls: [{ id: "call_abc", type: "function", function: { name: "get_weather", arguments: "{\"city\":\"Paris\"}" } }] },
        { role: "tool", tool_call_id: "call_abc", content: "22C and sunny" },
      ],
    }));
    assert.equal(res.status, 200);
    await res.body?.cancel();
    const up = o.requests[0].body;
    assert.deepEqual(up.tools, [weatherTool]);
    assert.deepEqual(up.messages, [
      { role: "user", content: "Weather in Paris?" },
      { role: "assistant", content: "", tool_calls: [{ function: { name: "get_weather", arguments: { city: "Paris" } } }] },
      { role: "tool", content: "22C and sunny", tool_name: "get_weather" },
    ]);
  });

  it("answers malformed tool call arguments with a 400 naming the field", async () => {
    const res = await postJson(`${r.url}/v1/chat/completions`, chat({
      model: "local/llama3",
      messages: [
        { role: "user", content: "x" },
        { role: "assistant", tool_calls: [{ id: "c1", type: "function", function: { name: "f", arguments: "not json" } }] },
      ],
    }));
    assert.equal(res.status, 400);
    assert.equal((await res.json()).error.param, "messages[1].tool_calls[0].function.arguments");
    assert.equal(o.requests.length, 0);
  });

  it("drops tools when tool_choice is none", async () => {
    const res = await postJson(`${r.url}/v1/chat/completions`, chat({ tools: [weatherTool], tool_choice: "none" }));
    await res.body?.cancel();
    assert.equal(o.requests[0].body.tools, undefined);
  });

  it("fails over to the next provider on upstream 500 with an Ollama error body", async () => {
    o.fault = { status: 500, body: { error: "llama runner process has terminated" } };
    const res = await postJson(`${r.url}/v1/chat/completions`, chat());
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("x-router-provider"), "b");
    assert.equal(res.headers.get("x-router-attempts"), "2");
    assert.equal((await res.json()).choices[0].message.content, "answer from B");
    assert.equal(o.requests.length, 1);
  });

  it("moves on when the model is not installed (Ollama's 404 is not a client error)", async () => {
    const f = await startOllamaFake({ models: ["phi3:latest"] });
    const rr = await startRouter(`
circuit_breaker: { failure_threshold: 1000 }
providers:
  - { name: a, type: ollama, endpoint: ${o.url}, default_model: phi3 }
  - { name: c, type: ollama, endpoint: ${f.url}, default_model: phi3 }
`);
    try {
      const res = await postJson(`${rr.url}/v1/chat/completions`, chat());
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("x-router-provider"), "c");
      assert.equal(res.headers.get("x-router-attempts"), "2");
      assert.equal((await res.json()).choices[0].message.content, "Hello from the fake Ollama server.");
      assert.equal(o.requests[0].body.model, "phi3");
    } finally {
      await rr.stop();
      await f.stop();
    }
  });

  it("names the missing model in the attempts when a pinned model is not installed", async () => {
    const res = await postJson(`${r.url}/v1/chat/completions`, chat({ model: "local/mistral" }));
    assert.equal(res.status, 502);
    const body = await res.json();
    assert.equal(body.error.code, "all_providers_failed");
    assert.deepEqual(body.error.attempts.map((a: any) => [a.provider, a.status]), [["local", 404]]);
    assert.match(body.error.attempts[0].reason, /model "mistral" not found/);
    assert.equal(b.requests.length, 0);
  });

  it("returns an Ollama 400 to the client at once, OpenAI-shaped", async () => {
    o.fault = { status: 400, body: { error: "invalid options: num_predict must be an integer" } };
    const res = await postJson(`${r.url}/v1/chat/completions`, chat());
    assert.equal(res.status, 400);
    const body = await res.json();
    assert.equal(body.error.message, "invalid options: num_predict must be an integer");
    assert.equal(body.error.type, "invalid_request_error");
    assert.equal(b.requests.length, 0);
  });

  it("fails over on a context-length error", async () => {
    o.fault = { status: 400, body: { error: "the input length exceeds the context length" } };
    const res = await postJson(`${r.url}/v1/chat/completions`, chat());
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("x-router-provider"), "b");
    await res.body?.cancel();
  });

  it("fails over on a hang past timeout_seconds", async () => {
    o.fault = { hang: true };
    const res = await postJson(`${r.url}/v1/chat/completions`, chat());
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("x-router-provider"), "b");
    await res.body?.cancel();
  });

  it("fails over a stream cut before its first content line", async () => {
    o.fault = { cutAfter: 0 };
    const res = await postJson(`${r.url}/v1/chat/completions`, chat({ stream: true }));
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("x-router-provider"), "b");
    assert.equal(textOf(await readSse(res)), "answer from B");
  });

  it("ends an NDJSON stream cut after content with an SSE error event, not [DONE]", async () => {
    o.fault = { cutAfter: 2, chunkDelayMs: 20 };
    const res = await postJson(`${r.url}/v1/chat/completions`, chat({ stream: true }));
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("x-router-provider"), "local");
    const events = await readSse(res);
    assert.notEqual(events.at(-1), "[DONE]");
    assert.equal(events.at(-1).error.type, "upstream_error");
    assert.ok(textOf(events.slice(0, -1)).length > 0, "content before the cut was forwarded");
    assert.equal(b.requests.length, 0);
  });

  it("fails over on a plain-text 404 (no Ollama at that address)", async () => {
    o.fault = { status: 404, rawBody: "404 page not found" };
    const res = await postJson(`${r.url}/v1/chat/completions`, chat());
    assert.equal(res.headers.get("x-router-provider"), "b");
    await res.body?.cancel();
  });

  it("serves legacy completions from /api/generate, not streamed", async () => {
    const res = await postJson(`${r.url}/v1/completions`, { model: "llama3", prompt: "Say hi", max_tokens: 7, temperature: 0.5, suffix: "END" });
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.equal(body.object, "text_completion");
    assert.match(body.id, /^cmpl-/);
    assert.equal(body.choices[0].text, "Ollama says hello.");
    assert.equal(body.choices[0].finish_reason, "stop");
    assert.deepEqual(body.usage, { prompt_tokens: 9, completion_tokens: 4, total_tokens: 13 });
    const up = o.requests[0];
    assert.equal(up.path, "/api/generate");
    assert.equal(up.body.prompt, "Say hi");
    assert.equal(up.body.suffix, "END");
    assert.equal(up.body.stream, false);
    assert.deepEqual(up.body.options, { temperature: 0.5, num_predict: 7 });
  });

  it("serves legacy completions from /api/generate, streamed", async () => {
    const res = await postJson(`${r.url}/v1/completions`, { model: "llama3", prompt: ["Say hi"], stream: true, stream_options: { include_usage: true } });
    assert.equal(res.status, 200);
    const events = await readSse(res);
    assert.equal(events.at(-1), "[DONE]");
    const chunks = events.slice(0, -1);
    assert.ok(chunks.every((c) => c.object === "text_completion"));
    assert.equal(textOf(chunks), "Ollama says hello.");
    assert.equal(chunks.at(-2).choices[0].finish_reason, "stop");
    assert.deepEqual(chunks.at(-1).usage, { prompt_tokens: 9, completion_tokens: 4, total_tokens: 13 });
    assert.equal(o.requests[0].path, "/api/generate");
    assert.equal(o.requests[0].body.prompt, "Say hi");
    assert.equal(o.requests[0].body.stream, true);
  });
});

describe("ollama tool calls in answers", () => {
  let o: FakeServer, r: RunningRouter;
  before(async () => {
    o = await startOllamaFake({ toolCall: { name: "get_weather", arguments: { city: "Paris", unit: "celsius" } } });
    r = await startRouter(`
circuit_breaker: { failure_threshold: 1000 }
providers:
  - { name: local, type: ollama, endpoint: ${o.url}, default_model: llama3 }
`);
  });
  after(async () => {
    await r.stop();
    await o.stop();
  });

  it("returns Ollama's tool call as an OpenAI tool call with stringified arguments", async () => {
    const res = await postJson(`${r.url}/v1/chat/completions`, chat({ tools: [weatherTool] }));
    assert.equal(res.status, 200);
    const body = await res.json();
    const m = body.choices[0].message;
    assert.equal(body.choices[0].finish_reason, "tool_calls");
    assert.equal(m.content, null);
    assert.equal(m.tool_calls.length, 1);
    assert.match(m.tool_calls[0].id, /^call_/);
    assert.equal(m.tool_calls[0].type, "function");
    assert.equal(m.tool_calls[0].function.name, "get_weather");
    assert.deepEqual(JSON.parse(m.tool_calls[0].function.arguments), { city: "Paris", unit: "celsius" });
  });

  it("streams a tool call as a tool_calls delta and finishes with tool_calls", async () => {
    const res = await postJson(`${r.url}/v1/chat/completions`, chat({ tools: [weatherTool], stream: true }));
    const events = await readSse(res);
    assert.equal(events.at(-1), "[DONE]");
    const calls = events.slice(0, -1).flatMap((e) => e.choices[0]?.delta?.tool_calls ?? []);
    assert.equal(calls.length, 1);
    assert.equal(calls[0].index, 0);
    assert.match(calls[0].id, /^call_/);
    assert.equal(calls[0].function.name, "get_weather");
    assert.deepEqual(JSON.parse(calls[0].function.arguments), { city: "Paris", unit: "celsius" });
    assert.equal(events.at(-2).choices[0].finish_reason, "tool_calls");
  });
});

describe("ollama stream errors and estimated usage", () => {
  it("turns an {\"error\"} line mid-stream into an SSE error event", async () => {
    await withOllama({ reply: "abcdefgh", chunks: 4, streamError: { after: 2, message: "out of memory" } }, async (o, r) => {
      const res = await postJson(`${r.url}/v1/chat/completions`, chat({ stream: true }));
      const events = await readSse(res);
      assert.equal(textOf(events.slice(0, -1)), "abcd");
      assert.notEqual(events.at(-1), "[DONE]");
      assert.equal(events.at(-1).error.message, "out of memory");
    });
  });

  it("treats a stream that ends without done:true as broken", async () => {
    await withOllama({ reply: "abcdefgh", chunks: 4, noDone: true }, async (o, r) => {
      const res = await postJson(`${r.url}/v1/chat/completions`, chat({ stream: true }));
      const events = await readSse(res);
      assert.equal(textOf(events.slice(0, -1)), "abcdefgh");
      assert.notEqual(events.at(-1), "[DONE]");
      assert.match(events.at(-1).error.message, /ended before/);
    });
  });

  it("estimates usage (about 4 characters a token) when Ollama leaves the counts out", async () => {
    const reply = "twelve chars"; // 12 chars -> 3 tokens
    await withOllama({ reply, counts: null }, async (o, r) => {
      const prompt = "x".repeat(40); // 40 chars + newline -> 11 tokens
      let res = await postJson(`${r.url}/v1/chat/completions`, chat({ messages: [{ role: "user", content: prompt }] }));
      const body = await res.json();
      assert.deepEqual(body.usage, { prompt_tokens: 11, completion_tokens: 3, total_tokens: 14 });
      res = await postJson(`${r.url}/v1/chat/completions`, chat({ messages: [{ role: "user", content: prompt }], stream: true, stream_options: { include_usage: true } }));
      const events = await readSse(res);
      assert.deepEqual(events.at(-2).usage, { prompt_tokens: 11, completion_tokens: 3, total_tokens: 14 });
      res = await postJson(`${r.url}/v1/completions`, { model: "llama3", prompt: "y".repeat(20) });
      assert.deepEqual((await res.json()).usage, { prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 });
    });
  });

  it("marks estimated usage for the router's records", async () => {
    const seen: any[] = [];
    await withOllama({ counts: null }, async (o, r) => {
      (r.router.hooks as any).onRequest = (rec: any) => seen.push(rec);
      const res = await postJson(`${r.url}/v1/chat/completions`, chat());
      await res.json();
      assert.equal(seen.length, 1);
      assert.equal(seen[0].usage.estimated, true);
    });
  });
});

describe("ollama thinking", () => {
  it("maps message.thinking to reasoning_content, streamed and not", async () => {
    await withOllama({ reply: "42", thinking: "Let me think." }, async (o, r) => {
      let res = await postJson(`${r.url}/v1/chat/completions`, chat({ think: true }));
      const m = (await res.json()).choices[0].message;
      assert.equal(m.content, "42");
      assert.equal(m.reasoning_content, "Let me think.");
      assert.equal(o.requests[0].body.think, true);
      res = await postJson(`${r.url}/v1/chat/completions`, chat({ think: true, stream: true }));
      const events = (await readSse(res)).slice(0, -1);
      assert.equal(events.map((e) => e.choices[0]?.delta?.reasoning_content ?? "").join(""), "Let me think.");
      assert.equal(textOf(events), "42");
    });
  });
});

describe("ollama connection refused", () => {
  it("fails over when Ollama is not running", async () => {
    const b = await startOpenAIFake({ reply: "B here" });
    const r = await startRouter(`
circuit_breaker: { failure_threshold: 1000 }
providers:
  - { name: local, type: ollama, endpoint: ${await refusedUrl()}, default_model: llama3 }
  - { name: b, type: openai, endpoint: ${b.url}/v1, default_model: m }
`);
    try {
      const res = await postJson(`${r.url}/v1/chat/completions`, chat({ stream: true }));
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("x-router-provider"), "b");
      assert.equal(res.headers.get("x-router-attempts"), "2");
      assert.equal(textOf(await readSse(res)), "B here");
    } finally {
      await r.stop();
      await b.stop();
    }
  });
});

describe("official openai SDK against the router with Ollama behind", () => {
  let o: FakeServer, r: RunningRouter, client: OpenAI;
  before(async () => {
    o = await startOllamaFake({ reply: "Hi from llama via the SDK.", models: ["llama3:latest", "qwen2:latest"] });
    r = await startRouter(`
circuit_breaker: { failure_threshold: 1000 }
providers:
  - { name: ollama, type: ollama, endpoint: ${o.url}, default_model: llama3, models: [llama3, qwen2] }
`);
    client = new OpenAI({ baseURL: `${r.url}/v1`, apiKey: "unused", maxRetries: 0, timeout: 10_000 });
  });
  after(async () => {
    await r.stop();
    await o.stop();
  });

  it("chat.completions.create", async () => {
    const c = await client.chat.completions.create({ model: "qwen2", messages: [{ role: "user", content: "hello" }], temperature: 0.2 });
    assert.equal(c.choices[0].message.content, "Hi from llama via the SDK.");
    assert.equal(c.model, "qwen2");
    assert.equal(c.usage?.total_tokens, 38);
    assert.equal(o.requests.at(-1)!.body.model, "qwen2");
  });

  it("logprobs, which the router cannot get from Ollama, get a 400 naming the field instead of logprobs: null", async () => {
    const before = o.requests.length;
    await assert.rejects(client.chat.completions.create({ model: "qwen2", messages: [{ role: "user", content: "hello" }], logprobs: true }), (e: any) => {
      assert.ok(e instanceof OpenAI.BadRequestError, String(e));
      assert.equal(e.param, "logprobs");
      assert.match(e.message, /^400 logprobs: /);
      return true;
    });
    await assert.rejects(client.completions.create({ model: "qwen2", prompt: "hello", logprobs: 3 }), (e: any) => e instanceof OpenAI.BadRequestError && e.param === "logprobs");
    assert.equal(o.requests.length, before, "Ollama was not called");
  });

  it("chat.completions.create with stream", async () => {
    const stream = await client.chat.completions.create({
      model: "llama3", messages: [{ role: "user", content: "hello" }], stream: true, stream_options: { include_usage: true },
    });
    let text = "", finish: string | null = null, usage: any;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? "";
      finish = chunk.choices[0]?.finish_reason ?? finish;
      if (chunk.usage) usage = chunk.usage;
    }
    assert.equal(text, "Hi from llama via the SDK.");
    assert.equal(finish, "stop");
    assert.equal(usage.prompt_tokens, 26);
    assert.equal(usage.completion_tokens, 12);
  });

  it("completions.create, streamed and not", async () => {
    const c = await client.completions.create({ model: "llama3", prompt: "Say hi" });
    assert.equal(c.choices[0].text, "Hi from llama via the SDK.");
    const stream = await client.completions.create({ model: "llama3", prompt: "Say hi", stream: true });
    let text = "";
    for await (const chunk of stream) text += chunk.choices[0]?.text ?? "";
    assert.equal(text, "Hi from llama via the SDK.");
    assert.equal(o.requests.at(-1)!.path, "/api/generate");
  });

  it("models.list", async () => {
    const ids: string[] = [];
    for await (const m of client.models.list()) ids.push(m.id);
    for (const id of ["llama3", "qwen2", "ollama/llama3", "ollama/qwen2"]) assert.ok(ids.includes(id), `${id} listed`);
  });
});

describe("a request no provider in the chain can express", () => {
  it("gets the first provider's 400 naming the field, not a 502, and calls no one", async () => {
    const o1 = await startOllamaFake({ reply: "one" });
    const o2 = await startOllamaFake({ reply: "two" });
    const r = await startRouter(`
providers:
  - { name: o1, type: ollama, endpoint: ${o1.url}, default_model: llama3 }
  - { name: o2, type: ollama, endpoint: ${o2.url}, default_model: llama3 }
`);
    try {
      const res = await postJson(`${r.url}/v1/chat/completions`, chat({
        messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "https://example.com/cat.png" } }] }],
      }));
      assert.equal(res.status, 400);
      const body = await res.json();
      assert.equal(body.error.param, "messages[0].content[0].image_url.url");
      assert.equal(o1.requests.length + o2.requests.length, 0);
    } finally {
      await r.stop();
      await o1.stop();
      await o2.stop();
    }
  });
});
