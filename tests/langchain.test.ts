// End to end with LangChain JS (`@langchain/openai`) pointed at the router through configuration.baseURL, as an
// app would use it: ChatOpenAI invoke / stream / bindTools (tool calls whole and streamed, a tool result sent
// back), the legacy completions `OpenAI` LLM class, in front of an OpenAI-protocol provider and in front of
// Anthropic, after failing over past a provider answering 503.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { ChatOpenAI, ChatOpenAICompletions, OpenAI } from "@langchain/openai";
import { AIMessage, type AIMessageChunk, HumanMessage, ToolMessage } from "@langchain/core/messages";
import { tool } from "@langchain/core/tools";
import type { AnthropicFake } from "./fakes/anthropic.ts";
import type { OpenAIFakeOptions } from "./fakes/openai.ts";
import type { FakeServer } from "./fakes/common.ts";
import type { RunningRouter } from "./helpers/router.ts";
import { type AnthropicChain, lastBody, type OpenAIChain, startAnthropicChain, startOpenAIChain, WEATHER_ARGS, WEATHER_DESCRIPTION, weatherInput } from "./helpers/chains.ts";

const weather = tool(async ({ city }) => `sunny in ${city}`, { name: "get_weather", description: WEATHER_DESCRIPTION, schema: weatherInput });

/** Streams and concatenates the chunks as LangChain apps do; also returns how many chunks carried text. */
async function streamAll(s: AsyncIterable<AIMessageChunk>): Promise<{ full: AIMessageChunk; textChunks: number }> {
  let full: AIMessageChunk | undefined;
  let textChunks = 0;
  for await (const c of s) {
    if (typeof c.content === "string" && c.content.length > 0) textChunks++;
    full = full ? full.concat(c) : c;
  }
  assert.ok(full, "at least one chunk");
  return { full, textChunks };
}

function chatModel(r: RunningRouter, model = "gpt-x"): ChatOpenAI {
  return new ChatOpenAI({ model, apiKey: "client-key", configuration: { baseURL: `${r.url}/v1` }, maxRetries: 0 });
}

