// End to end with the Vercel AI SDK (`ai` + `@ai-sdk/openai` / `@ai-sdk/openai-compatible`) pointed at the
// router, as an app would use it: generateText, streamText, tools with zod schemas (one-shot, streamed, and a
// two-step tool loop), in front of an OpenAI-protocol provider and in front of Anthropic, each time after
// failing over past a provider answering 503.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { APICallError, generateText, Output, streamText, tool } from "ai";
import { createOpenAI } from "@ai-sdk/openai";
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import { z } from "zod";
import type { AnthropicFake } from "./fakes/anthropic.ts";
import type { OpenAIFakeOptions } from "./fakes/openai.ts";
import type { FakeServer } from "./fakes/common.ts";
import type { RunningRouter } from "./helpers/router.ts";
import { type AnthropicChain, lastBody, type OpenAIChain, startAnthropicChain, startOpenAIChain, WEATHER_ARGS } from "./helpers/chains.ts";
import { assertBrokenStream, assertStreamedText, assertStreamedWeatherCall, deltas, weatherLoop, weatherTool } from "./helpers/ai-sdk.ts";

describe("Vercel AI SDK against the router, OpenAI-protocol upstream", () => {
  let chain: OpenAIChain, down: FakeServer, up: FakeServer, upOpts: OpenAIFakeOptions, r: RunningRouter;
  let openai: ReturnType<typeof createOpenAI>;
  let compat: ReturnType<typeof createOpenAICompatible>;
  before(async () => {
    chain = await startOpenAIChain();
    ({ down, up, upOpts, r } = chain);
    openai = createOpenAI({ baseURL: `${r.url}/v1`, apiKey: "client-key" });
    compat = createOpenAICompatible({ name: "router", baseURL: `${r.url}/v1`, apiKey: "client-key", includeUsage: true });
  });
  after(() => chain.stop());

  it("openai.chat(): generateText fails over past the 503 and reports text, usage, finish reason", async () => {
    const before = down.requests.length;
    const res = await generateText({ model: openai.chat("gpt-x"), prompt: "hi", maxRetries: 0 });
    assert.equal(res.text, "Hello from upstream!");
    assert.equal(res.finishReason, "stop");
    assert.equal(res.usage.inputTokens, 11);
    assert.equal(res.usage.outputTokens, 7);
    assert.equal(res.response.modelId, "up-model");
    assert.equal(res.response.headers?.["x-router-provider"], "up");
    assert.equal(res.response.headers?.["x-router-attempts"], "2");
    assert.equal(down.requests.length, before + 1, "the failing provider was tried first");
    assert.equal(up.requests.at(-1)!.path, "/v1/chat/completions");
  });

  it("openai.chat(): streamText delivers the text in several deltas, then usage and finish reason", async () => {
    const s = streamText({ model: openai.chat("gpt-x"), prompt: "hi", maxRetries: 0 });
    await assertStreamedText(s, "Hello from upstream!", { inputTokens: 11, outputTokens: 7 });
    assert.equal(await s.text, "Hello from upstream!");
    assert.equal(lastBody(up).stream, true);
  });

  it("createOpenAICompatible: generateText and streamText", async () => {
    const g = await generateText({ model: compat("gpt-x"), prompt: "hi", maxRetries: 0 });
    assert.equal(g.text, "Hello from upstream!");
    assert.equal(g.usage.totalTokens, 18);
    await assertStreamedText(streamText({ model: compat("gpt-x"), prompt: "hi", maxRetries: 0 }), "Hello from upstream!", { outputTokens: 7 });
  });

  it("openai.completion(): legacy completions, generateText and streamText", async () => {
    const g = await generateText({ model: openai.completion("gpt-x"), prompt: "Say hello", maxRetries: 0 });
    assert.equal(g.text, "Hello from upstream!");
    assert.equal(up.requests.at(-1)!.path, "/v1/completions");
    await assertStreamedText(streamText({ model: openai.completion("gpt-x"), prompt: "Say hello", maxRetries: 0 }), "Hello from upstream!", { outputTokens: 7 });
  });

  it("tool call: the SDK sees the tool name and the parsed, schema-checked arguments", async () => {
    upOpts.toolCall = { name: "get_weather", arguments: JSON.stringify(WEATHER_ARGS) };
    try {
      const res = await generateText({ model: openai.chat("gpt-x"), prompt: "weather in Paris?", tools: { get_weather: weatherTool() }, maxRetries: 0 });
      assert.equal(res.finishReason, "tool-calls");
      assert.equal(res.toolCalls.length, 1);
      assert.equal(res.toolCalls[0].toolName, "get_weather");
      assert.deepEqual(res.toolCalls[0].input, WEATHER_ARGS);
      // the zod schema reached the upstream as JSON Schema
      const t = lastBody(up).tools[0];
      assert.equal(t.function.name, "get_weather");
      assert.deepEqual(t.function.parameters.required, ["city", "unit"]);
      assert.deepEqual(t.function.parameters.properties.unit.enum, ["c", "f"]);
    } finally {
      delete upOpts.toolCall;
    }
  });

  it("streamed tool call: argument fragments arrive and assemble into the parsed input", async () => {
    upOpts.toolCall = { name: "get_weather", arguments: JSON.stringify(WEATHER_ARGS) };
    try {
      for (const model of [openai.chat("gpt-x"), compat("gpt-x")]) {
        const { fragments } = await assertStreamedWeatherCall(model, WEATHER_ARGS);
        assert.deepEqual(JSON.parse(fragments.join("")), WEATHER_ARGS);
      }
    } finally {
      delete upOpts.toolCall;
    }
  });

  it("tool loop: the tool result goes back as a tool message and the model's answer comes out", async () => {
    upOpts.toolCall = { name: "get_weather", arguments: JSON.stringify(WEATHER_ARGS) };
    const seen: unknown[] = [];
    try {
      const res = await generateText({
        model: openai.chat("gpt-x"),
        ...weatherLoop((a) => {
          seen.push(a);
          delete upOpts.toolCall; // the next model call answers with text
        }),
      });
      assert.deepEqual(seen, [WEATHER_ARGS]);
      assert.equal(res.steps.length, 2);
      assert.equal(res.text, "Hello from upstream!");
      const msgs = lastBody(up).messages;
      assert.equal(msgs.at(-2).role, "assistant");
      assert.equal(msgs.at(-2).tool_calls[0].function.name, "get_weather");
      assert.equal(msgs.at(-1).role, "tool");
      assert.equal(msgs.at(-1).tool_call_id, msgs.at(-2).tool_calls[0].id);
      assert.match(JSON.stringify(msgs.at(-1).content), /sunny, 21 C/);
    } finally {
      delete upOpts.toolCall;
    }
  });

  it("all providers failing surfaces as an APICallError with status 502", async () => {
    up.fault = { status: 500, times: 1 };
    await assert.rejects(
      generateText({ model: openai.chat("gpt-x"), prompt: "hi", maxRetries: 0 }),
      (e: any) => APICallError.isInstance(e) && e.statusCode === 502 && /failed/.test(e.message),
    );
  });

  it("a stream that breaks after its first content ends in an error part and finishReason error, not a silent success", async () => {
    for (const model of [openai.chat("gpt-x"), compat("gpt-x")]) {
      up.fault = { cutAfter: 3, chunkDelayMs: 10, times: 1 };
      await assertBrokenStream(model);
    }
  });

  it("openai(model) (the Responses API, POST /v1/responses) is served through the chat path (more in responses.test.ts)", async () => {
    const res = await generateText({ model: openai("gpt-x"), prompt: "hi", maxRetries: 0 });
    assert.equal(res.text, "Hello from upstream!");
    assert.equal(res.usage.outputTokens, 7);
    assert.equal(res.response.headers?.["x-router-provider"], "up");
    assert.equal(up.requests.at(-1)!.path, "/v1/chat/completions");
  });
});

