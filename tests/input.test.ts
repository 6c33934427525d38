import { after, before, beforeEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import { startOpenAIFake } from "./fakes/openai.ts";
import { FakeServer } from "./fakes/common.ts";
import { postJson, readSse, startRouter, type RunningRouter } from "./helpers/router.ts";
import { rawRequest } from "./helpers/raw.ts";
import { ChatRequestSchema, plainChatRequest, plainTextRequest, TextRequestSchema } from "../src/http/schemas.ts";

const MAX = 4096;
const msgs = [{ role: "user", content: "hi" }];
const chat = (extra: Record<string, unknown> = {}) => ({ model: "m", messages: msgs, ...extra });

interface Case {
  name: string;
  method?: string;
  path?: string;
  headers?: Record<string, string>;
  /** a JSON value (serialised) or raw text/bytes */
  json?: unknown;
  raw?: string | Uint8Array;
  status: number;
  code?: string;
  param?: string;
  /** what the message must say after the field name */
  says?: RegExp;
}

const deep = (n: number) => "[".repeat(n) + "]".repeat(n);

const CASES: Case[] = [
  // transport: content type, size, encoding, JSON syntax
  { name: "text/plain content type", headers: { "content-type": "text/plain" }, raw: JSON.stringify(chat()), status: 415, code: "unsupported_media_type" },
  { name: "form content type", headers: { "content-type": "application/x-www-form-urlencoded" }, raw: "model=m", status: 415, code: "unsupported_media_type" },
  { name: "multipart content type", headers: { "content-type": "multipart/form-data; boundary=x" }, raw: "--x--", status: 415, code: "unsupported_media_type" },
  { name: "json-looking but not json type", headers: { "content-type": "application/jsonx" }, raw: JSON.stringify(chat()), status: 415, code: "unsupported_media_type" },
  { name: "body over max_body_bytes", json: chat({ messages: [{ role: "user", content: "x".repeat(MAX) }] }), status: 413, code: "request_too_large" },
  { name: "invalid UTF-8", raw: new Uint8Array([0x7b, 0x22, 0x6d, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d]), status: 400, code: "invalid_encoding" },
  { name: "truncated UTF-8 sequence", raw: new Uint8Array([0x7b, 0x22, 0x6d, 0x22, 0x3a, 0x22, 0xe2, 0x82, 0x22, 0x7d]), status: 400, code: "invalid_encoding" },
  { name: "empty body", raw: "", status: 400, code: "invalid_json" },
  { name: "truncated JSON", raw: '{"model": "m", "messages": [', status: 400, code: "invalid_json" },
  { name: "not JSON at all", raw: "hello there", status: 400, code: "invalid_json" },
  { name: "JSON with a trailing comma", raw: '{"model": "m",}', status: 400, code: "invalid_json" },
  { name: "JSON array body", raw: "[]", status: 400, code: "invalid_json" },
  { name: "JSON null body", raw: "null", status: 400, code: "invalid_json" },
  { name: "JSON string body", raw: '"hello"', status: 400, code: "invalid_json" },
  { name: "JSON number body", raw: "42", status: 400, code: "invalid_json" },
  { name: "JSON nested 1000 deep", raw: `{"model":"m","messages":[{"role":"user","content":"hi"}],"x":${deep(1000)}}`, status: 400, code: "json_too_deep" },
  // schema: the field is named
  { name: "empty object", json: {}, status: 400, param: "model" },
  { name: "messages missing", json: { model: "m" }, status: 400, param: "messages", says: /is required/ },
  { name: "messages not an array", json: { model: "m", messages: "hi" }, status: 400, param: "messages", says: /expected array/ },
  { name: "messages an object", json: { model: "m", messages: { role: "user", content: "hi" } }, status: 400, param: "messages" },
  { name: "messages empty", json: { model: "m", messages: [] }, status: 400, param: "messages", says: /at least one message/ },
  { name: "message not an object", json: { model: "m", messages: ["hi"] }, status: 400, param: "messages[0]" },
  { name: "unknown role", json: { model: "m", messages: [{ role: "wizard", content: "hi" }] }, status: 400, param: "messages[0].role", says: /expected one of/ },
  { name: "role missing", json: { model: "m", messages: [{ content: "hi" }] }, status: 400, param: "messages[0].role", says: /is required/ },
  { name: "user content missing", json: { model: "m", messages: [{ role: "user" }] }, status: 400, param: "messages[0].content" },
  { name: "content a number", json: { model: "m", messages: [{ role: "user", content: 5 }] }, status: 400, param: "messages[0].content" },
  { name: "tool message without tool_call_id", json: { model: "m", messages: [{ role: "tool", content: "x" }] }, status: 400, param: "messages[0].tool_call_id" },
  { name: "second message bad", json: { model: "m", messages: [...msgs, { role: "assistant" }] }, status: 400, param: "messages[1].content" },
  { name: "model missing", json: { messages: msgs }, status: 400, param: "model", says: /is required/ },
  { name: "model empty", json: chat({ model: "" }), status: 400, param: "model" },
  { name: "model a number", json: chat({ model: 7 }), status: 400, param: "model", says: /expected string/ },
  { name: "temperature above 2", json: chat({ temperature: 3 }), status: 400, param: "temperature", says: /<=\s*2/ },
  { name: "temperature negative", json: chat({ temperature: -0.5 }), status: 400, param: "temperature" },
  { name: "temperature a string", json: chat({ temperature: "hot" }), status: 400, param: "temperature", says: /expected number/ },
  { name: "top_p above 1", json: chat({ top_p: 2 }), status: 400, param: "top_p" },
  { name: "n > 1", json: chat({ n: 2 }), status: 400, param: "n", says: /only n=1/ },
  { name: "stream a string", json: chat({ stream: "yes" }), status: 400, param: "stream", says: /expected boolean/ },
  { name: "stream a number", json: chat({ stream: 1 }), status: 400, param: "stream", says: /expected boolean/ },
  { name: "max_tokens zero", json: chat({ max_tokens: 0 }), status: 400, param: "max_tokens" },
  { name: "max_tokens fractional", json: chat({ max_tokens: 1.5 }), status: 400, param: "max_tokens" },
  { name: "stop with 5 entries", json: chat({ stop: ["a", "b", "c", "d", "e"] }), status: 400, param: "stop" },
  { name: "tool without a name", json: chat({ tools: [{ type: "function", function: {} }] }), status: 400, param: "tools[0].function.name" },
  { name: "unknown response_format", json: chat({ response_format: { type: "xml" } }), status: 400, param: "response_format.type" },
  { name: "stream_options.include_usage a string", json: chat({ stream_options: { include_usage: "yes" } }), status: 400, param: "stream_options.include_usage" },
  { name: "completions: prompt missing", path: "/v1/completions", json: { model: "m" }, status: 400, param: "prompt" },
  { name: "completions: two prompts", path: "/v1/completions", json: { model: "m", prompt: ["a", "b"] }, status: 400, param: "prompt" },
  { name: "completions: prompt a number", path: "/v1/completions", json: { model: "m", prompt: 5 }, status: 400, param: "prompt" },
  { name: "bad Idempotency-Key", headers: { "idempotency-key": "k".repeat(300) }, json: chat(), status: 400, code: "invalid_idempotency_key" },
  // routing
  { name: "GET on a POST route", method: "GET", status: 405, code: "method_not_allowed" },
  { name: "PUT /v1/models", method: "PUT", path: "/v1/models", raw: "{}", status: 405, code: "method_not_allowed" },
  { name: "DELETE /health", method: "DELETE", path: "/health", status: 405, code: "method_not_allowed" },
  { name: "unknown path", path: "/v2/chat/completions", json: chat(), status: 404, code: "not_found" },
  { name: "root path", method: "GET", path: "/", status: 404, code: "not_found" },
  { name: "path traversal", method: "GET", path: "/v1/../../etc/passwd", status: 404, code: "not_found" },
];

describe("malformed requests", () => {
  let fake: FakeServer, r: RunningRouter;
  before(async () => {
    fake = await startOpenAIFake();
    r = await startRouter(`
server: { max_body_bytes: ${MAX} }
providers: [{ name: a, type: openai, endpoint: ${fake.url}/v1, default_model: m }]
`);
  });
  after(async () => {
    await r.stop();
    await fake.stop();
  });

  it(`answers each of ${CASES.length} malformed requests with the right status and an OpenAI-shaped JSON error`, async () => {
    assert.ok(CASES.length >= 30);
    const failures: string[] = [];
    for (const c of CASES) {
      const method = c.method ?? "POST";
      const body = c.json !== undefined ? JSON.stringify(c.json) : c.raw;
      const res = await fetch(r.url + (c.path ?? "/v1/chat/completions"), {
        method,
        headers: { ...(body !== undefined ? { "content-type": "application/json" } : {}), ...c.headers },
        body: body as BodyInit | undefined,
      });
      const text = await res.text();
      let err: any;
      try {
        err = JSON.parse(text).error;
      } catch {
        failures.push(`${c.name}: not JSON: ${text.slice(0, 100)}`);
        continue;
      }
      const problems: string[] = [];
      if (res.status !== c.status) problems.push(`status ${res.status} != ${c.status}`);
      if (!(res.headers.get("content-type") ?? "").startsWith("application/json")) problems.push("content-type");
      if (!err || typeof err.message !== "string" || !err.message || typeof err.type !== "string") problems.push("not an OpenAI error");
      if (c.code && err?.code !== c.code) problems.push(`code ${err?.code} != ${c.code}`);
      if (c.param) {
        if (err?.param !== c.param) problems.push(`param ${err?.param} != ${c.param}`);
        if (!err?.message?.startsWith(c.param + ": ")) problems.push(`message does not name ${c.param}: ${err?.message}`);
      }
      if (c.says && !c.says.test(err?.message ?? "")) problems.push(`message does not say ${c.says}: ${err?.message}`);
      if (c.status === 405 && !res.headers.get("allow")) problems.push("no Allow header");
      if (problems.length) failures.push(`${c.name}: ${problems.join("; ")} (${text.slice(0, 160)})`);
    }
    assert.deepEqual(failures, []);
    assert.equal(fake.requests.length, 0, "no malformed request reached a provider");
  });

  it("answers 413 for a declared Content-Length over the limit without waiting for the body", async () => {
    const port = Number(new URL(r.url).port);
    const res = await rawRequest(port, [
      "POST /v1/chat/completions HTTP/1.1", "Host: x", "Content-Type: application/json", `Content-Length: ${100 * 1024 * 1024}`,
    ].join("\r\n"), { body: '{"model":', timeoutMs: 5000 });
    assert.equal(res.status, 413);
    assert.equal(JSON.parse(res.body).error.code, "request_too_large");
  });

  it("answers 413 for a chunked body without Content-Length that never ends", async () => {
    const port = Number(new URL(r.url).port);
    const piece = "x".repeat(1000);
    const chunk = `${piece.length.toString(16)}\r\n${piece}\r\n`;
    const res = await rawRequest(port, [
      "POST /v1/chat/completions HTTP/1.1", "Host: x", "Content-Type: application/json", "Transfer-Encoding: chunked",
    ].join("\r\n"), { body: `1\r\n{\r\n`, endless: () => chunk, intervalMs: 5, timeoutMs: 5000 });
    assert.equal(res.status, 413);
    assert.equal(JSON.parse(res.body).error.code, "request_too_large");
  });

  it("accepts a valid chunked body and application/json with parameters", async () => {
    const port = Number(new URL(r.url).port);
    const json = JSON.stringify(chat());
    const half = Math.floor(json.length / 2);
    const body = `${half.toString(16)}\r\n${json.slice(0, half)}\r\n${(json.length - half).toString(16)}\r\n${json.slice(half)}\r\n0\r\n\r\n`;
    const res = await rawRequest(port, [
      "POST /v1/chat/completions HTTP/1.1", "Host: x", "Content-Type: application/json; charset=utf-8", "Transfer-Encoding: chunked", "Connection: close",
    ].join("\r\n"), { body });
    assert.equal(res.status, 200);
    assert.equal(JSON.parse(res.body).object, "chat.completion");
  });

  it("still serves normally after all of that", async () => {
    const res = await postJson(`${r.url}/v1/chat/completions`, chat());
    assert.equal(res.status, 200);
    assert.equal((await res.json()).choices[0].message.content, "Hello from the fake OpenAI provider.");
    const health = await fetch(`${r.url}/health`);
    assert.equal(health.status, 200);
    await health.body?.cancel();
  });
});

type Mode =
  | "json-garbage" | "html-200" | "html-502" | "json-for-stream" | "sse-garbage-first" | "sse-garbage-later"
  | "sse-stall-later" | "sse-stall-first" | "sse-no-done" | "headers";

/** An OpenAI-protocol upstream that misbehaves in the way `mode` says. */
async function startBadUpstream(): Promise<FakeServer & { mode: Mode }> {
  const chunk = (content: string, finish: string | null = null) =>
    `data: ${JSON.stringify({ id: "c", object: "chat.completion.chunk", created: 1, model: "m", choices: [{ index: 0, delta: finish ? {} : { content }, finish_reason: finish }] })}\n\n`;
  const completion = JSON.stringify({ id: "c", object: "chat.completion", created: 1, model: "m", choices: [{ index: 0, message: { role: "assistant", content: "ok" }, finish_reason: "stop" }] });
  const state = { mode: "json-garbage" as Mode };
  const fake = new FakeServer(async (req, res) => {
    const mode = state.mode;
    const sse = () => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.flushHeaders();
    };
    switch (mode) {
      case "json-garbage":
        res.writeHead(200, { "content-type": "application/json" });
        res.end('{"id": "c", "choices": [');
        return;
      case "html-200":
        res.writeHead(200, { "content-type": "text/html" });
        res.end("<!doctype html><html><body>Welcome to nginx!</body></html>");
        return;
      case "html-502":
        res.writeHead(502, { "content-type": "text/html" });
        res.end("<html><head><title>502 Bad Gateway</title></head><body>cloudflare</body></html>");
        return;
      case "json-for-stream":
        res.writeHead(200, { "content-type": "application/json" });
        res.end(completion);
        return;
      case "sse-garbage-first":
        sse();
        res.end("data: <html>oops</html>\n\n");
        return;
      case "sse-garbage-later":
        sse();
        res.write(chunk("Hel"));
        res.end("data: {broken json\n\n");
        return;
      case "sse-stall-later":
        sse();
        res.write(chunk("Hel"));
        return; // never ends
      case "sse-stall-first":
        sse();
        res.write(": keep-alive comment\n\n");
        return; // never sends content
      case "sse-no-done":
        sse();
        res.write(chunk("Hel"));
        res.end(chunk("lo")); // closes without a finish_reason or [DONE] (after a finish_reason it is complete: survive.test.ts)
        return;
      case "headers": {
        const h = {
          "set-cookie": "session=upstream-cookie; HttpOnly",
          "www-authenticate": 'Bearer realm="upstream"',
          "x-upstream-auth-echo": String(req.headers.authorization ?? ""),
          "x-powered-by": "UpstreamServer",
          "access-control-allow-origin": "*",
          "cache-control": "private, max-age=999",
        };
        if (req.body?.stream) {
          res.writeHead(200, { ...h, "content-type": "text/event-stream" });
          res.write(chunk("ok"));
          res.end(chunk("", "stop") + "data: [DONE]\n\n");
        } else if (req.body?.messages?.[0]?.content === "fail") {
          res.writeHead(400, { ...h, "content-type": "application/json" });
          res.end(JSON.stringify({ error: { message: "bad request", type: "invalid_request_error" } }));
        } else {
          res.writeHead(200, { ...h, "content-type": "application/json" });
          res.end(completion);
        }
        return;
      }
    }
  });
  await fake.start();
  return Object.defineProperty(fake, "mode", { get: () => state.mode, set: (m: Mode) => (state.mode = m) }) as FakeServer & { mode: Mode };
}

