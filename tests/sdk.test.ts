// End to end with the official `openai` npm SDK pointed at the router, as an app would use it.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import type { FakeServer } from "./fakes/common.ts";
import { type OpenAIChain, startOpenAIChain } from "./helpers/chains.ts";

describe("official openai SDK against the router", () => {
  let chain: OpenAIChain, up: FakeServer, client: OpenAI;
  before(async () => {
    chain = await startOpenAIChain();
    up = chain.up;
    client = new OpenAI({ baseURL: `${chain.r.url}/v1`, apiKey: "client-key", maxRetries: 0 });
  });
  after(() => chain.stop());

  it("chat.completions.create, failing over past a 503", async () => {
    const c = await client.chat.completions.create({ model: "gpt-x", messages: [{ role: "user", content: "hi" }] });
    assert.equal(c.choices[0].message.content, "Hello from upstream!");
    assert.equal(c.model, "up-model");
    assert.equal(c.usage?.total_tokens, 18);
  });

  it("streams with include_usage", async () => {
    const stream = await client.chat.completions.create({
      model: "gpt-x",
      messages: [{ role: "user", content: "hi" }],
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = "";
    let usage: any;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? "";
      if (chunk.usage) usage = chunk.usage;
    }
    assert.equal(text, "Hello from upstream!");
    assert.equal(usage.completion_tokens, 7);
  });

  it("legacy completions, streamed and not", async () => {
    const c = await client.completions.create({ model: "gpt-x", prompt: "Say hello" });
    assert.equal(c.choices[0].text, "Hello from upstream!");
    const s = await client.completions.create({ model: "gpt-x", prompt: "Say hello", stream: true });
    let text = "";
    for await (const chunk of s) text += chunk.choices[0]?.text ?? "";
    assert.equal(text, "Hello from upstream!");
  });

  it("models.list", async () => {
    const ids: string[] = [];
    for await (const m of client.models.list()) ids.push(m.id);
    assert.deepEqual(ids, ["gpt-x", "down/gpt-x", "up-model", "up/up-model"]);
  });

  it("models.retrieve, and NotFoundError for a model the router does not serve", async () => {
    const m = await client.models.retrieve("up/up-model");
    assert.equal(m.id, "up/up-model");
    assert.equal(m.owned_by, "up");
    await assert.rejects(client.models.retrieve("nope"), (e: unknown) => e instanceof OpenAI.NotFoundError && (e.error as { code?: string })?.code === "model_not_found");
  });

  it("surfaces all-providers-failed as an APIError with status 502", async () => {
    up.fault = { status: 500, times: 1 };
    await assert.rejects(
      client.chat.completions.create({ model: "gpt-x", messages: [{ role: "user", content: "hi" }] }),
      (e: any) => e instanceof OpenAI.APIError && e.status === 502 && /failed/.test(e.message),
    );
  });

  it("surfaces a mid-stream break as an error, not a silent end", async () => {
    up.fault = { cutAfter: 3, chunkDelayMs: 20, times: 1 };
    const stream = await client.chat.completions.create({ model: "gpt-x", messages: [{ role: "user", content: "hi" }], stream: true });
    await assert.rejects(async () => {
      for await (const _ of stream) { /* drain */ }
    });
  });
});