describe("LangChain ChatOpenAI against the router, OpenAI-protocol upstream", () => {
  let chain: OpenAIChain, down: FakeServer, up: FakeServer, upOpts: OpenAIFakeOptions, r: RunningRouter;
  before(async () => {
    chain = await startOpenAIChain();
    ({ down, up, upOpts, r } = chain);
  });
  after(() => chain.stop());

  it("invoke fails over past the 503: content, usage and finish reason", async () => {
    const before = down.requests.length;
    const m = await chatModel(r).invoke("hi");
    assert.equal(m.content, "Hello from upstream!");
    assert.equal(m.usage_metadata?.input_tokens, 11);
    assert.equal(m.usage_metadata?.output_tokens, 7);
    assert.equal(m.usage_metadata?.total_tokens, 18);
    assert.equal(m.response_metadata.finish_reason, "stop");
    assert.equal(m.response_metadata.model_name, "up-model");
    assert.equal(down.requests.length, before + 1, "the failing provider was tried first");
    assert.equal(up.requests.at(-1)!.path, "/v1/chat/completions");
  });

  it("stream: text in several chunks, then usage (stream_options.include_usage)", async () => {
    const { full, textChunks } = await streamAll(await chatModel(r).stream([new HumanMessage("hi")]));
    assert.ok(textChunks >= 2, `several text chunks, got ${textChunks}`);
    assert.equal(full.content, "Hello from upstream!");
    assert.equal(full.usage_metadata?.output_tokens, 7);
    assert.equal(full.usage_metadata?.input_tokens, 11);
    assert.equal(lastBody(up).stream, true);
  });

  it("bindTools: the zod schema goes upstream, the tool call comes back with parsed args", async () => {
    upOpts.toolCall = { name: "get_weather", arguments: JSON.stringify(WEATHER_ARGS) };
    try {
      const m = await chatModel(r).bindTools([weather]).invoke("weather in Paris?");
      assert.equal(m.tool_calls?.length, 1);
      assert.equal(m.tool_calls![0].name, "get_weather");
      assert.deepEqual(m.tool_calls![0].args, WEATHER_ARGS);
      assert.equal(m.tool_calls![0].id, "call_1");
      const t = lastBody(up).tools[0];
      assert.equal(t.function.name, "get_weather");
      assert.deepEqual(t.function.parameters.required, ["city", "unit"]);
    } finally {
      delete upOpts.toolCall;
    }
  });

  it("bindTools + stream: tool_call_chunks concatenate into the parsed tool call", async () => {
    upOpts.toolCall = { name: "get_weather", arguments: JSON.stringify(WEATHER_ARGS) };
    try {
      let argChunks = 0;
      let full: AIMessageChunk | undefined;
      for await (const c of await chatModel(r).bindTools([weather]).stream("weather in Paris?")) {
        if (c.tool_call_chunks?.some((t) => t.args)) argChunks++;
        full = full ? full.concat(c) : c;
      }
      assert.ok(argChunks >= 2, `several argument chunks, got ${argChunks}`);
      assert.equal(full!.tool_calls?.length, 1);
      assert.equal(full!.tool_calls![0].name, "get_weather");
      assert.deepEqual(full!.tool_calls![0].args, WEATHER_ARGS);
      assert.equal(full!.response_metadata.finish_reason, "tool_calls");
    } finally {
      delete upOpts.toolCall;
    }
  });

  it("a tool result goes back as a tool message tied to the call", async () => {
    const ai = new AIMessage({ content: "", tool_calls: [{ id: "call_1", name: "get_weather", args: WEATHER_ARGS }] });
    const m = await chatModel(r).bindTools([weather]).invoke([
      new HumanMessage("weather in Paris?"),
      ai,
      new ToolMessage({ tool_call_id: "call_1", content: String(await weather.invoke(WEATHER_ARGS)) }),
    ]);
    assert.equal(m.content, "Hello from upstream!");
    const msgs = lastBody(up).messages;
    assert.equal(msgs[1].tool_calls[0].id, "call_1");
    assert.deepEqual(JSON.parse(msgs[1].tool_calls[0].function.arguments), WEATHER_ARGS);
    assert.deepEqual({ role: msgs[2].role, tool_call_id: msgs[2].tool_call_id, content: msgs[2].content }, { role: "tool", tool_call_id: "call_1", content: "sunny in Paris" });
  });

  it("a stream that breaks after its first content throws, not a silent truncated success", async () => {
    up.fault = { cutAfter: 3, chunkDelayMs: 10, times: 1 };
    let text = "";
    await assert.rejects(async () => {
      for await (const c of await chatModel(r).stream("hi")) text += c.content;
    }, /upstream stream broke/);
    assert.ok(text.length > 0 && text.length < "Hello from upstream!".length, `partial text before the error, got ${JSON.stringify(text)}`);
  });

  it("legacy completions: the OpenAI LLM class, invoke and stream", async () => {
    const llm = new OpenAI({ model: "gpt-x", apiKey: "client-key", configuration: { baseURL: `${r.url}/v1` }, maxRetries: 0 });
    assert.equal(await llm.invoke("Say hello"), "Hello from upstream!");
    assert.equal(up.requests.at(-1)!.path, "/v1/completions");
    const pieces: string[] = [];
    for await (const p of await llm.stream("Say hello")) pieces.push(p);
    assert.ok(pieces.length >= 2, `several chunks, got ${JSON.stringify(pieces)}`);
    assert.equal(pieces.join(""), "Hello from upstream!");
  });

  it("all providers failing surfaces as an error with status 502", async () => {
    up.fault = { status: 500, times: 1 };
    await assert.rejects(chatModel(r).invoke("hi"), (e: any) => e.status === 502 && /failed/.test(e.message));
  });

  it("the Responses API (useResponsesApi, or a model name LangChain sends there) is served through the chat path", async () => {
    // ChatOpenAI switches to POST /v1/responses on its own for some model names (codex, *-pro, ...)
    const m = await chatModel(r, "gpt-5-codex").invoke("hi");
    assert.equal(m.text, "Hello from upstream!");
    assert.equal(up.requests.at(-1)!.path, "/v1/chat/completions");
    assert.deepEqual(lastBody(up).messages, [{ role: "user", content: "hi" }]);
    const responsesModel = new ChatOpenAI({ model: "gpt-x", useResponsesApi: true, apiKey: "client-key", configuration: { baseURL: `${r.url}/v1` }, maxRetries: 0 });
    // Responses-API chunks carry content parts, not a string: count the chunks with text
    const pieces: string[] = [];
    let full: AIMessageChunk | undefined;
    for await (const c of await responsesModel.stream("hi")) {
      if (c.text) pieces.push(c.text);
      full = full ? full.concat(c) : c;
    }
    assert.ok(pieces.length >= 2, `several text chunks, got ${JSON.stringify(pieces)}`);
    assert.equal(pieces.join(""), "Hello from upstream!");
    assert.equal(full?.usage_metadata?.output_tokens, 7);
    // a tool call and its result sent back, in Responses API items
    upOpts.toolCall = { name: "get_weather", arguments: JSON.stringify(WEATHER_ARGS) };
    try {
      const withTools = responsesModel.bindTools([weather]);
      const ai = await withTools.invoke("weather in Paris?");
      assert.equal(ai.tool_calls?.length, 1);
      assert.equal(ai.tool_calls![0].name, "get_weather");
      assert.deepEqual(ai.tool_calls![0].args, WEATHER_ARGS);
      delete upOpts.toolCall;
      const answer = await withTools.invoke([new HumanMessage("weather in Paris?"), ai, new ToolMessage({ tool_call_id: ai.tool_calls![0].id!, content: "sunny" })]);
      assert.equal(answer.text, "Hello from upstream!");
      const msgs = lastBody(up).messages;
      assert.equal(msgs.at(-2).tool_calls[0].function.name, "get_weather");
      assert.deepEqual(msgs.at(-1), { role: "tool", tool_call_id: msgs.at(-2).tool_calls[0].id, content: "sunny" });
    } finally {
      delete upOpts.toolCall;
    }
  });
});