describe("upstream responses that break the protocol", () => {
  let bad: FakeServer & { mode: Mode }, r: RunningRouter;
  before(async () => {
    bad = await startBadUpstream();
    r = await startRouter(`
providers: [{ name: bad, type: openai, endpoint: ${bad.url}/v1, default_model: m, api_key: sk-upstream-key-for-echo-test, timeout_seconds: 1 }]
routing: { stream_idle_timeout_seconds: 0.5 }
circuit_breaker: { failure_threshold: 1000 }
`);
  });
  after(async () => {
    await r.stop();
    await bad.stop();
  });
  beforeEach(() => bad.reset());

  for (const mode of ["json-garbage", "html-200", "html-502"] as Mode[]) {
    it(`${mode}: a clean 502 upstream_error`, async () => {
      bad.mode = mode;
      const res = await postJson(`${r.url}/v1/chat/completions`, chat());
      assert.equal(res.status, 502);
      const text = await res.text();
      assert.ok(!text.includes("<html") && !text.includes("nginx") && !text.includes("cloudflare"), text);
      const err = JSON.parse(text).error;
      assert.equal(err.type, "upstream_error");
      assert.equal(err.code, "all_providers_failed");
    });
  }

  for (const mode of ["json-for-stream", "sse-garbage-first", "sse-stall-first"] as Mode[]) {
    it(`${mode}: a stream request fails cleanly with a 502 before anything is streamed`, async () => {
      bad.mode = mode;
      const t0 = Date.now();
      const res = await postJson(`${r.url}/v1/chat/completions`, chat({ stream: true }));
      assert.equal(res.status, 502);
      assert.equal((await res.json()).error.type, "upstream_error");
      assert.ok(Date.now() - t0 < 8000);
    });
  }

  for (const [mode, code] of [["sse-garbage-later", "upstream_stream_error"], ["sse-stall-later", "stream_timeout"], ["sse-no-done", "upstream_stream_error"]] as const) {
    it(`${mode}: a committed stream ends with an SSE error event (${code}), not [DONE] and not a hang`, async () => {
      bad.mode = mode;
      const t0 = Date.now();
      const res = await postJson(`${r.url}/v1/chat/completions`, chat({ stream: true }));
      assert.equal(res.status, 200);
      const events = await readSse(res);
      assert.equal(events[0].choices[0].delta.content, "Hel");
      const last = events.at(-1);
      assert.notEqual(last, "[DONE]");
      assert.equal(last.error.type, "upstream_error");
      assert.equal(last.error.code, code);
      assert.ok(Date.now() - t0 < 8000);
    });
  }

  it("never copies provider response headers (Set-Cookie, auth echoes, CORS, caching) to the client", async () => {
    bad.mode = "headers";
    const responses = [
      await postJson(`${r.url}/v1/chat/completions`, chat()),
      await postJson(`${r.url}/v1/chat/completions`, chat({ stream: true })),
      await postJson(`${r.url}/v1/chat/completions`, chat({ messages: [{ role: "user", content: "fail" }] })),
    ];
    assert.deepEqual(responses.map((x) => x.status), [200, 200, 400]);
    for (const res of responses) {
      const text = await res.text();
      for (const h of ["set-cookie", "www-authenticate", "x-upstream-auth-echo", "x-powered-by", "access-control-allow-origin"]) {
        assert.equal(res.headers.get(h), null, `${h} leaked`);
      }
      assert.notEqual(res.headers.get("cache-control"), "private, max-age=999");
      for (const [, v] of res.headers) assert.ok(!v.includes("sk-upstream-key"), "upstream key in a header");
      assert.ok(!text.includes("sk-upstream-key") && !text.includes("upstream-cookie"));
    }
    assert.equal(bad.requests[0].headers.authorization, "Bearer sk-upstream-key-for-echo-test");
  });
});

