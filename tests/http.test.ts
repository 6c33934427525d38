import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { postJson, readSse, startRouter, type RunningRouter } from "./helpers/router.ts";

describe("HTTP surface", () => {
  let r: RunningRouter;
  before(async () => {
    r = await startRouter(`
server: { max_body_bytes: 2000 }
providers:
  - { name: m1, type: mock, default_model: mock-a, models: [mock-a, mock-b], reply: "one two three" }
  - { name: m2, type: mock, default_model: mock-z }
`);
  });
  after(() => r.stop());

  const chat = { model: "mock-a", messages: [{ role: "user", content: "hi" }] };

  it("lists models bare and as provider/model, owned by the provider", async () => {
    const res = await fetch(`${r.url}/v1/models`);
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.equal(body.object, "list");
    assert.deepEqual(body.data.map((m: any) => [m.id, m.owned_by]), [
      ["mock-a", "m1"], ["m1/mock-a", "m1"], ["mock-b", "m1"], ["m1/mock-b", "m1"], ["mock-z", "m2"], ["m2/mock-z", "m2"],
    ]);
  });

  it("retrieves one model by id, also provider/model, and 404s an unknown one", async () => {
    for (const [id, owner] of [["mock-b", "m1"], ["m2/mock-z", "m2"]]) {
      const res = await fetch(`${r.url}/v1/models/${id}`);
      assert.equal(res.status, 200);
      assert.deepEqual(await res.json(), { id, object: "model", created: 0, owned_by: owner });
    }
    const res = await fetch(`${r.url}/v1/models/gpt-nope`);
    assert.equal(res.status, 404);
    const err = (await res.json()).error;
    assert.equal(err.code, "model_not_found");
    assert.equal(err.param, "model");
    assert.match(err.message, /gpt-nope/);
  });

  it("answers from the mock provider, non-stream and stream", async () => {
    let res = await postJson(`${r.url}/v1/chat/completions`, chat);
    const body = await res.json();
    assert.equal(body.object, "chat.completion");
    assert.equal(body.model, "mock-a");
    assert.equal(body.choices[0].message.content, "one two three");
    assert.ok(body.usage.total_tokens > 0);
    res = await postJson(`${r.url}/v1/chat/completions`, { ...chat, stream: true, stream_options: { include_usage: true } });
    const events = await readSse(res);
    assert.equal(events.at(-1), "[DONE]");
    assert.equal(events.filter((e) => e !== "[DONE]").map((e) => e.choices[0]?.delta?.content ?? "").join(""), "one two three");
    assert.ok(events.find((e) => e !== "[DONE]" && e.usage));
  });

  it("answers legacy completions from a chat-only provider as choices[].text", async () => {
    const res = await postJson(`${r.url}/v1/completions`, { model: "mock-b", prompt: "hello" });
    const body = await res.json();
    assert.equal(body.object, "text_completion");
    assert.equal(body.choices[0].text, "one two three");
    const s = await postJson(`${r.url}/v1/completions`, { model: "mock-b", prompt: "hello", stream: true });
    const events = await readSse(s);
    assert.equal(events.filter((e) => e !== "[DONE]").map((e) => e.choices[0]?.text ?? "").join(""), "one two three");
  });

  const bad: [string, string, BodyInit, number, RegExp | null, string | null][] = [
    ["invalid JSON", "application/json", "{nope", 400, /not valid JSON/, null],
    ["a JSON array", "application/json", "[1,2]", 400, /JSON object/, null],
    ["missing messages", "application/json", JSON.stringify({ model: "x" }), 400, /messages/, "messages"],
    ["empty messages", "application/json", JSON.stringify({ model: "x", messages: [] }), 400, /at least one/, "messages"],
    ["unknown role", "application/json", JSON.stringify({ model: "x", messages: [{ role: "wizard", content: "x" }] }), 400, /messages\[0\]\.role/, "messages[0].role"],
    ["temperature out of range", "application/json", JSON.stringify({ ...chat, temperature: 3 }), 400, /temperature/, "temperature"],
    ["n > 1", "application/json", JSON.stringify({ ...chat, n: 2 }), 400, /n=1/, "n"],
    ["stream not a boolean", "application/json", JSON.stringify({ ...chat, stream: "yes" }), 400, /stream/, "stream"],
    ["missing model", "application/json", JSON.stringify({ messages: chat.messages }), 400, /model/, "model"],
    ["wrong content type", "text/plain", JSON.stringify(chat), 415, /Content-Type/, null],
    ["body over max_body_bytes", "application/json", JSON.stringify({ ...chat, pad: "x".repeat(5000) }), 413, /exceeds/, null],
  ];
  for (const [name, ct, body, status, msg, param] of bad) {
    it(`rejects ${name} with ${status} and an OpenAI-shaped error`, async () => {
      const res = await fetch(`${r.url}/v1/chat/completions`, { method: "POST", headers: { "content-type": ct }, body });
      assert.equal(res.status, status);
      const j = await res.json();
      assert.equal(typeof j.error.message, "string");
      assert.equal(typeof j.error.type, "string");
      if (msg) assert.match(j.error.message, msg);
      if (param) assert.equal(j.error.param, param);
    });
  }

  it("rejects an oversized chunked body with 413", async () => {
    const big = new TextEncoder().encode(JSON.stringify({ ...chat, pad: "y".repeat(10000) }));
    const stream = new ReadableStream({
      start(c) {
        for (let i = 0; i < big.length; i += 1000) c.enqueue(big.slice(i, i + 1000));
        c.close();
      },
    });
    const res = await fetch(`${r.url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: stream, duplex: "half" } as RequestInit);
    assert.equal(res.status, 413);
    await res.body?.cancel();
  });

  it("404 for an unknown path and 405 for a wrong method, OpenAI-shaped", async () => {
    let res = await fetch(`${r.url}/v1/nope`);
    assert.equal(res.status, 404);
    assert.equal((await res.json()).error.code, "not_found");
    res = await fetch(`${r.url}/v1/chat/completions`);
    assert.equal(res.status, 405);
    assert.equal(res.headers.get("allow"), "POST");
    assert.equal((await res.json()).error.code, "method_not_allowed");
  });

  it("still serves after all the bad input", async () => {
    const res = await postJson(`${r.url}/v1/chat/completions`, chat);
    assert.equal(res.status, 200);
    await res.body?.cancel();
  });
});
