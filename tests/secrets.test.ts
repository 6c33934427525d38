// Distinctive provider and client keys must never appear in anything the router outputs: response bodies,
// headers, SSE events, errors, or its log lines, even when an upstream echoes its key back.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { runMain } from "./helpers/platform.ts";
import { FakeServer } from "./fakes/common.ts";

const PROVIDER_A = "sk-PROVIDERCANARY-a-7f3a9c1e5b2d";
const PROVIDER_B = "sk-PROVIDERCANARY-b-0c4e8a2f6d1b";
const HEADER_SECRET = "hdr-PROVIDERCANARY-9e1d3c5b7a";
const CLIENT = "rk-CLIENTCANARY-2d8e4b6a0c";
const ADMIN = "rk-ADMINCANARY-5f7b9d1e3a";
const SECRETS = [PROVIDER_A, PROVIDER_B, HEADER_SECRET, CLIENT, ADMIN];

type Mode = "ok" | "echo-400" | "echo-401" | "echo-500-text" | "echo-stream-error";

/** An OpenAI-protocol upstream that echoes whatever credentials it receives, everywhere it can. */
async function startEchoUpstream() {
  const state = { mode: "ok" as Mode };
  const fake = new FakeServer((req, res) => {
    const auth = String(req.headers.authorization ?? "") + " " + String(req.headers["x-custom-auth"] ?? "");
    const echo = { "x-echo-authorization": auth, "set-cookie": `k=${encodeURIComponent(auth)}`, "www-authenticate": `Bearer error="${auth}"` };
    const errorBody = (status: number) => JSON.stringify({ error: { message: `Incorrect API key provided: ${auth}`, type: "invalid_request_error", param: auth, code: status === 401 ? "invalid_api_key" : auth } });
    switch (state.mode) {
      case "echo-400":
      case "echo-401": {
        const status = state.mode === "echo-400" ? 400 : 401;
        res.writeHead(status, { ...echo, "content-type": "application/json" });
        res.end(errorBody(status));
        return;
      }
      case "echo-500-text":
        res.writeHead(500, { ...echo, "content-type": "text/plain" });
        res.end(`internal error while checking key ${auth}`);
        return;
      case "echo-stream-error":
        res.writeHead(200, { ...echo, "content-type": "text/event-stream" });
        res.write(`data: ${JSON.stringify({ id: "c", object: "chat.completion.chunk", created: 1, model: "m", choices: [{ index: 0, delta: { content: "partial" }, finish_reason: null }] })}\n\n`);
        res.end(`data: ${JSON.stringify({ error: { message: `key ${auth} was revoked`, code: "revoked", type: "auth" } })}\n\n`);
        return;
      default:
        if (req.body?.stream) {
          res.writeHead(200, { ...echo, "content-type": "text/event-stream" });
          res.write(`data: ${JSON.stringify({ id: "c", object: "chat.completion.chunk", created: 1, model: "m", choices: [{ index: 0, delta: { content: "streamed" }, finish_reason: "stop" }] })}\n\n`);
          res.end("data: [DONE]\n\n");
        } else {
          res.writeHead(200, { ...echo, "content-type": "application/json" });
          res.end(JSON.stringify({ id: "c", object: "chat.completion", created: 1, model: "m", choices: [{ index: 0, message: { role: "assistant", content: "fine" }, finish_reason: "stop" }], usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } }));
        }
    }
  });
  await fake.start();
  return { fake, state };
}

