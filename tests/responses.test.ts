// POST /v1/responses: the stateless subset of the OpenAI Responses API, served through the chat path. End to end
// with the official `openai` SDK (responses.create / responses.stream) and the Vercel AI SDK's default
// `openai(model)`, in front of an OpenAI-protocol upstream and in front of Anthropic, after failing over past a
// provider answering 503; the 400s for the stateful and built-in features; a stream that breaks mid-way.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { APICallError, generateText, streamText } from "ai";
import { createOpenAI } from "@ai-sdk/openai";
import type { AnthropicFake } from "./fakes/anthropic.ts";
import { startOpenAIFake, type OpenAIFakeOptions } from "./fakes/openai.ts";
import type { FakeServer } from "./fakes/common.ts";
import { scrape, value } from "./helpers/metrics.ts";
import { postJson, startRouter, type RunningRouter } from "./helpers/router.ts";
import { type AnthropicChain, lastBody, type OpenAIChain, startAnthropicChain, startOpenAIChain, WEATHER_ARGS, WEATHER_DESCRIPTION } from "./helpers/chains.ts";
import { assertBrokenStream, assertStreamedText, deltas, parts, weatherLoop, weatherTool } from "./helpers/ai-sdk.ts";

const WEATHER_TOOL = {
  type: "function" as const,
  name: "get_weather",
  description: WEATHER_DESCRIPTION,
  parameters: { type: "object", properties: { city: { type: "string" }, unit: { type: "string", enum: ["c", "f"] } }, required: ["city", "unit"] },
  strict: false,
};

/** The raw SSE transcript of a streamed /v1/responses answer: [event name, parsed data] per event, and [DONE]. */
async function rawEvents(res: Response): Promise<{ events: [string, any][]; done: boolean }> {
  const text = await res.text();
  const events: [string, any][] = [];
  let done = false;
  for (const block of text.split("\n\n")) {
    if (!block) continue;
    if (block === "data: [DONE]") {
      done = true;
      continue;
    }
    const lines = block.split("\n");
    assert.ok(lines[0].startsWith("event: "), `an event: line first, got ${JSON.stringify(block.slice(0, 80))}`);
    assert.ok(lines[1].startsWith("data: "));
    const data = JSON.parse(lines[1].slice(6));
    assert.equal(data.type, lines[0].slice(7), "the event: line names the data's type");
    events.push([data.type, data]);
  }
  return { events, done };
}

function assertSequenced(events: { sequence_number: number }[]): void {
  events.forEach((e, i) => assert.equal(e.sequence_number, i, "sequence_number counts every event from 0"));
}

