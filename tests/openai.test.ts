import { after, before, beforeEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import { startOpenAIFake } from "./fakes/openai.ts";
import { refusedUrl, type FakeServer } from "./fakes/common.ts";
import { postJson, readSse, startRouter, type RunningRouter } from "./helpers/router.ts";

const chat = (extra: Record<string, unknown> = {}) => ({ model: "gpt-test", messages: [{ role: "user", content: "hi" }], ...extra });

describe("openai adapter through the router", () => {
  let a: FakeServer, b: FakeServer, r: RunningRouter;
  before(async () => {
    a = await startOpenAIFake({ reply: "answer from A", usage: { prompt_tokens: 5, completion_tokens: 3 } });
    b = await startOpenAIFake({ reply: "answer from B" });
    r = await startRouter(`
providers:
  - { name: a, type: openai, endpoint: ${a.url}/v1, api_key: sk-a-secret, default_model: a-model, models: [gpt-test], timeout_seconds: 1 }
  - { name: b, type: openai_compatible, endpoint: ${b.url}/v1, default_model: b-model, model_map: { gpt-test: b-mapped } }
routing: { fallback_chain: [a, b] }
circuit_breaker: { failure_threshold: 1000 }  # many failures in a row here; breakers are tested in breakers.test.ts
`);
  });
  after(async () => {
    await r.stop();
    await a.stop();
    await b.stop();
  });
  beforeEach(() => {
    a.reset();
    b.reset();
  });

  it("answers a chat completion from the first provider, with usage and router headers", async () => {
    const res = await postJson(`${r.url}/v1/chat/completions`, chat(), { "x-request-id": "my-req-1" });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("x-router-provider"), "a");
    assert.equal(res.headers.get("x-router-attempts"), "1");
    assert.equal(res.headers.get("x-request-id"), "my-req-1");
    const body = await res.json();
    assert.equal(body.choices[0].message.content, "answer from A");
    assert.deepEqual(body.usage, { prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 });
    assert.equal(a.requests.length, 1);
    assert.equal(a.requests[0].path, "/v1/chat/completions");
    assert.equal(a.requests[0].headers.authorization, "Bearer sk-a-secret");
    assert.equal(a.requests[0].body.model, "gpt-test");
    assert.equal(b.requests.length, 0);
  });

  it("generates an x-request-id when the client sends none", async () => {
    const res = await postJson(`${r.url}/v1/chat/completions`, chat());
    assert.match(res.headers.get("x-request-id") ?? "", /^req_/);
    await res.body?.cancel();
  });

  it("streams chunks and [DONE], dropping the usage chunk the client did not ask for", async () => {
    const res = await postJson(`${r.url}/v1/chat/completions`, chat({ stream: true }));
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /text\/event-stream/);
    const events = await readSse(res);
    assert.equal(events.at(-1), "[DONE]");
    const text = events.slice(0, -1).map((e) => e.choices[0]?.delta?.content ?? "").join("");
    assert.equal(text, "answer from A");
    assert.ok(events.slice(0, -1).every((e) => !e.usage), "no usage chunk");
    assert.equal(a.requests[0].body.stream_options.include_usage, true, "router asks upstream for usage");
  });

  it("streams the usage chunk when include_usage is set", async () => {
    const res = await postJson(`${r.url}/v1/chat/completions`, chat({ stream: true, stream_options: { include_usage: true } }));
    const events = await readSse(res);
    const usage = events.find((e) => e !== "[DONE]" && e.usage);
    assert.deepEqual(usage.usage, { prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 });
  });

  it("maps the model per provider on failover (model_map) and reports the answering model", async () => {
    a.fault = { status: 500 };
    const res = await postJson(`${r.url}/v1/chat/completions`, chat());
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("x-router-provider"), "b");
    assert.equal(res.headers.get("x-router-attempts"), "2");
    const body = await res.json();
    assert.equal(body.model, "b-mapped");
    assert.equal(b.requests[0].body.model, "b-mapped");
    assert.equal(b.requests[0].headers.authorization, undefined);
  });

  it("sends max_tokens to OpenAI as max_completion_tokens (o-series and gpt-5 reject max_tokens), as is elsewhere", async () => {
    let res = await postJson(`${r.url}/v1/chat/completions`, chat({ max_tokens: 33 }));
    assert.equal(res.status, 200);
    await res.body?.cancel();
    assert.equal(a.requests[0].body.max_completion_tokens, 33);
    assert.equal("max_tokens" in a.requests[0].body, false);
    // a client that sends both keeps its own max_completion_tokens
    res = await postJson(`${r.url}/v1/chat/completions`, chat({ max_tokens: 33, max_completion_tokens: 44 }));
    await res.body?.cancel();
    assert.equal(a.requests[1].body.max_completion_tokens, 44);
    // openai_compatible servers (vLLM, Ollama, LM Studio...) get max_tokens as sent
    a.fault = { status: 500 };
    res = await postJson(`${r.url}/v1/chat/completions`, chat({ max_tokens: 33 }));
    await res.body?.cancel();
    assert.equal(b.requests[0].body.max_tokens, 33);
    assert.equal("max_completion_tokens" in b.requests[0].body, false);
  });

  for (const status of [500, 502, 503, 408, 429, 401, 403]) {
    it(`fails over on upstream ${status}`, async () => {
      a.fault = { status };
      const res = await postJson(`${r.url}/v1/chat/completions`, chat());
      assert.equal(res.status, 200);
      assert.equal((await res.json()).choices[0].message.content, "answer from B");
      assert.equal(a.requests.length, 1);
      assert.equal(b.requests.length, 1);
    });
  }

  for (const status of [400, 413, 422]) {
    it(`returns upstream ${status} to the client at once, OpenAI-shaped`, async () => {
      a.fault = { status, body: { error: { message: "bad thing", type: "invalid_request_error", param: "messages", code: "bad" } } };
      const res = await postJson(`${r.url}/v1/chat/completions`, chat());
      assert.equal(res.status, status);
      const body = await res.json();
      assert.equal(body.error.message, "bad thing");
      assert.equal(body.error.param, "messages");
      assert.equal(b.requests.length, 0);
    });
  }

  it("fails over on a context-length 400", async () => {
    a.fault = { status: 400, body: { error: { message: "This model's maximum context length is 8192 tokens", code: "context_length_exceeded" } } };
    const res = await postJson(`${r.url}/v1/chat/completions`, chat());
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("x-router-provider"), "b");
  });

  it("fails over on a timeout (hang past timeout_seconds)", async () => {
    a.fault = { hang: true };
    const t0 = Date.now();
    const res = await postJson(`${r.url}/v1/chat/completions`, chat());
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("x-router-provider"), "b");
    assert.ok(Date.now() - t0 < 3000);
  });

  it("fails over on an HTML error page and on a non-OpenAI JSON body", async () => {
    a.fault = { status: 502, rawBody: "<html><body>Bad gateway</body></html>" };
    let res = await postJson(`${r.url}/v1/chat/completions`, chat());
    assert.equal(res.headers.get("x-router-provider"), "b");
    await res.body?.cancel();
    a.fault = { status: 200, body: { hello: "world" } };
    res = await postJson(`${r.url}/v1/chat/completions`, chat());
    assert.equal(res.headers.get("x-router-provider"), "b");
    await res.body?.cancel();
  });

  it("fails over a stream that breaks before its first content chunk", async () => {
    a.fault = { cutAfter: 1 };
    const res = await postJson(`${r.url}/v1/chat/completions`, chat({ stream: true }));
    assert.equal(res.headers.get("x-router-provider"), "b");
    const events = await readSse(res);
    assert.equal(events.slice(0, -1).map((e) => e.choices[0]?.delta?.content ?? "").join(""), "answer from B");
  });

  it("ends a stream that breaks after content with an SSE error event, not [DONE]", async () => {
    a.fault = { cutAfter: 3, chunkDelayMs: 30 };
    const res = await postJson(`${r.url}/v1/chat/completions`, chat({ stream: true }));
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("x-router-provider"), "a");
    const events = await readSse(res);
    assert.notEqual(events.at(-1), "[DONE]");
    assert.equal(events.at(-1).error.type, "upstream_error");
    // a short reason for the client: no upstream URL, no runtime debugging hints
    assert.match(events.at(-1).error.message, /^upstream stream broke: \S/);
    assert.doesNotMatch(events.at(-1).error.message, /127\.0\.0\.1|verbose|fetch\(\)/);
    assert.equal(b.requests.length, 0);
  });

  it("passes legacy completions through to /completions, streamed and not", async () => {
    let res = await postJson(`${r.url}/v1/completions`, { model: "gpt-test", prompt: "Say hi" });
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.equal(body.object, "text_completion");
    assert.equal(body.choices[0].text, "answer from A");
    assert.equal(a.requests[0].path, "/v1/completions");
    res = await postJson(`${r.url}/v1/completions`, { model: "gpt-test", prompt: ["Say hi"], stream: true });
    const events = await readSse(res);
    assert.equal(events.slice(0, -1).map((e) => e.choices[0]?.text ?? "").join(""), "answer from A");
  });

  it("pins a provider with provider/model and does not fail over", async () => {
    let res = await postJson(`${r.url}/v1/chat/completions`, chat({ model: "b/some-model" }));
    assert.equal(res.headers.get("x-router-provider"), "b");
    assert.equal(b.requests[0].body.model, "some-model");
    await res.body?.cancel();
    b.fault = { status: 503 };
    res = await postJson(`${r.url}/v1/chat/completions`, chat({ model: "b/some-model" }));
    assert.equal(res.status, 502);
    assert.equal(a.requests.length, 0);
    await res.body?.cancel();
  });

  it("returns 502 all_providers_failed with every attempt when the whole chain fails", async () => {
    a.fault = { status: 500 };
    b.fault = { status: 503 };
    const res = await postJson(`${r.url}/v1/chat/completions`, chat());
    assert.equal(res.status, 502);
    const body = await res.json();
    assert.equal(body.error.code, "all_providers_failed");
    assert.equal(body.error.type, "upstream_error");
    assert.deepEqual(body.error.attempts.map((x: any) => [x.provider, x.status]), [["a", 500], ["b", 503]]);
    assert.ok(!JSON.stringify(body).includes("sk-a-secret"));
  });
});

