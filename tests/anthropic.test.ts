import { after, before, beforeEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { startAnthropicFake, type AnthropicFake } from "./fakes/anthropic.ts";
import { startOpenAIFake } from "./fakes/openai.ts";
import type { FakeServer } from "./fakes/common.ts";
import { postJson, readSse, startRouter, type RunningRouter } from "./helpers/router.ts";
import { parseConfig } from "../src/config/load.ts";
import { AnthropicAdapter } from "../src/providers/anthropic/adapter.ts";

const KEY = "sk-ant-test-secret";
const chat = (extra: Record<string, unknown> = {}) => ({ model: "claude-test", messages: [{ role: "user", content: "hi" }], ...extra });
const WEATHER_TOOL = {
  type: "function",
  function: {
    name: "get_weather",
    description: "Current weather for a city",
    parameters: { type: "object", properties: { city: { type: "string" }, unit: { type: "string", enum: ["c", "f"] } }, required: ["city"] },
  },
};

/** The text of a chat stream (content deltas joined). */
const streamedText = (events: any[]) => events.filter((e) => e !== "[DONE]" && !e.error).map((e) => e.choices[0]?.delta?.content ?? "").join("");

/** Reassembles streamed tool calls by index, checking the OpenAI delta shape on the way. */
function streamedToolCalls(events: any[]): { id: string; type: string; function: { name: string; arguments: string } }[] {
  const calls: any[] = [];
  for (const e of events) {
    if (e === "[DONE]" || e.error) continue;
    for (const tc of e.choices[0]?.delta?.tool_calls ?? []) {
      if (!calls[tc.index]) {
        assert.equal(typeof tc.id, "string", "the first delta of a tool call carries its id");
        assert.equal(tc.type, "function");
        assert.equal(typeof tc.function.name, "string");
        assert.equal(tc.function.arguments, "");
        calls[tc.index] = { id: tc.id, type: tc.type, function: { name: tc.function.name, arguments: "" } };
      } else {
        assert.equal(tc.id, undefined, "later deltas carry only argument fragments");
        calls[tc.index].function.arguments += tc.function.arguments;
      }
    }
  }
  return calls;
}

describe("anthropic adapter through the router", () => {
  let claude: AnthropicFake, backup: FakeServer, r: RunningRouter;
  before(async () => {
    claude = await startAnthropicFake({ apiKey: KEY, reply: "Bonjour from Claude.", usage: { input_tokens: 21, output_tokens: 8 } });
    backup = await startOpenAIFake({ reply: "answer from backup" });
    r = await startRouter(`
circuit_breaker: { failure_threshold: 1000 }
providers:
  - name: claude
    type: anthropic
    endpoint: ${claude.url}
    api_key: ${KEY}
    default_model: claude-test-default
    models: [claude-test]
    timeout_seconds: 5
    headers: { anthropic-beta: test-beta-1 }
  - { name: backup, type: openai, endpoint: ${backup.url}/v1, default_model: backup-model }
routing: { fallback_chain: [claude, backup] }
`);
  });
  after(async () => {
    await r.stop();
    await claude.stop();
    await backup.stop();
  });
  beforeEach(() => {
    claude.reset();
    backup.reset();
  });

  const sent = () => {
    assert.equal(claude.requests.length, 1, "one request upstream");
    return claude.requests[0].body;
  };

  describe("text answers", () => {
    it("answers a chat completion, mapping the message, usage and router headers", async () => {
      const res = await postJson(`${r.url}/v1/chat/completions`, chat());
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("x-router-provider"), "claude");
      assert.equal(res.headers.get("x-router-attempts"), "1");
      const body = await res.json();
      assert.equal(body.object, "chat.completion");
      assert.equal(body.id, "msg_fake01");
      assert.equal(body.model, "claude-test");
      assert.deepEqual(body.choices[0].message.role, "assistant");
      assert.equal(body.choices[0].message.content, "Bonjour from Claude.");
      assert.equal(body.choices[0].message.tool_calls, undefined);
      assert.equal(body.choices[0].finish_reason, "stop");
      assert.deepEqual(body.usage, { prompt_tokens: 21, completion_tokens: 8, total_tokens: 29 });

      const req = claude.requests[0];
      assert.equal(req.path, "/v1/messages");
      assert.equal(req.headers["x-api-key"], KEY);
      assert.equal(req.headers["anthropic-version"], "2023-06-01");
      assert.equal(req.headers["anthropic-beta"], "test-beta-1", "config headers are sent");
      assert.equal(req.headers.authorization, undefined);
      assert.match(String(req.headers["content-type"]), /^application\/json/);
      assert.deepEqual(req.body, { model: "claude-test", max_tokens: 4096, messages: [{ role: "user", content: "hi" }] });
      assert.equal(backup.requests.length, 0);
    });

    it("streams chunks and [DONE] without a usage chunk unless include_usage is set", async () => {
      const res = await postJson(`${r.url}/v1/chat/completions`, chat({ stream: true }));
      assert.equal(res.status, 200);
      assert.match(res.headers.get("content-type") ?? "", /text\/event-stream/);
      const events = await readSse(res);
      assert.equal(events.at(-1), "[DONE]");
      const chunks = events.slice(0, -1);
      assert.ok(chunks.every((e) => e.object === "chat.completion.chunk" && e.id === "msg_fake01" && e.model === "claude-test"));
      assert.deepEqual(chunks[0].choices[0].delta, { role: "assistant", content: "" });
      assert.ok(chunks.filter((e) => e.choices[0]?.delta?.content).length >= 2, "text arrives in several chunks");
      assert.equal(streamedText(chunks), "Bonjour from Claude.");
      assert.equal(chunks.at(-1).choices[0].finish_reason, "stop");
      assert.ok(chunks.every((e) => !e.usage), "no usage chunk");
      assert.equal(sent().stream, true);
    });

    it("streams the usage chunk when include_usage is set", async () => {
      const res = await postJson(`${r.url}/v1/chat/completions`, chat({ stream: true, stream_options: { include_usage: true } }));
      const events = await readSse(res);
      assert.equal(events.at(-1), "[DONE]");
      const usage = events.at(-2);
      assert.deepEqual(usage.choices, []);
      assert.deepEqual(usage.usage, { prompt_tokens: 21, completion_tokens: 8, total_tokens: 29 });
      assert.equal(streamedText(events.slice(0, -2)), "Bonjour from Claude.");
    });

    it("forwards chunks while the upstream is still streaming, and aborts the upstream when the client leaves", async () => {
      // message_start, content_block_start, ping, one text delta: then the fake stalls
      claude.fault = { stallAfter: 4 };
      const res = await postJson(`${r.url}/v1/chat/completions`, chat({ stream: true }));
      assert.equal(res.status, 200);
      const reader = res.body!.getReader();
      const decoder = new TextDecoder();
      let text = "";
      const deadline = Date.now() + 10_000;
      while (!text.includes("Bonjo") && Date.now() < deadline) {
        const { value, done } = await reader.read();
        if (done) break;
        text += decoder.decode(value, { stream: true });
      }
      assert.ok(text.includes('"content":"Bonjo'), `first text delta arrived before the upstream finished: ${text}`);
      assert.ok(!text.includes("[DONE]"));
      await reader.cancel();
      for (let i = 0; i < 100 && claude.aborted === 0; i++) await new Promise((ok) => setTimeout(ok, 50));
      assert.equal(claude.aborted, 1, "upstream request closed");
    });
  });

  describe("request mapping", () => {
    it("moves system and developer messages to top-level system and merges consecutive same-role messages", async () => {
      const res = await postJson(`${r.url}/v1/chat/completions`, chat({
        messages: [
          { role: "system", content: "You are terse." },
          { role: "user", content: "a" },
          { role: "developer", content: [{ type: "text", text: "Answer in French." }] },
          { role: "user", content: [{ type: "text", text: "b" }] },
          { role: "assistant", content: "c" },
          { role: "assistant", content: [{ type: "text", text: "d" }] },
          { role: "user", content: "e" },
        ],
      }));
      assert.equal(res.status, 200);
      await res.body?.cancel();
      const body = sent();
      assert.equal(body.system, "You are terse.\n\nAnswer in French.");
      assert.deepEqual(body.messages, [
        { role: "user", content: [{ type: "text", text: "a" }, { type: "text", text: "b" }] },
        { role: "assistant", content: [{ type: "text", text: "c" }, { type: "text", text: "d" }] },
        { role: "user", content: "e" },
      ]);
    });

    it("maps temperature, top_p, stop, user and max tokens; drops what Anthropic does not know", async () => {
      const res = await postJson(`${r.url}/v1/chat/completions`, chat({
        temperature: 0.4, top_p: 0.9, stop: ["END", "STOP"], user: "user-42", max_tokens: 100, seed: 7, presence_penalty: 0.5,
      }));
      assert.equal(res.status, 200);
      await res.body?.cancel();
      const body = sent();
      assert.equal(body.temperature, 0.4);
      assert.equal(body.top_p, 0.9);
      assert.deepEqual(body.stop_sequences, ["END", "STOP"]);
      assert.deepEqual(body.metadata, { user_id: "user-42" });
      assert.equal(body.max_tokens, 100);
      assert.equal(body.seed, undefined);
      assert.equal(body.presence_penalty, undefined);
      assert.equal(body.stop, undefined);
      assert.equal(body.user, undefined);
    });

    it("prefers max_completion_tokens, wraps a single stop string, and caps temperature at 1", async () => {
      const res = await postJson(`${r.url}/v1/chat/completions`, chat({ max_tokens: 100, max_completion_tokens: 50, stop: "END", temperature: 1.7 }));
      assert.equal(res.status, 200);
      await res.body?.cancel();
      const body = sent();
      assert.equal(body.max_tokens, 50);
      assert.deepEqual(body.stop_sequences, ["END"]);
      assert.equal(body.temperature, 1);
    });

    it("stops at a stop sequence: stop_sequences reach the upstream and stop_sequence maps to stop", async () => {
      claude.options.reply = "one two END three";
      const res = await postJson(`${r.url}/v1/chat/completions`, chat({ stop: ["END"] }));
      const body = await res.json();
      assert.equal(body.choices[0].message.content, "one two ");
      assert.equal(body.choices[0].finish_reason, "stop");
    });

    it("maps image content parts: data URLs to base64 sources, http(s) URLs to url sources", async () => {
      const res = await postJson(`${r.url}/v1/chat/completions`, chat({
        messages: [{
          role: "user",
          content: [
            { type: "text", text: "What is in these?" },
            { type: "image_url", image_url: { url: "data:image/png;base64,iVBORw0KGgoAAAANSUhEUg==", detail: "high" } },
            { type: "image_url", image_url: { url: "https://example.com/cat.jpg" } },
          ],
        }],
      }));
      assert.equal(res.status, 200);
      await res.body?.cancel();
      assert.deepEqual(sent().messages, [{
        role: "user",
        content: [
          { type: "text", text: "What is in these?" },
          { type: "image", source: { type: "base64", media_type: "image/png", data: "iVBORw0KGgoAAAANSUhEUg==" } },
          { type: "image", source: { type: "url", url: "https://example.com/cat.jpg" } },
        ],
      }]);
    });

    it("passes an image it cannot map to the next provider, without calling Anthropic", async () => {
      const res = await postJson(`${r.url}/v1/chat/completions`, chat({
        messages: [{ role: "user", content: [{ type: "text", text: "x" }, { type: "image_url", image_url: { url: "data:image/png,rawbytes" } }] }],
      }));
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("x-router-provider"), "backup");
      await res.body?.cancel();
      assert.equal(claude.requests.length, 0);
      assert.equal(backup.requests.length, 1);
      const h = await (await fetch(`${r.url}/health`)).json();
      assert.equal(h.providers.claude.consecutive_failures, 0, "not a breaker failure");
    });

    it("rejects an image it cannot map with a 400 naming the field when Anthropic is the only choice", async () => {
      const res = await postJson(`${r.url}/v1/chat/completions`, chat({
        model: "claude/claude-test",
        messages: [{ role: "user", content: [{ type: "text", text: "x" }, { type: "image_url", image_url: { url: "data:image/png,rawbytes" } }] }],
      }));
      assert.equal(res.status, 400);
      const body = await res.json();
      assert.equal(body.error.type, "invalid_request_error");
      assert.equal(body.error.param, "messages[0].content[1].image_url.url");
      assert.match(body.error.message, /base64/);
      assert.equal(claude.requests.length, 0);
      assert.equal(backup.requests.length, 0);
    });

    it("adds a JSON instruction to system for response_format json_object", async () => {
      const res = await postJson(`${r.url}/v1/chat/completions`, chat({
        messages: [{ role: "system", content: "Be brief." }, { role: "user", content: "list colours" }],
        response_format: { type: "json_object" },
      }));
      assert.equal(res.status, 200);
      await res.body?.cancel();
      const system = sent().system as string;
      assert.ok(system.startsWith("Be brief.\n\n"));
      assert.match(system, /JSON object/);
    });
  });

  describe("tools", () => {
    it("maps tools and each tool_choice form", async () => {
      const cases: [unknown, unknown][] = [
        [undefined, undefined],
        ["auto", { type: "auto" }],
        ["none", { type: "none" }],
        ["required", { type: "any" }],
        [{ type: "function", function: { name: "get_weather" } }, { type: "tool", name: "get_weather" }],
      ];
      for (const [given, expected] of cases) {
        claude.reset();
        const res = await postJson(`${r.url}/v1/chat/completions`, chat({ tools: [WEATHER_TOOL], ...(given === undefined ? {} : { tool_choice: given }) }));
        assert.equal(res.status, 200, `tool_choice ${JSON.stringify(given)}`);
        await res.body?.cancel();
        const body = sent();
        assert.deepEqual(body.tools, [{
          name: "get_weather",
          description: "Current weather for a city",
          input_schema: WEATHER_TOOL.function.parameters,
        }]);
        assert.deepEqual(body.tool_choice, expected, `tool_choice ${JSON.stringify(given)}`);
      }
      claude.reset();
      const res = await postJson(`${r.url}/v1/chat/completions`, chat({ tools: [WEATHER_TOOL], parallel_tool_calls: false }));
      await res.body?.cancel();
      assert.deepEqual(sent().tool_choice, { type: "auto", disable_parallel_tool_use: true });
    });

    it("turns a tool_use answer into tool_calls", async () => {
      claude.options.reply = "Let me check.";
      claude.options.toolUses = [{ id: "toolu_01A", name: "get_weather", input: { city: "Paris", unit: "c" } }];
      const res = await postJson(`${r.url}/v1/chat/completions`, chat({ tools: [WEATHER_TOOL] }));
      assert.equal(res.status, 200);
      const body = await res.json();
      const msg = body.choices[0].message;
      assert.equal(body.choices[0].finish_reason, "tool_calls");
      assert.equal(msg.content, "Let me check.");
      assert.equal(msg.tool_calls.length, 1);
      assert.equal(msg.tool_calls[0].id, "toolu_01A");
      assert.equal(msg.tool_calls[0].type, "function");
      assert.equal(msg.tool_calls[0].function.name, "get_weather");
      assert.deepEqual(JSON.parse(msg.tool_calls[0].function.arguments), { city: "Paris", unit: "c" });
    });

    it("gives content null when the answer is only tool calls", async () => {
      claude.options.reply = "";
      claude.options.toolUses = [{ name: "get_weather", input: { city: "Oslo" } }, { name: "get_weather", input: { city: "Rome" } }];
      const body = await (await postJson(`${r.url}/v1/chat/completions`, chat({ tools: [WEATHER_TOOL] }))).json();
      assert.equal(body.choices[0].message.content, null);
      assert.deepEqual(body.choices[0].message.tool_calls.map((c: any) => JSON.parse(c.function.arguments).city), ["Oslo", "Rome"]);
    });

    it("streams tool calls as deltas that reassemble to valid JSON arguments", async () => {
      claude.options.reply = "Checking both.";
      claude.options.toolUses = [
        { id: "toolu_A", name: "get_weather", input: { city: "São Paulo", unit: "c", note: "quotes \" and, commas" } },
        { id: "toolu_B", name: "get_weather", input: { city: "Lima" } },
      ];
      const res = await postJson(`${r.url}/v1/chat/completions`, chat({ tools: [WEATHER_TOOL], stream: true }));
      assert.equal(res.status, 200);
      const events = await readSse(res);
      assert.equal(events.at(-1), "[DONE]");
      assert.equal(streamedText(events), "Checking both.");
      const calls = streamedToolCalls(events);
      assert.deepEqual(calls.map((c) => [c.id, c.function.name]), [["toolu_A", "get_weather"], ["toolu_B", "get_weather"]]);
      assert.deepEqual(JSON.parse(calls[0].function.arguments), { city: "São Paulo", unit: "c", note: "quotes \" and, commas" });
      assert.deepEqual(JSON.parse(calls[1].function.arguments), { city: "Lima" });
      const fragments = events.filter((e) => e !== "[DONE]" && e.choices[0]?.delta?.tool_calls?.[0]?.index === 0).length;
      assert.ok(fragments >= 3, `arguments arrive in several deltas (${fragments})`);
      assert.equal(events.at(-2).choices[0].finish_reason, "tool_calls");
    });

    it("sends assistant tool_calls as tool_use and tool messages as tool_result, merged with the next user message", async () => {
      const res = await postJson(`${r.url}/v1/chat/completions`, chat({
        tools: [WEATHER_TOOL],
        messages: [
          { role: "user", content: "Weather in Paris and Rome?" },
          {
            role: "assistant",
            content: null,
            tool_calls: [
              { id: "toolu_1", type: "function", function: { name: "get_weather", arguments: '{"city":"Paris"}' } },
              { id: "toolu_2", type: "function", function: { name: "get_weather", arguments: '{"city":"Rome"}' } },
            ],
          },
          { role: "tool", tool_call_id: "toolu_1", content: "18C" },
          { role: "tool", tool_call_id: "toolu_2", content: [{ type: "text", text: "24C" }] },
          { role: "user", content: "Which is warmer?" },
        ],
      }));
      assert.equal(res.status, 200, "the fake accepts the translated conversation");
      await res.body?.cancel();
      assert.deepEqual(sent().messages, [
        { role: "user", content: "Weather in Paris and Rome?" },
        {
          role: "assistant",
          content: [
            { type: "tool_use", id: "toolu_1", name: "get_weather", input: { city: "Paris" } },
            { type: "tool_use", id: "toolu_2", name: "get_weather", input: { city: "Rome" } },
          ],
        },
        {
          role: "user",
          content: [
            { type: "tool_result", tool_use_id: "toolu_1", content: "18C" },
            { type: "tool_result", tool_use_id: "toolu_2", content: [{ type: "text", text: "24C" }] },
            { type: "text", text: "Which is warmer?" },
          ],
        },
      ]);
    });

    it("rejects tool_call arguments that are not JSON with a 400 naming the field", async () => {
      const res = await postJson(`${r.url}/v1/chat/completions`, chat({
        model: "claude/claude-test",
        messages: [
          { role: "user", content: "x" },
          { role: "assistant", content: "ok", tool_calls: [{ id: "t1", type: "function", function: { name: "f", arguments: "{not json" } }] },
          { role: "tool", tool_call_id: "t1", content: "r" },
        ],
      }));
      assert.equal(res.status, 400);
      const body = await res.json();
      assert.equal(body.error.param, "messages[1].tool_calls[0].function.arguments");
      assert.equal(claude.requests.length, 0);
    });
  });

  describe("stop reasons", () => {
    const cases: [string, string][] = [["end_turn", "stop"], ["stop_sequence", "stop"], ["max_tokens", "length"], ["tool_use", "tool_calls"]];
    for (const [stop, finish] of cases) {
      it(`maps stop_reason ${stop} to ${finish}, streamed and not`, async () => {
        claude.options.stopReason = stop;
        const body = await (await postJson(`${r.url}/v1/chat/completions`, chat())).json();
        assert.equal(body.choices[0].finish_reason, finish);
        const events = await readSse(await postJson(`${r.url}/v1/chat/completions`, chat({ stream: true })));
        assert.equal(events.at(-2).choices[0].finish_reason, finish);
      });
    }
  });

  describe("legacy completions", () => {
    it("sends the prompt as one user message and answers text_completion, streamed and not", async () => {
      let res = await postJson(`${r.url}/v1/completions`, { model: "claude-test", prompt: "Say hi", max_tokens: 30, stop: "\n" });
      assert.equal(res.status, 200);
      const body = await res.json();
      assert.equal(body.object, "text_completion");
      assert.equal(body.choices[0].text, "Bonjour from Claude.");
      assert.equal(body.choices[0].finish_reason, "stop");
      assert.deepEqual(body.usage, { prompt_tokens: 21, completion_tokens: 8, total_tokens: 29 });
      assert.deepEqual(sent().messages, [{ role: "user", content: "Say hi" }]);
      assert.equal(sent().max_tokens, 30);
      assert.deepEqual(sent().stop_sequences, ["\n"]);

      claude.reset();
      res = await postJson(`${r.url}/v1/completions`, { model: "claude-test", prompt: ["Say hi"], stream: true, stream_options: { include_usage: true } });
      const events = await readSse(res);
      assert.equal(events.at(-1), "[DONE]");
      assert.ok(events.slice(0, -1).every((e) => e.object === "text_completion"));
      assert.equal(events.slice(0, -2).map((e) => e.choices[0]?.text ?? "").join(""), "Bonjour from Claude.");
      assert.equal(events.at(-3).choices[0].finish_reason, "stop");
      assert.deepEqual(events.at(-2).usage, { prompt_tokens: 21, completion_tokens: 8, total_tokens: 29 });
    });
  });

  describe("errors and failover", () => {
    it("returns an Anthropic 400 to the client at once, OpenAI-shaped", async () => {
      claude.fault = { status: 400, body: { type: "error", error: { type: "invalid_request_error", message: "messages.0.content: bad block" } } };
      const res = await postJson(`${r.url}/v1/chat/completions`, chat());
      assert.equal(res.status, 400);
      const body = await res.json();
      assert.deepEqual(Object.keys(body.error).sort(), ["code", "message", "param", "type"]);
      assert.equal(body.error.message, "messages.0.content: bad block");
      assert.equal(body.error.type, "invalid_request_error");
      assert.equal(backup.requests.length, 0);
    });

    for (const [status, type, message] of [
      [529, "overloaded_error", "Overloaded"],
      [500, "api_error", "Internal server error"],
      [429, "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"],
    ] as const) {
      it(`fails over to the next provider on ${status} ${type}`, async () => {
        claude.fault = { status, body: { type: "error", error: { type, message } } };
        const res = await postJson(`${r.url}/v1/chat/completions`, chat());
        assert.equal(res.status, 200);
        assert.equal(res.headers.get("x-router-provider"), "backup");
        assert.equal(res.headers.get("x-router-attempts"), "2");
        assert.equal((await res.json()).choices[0].message.content, "answer from backup");
      });
    }

    it("fails over when the prompt is too long for the model", async () => {
      claude.fault = { status: 400, body: { type: "error", error: { type: "invalid_request_error", message: "prompt is too long: 215034 tokens > 200000 maximum" } } };
      const res = await postJson(`${r.url}/v1/chat/completions`, chat());
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("x-router-provider"), "backup");
      await res.body?.cancel();
    });

    it("fails over on a rejected x-api-key, and never shows the key", async () => {
      claude.options.apiKey = "sk-ant-some-other-key";
      const res = await postJson(`${r.url}/v1/chat/completions`, chat());
      assert.equal(res.headers.get("x-router-provider"), "backup");
      await res.body?.cancel();
      backup.fault = { status: 503 };
      const all = await postJson(`${r.url}/v1/chat/completions`, chat());
      assert.equal(all.status, 502);
      const body = await all.json();
      assert.deepEqual(body.error.attempts.map((a: any) => [a.provider, a.status]), [["claude", 401], ["backup", 503]]);
      assert.equal(body.error.attempts[0].reason, "invalid x-api-key");
      assert.ok(!JSON.stringify(body).includes(KEY));
    });

    it("fails over a stream whose upstream fails before the first content", async () => {
      claude.options.streamErrorAfter = 0;
      let res = await postJson(`${r.url}/v1/chat/completions`, chat({ stream: true }));
      assert.equal(res.headers.get("x-router-provider"), "backup");
      assert.equal(streamedText(await readSse(res)), "answer from backup");

      claude.reset();
      backup.reset();
      claude.fault = { cutAfter: 2 };
      res = await postJson(`${r.url}/v1/chat/completions`, chat({ stream: true }));
      assert.equal(res.headers.get("x-router-provider"), "backup");
      assert.equal(streamedText(await readSse(res)), "answer from backup");
    });

    it("ends the client stream with an SSE error event on a mid-stream error event", async () => {
      claude.options.streamErrorAfter = 2;
      const res = await postJson(`${r.url}/v1/chat/completions`, chat({ stream: true }));
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("x-router-provider"), "claude");
      const events = await readSse(res);
      assert.ok(streamedText(events).length > 0, "some content was sent first");
      assert.notEqual(events.at(-1), "[DONE]");
      const err = events.at(-1).error;
      assert.equal(err.type, "upstream_error");
      assert.equal(err.code, "overloaded_error");
      assert.equal(err.message, "Overloaded");
      assert.equal(backup.requests.length, 0);
    });

    it("ends the client stream with an SSE error event when the upstream stops without message_stop", async () => {
      claude.options.omitMessageStop = true;
      const events = await readSse(await postJson(`${r.url}/v1/chat/completions`, chat({ stream: true })));
      assert.equal(streamedText(events), "Bonjour from Claude.");
      assert.notEqual(events.at(-1), "[DONE]");
      assert.match(events.at(-1).error.message, /message_stop/);
    });
  });
});