describe("Responses API, OpenAI-protocol upstream", () => {
  let chain: OpenAIChain, down: FakeServer, up: FakeServer, upOpts: OpenAIFakeOptions, r: RunningRouter, client: OpenAI;
  let aisdk: ReturnType<typeof createOpenAI>;
  before(async () => {
    chain = await startOpenAIChain();
    ({ down, up, upOpts, r } = chain);
    client = new OpenAI({ baseURL: `${r.url}/v1`, apiKey: "client-key", maxRetries: 0 });
    aisdk = createOpenAI({ baseURL: `${r.url}/v1`, apiKey: "client-key" });
  });
  after(() => chain.stop());

  it("openai SDK responses.create: fails over past the 503; output_text, usage and the echoed settings", async () => {
    const before = down.requests.length;
    const { data: res, response } = await client.responses.create({
      model: "gpt-x",
      instructions: "Be brief.",
      input: "hi",
      max_output_tokens: 50,
      temperature: 0.2,
      metadata: { app: "test" },
      user: "u1",
    }).withResponse();
    assert.equal(res.output_text, "Hello from upstream!");
    assert.match(res.id, /^resp_/);
    assert.equal(res.object, "response");
    assert.equal(res.status, "completed");
    assert.equal(res.model, "up-model");
    assert.equal(typeof res.created_at, "number");
    assert.equal(res.output.length, 1);
    const msg = res.output[0] as any;
    assert.equal(msg.type, "message");
    assert.equal(msg.role, "assistant");
    assert.equal(msg.status, "completed");
    assert.match(msg.id, /^msg_/);
    assert.deepEqual(msg.content[0], { type: "output_text", text: "Hello from upstream!", annotations: [], logprobs: [] });
    assert.deepEqual(res.usage, { input_tokens: 11, input_tokens_details: { cached_tokens: 0 }, output_tokens: 7, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 18 });
    assert.equal(res.instructions, "Be brief.");
    assert.equal(res.max_output_tokens, 50);
    assert.equal(res.temperature, 0.2);
    assert.deepEqual(res.metadata, { app: "test" });
    assert.equal((res as any).store, false, "nothing is stored");
    assert.equal(response.headers.get("x-router-provider"), "up");
    assert.equal(response.headers.get("x-router-attempts"), "2");
    assert.equal(down.requests.length, before + 1, "the failing provider was tried first");
    // what the upstream received: a chat completion request
    const sent = up.requests.at(-1)!;
    assert.equal(sent.path, "/v1/chat/completions");
    assert.deepEqual(sent.body.messages, [{ role: "system", content: "Be brief." }, { role: "user", content: "hi" }]);
    assert.equal(sent.body.max_tokens, 50);
    assert.equal(sent.body.temperature, 0.2);
    assert.equal(sent.body.user, "u1");
    assert.equal(sent.body.metadata, undefined, "metadata is echoed, not forwarded");
  });

  it("input items: roles, content parts and an image become chat messages", async () => {
    const res = await client.responses.create({
      model: "gpt-x",
      input: [
        { role: "developer", content: "Answer in French." },
        { type: "message", role: "user", content: [{ type: "input_text", text: "What is this?" }, { type: "input_image", image_url: "data:image/png;base64,iVBORw==", detail: "low" }] },
        { role: "assistant", content: [{ type: "output_text", text: "A pixel.", annotations: [] }] },
        { role: "user", content: "Sure?" },
      ] as any,
    });
    assert.equal(res.output_text, "Hello from upstream!");
    assert.deepEqual(lastBody(up).messages, [
      { role: "developer", content: "Answer in French." },
      { role: "user", content: [{ type: "text", text: "What is this?" }, { type: "image_url", image_url: { url: "data:image/png;base64,iVBORw==", detail: "low" } }] },
      { role: "assistant", content: "A pixel." },
      { role: "user", content: "Sure?" },
    ]);
  });

  it("openai SDK, streamed: the event sequence, with event: lines, sequence numbers, usage and [DONE]", async () => {
    const res = await postJson(`${r.url}/v1/responses`, { model: "gpt-x", input: "hi", stream: true });
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /^text\/event-stream/);
    const { events, done } = await rawEvents(res);
    assert.ok(done, "the transcript ends with data: [DONE]");
    assertSequenced(events.map((e) => e[1]));
    const types = events.map((e) => e[0]);
    const textDeltas = types.filter((t) => t === "response.output_text.delta").length;
    assert.ok(textDeltas >= 2, `several text deltas, got ${textDeltas}`);
    assert.deepEqual(types.filter((t) => t !== "response.output_text.delta"), [
      "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
      "response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed",
    ]);
    const byType = (t: string) => events.find((e) => e[0] === t)![1];
    assert.equal(byType("response.created").response.status, "in_progress");
    assert.equal(byType("response.created").response.id, byType("response.completed").response.id);
    const item = byType("response.output_item.added");
    assert.equal(item.output_index, 0);
    assert.equal(item.item.type, "message");
    const d = byType("response.output_text.delta");
    assert.equal(d.item_id, item.item.id);
    assert.equal(d.content_index, 0);
    assert.equal(byType("response.output_text.done").text, "Hello from upstream!");
    const completed = byType("response.completed").response;
    assert.equal(completed.status, "completed");
    assert.equal(completed.output[0].content[0].text, "Hello from upstream!");
    assert.equal(completed.usage.total_tokens, 18);
    assert.equal(lastBody(up).stream, true);
    assert.deepEqual(lastBody(up).stream_options, { include_usage: true });

    // the SDK's two ways of streaming
    const s = await client.responses.create({ model: "gpt-x", input: "hi", stream: true });
    let text = "";
    let last: any;
    for await (const e of s) {
      if (e.type === "response.output_text.delta") text += e.delta;
      last = e;
    }
    assert.equal(text, "Hello from upstream!");
    assert.equal(last.type, "response.completed");
    const helper = client.responses.stream({ model: "gpt-x", input: "hi" });
    const final = await helper.finalResponse();
    assert.equal(final.output_text, "Hello from upstream!");
    assert.equal(final.usage?.output_tokens, 7);
  });

  it("openai SDK function tool round trip: function_call out, function_call_output back in", async () => {
    upOpts.toolCall = { name: "get_weather", arguments: JSON.stringify(WEATHER_ARGS) };
    try {
      const first = await client.responses.create({ model: "gpt-x", input: "weather in Paris?", tools: [WEATHER_TOOL], tool_choice: "required", parallel_tool_calls: false });
      assert.equal(first.output.length, 1);
      const call = first.output[0] as any;
      assert.equal(call.type, "function_call");
      assert.equal(call.name, "get_weather");
      assert.equal(call.call_id, "call_1");
      assert.equal(call.status, "completed");
      assert.match(call.id, /^fc_/);
      assert.deepEqual(JSON.parse(call.arguments), WEATHER_ARGS);
      assert.equal(first.output_text, "");
      const sent = lastBody(up);
      assert.deepEqual(sent.tools, [{ type: "function", function: { name: "get_weather", description: WEATHER_TOOL.description, parameters: WEATHER_TOOL.parameters, strict: false } }]);
      assert.equal(sent.tool_choice, "required");
      assert.equal(sent.parallel_tool_calls, false);

      delete upOpts.toolCall;
      const second = await client.responses.create({
        model: "gpt-x",
        input: [{ role: "user", content: "weather in Paris?" }, ...first.output as any[], { type: "function_call_output", call_id: call.call_id, output: "sunny, 21 C" }],
        tools: [WEATHER_TOOL],
        tool_choice: { type: "function", name: "get_weather" },
      });
      assert.equal(second.output_text, "Hello from upstream!");
      const msgs = lastBody(up).messages;
      assert.deepEqual(msgs[1], { role: "assistant", content: null, tool_calls: [{ id: "call_1", type: "function", function: { name: "get_weather", arguments: JSON.stringify(WEATHER_ARGS) } }] });
      assert.deepEqual(msgs[2], { role: "tool", tool_call_id: "call_1", content: "sunny, 21 C" });
      assert.deepEqual(lastBody(up).tool_choice, { type: "function", function: { name: "get_weather" } });
    } finally {
      delete upOpts.toolCall;
    }
  });

  it("streamed function call: output_item.added, argument deltas, arguments.done, output_item.done", async () => {
    upOpts.toolCall = { name: "get_weather", arguments: JSON.stringify(WEATHER_ARGS) };
    try {
      const res = await postJson(`${r.url}/v1/responses`, { model: "gpt-x", input: "weather?", tools: [WEATHER_TOOL], stream: true });
      const { events, done } = await rawEvents(res);
      assert.ok(done);
      assertSequenced(events.map((e) => e[1]));
      const types = events.map((e) => e[0]);
      assert.ok(!types.includes("response.output_text.delta"), "no text");
      const added = events.find((e) => e[0] === "response.output_item.added")![1];
      assert.equal(added.item.type, "function_call");
      assert.equal(added.item.name, "get_weather");
      assert.equal(added.item.call_id, "call_1");
      const fragments = events.filter((e) => e[0] === "response.function_call_arguments.delta").map((e) => e[1]);
      assert.ok(fragments.length >= 2, `several argument fragments, got ${fragments.length}`);
      for (const f of fragments) assert.equal(f.item_id, added.item.id);
      assert.deepEqual(JSON.parse(fragments.map((f) => f.delta).join("")), WEATHER_ARGS);
      const argsDone = events.find((e) => e[0] === "response.function_call_arguments.done")![1];
      assert.deepEqual(JSON.parse(argsDone.arguments), WEATHER_ARGS);
      const itemDone = events.find((e) => e[0] === "response.output_item.done")![1];
      assert.equal(itemDone.item.status, "completed");
      assert.equal(itemDone.item.arguments, argsDone.arguments);
      const completed = events.at(-1)![1];
      assert.equal(completed.type, "response.completed");
      assert.deepEqual(completed.response.output, [itemDone.item]);

      const final = await client.responses.stream({ model: "gpt-x", input: "weather?", tools: [WEATHER_TOOL] }).finalResponse();
      assert.equal((final.output[0] as any).name, "get_weather");
    } finally {
      delete upOpts.toolCall;
    }
  });

  it("a refusal becomes a refusal content part, streamed (refusal.delta / refusal.done) and not", async () => {
    upOpts.refusal = "I can't help with that.";
    try {
      const res = await client.responses.create({ model: "gpt-x", input: "something bad" });
      assert.deepEqual((res.output[0] as any).content, [{ type: "refusal", refusal: "I can't help with that." }]);
      assert.equal(res.output_text, "");
      const sres = await postJson(`${r.url}/v1/responses`, { model: "gpt-x", input: "something bad", stream: true });
      const { events, done } = await rawEvents(sres);
      assert.ok(done);
      assertSequenced(events.map((e) => e[1]));
      const types = events.map((e) => e[0]);
      assert.ok(types.filter((t) => t === "response.refusal.delta").length >= 2);
      assert.ok(!types.includes("response.output_text.delta"));
      assert.equal(events.find((e) => e[0] === "response.refusal.done")![1].refusal, "I can't help with that.");
      const completed = events.at(-1)![1];
      assert.deepEqual(completed.response.output[0].content, [{ type: "refusal", refusal: "I can't help with that." }]);
      const final = await client.responses.stream({ model: "gpt-x", input: "something bad" }).finalResponse();
      const part = (final.output[0] as any).content[0];
      assert.equal(part.type, "refusal");
      assert.equal(part.refusal, "I can't help with that.");
    } finally {
      delete upOpts.refusal;
    }
  });

  it("text.format json_schema / json_object become response_format", async () => {
    const schema = { type: "object", properties: { city: { type: "string" } }, required: ["city"], additionalProperties: false };
    const res = await client.responses.create({ model: "gpt-x", input: "city?", text: { format: { type: "json_schema", name: "city", schema, strict: true } } });
    assert.deepEqual(lastBody(up).response_format, { type: "json_schema", json_schema: { name: "city", schema, strict: true } });
    assert.deepEqual((res.text as any).format, { type: "json_schema", name: "city", schema, strict: true });
    await client.responses.create({ model: "gpt-x", input: "json please", text: { format: { type: "json_object" } } });
    assert.deepEqual(lastBody(up).response_format, { type: "json_object" });
  });

  it("stateful and built-in features get a 400 naming the field, and no provider is called", async () => {
    const cases: [Record<string, unknown>, string, RegExp][] = [
      [{ previous_response_id: "resp_123" }, "previous_response_id", /stateless/],
      [{ conversation: "conv_123" }, "conversation", /stateless/],
      [{ background: true }, "background", /not supported/],
      [{ prompt: { id: "pmpt_1" } }, "prompt", /not supported/],
      [{ tools: [{ type: "web_search" }] }, "tools[0].type", /'web_search' tools are not supported/],
      [{ tools: [WEATHER_TOOL, { type: "file_search", vector_store_ids: ["vs_1"] }] }, "tools[1].type", /'file_search'/],
      [{ tools: [{ type: "code_interpreter", container: { type: "auto" } }] }, "tools[0].type", /'code_interpreter'/],
      [{ tools: [{ type: "function" }] }, "tools[0].name", /is required/],
      [{ input: [{ type: "item_reference", id: "msg_1" }] }, "input[0].type", /item_reference is not supported/],
      [{ input: [{ role: "user", content: [{ type: "input_file", file_id: "file-1" }] }] }, "input[0].content[0].type", /input_file/],
      [{ input: [{ role: "user", content: [{ type: "input_image", file_id: "file-1" }] }] }, "input[0].content[0].file_id", /not supported/],
      [{ input: [{ type: "web_search_call", id: "ws_1" }] }, "input[0].type", /not supported/],
      [{ input: [{ type: "function_call", name: "f", arguments: "{}" }] }, "input[0].call_id", /is required/],
      [{ input: [{ role: "tool", content: "x" }] }, "input[0].role", /must be user, system, developer or assistant/],
      [{ input: [] }, "input", /at least one item/],
      [{ input: 42 }, "input", /must be a string or an array/],
      [{ tool_choice: { type: "web_search_preview" } }, "tool_choice", /must be/],
      [{ temperature: 3 }, "temperature", /2/],
      [{ max_output_tokens: 0 }, "max_output_tokens", /./],
      [{ text: { format: { type: "json_schema", schema: {} } } }, "text.format.name", /required/],
    ];
    const before = up.requests.length + down.requests.length;
    for (const [extra, param, msg] of cases) {
      const res = await postJson(`${r.url}/v1/responses`, { model: "gpt-x", input: "hi", ...extra });
      const body = await res.json();
      assert.equal(res.status, 400, `${JSON.stringify(extra)}: ${JSON.stringify(body)}`);
      assert.equal(body.error.type, "invalid_request_error");
      assert.equal(body.error.param, param, JSON.stringify(body));
      assert.ok(body.error.message.startsWith(`${param}: `), body.error.message);
      assert.match(body.error.message, msg);
    }
    const missing = await postJson(`${r.url}/v1/responses`, { input: "hi" });
    assert.equal(missing.status, 400);
    assert.equal((await missing.json()).error.param, "model");
    assert.equal(up.requests.length + down.requests.length, before, "no provider was called");

    // the SDK surfaces it as a BadRequestError
    await assert.rejects(client.responses.create({ model: "gpt-x", input: "hi", previous_response_id: "resp_1" }), (e: any) => e.status === 400 && /previous_response_id/.test(e.message));
  });

  it("a provider's 400 about a tool names the tool as the Responses request has it", async () => {
    up.fault = {
      status: 400,
      body: { error: { message: "Invalid schema for function 'get_weather'.", type: "invalid_request_error", param: "tools[0].function.parameters", code: "invalid_function_parameters" } },
      times: 1,
    };
    await assert.rejects(client.responses.create({ model: "gpt-x", input: "hi", tools: [WEATHER_TOOL] }), (e: any) => {
      assert.ok(e instanceof OpenAI.BadRequestError, String(e));
      assert.equal(e.param, "tools[0].parameters");
      assert.equal(e.code, "invalid_function_parameters");
      return true;
    });
  });

  it("stored-response endpoints answer a clear 404 (nothing is stored); GET /v1/responses is a 405", async () => {
    for (const [method, path] of [["GET", "/v1/responses/resp_1"], ["DELETE", "/v1/responses/resp_1"], ["POST", "/v1/responses/resp_1/cancel"], ["GET", "/v1/responses/resp_1/input_items"]]) {
      const res = await fetch(`${r.url}${path}`, { method });
      const body = await res.json();
      assert.equal(res.status, 404, path);
      assert.equal(body.error.code, "unsupported_endpoint");
      assert.match(body.error.message, /stores no responses/);
    }
    await assert.rejects(client.responses.retrieve("resp_1"), (e: any) => e.status === 404);
    const res = await fetch(`${r.url}/v1/responses`);
    assert.equal(res.status, 405);
    assert.equal(res.headers.get("allow"), "POST");
    await res.body?.cancel();
  });

  it("a stream that breaks after its first content ends with response.failed, not response.completed", async () => {
    up.fault = { cutAfter: 3, chunkDelayMs: 10, times: 1 };
    const res = await postJson(`${r.url}/v1/responses`, { model: "gpt-x", input: "hi", stream: true });
    assert.equal(res.status, 200);
    const { events, done } = await rawEvents(res);
    assert.ok(!done, "no [DONE] after a failure");
    assertSequenced(events.map((e) => e[1]));
    const types = events.map((e) => e[0]);
    assert.ok(types.includes("response.output_text.delta"), "some text arrived first");
    assert.ok(!types.includes("response.completed"));
    const last = events.at(-1)![1];
    assert.equal(last.type, "response.failed");
    assert.equal(last.response.status, "failed");
    assert.match(last.response.error.message, /upstream stream broke/);
    assert.equal(typeof last.response.error.code, "string");

    // the SDK's helper rejects or reports it; the iterator sees the response.failed event last
    up.fault = { cutAfter: 3, chunkDelayMs: 10, times: 1 };
    const s = await client.responses.create({ model: "gpt-x", input: "hi", stream: true });
    let lastType = "";
    for await (const e of s) lastType = e.type;
    assert.equal(lastType, "response.failed");
  });

  it("metrics label the requests /v1/responses", async () => {
    const m = await scrape(r.url);
    assert.ok((value(m, "failover_router_requests_total", { endpoint: "/v1/responses", status: "200" }) ?? 0) >= 5);
    assert.ok((value(m, "failover_router_requests_total", { endpoint: "/v1/responses", status: "400" }) ?? 0) >= 20);
  });

  it("AI SDK openai(model): generateText fails over and reports text, usage, finish reason", async () => {
    const res = await generateText({ model: aisdk("gpt-x"), system: "Be brief.", prompt: "hi", maxRetries: 0 });
    assert.equal(res.text, "Hello from upstream!");
    assert.equal(res.finishReason, "stop");
    assert.equal(res.usage.inputTokens, 11);
    assert.equal(res.usage.outputTokens, 7);
    assert.equal(res.response.modelId, "up-model");
    assert.equal(res.response.headers?.["x-router-provider"], "up");
    assert.equal(new URL(up.requests.at(-1)!.path, "http://x").pathname, "/v1/chat/completions");
    assert.equal(lastBody(up).messages[0].content, "Be brief.");
  });

  it("AI SDK openai(model): streamText delivers the text in several deltas, then usage and finish reason", async () => {
    await assertStreamedText(streamText({ model: aisdk("gpt-x"), prompt: "hi", maxRetries: 0 }), "Hello from upstream!", { inputTokens: 11, outputTokens: 7 });
  });

  it("AI SDK openai(model): tool call, streamed tool call, and a two-step tool loop", async () => {
    upOpts.toolCall = { name: "get_weather", arguments: JSON.stringify(WEATHER_ARGS) };
    try {
      const g = await generateText({ model: aisdk("gpt-x"), prompt: "weather?", tools: { get_weather: weatherTool() }, maxRetries: 0 });
      assert.equal(g.finishReason, "tool-calls");
      assert.deepEqual(g.toolCalls.map((t) => [t.toolName, t.input]), [["get_weather", WEATHER_ARGS]]);
      assert.deepEqual(lastBody(up).tools[0].function.parameters.required, ["city", "unit"]);

      const s = streamText({ model: aisdk("gpt-x"), prompt: "weather?", tools: { get_weather: weatherTool() }, maxRetries: 0 });
      const ps = await parts(s);
      const fragments = ps.filter((p) => p.type === "tool-input-delta").map((p) => p.delta);
      assert.ok(fragments.length >= 2, `several argument fragments, got ${JSON.stringify(fragments)}`);
      assert.deepEqual((await s.toolCalls).map((t) => [t.toolName, t.input]), [["get_weather", WEATHER_ARGS]]);
      assert.equal(await s.finishReason, "tool-calls");

      const seen: unknown[] = [];
      const loop = await generateText({
        model: aisdk("gpt-x"),
        ...weatherLoop((a) => {
          seen.push(a);
          delete upOpts.toolCall;
        }),
      });
      assert.deepEqual(seen, [WEATHER_ARGS]);
      assert.equal(loop.steps.length, 2);
      assert.equal(loop.text, "Hello from upstream!");
      const msgs = lastBody(up).messages;
      assert.equal(msgs.at(-2).tool_calls[0].function.name, "get_weather");
      assert.equal(msgs.at(-1).role, "tool");
      assert.equal(msgs.at(-1).tool_call_id, msgs.at(-2).tool_calls[0].id);
      assert.match(msgs.at(-1).content, /sunny, 21 C/);
    } finally {
      delete upOpts.toolCall;
    }
  });

  it("AI SDK openai(model): a stream that breaks mid-way ends in an error part and finishReason error", async () => {
    up.fault = { cutAfter: 3, chunkDelayMs: 10, times: 1 };
    await assertBrokenStream(aisdk("gpt-x"));
  });

  it("AI SDK openai(model): all providers failing surfaces as an APICallError with status 502", async () => {
    up.fault = { status: 500, times: 1 };
    await assert.rejects(
      generateText({ model: aisdk("gpt-x"), prompt: "hi", maxRetries: 0 }),
      (e: any) => APICallError.isInstance(e) && e.statusCode === 502 && /failed/.test(e.message),
    );
  });
});