/**
 * Plain requests skip zod (src/http/schemas.ts): bodies generated around the edges of what is plain (wrong types,
 * out-of-range numbers, other roles, extra fields) must get exactly zod's verdict through HTTP, and a body
 * accepted without zod must reach the provider as zod would have passed it on.
 */
describe("plain requests validated without zod", () => {
  let fake: FakeServer, r: RunningRouter;
  before(async () => {
    fake = await startOpenAIFake();
    r = await startRouter(`
providers: [{ name: a, type: openai_compatible, endpoint: ${fake.url}/v1, default_model: m }]
`);
  });
  after(async () => {
    await r.stop();
    await fake.stop();
  });

  // a small seeded generator (xorshift32), so a failure can be replayed
  let seed = 0x9e3779b9;
  const rnd = () => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) / 2 ** 32;
  };
  const OMIT = Symbol("omit");
  const pick = <T>(xs: T[]): T => xs[Math.floor(rnd() * xs.length)];
  /** Usually a valid value, sometimes one of the edge cases. */
  const field = (valid: unknown[], edge: unknown[]) => (rnd() < 0.88 ? pick(valid) : pick(edge));
  const put = (o: Record<string, unknown>, k: string, v: unknown) => {
    if (v !== OMIT) o[k] = v;
  };
  const message = () => {
    const m: Record<string, unknown> = {};
    put(m, "role", field(["user", "system", "assistant", "developer"], ["tool", "bogus", "", 3, null, OMIT]));
    put(m, "content", field(["hi", "", "Say hello ☃"], [null, 5, OMIT, [{ type: "text", text: "a" }], { text: "x" }]));
    if (rnd() < 0.2) put(m, "name", field(["n"], [4, null, ""]));
    if (rnd() < 0.1) put(m, pick(["tool_call_id", "weird", "tool_calls"]), pick(["t", 1, []]));
    return m;
  };
  const common = (b: Record<string, unknown>) => {
    put(b, "model", field(["m", "gpt-x"], ["", 5, null, OMIT]));
    const opt = (k: string, valid: unknown[], edge: unknown[]) => {
      if (rnd() < 0.4) put(b, k, field(valid, edge));
    };
    opt("stream", [true, false], ["true", 1, null]);
    opt("max_tokens", [1, 32, 4096], [0, -1, 1.5, 2 ** 53, "5", null]);
    opt("temperature", [0, 0.7, 2], [2.5, -0.1, "1", null]);
    opt("top_p", [0, 0.5, 1], [1.1, -1, null]);
    opt("user", ["u"], [1, null]);
    opt("stream_options", [{ include_usage: true }, { include_usage: false }, {}], [{ include_usage: "x" }, { other: 1 }, null, "x", []]);
    if (rnd() < 0.1) put(b, pick(["seed", "logprobs", "n", "stop"]), pick([1, true, "s", 2]));
  };
  const chatBody = () => {
    const b: Record<string, unknown> = {};
    common(b);
    put(b, "messages", rnd() < 0.85 ? Array.from({ length: 1 + Math.floor(rnd() * 3) }, message) : pick([[], "hi", null, OMIT]));
    if (rnd() < 0.3) put(b, "max_completion_tokens", field([1, 64], [0, -2, 0.5, null]));
    return b;
  };
  const textBody = () => {
    const b: Record<string, unknown> = {};
    common(b);
    put(b, "prompt", field(["Say hello", ""], [["a"], ["a", "b"], 5, null, OMIT]));
    return b;
  };
  /** What the provider was sent, without the fields the adapter sets itself. */
  const forwarded = (body: Record<string, unknown>) => {
    const { model: _m, stream_options: _s, ...rest } = body;
    return rest;
  };

  for (const [path, make, schema, plain] of [
    ["/v1/chat/completions", chatBody, ChatRequestSchema, plainChatRequest],
    ["/v1/completions", textBody, TextRequestSchema, plainTextRequest],
  ] as const) {
    it(`${path}: the router's verdict is zod's on 300 generated bodies, and plain ones reach the provider as zod passes them`, async () => {
      let plainCount = 0, accepted = 0;
      for (let i = 0; i < 300; i++) {
        const body = make();
        const zod = schema.safeParse(body);
        const sent = fake.requests.length;
        const res = await postJson(r.url + path, body);
        const text = await res.text();
        const what = `body ${JSON.stringify(body)}: ${res.status} ${text.slice(0, 200)}`;
        if (!zod.success) {
          assert.equal(res.status, 400, what);
          assert.equal(JSON.parse(text).error.code, "invalid_value", what);
          assert.equal(fake.requests.length, sent, `nothing sent upstream for ${what}`);
          continue;
        }
        assert.equal(res.status, 200, what);
        accepted++;
        if (plain(body)) plainCount++;
        assert.deepEqual(forwarded(fake.requests.at(-1)!.body), forwarded(zod.data as Record<string, unknown>), what);
      }
      // the generator reaches both sides of the line
      assert.ok(plainCount >= 60, `plain bodies: ${plainCount}`);
      assert.ok(accepted - plainCount >= 10, `accepted through zod: ${accepted - plainCount}`);
      assert.ok(300 - accepted >= 60, `refused: ${300 - accepted}`);
    });
  }
});