describe("anthropic adapter failure details", () => {
  it("reports Retry-After and the Anthropic error type on a 529", async () => {
    const fake = await startAnthropicFake();
    try {
      fake.fault = { status: 529, headers: { "retry-after": "7" }, body: { type: "error", error: { type: "overloaded_error", message: "Overloaded" } } };
      const cfg = parseConfig(`providers: [{ name: c, type: anthropic, endpoint: "${fake.url}", api_key: k, default_model: m }]`, {}).providers[0];
      const res = await new AnthropicAdapter(cfg).chat(chat() as any, { model: "m", stream: false, includeUsage: false, signal: new AbortController().signal, maxEventBytes: 1 << 20, maxBodyBytes: 1 << 20 });
      assert.equal(res.ok, false);
      if (res.ok) return;
      assert.equal(res.status, 529);
      assert.equal(res.kind, "http");
      assert.equal(res.type, "overloaded_error");
      assert.equal(res.message, "Overloaded");
      assert.equal(res.retryAfter, 7);
      assert.ok(!res.contextExceeded);
    } finally {
      await fake.stop();
    }
  });
});

describe("openai SDK against the router with Anthropic behind it", () => {
  let claude: AnthropicFake, r: RunningRouter, client: OpenAI;
  before(async () => {
    claude = await startAnthropicFake({ apiKey: KEY, reply: "Hi from Claude via the SDK." });
    r = await startRouter(`
circuit_breaker: { failure_threshold: 1000 }
providers:
  - { name: claude, type: anthropic, endpoint: ${claude.url}, api_key: ${KEY}, default_model: claude-haiku-test }
`);
    client = new OpenAI({ apiKey: "unused-client-key", baseURL: `${r.url}/v1`, maxRetries: 0 });
  });
  after(async () => {
    await r.stop();
    await claude.stop();
  });
  beforeEach(() => claude.reset());

  it("chat, not streamed", async () => {
    const c = await client.chat.completions.create({ model: "anything", messages: [{ role: "system", content: "Be nice." }, { role: "user", content: "hello" }] });
    assert.equal(c.choices[0].message.content, "Hi from Claude via the SDK.");
    assert.equal(c.model, "claude-haiku-test");
    assert.equal(c.usage?.total_tokens, 22);
    assert.equal(claude.requests[0].body.system, "Be nice.");
  });

  it("chat, streamed", async () => {
    const stream = await client.chat.completions.create({
      model: "anything", messages: [{ role: "user", content: "hello" }], stream: true, stream_options: { include_usage: true },
    });
    let text = "", chunks = 0, finish: string | null = null, usage: any;
    for await (const chunk of stream) {
      chunks++;
      text += chunk.choices[0]?.delta?.content ?? "";
      finish = chunk.choices[0]?.finish_reason ?? finish;
      if (chunk.usage) usage = chunk.usage;
    }
    assert.equal(text, "Hi from Claude via the SDK.");
    assert.ok(chunks > 3);
    assert.equal(finish, "stop");
    assert.equal(usage.prompt_tokens, 13);
  });

  it("a tool call round trip, streamed and not", async () => {
    claude.options.reply = "";
    claude.options.toolUses = [{ id: "toolu_sdk", name: "get_weather", input: { city: "Berlin" } }];
    const tools = [WEATHER_TOOL] as OpenAI.Chat.Completions.ChatCompletionTool[];
    const c = await client.chat.completions.create({ model: "anything", messages: [{ role: "user", content: "Weather in Berlin?" }], tools });
    const call = c.choices[0].message.tool_calls![0] as OpenAI.Chat.Completions.ChatCompletionMessageFunctionToolCall;
    assert.equal(c.choices[0].finish_reason, "tool_calls");
    assert.equal(call.function.name, "get_weather");
    assert.deepEqual(JSON.parse(call.function.arguments), { city: "Berlin" });

    const stream = await client.chat.completions.create({ model: "anything", messages: [{ role: "user", content: "Weather in Berlin?" }], tools, stream: true });
    let args = "", name = "", id = "";
    for await (const chunk of stream) {
      for (const tc of chunk.choices[0]?.delta?.tool_calls ?? []) {
        if (tc.id) id = tc.id;
        if (tc.function?.name) name = tc.function.name;
        args += tc.function?.arguments ?? "";
      }
    }
    assert.equal(id, "toolu_sdk");
    assert.equal(name, "get_weather");
    assert.deepEqual(JSON.parse(args), { city: "Berlin" });

    // send the result back: the fake rejects a tool_result that does not match the tool_use before it
    claude.options.toolUses = undefined;
    claude.options.reply = "It is 20C in Berlin.";
    const final = await client.chat.completions.create({
      model: "anything",
      tools,
      messages: [
        { role: "user", content: "Weather in Berlin?" },
        c.choices[0].message as OpenAI.Chat.Completions.ChatCompletionMessageParam,
        { role: "tool", tool_call_id: call.id, content: "20C" },
      ],
    });
    assert.equal(final.choices[0].message.content, "It is 20C in Berlin.");
    const last = claude.requests.at(-1)!.body.messages.at(-1);
    assert.deepEqual(last, { role: "user", content: [{ type: "tool_result", tool_use_id: "toolu_sdk", content: "20C" }] });
  });

  it("logprobs, which Anthropic cannot return, get a 400 naming the field instead of logprobs: null", async () => {
    const before = claude.requests.length;
    await assert.rejects(client.chat.completions.create({ model: "anything", messages: [{ role: "user", content: "hello" }], logprobs: true, top_logprobs: 2 }), (e: any) => {
      assert.ok(e instanceof OpenAI.BadRequestError, String(e));
      assert.equal(e.param, "logprobs");
      assert.match(e.message, /^400 logprobs: /);
      return true;
    });
    await assert.rejects(client.completions.create({ model: "anything", prompt: "hello", logprobs: 3 }), (e: any) => e instanceof OpenAI.BadRequestError && e.param === "logprobs");
    assert.equal(claude.requests.length, before, "Anthropic was not called");
    // logprobs: false asks for nothing
    const c = await client.chat.completions.create({ model: "anything", messages: [{ role: "user", content: "hello" }], logprobs: false });
    assert.equal(c.choices[0].message.content, "Hi from Claude via the SDK.");
  });

  it("a streamed call of a tool without parameters has arguments \"{}\" (Anthropic streams no JSON for it)", async () => {
    // the real API sends a single empty input_json_delta for an empty input; the SDK's stream helper parses the
    // arguments of every call, and "" is not JSON
    claude.options.reply = "";
    claude.options.toolUses = [{ id: "toolu_now", name: "get_time", input: {} }];
    const stream = client.chat.completions.stream({
      model: "anything",
      messages: [{ role: "user", content: "What time is it?" }],
      tools: [{ type: "function", function: { name: "get_time", parameters: { type: "object", properties: {}, additionalProperties: false }, strict: true } }],
    });
    const done: string[] = [];
    stream.on("tool_calls.function.arguments.done", (e) => done.push(e.arguments));
    const c = await stream.finalChatCompletion();
    const call = c.choices[0].message.tool_calls![0] as OpenAI.Chat.Completions.ChatCompletionMessageFunctionToolCall;
    assert.equal(call.function.name, "get_time");
    assert.equal(call.function.arguments, "{}");
    assert.deepEqual(done, ["{}"]);
    assert.equal(c.choices[0].finish_reason, "tool_calls");
  });
});