describe("secrets never leak", () => {
  let up: Awaited<ReturnType<typeof startEchoUpstream>>;
  let url = "";
  let stopServer: () => Promise<void> = async () => {};
  let logs: string[] = [];

  before(async () => {
    up = await startEchoUpstream();
    const yaml = `
providers:
  - { name: a, type: openai, endpoint: ${up.fake.url}/a/v1, api_key: "\${PROVIDER_A_KEY}", default_model: m }
  - { name: b, type: openai_compatible, endpoint: ${up.fake.url}/b/v1, api_key: "\${PROVIDER_B_KEY}", default_model: m, headers: { x-custom-auth: ${HEADER_SECRET} } }
auth:
  enabled: true
  api_keys: [{ key: "\${ROUTER_API_KEY}", name: canary-app }]
  admin_api_key: \${ROUTER_ADMIN_KEY}
rate_limit: { enabled: true, burst: 1000 }
logging: { level: debug }
`;
    const running = await runMain({
      args: ["serve", "--config", "secrets.yaml", "--host", "127.0.0.1", "--port", "0"],
      files: { "secrets.yaml": yaml },
      env: { PROVIDER_A_KEY: PROVIDER_A, PROVIDER_B_KEY: PROVIDER_B, ROUTER_API_KEY: CLIENT, ROUTER_ADMIN_KEY: ADMIN },
    });
    url = running.url;
    stopServer = running.stop;
    logs = running.out;
    assert.ok(url, "main() started serving");
  });
  after(async () => {
    await stopServer();
    await up.fake.stop();
  });

  it("appears in no response, header, SSE event, error or log line", async () => {
    const outputs: string[] = [];
    const send = async (path: string, init: Omit<RequestInit, "mode"> & { upstream?: Mode } = {}) => {
      up.state.mode = init.upstream ?? "ok";
      const res = await fetch(url + path, init);
      const text = await res.text();
      outputs.push(`${path} ${res.status} ${[...res.headers].map(([k, v]) => `${k}: ${v}`).join("\n")}\n${text}`);
      return { status: res.status, text };
    };
    const post = (body: unknown, mode: Mode = "ok", headers: Record<string, string> = {}) =>
      send("/v1/chat/completions", {
        method: "POST",
        upstream: mode,
        headers: { "content-type": "application/json", authorization: `Bearer ${CLIENT}`, ...headers },
        body: JSON.stringify(body),
      });
    const chat = (extra: Record<string, unknown> = {}) => ({ model: "m", messages: [{ role: "user", content: "hi" }], ...extra });

    assert.equal((await post(chat())).status, 200);
    assert.equal((await post(chat({ stream: true }))).status, 200);
    assert.equal((await post(chat(), "ok", { "idempotency-key": "k1" })).status, 200);
    assert.equal((await post(chat(), "ok", { "idempotency-key": "k1" })).status, 200);
    const echoed400 = await post(chat(), "echo-400");
    assert.equal(echoed400.status, 400);
    assert.match(echoed400.text, /\[REDACTED\]/, "the echo happened and was redacted");
    const echoed401 = await post(chat(), "echo-401");
    assert.equal(echoed401.status, 502);
    assert.match(echoed401.text, /\[REDACTED\]/);
    assert.equal((await post(chat(), "echo-500-text")).status, 502);
    const streamErr = await post(chat({ stream: true }), "echo-stream-error");
    assert.match(streamErr.text, /"error"/);
    assert.equal((await post(chat({ model: "b/m" }), "echo-400")).status, 400);
    assert.equal((await send("/v1/models", { headers: { "x-api-key": CLIENT } })).status, 200);
    assert.equal((await send("/health")).status, 200);
    assert.equal((await send("/metrics")).status === 401, false);
    // wrong and misplaced client keys
    assert.equal((await post(chat(), "ok", { authorization: `Bearer ${CLIENT}x` })).status, 401);
    assert.equal((await post(chat(), "ok", { authorization: `Bearer ${ADMIN.slice(0, -1)}` })).status, 401);
    assert.equal((await send("/admin/circuit/a/reset", { method: "POST", headers: { authorization: `Bearer ${CLIENT}` } })).status, 403);
    assert.notEqual((await send("/admin/circuit/a/reset", { method: "POST", headers: { authorization: `Bearer ${ADMIN}` } })).status, 403);
    // a body the router cannot parse, carrying the key
    assert.equal((await send("/v1/chat/completions", { method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${CLIENT}` }, body: `{"k": "${CLIENT}"` })).status, 400);

    const all = outputs.join("\n") + "\n" + logs.join("\n");
    for (const s of SECRETS) {
      const hits = outputs.filter((o) => o.includes(s));
      assert.deepEqual(hits.map((h) => h.slice(0, 300)), [], `secret ${s.slice(0, 12)}… leaked`);
      assert.ok(!logs.join("\n").includes(s), `secret ${s.slice(0, 12)}… in logs`);
    }
    assert.ok(all.length > 1000);
    assert.ok(logs.filter((l) => l.includes('"msg":"request"')).length >= 10, "the request log was written");
    // the upstream got the provider credentials and never the client's key
    assert.ok(up.fake.requests.some((r) => r.headers.authorization === `Bearer ${PROVIDER_A}`));
    assert.ok(up.fake.requests.every((r) => !JSON.stringify(r.headers).includes(CLIENT)));
  });
});
