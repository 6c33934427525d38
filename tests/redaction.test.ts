// A hostile upstream that echoes its own API key in every field of its errors (message, type, code, param),
// mid-stream and in error bodies, bare and Bearer-prefixed: the key must never reach the client, the request
// log, /stats, /metrics or /health, for the OpenAI passthrough and the Anthropic translation alike.
import { after, before, beforeEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import { startAnthropicFake, type AnthropicFake } from "./fakes/anthropic.ts";
import type { FakeServer } from "./fakes/common.ts";
import { startOpenAIFake, type OpenAIFakeOptions } from "./fakes/openai.ts";
import { postJson, startRouter, type RunningRouter } from "./helpers/router.ts";

const OA_KEY = "sk-oa-LEAKCANARY-3b9f0d2c7e1a";
const AN_KEY = "sk-ant-LEAKCANARY-8c2e5a7d1f4b";

/** An error object with `value` in every string field. */
const everyField = (value: string) => ({ message: `Incorrect API key provided: ${value}`, type: value, code: value, param: value });

describe("a provider's key echoed in its errors is redacted everywhere", () => {
  let oa: FakeServer, an: AnthropicFake, r: RunningRouter;
  // read by the fake at every request, so a test may change it
  const oaOpts: OpenAIFakeOptions = { reply: "a reply in several pieces", chunks: 4 };
  // what this test's requests gave the client, and where this test's log lines begin
  const outputs: string[] = [];
  let logFrom = 0;

  before(async () => {
    oa = await startOpenAIFake(oaOpts);
    an = await startAnthropicFake({ apiKey: AN_KEY, chunks: 4 });
    r = await startRouter(`
providers:
  - { name: oa, type: openai_compatible, endpoint: "${oa.url}/v1", api_key: "\${OA_KEY}", default_model: m }
  - { name: an, type: anthropic, endpoint: "${an.url}", api_key: "\${AN_KEY}", default_model: claude-test }
routing: { fallback_chain: [oa, an] }
circuit_breaker: { failure_threshold: 100 }
logging: { level: debug }
`, { OA_KEY, AN_KEY });
  });
  beforeEach(() => {
    outputs.length = 0;
    logFrom = r.logs.length;
  });
  after(async () => {
    await r.stop();
    await oa.stop();
    await an.stop();
  });

  /** Sends a request and keeps every byte the client got (status, headers, body). */
  async function send(model: string, stream: boolean): Promise<{ status: number; text: string }> {
    const res = await postJson(`${r.url}/v1/chat/completions`, { model, stream, messages: [{ role: "user", content: "hi" }] });
    const text = await res.text();
    outputs.push(`${res.status}\n${[...res.headers].map(([k, v]) => `${k}: ${v}`).join("\n")}\n${text}`);
    return { status: res.status, text };
  }

  function assertClean(what: string): void {
    for (const key of [OA_KEY, AN_KEY]) {
      const hits = outputs.filter((o) => o.includes(key));
      assert.deepEqual(hits, [], `${what}: the key ${key.slice(0, 12)}… reached the client`);
      const logHits = r.logs.slice(logFrom).filter((l) => l.includes(key));
      assert.deepEqual(logHits, [], `${what}: the key ${key.slice(0, 12)}… reached the log`);
    }
  }

  for (const [label, value] of [["bare", OA_KEY], ["Bearer-prefixed", `Bearer ${OA_KEY}`]] as const) {
    it(`OpenAI passthrough, mid-stream error event, ${label} key in message, type, code and param`, async () => {
      Object.assign(oaOpts, { streamErrorAfter: 2, streamError: everyField(value) });
      const res = await send("oa/m", true);
      assert.equal(res.status, 200);
      assert.match(res.text, /"content":"a reply/, "content was streamed before the error");
      assert.match(res.text, /data: \{"error":/, "the error event reached the client");
      assert.match(res.text, /\[REDACTED\]/, "it carried the key, redacted");
      assertClean(label);
    });

    it(`OpenAI passthrough, error event before the first content, ${label} key in every field`, async () => {
      Object.assign(oaOpts, { streamErrorAfter: 0, streamError: everyField(value) });
      const res = await send("oa/m", true);
      assert.equal(res.status, 502);
      assertClean(label);
    });
  }

  it("OpenAI passthrough, mid-stream error whose code is an object holding the key", async () => {
    Object.assign(oaOpts, { streamErrorAfter: 2, streamError: { message: "revoked", type: { key: OA_KEY }, code: { key: OA_KEY }, param: [OA_KEY] } });
    const res = await send("oa/m", true);
    assert.match(res.text, /data: \{"error":/);
    assertClean("object code");
  });

  for (const [label, value] of [["bare", AN_KEY], ["Bearer-prefixed", `Bearer ${AN_KEY}`]] as const) {
    it(`Anthropic translation, mid-stream error event, ${label} key in type and message`, async () => {
      an.options.streamErrorAfter = 2;
      an.options.streamError = { type: value, message: `invalid x-api-key ${value}` };
      const res = await send("an/claude-test", true);
      assert.equal(res.status, 200);
      assert.match(res.text, /data: \{"error":/, "the error event reached the client");
      assert.match(res.text, /\[REDACTED\]/);
      assertClean(label);
    });
  }

  for (const status of [400, 401]) {
    it(`error bodies (HTTP ${status}) with the key in every field, from both protocols`, async () => {
      for (const value of [OA_KEY, `Bearer ${OA_KEY}`]) {
        oa.fault = { status, body: { error: everyField(value) }, times: 1 };
        const res = await send("oa/m", false);
        assert.equal(res.status, status === 400 ? 400 : 502);
        assert.match(res.text, /\[REDACTED\]/);
      }
      for (const value of [AN_KEY, `Bearer ${AN_KEY}`]) {
        an.fault = { status, body: { type: "error", error: { type: value, message: `bad key ${value}` } }, times: 1 };
        const res = await send("an/claude-test", false);
        assert.equal(res.status, status === 400 ? 400 : 502);
        assert.match(res.text, /\[REDACTED\]/);
      }
      assertClean(`HTTP ${status}`);
    });
  }

  it("nor in /stats, /metrics or /health afterwards, nor in any log line", async () => {
    logFrom = 0;
    for (const path of ["/stats", "/metrics", "/health"]) {
      const res = await fetch(r.url + path);
      outputs.push(`${path}\n${await res.text()}`);
    }
    assert.match(outputs.at(-1)!, /REDACTED/, "/health shows the last (redacted) error");
    assertClean("/stats, /metrics, /health");
    assert.ok(r.logs.some((l) => l.includes('"attempts"') && l.includes("REDACTED")), "the request log carried the redacted reasons");
  });
});
