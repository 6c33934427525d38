// Streams that survive their provider: silent providers, streams without [DONE], malformed events, the usage
// chunk, through HTTP against fake upstreams that misbehave on purpose.
import { after, afterEach, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { startOpenAIFake } from "./fakes/openai.ts";
import { startScriptedFake, streamHead, type ScriptedFake } from "./fakes/scripted.ts";
import { sleep, type FakeServer } from "./fakes/common.ts";
import { postJson, readSse, startRouter, type RunningRouter } from "./helpers/router.ts";

const chat = (extra: Record<string, unknown> = {}) => ({ model: "gpt-test", messages: [{ role: "user", content: "hi" }], ...extra });

describe("streams that survive their provider", () => {
  let b: FakeServer;
  let r: RunningRouter | undefined;

  before(async () => {
    b = await startOpenAIFake({ reply: "from B" });
  });
  after(async () => {
    await b.stop();
  });
  afterEach(async () => {
    await r?.stop();
    r = undefined;
  });

  describe("a provider that accepts the request and never answers", () => {
    let a: FakeServer;
    before(async () => {
      a = await startOpenAIFake();
    });
    after(async () => {
      await a.stop();
    });

    it("fails over after one timeout, without retrying the silent provider", async () => {
      a.reset();
      b.reset();
      a.fault = { hang: true };
      r = await startRouter(`
providers:
  - { name: a, type: openai, endpoint: ${a.url}/v1, default_model: m, timeout_seconds: 1, max_retries: 2 }
  - { name: b, type: openai, endpoint: ${b.url}/v1, default_model: m, timeout_seconds: 5 }
routing: { fallback_chain: [a, b] }
circuit_breaker: { failure_threshold: 100 }
`, {}, { retryBaseMs: 50 });
      const t0 = Date.now();
      const res = await postJson(`${r.url}/v1/chat/completions`, chat());
      const took = Date.now() - t0;
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("x-router-provider"), "b");
      await res.text();
      assert.equal(a.requests.length, 1, "a silent provider is not asked again");
      assert.ok(took >= 900 && took < 2500, `about one timeout, took ${took} ms`);
    });

    it("still retries a provider that answers with an error (5xx)", async () => {
      a.reset();
      b.reset();
      a.fault = { status: 503, times: 1 };
      r = await startRouter(`
providers:
  - { name: a, type: openai, endpoint: ${a.url}/v1, default_model: m, timeout_seconds: 5, max_retries: 2 }
  - { name: b, type: openai, endpoint: ${b.url}/v1, default_model: m, timeout_seconds: 5 }
routing: { fallback_chain: [a, b] }
`, {}, { retryBaseMs: 20 });
      const res = await postJson(`${r.url}/v1/chat/completions`, chat());
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("x-router-provider"), "a");
      await res.text();
      assert.equal(a.requests.length, 2);
    });
  });
});