describe("Responses API, Anthropic upstream", () => {
  let chain: AnthropicChain, claude: AnthropicFake, r: RunningRouter, client: OpenAI;
  let aisdk: ReturnType<typeof createOpenAI>;
  before(async () => {
    chain = await startAnthropicChain();
    ({ claude, r } = chain);
    client = new OpenAI({ baseURL: `${r.url}/v1`, apiKey: "client-key", maxRetries: 0 });
    aisdk = createOpenAI({ baseURL: `${r.url}/v1`, apiKey: "client-key" });
  });
  after(() => chain.stop());

  it("openai SDK: create and stream through Claude, instructions as the system prompt", async () => {
    claude.reset();
    const res = await client.responses.create({ model: "gpt-x", instructions: "Be brief.", input: "hi", max_output_tokens: 64 });
    assert.equal(res.output_text, "Bonjour from Claude.");
    assert.equal(res.model, "claude-test");
    assert.equal(res.usage?.input_tokens, 21);
    assert.equal(res.usage?.output_tokens, 8);
    assert.equal(lastBody(claude).system, "Be brief.");
    assert.equal(lastBody(claude).max_tokens, 64);

    const final = await client.responses.stream({ model: "gpt-x", input: "hi" }).finalResponse();
    assert.equal(final.output_text, "Bonjour from Claude.");
    assert.equal(final.status, "completed");
    assert.equal(final.usage?.output_tokens, 8);
  });

  it("openai SDK: text and parallel tool calls come back as one message and two function_call items, in order", async () => {
    claude.options.reply = "Let me check.";
    claude.options.toolUses = [{ id: "toolu_1", name: "get_weather", input: WEATHER_ARGS }, { id: "toolu_2", name: "get_time", input: { zone: "Europe/Paris" } }];
    const timeTool = { type: "function" as const, name: "get_time", parameters: { type: "object", properties: { zone: { type: "string" } } }, strict: false };
    try {
      for (const stream of [false, true]) {
        const res = stream
          ? await client.responses.stream({ model: "gpt-x", input: "weather and time?", tools: [WEATHER_TOOL, timeTool] }).finalResponse()
          : await client.responses.create({ model: "gpt-x", input: "weather and time?", tools: [WEATHER_TOOL, timeTool] });
        assert.deepEqual(res.output.map((o: any) => o.type), ["message", "function_call", "function_call"], `stream ${stream}`);
        assert.equal(res.output_text, "Let me check.");
        const calls = res.output.slice(1) as any[];
        assert.deepEqual(calls.map((c) => [c.call_id, c.name, JSON.parse(c.arguments)]), [["toolu_1", "get_weather", WEATHER_ARGS], ["toolu_2", "get_time", { zone: "Europe/Paris" }]]);
      }
      // the round trip: the text and both calls form one assistant turn, the outputs one user turn of tool_results
      const first = await client.responses.create({ model: "gpt-x", input: "weather and time?", tools: [WEATHER_TOOL, timeTool] });
      claude.options = { ...claude.options, toolUses: [], reply: "Sunny, and it is noon." };
      const second = await client.responses.create({
        model: "gpt-x",
        input: [
          { role: "user", content: "weather and time?" },
          ...first.output as any[],
          { type: "function_call_output", call_id: "toolu_1", output: "sunny" },
          { type: "function_call_output", call_id: "toolu_2", output: [{ type: "input_text", text: "12:00" }] },
        ],
        tools: [WEATHER_TOOL, timeTool],
      });
      assert.equal(second.output_text, "Sunny, and it is noon.");
      const msgs = lastBody(claude).messages;
      assert.deepEqual(msgs[1].content.map((b: any) => b.type), ["text", "tool_use", "tool_use"]);
      assert.deepEqual(msgs[2].content.map((b: any) => [b.type, b.tool_use_id]), [["tool_result", "toolu_1"], ["tool_result", "toolu_2"]]);
      assert.match(JSON.stringify(msgs[2].content[1].content), /12:00/);
    } finally {
      claude.reset();
    }
  });

  it("max_output_tokens hit: status incomplete with incomplete_details, streamed and not", async () => {
    claude.options.stopReason = "max_tokens";
    try {
      const res = await client.responses.create({ model: "gpt-x", input: "hi", max_output_tokens: 5 });
      assert.equal(res.status, "incomplete");
      assert.deepEqual(res.incomplete_details, { reason: "max_output_tokens" });
      assert.equal(res.output_text, "Bonjour from Claude.");
      const sres = await postJson(`${r.url}/v1/responses`, { model: "gpt-x", input: "hi", max_output_tokens: 5, stream: true });
      const { events, done } = await rawEvents(sres);
      assert.ok(done);
      const last = events.at(-1)![1];
      assert.equal(last.type, "response.incomplete");
      assert.equal(last.response.status, "incomplete");
      assert.deepEqual(last.response.incomplete_details, { reason: "max_output_tokens" });
      const g = await generateText({ model: aisdk("gpt-x"), prompt: "hi", maxOutputTokens: 5, maxRetries: 0 });
      assert.equal(g.finishReason, "length");
    } finally {
      claude.reset();
    }
  });

  it("AI SDK openai(model): generateText, streamText and a streamed tool loop through Claude", async () => {
    claude.reset();
    const g = await generateText({ model: aisdk("gpt-x"), system: "Be brief.", prompt: "hi", maxRetries: 0 });
    assert.equal(g.text, "Bonjour from Claude.");
    assert.equal(g.usage.inputTokens, 21);
    assert.equal(g.response.headers?.["x-router-provider"], "claude");
    assert.equal(lastBody(claude).system, "Be brief.");

    const s = streamText({ model: aisdk("gpt-x"), prompt: "hi", maxRetries: 0 });
    const ds = await deltas(s);
    assert.ok(ds.length >= 2);
    assert.equal(ds.join(""), "Bonjour from Claude.");
    assert.equal((await s.usage).outputTokens, 8);

    // a first step with text before the tool call: the SDK sends that text back as an item_reference unless
    // store is false (nothing is stored here to resolve it), so store: false is the documented setting
    claude.options.toolUses = [{ id: "toolu_weather1", name: "get_weather", input: WEATHER_ARGS }];
    claude.options.reply = "Let me check.";
    try {
      const loop = streamText({
        model: aisdk("gpt-x"),
        providerOptions: { openai: { store: false } },
        ...weatherLoop(() => {
          claude.options = { ...claude.options, toolUses: [], reply: "It is sunny in Paris." };
        }),
      });
      assert.equal((await deltas(loop)).join(""), "Let me check.It is sunny in Paris.");
      assert.equal((await loop.steps).length, 2);
      assert.equal(await loop.finishReason, "stop");
      const msgs = lastBody(claude).messages;
      assert.deepEqual(msgs.at(-2).content.map((b: any) => b.type), ["text", "tool_use"]);
      assert.equal(msgs.at(-2).content[0].text, "Let me check.");
      assert.equal(msgs.at(-2).content.find((b: any) => b.type === "tool_use").id, "toolu_weather1");
      const result = msgs.at(-1).content.find((b: any) => b.type === "tool_result");
      assert.equal(result.tool_use_id, "toolu_weather1");
      assert.match(JSON.stringify(result.content), /sunny, 21 C/);
    } finally {
      claude.reset();
    }
  });

  it("AI SDK default (store: true) replaying earlier text as an item_reference gets a 400 that says to set store: false", async () => {
    claude.options.toolUses = [{ id: "toolu_1", name: "get_weather", input: WEATHER_ARGS }];
    claude.options.reply = "Let me check.";
    try {
      await assert.rejects(
        generateText({ model: aisdk("gpt-x"), ...weatherLoop(() => {}) }),
        (e: any) => {
          assert.ok(APICallError.isInstance(e), String(e));
          assert.equal(e.statusCode, 400);
          assert.match(e.message, /^input\[1\]\.type: item_reference is not supported/);
          assert.match(e.message, /store: false/);
          return true;
        },
      );
    } finally {
      claude.reset();
    }
  });

  it("input Claude cannot take gets a 400 naming the field of the Responses request, not of the chat request", async () => {
    const before = claude.requests.length;
    const cases: [OpenAI.Responses.ResponseCreateParamsNonStreaming["input"], string][] = [
      // the second call's arguments are not a JSON object; the instructions and the merged calls shift the chat indexes
      [[
        { role: "user", content: "hi" },
        { type: "function_call", call_id: "c1", name: "get_weather", arguments: "{}" },
        { type: "function_call", call_id: "c2", name: "get_weather", arguments: "[1,2]" },
        { type: "function_call_output", call_id: "c1", output: "x" },
        { type: "function_call_output", call_id: "c2", output: "y" },
      ], "input[2].arguments"],
      [[{ role: "user", content: [{ type: "input_text", text: "what is this?" }, { type: "input_image", image_url: "ftp://example.com/a.png", detail: "auto" }] }], "input[0].content[1].image_url"],
    ];
    for (const [input, param] of cases) {
      await assert.rejects(client.responses.create({ model: "claude/claude-test", instructions: "Be brief.", input }), (e: any) => {
        assert.ok(e instanceof OpenAI.BadRequestError, String(e));
        assert.equal(e.param, param);
        assert.ok(e.message.startsWith(`400 ${param}: `), e.message);
        return true;
      });
    }
    assert.equal(claude.requests.length, before, "Claude was not called");
  });

  it("Claude's stream error mid-way ends with response.failed", async () => {
    claude.options.streamErrorAfter = 2;
    try {
      const res = await postJson(`${r.url}/v1/responses`, { model: "gpt-x", input: "hi", stream: true });
      const { events, done } = await rawEvents(res);
      assert.ok(!done);
      assert.ok(events.some((e) => e[0] === "response.output_text.delta"));
      const last = events.at(-1)![1];
      assert.equal(last.type, "response.failed");
      assert.match(last.response.error.message, /Overloaded/);
    } finally {
      claude.reset();
    }
  });
});