describe("Vercel AI SDK against the router, Anthropic upstream", () => {
  let chain: AnthropicChain, claude: AnthropicFake;
  let openai: ReturnType<typeof createOpenAI>;
  let compat: ReturnType<typeof createOpenAICompatible>;
  before(async () => {
    chain = await startAnthropicChain();
    claude = chain.claude;
    openai = createOpenAI({ baseURL: `${chain.r.url}/v1`, apiKey: "client-key" });
    compat = createOpenAICompatible({ name: "router", baseURL: `${chain.r.url}/v1`, apiKey: "client-key", includeUsage: true });
  });
  after(() => chain.stop());

  it("generateText fails over to Claude and reports text, usage, finish reason", async () => {
    claude.reset();
    const res = await generateText({ model: openai.chat("gpt-x"), system: "Be brief.", prompt: "hi", maxRetries: 0 });
    assert.equal(res.text, "Bonjour from Claude.");
    assert.equal(res.finishReason, "stop");
    assert.equal(res.usage.inputTokens, 21);
    assert.equal(res.usage.outputTokens, 8);
    assert.equal(res.response.headers?.["x-router-provider"], "claude");
    assert.equal(lastBody(claude).system, "Be brief.");
  });

  it("streamText delivers Claude's text deltas, usage and finish reason", async () => {
    for (const model of [openai.chat("gpt-x"), compat("gpt-x")]) {
      await assertStreamedText(streamText({ model, prompt: "hi", maxRetries: 0 }), "Bonjour from Claude.", { inputTokens: 21, outputTokens: 8 });
    }
  });

  it("tool call: the zod schema becomes an Anthropic tool, the tool_use comes back as the SDK's tool call", async () => {
    claude.options.toolUses = [{ name: "get_weather", input: WEATHER_ARGS }];
    claude.options.reply = "";
    try {
      const res = await generateText({ model: openai.chat("gpt-x"), prompt: "weather in Paris?", tools: { get_weather: weatherTool() }, toolChoice: "required", maxRetries: 0 });
      assert.equal(res.finishReason, "tool-calls");
      assert.equal(res.toolCalls.length, 1);
      assert.equal(res.toolCalls[0].toolName, "get_weather");
      assert.deepEqual(res.toolCalls[0].input, WEATHER_ARGS);
      const body = lastBody(claude);
      assert.equal(body.tools[0].name, "get_weather");
      assert.deepEqual(body.tools[0].input_schema.required, ["city", "unit"]);
      assert.deepEqual(body.tool_choice, { type: "any" });
    } finally {
      claude.reset();
    }
  });

  it("streamed tool call: Claude's input_json_delta fragments assemble into the parsed input", async () => {
    claude.options.toolUses = [{ name: "get_weather", input: WEATHER_ARGS }];
    claude.options.reply = "Let me check.";
    try {
      for (const model of [openai.chat("gpt-x"), compat("gpt-x")]) {
        const { ps } = await assertStreamedWeatherCall(model, WEATHER_ARGS);
        assert.equal(ps.filter((p) => p.type === "text-delta").map((p) => p.text).join(""), "Let me check.");
      }
    } finally {
      claude.reset();
    }
  });

  it("parallel tool calls, streamed and not: both tool_use blocks become the SDK's tool calls, in order", async () => {
    claude.options.toolUses = [{ name: "get_weather", input: WEATHER_ARGS }, { name: "get_time", input: { zone: "Europe/Paris" } }];
    claude.options.reply = "";
    const tools = { get_weather: weatherTool(), get_time: tool({ description: "Local time", inputSchema: z.object({ zone: z.string() }) }) };
    const expected = [["get_weather", WEATHER_ARGS], ["get_time", { zone: "Europe/Paris" }]];
    try {
      const g = await generateText({ model: compat("gpt-x"), prompt: "weather and time in Paris?", tools, maxRetries: 0 });
      assert.deepEqual(g.toolCalls.map((t) => [t.toolName, t.input]), expected);
      const s = streamText({ model: openai.chat("gpt-x"), prompt: "weather and time in Paris?", tools, maxRetries: 0 });
      assert.deepEqual((await s.toolCalls).map((t) => [t.toolName, t.input]), expected);
      const ids = (await s.toolCalls).map((t) => t.toolCallId);
      assert.equal(new Set(ids).size, 2, "distinct tool call ids");
    } finally {
      claude.reset();
    }
  });

  it("structured output (Output.object) and an image file part are translated for Claude", async () => {
    claude.options.reply = '{"city":"Paris"}';
    try {
      const res = await generateText({
        model: openai.chat("gpt-x"),
        messages: [{ role: "user", content: [{ type: "text", text: "Which city is this?" }, { type: "file", data: new Uint8Array([137, 80, 78, 71]), mediaType: "image/png" }] }],
        output: Output.object({ schema: z.object({ city: z.string() }) }),
        maxRetries: 0,
      });
      assert.deepEqual(res.output, { city: "Paris" });
      const body = lastBody(claude);
      assert.match(body.system, /JSON Schema/);
      assert.match(body.system, /"city"/);
      assert.deepEqual(body.messages[0].content[1], { type: "image", source: { type: "base64", media_type: "image/png", data: "iVBORw==" } });
    } finally {
      claude.reset();
    }
  });

  it("tool loop, streamed: the tool result reaches Claude as a tool_result block and the answer streams back", async () => {
    claude.options.toolUses = [{ id: "toolu_weather1", name: "get_weather", input: WEATHER_ARGS }];
    claude.options.reply = "";
    try {
      const s = streamText({
        model: openai.chat("gpt-x"),
        ...weatherLoop(() => {
          claude.options = { ...claude.options, toolUses: [], reply: "It is sunny in Paris." };
        }),
      });
      assert.equal((await deltas(s)).join(""), "It is sunny in Paris.");
      assert.equal((await s.steps).length, 2);
      assert.equal(await s.finishReason, "stop");
      // the second Claude request carries the tool_use and its tool_result (the fake rejects a mismatch with 400)
      const msgs = lastBody(claude).messages;
      const use = msgs.at(-2).content.find((b: any) => b.type === "tool_use");
      const result = msgs.at(-1).content.find((b: any) => b.type === "tool_result");
      assert.equal(use.id, "toolu_weather1");
      assert.deepEqual(use.input, WEATHER_ARGS);
      assert.equal(result.tool_use_id, "toolu_weather1");
      assert.match(JSON.stringify(result.content), /sunny, 21 C/);
    } finally {
      claude.reset();
    }
  });
});