describe("connection refused", () => {
  it("fails over when the first provider refuses connections", async () => {
    const b = await startOpenAIFake({ reply: "B here" });
    const r = await startRouter(`
providers:
  - { name: dead, type: openai, endpoint: ${await refusedUrl()}/v1, default_model: m }
  - { name: b, type: openai, endpoint: ${b.url}/v1, default_model: m }
`);
    try {
      const res = await postJson(`${r.url}/v1/chat/completions`, chat());
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("x-router-provider"), "b");
      assert.equal(res.headers.get("x-router-attempts"), "2");
      await res.body?.cancel();
    } finally {
      await r.stop();
      await b.stop();
    }
  });
});

describe("large stream chunks", () => {
  it("streams chunks bigger than the router's read buffer intact, multi-byte characters included", async () => {
    const reply = "Grüße ✓ 😀 ".repeat(3000); // about 45 KB of UTF-8 in 2 chunks: each spans several upstream reads
    const a = await startOpenAIFake({ reply, chunks: 2 });
    const r = await startRouter(`
providers:
  - { name: a, type: openai, endpoint: ${a.url}/v1, default_model: m }
`);
    try {
      const res = await postJson(`${r.url}/v1/chat/completions`, chat({ stream: true }));
      assert.equal(res.status, 200);
      const events = await readSse(res);
      assert.equal(events.at(-1), "[DONE]");
      assert.equal(events.slice(0, -1).map((e) => e.choices[0]?.delta?.content ?? "").join(""), reply);
    } finally {
      await r.stop();
      await a.stop();
    }
  });
});