describe("Responses API: idempotency and client disconnect", () => {
  let up: FakeServer, r: RunningRouter;
  before(async () => {
    up = await startOpenAIFake({ reply: "the one and only answer", chunks: 5 });
    r = await startRouter(`
providers: [{ name: up, type: openai, endpoint: ${up.url}/v1, default_model: m }]
idempotency: { ttl_seconds: 60 }
`);
  });
  after(async () => {
    await r.stop();
    await up.stop();
  });

  it("a repeated Idempotency-Key replays the stored answer, JSON and streamed, without calling the provider", async () => {
    for (const stream of [false, true]) {
      up.reset();
      const key = `resp-key-${stream}`;
      const first = await postJson(`${r.url}/v1/responses`, { model: "m", input: "hi", stream }, { "idempotency-key": key });
      const firstText = await first.text();
      const again = await postJson(`${r.url}/v1/responses`, { model: "m", input: "hi", stream }, { "idempotency-key": key });
      assert.equal(again.status, 200);
      assert.equal(again.headers.get("idempotent-replayed"), "true", `stream ${stream}`);
      assert.equal(await again.text(), firstText, "the same response id and body");
      assert.equal(up.requests.length, 1, "one provider call");
      assert.match(firstText, /resp_/);
    }
  });

  it("a client that leaves mid-stream aborts the upstream stream", async () => {
    up.reset();
    up.fault = { chunkDelayMs: 300 };
    const ac = new AbortController();
    const res = await fetch(`${r.url}/v1/responses`, {
      method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "m", input: "hi", stream: true }), signal: ac.signal,
    });
    const reader = res.body!.getReader();
    await reader.read();
    ac.abort();
    await reader.cancel().catch(() => {});
    const end = Date.now() + 5000;
    while (up.aborted === 0 && Date.now() < end) await new Promise((res) => setTimeout(res, 20));
    assert.equal(up.aborted, 1, "the upstream connection was closed");
    up.fault = null;
  });
});