describe("LangChain ChatOpenAI against the router, Anthropic upstream", () => {
  let chain: AnthropicChain, claude: AnthropicFake, r: RunningRouter;
  before(async () => {
    chain = await startAnthropicChain();
    ({ claude, r } = chain);
  });
  after(() => chain.stop());

  it("invoke and stream", async () => {
    const m = await chatModel(r).invoke("hi");
    assert.equal(m.content, "Bonjour from Claude.");
    assert.equal(m.usage_metadata?.input_tokens, 21);
    assert.equal(m.usage_metadata?.output_tokens, 8);
    const { full, textChunks } = await streamAll(await chatModel(r).stream("hi"));
    assert.ok(textChunks >= 2, `several text chunks, got ${textChunks}`);
    assert.equal(full.content, "Bonjour from Claude.");
    assert.equal(full.usage_metadata?.output_tokens, 8);
  });

  it("bindTools, whole and streamed, then the tool result as a tool_result block", async () => {
    claude.options.toolUses = [{ id: "toolu_w1", name: "get_weather", input: WEATHER_ARGS }];
    claude.options.reply = "";
    try {
      const model = chatModel(r).bindTools([weather]);
      const m = await model.invoke("weather in Paris?");
      assert.deepEqual(m.tool_calls?.map((t) => [t.id, t.name, t.args]), [["toolu_w1", "get_weather", WEATHER_ARGS]]);
      assert.equal(lastBody(claude).tools[0].input_schema.properties.unit.type, "string");
      const { full } = await streamAll(await model.stream("weather in Paris?"));
      assert.deepEqual(full.tool_calls?.map((t) => [t.id, t.name, t.args]), [["toolu_w1", "get_weather", WEATHER_ARGS]]);

      claude.options = { ...claude.options, toolUses: [], reply: "It is sunny in Paris." };
      const answer = await model.invoke([
        new HumanMessage("weather in Paris?"),
        m,
        new ToolMessage({ tool_call_id: "toolu_w1", content: "sunny, 21 C" }),
      ]);
      assert.equal(answer.content, "It is sunny in Paris.");
      const msgs = lastBody(claude).messages;
      assert.equal(msgs.at(-1).content[0].type, "tool_result");
      assert.equal(msgs.at(-1).content[0].tool_use_id, "toolu_w1");
    } finally {
      claude.reset();
    }
  });
});
